//! The checkpoint journal: append-only, one JSON event per line, each carrying the hash
//! of the line before it (`runs/<run-id>/journal.jsonl`, or one S3 object per sync).
//! Events are durable (fsync, or the object's PUT answered) before anything acts on
//! them; the events of one scheduler turn share one sync. A crash (even `kill -9`)
//! loses only events nothing acted on. Replaying it gives the run's state; resume
//! starts from there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::{JournalSink, StateDir, StateError};
use crate::sys::clock::now;
use serde_json::{Map, Value as Json};

/// The journal format version written in `run_started`.
pub const FORMAT_VERSION: u32 = 1;

/// One line of the journal.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The SHA-256 (hex) of the previous line's bytes, or of the plan snapshot for the
    /// first event: the journal is a hash chain (`dr-plan verify`). Absent in journals
    /// written before it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// What the journal records.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run began.
    RunStarted {
        /// Journal format version.
        format: u32,
        /// The run id.
        run_id: String,
        /// Plan name.
        plan: String,
        /// Plan file path as given.
        plan_path: String,
        /// SHA-256 of the plan file.
        plan_hash: String,
        /// Drill mode.
        drill: bool,
        /// Resolved inputs (secrets redacted).
        inputs: Map<String, Json>,
        /// Resolved vars (secrets redacted).
        vars: Map<String, Json>,
        /// `user@host`.
        operator: String,
    },
    /// `dr-plan resume` took the run up again.
    Resumed {
        /// `user@host`.
        operator: String,
        /// Steps that were interrupted and will run again.
        rerun: Vec<String>,
    },
    /// An attempt of a step began.
    StepStarted {
        /// Step id.
        step: String,
        /// 1-based attempt.
        attempt: u32,
    },
    /// A step succeeded.
    StepSucceeded {
        /// Step id.
        step: String,
        /// The attempt that succeeded.
        attempt: u32,
        /// Outputs (secrets redacted).
        outputs: Map<String, Json>,
        /// Outputs that held a secret value: the journal keeps them redacted, so a
        /// resumed run cannot feed them to later steps.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        withheld: Vec<String>,
        /// Seconds the attempt took.
        seconds: f64,
    },
    /// An attempt failed.
    StepFailed {
        /// Step id.
        step: String,
        /// The attempt.
        attempt: u32,
        /// Why (secrets redacted).
        error: String,
        /// Whether another attempt follows.
        will_retry: bool,
        /// Seconds the attempt took.
        seconds: f64,
    },
    /// A step did not run.
    StepSkipped {
        /// Step id.
        step: String,
        /// Why, for people.
        reason: String,
        /// Why, for resume (journals written before it existed: read from `reason`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<SkipCause>,
    },
    /// An approval step needs a human and none was available.
    ApprovalNeeded {
        /// Step id.
        step: String,
        /// The question (`with.prompt`, rendered, secrets redacted).
        #[serde(default)]
        question: String,
    },
    /// An approval question was put to the operator at the terminal.
    ApprovalAsked {
        /// Step id.
        step: String,
        /// The question (`with.prompt`, rendered, secrets redacted).
        question: String,
    },
    /// An approval was granted.
    ApprovalGranted {
        /// Step id.
        step: String,
        /// Who: `user@host` of the process that recorded it.
        by: String,
        /// How: `terminal` or `--approve`.
        via: String,
        /// The name given with `--approver` or `DR_PLAN_APPROVER`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approver: Option<String>,
        /// The question that was approved.
        #[serde(default)]
        question: String,
        /// Seconds between the question (asked, or first needed) and the approval.
        #[serde(default)]
        waited_seconds: f64,
    },
    /// A running step warned the operator (e.g. a notification that was not delivered).
    StepWarning {
        /// Step id.
        step: String,
        /// What happened (secrets redacted).
        message: String,
    },
    /// The operator declared an interrupted step finished, having checked by hand.
    StepMarkedDone {
        /// Step id.
        step: String,
        /// Who: `user@host`, after the `--approver` name when one was given.
        operator: String,
        /// Why the operator knows it finished.
        reason: String,
    },
    /// `resume --var`: inputs or vars corrected before any finished step used them.
    ValuesOverridden {
        /// Who.
        operator: String,
        /// Name → new value (secrets redacted).
        values: Map<String, Json>,
    },
    /// Compensation of a step began.
    UndoStarted {
        /// Step id.
        step: String,
    },
    /// A step with `undo: true` was deliberately not compensated.
    UndoSkipped {
        /// Step id.
        step: String,
        /// Why, and what to do.
        reason: String,
    },
    /// Compensation finished.
    UndoFinished {
        /// Step id.
        step: String,
        /// `None` on success.
        error: Option<String>,
    },
    /// A stale lock was broken.
    LockBroken {
        /// Who broke it.
        operator: String,
        /// The previous holder, as recorded in the lock.
        holder: String,
    },
    /// The run stopped.
    RunFinished {
        /// The outcome.
        status: RunStatus,
    },
}

