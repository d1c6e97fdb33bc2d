//! Run reports, read from the journal: per-step times and attempts, measured RTO and
//! RPO against the objectives, approvals, the drill flag; markdown, JSON and a
//! Prometheus textfile; the HTML page is drawn in [`html`].

mod html;

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use super::journal::{Event, RunState, RunStatus, StepState};
use crate::lang::duration::{format_duration, format_measured};
use crate::lang::plan::Plan;
use crate::preview::gantt::{Mark, Task};

pub use html::{DrillPoint, drill_trend};

/// One step's line in the report.
#[derive(Clone, Debug)]
pub struct StepLine {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// succeeded / failed / skipped / pending / interrupted / undone.
    pub state: String,
    /// First start.
    pub started: Option<String>,
    /// Last end.
    pub ended: Option<String>,
    /// Seconds of the successful (or last) attempt.
    pub seconds: Option<f64>,
    /// Attempts made.
    pub attempts: u32,
    /// Outputs (redacted, as journaled).
    pub outputs: serde_json::Map<String, Json>,
    /// Error or skip reason.
    pub note: Option<String>,
    /// The plan's `description:` of the step.
    pub description: Option<String>,
    /// Ids of the steps it needs.
    pub needs: Vec<String>,
    /// The plan's `estimate:`.
    pub estimate: Option<std::time::Duration>,
    /// Whether the step waits for an operator's yes (its attempt is a wait).
    pub approval: bool,
}

/// How one attempt of a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// It succeeded.
    Succeeded,
    /// It failed (another attempt may follow).
    Failed,
    /// The journal has no end for it: the process stopped during it, or it still runs.
    Unfinished,
}

/// One attempt of a step on the run's time line.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The step.
    pub step: String,
    /// 1-based attempt.
    pub number: u32,
    /// When it started (RFC 3339).
    pub started: String,
    /// When it ended (RFC 3339); `None` when unfinished.
    pub ended: Option<String>,
    /// How it ended.
    pub outcome: AttemptOutcome,
}

/// A compensation, as the journal records it.
#[derive(Clone, Debug)]
pub struct UndoAction {
    /// The step compensated.
    pub step: String,
    /// When it was recorded (RFC 3339).
    pub at: String,
    /// `undone`, `FAILED: …`, `not finished` or `skipped: …`.
    pub outcome: String,
}

/// A run's report.
#[derive(Clone, Debug)]
pub struct Report {
    run_id: String,
    plan: String,
    drill: bool,
    status: Option<RunStatus>,
    started_at: String,
    ended_at: Option<String>,
    rto: Option<std::time::Duration>,
    rpo: Option<std::time::Duration>,
    steps: Vec<StepLine>,
    approvals: Vec<Approval>,
    warnings: Vec<(String, String)>,
    marked_done: Vec<(String, String, String)>,
    waiting: Vec<(String, String)>,
    attempts: Vec<Attempt>,
    undo_actions: Vec<UndoAction>,
    /// Seconds the service was unavailable, measured by the steps that say so (the
    /// rename window of `pg.swap`); `None` when no such step succeeded.
    unavailable: Option<f64>,
    /// The journal's hash chain, when the report was asked to check it.
    chain: Option<Result<super::journal::Verified, super::journal::Broken>>,
}

/// An approval as the report shows it.
#[derive(Clone, Debug)]
pub struct Approval {
    /// The approval step.
    pub step: String,
    /// The question.
    pub question: String,
    /// `user@host`.
    pub by: String,
    /// `--approver` name.
    pub approver: Option<String>,
    /// `terminal` or `--approve`.
    pub via: String,
    /// When (RFC 3339).
    pub at: String,
    /// Seconds waited.
    pub waited_seconds: f64,
}

impl Approval {
    fn who(&self) -> String {
        self.approver.as_ref().map_or_else(|| self.by.clone(), |name| format!("{name} ({})", self.by))
    }
}

/// A label value as the Prometheus exposition format writes it: `\\`, `"` and newlines
/// escaped, so a name can never add a line of its own to the textfile.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Text from the journal inside a markdown line: no table breaks, no raw HTML.
fn markdown_text(text: &str) -> String {
    crate::lang::diagnostic::escape_controls(text)
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\n', " ")
}

