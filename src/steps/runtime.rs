//! What a step gets when it runs, and what it gives back. Steps never print: they
//! return outputs or an error, and the engine journals and reports them.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::{StepKind, StepOutputs};
use crate::secret::Redactor;

/// A step's outputs as the journal and the templates read them (`steps.<id>.outputs.*`):
/// the kind's [`StepOutputs`] as a map, in field order.
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
    /// Who runs this command: `user@host`, with `--approver NAME` in front when given.
    pub operator: String,
    /// Scrubs secrets from text a step returns.
    pub redactor: Arc<Redactor>,
    /// Where a step reports progress (bytes moved, what it waits for).
    pub progress: ProgressSink,
    /// The plan's recovery point objective (`objectives.rpo`): a backup older than
    /// this must not be restored, in a drill too.
    pub rpo: Option<std::time::Duration>,
}

/// What a read-only preflight check may use besides the step's parameters.
#[derive(Clone, Debug, Default)]
pub struct PreflightContext {
    /// The plan's recovery point objective (`objectives.rpo`).
    pub rpo: Option<std::time::Duration>,
}

/// A progress update of a running step (not journaled: too frequent, and not needed to resume).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Progress {
    /// The step.
    pub step: String,
    /// Units done.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
    /// What `done` and `total` count.
    pub unit: ProgressUnit,
    /// What the step is doing now ("waiting for INSYNC").
    pub note: Option<String>,
}

/// What a step's progress counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressUnit {
    /// Bytes moved (downloads, uploads, restores).
    Bytes,
    /// Objects handled (manifests applied).
    Objects,
}

/// What a running step tells the run while it works: progress (drawn, not journaled)
/// and warnings (journaled, shown on every output).
#[derive(Clone, Debug)]
pub enum StepUpdate {
    /// Units done.
    Progress(Progress),
    /// Something the operator must know although the step goes on or succeeds (a
    /// notification that was not delivered).
    Warning {
        /// The step.
        step: String,
        /// What happened (redacted by the run before it is journaled).
        text: String,
    },
}

/// Sends progress to the run's reporter; a closed or absent reporter is ignored.
#[derive(Clone, Debug, Default)]
pub struct ProgressSink {
    sender: Option<tokio::sync::mpsc::UnboundedSender<StepUpdate>>,
    step: String,
}

impl ProgressSink {
    /// A sink for `step` sending to `sender`.
    #[must_use]
    pub fn new(sender: tokio::sync::mpsc::UnboundedSender<StepUpdate>, step: &str) -> ProgressSink {
        ProgressSink { sender: Some(sender), step: step.to_owned() }
    }

    /// Reports `done` of `total` bytes.
    pub fn bytes(&self, done: u64, total: Option<u64>) {
        self.send(Progress { step: self.step.clone(), done, total, unit: ProgressUnit::Bytes, note: None });
    }

    /// Reports `done` of `total` objects.
    pub fn objects(&self, done: u64, total: Option<u64>) {
        self.send(Progress { step: self.step.clone(), done, total, unit: ProgressUnit::Objects, note: None });
    }

    /// Reports what the step is doing.
    pub fn note(&self, note: impl Into<String>) {
        self.send(Progress {
            step: self.step.clone(),
            done: 0,
            total: None,
            unit: ProgressUnit::Bytes,
            note: Some(note.into()),
        });
    }

    /// Warns the operator (journaled as `step_warning`).
    pub fn warn(&self, text: impl Into<String>) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(StepUpdate::Warning { step: self.step.clone(), text: text.into() });
        }
    }

    fn send(&self, progress: Progress) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(StepUpdate::Progress(progress));
        }
    }
}

/// The answer of a read-only preflight check.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", content = "detail", rename_all = "snake_case")]
pub enum Preflight {
    /// The live system is ready for this step.
    Passed(String),
    /// It is not; the text says why and what to do.
    Failed(String),
    /// Nothing was checked, and why.
    NotChecked(String),
}

/// A check that either describes what it found or says what is wrong.
impl<Error: std::fmt::Display> From<Result<String, Error>> for Preflight {
    fn from(checked: Result<String, Error>) -> Preflight {
        match checked {
            Ok(detail) => Preflight::Passed(detail),
            Err(error) => Preflight::Failed(error.to_string()),
        }
    }
}

/// How an `approval` step can be granted.
#[derive(Clone, Debug)]
pub enum ApprovalMode {
    /// Granted in advance with `--approve STEP`.
    PreApproved,
    /// Ask the operator at the terminal, through the run (which owns the screen).
    Ask(Asker),
    /// No terminal and no `--approve`: the run must stop, resumable.
    Unavailable,
}

/// Puts an approval question to the operator. Steps never print: the run shows the
/// question, reads the answer and replies.
#[derive(Clone, Debug)]
pub struct Asker(pub tokio::sync::mpsc::UnboundedSender<Question>);

/// An approval question waiting for the operator.
#[derive(Debug)]
pub struct Question {
    /// The approval step.
    pub step: String,
    /// Where the answer goes.
    pub reply: tokio::sync::oneshot::Sender<Verdict>,
}

/// The operator's answer to an approval question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `yes`
    Approved,
    /// `no`
    Refused,
    /// Nobody can answer (standard input ended): the run stops, resumable.
    NoTerminal,
}