/// Why a step did not run.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SkipCause {
    /// Its `when` was false: a resume keeps it skipped.
    WhenFalse,
    /// A step it needs failed or was skipped: a resume gives it another chance.
    NeedNotDone,
}

impl SkipCause {
    /// The cause of a skip journaled before causes were: `dr-plan` wrote "needs ..."
    /// for a need that was not done, and "`when` is false" otherwise.
    #[must_use]
    pub fn of_old_journal(reason: &str) -> SkipCause {
        if reason.starts_with("needs ") { SkipCause::NeedNotDone } else { SkipCause::WhenFalse }
    }
}

/// How a run ended (so far).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every step succeeded or was skipped.
    Succeeded,
    /// A step failed; the run was aborted.
    Failed,
    /// Waiting for an approval or a decision.
    Blocked,
    /// The operator interrupted it.
    Interrupted,
    /// Every step ran, but steps with `on_failure: continue` failed (and what needed
    /// them was skipped): not a success, and nothing was compensated. Resume runs the
    /// failed steps again.
    CompletedWithFailures,
}

impl RunStatus {
    /// Every label of the `dr_plan_run_status` metric.
    pub const LABELS: [&'static str; 6] =
        ["succeeded", "failed", "blocked", "interrupted", "completed_with_failures", "not_finished"];

    /// The label in metrics (`not_finished` is a run whose process died).
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Blocked => "blocked",
            RunStatus::Interrupted => "interrupted",
            RunStatus::CompletedWithFailures => "completed_with_failures",
        }
    }

    /// The word for humans.
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Blocked => "blocked",
            RunStatus::Interrupted => "interrupted",
            RunStatus::CompletedWithFailures => "completed with failures",
        }
    }
}

/// Appends records. Each [`JournalWriter::sync`] makes the records written since the
/// last one durable together (one fsync, or one S3 object): a group commit.
#[derive(Debug)]
pub struct JournalWriter {
    /// The hash of the last line written: the next event's `prev`.
    last: String,
    sink: JournalSink,
    /// Lines written since the last sync, not yet durable.
    pending: Vec<u8>,
    /// The run's lock: nothing is written once another operator broke it.
    lease: Option<super::lock::Lease>,
}

impl JournalWriter {
    /// Opens (creating) the journal of `run_id` for appending.
    ///
    /// # Errors
    /// The state cannot be read or written.
    pub fn open(state: &StateDir, run_id: &str) -> Result<JournalWriter, StateError> {
        let (sink, last_line) = state.open_journal(run_id)?;
        // The next event's `prev`: the hash of the last event written, or of the snapshot.
        let last = match last_line {
            Some(line) => sha256_hex(&line),
            None => sha256_hex(&state.read_snapshot(run_id)?.unwrap_or_default()),
        };
        Ok(JournalWriter { last, sink, pending: Vec::new(), lease: None })
    }

    /// From now on, writes only while `lease` holds: once another operator broke the
    /// lock, the run is theirs, and this process must neither record nor start anything.
    pub fn hold(&mut self, lease: super::lock::Lease) {
        self.lease = Some(lease);
    }

    /// Writes one event and waits until it is durable.
    ///
    /// # Errors
    /// The state cannot be written; the run must stop, since it could not be resumed
    /// faithfully.
    pub fn append(&mut self, event: Event) -> Result<Record, String> {
        let record = self.append_unsynced(event)?;
        self.sync()?;
        Ok(record)
    }