/// What the journal's records say, step by step, for the report.
#[derive(Default)]
struct Recorded {
    first_start: BTreeMap<String, String>,
    last_end: BTreeMap<String, String>,
    seconds: BTreeMap<String, f64>,
    approvals: Vec<Approval>,
    warnings: Vec<(String, String)>,
    marked_done: Vec<(String, String, String)>,
    /// Steps whose compensation failed or never finished, with why.
    undo_failed: BTreeMap<String, String>,
    ended_at: Option<String>,
    attempts: Vec<Attempt>,
    undo_actions: Vec<UndoAction>,
}

impl Recorded {
    fn read(state: &RunState) -> Recorded {
        let mut read = Recorded::default();
        // The last moment the journal saw before a resume: attempts still open then
        // ended, unfinished, when that process stopped.
        let mut previous_at = state.started_at.clone();
        for record in &state.records {
            read.take(&record.event, &record.at, &previous_at);
            previous_at.clone_from(&record.at);
        }
        read
    }

    fn take(&mut self, event: &Event, at: &str, previous_at: &str) {
        match event {
            Event::StepStarted { step, attempt } => {
                self.first_start.entry(step.clone()).or_insert_with(|| at.to_owned());
                self.attempts.push(Attempt {
                    step: step.clone(),
                    number: *attempt,
                    started: at.to_owned(),
                    ended: None,
                    outcome: AttemptOutcome::Unfinished,
                });
            }
            Event::StepSucceeded { step, seconds: taken, attempt, .. } => {
                self.ended(step, at, *taken);
                close_attempt(&mut self.attempts, step, *attempt, at, AttemptOutcome::Succeeded);
            }
            Event::StepFailed { step, seconds: taken, attempt, .. } => {
                self.ended(step, at, *taken);
                close_attempt(&mut self.attempts, step, *attempt, at, AttemptOutcome::Failed);
            }
            Event::ApprovalGranted { step, by, via, approver, question, waited_seconds } => {
                self.approvals.push(Approval {
                    step: step.clone(),
                    question: question.clone(),
                    by: by.clone(),
                    approver: approver.clone(),
                    via: via.clone(),
                    at: at.to_owned(),
                    waited_seconds: *waited_seconds,
                });
            }
            Event::StepWarning { step, message } => self.warnings.push((step.clone(), message.clone())),
            Event::UndoStarted { .. } | Event::UndoFinished { .. } | Event::UndoSkipped { .. } => {
                self.take_undo(event, at);
            }
            Event::StepMarkedDone { step, operator, reason } => {
                self.last_end.insert(step.clone(), at.to_owned());
                self.marked_done.push((step.clone(), operator.clone(), reason.clone()));
            }
            Event::RunFinished { .. } => self.ended_at = Some(at.to_owned()),
            Event::Resumed { .. } => {
                for attempt in self.attempts.iter_mut().filter(|attempt| attempt.ended.is_none()) {
                    attempt.ended = Some(previous_at.to_owned());
                }
            }
            Event::RunStarted { .. }
            | Event::StepSkipped { .. }
            | Event::ApprovalNeeded { .. }
            | Event::ApprovalAsked { .. }
            | Event::LockBroken { .. }
            | Event::ValuesOverridden { .. } => {}
        }
    }

    fn ended(&mut self, step: &str, at: &str, seconds: f64) {
        self.last_end.insert(step.to_owned(), at.to_owned());
        self.seconds.insert(step.to_owned(), seconds);
    }

