//! `k8s.wait`: wait for a rollout, a Job, or a condition.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, OutputInfo, Params};
use crate::duration::HumanDuration;

/// Parameters of `k8s.wait`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The namespace.
    pub namespace: String,
    /// `deployment/NAME`, `statefulset/NAME`, `job/NAME`, or `KIND/NAME` with `condition`.
    pub target: String,
    /// The condition type to wait for (`Ready`, `Available`, ...). Default: rollout
    /// complete for deployments and statefulsets, `Complete` for jobs.
    pub condition: Option<String>,
    /// The kubeconfig context.
    pub context: Option<String>,
    /// Give up after this long.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
}

fn default_deadline() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(600))
}

/// What `k8s.wait` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "Wait for a rollout to complete, a Job to finish, or a condition to become true.",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: &[OutputInfo { name: "waited", description: "seconds waited" }],
    preflight: "the object exists",
    notes: "A Job that fails makes the step fail at once, without waiting for the deadline.",
    example: "- id: api-rolled-out\n  kind: k8s.wait\n  with: { namespace: festivals-production, target: deployment/prod-festivals-api }\n",
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let what = if with.has("condition") {
        format!("condition {}", with.text("condition"))
    } else if with.text("target").starts_with("job/") {
        "completion".to_owned()
    } else {
        "rollout".to_owned()
    };
    format!(
        "wait for {what} of {} in {} (deadline {})",
        with.text("target"),
        with.text("namespace"),
        with.text_or("deadline", "10m")
    )
}