    /// Adds one event without waiting for it to be durable; the next
    /// [`JournalWriter::sync`] (or synced append) makes it so. Nothing may act on the
    /// event before then.
    ///
    /// # Errors
    /// The event cannot be encoded.
    pub fn append_unsynced(&mut self, event: Event) -> Result<Record, String> {
        let record = Record { at: now(), prev: Some(self.last.clone()), event };
        let line = serde_json::to_string(&record).map_err(|error| error.to_string())?;
        self.last = sha256_hex(line.as_bytes());
        self.pending.extend_from_slice(line.as_bytes());
        self.pending.push(b'\n');
        Ok(record)
    }

    /// Waits until every event added so far is durable.
    ///
    /// # Errors
    /// The state cannot be written.
    pub fn sync(&mut self) -> Result<(), String> {
        if !self.pending.is_empty() {
            if let Some(lease) = &self.lease {
                lease.check().map_err(|holder| format!("the lock is no longer this process's: {holder}"))?;
            }
            self.sink.write(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// The lease the writes hold, if any.
    #[must_use]
    pub fn lease(&self) -> Option<&super::lock::Lease> {
        self.lease.as_ref()
    }

    /// The hash of the last event added: the journal's head.
    #[must_use]
    pub fn head(&self) -> &str {
        &self.last
    }
}

/// The SHA-256 of `bytes`, in hex.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A journal whose hash chain holds: how many events, and the head (the hash of the
/// last event's line), which anyone may record elsewhere to detect a later truncation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Events checked.
    pub events: usize,
    /// SHA-256 of the last event's line.
    pub head: String,
    /// A last line cut short (the process died while writing it): not an event, ignored
    /// as resume ignores it.
    pub torn_last_line: bool,
}

/// Where a journal's hash chain breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    /// The line (1-based, over the whole journal) of the first event that does not match.
    pub line: usize,
    /// Where that line is: `file:line`, or `s3://…/<seq>.jsonl:line`.
    pub at: String,
    /// What does not match.
    pub problem: String,
    /// The journal has no chain at all: written by a dr-plan older than hash chains.
    pub unchained: bool,
}

impl Broken {
    /// Where the chain breaks, for a report: `line 4` of a local journal, or the S3
    /// object and line (a journal in S3 is many objects).
    #[must_use]
    pub fn where_(&self) -> String {
        if self.at.starts_with("s3://") { self.at.clone() } else { format!("line {}", self.line) }
    }
}

/// A run's journal and plan snapshot as stored, read once: replayed and its chain
/// checked from the same bytes (in S3 each read lists and fetches many objects).
#[derive(Debug)]
pub struct StoredRun {
    journal: crate::state::StoredJournal,
    /// The plan as it was when the run started (`None`: not kept).
    pub snapshot: Option<Vec<u8>>,
}

impl StoredRun {
    /// Reads the journal and the snapshot of `run_id`.
    ///
    /// # Errors
    /// Either cannot be read.
    pub fn read(state: &StateDir, run_id: &str) -> Result<StoredRun, StateError> {
        Ok(StoredRun { journal: state.read_journal(run_id)?, snapshot: state.read_snapshot(run_id)? })
    }

    /// The journal's events. A torn last line (the process died while writing it) is
    /// ignored; a damaged line elsewhere is an error.
    ///
    /// # Errors
    /// A damaged line (with where it is).
    pub fn records(&self) -> Result<Vec<Record>, String> {
        let mut records = Vec::with_capacity(self.journal.lines.len());
        for line in &self.journal.lines {
            if line.bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Record>(&line.bytes) {
                Ok(record) => records.push(record),
                Err(error) => return Err(format!("{}: damaged journal line: {error}", line.at)),
            }
        }
        Ok(records)
    }

    /// The run's state, replayed from its events.
    ///
    /// # Errors
    /// A damaged line, or events out of order.
    pub fn replay(&self) -> Result<RunState, String> {
        self.records().and_then(RunState::replay)
    }

