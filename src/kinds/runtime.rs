//! What a step gets when it runs, and what it gives back. Steps never print: they
//! return outputs or an error, and the engine journals and reports them.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::{KindInfo, StepKind};
use crate::lang::secret::Redactor;
use crate::sys::progress::ProgressSink;

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
    /// Where the step keeps what an attempt after a crash must know (the counts before
    /// a scale, a Route53 change submitted): the run's shared state when it is in S3,
    /// so that a resume on another machine finds it; `None`: files in `run_dir`.
    pub memory: Option<Arc<dyn MemoryStore>>,
}

/// A step's memory kept with the run's state (see [`StepContext::memory`]).
pub trait MemoryStore: Send + Sync + std::fmt::Debug {
    /// The memory called `name`; `None` when there is none.
    ///
    /// # Errors
    /// It cannot be read.
    fn load(&self, name: &str) -> Result<Option<Vec<u8>>, String>;
    /// Keeps `bytes` as `name`, durably, before returning.
    ///
    /// # Errors
    /// It cannot be written.
    fn save(&self, name: &str, bytes: &[u8]) -> Result<(), String>;
    /// Where `name` is kept, for messages.
    fn location(&self, name: &str) -> String;
}

impl StepContext {
    /// The step's memory `name`, if an earlier attempt of this run kept one.
    ///
    /// # Errors
    /// It exists but cannot be read.
    pub fn recall(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        if let Some(memory) = &self.memory {
            return memory.load(name);
        }
        let path = self.run_dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(format!("cannot read {}: {error}", path.display())),
        }
    }

    /// Keeps `bytes` as the step's memory `name`, durably (a file written aside, synced
    /// and renamed; or the state's object written), before the step changes anything.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn remember(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        if let Some(memory) = &self.memory {
            return memory.save(name, bytes);
        }
        let path = self.run_dir.join(name);
        crate::sys::files::private_dir(&self.run_dir)
            .and_then(|()| crate::sys::files::replace_durably(&path, bytes))
            .map_err(|error| format!("cannot write {}: {error}", path.display()))
    }

    /// Where the memory `name` is kept, for messages.
    #[must_use]
    pub fn memory_location(&self, name: &str) -> String {
        match &self.memory {
            Some(memory) => memory.location(name),
            None => self.run_dir.join(name).display().to_string(),
        }
    }
}

/// What a read-only preflight check may use besides the step's parameters.
#[derive(Clone, Debug, Default)]
pub struct PreflightContext {
    /// The plan's recovery point objective (`objectives.rpo`).
    pub rpo: Option<std::time::Duration>,
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
    /// It failed in a way another attempt cannot change (a backup found corrupt): the
    /// step's `retry` is not used.
    #[error("{0}")]
    Final(String),
}

impl From<crate::clients::ClientError> for StepError {
    fn from(error: crate::clients::ClientError) -> StepError {
        StepError::Failed(error.0)
    }
}

impl From<crate::clients::kubernetes::KubernetesError> for StepError {
    fn from(error: crate::clients::kubernetes::KubernetesError) -> StepError {
        StepError::Failed(error.to_string())
    }
}

/// Deserializes rendered parameters into a kind's type.
///
/// # Errors
/// A parameter whose rendered value has the wrong type.
pub fn parameters<T: serde::de::DeserializeOwned>(with: Json) -> Result<T, StepError> {
    serde_json::from_value(with)
        .map_err(|error| StepError::Failed(format!("invalid parameters once rendered: {error}")))
}

/// A boxed future a kind's functions return, so that the table can hold them.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Runs one attempt with rendered parameters.
pub type ExecuteFn = for<'a> fn(Json, &'a StepContext) -> BoxFuture<'a, Result<Outputs, StepError>>;
/// The read-only check of `dry-run --preflight`; an error is parameters that do not decode.
pub type PreflightFn = for<'a> fn(Json, &'a PreflightContext) -> BoxFuture<'a, Result<Preflight, StepError>>;
/// The compensation of `undo: true`, given the parameters and outputs of the attempt that succeeded.
pub type UndoFn = for<'a> fn(Json, &'a Outputs, &'a StepContext) -> BoxFuture<'a, Result<(), StepError>>;

/// How a kind runs: its declaration and its three functions. Each kind's file defines
/// one as `KIND`; the table in [`crate::kinds`] lists them.
pub struct Kind {
    /// What the kind declares.
    pub info: &'static KindInfo,
    /// Runs one attempt with rendered parameters.
    pub execute: ExecuteFn,
    /// The read-only check of `dry-run --preflight`; an error is parameters that do not decode.
    pub preflight: PreflightFn,
    /// The compensation of `undo: true`, given the parameters and outputs of the attempt
    /// that succeeded; `None` when `info.undo` is.
    pub undo: Option<UndoFn>,
}

fn runner(kind: StepKind) -> Result<&'static Kind, StepError> {
    super::TABLE
        .iter()
        .copied()
        .find(|entry| entry.info.name == kind.name())
        .ok_or_else(|| StepError::Failed(format!("`{}` is not a kind of this build", kind.name())))
}

/// Runs one attempt of a step.
///
/// # Errors
/// See [`StepError`].
pub async fn execute(kind: StepKind, with: Json, context: &StepContext) -> Result<Outputs, StepError> {
    (runner(kind)?.execute)(with, context).await
}

/// Runs the kind's read-only check against the live system (`dry-run --preflight`).
pub async fn preflight(kind: StepKind, with: Json, context: &PreflightContext) -> Preflight {
    let checked = match runner(kind) {
        Ok(entry) => (entry.preflight)(with, context).await,
        Err(error) => Err(error),
    };
    checked.unwrap_or_else(|error| Preflight::Failed(error.to_string()))
}

/// Compensates a step that succeeded (`undo: true`), given its parameters and outputs.
///
/// # Errors
/// The compensation failed; the message says what to do by hand.
pub async fn undo(
    kind: StepKind,
    with: Json,
    outputs: &Outputs,
    context: &StepContext,
) -> Result<(), StepError> {
    match (runner(kind)?.undo, kind.info().undo) {
        (Some(undo), _) => undo(with, outputs, context).await,
        (None, None) => Ok(()),
        (None, Some(_)) => {
            Err(StepError::Failed(format!("undo of {} steps is not available in this build", kind.name())))
        }
    }
}

/// Puts back what an attempt left half-done on a live system when its process died
/// before it could (`kill -9`, a crash): `pg.swap`'s refused connections. Given the
/// step's rendered parameters and a context whose memory is the run's; returns what it
/// found and did, `None` when the step left nothing.
pub type RepairFn = for<'a> fn(Json, &'a StepContext) -> BoxFuture<'a, Result<Option<String>, String>>;

/// Whether steps of `kind` may leave something for [`repair`] to put back.
#[must_use]
pub fn can_repair(kind: StepKind) -> bool {
    super::REPAIRS.iter().any(|(info, _)| info.name == kind.name())
}

/// Puts back what a step of `kind` whose process died left half-done; see [`RepairFn`].
///
/// # Errors
/// It could not be checked or put back; the message says what to do by hand.
pub async fn repair(kind: StepKind, with: Json, context: &StepContext) -> Result<Option<String>, String> {
    match super::REPAIRS.iter().find(|(info, _)| info.name == kind.name()) {
        Some((_, repair)) => repair(with, context).await,
        None => Ok(None),
    }
}
