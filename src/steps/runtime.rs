//! What a step gets when it runs, and what it gives back. Steps never print: they
//! return outputs or an error, and the engine journals and reports them.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::StepKind;
use crate::secret::Redactor;

/// A step's outputs (`steps.<id>.outputs.*`).
pub type Outputs = Map<String, Json>;

/// Everything a running step may use.
#[derive(Clone, Debug)]
pub struct StepContext {
    /// The run id.
    pub run_id: String,
    /// The plan name.
    pub plan: String,
    /// The step id.
    pub step_id: String,
    /// The run's directory (artifacts, logs).
    pub run_dir: PathBuf,
    /// Drill mode.
    pub drill: bool,
    /// How approvals are given in this run.
    pub approval: ApprovalMode,
    /// Scrubs secrets from text a step returns.
    pub redactor: Arc<Redactor>,
}

/// How an `approval` step can be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalMode {
    /// Granted in advance with `--approve STEP`.
    PreApproved,
    /// Ask at the terminal.
    Ask,
    /// No terminal and no `--approve`: the run must stop, resumable.
    Unavailable,
}

/// Why a step did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// It failed; the message says what, where, and what to try.
    #[error("{0}")]
    Failed(String),
    /// An approval is needed and nobody can give it now.
    #[error("approval needed")]
    NeedsApproval,
    /// The operator said no.
    #[error("{0}")]
    Refused(String),
}

/// Deserializes rendered parameters into a kind's type.
///
/// # Errors
/// A parameter whose rendered value has the wrong type.
pub fn parameters<T: serde::de::DeserializeOwned>(with: Json) -> Result<T, StepError> {
    serde_json::from_value(with)
        .map_err(|error| StepError::Failed(format!("invalid parameters once rendered: {error}")))
}

impl StepKind {
    /// Whether this build can execute the kind (the others validate and dry-run).
    #[must_use]
    pub fn is_executable(self) -> bool {
        match self {
            StepKind::Exec
            | StepKind::Sleep
            | StepKind::Approval
            | StepKind::HttpCheck
            | StepKind::Notify => true,
            StepKind::K8sScale
            | StepKind::K8sWait
            | StepKind::K8sJob
            | StepKind::K8sApply
            | StepKind::VeleroRestore
            | StepKind::S3Fetch
            | StepKind::S3Put
            | StepKind::PgDump
            | StepKind::PgRestore
            | StepKind::PgQuery
            | StepKind::RedisRestore
            | StepKind::Route53Change => false,
        }
    }

    /// Runs one attempt of a step.
    ///
    /// # Errors
    /// See [`StepError`].
    pub async fn execute(self, with: Json, context: &StepContext) -> Result<Outputs, StepError> {
        match self {
            StepKind::Exec => super::exec::run(parameters(with)?, context).await,
            StepKind::Sleep => super::sleep::run(parameters(with)?).await,
            StepKind::Approval => super::approval::run(parameters(with)?, context).await,
            StepKind::HttpCheck => super::http_check::run(parameters(with)?).await,
            StepKind::Notify => super::notify::run(parameters(with)?, context).await,
            StepKind::K8sScale
            | StepKind::K8sWait
            | StepKind::K8sJob
            | StepKind::K8sApply
            | StepKind::VeleroRestore
            | StepKind::S3Fetch
            | StepKind::S3Put
            | StepKind::PgDump
            | StepKind::PgRestore
            | StepKind::PgQuery
            | StepKind::RedisRestore
            | StepKind::Route53Change => Err(StepError::Failed(format!(
                "{} steps cannot run in this build of dr-plan yet (they validate and dry-run)",
                self.name()
            ))),
        }
    }

    /// Compensates a step that succeeded (`undo: true`), given its parameters and outputs.
    ///
    /// # Errors
    /// The compensation failed; the message says what to do by hand.
    pub async fn undo(self, with: Json, outputs: &Outputs, context: &StepContext) -> Result<(), StepError> {
        match self {
            StepKind::Exec => super::exec::undo(parameters(with)?, outputs, context).await,
            StepKind::Sleep
            | StepKind::Approval
            | StepKind::HttpCheck
            | StepKind::Notify
            | StepKind::K8sScale
            | StepKind::K8sWait
            | StepKind::K8sJob
            | StepKind::K8sApply
            | StepKind::VeleroRestore
            | StepKind::S3Fetch
            | StepKind::S3Put
            | StepKind::PgDump
            | StepKind::PgRestore
            | StepKind::PgQuery
            | StepKind::RedisRestore
            | StepKind::Route53Change => match self.info().undo {
                None => Ok(()),
                Some(_) => Err(StepError::Failed(format!(
                    "undo of {} steps is not available in this build",
                    self.name()
                ))),
            },
        }
    }
}