    /// Recomputes the hash chain from the plan snapshot.
    ///
    /// # Errors
    /// The first line whose `prev` is not the hash of what precedes it: an event changed,
    /// removed, inserted or reordered, the snapshot replaced, or a journal written before
    /// hash chains existed.
    pub fn verify(&self) -> Result<Verified, Broken> {
        let stored = &self.journal;
        let snapshot = self.snapshot.clone().unwrap_or_default();
        let mut expected = sha256_hex(&snapshot);
        let mut events = 0;
        for (index, line) in stored.lines.iter().enumerate() {
            let broken = |problem: String, unchained: bool| Broken {
                line: index + 1,
                at: line.at.clone(),
                problem,
                unchained,
            };
            // Blank lines are no events (the reader skips them too) and no tampering.
            if line.bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let prev = serde_json::from_slice::<Record>(&line.bytes)
                .map_err(|error| broken(format!("not an event: {error}"), false))?
                .prev;
            match prev {
                Some(prev) if prev == expected => {}
                Some(_) if events == 0 => {
                    return Err(broken(
                    "its `prev` is not the hash of plan.snapshot: the snapshot was replaced, or the first events \
                     were removed"
                        .to_owned(),
                    false,
                ));
                }
                Some(_) => {
                    let before = stored.lines[..index]
                        .iter()
                        .rfind(|line| !line.bytes.iter().all(u8::is_ascii_whitespace))
                        .map_or("-", |line| line.at.as_str());
                    // `line 3` within one file; the object and line across S3 objects.
                    let file_of = |at: &str| at.rsplit_once(':').map(|(file, _)| file.to_owned());
                    let named = match (file_of(before), file_of(&line.at)) {
                        (Some(left), Some(right)) if left == right => {
                            format!("line {}", before.rsplit_once(':').map_or("?", |(_, number)| number))
                        }
                        _ => before.to_owned(),
                    };
                    return Err(broken(
                        format!(
                            "its `prev` is not the hash of {named}: that line was changed, or events were removed, \
                         inserted or reordered here"
                        ),
                        false,
                    ));
                }
                None => {
                    return Err(broken(
                    "it has no `prev`: the journal was written by a dr-plan older than hash chains, or the field \
                     was removed"
                        .to_owned(),
                    events == 0,
                ));
                }
            }
            expected = sha256_hex(&line.bytes);
            events += 1;
        }
        Ok(Verified { events, head: expected, torn_last_line: stored.torn_last_line })
    }
}

/// Recomputes the hash chain of the journal of `run_id` from its plan snapshot; see
/// [`StoredRun::verify`]. An unreadable journal is a [`Broken`] at line 0.
///
/// # Errors
/// Where the chain breaks.
pub fn verify(state: &StateDir, run_id: &str) -> Result<Verified, Broken> {
    StoredRun::read(state, run_id)
        .map_err(|error| Broken {
            line: 0,
            at: state.journal_location(run_id),
            problem: error.to_string(),
            unchained: false,
        })?
        .verify()
}

/// Reads and replays the journal of `run_id`.
///
/// # Errors
/// Unreadable journal, a damaged line (with where it is), or events out of order.
pub fn replay(state: &StateDir, run_id: &str) -> Result<RunState, String> {
    read_run(state, run_id).and_then(RunState::replay)
}

/// Reads the journal of `run_id`. A torn last line (the process died while writing
/// it) is ignored; a damaged line elsewhere is an error.
///
/// # Errors
/// Unreadable journal or a damaged line (with where it is).
pub fn read_run(state: &StateDir, run_id: &str) -> Result<Vec<Record>, String> {
    StoredRun::read(state, run_id).map_err(|error| error.to_string())?.records()
}

/// Reads a journal. A torn last line (the process died while writing it) is ignored;
/// a damaged line elsewhere is an error.
///
/// # Errors
/// Unreadable file or a damaged line (with its number).
pub fn read(path: &Path) -> Result<Vec<Record>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::with_capacity(lines.len());
    for (number, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(record) => records.push(record),
            Err(_) if number + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(error) => {
                return Err(format!("{}:{}: damaged journal line: {error}", path.display(), number + 1));
            }
        }
    }
    Ok(records)
}

