//! What the plan language knows of a step kind: everything a kind declares about itself
//! ([`KindInfo`]), read by validation, the dry-run, lint, the schema and the docs. The
//! kinds themselves live in `crate::kinds`, whose table is the only list of them; the
//! language receives that list ([`Catalog`]) and never names a kind.

use std::fmt;

use serde_json::Value as Json;

/// An output a kind produces, readable as `steps.<id>.outputs.<name>`.
#[derive(Debug)]
pub struct OutputInfo {
    /// The name.
    pub name: &'static str,
    /// What it holds.
    pub description: &'static str,
}

/// What a kind is for, as the DR-safety rules (lint) and the run read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Puts a backup file back into a live system.
    Restore {
        /// The parameter naming the file put in place (`dump`, `rdb`).
        file: &'static str,
        /// The parameters naming what it restores into (same values = same target).
        target: &'static [&'static str],
        /// The flag that makes it drop what the target holds first (`clean`), if any.
        overwrite_flag: Option<&'static str>,
        /// The parameter and value that make it restore into a new copy beside the
        /// target instead, leaving the target untouched (`into: side`), if any.
        side: Option<(&'static str, &'static str)>,
    },
    /// Puts a database restored beside the target in its place; the target is kept
    /// under another name unless `keep_flag` is false.
    Swap {
        /// The parameters naming the target replaced (same values = same target).
        target: &'static [&'static str],
        /// The parameter naming what takes its place.
        replacement: &'static str,
        /// The flag (default true) that keeps the replaced target.
        keep_flag: &'static str,
    },
    /// Backs up what a [`Role::Restore`] with the same `target` values overwrites.
    Backup {
        /// The parameters naming what it backs up.
        target: &'static [&'static str],
    },
    /// Downloads an artifact, verified unless `checksum` says `none`.
    Fetch {
        /// The parameter choosing the checksum (`none` turns verification off).
        checksum: &'static str,
    },
    /// Checks that a service answers (the health check DNS should wait for).
    HealthCheck,
    /// Points DNS somewhere else.
    DnsSwitch,
    /// Waits for an operator's yes.
    Approval,
    /// None of the above.
    Other,
}

/// A parameter a step may give only with another parameter set to one value
/// (`pg.restore`'s `from_s3` needs `into: side`), checked by validation.
#[derive(Debug)]
pub struct RequiredValue {
    /// The parameter that needs the other.
    pub parameter: &'static str,
    /// The other parameter.
    pub other: &'static str,
    /// The value the other must have.
    pub value: &'static str,
    /// Why, for the help line.
    pub why: &'static str,
}

/// A text parameter whose value the kind checks at validation (see
/// [`KindInfo::checked_text`]).
#[derive(Debug)]
pub struct CheckedText {
    /// Its path inside `with`, dot-separated (`from_s3.taken_at.key_pattern`).
    pub path: &'static str,
    /// `Err((what is wrong, what to do))` for a value that cannot work.
    pub check: fn(&str) -> Result<(), (String, String)>,
}

/// Whether a step of the kind checks that a recovery worked (lint DRP009).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verifies {
    /// Always.
    Always,
    /// When this parameter is given (`expect_keys` of `redis.restore`).
    WhenSet(&'static str),
    /// Never.
    Never,
}

