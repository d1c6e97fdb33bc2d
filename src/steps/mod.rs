//! The step library: one module per kind, a closed enum of kinds, and the catalog
//! every kind declares (typed parameters, outputs, destructiveness, idempotency, its
//! dry-run sentence). The catalog is the contract: validation, `dr-plan steps`, the
//! JSON Schema and the docs pages are all read from it.

use serde_json::Value as Json;

pub mod approval;
pub mod exec;
pub mod http_check;
pub mod k8s_apply;
pub mod k8s_job;
pub mod k8s_scale;
pub mod k8s_wait;
pub mod notify;
pub mod pg_dump;
pub mod pg_query;
pub mod pg_restore;
pub mod redis_restore;
pub mod route53_change;
pub mod s3_fetch;
pub mod s3_put;
pub mod sleep;
pub mod velero_restore;

mod declared_outputs;
mod kubernetes;
pub mod orphan_watchdog;
mod postgres;
pub mod process_tree;
mod runtime;
mod s3_client;
mod shared;
pub use declared_outputs::StepOutputs;
use declared_outputs::step_outputs;
pub use runtime::{
    ApprovalMode, Asker, Outputs, Preflight, PreflightContext, Progress, ProgressSink, ProgressUnit,
    Question, StepContext, StepError, StepUpdate, Verdict, parameters,
};
pub use shared::{Compression, Encryption, EncryptionFormat};

/// Every kind of step dr-plan knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StepKind {
    /// `k8s.scale`
    K8sScale,
    /// `k8s.wait`
    K8sWait,
    /// `k8s.job`
    K8sJob,
    /// `k8s.apply`
    K8sApply,
    /// `velero.restore`
    VeleroRestore,
    /// `s3.fetch`
    S3Fetch,
    /// `s3.put`
    S3Put,
    /// `pg.dump`
    PgDump,
    /// `pg.restore`
    PgRestore,
    /// `pg.query`
    PgQuery,
    /// `redis.restore`
    RedisRestore,
    /// `route53.change`
    Route53Change,
    /// `http.check`
    HttpCheck,
    /// `notify`
    Notify,
    /// `approval`
    Approval,
    /// `exec`
    Exec,
    /// `sleep`
    Sleep,
}

/// An output a kind produces, readable as `steps.<id>.outputs.<name>`.
#[derive(Debug)]
pub struct OutputInfo {
    /// The name.
    pub name: &'static str,
    /// What it holds.
    pub description: &'static str,
}

/// What a kind declares about itself.
#[derive(Debug)]
pub struct KindInfo {
    /// Parameters that hold a program and its arguments (argv lists): lint looks for
    /// templates pasted into a shell script there.
    pub argv_parameters: &'static [&'static str],
    /// One line: what it does.
    pub summary: &'static str,
    /// Whether it changes or removes something that cannot simply be read back.
    pub destructive: bool,
    /// Whether running it twice has the same effect as once (so resume may re-run it).
    pub idempotent: bool,
    /// What `undo: true` does, when the kind has a compensation.
    pub undo: Option<&'static str>,
    /// Outputs: the `DECLARED` list of the type its `run` returns ([`StepOutputs`]).
    pub outputs: &'static [OutputInfo],
    /// What `dry-run --preflight` checks.
    pub preflight: &'static str,
    /// More documentation (markdown) for `dr-plan steps KIND` and the docs page.
    pub notes: &'static str,
    /// An example step.
    pub example: &'static str,
}

impl StepKind {
    /// Every kind, in catalog order.
    pub const ALL: [StepKind; 17] = [
        StepKind::K8sScale,
        StepKind::K8sWait,
        StepKind::K8sJob,
        StepKind::K8sApply,
        StepKind::VeleroRestore,
        StepKind::S3Fetch,
        StepKind::S3Put,
        StepKind::PgDump,
        StepKind::PgRestore,
        StepKind::PgQuery,
        StepKind::RedisRestore,
        StepKind::Route53Change,
        StepKind::HttpCheck,
        StepKind::Notify,
        StepKind::Approval,
        StepKind::Exec,
        StepKind::Sleep,
    ];

