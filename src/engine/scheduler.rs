//! The dispatcher of a run: owns all run state, starts steps when their `needs`
//! succeeded (up to the concurrency limit), and `select!`s over finished attempts,
//! operator signals and the run deadline. Steps run as tasks and only return
//! results; every state change is journaled here, then shown by the reporter.
//!
//! Group commit: the events of one scheduler turn (the attempts that finished together,
//! the starts, skips and failures they lead to) are written to the journal one after
//! the other and made durable by one fsync, taken before anything acts on them: before
//! a step's task is spawned ([`Dispatcher::start_journaled`]), before the dispatcher
//! waits again, before an approval question is shown, an undo runs or the run's end is
//! reported. A crash before that fsync loses events nothing has acted on: a start whose
//! step never ran, or a result that resume sees as an interrupted attempt.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::{JoinError, JoinSet};

use super::console::{Console, Typed};
use super::journal::{Event, JournalWriter, Record, RunStatus, SkipCause, StepState};
use super::reporter::Reporter;
use crate::kinds::stop::Stop;
use crate::kinds::{
    ApprovalMode, Asker, Outputs, ProgressSink, Question, StepContext, StepError, StepUpdate, Verdict,
};
use crate::lang::plan::Plan;
use crate::lang::render::Context;
use crate::lang::secret::Redactor;
use crate::lang::spec::OnFailure;

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
    /// Progress updates and warnings from running steps.
    pub progress: (UnboundedSender<StepUpdate>, UnboundedReceiver<StepUpdate>),
    /// Signals and the answers typed at the terminal.
    pub console: &'a mut Console,
    /// Approval questions from running steps.
    pub questions: (UnboundedSender<Question>, UnboundedReceiver<Question>),
    /// Questions waiting for the operator; the first is on screen, since when.
    pub asking: VecDeque<(Question, Instant)>,
    /// Approval step → seconds the operator took to answer `yes` at the terminal.
    pub answered: BTreeMap<String, f64>,
    /// Approval step → when an earlier process of this run first needed its approval.
    pub approval_needed_at: BTreeMap<String, String>,
    /// `user@host`, after the `--approver` name when one was given.
    pub operator: String,
    /// `--approver` / `DR_PLAN_APPROVER`.
    pub approver: Option<String>,
    /// A step that stops the run on failure could not even start (its `when` or
    /// parameters did not render): the run aborts like after any such failure.
    pub aborting: bool,
    /// Turns true when another operator takes the run's lock over.
    pub lease_lost: Option<tokio::sync::watch::Receiver<bool>>,
    /// Where steps keep their memories (`None`: files of the run's directory).
    pub memory: Option<Arc<dyn crate::kinds::MemoryStore>>,
}

type AttemptResult = (usize, u32, Result<Outputs, StepError>, Duration);

/// A step attempt whose `step_started` is journaled but not yet durable: its task is
/// spawned only after the journal's next fsync ([`Dispatcher::start_journaled`]).
struct Journaled {
    index: usize,
    attempt: u32,
    with: Json,
    backoff: Duration,
}

/// The attempts of the run: running as tasks, finished but not journaled yet, or
/// journaled and waiting for the fsync that lets them start. Each holds a slot of the
/// concurrency limit.
#[derive(Default)]
struct Attempts {
    running: JoinSet<AttemptResult>,
    /// Taken from `running` in this turn, in the order they finished; an attempt keeps
    /// its slot until its result is journaled.
    finished: VecDeque<Result<AttemptResult, JoinError>>,
    journaled: Vec<Journaled>,
    /// How to stop each attempt spawned: its task, and its stop request.
    stops: Vec<(tokio::task::AbortHandle, Stop)>,
}

