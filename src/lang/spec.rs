//! The plan as written: typed, every user-written value kept with its span. Decoding
//! reports every problem of the file at once (unknown fields with the closest valid
//! name, wrong types, bad durations, unknown step kinds), then [`crate::lang::plan`]
//! checks the graph and the templates.
//!
//! The same types generate `schemas/plan.schema.json` (see [`crate::cli::schema`]).

use std::sync::Arc;

use schemars::JsonSchema;

use crate::lang::code::Code;
use crate::lang::diagnostic::{Diagnostic, suggestion};
use crate::lang::duration::HumanDuration;
use crate::lang::kind::{Catalog, StepKind};
use crate::lang::node::{Entry, Node, Value};
use crate::lang::source::{SourceFile, Span};

/// A value and where it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Its span.
    pub span: Span,
}

impl<T: JsonSchema> JsonSchema for Located<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// A map from names to values, in the order written (`inputs`, `vars`, `secrets`).
#[derive(Clone, Debug)]
pub struct NamedMap<T> {
    /// The entries.
    pub entries: Vec<(Located<String>, T)>,
}

impl<T> Default for NamedMap<T> {
    fn default() -> Self {
        NamedMap { entries: Vec::new() }
    }
}

impl<T> NamedMap<T> {
    /// The value named `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&T> {
        self.entries.iter().find(|(key, _)| key.value == name).map(|(_, value)| value)
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> + Clone {
        self.entries.iter().map(|(key, _)| key.value.as_str())
    }
}

impl<T: JsonSchema> JsonSchema for NamedMap<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Map_of_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let value = generator.subschema_for::<T>();
        schemars::json_schema!({
            "type": "object",
            "propertyNames": { "pattern": "^[A-Za-z_][A-Za-z0-9_-]*$" },
            "additionalProperties": value,
        })
    }
}

/// Any value a plan may hold (`vars` values, input defaults, a step's `with`).
#[derive(Clone, Debug)]
pub struct AnyValue(pub Node);

impl JsonSchema for AnyValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AnyValue".into()
    }

    fn json_schema(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!(true)
    }
}

/// A whole plan file.
#[derive(Clone, Debug, JsonSchema)]
#[schemars(
    deny_unknown_fields,
    title = "dr-plan plan",
    description = "A disaster-recovery plan run by dr-plan."
)]
pub struct PlanSpec {
    /// Format version; always 1.
    pub version: Located<u32>,
    /// The plan's name (`db-corruption`): a-z, 0-9 and `-`, at most 63 characters; it
    /// names the run's files and metric labels.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]*$"), length(max = 63))]
    pub name: Located<String>,
    /// What the plan recovers, for whoever runs it.
    pub description: Option<Located<String>>,
    /// Recovery objectives the run is measured against.
    #[serde(default)]
    pub objectives: Objectives,
    /// Values the operator gives at run time (`--var NAME=VALUE`).
    #[serde(default)]
    pub inputs: NamedMap<InputSpec>,
    /// Plan constants, overridable with `--var`/`--vars-file` (drill targets).
    #[serde(default)]
    pub vars: NamedMap<AnyValue>,
    /// Where secret values come from; they are never printed or written.
    #[serde(default)]
    pub secrets: NamedMap<SecretSpec>,
    /// The steps, a dependency graph through `needs`.
    pub steps: Vec<StepSpec>,
    /// The file.
    #[schemars(skip)]
    pub file: Option<Arc<SourceFile>>,
    /// The kinds its steps were decoded against.
    #[schemars(skip)]
    pub kinds: Catalog,
}

/// Recovery objectives.
#[derive(Clone, Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Objectives {
    /// Recovery time objective: how long the recovery may take.
    pub rto: Option<Located<HumanDuration>>,
    /// Recovery point objective: how old the restored data may be.
    pub rpo: Option<Located<HumanDuration>>,
    /// Where the objectives block is written.
    #[schemars(skip)]
    pub span: Option<Span>,
}

/// An input.
#[derive(Clone, Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct InputSpec {
    /// What to give.
    pub description: Option<Located<String>>,
    /// The value when none is given; without one, the input is required.
    pub default: Option<AnyValue>,
    /// The type a given value must have; without one, any text is accepted.
    #[serde(rename = "type")]
    pub value_type: Option<Located<InputType>>,
    /// The only values accepted.
    #[serde(rename = "enum")]
    pub allowed: Option<Vec<AnyValue>>,
}

/// The type of an input's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    /// Any text.
    String,
    /// A whole number (`--var count=3`).
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A duration such as `90s`, `45m`, `2h`.
    Duration,
    /// A list; on the command line, comma-separated (`--var zones=a,b`).
    List,
    /// A point in time in RFC 3339 with its offset, such as `2026-12-07T10:29:00+01:00`
    /// (a time without an offset is refused: it would mean another instant on another
    /// machine).
    Time,
}

