//! `k8s.job`: create a Job (inline, or from a CronJob's template), wait, keep its logs.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, OutputInfo, Params};
use crate::duration::HumanDuration;

/// Parameters of `k8s.job`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The namespace.
    pub namespace: String,
    /// The Job's name (default: `<step id>-<run id>`, so a resumed run finds the Job
    /// it created instead of creating another).
    pub name: Option<String>,
    /// Create the Job from this CronJob's template, like `kubectl create job --from=cronjob/NAME`.
    pub from_cronjob: Option<String>,
    /// An inline Job `spec` (batch/v1).
    pub spec: Option<serde_json::Value>,
    /// The kubeconfig context.
    pub context: Option<String>,
    /// Keep the pods' logs in the run directory.
    #[serde(default = "super::shared::default_true")]
    pub keep_logs: bool,
    /// Give up waiting after this long.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
}

fn default_deadline() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3600))
}

/// What `k8s.job` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "Create a Job (inline spec or from a CronJob), wait for it, keep its logs.",
    destructive: true,
    idempotent: true,
    undo: None,
    outputs: &[
        OutputInfo { name: "name", description: "the Job's name" },
        OutputInfo { name: "succeeded", description: "succeeded pod count" },
        OutputInfo { name: "logs", description: "path of the saved logs in the run directory" },
    ],
    preflight: "the namespace and the CronJob exist",
    notes: "Give exactly one of `from_cronjob` and `spec`.",
    example: "- id: manual-backup\n  kind: k8s.job\n  with: { namespace: todo-app, from_cronjob: todo-database-backup }\n",
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let source = if with.has("from_cronjob") {
        format!("from cronjob/{}", with.text("from_cronjob"))
    } else {
        "from an inline spec".to_owned()
    };
    format!(
        "create job {} in {} {source} and wait for it to complete (deadline {})",
        with.text_or("name", "<step-id>-<run-id>"),
        with.text("namespace"),
        with.text_or("deadline", "1h")
    )
}