/// What a step's state is after replaying the journal.
#[derive(Clone, Debug, PartialEq)]
pub enum StepState {
    /// Not started.
    Pending,
    /// Started and not finished: it was running when the process stopped.
    Interrupted {
        /// The attempt that was running.
        attempt: u32,
    },
    /// Finished successfully.
    Succeeded {
        /// Its outputs.
        outputs: Map<String, Json>,
    },
    /// Failed for good.
    Failed {
        /// Why.
        error: String,
    },
    /// Did not run.
    Skipped {
        /// Why, for people.
        reason: String,
        /// Why, for resume.
        cause: SkipCause,
    },
    /// Succeeded, then was compensated by its undo when the run failed: its effect is
    /// gone, so a resume runs it again.
    Undone,
}

/// A run as the journal tells it.
#[derive(Clone, Debug)]
pub struct RunState {
    /// The first record's details.
    pub started: Event,
    /// When it started.
    pub started_at: String,
    /// Step id → state.
    pub steps: BTreeMap<String, StepState>,
    /// Attempts per step.
    pub attempts: BTreeMap<String, u32>,
    /// Last status written, if the run stopped cleanly.
    pub status: Option<RunStatus>,
    /// Step id → outputs the journal keeps redacted (they held a secret value).
    pub withheld: BTreeMap<String, Vec<String>>,
    /// Step id → the reason given when the operator marked it done by hand.
    pub marked_done: BTreeMap<String, String>,
    /// Inputs and vars corrected by `resume --var`, in order (later wins).
    pub overridden: Vec<(String, Json)>,
    /// Approval step → when its question was first asked or needed and not yet answered.
    pub approval_needed_at: BTreeMap<String, String>,
    /// Every record.
    pub records: Vec<Record>,
}

impl RunState {
    /// Replays records.
    ///
    /// # Errors
    /// A journal that does not start with `run_started`.
    pub fn replay(records: Vec<Record>) -> Result<RunState, String> {
        let Some(first) = records.first() else { return Err("the journal is empty".to_owned()) };
        let Event::RunStarted { .. } = &first.event else {
            return Err("the journal does not start with run_started".to_owned());
        };
        let mut state = RunState {
            started: first.event.clone(),
            started_at: first.at.clone(),
            steps: BTreeMap::new(),
            attempts: BTreeMap::new(),
            status: None,
            withheld: BTreeMap::new(),
            marked_done: BTreeMap::new(),
            overridden: Vec::new(),
            approval_needed_at: BTreeMap::new(),
            records: Vec::new(),
        };
        for record in &records {
            match &record.event {
                Event::StepStarted { step, attempt } => {
                    state.steps.insert(step.clone(), StepState::Interrupted { attempt: *attempt });
                    state.attempts.insert(step.clone(), *attempt);
                    state.status = None;
                }
                Event::StepSucceeded { step, outputs, withheld, .. } => {
                    state.steps.insert(step.clone(), StepState::Succeeded { outputs: outputs.clone() });
                    state.withheld.insert(step.clone(), withheld.clone());
                    state.marked_done.remove(step);
                    state.approval_needed_at.remove(step);
                }
                Event::StepFailed { step, error, will_retry, .. } => {
                    if !will_retry {
                        state.steps.insert(step.clone(), StepState::Failed { error: error.clone() });
                    }
                }
                Event::StepSkipped { step, reason, cause } => {
                    let cause = cause.unwrap_or_else(|| SkipCause::of_old_journal(reason));
                    state.steps.insert(step.clone(), StepState::Skipped { reason: reason.clone(), cause });
                }
                // The dispatcher puts a step that waits for an approval back to pending and
                // takes back its attempt: it was never interrupted, and asking is no attempt.
                Event::ApprovalNeeded { step, .. } => {
                    state.approval_needed_at.entry(step.clone()).or_insert_with(|| record.at.clone());
                    state.steps.insert(step.clone(), StepState::Pending);
                    if let Some(attempts) = state.attempts.get_mut(step) {
                        *attempts = attempts.saturating_sub(1);
                    }
                }
                Event::UndoFinished { step, error: None } => {
                    state.steps.insert(step.clone(), StepState::Undone);
                }
                Event::ApprovalGranted { step, .. } => {
                    state.approval_needed_at.remove(step);
                }
                // Done by hand: it has no outputs, and later steps that read some are refused.
                Event::StepMarkedDone { step, reason, .. } => {
                    state.approval_needed_at.remove(step);
                    state.steps.insert(step.clone(), StepState::Succeeded { outputs: Map::new() });
                    state.marked_done.insert(step.clone(), reason.clone());
                }
                Event::ValuesOverridden { values, .. } => {
                    state.overridden.extend(values.iter().map(|(name, value)| (name.clone(), value.clone())));
                }
                Event::RunFinished { status } => state.status = Some(*status),
                Event::Resumed { .. } => state.status = None,
                // Asked at a terminal: waiting for an answer from then on, also across a
                // crash (the wait counts from the first time it was asked).
                Event::ApprovalAsked { step, .. } => {
                    state.approval_needed_at.entry(step.clone()).or_insert_with(|| record.at.clone());
                }
                Event::RunStarted { .. }
                | Event::StepWarning { .. }
                | Event::UndoStarted { .. }
                | Event::UndoFinished { .. }
                | Event::UndoSkipped { .. }
                | Event::LockBroken { .. } => {}
            }
        }
        state.records = records;
        Ok(state)
    }