    /// The name written in plans.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            StepKind::K8sScale => "k8s.scale",
            StepKind::K8sWait => "k8s.wait",
            StepKind::K8sJob => "k8s.job",
            StepKind::K8sApply => "k8s.apply",
            StepKind::VeleroRestore => "velero.restore",
            StepKind::S3Fetch => "s3.fetch",
            StepKind::S3Put => "s3.put",
            StepKind::PgDump => "pg.dump",
            StepKind::PgRestore => "pg.restore",
            StepKind::PgQuery => "pg.query",
            StepKind::RedisRestore => "redis.restore",
            StepKind::Route53Change => "route53.change",
            StepKind::HttpCheck => "http.check",
            StepKind::Notify => "notify",
            StepKind::Approval => "approval",
            StepKind::Exec => "exec",
            StepKind::Sleep => "sleep",
        }
    }

    /// The kind written as `name`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<StepKind> {
        StepKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// What the kind declares.
    #[must_use]
    pub fn info(self) -> &'static KindInfo {
        match self {
            StepKind::K8sScale => &k8s_scale::INFO,
            StepKind::K8sWait => &k8s_wait::INFO,
            StepKind::K8sJob => &k8s_job::INFO,
            StepKind::K8sApply => &k8s_apply::INFO,
            StepKind::VeleroRestore => &velero_restore::INFO,
            StepKind::S3Fetch => &s3_fetch::INFO,
            StepKind::S3Put => &s3_put::INFO,
            StepKind::PgDump => &pg_dump::INFO,
            StepKind::PgRestore => &pg_restore::INFO,
            StepKind::PgQuery => &pg_query::INFO,
            StepKind::RedisRestore => &redis_restore::INFO,
            StepKind::Route53Change => &route53_change::INFO,
            StepKind::HttpCheck => &http_check::INFO,
            StepKind::Notify => &notify::INFO,
            StepKind::Approval => &approval::INFO,
            StepKind::Exec => &exec::INFO,
            StepKind::Sleep => &sleep::INFO,
        }
    }

    /// The JSON Schema of the kind's `with:` parameters, generated from its type.
    #[must_use]
    pub fn parameters_schema(self) -> Json {
        match self {
            StepKind::K8sScale => schema_of::<k8s_scale::Parameters>(),
            StepKind::K8sWait => schema_of::<k8s_wait::Parameters>(),
            StepKind::K8sJob => schema_of::<k8s_job::Parameters>(),
            StepKind::K8sApply => schema_of::<k8s_apply::Parameters>(),
            StepKind::VeleroRestore => schema_of::<velero_restore::Parameters>(),
            StepKind::S3Fetch => schema_of::<s3_fetch::Parameters>(),
            StepKind::S3Put => schema_of::<s3_put::Parameters>(),
            StepKind::PgDump => schema_of::<pg_dump::Parameters>(),
            StepKind::PgRestore => schema_of::<pg_restore::Parameters>(),
            StepKind::PgQuery => schema_of::<pg_query::Parameters>(),
            StepKind::RedisRestore => schema_of::<redis_restore::Parameters>(),
            StepKind::Route53Change => schema_of::<route53_change::Parameters>(),
            StepKind::HttpCheck => schema_of::<http_check::Parameters>(),
            StepKind::Notify => schema_of::<notify::Parameters>(),
            StepKind::Approval => schema_of::<approval::Parameters>(),
            StepKind::Exec => schema_of::<exec::Parameters>(),
            StepKind::Sleep => schema_of::<sleep::Parameters>(),
        }
    }

    /// The JSON Schema of the kind's outputs, generated from the type its `run` returns.
    #[must_use]
    pub fn outputs_schema(self) -> Json {
        match self {
            StepKind::K8sScale => schema_of::<k8s_scale::K8sScaleOutputs>(),
            StepKind::K8sWait => schema_of::<k8s_wait::K8sWaitOutputs>(),
            StepKind::K8sJob => schema_of::<k8s_job::K8sJobOutputs>(),
            StepKind::K8sApply => schema_of::<k8s_apply::K8sApplyOutputs>(),
            StepKind::VeleroRestore => schema_of::<velero_restore::VeleroRestoreOutputs>(),
            StepKind::S3Fetch => schema_of::<s3_fetch::S3FetchOutputs>(),
            StepKind::S3Put => schema_of::<s3_put::S3PutOutputs>(),
            StepKind::PgDump => schema_of::<pg_dump::PgDumpOutputs>(),
            StepKind::PgRestore => schema_of::<pg_restore::PgRestoreOutputs>(),
            StepKind::PgQuery => schema_of::<pg_query::PgQueryOutputs>(),
            StepKind::RedisRestore => schema_of::<redis_restore::RedisRestoreOutputs>(),
            StepKind::Route53Change => schema_of::<route53_change::Route53ChangeOutputs>(),
            StepKind::HttpCheck => schema_of::<http_check::HttpCheckOutputs>(),
            StepKind::Notify => schema_of::<notify::NotifyOutputs>(),
            StepKind::Approval => schema_of::<approval::ApprovalOutputs>(),
            StepKind::Exec => schema_of::<exec::ExecOutputs>(),
            StepKind::Sleep => schema_of::<sleep::SleepOutputs>(),
        }
    }

    /// The dry-run sentence for rendered parameters (unknown values appear as
    /// placeholders such as `<fetch.path>`).
    #[must_use]
    pub fn describe(self, with: &Json) -> String {
        let with = Params(with);
        match self {
            StepKind::K8sScale => k8s_scale::describe(&with),
            StepKind::K8sWait => k8s_wait::describe(&with),
            StepKind::K8sJob => k8s_job::describe(&with),
            StepKind::K8sApply => k8s_apply::describe(&with),
            StepKind::VeleroRestore => velero_restore::describe(&with),
            StepKind::S3Fetch => s3_fetch::describe(&with),
            StepKind::S3Put => s3_put::describe(&with),
            StepKind::PgDump => pg_dump::describe(&with),
            StepKind::PgRestore => pg_restore::describe(&with),
            StepKind::PgQuery => pg_query::describe(&with),
            StepKind::RedisRestore => redis_restore::describe(&with),
            StepKind::Route53Change => route53_change::describe(&with),
            StepKind::HttpCheck => http_check::describe(&with),
            StepKind::Notify => notify::describe(&with),
            StepKind::Approval => approval::describe(&with),
            StepKind::Exec => exec::describe(&with),
            StepKind::Sleep => sleep::describe(&with),
        }
    }

    /// What `undo: true` would do for a step with these rendered parameters, in the
    /// dry-run's words; `None` when the kind has no undo (validation refuses `undo: true`
    /// there).
    #[must_use]
    pub fn describe_undo(self, with: &Json) -> Option<String> {
        let with = Params(with);
        match self {
            StepKind::Exec => Some(if with.has("undo") {
                format!("run `{}`", with.text("undo"))
            } else {
                "nothing: `with.undo` is not set".to_owned()
            }),
            StepKind::K8sScale => Some("scale back to the previous replicas (read at run time)".to_owned()),
            StepKind::Route53Change => {
                Some("restore the previous DNS records (and health checks)".to_owned())
            }
            StepKind::K8sWait
            | StepKind::K8sJob
            | StepKind::K8sApply
            | StepKind::VeleroRestore
            | StepKind::S3Fetch
            | StepKind::S3Put
            | StepKind::PgDump
            | StepKind::PgRestore
            | StepKind::PgQuery
            | StepKind::RedisRestore
            | StepKind::HttpCheck
            | StepKind::Notify
            | StepKind::Approval
            | StepKind::Sleep => self.info().undo.map(str::to_owned),
        }
    }

    /// Whether a step of this kind with these parameters is destructive. Most kinds
    /// decide once for all; `exec` lets the plan say.
    #[must_use]
    pub fn is_destructive(self, with: &Json) -> bool {
        match self {
            StepKind::Exec => with.get("destructive").and_then(Json::as_bool).unwrap_or(false),
            StepKind::K8sScale
            | StepKind::K8sWait
            | StepKind::K8sJob
            | StepKind::K8sApply
            | StepKind::VeleroRestore
            | StepKind::S3Fetch
            | StepKind::S3Put
            | StepKind::PgDump
            | StepKind::PgRestore
            | StepKind::PgQuery
            | StepKind::RedisRestore
            | StepKind::Route53Change
            | StepKind::HttpCheck
            | StepKind::Notify
            | StepKind::Approval
            | StepKind::Sleep => self.info().destructive,
        }
    }

    /// Whether the kind declares an output called `name`.
    #[must_use]
    pub fn has_output(self, name: &str) -> bool {
        self.info().outputs.iter().any(|output| output.name == name)
    }
}

