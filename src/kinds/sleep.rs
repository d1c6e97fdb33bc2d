//! `sleep`: wait a fixed time.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, Params, StepOutputs, step_outputs};
use crate::lang::duration::HumanDuration;

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
    name: "sleep",
    argv_parameters: &[],
    summary: "Wait a fixed time (let DNS caches expire, let replicas settle).",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: SleepOutputs::DECLARED,
    preflight: "nothing",
    notes: "",
    example: "- id: let-ttl-expire\n  kind: sleep\n  with: { duration: 60s }\n",
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<SleepOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `sleep` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, _| Box::pin(async move { run(super::parameters(with)?).await?.into_map() }),
    preflight: |_, _| Box::pin(async { Ok(super::Preflight::Passed("nothing to check".to_owned())) }),
    undo: None,
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