impl InputType {
    /// Every type, as written in plans.
    pub const NAMES: [&'static str; 6] = ["string", "integer", "boolean", "duration", "list", "time"];

    /// The type written as `name`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<InputType> {
        match name {
            "string" => Some(InputType::String),
            "integer" => Some(InputType::Integer),
            "boolean" => Some(InputType::Boolean),
            "duration" => Some(InputType::Duration),
            "list" => Some(InputType::List),
            "time" => Some(InputType::Time),
            _ => None,
        }
    }

    /// "an integer", "a duration": the type in a sentence.
    #[must_use]
    pub fn described(self) -> &'static str {
        match self {
            InputType::String => "a string",
            InputType::Integer => "an integer",
            InputType::Boolean => "true or false",
            InputType::Duration => "a duration such as 90s, 45m or 2h",
            InputType::List => "a list",
            InputType::Time => "a time with its offset such as 2026-12-07T10:29:00+01:00 (RFC 3339)",
        }
    }
}

impl InputSpec {
    /// Checks a value given for this input (a default, `--var`, `--vars-file`) against
    /// its `type` and `enum`, and returns it typed: `--var count=3` gives the text
    /// `"3"`, which an integer input turns into the number 3.
    ///
    /// # Errors
    /// What is wrong, naming the expected type or values and the value given (the
    /// caller names the input).
    pub fn accept(&self, value: &serde_json::Value) -> Result<serde_json::Value, String> {
        use serde_json::Value as Json;
        let given = crate::lang::kind::display(value);
        let typed = match (self.value_type.as_ref().map(|value_type| value_type.value), value) {
            (None, _) | (Some(InputType::String), Json::String(_)) => value.clone(),
            (Some(InputType::String), Json::Number(_) | Json::Bool(_)) => Json::String(given.clone()),
            (Some(InputType::Integer), Json::Number(number)) if number.is_i64() || number.is_u64() => {
                value.clone()
            }
            (Some(InputType::Integer), Json::String(text)) if text.trim().parse::<i64>().is_ok() => {
                Json::from(text.trim().parse::<i64>().unwrap_or_default())
            }
            (Some(InputType::Boolean), Json::Bool(_)) => value.clone(),
            (Some(InputType::Boolean), Json::String(text)) if matches!(text.trim(), "true" | "false") => {
                Json::Bool(text.trim() == "true")
            }
            (Some(InputType::Duration), Json::String(text)) if HumanDuration::parse(text).is_ok() => {
                value.clone()
            }
            (Some(InputType::Time), Json::String(text))
                if chrono::DateTime::parse_from_rfc3339(text.trim()).is_ok() =>
            {
                Json::String(text.trim().to_owned())
            }
            (Some(InputType::List), Json::Array(_)) => value.clone(),
            (Some(InputType::List), Json::String(text)) => Json::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| Json::String(item.to_owned()))
                    .collect(),
            ),
            (Some(expected), _) => {
                return Err(format!("must be {}, got `{given}`", expected.described()));
            }
        };
        if let Some(allowed) = &self.allowed {
            let allowed: Vec<serde_json::Value> = allowed.iter().map(|value| value.0.to_json()).collect();
            let matches = |candidate: &Json| {
                candidate == &typed
                    || crate::lang::kind::display(candidate) == crate::lang::kind::display(&typed)
            };
            if !allowed.iter().any(matches) {
                let names: Vec<String> = allowed.iter().map(crate::lang::kind::display).collect();
                return Err(format!("must be one of {}, got `{given}`", names.join(", ")));
            }
        }
        Ok(typed)
    }
}

/// Where a secret comes from. Give exactly one source.
#[derive(Clone, Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SecretSpec {
    /// An environment variable's name.
    pub env: Option<Located<String>>,
    /// A file whose first line is the secret (like `openssl -pass file:`).
    pub file: Option<Located<String>>,
    /// Where the secret is declared.
    #[schemars(skip)]
    pub span: Span,
}

/// What to do when a step fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Stop the run (default): no new step starts.
    #[default]
    Abort,
    /// Record the failure and go on; steps that need this one are skipped, nothing is
    /// undone, and the run ends "completed with failures" (exit 1).
    Continue,
}

/// Retries of a failing step.
#[derive(Clone, Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts in all (2 = one retry).
    pub attempts: Located<u32>,
    /// Wait before the first retry; doubled at each further retry.
    pub backoff: Option<Located<HumanDuration>>,
}