/// Generates the schema of a parameters or outputs type, subschemas inlined so that validation
/// and documentation read one self-contained tree.
fn schema_of<T: schemars::JsonSchema>() -> Json {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_every_kind_has_a_schema() {
        for kind in StepKind::ALL {
            assert_eq!(StepKind::from_name(kind.name()), Some(kind));
            let schema = kind.parameters_schema();
            assert_eq!(schema["type"], "object", "{}", kind.name());
            assert_eq!(schema["additionalProperties"], false, "{} must deny unknown parameters", kind.name());
        }
    }

    #[test]
    fn the_declared_outputs_are_the_fields_of_the_outputs_type() {
        for kind in StepKind::ALL {
            let schema = kind.outputs_schema();
            let fields: Vec<(&str, String)> = schema["properties"]
                .as_object()
                .map(|properties| {
                    properties
                        .iter()
                        .map(|(name, property)| {
                            let description = property["description"].as_str().unwrap_or_default();
                            (name.as_str(), description.replace('\n', " "))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let declared: Vec<(&str, String)> = kind
                .info()
                .outputs
                .iter()
                .map(|output| (output.name, output.description.to_owned()))
                .collect();
            assert_eq!(fields, declared, "{}", kind.name());
        }
    }

    #[test]
    fn undo_sentences_say_what_the_compensation_does() {
        let exec = serde_json::json!({ "command": ["helm", "upgrade", "api"], "undo": ["helm", "rollback", "api", "3"] });
        assert_eq!(StepKind::Exec.describe_undo(&exec).as_deref(), Some("run `helm rollback api 3`"));
        assert!(StepKind::K8sScale.describe_undo(&Json::Null).unwrap().contains("previous replicas"));
        assert!(StepKind::Route53Change.describe_undo(&Json::Null).unwrap().contains("previous DNS records"));
        assert_eq!(StepKind::Sleep.describe_undo(&Json::Null), None);
    }
}
