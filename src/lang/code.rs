//! The codes of validation problems: one enum, so that the code a diagnostic carries,
//! the rules SARIF lists and the table in `docs/lint.md` cannot drift apart. Lint's
//! rules (`DRP001`, ...) have their own codes, in `lint`.

use std::fmt;

/// Declares [`Code`]: each variant with its text (stable, never reused) and one line
/// saying what it means (SARIF's rule description, the docs' table).
macro_rules! codes {
    ($($variant:ident => $text:literal, $description:literal;)*) => {
        /// The code of a validation problem (severity error).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code {
            $(
                #[doc = $description]
                $variant,
            )*
        }

        impl Code {
            /// Every code, in the order the docs list them.
            pub const ALL: [Code; [$($text),*].len()] = [$(Code::$variant),*];

            /// The code as diagnostics print it (`unknown-field`).
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }

            /// One line: what the code means.
            #[must_use]
            pub const fn description(self) -> &'static str {
                match self {
                    $(Code::$variant => $description,)*
                }
            }
        }
    };
}

codes! {
    File => "file", "The file cannot be read, or is not a .yaml, .yml or .toml plan.";
    Encoding => "encoding", "The file is not valid UTF-8.";
    Syntax => "syntax", "The file is not valid YAML or TOML.";
    DuplicateKey => "duplicate-key", "A key appears twice in the same map.";
    Limit => "limit", "Lists and maps nest too deep, or YAML aliases copy too many values.";
    Empty => "empty", "The plan file, or its list of steps, is empty.";
    UnknownField => "unknown-field", "A field the plan format does not have.";
    MissingField => "missing-field", "A required field is missing.";
    Type => "type", "A value has the wrong type.";
    Version => "version", "The plan format version is not supported.";
    PlanName => "plan-name", "The plan name is not valid: a-z, 0-9 and -, at most 63 characters.";
    Name => "name", "A var, input or secret name is not valid.";
    SecretSource => "secret-source", "A secret does not name exactly one source (env or file), or names an empty one.";
    StepId => "step-id", "A step id is not valid: a-z, 0-9 and -, at most 63 characters.";
    UnknownKind => "unknown-kind", "The step kind does not exist.";
    Duration => "duration", "A duration cannot be read.";
    Retry => "retry", "A retry setting is not valid.";
    DuplicateId => "duplicate-id", "Two steps have the same id.";
    SelfNeed => "self-need", "A step needs itself.";
    UnknownNeed => "unknown-need", "A step needs a step that does not exist.";
    Cycle => "cycle", "Steps depend on each other in a cycle.";
    UnknownParameter => "unknown-parameter", "A step parameter that its kind does not have.";
    MissingParameter => "missing-parameter", "A required step parameter is missing.";
    ConflictingParameters => "conflicting-parameters", "A step gives two parameters of which its kind takes only one.";
    ParameterType => "parameter-type", "A step parameter has the wrong type.";
    ParameterValue => "parameter-value", "A step parameter has a value its kind does not accept.";
    Template => "template", "A template cannot be parsed.";
    Reference => "reference", "A template names something that does not exist or that the step cannot read.";
    When => "when", "A `when` condition is not a template.";
    InputValue => "input-value", "An input's default, or a value of its `enum`, does not match its `type` or `enum`.";
    Undo => "undo", "`undo: true` on a kind that cannot undo, or on an exec step without `with.undo`.";
    TooManyProblems => "too-many-problems", "More than 100 problems in one file: the rest are counted, not shown.";
}

impl From<Code> for &'static str {
    fn from(code: Code) -> &'static str {
        code.as_str()
    }
}

impl fmt::Display for Code {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Code;

    #[test]
    fn codes_are_distinct_and_described() {
        for (index, code) in Code::ALL.iter().enumerate() {
            assert!(Code::ALL[..index].iter().all(|other| other.as_str() != code.as_str()), "{code} twice");
            assert!(code.description().ends_with('.'), "{code}");
            assert!(!code.as_str().starts_with("DRP"), "{code}: DRP codes are lint's");
        }
    }
}
