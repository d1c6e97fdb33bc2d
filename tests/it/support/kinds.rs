//! The step kinds as tests call them: by name, with the run's functions as methods.

use dr_plan::kinds::{Outputs, Preflight, PreflightContext, StepContext, StepError, StepKind};
use serde_json::Value as Json;

/// The kind written as `name` in plans.
pub fn kind(name: &str) -> StepKind {
    dr_plan::kinds::find(name).unwrap_or_else(|| panic!("no kind `{name}`"))
}

/// `kind.execute(...)` for [`dr_plan::kinds::execute`], and so on.
#[allow(async_fn_in_trait, dead_code)]
pub trait KindExt {
    /// Runs one attempt.
    async fn execute(self, with: Json, context: &StepContext) -> Result<Outputs, StepError>;
    /// Undoes a step that succeeded.
    async fn undo(self, with: Json, outputs: &Outputs, context: &StepContext) -> Result<(), StepError>;
    /// The read-only check.
    async fn preflight(self, with: Json, context: &PreflightContext) -> Preflight;
}

impl KindExt for StepKind {
    async fn execute(self, with: Json, context: &StepContext) -> Result<Outputs, StepError> {
        dr_plan::kinds::execute(self, with, context).await
    }

    async fn undo(self, with: Json, outputs: &Outputs, context: &StepContext) -> Result<(), StepError> {
        dr_plan::kinds::undo(self, with, outputs, context).await
    }

    async fn preflight(self, with: Json, context: &PreflightContext) -> Preflight {
        dr_plan::kinds::preflight(self, with, context).await
    }
}