    /// An undo started (and never finished until an `undo_finished` says otherwise: the
    /// process died during it), finished, failed or was skipped.
    fn take_undo(&mut self, event: &Event, at: &str) {
        let (step, outcome) = match event {
            Event::UndoStarted { step } => {
                self.undo_failed.insert(
                    step.clone(),
                    "the undo started and did not finish (the process stopped during it); check the system and \
                     compensate by hand"
                        .to_owned(),
                );
                (step, "not finished".to_owned())
            }
            Event::UndoFinished { step, error } => {
                match error {
                    Some(error) => self.undo_failed.insert(step.clone(), error.clone()),
                    None => self.undo_failed.remove(step.as_str()),
                };
                self.undo_actions
                    .retain(|action| !(action.step == *step && action.outcome == "not finished"));
                (step, error.as_ref().map_or_else(|| "undone".to_owned(), |error| format!("FAILED: {error}")))
            }
            Event::UndoSkipped { step, reason } => (step, format!("skipped: {reason}")),
            _ => return,
        };
        self.undo_actions.push(UndoAction { step: step.clone(), at: at.to_owned(), outcome });
    }
}

/// The unavailability the steps measured (outputs named by their kind's
/// `unavailability_output`), summed; `None` when no such step succeeded.
fn measured_unavailability(plan: &Plan, state: &RunState) -> Option<f64> {
    let measured: Vec<f64> = plan
        .steps
        .iter()
        .filter_map(|step| {
            let output = step.kind.info().unavailability_output?;
            match state.steps.get(&step.id) {
                Some(StepState::Succeeded { outputs }) => {
                    outputs.get(output).and_then(serde_json::Value::as_f64)
                }
                _ => None,
            }
        })
        .collect();
    (!measured.is_empty()).then(|| measured.iter().sum())
}

/// One line per step of the plan, in plan order, with what the journal says of it.
fn step_lines(plan: &Plan, state: &RunState, read: &Recorded) -> Vec<StepLine> {
    plan.steps
        .iter()
        .map(|step| {
            let recorded = state.steps.get(&step.id).cloned().unwrap_or(StepState::Pending);
            let (state_word, note, outputs) = match recorded {
                StepState::Pending => ("pending", None, serde_json::Map::new()),
                StepState::Interrupted { .. } => ("interrupted", None, serde_json::Map::new()),
                StepState::Succeeded { .. } if state.marked_done.contains_key(&step.id) => (
                    "done by hand",
                    state.marked_done.get(&step.id).map(|reason| format!("marked done: {reason}")),
                    serde_json::Map::new(),
                ),
                // Its compensation failed: the system is neither as the step left it
                // nor as it was before; the operator must know, long after the run.
                StepState::Succeeded { .. } if read.undo_failed.contains_key(&step.id) => {
                    ("undo FAILED", read.undo_failed.get(&step.id).cloned(), serde_json::Map::new())
                }
                StepState::Succeeded { outputs } => ("succeeded", None, outputs),
                StepState::Failed { error } => ("failed", Some(error), serde_json::Map::new()),
                StepState::Skipped { reason, .. } => ("skipped", Some(reason), serde_json::Map::new()),
                StepState::Undone => ("undone", None, serde_json::Map::new()),
            };
            StepLine {
                id: step.id.clone(),
                kind: step.kind.name().to_owned(),
                state: state_word.to_owned(),
                started: read.first_start.get(&step.id).cloned(),
                ended: read.last_end.get(&step.id).cloned(),
                seconds: read.seconds.get(&step.id).copied(),
                attempts: state.attempts.get(&step.id).copied().unwrap_or(0),
                outputs,
                note,
                description: step.description.clone(),
                needs: step.needs.iter().map(|&need| plan.steps[need].id.clone()).collect(),
                estimate: step.estimate,
                approval: step.kind.asks_approval(),
            }
        })
        .collect()
}

/// Ends the open attempt `number` of `step`.
fn close_attempt(attempts: &mut [Attempt], step: &str, number: u32, at: &str, outcome: AttemptOutcome) {
    if let Some(attempt) = attempts
        .iter_mut()
        .rev()
        .find(|attempt| attempt.step == step && attempt.number == number && attempt.ended.is_none())
    {
        attempt.ended = Some(at.to_owned());
        attempt.outcome = outcome;
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|time| time.with_timezone(&Utc))
}

