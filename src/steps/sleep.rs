//! `sleep`: wait a fixed time.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, Params};
use crate::duration::HumanDuration;

/// Parameters of `sleep`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// How long to wait, e.g. `30s`.
    pub duration: HumanDuration,
}

/// What `sleep` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "Wait a fixed time (let DNS caches expire, let replicas settle).",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: &[],
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
pub async fn run(parameters: Parameters) -> Result<super::Outputs, super::StepError> {
    tokio::time::sleep(parameters.duration.get()).await;
    Ok(super::Outputs::new())
}