/// What a kind declares about itself. Every field is read by name elsewhere: validation
/// (`exclusive`, `non_empty`, `requires_value`, `undo_parameter`, the schemas), the dry-run (`describe`,
/// `describe_undo`), lint (`role`, `verifies`, `argv_parameters`, `object_keys`), the
/// catalog and docs (summary, notes, example, outputs).
#[derive(Debug)]
pub struct KindInfo {
    /// The name written in plans (`pg.restore`).
    pub name: &'static str,
    /// One line: what it does.
    pub summary: &'static str,
    /// Whether it changes or removes something that cannot simply be read back.
    pub destructive: bool,
    /// A boolean parameter that makes a step of this kind destructive (`exec`'s
    /// `destructive`), for kinds that cannot know.
    pub destructive_parameter: Option<&'static str>,
    /// Whether running it twice has the same effect as once (so resume may re-run it).
    pub idempotent: bool,
    /// What `undo: true` does, when the kind has a compensation.
    pub undo: Option<&'static str>,
    /// The parameter holding the compensation, when the plan writes it (`exec`'s `undo`).
    pub undo_parameter: Option<&'static str>,
    /// Outputs: the `DECLARED` list of the type its `run` returns.
    pub outputs: &'static [OutputInfo],
    /// What `dry-run --preflight` checks.
    pub preflight: &'static str,
    /// More documentation (markdown) for `dr-plan steps KIND` and the docs page.
    pub notes: &'static str,
    /// An example step.
    pub example: &'static str,
    /// Markdown sections for the end of the kind's docs page (`## ` headings, whole
    /// example plans), printed as written; empty for most kinds.
    pub guide: &'static str,
    /// Parameters that hold a program and its arguments (argv lists): lint looks for
    /// templates pasted into a shell script there.
    pub argv_parameters: &'static [&'static str],
    /// Pairs of parameters of which exactly one must be given.
    pub exclusive: &'static [(&'static str, &'static str)],
    /// Groups of more than two parameters of which exactly one must be given
    /// (`pg.restore`'s `dump`, `from_s3`, `from_server`).
    pub one_of: &'static [&'static [&'static str]],
    /// Text parameters (paths inside `with`, e.g. `from_s3.taken_at.key_pattern`) whose
    /// written value a kind checks when the plan is validated: the check returns what is
    /// wrong and what to write instead. A template there is checked when it is rendered.
    pub checked_text: &'static [CheckedText],
    /// List parameters that must not be empty, with the help shown when one is.
    pub non_empty: &'static [(&'static str, &'static str)],
    /// Parameters allowed only with another parameter set to a value.
    pub requires_value: &'static [RequiredValue],
    /// The parameters named `key` that name an object, not a secret key (`key`,
    /// `from_s3.key`, as paths inside `with`): lint's secret rule leaves their literal
    /// values alone.
    pub object_keys: &'static [&'static str],
    /// What it is for (lint).
    pub role: Role,
    /// The parameter holding an object it restores as it downloads (`from_s3`: the
    /// object parameters of a fetch, whose `checksum: none` turns verification off), for
    /// lint's unverified-input rule.
    pub streamed_object: Option<&'static str>,
    /// The parameter naming another server whose data it restores (`from_server`, with
    /// its `connection`), for lint's unverified-input rule: such data has no checksum, and
    /// is vouched for only when the server is made by a step of the plan.
    pub streamed_server: Option<&'static str>,
    /// The output measuring how long the service was unavailable during this step (the
    /// rename window of `pg.swap`), which reports show beside the RTO.
    pub unavailability_output: Option<&'static str>,
    /// Whether it checks that a recovery worked (lint).
    pub verifies: Verifies,
    /// The JSON Schema of its `with:` parameters, generated from its type.
    pub parameters_schema: fn() -> Json,
    /// The JSON Schema of its outputs, generated from the type its `run` returns.
    pub outputs_schema: fn() -> Json,
    /// The dry-run sentence for rendered parameters (unknown values are placeholders
    /// such as `<fetch.path>`).
    pub describe: fn(&Params<'_>) -> String,
    /// What `undo: true` does for these parameters, when that depends on them; else
    /// the `undo` text.
    pub describe_undo: Option<fn(&Params<'_>) -> String>,
}

impl KindInfo {
    /// The facts most kinds share, for `..KindInfo::COMMON` in a kind's declaration:
    /// not destructive, no undo, no special parameters, no lint role. Name, summary,
    /// schemas and the dry-run sentence are always the kind's own.
    pub const COMMON: KindInfo = KindInfo {
        name: "",
        summary: "",
        destructive: false,
        destructive_parameter: None,
        idempotent: false,
        undo: None,
        undo_parameter: None,
        outputs: &[],
        preflight: "",
        notes: "",
        example: "",
        guide: "",
        argv_parameters: &[],
        exclusive: &[],
        one_of: &[],
        checked_text: &[],
        non_empty: &[],
        requires_value: &[],
        object_keys: &[],
        role: Role::Other,
        streamed_object: None,
        streamed_server: None,
        unavailability_output: None,
        verifies: Verifies::Never,
        parameters_schema: || Json::Null,
        outputs_schema: || Json::Null,
        describe: |_| String::new(),
        describe_undo: None,
    };
}

/// A kind of step, as a plan names it: a handle on what the kind declares.
#[derive(Clone, Copy)]
pub struct StepKind(&'static KindInfo);

/// Every kind a plan may use (the table in `crate::kinds`).
pub type Catalog = &'static [StepKind];

impl StepKind {
    /// The kind declared by `info`.
    #[must_use]
    pub const fn of(info: &'static KindInfo) -> StepKind {
        StepKind(info)
    }

    /// The name written in plans.
    #[must_use]
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// What the kind declares.
    #[must_use]
    pub fn info(self) -> &'static KindInfo {
        self.0
    }

    /// The kind of `catalog` written as `name`.
    #[must_use]
    pub fn find(catalog: Catalog, name: &str) -> Option<StepKind> {
        catalog.iter().copied().find(|kind| kind.name() == name)
    }

    /// The JSON Schema of the kind's `with:` parameters.
    #[must_use]
    pub fn parameters_schema(self) -> Json {
        (self.0.parameters_schema)()
    }

    /// The JSON Schema of the kind's outputs.
    #[must_use]
    pub fn outputs_schema(self) -> Json {
        (self.0.outputs_schema)()
    }

    /// The dry-run sentence for rendered parameters.
    #[must_use]
    pub fn describe(self, with: &Json) -> String {
        (self.0.describe)(&Params(with))
    }

    /// What `undo: true` would do for a step with these rendered parameters, in the
    /// dry-run's words; `None` when the kind has no undo (validation refuses `undo: true`
    /// there).
    #[must_use]
    pub fn describe_undo(self, with: &Json) -> Option<String> {
        match self.0.describe_undo {
            Some(describe) => Some(describe(&Params(with))),
            None => self.0.undo.map(str::to_owned),
        }
    }

    /// Whether a step of this kind with these parameters is destructive. Most kinds
    /// decide once for all; `destructive_parameter` lets the plan say.
    #[must_use]
    pub fn is_destructive(self, with: &Json) -> bool {
        match self.0.destructive_parameter {
            Some(parameter) => with.get(parameter).and_then(Json::as_bool).unwrap_or(false),
            None => self.0.destructive,
        }
    }

    /// Whether the kind declares an output called `name`.
    #[must_use]
    pub fn has_output(self, name: &str) -> bool {
        self.0.outputs.iter().any(|output| output.name == name)
    }

    /// Whether a step of this kind waits for an operator's yes.
    #[must_use]
    pub fn asks_approval(self) -> bool {
        self.0.role == Role::Approval
    }
}

impl PartialEq for StepKind {
    fn eq(&self, other: &StepKind) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for StepKind {}

impl std::hash::Hash for StepKind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl fmt::Debug for StepKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "StepKind({})", self.0.name)
    }
}

