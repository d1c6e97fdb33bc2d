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

/// Asks for (or finds) the approval.
///
/// # Errors
/// `NeedsApproval` without a terminal or `--approve`; `Refused` when the operator says no.
pub async fn run(
    parameters: Parameters,
    context: &super::StepContext,
) -> Result<super::Outputs, super::StepError> {
    let (by, via) = match context.approval {
        super::ApprovalMode::PreApproved => (crate::run::lock::operator(), "--approve"),
        super::ApprovalMode::Unavailable => return Err(super::StepError::NeedsApproval),
        super::ApprovalMode::Ask => {
            let prompt =
                format!("\n[approval] {}: {}\nType `yes` to approve: ", context.step_id, parameters.prompt);
            let answer = tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let mut terminal = std::io::stderr();
                let _ = terminal.write_all(prompt.as_bytes());
                let _ = terminal.flush();
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(|_| line)
            })
            .await
            .map_err(|error| super::StepError::Failed(format!("approval prompt failed: {error}")))?
            .map_err(|error| super::StepError::Failed(format!("cannot read the answer: {error}")))?;
            if answer.trim() != "yes" {
                return Err(super::StepError::Refused(format!(
                    "approval `{}` was refused at the terminal",
                    context.step_id
                )));
            }
            (crate::run::lock::operator(), "terminal")
        }
    };
    let mut outputs = super::Outputs::new();
    outputs.insert("approved_by".into(), serde_json::Value::String(by));
    outputs.insert("approved_at".into(), serde_json::Value::String(crate::run::journal::now()));
    outputs.insert("via".into(), serde_json::Value::String(via.to_owned()));
    Ok(outputs)
}