impl Attempts {
    fn len(&self) -> usize {
        self.running.len() + self.finished.len() + self.journaled.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Dispatcher<'_> {
    fn record(&mut self, event: Event) -> Result<Record, String> {
        let record =
            self.journal.append(event).map_err(|error| format!("cannot write the journal: {error}"))?;
        self.reporter.record(&record);
        Ok(record)
    }

    /// Journals an event of this scheduler turn without waiting for the disk: it becomes
    /// durable with the turn's one fsync ([`Dispatcher::start_journaled`], or a synced
    /// event), which comes before anything acts on it.
    fn record_unsynced(&mut self, event: Event) -> Result<Record, String> {
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
            ApprovalMode::Ask(Asker(self.questions.0.clone()))
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
            operator: self.operator.clone(),
            redactor: Arc::clone(&self.redactor),
            progress: ProgressSink::new(self.progress.0.clone(), &step.id),
            rpo: self.plan.spec.objectives.rpo.as_ref().map(|rpo| rpo.value.0),
            memory: self.memory.clone(),
        }
    }

    /// Runs until every step finished, a failure aborts the run, an approval blocks
    /// it, or the operator interrupts it.
    ///
    /// # Errors
    /// The journal could not be written (the run stops at once).
    pub async fn run(&mut self) -> Result<RunStatus, String> {
        let ended = self.dispatch().await;
        if ended.is_err() {
            // The run stops on an error (a step task crashed, the journal failed): what it
            // journaled is made durable, if the disk still allows, before the error is
            // reported; a journal that cannot be synced is the error being reported.
            let _ = self.journal.sync();
        }
        ended
    }

    async fn dispatch(&mut self) -> Result<RunStatus, String> {
        let started = Instant::now();
        let mut attempts = Attempts::default();
        let mut stopping = false;
        let mut failed = false;
        let mut blocked = false;
        let mut interrupted = self.console.interrupted();
        loop {
            if interrupted {
                break;
            }
            if !stopping {
                self.launch_ready(&mut attempts)?;
                if self.aborting {
                    stopping = true;
                    failed = true;
                }
            }
            // The turn's one fsync: every event journaled since the last one (results,
            // skips, failures, starts) is durable before a step starts or the dispatcher
            // waits.
            self.start_journaled(&mut attempts)?;
            if attempts.is_empty() {
                break;
            }
            let deadline_left = self.deadline.map(|deadline| deadline.saturating_sub(started.elapsed()));
            let asking = !self.asking.is_empty();
            let mut interrupts = self.console.interrupt_watch();
            let mut lease_lost = self.lease_lost.clone();
            tokio::select! {
                joined = attempts.running.join_next() => {
                    let Some(joined) = joined else { continue };
                    // Attempts that finished meanwhile are taken in this turn too, as if
                    // `select!` had picked them one after the other: their events and the
                    // starts they release share the turn's fsync.
                    attempts.finished.push_back(joined);
                    while let Some(joined) = attempts.running.try_join_next() {
                        attempts.finished.push_back(joined);
                    }
                    while let Some(joined) = attempts.finished.pop_front() {
                        let (index, attempt, result, elapsed) =
                            joined.map_err(|error| format!("a step task crashed: {error}"))?;
                        match self.take_result(index, attempt, result, elapsed, &mut attempts)? {
                            Outcome::Continue => {}
                            Outcome::Abort => {
                                if !stopping && !attempts.is_empty() {
                                    self.say_still_running();
                                }
                                stopping = true;
                                failed = true;
                            }
                            Outcome::Blocked => { stopping = true; blocked = true; }
                        }
                        if !attempts.finished.is_empty() && !stopping {
                            self.launch_ready(&mut attempts)?;
                            if self.aborting {
                                stopping = true;
                                failed = true;
                            }
                        }
                    }
                }
                Some(update) = self.progress.1.recv() => self.take_update(update)?,
                Some(question) = self.questions.1.recv() => self.enqueue_question(question)?,
                typed = self.console.next_line(), if asking => match typed {
                    Typed::Interrupted => interrupted = true,
                    typed => self.answer(typed),
                },
                _ = interrupts.wait_for(|count| *count > 0) => { interrupted = true; }
                // Another operator took the lock over (this process was paused, or cut
                // off): the run is theirs. Dropping the attempts kills their programs at
                // once, instead of letting a step run beside its new attempt.
                () = taken_over(lease_lost.as_mut()) => {
                    // A section that must put things back (a swap's refused connections)
                    // still does; nothing more is journaled: the run is not this
                    // process's any more.
                    let _ = stop_attempts(&mut attempts).await;
                    return Err("the lock was taken over by another operator".to_owned());
                }
                () = sleep_or_forever(deadline_left) => {
                    self.deadline_passed(&mut attempts).await?;
                    failed = true;
                    interrupted = false;
                    break;
                }
            }
            if interrupted {
                self.sync_journal()?;
                self.stop_all(&mut attempts).await?;
                break;
            }
        }
        let status = self.final_status(interrupted, failed, blocked).await?;
        self.record(Event::RunFinished { status })?;
        Ok(status)
    }

