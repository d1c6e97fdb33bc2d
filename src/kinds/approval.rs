//! `approval`: a human gate.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, Params, StepOutputs, step_outputs};

/// Parameters of `approval`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The question shown to the operator.
    pub prompt: String,
}

step_outputs! {
    /// Outputs of `approval`.
    pub struct ApprovalOutputs {
        /// who approved: `user@host`, after the `--approver` name when one was given
        pub approved_by: String,
        /// when (RFC 3339)
        pub approved_at: String,
    }
}

/// What `approval` declares.
pub const INFO: KindInfo = KindInfo {
    name: "approval",
    argv_parameters: &[],
    summary: "A human gate: waits for an operator's yes at the terminal, or `--approve STEP`.",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: ApprovalOutputs::DECLARED,
    preflight: "nothing",
    notes: "At a terminal the run shows the question and waits: `yes` approves, `no` refuses (the run \
            fails and undoes what it did); anything else asks again. Ctrl-C stops the run (exit 130, \
            resumable). Without a terminal and without `--approve STEP`, the run stops with exit code 3, \
            printing the question and the `dr-plan resume ... --approve STEP` command. The journal records \
            the question, who approved (`user@host`, and `--approver NAME` or `DR_PLAN_APPROVER` when \
            given), when, how (terminal or `--approve`) and how long the approval was waited for; reports \
            count that wait as the step's duration.",
    example: "- id: go-ahead\n  kind: approval\n  with: { prompt: \"Fail DNS over to eu-west-2?\" }\n",
    role: super::Role::Approval,
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<ApprovalOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `approval` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |_, _| Box::pin(async { Ok(super::Preflight::Passed("nothing to check".to_owned())) }),
    undo: None,
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    format!("ask for approval: \"{}\"", with.text("prompt"))
}

/// Asks for (or finds) the approval. The run shows the question and reads the answer;
/// the run journals who approved, how, and how long the approval was waited for.
///
/// # Errors
/// `NeedsApproval` without a terminal or `--approve`; `Refused` when the operator says no.
pub async fn run(
    _parameters: Parameters,
    context: &super::StepContext,
) -> Result<ApprovalOutputs, super::StepError> {
    match &context.approval {
        super::ApprovalMode::PreApproved => {}
        super::ApprovalMode::Unavailable => return Err(super::StepError::NeedsApproval),
        super::ApprovalMode::Ask(asker) => match asker.ask(&context.step_id).await {
            super::Verdict::Approved => {}
            super::Verdict::Refused => {
                return Err(super::StepError::Refused(format!(
                    "approval `{}` was refused at the terminal by {}",
                    context.step_id, context.operator
                )));
            }
            super::Verdict::NoTerminal => return Err(super::StepError::NeedsApproval),
        },
    }
    Ok(ApprovalOutputs { approved_by: context.operator.clone(), approved_at: crate::sys::clock::now() })
}