/// One step.
#[derive(Clone, Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct StepSpec {
    /// Unique id: a-z, 0-9 and `-`, at most 63 characters.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]*$"), length(max = 63))]
    pub id: Located<String>,
    /// The step kind (`dr-plan steps` lists them).
    pub kind: Located<String>,
    /// Steps that must succeed before this one starts.
    #[serde(default)]
    pub needs: Vec<Located<String>>,
    /// The kind's parameters.
    #[serde(default)]
    pub with: Option<AnyValue>,
    /// A template that renders to true or false; false skips the step.
    pub when: Option<Located<String>>,
    /// Deadline of each attempt.
    pub timeout: Option<Located<HumanDuration>>,
    /// Retries with backoff.
    pub retry: Option<RetrySpec>,
    /// Compensate this step when the run is aborted.
    pub undo: Option<Located<bool>>,
    /// Expected duration, for the predicted RTO.
    pub estimate: Option<Located<HumanDuration>>,
    /// What the step is for.
    pub description: Option<Located<String>>,
    /// `abort` (default) or `continue`.
    pub on_failure: Option<Located<OnFailure>>,
    /// The resolved kind (`None` when the kind is unknown; already reported).
    #[schemars(skip)]
    pub resolved_kind: Option<StepKind>,
    /// The whole step.
    #[schemars(skip)]
    pub span: Span,
}

/// The longest plan name or step id, as a DNS label: both become parts of file names,
/// and the name a metric label.
pub const NAME_MAX: usize = 63;

const PLAN_FIELDS: &[&str] =
    &["version", "name", "description", "objectives", "inputs", "vars", "secrets", "steps"];
const OBJECTIVE_FIELDS: &[&str] = &["rto", "rpo"];
const INPUT_FIELDS: &[&str] = &["description", "default", "type", "enum"];
const SECRET_FIELDS: &[&str] = &["env", "file"];
const RETRY_FIELDS: &[&str] = &["attempts", "backoff"];
const STEP_FIELDS: &[&str] = &[
    "id",
    "kind",
    "needs",
    "with",
    "when",
    "timeout",
    "retry",
    "undo",
    "estimate",
    "description",
    "on_failure",
];

/// Decodes a loaded file. Returns the spec when the file's shape allowed building
/// one (it may still carry problems, all reported in the vector).
#[must_use]
pub fn decode(file: &Arc<SourceFile>, root: &Node, kinds: Catalog) -> (Option<PlanSpec>, Vec<Diagnostic>) {
    let toml = file.syntax() == Some(crate::lang::source::Syntax::Toml);
    let mut decoder = Decoder { file, problems: Vec::new(), toml, kinds };
    let spec = decoder.plan(root);
    (spec, decoder.problems)
}

struct Decoder<'a> {
    file: &'a Arc<SourceFile>,
    problems: Vec<Diagnostic>,
    /// Help lines show examples in the file's own syntax.
    toml: bool,
    /// The kinds a step may name.
    kinds: Catalog,
}