    /// Journals what a finished attempt sent before it returned (a warning: before its
    /// result, and never lost when this was the last step), then its result.
    fn take_result(
        &mut self,
        index: usize,
        attempt: u32,
        result: Result<Outputs, StepError>,
        elapsed: Duration,
        attempts: &mut Attempts,
    ) -> Result<Outcome, String> {
        while let Ok(update) = self.progress.1.try_recv() {
            self.take_update(update)?;
        }
        self.finish_attempt(index, attempt, result, elapsed, attempts)
    }

    /// Makes the journal durable, then spawns the attempts whose start it holds: no step
    /// runs before its `step_started` (and whatever released it) is on disk.
    fn start_journaled(&mut self, attempts: &mut Attempts) -> Result<(), String> {
        self.sync_journal()?;
        for Journaled { index, attempt, with, backoff } in std::mem::take(&mut attempts.journaled) {
            let context = self.step_context(index);
            let step = &self.plan.steps[index];
            let kind = step.kind;
            let timeout = step.timeout.unwrap_or(DEFAULT_STEP_TIMEOUT);
            let stop = Stop::default();
            let told = stop.clone();
            let handle = attempts.running.spawn(async move {
                tokio::time::sleep(backoff).await;
                let started = Instant::now();
                let result = within_timeout(timeout, told, crate::kinds::execute(kind, with, &context)).await;
                (index, attempt, result, started.elapsed())
            });
            attempts.stops.push((handle, stop));
        }
        Ok(())
    }

    /// The run deadline passed: every step still running is stopped and recorded failed.
    async fn deadline_passed(&mut self, attempts: &mut Attempts) -> Result<(), String> {
        self.reporter.message("the run deadline passed: stopping");
        for told in stop_attempts(attempts).await {
            self.record_told(told)?;
        }
        for (index, state) in self.states.iter_mut().enumerate() {
            if matches!(state, StepState::Interrupted { .. }) {
                *state = StepState::Failed { error: "the run deadline passed".into() };
                let step = self.plan.steps[index].id.clone();
                let event = Event::StepFailed {
                    step,
                    attempt: self.attempts[index],
                    error: "the run deadline passed".into(),
                    will_retry: false,
                    seconds: 0.0,
                };
                let record = self.journal.append_unsynced(event).map_err(|error| error.to_string())?;
                self.reporter.record(&record);
            }
        }
        // One fsync for all of them, before the undo acts on them.
        self.sync_journal()
    }

    /// Ctrl-C, SIGTERM or SIGHUP: a question waiting is withdrawn and every running step
    /// stopped. Dropping the tasks kills their child processes (kill_on_drop); the steps
    /// stay "started, not finished" in the journal, for resume. A step in a section that
    /// must put things back first is told instead, and what it returns is journaled.
    async fn stop_all(&mut self, attempts: &mut Attempts) -> Result<(), String> {
        if !self.asking.is_empty() {
            self.asking.clear();
            self.reporter.answered(true);
        }
        for told in stop_attempts(attempts).await {
            self.record_told(told)?;
        }
        Ok(())
    }