impl Report {
    /// Builds the report of a replayed run.
    #[must_use]
    pub fn new(plan: &Plan, state: &RunState) -> Report {
        let (run_id, drill) = match &state.started {
            Event::RunStarted { run_id, drill, .. } => (run_id.clone(), *drill),
            _ => (String::new(), false),
        };
        let read = Recorded::read(state);
        let steps = step_lines(plan, state, &read);
        let unavailable = measured_unavailability(plan, state);
        Report {
            run_id,
            plan: plan.name().to_owned(),
            drill,
            status: state.status,
            started_at: state.started_at.clone(),
            ended_at: read.ended_at,
            rto: plan.spec.objectives.rto.as_ref().map(|rto| rto.value.get()),
            rpo: plan.spec.objectives.rpo.as_ref().map(|rpo| rpo.value.get()),
            steps,
            approvals: read.approvals,
            warnings: read.warnings,
            marked_done: read.marked_done,
            waiting: super::waiting_questions(state),
            attempts: read.attempts,
            undo_actions: read.undo_actions,
            unavailable,
            chain: None,
        }
    }

    /// Whether the run recovered: only a run that succeeded did.
    #[must_use]
    pub fn recovered(&self) -> bool {
        self.status == Some(RunStatus::Succeeded)
    }

    /// Measured RTO: from the start of the run to its last stop.
    #[must_use]
    pub fn measured_rto(&self) -> Option<std::time::Duration> {
        let start = parse_time(&self.started_at)?;
        let end = parse_time(self.ended_at.as_deref()?)?;
        (end - start).to_std().ok()
    }

    /// Measured RPO: the age of the oldest data restored, from steps that report `age` (seconds).
    #[must_use]
    pub fn measured_rpo(&self) -> Option<std::time::Duration> {
        self.steps
            .iter()
            .filter_map(|step| step.outputs.get("age").and_then(Json::as_f64))
            .reduce(f64::max)
            .map(crate::lang::duration::seconds)
    }

    /// Steps that failed.
    #[must_use]
    pub fn failed_steps(&self) -> Vec<String> {
        self.steps.iter().filter(|step| step.state == "failed").map(|step| step.id.clone()).collect()
    }

    /// Seconds per succeeded step, for the drill history.
    #[must_use]
    pub fn step_seconds(&self) -> BTreeMap<String, f64> {
        self.steps
            .iter()
            .filter(|step| step.state == "succeeded")
            .filter_map(|step| Some((step.id.clone(), step.seconds?)))
            .collect()
    }

    /// Seconds from the start of the run to `time`.
    fn offset(&self, time: &str) -> Option<f64> {
        let start = parse_time(&self.started_at)?;
        Some((parse_time(time)? - start).as_seconds_f64())
    }

    /// Where the time line ends: the run's end, else the last moment an attempt was seen.
    fn timeline_end(&self) -> f64 {
        let run_end = self.ended_at.as_deref().and_then(|end| self.offset(end));
        let attempts = self
            .attempts
            .iter()
            .filter_map(|attempt| self.offset(attempt.ended.as_deref().unwrap_or(&attempt.started)))
            .fold(0.0, f64::max);
        run_end.unwrap_or(0.0).max(attempts)
    }

    /// The measured critical path: from the step that ended last, back through the need
    /// of each that ended last — the chain that decided the RTO.
    #[must_use]
    pub fn critical_path(&self) -> Vec<String> {
        let ended = |id: &str| {
            self.steps
                .iter()
                .find(|step| step.id == id)
                .and_then(|step| step.ended.as_deref())
                .and_then(parse_time)
        };
        let last = self
            .steps
            .iter()
            .filter_map(|step| Some((ended(&step.id)?, step)))
            .max_by_key(|(time, _)| *time)
            .map(|(_, step)| step);
        let mut path = Vec::new();
        let mut cursor = last;
        while let Some(step) = cursor {
            path.push(step.id.clone());
            cursor = step
                .needs
                .iter()
                .filter_map(|need| Some((ended(need)?, need)))
                .max_by_key(|(time, _)| *time)
                .and_then(|(_, need)| self.steps.iter().find(|step| step.id == *need));
        }
        path.reverse();
        path
    }