impl Decoder<'_> {
    fn error(&mut self, code: Code, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.problems.push(Diagnostic::error(code, self.file, span, message));
        self.problems.last_mut().expect("just pushed")
    }

    fn fields<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<&'n [Entry]> {
        let Some(entries) = node.as_map() else {
            let diagnostic =
                self.error(Code::Type, node.span, format!("{what} must be a map, found {}", node.shape()));
            *diagnostic = diagnostic
                .clone()
                .with_label("expected a map")
                .with_help(format!("fields: {}", allowed.join(", ")));
            return None;
        };
        for entry in entries {
            if !allowed.contains(&entry.key.as_str()) {
                let help = suggestion(&entry.key, allowed.iter().copied());
                let diagnostic = self.error(
                    Code::UnknownField,
                    entry.key_span,
                    format!("unknown field `{}` in {what}", entry.key),
                );
                *diagnostic = diagnostic.clone().with_label("unknown field").with_help(help);
            }
        }
        Some(entries)
    }

    fn required<'n>(&mut self, entries: &'n [Entry], name: &str, what: &str, at: Span) -> Option<&'n Node> {
        let toml_syntax = self.toml;
        let found = field(entries, name);
        if found.is_none() {
            let diagnostic = self.error(Code::MissingField, at, format!("{what} has no `{name}`"));
            let example = if toml_syntax { format!("add `{name} = ...`") } else { format!("add `{name}:`") };
            *diagnostic = diagnostic.clone().with_help(example);
        }
        found
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<Located<String>> {
        match &node.value {
            Value::String(text) => Some(Located { value: text.clone(), span: node.span }),
            Value::Integer(number) => Some(Located { value: number.to_string(), span: node.span }),
            Value::Float(number) => Some(Located { value: number.to_string(), span: node.span }),
            Value::Null | Value::Bool(_) | Value::List(_) | Value::Map(_) => {
                let diagnostic = self.error(
                    Code::Type,
                    node.span,
                    format!("{what} must be a string, found {}", node.shape()),
                );
                *diagnostic = diagnostic.clone().with_label("expected a string").with_help("quote the value");
                None
            }
        }
    }

    fn integer(&mut self, node: &Node, what: &str) -> Option<Located<u32>> {
        match &node.value {
            Value::Integer(number) if u32::try_from(*number).is_ok() => {
                Some(Located { value: u32::try_from(*number).unwrap_or_default(), span: node.span })
            }
            Value::Null
            | Value::Bool(_)
            | Value::Integer(_)
            | Value::Float(_)
            | Value::String(_)
            | Value::List(_)
            | Value::Map(_) => {
                let diagnostic = self.error(
                    Code::Type,
                    node.span,
                    format!("{what} must be a whole number ≥ 0, found {}", node.shape()),
                );
                let help = match &node.value {
                    Value::String(text) if text.trim().parse::<u32>().is_ok() => {
                        "write the number without quotes"
                    }
                    _ => "write a whole number such as 1",
                };
                *diagnostic = diagnostic.clone().with_label("expected a number").with_help(help);
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<Located<bool>> {
        if let Value::Bool(value) = node.value {
            return Some(Located { value, span: node.span });
        }
        let diagnostic = self.error(
            Code::Type,
            node.span,
            format!("{what} must be true or false, found {}", node.shape()),
        );
        *diagnostic = diagnostic
            .clone()
            .with_label("expected true or false")
            .with_help("write `true` or `false` without quotes (YAML 1.2 reads yes/no as text)");
        None
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<Located<HumanDuration>> {
        let text = self.string(node, what)?;
        match HumanDuration::parse(&text.value) {
            Ok(duration) => Some(Located { value: duration, span: text.span }),
            Err(reason) => {
                let diagnostic = self.error(Code::Duration, node.span, format!("{what}: {reason}"));
                *diagnostic = diagnostic
                    .clone()
                    .with_label("not a duration")
                    .with_help("write a duration such as 90s, 45m, 2h or 1h30m");
                None
            }
        }
    }

    fn optional<T>(
        &mut self,
        entries: &[Entry],
        name: &str,
        read: impl FnOnce(&mut Self, &Node) -> Option<T>,
    ) -> Option<T> {
        field(entries, name).and_then(|node| read(self, node))
    }

    fn plan(&mut self, root: &Node) -> Option<PlanSpec> {
        let toml_syntax = self.toml;
        let empty_map = root.as_map().is_some_and(<[Entry]>::is_empty);
        if matches!(root.value, Value::Null) || empty_map {
            let diagnostic = self.error(Code::Empty, root.span, "the plan file is empty");
            let help = if toml_syntax {
                "a plan needs at least `version = 1`, `name = \"...\"` and `[[steps]]`"
            } else {
                "a plan needs at least `version: 1`, `name:` and `steps:`"
            };
            *diagnostic = diagnostic.clone().with_help(help);
            return None;
        }
        let entries = self.fields(root, "the plan", PLAN_FIELDS)?;
        let top = Span::new(root.span.start, root.span.start);
        let version = self
            .required(entries, "version", "the plan", top)
            .and_then(|node| self.integer(node, "`version`"));
        if let Some(version) = &version
            && version.value != 1
        {
            let diagnostic = self.error(
                Code::Version,
                version.span,
                format!("unsupported plan version {}", version.value),
            );
            *diagnostic = diagnostic.clone().with_help("this dr-plan reads plans of version 1");
        }
        let name =
            self.required(entries, "name", "the plan", top).and_then(|node| self.string(node, "`name`"));
        if let Some(name) = &name
            && let Some(flaw) = name_flaw(&name.value, "names")
        {
            // The name is part of paths under the state directory (runs, lock) and of
            // metric labels: `../x` would escape it, a newline would inject lines.
            let help = match suggested_name(&name.value) {
                Some(suggested) => format!("write it as `{suggested}`"),
                None => "write e.g. `db-corruption`".to_owned(),
            };
            let message = if name.value.is_empty() {
                "plan name is empty".to_owned()
            } else {
                format!("plan name `{}` is not valid", name.value.escape_debug())
            };
            let diagnostic = self.error(Code::PlanName, name.span, message);
            *diagnostic = diagnostic
                .clone()
                .with_label(flaw)
                .with_help(format!("{help}; the name is part of the run's file names and metric labels"));
        }
        let description =
            self.optional(entries, "description", |this, node| this.string(node, "`description`"));
        let objectives = field(entries, "objectives").map(|node| self.objectives(node)).unwrap_or_default();
        let inputs = self.named(entries, "inputs", |this, name, node| this.input(name, node));
        let vars = self.named(entries, "vars", |_, _, node| Some(AnyValue(node.clone())));
        let secrets = self.named(entries, "secrets", |this, name, node| this.secret(name, node));
        let steps = match self.required(entries, "steps", "the plan", top) {
            Some(node) => self.steps(node),
            None => Vec::new(),
        };
        Some(PlanSpec {
            version: version.unwrap_or(Located { value: 1, span: top }),
            name: name.unwrap_or(Located { value: String::new(), span: top }),
            description,
            objectives,
            inputs,
            vars,
            secrets,
            steps,
            file: Some(Arc::clone(self.file)),
            kinds: self.kinds,
        })
    }

    fn objectives(&mut self, node: &Node) -> Objectives {
        let Some(entries) = self.fields(node, "`objectives`", OBJECTIVE_FIELDS) else {
            return Objectives::default();
        };
        Objectives {
            rto: self.optional(entries, "rto", |this, node| this.duration(node, "`objectives.rto`")),
            rpo: self.optional(entries, "rpo", |this, node| this.duration(node, "`objectives.rpo`")),
            span: Some(node.span),
        }
    }

    fn named<T>(
        &mut self,
        entries: &[Entry],
        section: &str,
        mut read: impl FnMut(&mut Self, &str, &Node) -> Option<T>,
    ) -> NamedMap<T> {
        let mut map = NamedMap { entries: Vec::new() };
        let Some(node) = field(entries, section) else { return map };
        if matches!(node.value, Value::Null) {
            return map;
        }
        let Some(items) = node.as_map() else {
            // Not a map: `fields` says so, in the words it uses everywhere.
            self.fields(node, &format!("`{section}`"), &[]);
            return map;
        };
        for entry in items {
            let valid_name =
                entry.key.chars().next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
                    && entry.key.chars().all(|character| {
                        character.is_ascii_alphanumeric() || character == '_' || character == '-'
                    });
            if !valid_name {
                let diagnostic =
                    self.error(Code::Name, entry.key_span, format!("`{}` is not a valid name", entry.key));
                *diagnostic = diagnostic
                    .clone()
                    .with_help("names start with a letter and hold letters, digits, `_` and `-`");
                continue;
            }
            if let Some(value) = read(self, &entry.key, &entry.value) {
                map.entries.push((Located { value: entry.key.clone(), span: entry.key_span }, value));
            }
        }
        map
    }

    fn input(&mut self, name: &str, node: &Node) -> Option<InputSpec> {
        if matches!(node.value, Value::Null) {
            return Some(InputSpec { description: None, default: None, value_type: None, allowed: None });
        }
        let entries = self.fields(node, &format!("input `{name}`"), INPUT_FIELDS)?;
        let value_type = self.optional(entries, "type", |this, node| {
            let text = this.string(node, "`type`")?;
            let found = InputType::from_name(&text.value);
            if found.is_none() {
                let help = suggestion(&text.value, InputType::NAMES);
                let diagnostic =
                    this.error(Code::Type, text.span, format!("input type `{}` does not exist", text.value));
                *diagnostic = diagnostic
                    .clone()
                    .with_label("unknown type")
                    .with_help(format!("{help} (types: {})", InputType::NAMES.join(", ")));
            }
            found.map(|value| Located { value, span: text.span })
        });
        let allowed = match field(entries, "enum") {
            None => None,
            Some(Node { value: Value::List(items), .. }) if !items.is_empty() => {
                Some(items.iter().map(|item| AnyValue(item.clone())).collect())
            }
            Some(other) => {
                let diagnostic = self.error(
                    Code::Type,
                    other.span,
                    format!("`enum` of input `{name}` must be a non-empty list"),
                );
                *diagnostic = diagnostic
                    .clone()
                    .with_help("list the values the input accepts, e.g. [eu-west-1, eu-west-2]");
                None
            }
        };
        let input = InputSpec {
            description: self
                .optional(entries, "description", |this, node| this.string(node, "`description`")),
            default: field(entries, "default").map(|node| AnyValue(node.clone())),
            value_type,
            allowed,
        };
        // A default that its own input refuses would fail every run that relies on it;
        // `enum` values are checked against the `type` alone.
        let type_only = InputSpec { allowed: None, ..input.clone() };
        let mut refused = Vec::new();
        if let Some(default) = &input.default
            && let Err(reason) = input.accept(&default.0.to_json())
        {
            refused.push((default.0.span, format!("the default of input `{name}` {reason}")));
        }
        for value in input.allowed.iter().flatten() {
            if let Err(reason) = type_only.accept(&value.0.to_json()) {
                refused.push((value.0.span, format!("a value of the `enum` of input `{name}` {reason}")));
            }
        }
        for (span, message) in refused {
            let diagnostic = self.error(Code::InputValue, span, message);
            *diagnostic = diagnostic
                .clone()
                .with_label("refused by the input's `type` or `enum`")
                .with_help("make the value match the input's `type` and `enum`, or change them");
        }
        Some(input)
    }

    fn secret(&mut self, name: &str, node: &Node) -> Option<SecretSpec> {
        let toml_syntax = self.toml;
        let what = format!("secret `{name}`");
        let entries = self.fields(node, &what, SECRET_FIELDS)?;
        let env = self.optional(entries, "env", |this, node| this.string(node, "`env`"));
        let file = self.optional(entries, "file", |this, node| this.string(node, "`file`"));
        if env.is_some() == file.is_some() {
            let diagnostic =
                self.error(Code::SecretSource, node.span, format!("{what} needs exactly one source"));
            *diagnostic = diagnostic
                .clone()
                .with_label(if env.is_some() { "`env` and `file` both given" } else { "no `env` or `file`" })
                .with_help(if toml_syntax {
                    "write `{ env = \"VARIABLE\" }` or `{ file = \"/path/to/file\" }`; never the secret itself"
                } else {
                    "write `{ env: VARIABLE }` or `{ file: /path/to/file }`; never the secret itself"
                });
            return None;
        }
        // An empty variable name or path would only fail at run time, after steps ran.
        let (source, example) = match (&env, &file) {
            (Some(env), _) => {
                (env, if toml_syntax { "`{ env = \"BACKUP_KEY\" }`" } else { "`{ env: BACKUP_KEY }`" })
            }
            (None, Some(file)) => (
                file,
                if toml_syntax {
                    "`{ file = \"/etc/backup/encryption.key\" }`"
                } else {
                    "`{ file: /etc/backup/encryption.key }`"
                },
            ),
            (None, None) => return None,
        };
        if source.value.trim().is_empty() {
            let (field, help) = if env.is_some() {
                ("env", format!("name the environment variable that holds the secret, e.g. {example}"))
            } else {
                ("file", format!("give the path of the file that holds the secret, e.g. {example}"))
            };
            let diagnostic =
                self.error(Code::SecretSource, source.span, format!("`{field}` of {what} is empty"));
            // The secret stays declared: its uses are not reported as unknown too.
            *diagnostic = diagnostic.clone().with_label("empty").with_help(help);
        }
        Some(SecretSpec { env, file, span: node.span })
    }

    fn steps(&mut self, node: &Node) -> Vec<StepSpec> {
        let toml_syntax = self.toml;
        let Value::List(items) = &node.value else {
            let diagnostic =
                self.error(Code::Type, node.span, format!("`steps` must be a list, found {}", node.shape()));
            *diagnostic = diagnostic.clone().with_help(if toml_syntax {
                "write each step as a `[[steps]]` table"
            } else {
                "write each step as a list item starting with `- id:`"
            });
            return Vec::new();
        };
        if items.is_empty() {
            let diagnostic = self.error(Code::Empty, node.span, "the plan has no steps");
            *diagnostic = diagnostic.clone().with_help("add at least one step");
        }
        items.iter().filter_map(|item| self.step(item)).collect()
    }

    fn step(&mut self, node: &Node) -> Option<StepSpec> {
        let entries = self.fields(node, "a step", STEP_FIELDS)?;
        let at = Span::new(node.span.start, node.span.start);
        let id = self.required(entries, "id", "this step", at).and_then(|node| self.string(node, "`id`"))?;
        self.check_step_id(&id);
        let what = format!("step `{}`", id.value);
        let kind =
            self.required(entries, "kind", &what, id.span).and_then(|node| self.string(node, "`kind`"));
        let resolved_kind = kind.as_ref().and_then(|kind| self.resolve_kind(kind));
        let needs = self.needs(field(entries, "needs"));
        let with = field(entries, "with").map(|node| AnyValue(node.clone()));
        let retry = field(entries, "retry").and_then(|node| self.retry(node));
        let on_failure = self.optional(entries, "on_failure", Self::on_failure);
        Some(StepSpec {
            when: self.optional(entries, "when", |this, node| match &node.value {
                Value::Bool(value) => Some(Located { value: value.to_string(), span: node.span }),
                Value::Null
                | Value::Integer(_)
                | Value::Float(_)
                | Value::String(_)
                | Value::List(_)
                | Value::Map(_) => this.string(node, "`when`"),
            }),
            timeout: self.optional(entries, "timeout", |this, node| this.duration(node, "`timeout`")),
            undo: self.optional(entries, "undo", |this, node| this.boolean(node, "`undo`")),
            estimate: self.optional(entries, "estimate", |this, node| this.duration(node, "`estimate`")),
            description: self
                .optional(entries, "description", |this, node| this.string(node, "`description`")),
            id,
            kind: kind.unwrap_or(Located { value: String::new(), span: at }),
            needs,
            with,
            retry,
            on_failure,
            resolved_kind,
            span: node.span,
        })
    }

    /// Reports an id that is not a valid step name, with a suggested spelling.
    fn check_step_id(&mut self, id: &Located<String>) {
        let Some(flaw) = name_flaw(&id.value, "ids") else {
            return;
        };
        let help = match suggested_name(&id.value) {
            Some(suggested) => format!("write it as `{suggested}`"),
            None => "write e.g. `stop-writers`".to_owned(),
        };
        let message = if id.value.is_empty() {
            "step id is empty".to_owned()
        } else {
            format!("step id `{}` is not valid", id.value.escape_debug())
        };
        let diagnostic = self.error(Code::StepId, id.span, message);
        *diagnostic = diagnostic.clone().with_label(flaw).with_help(help);
    }

    /// The kind a step names, or `None` (reported, with a suggestion) when there is none.
    fn resolve_kind(&mut self, kind: &Located<String>) -> Option<StepKind> {
        let found = StepKind::find(self.kinds, &kind.value);
        if found.is_none() {
            let help = suggestion(&kind.value, self.kinds.iter().map(|kind| kind.name()));
            let diagnostic =
                self.error(Code::UnknownKind, kind.span, format!("unknown step kind `{}`", kind.value));
            *diagnostic = diagnostic
                .clone()
                .with_label("unknown kind")
                .with_help(format!("{help} (`dr-plan steps` lists every kind)"));
        }
        found
    }

    /// The `needs` of a step: a list of step ids (anything else is reported, and read as none).
    fn needs(&mut self, node: Option<&Node>) -> Vec<Located<String>> {
        let toml_syntax = self.toml;
        match node {
            None => Vec::new(),
            Some(Node { value: Value::List(items), .. }) => {
                items.iter().filter_map(|item| self.string(item, "an entry of `needs`")).collect()
            }
            Some(single @ Node { value: Value::String(_), .. }) => {
                let diagnostic = self.error(Code::Type, single.span, "`needs` must be a list of step ids");
                *diagnostic = diagnostic.clone().with_help(if toml_syntax {
                    format!("write `needs = [\"{}\"]`", single.as_str().unwrap_or(""))
                } else {
                    format!("write `needs: [{}]`", single.as_str().unwrap_or(""))
                });
                Vec::new()
            }
            Some(other) => {
                let diagnostic = self.error(
                    Code::Type,
                    other.span,
                    format!("`needs` must be a list of step ids, found {}", other.shape()),
                );
                *diagnostic = diagnostic.clone().with_help(if toml_syntax {
                    "write `needs = [\"step-a\", \"step-b\"]`"
                } else {
                    "write `needs: [step-a, step-b]`"
                });
                Vec::new()
            }
        }
    }

    /// `on_failure`: `abort` or `continue`.
    fn on_failure(&mut self, node: &Node) -> Option<Located<OnFailure>> {
        let text = self.string(node, "`on_failure`")?;
        match text.value.as_str() {
            "abort" => Some(Located { value: OnFailure::Abort, span: text.span }),
            "continue" => Some(Located { value: OnFailure::Continue, span: text.span }),
            other => {
                let help = suggestion(other, ["abort", "continue"]);
                let diagnostic =
                    self.error(Code::Type, text.span, format!("`on_failure` cannot be `{other}`"));
                *diagnostic = diagnostic.clone().with_help(help);
                None
            }
        }
    }

    fn retry(&mut self, node: &Node) -> Option<RetrySpec> {
        let entries = self.fields(node, "`retry`", RETRY_FIELDS)?;
        let attempts = self
            .required(entries, "attempts", "`retry`", node.span)
            .and_then(|node| self.integer(node, "`retry.attempts`"))?;
        if attempts.value == 0 {
            let diagnostic = self.error(
                Code::Retry,
                attempts.span,
                "`retry.attempts` counts every attempt and must be at least 1",
            );
            *diagnostic = diagnostic.clone().with_help("`attempts: 3` runs the step up to three times");
        }
        Some(RetrySpec {
            attempts,
            backoff: self.optional(entries, "backoff", |this, node| this.duration(node, "`retry.backoff`")),
        })
    }
}

/// Why `text` cannot be a plan name or step id, as a label (`noun` is `ids` or
/// `names`); `None` when it is one: `[a-z0-9][a-z0-9-]*`, at most [`NAME_MAX`]
/// characters. Both end up in file names and metric labels.
fn name_flaw(text: &str, noun: &str) -> Option<String> {
    if text.is_empty() {
        return Some(format!("{noun} cannot be empty"));
    }
    if !text
        .chars()
        .all(|character| character.is_ascii_lowercase() || character.is_ascii_digit() || character == '-')
    {
        return Some(format!("{noun} use a-z, 0-9 and -"));
    }
    if text.starts_with('-') {
        return Some(format!("{noun} start with a-z or 0-9"));
    }
    // Only ASCII is left, so bytes are characters.
    (text.len() > NAME_MAX).then(|| format!("{} characters long; {noun} have at most {NAME_MAX}", text.len()))
}

/// A valid name close to `text`: `StopWriters`, `stop_writers` → `stop-writers`,
/// `../../escaped` → `escaped`; `None` when nothing is left.
fn suggested_name(text: &str) -> Option<String> {
    let mut suggested = String::new();
    let mut previous_lowercase = false;
    for character in text.chars() {
        if character.is_ascii_alphanumeric() {
            if character.is_ascii_uppercase() && previous_lowercase {
                suggested.push('-');
            }
            previous_lowercase = character.is_ascii_lowercase() || character.is_ascii_digit();
            suggested.push(character.to_ascii_lowercase());
        } else {
            previous_lowercase = false;
            if !suggested.is_empty() && !suggested.ends_with('-') {
                suggested.push('-');
            }
        }
    }
    suggested.truncate(NAME_MAX);
    let suggested = suggested.trim_end_matches('-');
    (!suggested.is_empty()).then(|| suggested.to_owned())
}

fn field<'n>(entries: &'n [Entry], name: &str) -> Option<&'n Node> {
    entries.iter().find(|entry| entry.key == name).map(|entry| &entry.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_text(name: &str, text: &str) -> (Option<PlanSpec>, Vec<Diagnostic>) {
        let file = SourceFile::new(name, text);
        let node = crate::lang::load::load(&file).unwrap();
        decode(&file, &node, crate::kinds::CATALOG)
    }

    #[test]
    fn the_decoder_knows_the_same_fields_as_the_schema() {
        let schema = schemars::schema_for!(PlanSpec).to_value();
        let mut properties: Vec<&str> =
            schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        properties.sort_unstable();
        let mut fields = PLAN_FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(properties, fields);
    }

    #[test]
    fn reports_every_problem_at_once() {
        let (_, problems) = decode_text(
            "p.yaml",
            "version: 1\nname: x\nobjectivs: {}\nsteps:\n  - id: Bad_Id\n    kind: k8s.scal\n    timeout: soon\n    neds: [a]\n",
        );
        let codes: Vec<&str> = problems.iter().map(|problem| problem.code).collect();
        assert_eq!(codes, ["unknown-field", "unknown-field", "step-id", "unknown-kind", "duration"]);
        assert!(problems[0].help.as_deref().unwrap().contains("objectives"));
        assert!(problems[1].help.as_deref().unwrap().contains("needs"));
        assert!(problems[3].help.as_deref().unwrap().contains("k8s.scale"));
    }

    #[test]
    fn names_and_ids_are_dns_labels_and_a_valid_one_is_suggested() {
        assert_eq!(name_flaw("db-corruption", "names"), None);
        assert_eq!(name_flaw(&"a".repeat(NAME_MAX), "names"), None);
        assert!(name_flaw(&"a".repeat(NAME_MAX + 1), "names").unwrap().contains("at most 63"));
        for invalid in ["", "-a", "../../escaped", "a\nb", "Stop", "é"] {
            assert!(name_flaw(invalid, "names").is_some(), "{invalid:?}");
        }
        assert_eq!(suggested_name("StopWriters").as_deref(), Some("stop-writers"));
        assert_eq!(suggested_name("stop_writers").as_deref(), Some("stop-writers"));
        assert_eq!(suggested_name("../../escaped").as_deref(), Some("escaped"));
        assert_eq!(suggested_name("db\ncorruption").as_deref(), Some("db-corruption"));
        assert_eq!(suggested_name("../"), None);
    }

    #[test]
    fn a_plan_name_that_is_not_a_name_is_located() {
        let (_, problems) =
            decode_text("p.yaml", "version: 1\nname: ../x\nsteps:\n  - { id: a, kind: sleep }\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].code, "plan-name");
        let file = problems[0].file.as_ref().unwrap();
        assert_eq!(file.slice(problems[0].primary_span().unwrap()), "../x");
    }
}