impl Asker {
    /// Asks about `step` and waits for the answer.
    pub async fn ask(&self, step: &str) -> Verdict {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.0.send(Question { step: step.to_owned(), reply }).is_err() {
            return Verdict::NoTerminal;
        }
        answer.await.unwrap_or(Verdict::NoTerminal)
    }
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
    /// Runs one attempt of a step.
    ///
    /// # Errors
    /// See [`StepError`].
    pub async fn execute(self, with: Json, context: &StepContext) -> Result<Outputs, StepError> {
        match self {
            StepKind::Exec => super::exec::run(parameters(with)?, context).await?.into_map(),
            StepKind::Sleep => super::sleep::run(parameters(with)?).await?.into_map(),
            StepKind::Approval => super::approval::run(parameters(with)?, context).await?.into_map(),
            StepKind::HttpCheck => super::http_check::run(parameters(with)?).await?.into_map(),
            StepKind::Notify => super::notify::run(parameters(with)?, context).await?.into_map(),
            StepKind::PgDump => super::pg_dump::run(parameters(with)?, context).await?.into_map(),
            StepKind::PgRestore => super::pg_restore::run(parameters(with)?, context).await?.into_map(),
            StepKind::PgQuery => super::pg_query::run(parameters(with)?, context).await?.into_map(),
            StepKind::RedisRestore => super::redis_restore::run(parameters(with)?, context).await?.into_map(),
            StepKind::Route53Change => {
                super::route53_change::run(parameters(with)?, context).await?.into_map()
            }
            StepKind::K8sScale => super::k8s_scale::run(parameters(with)?, context).await?.into_map(),
            StepKind::K8sWait => super::k8s_wait::run(parameters(with)?, context).await?.into_map(),
            StepKind::K8sJob => super::k8s_job::run(parameters(with)?, context).await?.into_map(),
            StepKind::K8sApply => super::k8s_apply::run(parameters(with)?, context).await?.into_map(),
            StepKind::VeleroRestore => {
                super::velero_restore::run(parameters(with)?, context).await?.into_map()
            }
            StepKind::S3Fetch => super::s3_fetch::run(parameters(with)?, context).await?.into_map(),
            StepKind::S3Put => super::s3_put::run(parameters(with)?, context).await?.into_map(),
        }
    }

    /// Runs the kind's read-only check against the live system (`dry-run --preflight`).
    pub async fn preflight(self, with: Json, context: &PreflightContext) -> Preflight {
        self.preflight_with(with, context).await.unwrap_or_else(|error| Preflight::Failed(error.to_string()))
    }

    /// [`StepKind::preflight`], with parameters that do not decode as an error.
    async fn preflight_with(self, with: Json, context: &PreflightContext) -> Result<Preflight, StepError> {
        Ok(match self {
            StepKind::Exec => super::exec::preflight(&parameters(with)?),
            StepKind::HttpCheck | StepKind::Notify => {
                let key = if self == StepKind::Notify { "webhook" } else { "url" };
                match with.get(key).and_then(Json::as_str).map(reqwest::Url::parse) {
                    Some(Ok(url)) => Preflight::Passed(format!("{} URL parses ({})", key, url.scheme())),
                    Some(Err(error)) => Preflight::Failed(format!("`{key}` is not a URL: {error}")),
                    None => Preflight::Failed(format!("`{key}` is missing")),
                }
            }
            StepKind::Sleep | StepKind::Approval => Preflight::Passed("nothing to check".to_owned()),
            StepKind::PgDump => super::pg_dump::preflight(&parameters(with)?).await,
            StepKind::PgRestore => super::pg_restore::preflight(&parameters(with)?).await,
            StepKind::PgQuery => super::pg_query::preflight(&parameters(with)?).await,
            StepKind::RedisRestore => super::redis_restore::preflight(&parameters(with)?).await,
            StepKind::Route53Change => super::route53_change::preflight(&parameters(with)?).await,
            StepKind::K8sScale => super::k8s_scale::preflight(&parameters(with)?).await,
            StepKind::K8sWait => super::k8s_wait::preflight(&parameters(with)?).await,
            StepKind::K8sJob => super::k8s_job::preflight(&parameters(with)?).await,
            StepKind::K8sApply => super::k8s_apply::preflight(&parameters(with)?).await,
            StepKind::VeleroRestore => super::velero_restore::preflight(&parameters(with)?).await,
            StepKind::S3Fetch => super::s3_fetch::preflight(parameters(with)?, context).await,
            StepKind::S3Put => super::s3_put::preflight(parameters(with)?).await,
        })
    }

    /// Compensates a step that succeeded (`undo: true`), given its parameters and outputs.
    ///
    /// # Errors
    /// The compensation failed; the message says what to do by hand.
    pub async fn undo(self, with: Json, outputs: &Outputs, context: &StepContext) -> Result<(), StepError> {
        match self {
            StepKind::Exec => super::exec::undo(parameters(with)?, outputs, context).await,
            StepKind::Route53Change => super::route53_change::undo(parameters(with)?, outputs, context).await,
            StepKind::K8sScale => super::k8s_scale::undo(parameters(with)?, outputs, context).await,
            StepKind::Sleep
            | StepKind::Approval
            | StepKind::HttpCheck
            | StepKind::Notify
            | StepKind::K8sWait
            | StepKind::K8sJob
            | StepKind::K8sApply
            | StepKind::VeleroRestore
            | StepKind::S3Fetch
            | StepKind::S3Put
            | StepKind::PgDump
            | StepKind::PgRestore
            | StepKind::PgQuery
            | StepKind::RedisRestore => match self.info().undo {
                None => Ok(()),
                Some(_) => Err(StepError::Failed(format!(
                    "undo of {} steps is not available in this build",
                    self.name()
                ))),
            },
        }
    }
}