    /// Journals what an attempt told to stop returned: its success (it finished before it
    /// heard), or its failure, which says what it put back. Never retried: the run stops.
    fn record_told(&mut self, (index, attempt, result, elapsed): AttemptResult) -> Result<(), String> {
        let seconds = elapsed.as_secs_f64();
        match result {
            Ok(outputs) => self.succeeded(index, attempt, outputs, seconds),
            Err(error) => {
                let message = self.redactor.redact(&error.to_string());
                self.states[index] = StepState::Failed { error: message.clone() };
                self.record_unsynced(Event::StepFailed {
                    step: self.plan.steps[index].id.clone(),
                    attempt,
                    error: message,
                    will_retry: false,
                    seconds,
                })
                .map(|_| ())
            }
        }
    }

    /// How the run ended; a failed run is compensated (undo) first.
    async fn final_status(
        &mut self,
        interrupted: bool,
        failed: bool,
        blocked: bool,
    ) -> Result<RunStatus, String> {
        Ok(if interrupted {
            RunStatus::Interrupted
        } else if failed {
            self.undo().await?;
            // Ctrl-C during the undo: the operator took over; the run stops as interrupted
            // (exit 130), what was not compensated is in the journal.
            if self.console.interrupted() { RunStatus::Interrupted } else { RunStatus::Failed }
        } else if blocked {
            RunStatus::Blocked
        } else if self.states.iter().any(|state| matches!(state, StepState::Failed { .. })) {
            RunStatus::CompletedWithFailures
        } else {
            RunStatus::Succeeded
        })
    }

