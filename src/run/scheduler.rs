//! The dispatcher of a run: owns all run state, starts steps when their `needs`
//! succeeded (up to the concurrency limit), and `select!`s over finished attempts,
//! operator signals and the run deadline. Steps run as tasks and only return
//! results; every state change is journaled here, then shown by the reporter.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;

use super::journal::{Event, JournalWriter, Record, RunStatus, StepState};
use super::reporter::Reporter;
use crate::plan::Plan;
use crate::render::Context;
use crate::secret::Redactor;
use crate::spec::OnFailure;
use crate::steps::{ApprovalMode, Outputs, Progress, ProgressSink, StepContext, StepError};

/// Default per-attempt deadline of a step that sets no `timeout:`.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// Everything the dispatcher needs.
pub struct Dispatcher<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// Template context (real secrets; outputs of finished steps).
    pub context: Context,
    /// State of each step, by plan index.
    pub states: Vec<StepState>,
    /// Attempts made so far, by plan index.
    pub attempts: Vec<u32>,
    /// The journal.
    pub journal: JournalWriter,
    /// Where progress goes.
    pub reporter: &'a mut dyn Reporter,
    /// Steps running at once at most.
    pub concurrency: usize,
    /// Approval steps granted with `--approve`.
    pub approved: BTreeSet<String>,
    /// Whether an operator can answer prompts.
    pub interactive: bool,
    /// Secret scrubber.
    pub redactor: Arc<Redactor>,
    /// Run id.
    pub run_id: String,
    /// Run directory.
    pub run_dir: std::path::PathBuf,
    /// Drill mode.
    pub drill: bool,
    /// Run-level deadline.
    pub deadline: Option<Duration>,
    /// Order in which steps succeeded (for undo in reverse).
    pub completed: Vec<usize>,
    /// Progress updates from running steps.
    pub progress: (UnboundedSender<Progress>, UnboundedReceiver<Progress>),
}

type AttemptResult = (usize, u32, Result<Outputs, StepError>, Duration);