    /// The measured time line as a Mermaid gantt: one bar per attempt, a section per step.
    fn measured_gantt(&self) -> String {
        let end = self.timeline_end();
        let tasks: Vec<Task> = self
            .attempts
            .iter()
            .filter_map(|attempt| {
                let step = self.steps.iter().find(|step| step.id == attempt.step)?;
                let start = self.offset(&attempt.started)?;
                let stop = attempt.ended.as_deref().and_then(|ended| self.offset(ended)).unwrap_or(end);
                let (what, mark) = match attempt.outcome {
                    AttemptOutcome::Succeeded if step.approval => ("waited, approved", Mark::Active),
                    AttemptOutcome::Succeeded => ("succeeded", Mark::Done),
                    AttemptOutcome::Failed => ("failed", Mark::Critical),
                    AttemptOutcome::Unfinished if step.approval => ("waiting", Mark::Active),
                    AttemptOutcome::Unfinished => ("unfinished", Mark::Plain),
                };
                Some(Task {
                    section: step.id.clone(),
                    name: format!("attempt {} {what}", attempt.number),
                    mark,
                    start,
                    end: stop,
                })
            })
            .collect();
        crate::preview::gantt::mermaid(&format!("Measured timeline of {}", self.run_id), &tasks)
    }

    fn status_word(&self) -> &'static str {
        self.status.map_or("not finished (running, or the process died: resume it)", RunStatus::word)
    }

    /// The RTO: "met" or "MISSED" only for a run that recovered; any other run did not
    /// recover, whatever time it took.
    fn rto_verdict(&self) -> String {
        if self.recovered() {
            return Report::verdict(self.measured_rto(), self.rto);
        }
        let objective =
            self.rto.map(|rto| format!(" (objective {})", format_duration(rto))).unwrap_or_default();
        match self.measured_rto() {
            Some(elapsed) => format!(
                "not recovered — {} elapsed, run {}{objective}",
                format_measured(elapsed),
                self.status_word()
            ),
            None => format!("not recovered — run {}{objective}", self.status_word()),
        }
    }

    fn verdict(measured: Option<std::time::Duration>, objective: Option<std::time::Duration>) -> String {
        match (measured, objective) {
            (Some(measured), Some(objective)) if measured <= objective => {
                format!("{} — met (objective {})", format_measured(measured), format_duration(objective))
            }
            (Some(measured), Some(objective)) => {
                format!("{} — MISSED (objective {})", format_measured(measured), format_duration(objective))
            }
            (Some(measured), None) => format!("{} (no objective set)", format_measured(measured)),
            (None, Some(objective)) => format!("not measured (objective {})", format_duration(objective)),
            (None, None) => "not measured".to_owned(),
        }
    }

    /// One line for the end of a run.
    #[must_use]
    pub fn summary_line(&self) -> String {
        let done = self
            .steps
            .iter()
            .filter(|step| matches!(step.state.as_str(), "succeeded" | "done by hand"))
            .count();
        format!(
            "run {} {}: {done}/{} done; RTO {}",
            self.run_id,
            self.status_word(),
            crate::lang::diagnostic::counted(self.steps.len(), "step", "steps"),
            self.rto_verdict()
        )
    }

    /// The report with the check of the journal's hash chain (`dr-plan verify`): its
    /// head, or where it breaks.
    #[must_use]
    pub fn with_chain(mut self, chain: Result<super::journal::Verified, super::journal::Broken>) -> Report {
        self.chain = Some(chain);
        self
    }

    /// "0.8s of a 2m10s recovery": how long the service itself was down, for runs with a
    /// step that measures it (a swap in place of an in-place restore).
    fn unavailability_text(&self) -> Option<String> {
        let unavailable = format_measured(std::time::Duration::from_secs_f64(self.unavailable?.max(0.0)));
        Some(match self.measured_rto() {
            Some(rto) => format!("{unavailable} of a {} recovery", format_measured(rto)),
            None => unavailable,
        })
    }

    /// The journal line of the summary: intact with its head, or where the chain breaks.
    fn chain_text(&self) -> Option<String> {
        self.chain.as_ref().map(|chain| match chain {
            Ok(verified) => format!("intact ({} events), head `{}`", verified.events, verified.head),
            Err(broken) => {
                format!("**does not match its hash chain** at {}: {}", broken.where_(), broken.problem)
            }
        })
    }

    /// Markdown.
    #[must_use]
    pub fn markdown(&self) -> String {
        let mut out =
            format!("## dr-plan run `{}`{}\n\n", self.run_id, if self.drill { " (drill)" } else { "" });
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| Plan | `{}` |", self.plan);
        let _ = writeln!(out, "| Status | **{}** |", self.status_word());
        let _ = writeln!(out, "| Started | {} |", self.started_at);
        let _ = writeln!(out, "| Ended | {} |", self.ended_at.as_deref().unwrap_or("—"));
        let _ = writeln!(out, "| Measured RTO | {} |", self.rto_verdict());
        if let Some(text) = self.unavailability_text() {
            let _ = writeln!(out, "| Unavailable | {text} |");
        }
        let _ = writeln!(out, "| Measured RPO | {} |", Report::verdict(self.measured_rpo(), self.rpo));
        if let Some(chain) = self.chain_text() {
            let _ = writeln!(out, "| Journal | {chain} |");
        }
        let _ = writeln!(out, "| Drill | {} |\n", if self.drill { "yes" } else { "no" });
        let _ = writeln!(
            out,
            "### Steps\n\n| step | kind | state | started | ended | duration | attempts | note |\n|---|---|---|---|---|---|---|---|"
        );
        for step in &self.steps {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
                step.id,
                step.kind,
                step.state,
                step.started.as_deref().unwrap_or("—"),
                step.ended.as_deref().unwrap_or("—"),
                step.seconds.map_or_else(
                    || "—".to_owned(),
                    |seconds| format_measured(crate::lang::duration::seconds(seconds))
                ),
                step.attempts,
                step.note.as_deref().unwrap_or("").replace('|', "\\|").replace('\n', " ")
            );
        }
        if !self.attempts.is_empty() {
            let _ = writeln!(out, "\n### Timeline\n\n{}", self.measured_gantt().trim_end());
        }
        if !self.approvals.is_empty() || !self.waiting.is_empty() {
            let _ = writeln!(out, "\n### Approvals\n");
            for approval in &self.approvals {
                let _ = writeln!(
                    out,
                    "- `{}` — \"{}\" — approved by {} via {} at {} after waiting {}",
                    approval.step,
                    markdown_text(&approval.question),
                    approval.who(),
                    approval.via,
                    approval.at,
                    format_measured(crate::lang::duration::seconds(approval.waited_seconds))
                );
            }
            for (step, question) in &self.waiting {
                let _ = writeln!(
                    out,
                    "- `{step}` — \"{}\" — **waiting for a decision**",
                    markdown_text(question)
                );
            }
        }
        if !self.marked_done.is_empty() {
            let _ = writeln!(out, "\n### Steps marked done by hand\n");
            for (step, operator, reason) in &self.marked_done {
                let _ = writeln!(out, "- `{step}` by {operator}: {}", markdown_text(reason));
            }
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(out, "\n### Warnings\n");
            for (step, message) in &self.warnings {
                let _ = writeln!(out, "- ⚠ `{step}`: {}", markdown_text(message));
            }
        }
        out
    }

    /// JSON.
    #[must_use]
    pub fn json(&self) -> Json {
        json!({
            "version": 1,
            "run_id": self.run_id,
            "plan": self.plan,
            "drill": self.drill,
            "status": self.status.map(RunStatus::word),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "rto": { "objective_seconds": self.rto.map(|rto| rto.as_secs_f64()), "measured_seconds": self.measured_rto().map(|rto| rto.as_secs_f64()), "verdict": self.rto_verdict() },
            "rpo": { "objective_seconds": self.rpo.map(|rpo| rpo.as_secs_f64()), "measured_seconds": self.measured_rpo().map(|rpo| rpo.as_secs_f64()) },
            "steps": self.steps.iter().map(|step| json!({
                "id": step.id, "kind": step.kind, "state": step.state, "started_at": step.started, "ended_at": step.ended,
                "seconds": step.seconds, "attempts": step.attempts, "outputs": step.outputs, "note": step.note,
            })).collect::<Vec<_>>(),
            "recovered": self.recovered(),
            "unavailable_seconds": self.unavailable,
            "journal": self.chain.as_ref().map(|chain| match chain {
                Ok(verified) => json!({ "verified": true, "events": verified.events, "head": verified.head }),
                Err(broken) => json!({ "verified": false, "line": broken.line, "at": broken.at, "problem": broken.problem }),
            }),
            "approvals": self.approvals.iter().map(|approval| json!({
                "step": approval.step, "question": approval.question, "by": approval.by, "approver": approval.approver,
                "via": approval.via, "at": approval.at, "waited_seconds": approval.waited_seconds,
            })).collect::<Vec<_>>(),
            "waiting_approvals": self.waiting.iter().map(|(step, question)| json!({"step": step, "question": question})).collect::<Vec<_>>(),
            "marked_done": self.marked_done.iter().map(|(step, operator, reason)| json!({"step": step, "by": operator, "reason": reason})).collect::<Vec<_>>(),
            "warnings": self.warnings.iter().map(|(step, message)| json!({"step": step, "message": message})).collect::<Vec<_>>(),
        })
    }

    /// A Prometheus textfile (node_exporter's textfile collector).
    #[must_use]
    pub fn prometheus(&self) -> String {
        let plan = label_value(&self.plan);
        let mut out = String::new();
        if let Some(rto) = self.measured_rto() {
            let _ = writeln!(
                out,
                "# HELP dr_plan_run_duration_seconds Wall time of the last run of the plan.\n# TYPE dr_plan_run_duration_seconds gauge"
            );
            let _ = writeln!(
                out,
                "dr_plan_run_duration_seconds{{plan=\"{plan}\",drill=\"{}\"}} {:.3}",
                self.drill,
                rto.as_secs_f64()
            );
        }
        if self.status == Some(RunStatus::Succeeded)
            && let Some(end) = self.ended_at.as_deref().and_then(parse_time)
        {
            let _ = writeln!(
                out,
                "# HELP dr_plan_last_success_timestamp_seconds When the plan last ran successfully.\n# TYPE dr_plan_last_success_timestamp_seconds gauge"
            );
            let _ = writeln!(
                out,
                "dr_plan_last_success_timestamp_seconds{{plan=\"{plan}\",drill=\"{}\"}} {}",
                self.drill,
                end.timestamp()
            );
        }
        let _ = writeln!(
            out,
            "# HELP dr_plan_run_status Outcome of the last run of the plan: 1 for its status, 0 for the others.\n# TYPE dr_plan_run_status gauge"
        );
        let current = self.status.map_or("not_finished", RunStatus::label);
        for status in RunStatus::LABELS {
            let _ = writeln!(
                out,
                "dr_plan_run_status{{plan=\"{plan}\",drill=\"{}\",status=\"{status}\"}} {}",
                self.drill,
                u8::from(status == current)
            );
        }
        let _ = writeln!(
            out,
            "# HELP dr_plan_step_duration_seconds Duration of each step in the last run.\n# TYPE dr_plan_step_duration_seconds gauge"
        );
        for step in &self.steps {
            if let Some(seconds) = step.seconds {
                let _ = writeln!(
                    out,
                    "dr_plan_step_duration_seconds{{plan=\"{plan}\",step=\"{}\"}} {seconds:.3}",
                    label_value(&step.id)
                );
            }
        }
        out
    }
}

/// `dr-plan status`: every run under the state directory, newest last.
///
/// # Errors
/// The state cannot be listed (a bucket that does not answer).
pub fn list_runs(
    state_dir: &crate::state::StateDir,
) -> Result<Vec<(String, RunState)>, crate::state::StateError> {
    let mut runs: Vec<(String, RunState)> = state_dir
        .run_ids()?
        .into_iter()
        .filter_map(|id| {
            let state = super::journal::replay(state_dir, &id).ok()?;
            Some((id, state))
        })
        .collect();
    runs.sort_by(|left, right| left.1.started_at.cmp(&right.1.started_at).then(left.0.cmp(&right.0)));
    Ok(runs)
}
