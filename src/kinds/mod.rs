//! The step library: one file per kind, and the table below, the only place that lists
//! them. Each kind's file declares everything about it: its [`KindInfo`] (name,
//! parameters and outputs types, destructiveness, idempotency, undo, lint role, dry-run
//! sentence) and its [`Kind`] (how it runs, checks and undoes). Validation, lint, the
//! dry-run, `dr-plan steps`, the JSON Schema and the docs all read the table.

mod declared_outputs;
#[cfg(test)]
mod parameter_schemas;
mod runtime;
mod s3_object;
mod shared;
pub mod stop;

pub use crate::lang::kind::{
    Catalog, CheckedText, KindInfo, OutputInfo, Params, RequiredValue, Role, StepKind, Verifies, display,
    schema_of,
};
pub use crate::sys::progress::{Progress, ProgressSink, ProgressUnit, StepUpdate};
pub use declared_outputs::StepOutputs;
use declared_outputs::step_outputs;
pub use runtime::{
    ApprovalMode, Asker, BoxFuture, Kind, MemoryStore, Outputs, Preflight, PreflightContext, Question,
    RepairFn, StepContext, StepError, Verdict, can_repair, execute, parameters, preflight, repair, undo,
};
pub use s3_object::{ChecksumSource, ObjectSource};
pub use shared::{Compression, Encryption, EncryptionFormat};

/// Declares the kinds' modules, the table of how they run and the catalog of what they
/// declare, from one list.
macro_rules! kinds {
    ($($module:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Every kind with what runs it, in catalog order.
        pub const TABLE: &[&Kind] = &[$(&$module::KIND),*];

        /// Every kind a plan may use, in catalog order.
        pub const CATALOG: Catalog = &[$(StepKind::of(&$module::INFO)),*];
    };
}

kinds! {
    k8s_scale,
    k8s_wait,
    k8s_job,
    k8s_apply,
    velero_restore,
    s3_fetch,
    s3_put,
    pg_dump,
    pg_restore,
    pg_query,
    pg_swap,
    pg_pitr,
    pg_drop,
    redis_restore,
    route53_change,
    http_check,
    notify,
    approval,
    exec,
    sleep,
}

/// The kinds whose steps can leave a live system half-changed when their process dies,
/// with what puts it back (`status` and `resume` call it first).
pub const REPAIRS: &[(&KindInfo, RepairFn)] = &[(&pg_swap::INFO, pg_swap::REPAIR)];

/// The kind written as `name`.
#[must_use]
pub fn find(name: &str) -> Option<StepKind> {
    StepKind::find(CATALOG, name)
}

/// Reads, parses, decodes and validates a plan file against every kind.
///
/// # Errors
/// Every problem found, located.
pub fn load_plan(
    path: &std::path::Path,
) -> Result<crate::lang::plan::Plan, Vec<crate::lang::diagnostic::Diagnostic>> {
    crate::lang::plan::load_plan(path, CATALOG)
}

/// Parses, decodes and validates plan text against every kind.
///
/// # Errors
/// Every problem found, located.
pub fn plan_from_source(
    file: &std::sync::Arc<crate::lang::source::SourceFile>,
) -> Result<crate::lang::plan::Plan, Vec<crate::lang::diagnostic::Diagnostic>> {
    crate::lang::plan::plan_from_source(file, CATALOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_every_kind_has_a_schema() {
        for &kind in CATALOG {
            assert_eq!(find(kind.name()), Some(kind));
            assert!(TABLE.iter().any(|entry| entry.info.name == kind.name()), "{} runs", kind.name());
            let schema = kind.parameters_schema();
            assert_eq!(schema["type"], "object", "{}", kind.name());
            assert_eq!(schema["additionalProperties"], false, "{} must deny unknown parameters", kind.name());
        }
    }

    #[test]
    fn the_declared_outputs_are_the_fields_of_the_outputs_type() {
        for &kind in CATALOG {
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
        assert_eq!(find("exec").unwrap().describe_undo(&exec).as_deref(), Some("run `helm rollback api 3`"));
        assert!(
            find("k8s.scale")
                .unwrap()
                .describe_undo(&serde_json::Value::Null)
                .unwrap()
                .contains("previous replicas")
        );
        assert!(
            find("route53.change")
                .unwrap()
                .describe_undo(&serde_json::Value::Null)
                .unwrap()
                .contains("previous DNS records")
        );
        assert_eq!(find("sleep").unwrap().describe_undo(&serde_json::Value::Null), None);
    }
}