/// Generates the schema of a parameters or outputs type, subschemas inlined so that
/// validation and documentation read one self-contained tree.
#[must_use]
pub fn schema_of<T: schemars::JsonSchema>() -> Json {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    schema
}

/// Read access to rendered parameters for dry-run sentences.
pub struct Params<'a>(pub &'a Json);

impl Params<'_> {
    /// The value at `key` as text, or `default` when absent.
    #[must_use]
    pub fn text_or(&self, key: &str, default: &str) -> String {
        match self.0.get(key) {
            None | Some(Json::Null) => default.to_owned(),
            Some(value) => display(value),
        }
    }

    /// The value at `key` as text, or `?` when absent.
    #[must_use]
    pub fn text(&self, key: &str) -> String {
        self.text_or(key, "?")
    }

    /// Whether `key` is present and not null.
    #[must_use]
    pub fn has(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|value| !value.is_null())
    }

    /// The boolean at `key`, or `default`.
    #[must_use]
    pub fn flag(&self, key: &str, default: bool) -> bool {
        match self.0.get(key) {
            Some(Json::Bool(value)) => *value,
            Some(Json::String(text)) => text == "true",
            _ => default,
        }
    }

    /// The list at `key` (empty when absent).
    #[must_use]
    pub fn list(&self, key: &str) -> Vec<&Json> {
        self.0.get(key).and_then(Json::as_array).map(|items| items.iter().collect()).unwrap_or_default()
    }

    /// The raw value.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.0.get(key)
    }
}

/// A JSON value as a person reads it: strings bare, lists comma-separated.
#[must_use]
pub fn display(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        Json::Array(items) => items.iter().map(display).collect::<Vec<_>>().join(" "),
        Json::Null | Json::Bool(_) | Json::Number(_) | Json::Object(_) => value.to_string(),
    }
}