    /// Journals the start of every step that can start now (and the skips and failures
    /// found on the way), unsynced: their tasks are spawned by
    /// [`Dispatcher::start_journaled`], after the turn's fsync.
    fn launch_ready(&mut self, attempts: &mut Attempts) -> Result<(), String> {
        for index in 0..self.plan.steps.len() {
            if attempts.len() >= self.concurrency || self.aborting {
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
                self.skip(index, format!("needs {blocker}"), SkipCause::NeedNotDone)?;
                continue;
            }
            if !step.needs.iter().all(|&need| matches!(self.states[need], StepState::Succeeded { .. })) {
                continue;
            }
            match self.context.evaluate_when(step) {
                Ok(Some(true)) => {}
                Ok(Some(false)) => {
                    self.skip(index, "`when` is false".to_owned(), SkipCause::WhenFalse)?;
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
            self.journal_start(index, with, Duration::ZERO, attempts)?;
        }
        Ok(())
    }

    /// Journals the start of an attempt (unsynced); its task waits in `attempts` for
    /// the fsync that lets it run.
    fn journal_start(
        &mut self,
        index: usize,
        with: Json,
        backoff: Duration,
        attempts: &mut Attempts,
    ) -> Result<(), String> {
        self.attempts[index] += 1;
        let attempt = self.attempts[index];
        self.states[index] = StepState::Interrupted { attempt };
        self.record_unsynced(Event::StepStarted { step: self.plan.steps[index].id.clone(), attempt })?;
        attempts.journaled.push(Journaled { index, attempt, with, backoff });
        Ok(())
    }

    fn skip(&mut self, index: usize, reason: String, cause: SkipCause) -> Result<(), String> {
        self.states[index] = StepState::Skipped { reason: reason.clone(), cause };
        self.record_unsynced(Event::StepSkipped {
            step: self.plan.steps[index].id.clone(),
            reason,
            cause: Some(cause),
        })?;
        Ok(())
    }

    fn fail_now(&mut self, index: usize, error: &str) -> Result<(), String> {
        let error = self.redactor.redact(error);
        if self.plan.steps[index].on_failure == OnFailure::Abort {
            self.aborting = true;
        }
        self.states[index] = StepState::Failed { error: error.clone() };
        let step = self.plan.steps[index].id.clone();
        self.record_unsynced(Event::StepFailed {
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
        attempts: &mut Attempts,
    ) -> Result<Outcome, String> {
        let id = self.plan.steps[index].id.clone();
        let seconds = elapsed.as_secs_f64();
        match result {
            Ok(outputs) => {
                self.succeeded(index, attempt, outputs, seconds)?;
                Ok(Outcome::Continue)
            }
            Err(StepError::NeedsApproval) => {
                self.states[index] = StepState::Pending;
                self.attempts[index] -= 1;
                let question = self.approval_question(index);
                self.record_unsynced(Event::ApprovalNeeded { step: id, question })?;
                Ok(Outcome::Blocked)
            }
            Err(error) => self.failed(index, attempt, &error, seconds, attempts),
        }
    }

    /// Records a success: an approval's grant first, then the outputs (redacted in the
    /// journal, whole for the templates of this run).
    fn succeeded(
        &mut self,
        index: usize,
        attempt: u32,
        outputs: Outputs,
        seconds: f64,
    ) -> Result<(), String> {
        let id = self.plan.steps[index].id.clone();
        let mut seconds = seconds;
        if self.plan.steps[index].kind.asks_approval() {
            // The approval's duration is the human's wait: it is part of the RTO,
            // and what the drill history must predict.
            let (via, waited) = match self.answered.remove(&id) {
                Some(waited) => ("terminal", waited),
                None => ("--approve", self.waited_since_needed(&id)),
            };
            seconds = waited;
            let question = self.approval_question(index);
            self.record_unsynced(Event::ApprovalGranted {
                step: id.clone(),
                by: crate::engine::lock::operator(),
                via: via.to_owned(),
                approver: self.approver.clone(),
                question,
                waited_seconds: waited,
            })?;
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
        self.record_unsynced(Event::StepSucceeded {
            step: id,
            attempt,
            outputs: redacted,
            withheld,
            seconds,
        })?;
        Ok(())
    }

    /// Records a failure; retries with backoff while attempts remain, then aborts the
    /// run or lets it go on, as the step's `on_failure` says.
    fn failed(
        &mut self,
        index: usize,
        attempt: u32,
        error: &StepError,
        seconds: f64,
        attempts: &mut Attempts,
    ) -> Result<Outcome, String> {
        let step = &self.plan.steps[index];
        // An operator's no, and a failure another attempt cannot change (a corrupt
        // backup downloaded again is still corrupt), are not retried.
        let no_retry = matches!(error, StepError::Refused(_) | StepError::Final(_));
        let message = self.redactor.redact(&error.to_string());
        let will_retry = !no_retry && attempt < step.attempts;
        self.record_unsynced(Event::StepFailed {
            step: step.id.clone(),
            attempt,
            error: message.clone(),
            will_retry,
            seconds,
        })?;
        if will_retry {
            let backoff = step.backoff.saturating_mul(2u32.saturating_pow(attempt - 1));
            let with = self.context.render_with(step).map(|(with, _)| with).map_err(|error| error.0)?;
            self.journal_start(index, with, backoff, attempts)?;
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

    /// Shows progress (redacted) and journals warnings (redacted).
    fn take_update(&mut self, update: StepUpdate) -> Result<(), String> {
        match update {
            StepUpdate::Progress(mut progress) => {
                progress.note = progress.note.map(|note| self.redactor.redact(&note));
                self.reporter.progress(&progress);
            }
            StepUpdate::Warning { step, text } => {
                let message = self.redactor.redact(&text);
                self.record_unsynced(Event::StepWarning { step, message })?;
            }
        }
        Ok(())
    }

    /// The run fails while other steps still run: say why nothing seems to happen.
    fn say_still_running(&mut self) {
        let names: Vec<String> = self
            .states
            .iter()
            .enumerate()
            .filter(|(_, state)| matches!(state, StepState::Interrupted { .. }))
            .map(|(index, _)| self.plan.steps[index].id.clone())
            .collect();
        self.reporter.message(&format!(
            "the run is failing: no new step starts; waiting for {} to finish (Ctrl-C stops {} now)",
            super::decisions::quoted_list(&names),
            if names.len() == 1 { "it" } else { "them" }
        ));
    }

    /// The rendered `with.prompt` of an approval step, secrets redacted.
    fn approval_question(&self, index: usize) -> String {
        let rendered = self.context.render_with(&self.plan.steps[index]).map(|(with, _)| with);
        let prompt =
            rendered.ok().and_then(|with| with.get("prompt").and_then(Json::as_str).map(str::to_owned));
        self.redactor.redact(&prompt.unwrap_or_default())
    }

    /// Seconds since an earlier process of this run first needed this approval (0 if
    /// none did): a run blocked at 03:10 and resumed with `--approve` at 03:25 waited 15
    /// minutes for it.
    fn waited_since_needed(&self, step: &str) -> f64 {
        let needed =
            self.approval_needed_at.get(step).and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok());
        needed.map_or(0.0, |needed| {
            (chrono::Utc::now() - needed.with_timezone(&chrono::Utc)).num_milliseconds().max(0) as f64
                / 1000.0
        })
    }

    /// A running approval step asks its question; one question is on screen at a time.
    fn enqueue_question(&mut self, question: Question) -> Result<(), String> {
        self.asking.push_back((question, Instant::now()));
        if self.asking.len() == 1 {
            self.show_question()?;
        }
        Ok(())
    }

    fn show_question(&mut self) -> Result<(), String> {
        let Some((question, since)) = self.asking.front_mut() else { return Ok(()) };
        *since = Instant::now();
        let step = question.step.clone();
        let Some(index) = self.plan.index_of(&step) else { return Ok(()) };
        let text = self.approval_question(index);
        self.record(Event::ApprovalAsked { step: step.clone(), question: text.clone() })?;
        self.console.discard_typed();
        self.reporter.ask(&step, &text);
        Ok(())
    }

    /// The operator typed a line (or input ended) while a question was on screen.
    fn answer(&mut self, typed: Typed) {
        let verdict = match &typed {
            Typed::Line(line) => match super::console::classify(line) {
                Some(super::console::Answer::Yes) => Verdict::Approved,
                Some(super::console::Answer::No) => Verdict::Refused,
                Some(super::console::Answer::Interrupted | super::console::Answer::NoTerminal) | None => {
                    self.reporter.ask_again(&super::console::retry_prompt(line, ("approve", "refuse")));
                    return;
                }
            },
            // Nobody can answer any more: every question waits for `--approve` (exit 3).
            Typed::End | Typed::Interrupted => Verdict::NoTerminal,
        };
        self.reporter.answered(verdict == Verdict::NoTerminal);
        let answered: Vec<(Question, Instant)> = if verdict == Verdict::NoTerminal {
            self.asking.drain(..).collect()
        } else {
            self.asking.pop_front().into_iter().collect()
        };
        for (question, since) in answered {
            if verdict == Verdict::Approved {
                self.answered.insert(question.step.clone(), since.elapsed().as_secs_f64());
            }
            let _ = question.reply.send(verdict);
        }
        if !self.asking.is_empty() {
            let _ = self.show_question();
        }
    }

    /// Compensates succeeded steps with `undo: true`, newest first.
    async fn undo(&mut self) -> Result<(), String> {
        // What the run journaled last (the failure that stopped it) is on disk before
        // anything is compensated.
        self.sync_journal()?;
        let order: Vec<usize> =
            self.completed.iter().rev().copied().filter(|&index| self.plan.steps[index].undo).collect();
        for index in order {
            let step = &self.plan.steps[index];
            let StepState::Succeeded { outputs } = self.states[index].clone() else { continue };
            // Ctrl-C during the undo: the operator takes over; what is left is said, not done.
            if self.console.interrupted() {
                let reason = "not compensated: the operator interrupted the undo; check the system and \
                              compensate by hand if needed"
                    .to_owned();
                self.record(Event::UndoSkipped { step: step.id.clone(), reason })?;
                continue;
            }
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
            let interrupts = self.console.interrupt_watch();
            let result = match with {
                Ok(with) => {
                    let timeout = step.timeout.unwrap_or(DEFAULT_STEP_TIMEOUT);
                    compensate(timeout, interrupts, crate::kinds::undo(step.kind, with, &outputs, &context))
                        .await
                }
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

/// Stops every running attempt: one in a shielded section (see [`crate::kinds::stop`])
/// is told and waited for, and what it returned is given back to be journaled; the
/// others are dropped, which kills their programs.
async fn stop_attempts(attempts: &mut Attempts) -> Vec<AttemptResult> {
    let mut told = BTreeSet::new();
    for (handle, stop) in attempts.stops.drain(..) {
        if stop.request() {
            told.insert(handle.id());
        } else {
            handle.abort();
        }
    }
    let mut results = Vec::new();
    while let Some(joined) = attempts.running.join_next_with_id().await {
        if let Ok((id, result)) = joined
            && told.contains(&id)
        {
            results.push(result);
        }
    }
    results
}

/// One attempt within its `timeout:`. At the timeout, an attempt in a shielded section
/// is told to stop and waited for (it puts back what it changed); any other is dropped.
async fn within_timeout(
    timeout: Duration,
    stop: Stop,
    attempt: impl Future<Output = Result<Outputs, StepError>>,
) -> Result<Outputs, StepError> {
    let timed_out = || {
        format!(
            "timed out after {}; raise `timeout:` if this step legitimately takes longer",
            crate::lang::duration::format_duration(timeout)
        )
    };
    let attempt = stop.scope(attempt);
    tokio::pin!(attempt);
    tokio::select! {
        result = &mut attempt => result,
        () = tokio::time::sleep(timeout) => {
            if !stop.request() {
                return Err(StepError::Failed(timed_out()));
            }
            attempt.await.map_err(|error| StepError::Failed(format!("{}; {error}", timed_out())))
        }
    }
}

/// One compensation within `timeout`. Ctrl-C stops it as it stops a step: dropping it
/// kills its programs (a shell between two commands would otherwise outlive the signal
/// and keep the operator waiting for the whole undo), except in a shielded section,
/// which is told and waited for (a swap back puts the connections back first).
async fn compensate(
    timeout: Duration,
    mut interrupts: tokio::sync::watch::Receiver<u32>,
    undo: impl Future<Output = Result<(), StepError>>,
) -> Result<(), String> {
    let stop = Stop::default();
    let undo = stop.scope(tokio::time::timeout(timeout, undo));
    tokio::pin!(undo);
    let finished = |finished: Result<Result<(), StepError>, tokio::time::error::Elapsed>| match finished {
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(_) => Err("undo timed out".to_owned()),
    };
    let interrupted = "interrupted by the operator; check the system and compensate by hand if needed";
    tokio::select! {
        result = &mut undo => finished(result),
        _ = interrupts.wait_for(|count| *count > 0) => {
            if !stop.request() {
                return Err(interrupted.to_owned());
            }
            finished(undo.await).map_err(|error| format!("{interrupted}: {error}"))
        }
    }
}

/// Returns once the lease is lost; never without a lease (or when its sender is gone).
async fn taken_over(lease: Option<&mut tokio::sync::watch::Receiver<bool>>) {
    let lost = match lease {
        Some(lease) => lease.wait_for(|lost| *lost).await.is_ok(),
        None => false,
    };
    if !lost {
        std::future::pending::<()>().await;
    }
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}
