//! `approval`: a human gate.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, OutputInfo, Params};

/// Parameters of `approval`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The question shown to the operator.
    pub prompt: String,
}

/// What `approval` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "A human gate: waits for an operator's yes at the terminal, or `--approve STEP`.",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: &[
        OutputInfo { name: "approved_by", description: "who approved (user@host, or `--approve`)" },
        OutputInfo { name: "approved_at", description: "when (RFC 3339)" },
    ],
    preflight: "nothing",
    notes: "Without a terminal and without `--approve STEP`, the run stops with exit code 3 and can \
            be resumed once someone approves. Every approval is written to the journal.",
    example: "- id: go-ahead\n  kind: approval\n  with: { prompt: \"Fail DNS over to eu-west-2?\" }\n",
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    format!("ask for approval: \"{}\"", with.text("prompt"))
}