impl Dispatcher<'_> {
    fn record(&mut self, event: Event) -> Result<Record, String> {
        let record =
            self.journal.append(event).map_err(|error| format!("cannot write the journal: {error}"))?;
        self.reporter.record(&record);
        Ok(record)
    }

    /// Journals a step's success; it becomes durable with the next synced event (the start
    /// of a step it releases) or before the dispatcher waits again, whichever comes first.
    fn record_success(&mut self, event: Event) -> Result<Record, String> {
        let record = self
            .journal
            .append_unsynced(event)
            .map_err(|error| format!("cannot write the journal: {error}"))?;
        self.reporter.record(&record);
        Ok(record)
    }

    fn sync_journal(&mut self) -> Result<(), String> {
        self.journal.sync().map_err(|error| format!("cannot write the journal: {error}"))
    }

    fn step_context(&self, index: usize) -> StepContext {
        let step = &self.plan.steps[index];
        let approval = if self.approved.contains(&step.id) {
            ApprovalMode::PreApproved
        } else if self.interactive {
            ApprovalMode::Ask
        } else {
            ApprovalMode::Unavailable
        };
        StepContext {
            run_id: self.run_id.clone(),
            plan: self.plan.name().to_owned(),
            step_id: step.id.clone(),
            run_dir: self.run_dir.clone(),
            drill: self.drill,
            approval,
            redactor: Arc::clone(&self.redactor),
            progress: ProgressSink::new(self.progress.0.clone(), &step.id),
            rpo: self.plan.spec.objectives.rpo.as_ref().map(|rpo| rpo.value.0),
        }
    }

    /// Runs until every step finished, a failure aborts the run, an approval blocks
    /// it, or the operator interrupts it.
    ///
    /// # Errors
    /// The journal could not be written (the run stops at once).
    pub async fn run(&mut self) -> Result<RunStatus, String> {
        let started = Instant::now();
        let mut running: JoinSet<AttemptResult> = JoinSet::new();
        let mut stopping = false;
        let mut failed = false;
        let mut blocked = false;
        let mut interrupted = false;
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|error| format!("cannot watch SIGTERM: {error}"))?;
        loop {
            if !stopping {
                self.launch_ready(&mut running)?;
            }
            // Nothing waits with an event not on disk (a success with nothing to release).
            self.sync_journal()?;
            if running.is_empty() {
                break;
            }
            let deadline_left = self.deadline.map(|deadline| deadline.saturating_sub(started.elapsed()));
            tokio::select! {
                joined = running.join_next() => {
                    let Some(joined) = joined else { continue };
                    let (index, attempt, result, elapsed) = joined.map_err(|error| format!("a step task crashed: {error}"))?;
                    match self.finish_attempt(index, attempt, result, elapsed, &mut running)? {
                        Outcome::Continue => {}
                        Outcome::Abort => { stopping = true; failed = true; }
                        Outcome::Blocked => { stopping = true; blocked = true; }
                    }
                }
                Some(update) = self.progress.1.recv() => { self.reporter.progress(&update); }
                _ = tokio::signal::ctrl_c() => { interrupted = true; }
                _ = terminate.recv() => { interrupted = true; }
                () = sleep_or_forever(deadline_left) => {
                    self.reporter.message("the run deadline passed: stopping");
                    failed = true;
                    interrupted = false;
                    running.abort_all();
                    for (index, state) in self.states.iter_mut().enumerate() {
                        if matches!(state, StepState::Interrupted { .. }) {
                            *state = StepState::Failed { error: "the run deadline passed".into() };
                            let step = self.plan.steps[index].id.clone();
                            let event = Event::StepFailed { step, attempt: self.attempts[index], error: "the run deadline passed".into(), will_retry: false, seconds: 0.0 };
                            let record = self.journal.append(event).map_err(|error| error.to_string())?;
                            self.reporter.record(&record);
                        }
                    }
                    break;
                }
            }
            if interrupted {
                // Dropping the tasks kills their child processes (kill_on_drop); the
                // steps stay "started, not finished" in the journal, for resume.
                running.abort_all();
                while running.join_next().await.is_some() {}
                break;
            }
        }
        let status = if interrupted {
            RunStatus::Interrupted
        } else if failed {
            self.undo().await?;
            RunStatus::Failed
        } else if blocked {
            RunStatus::Blocked
        } else if self.states.iter().any(|state| matches!(state, StepState::Failed { .. })) {
            RunStatus::CompletedWithFailures
        } else {
            RunStatus::Succeeded
        };
        self.record(Event::RunFinished { status })?;
        Ok(status)
    }

    fn launch_ready(&mut self, running: &mut JoinSet<AttemptResult>) -> Result<(), String> {
        for index in 0..self.plan.steps.len() {
            if running.len() >= self.concurrency {
                return Ok(());
            }
            if self.states[index] != StepState::Pending {
                continue;
            }
            let step = &self.plan.steps[index];
            let blocker = step.needs.iter().find_map(|&need| match &self.states[need] {
                StepState::Failed { .. } => Some(format!("`{}` failed", self.plan.steps[need].id)),
                StepState::Skipped { .. } => Some(format!("`{}` was skipped", self.plan.steps[need].id)),
                StepState::Pending
                | StepState::Interrupted { .. }
                | StepState::Succeeded { .. }
                | StepState::Undone => None,
            });
            if let Some(blocker) = blocker {
                self.skip(index, format!("needs {blocker}"))?;
                continue;
            }
            if !step.needs.iter().all(|&need| matches!(self.states[need], StepState::Succeeded { .. })) {
                continue;
            }
            match self.context.evaluate_when(step) {
                Ok(Some(true)) => {}
                Ok(Some(false)) => {
                    self.skip(index, "`when` is false".to_owned())?;
                    continue;
                }
                Ok(None) | Err(_) => {
                    let error = self
                        .context
                        .evaluate_when(step)
                        .err()
                        .map_or_else(|| "`when` has no value".to_owned(), |error| error.0);
                    self.fail_now(index, &error)?;
                    continue;
                }
            }
            let with = match self.context.render_with(step) {
                Ok((with, _)) => with,
                Err(error) => {
                    self.fail_now(index, &format!("cannot render parameters: {}", error.0))?;
                    continue;
                }
            };
            self.spawn(index, with, Duration::ZERO, running)?;
        }
        Ok(())
    }

    fn spawn(
        &mut self,
        index: usize,
        with: Json,
        backoff: Duration,
        running: &mut JoinSet<AttemptResult>,
    ) -> Result<(), String> {
        self.attempts[index] += 1;
        let attempt = self.attempts[index];
        let step = &self.plan.steps[index];
        self.states[index] = StepState::Interrupted { attempt };
        self.record(Event::StepStarted { step: step.id.clone(), attempt })?;
        let context = self.step_context(index);
        let kind = step.kind;
        let timeout = step.timeout.unwrap_or(DEFAULT_STEP_TIMEOUT);
        running.spawn(async move {
            tokio::time::sleep(backoff).await;
            let started = Instant::now();
            let result = match tokio::time::timeout(timeout, kind.execute(with, &context)).await {
                Ok(result) => result,
                Err(_) => Err(StepError::Failed(format!(
                    "timed out after {}; raise `timeout:` if this step legitimately takes longer",
                    crate::duration::format_duration(timeout)
                ))),
            };
            (index, attempt, result, started.elapsed())
        });
        Ok(())
    }

    fn skip(&mut self, index: usize, reason: String) -> Result<(), String> {
        self.states[index] = StepState::Skipped { reason: reason.clone() };
        self.record(Event::StepSkipped { step: self.plan.steps[index].id.clone(), reason })?;
        Ok(())
    }

    fn fail_now(&mut self, index: usize, error: &str) -> Result<(), String> {
        let error = self.redactor.redact(error);
        self.states[index] = StepState::Failed { error: error.clone() };
        let step = self.plan.steps[index].id.clone();
        self.record(Event::StepFailed {
            step,
            attempt: self.attempts[index],
            error,
            will_retry: false,
            seconds: 0.0,
        })?;
        Ok(())
    }

    fn finish_attempt(
        &mut self,
        index: usize,
        attempt: u32,
        result: Result<Outputs, StepError>,
        elapsed: Duration,
        running: &mut JoinSet<AttemptResult>,
    ) -> Result<Outcome, String> {
        let step = &self.plan.steps[index];
        let id = step.id.clone();
        let seconds = elapsed.as_secs_f64();
        match result {
            Ok(outputs) => {
                if step.kind == crate::steps::StepKind::Approval {
                    let by = outputs.get("approved_by").and_then(Json::as_str).unwrap_or_default().to_owned();
                    let via = outputs.get("via").and_then(Json::as_str).unwrap_or_default().to_owned();
                    self.record(Event::ApprovalGranted { step: id.clone(), by, via })?;
                }
                let redacted = match self.redactor.redact_json(&Json::Object(outputs.clone())) {
                    Json::Object(map) => map,
                    _ => Outputs::new(),
                };
                let withheld: Vec<String> = outputs
                    .iter()
                    .filter(|(name, value)| redacted.get(*name) != Some(value))
                    .map(|(name, _)| name.clone())
                    .collect();
                self.context.outputs.insert(id.clone(), Json::Object(outputs.clone()));
                self.states[index] = StepState::Succeeded { outputs };
                self.completed.push(index);
                self.record_success(Event::StepSucceeded {
                    step: id,
                    attempt,
                    outputs: redacted,
                    withheld,
                    seconds,
                })?;
                Ok(Outcome::Continue)
            }
            Err(StepError::NeedsApproval) => {
                self.states[index] = StepState::Pending;
                self.attempts[index] -= 1;
                self.record(Event::ApprovalNeeded { step: id })?;
                Ok(Outcome::Blocked)
            }
            Err(error) => {
                let refused = matches!(error, StepError::Refused(_));
                let message = self.redactor.redact(&error.to_string());
                let will_retry = !refused && attempt < step.attempts;
                self.record(Event::StepFailed {
                    step: id,
                    attempt,
                    error: message.clone(),
                    will_retry,
                    seconds,
                })?;
                if will_retry {
                    let backoff = step.backoff.saturating_mul(2u32.saturating_pow(attempt - 1));
                    let with =
                        self.context.render_with(step).map(|(with, _)| with).map_err(|error| error.0)?;
                    self.spawn(index, with, backoff, running)?;
                    return Ok(Outcome::Continue);
                }
                self.states[index] = StepState::Failed { error: message };
                match step.on_failure {
                    OnFailure::Abort => Ok(Outcome::Abort),
                    OnFailure::Continue => {
                        self.reporter.message(&format!(
                            "step `{}` failed; the run goes on (on_failure: continue) and will end \
                             \"completed with failures\"",
                            step.id
                        ));
                        Ok(Outcome::Continue)
                    }
                }
            }
        }
    }

    /// Compensates succeeded steps with `undo: true`, newest first.
    async fn undo(&mut self) -> Result<(), String> {
        let order: Vec<usize> =
            self.completed.iter().rev().copied().filter(|&index| self.plan.steps[index].undo).collect();
        for index in order {
            let step = &self.plan.steps[index];
            let StepState::Succeeded { outputs } = self.states[index].clone() else { continue };
            // Compensating is only safe while nothing destructive built on this step: once
            // e.g. a `pg_restore --clean` that needed "stop writers" has started, scaling the
            // writers back up would point them at a half-restored database.
            if let Some(later) = self.destructive_dependent_started(index) {
                let reason = format!(
                    "not compensated: destructive step `{later}`, which needs it, had started; \
                     check the system and compensate by hand if it is safe"
                );
                self.record(Event::UndoSkipped { step: step.id.clone(), reason })?;
                continue;
            }
            self.record(Event::UndoStarted { step: step.id.clone() })?;
            let with = self.context.render_with(step).map(|(with, _)| with);
            let context = self.step_context(index);
            let result = match with {
                Ok(with) => match tokio::time::timeout(
                    step.timeout.unwrap_or(DEFAULT_STEP_TIMEOUT),
                    step.kind.undo(with, &outputs, &context),
                )
                .await
                {
                    Ok(result) => result.map_err(|error| error.to_string()),
                    Err(_) => Err("undo timed out".to_owned()),
                },
                Err(error) => Err(error.0),
            };
            let error = result.err().map(|error| self.redactor.redact(&error));
            if error.is_none() {
                self.states[index] = StepState::Undone;
            }
            self.record(Event::UndoFinished { step: step.id.clone(), error })?;
        }
        Ok(())
    }
}

impl Dispatcher<'_> {
    /// A destructive step that needs `index` (directly or not) and has started.
    fn destructive_dependent_started(&self, index: usize) -> Option<String> {
        self.plan.steps.iter().enumerate().find_map(|(other, step)| {
            let started = !matches!(self.states[other], StepState::Pending | StepState::Skipped { .. });
            let depends = self.plan.ancestors(other).contains(&index);
            (started && depends && step.kind.is_destructive(&step.with.to_json())).then(|| step.id.clone())
        })
    }
}

enum Outcome {
    Continue,
    Abort,
    Blocked,
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}
