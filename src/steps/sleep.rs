//! `sleep`: wait a fixed time.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, Params, StepOutputs, step_outputs};
use crate::duration::HumanDuration;

/// Parameters of `sleep`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// How long to wait, e.g. `30s`.
    pub duration: HumanDuration,
}

step_outputs! {
    /// Outputs of `sleep`: none.
    pub struct SleepOutputs {}
}

/// What `sleep` declares.
pub const INFO: KindInfo = KindInfo {
    argv_parameters: &[],
    summary: "Wait a fixed time (let DNS caches expire, let replicas settle).",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: SleepOutputs::DECLARED,
    preflight: "nothing",
    notes: "",
    example: "- id: let-ttl-expire\n  kind: sleep\n  with: { duration: 60s }\n",
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    format!("wait {}", with.text("duration"))
}

/// Waits.
///
/// # Errors
/// Never; the signature matches the other kinds.
pub async fn run(parameters: Parameters) -> Result<SleepOutputs, super::StepError> {
    tokio::time::sleep(parameters.duration.get()).await;
    Ok(SleepOutputs {})
}