    /// The run id.
    #[must_use]
    pub fn run_id(&self) -> &str {
        match &self.started {
            Event::RunStarted { run_id, .. } => run_id,
            _ => "",
        }
    }
}

/// Checks that `run_id` is a run id before any path is built from it: letters, digits,
/// `-` and `_`, starting with a letter or digit, at most 200 characters — so `..`,
/// `/etc` or a NUL can never name a directory outside `runs/`.
///
/// # Errors
/// What is wrong, with an example of a run id.
pub fn check_run_id(run_id: &str) -> Result<(), String> {
    let well_formed = run_id.len() <= 200
        && run_id.chars().next().is_some_and(|first| first.is_ascii_alphanumeric())
        && run_id
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || character == '-' || character == '_');
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a run id: run ids are letters, digits and dashes, like \
             `db-corruption-20261122-031502-9f3a`",
            run_id.escape_debug()
        ))
    }
}

/// `runs/<run-id>` under the state directory.
#[must_use]
pub fn run_dir(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("runs").join(run_id)
}

/// The journal path of a run.
#[must_use]
pub fn journal_path(state_dir: &Path, run_id: &str) -> PathBuf {
    run_dir(state_dir, run_id).join("journal.jsonl")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(lines: &[&str]) -> RunState {
        let records = lines.iter().map(|line| serde_json::from_str(line).expect("a record")).collect();
        RunState::replay(records).expect("replays")
    }

    const STARTED: &str = r#"{"at":"2026-12-01T03:00:00.000Z","event":"run_started","format":1,"run_id":"r-1","plan":"p","plan_path":"/p.yaml","plan_hash":"h","drill":false,"inputs":{},"vars":{},"operator":"a@b"}"#;

    #[test]
    fn journals_written_before_skip_causes_still_tell_why_a_step_was_skipped() {
        let state = replay(&[
            STARTED,
            r#"{"at":"2026-12-01T03:00:01.000Z","event":"step_skipped","step":"b","reason":"needs `a` failed"}"#,
            r#"{"at":"2026-12-01T03:00:01.000Z","event":"step_skipped","step":"c","reason":"`when` is false"}"#,
        ]);
        assert!(matches!(state.steps["b"], StepState::Skipped { cause: SkipCause::NeedNotDone, .. }));
        assert!(matches!(state.steps["c"], StepState::Skipped { cause: SkipCause::WhenFalse, .. }));
    }

    #[test]
    fn a_new_journal_says_the_cause_and_the_reason_is_only_for_people() {
        let state = replay(&[
            STARTED,
            r#"{"at":"2026-12-01T03:00:01.000Z","event":"step_skipped","step":"b","reason":"needs anything","cause":"when_false"}"#,
        ]);
        assert!(matches!(state.steps["b"], StepState::Skipped { cause: SkipCause::WhenFalse, .. }));
    }
}
