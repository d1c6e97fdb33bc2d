//! Runs: `run`, `drill`, `resume`. Each checks the plan, takes the lock, journals every
//! event, and ends with an exit code and the next command to type.

pub mod console;
pub mod decisions;
mod error;
pub mod journal;
pub mod lock;
pub mod repair;
pub mod report;
pub mod reporter;
pub mod scheduler;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use crate::lang::plan::Plan;
use crate::lang::render::{Context, Mode, Overrides};
use crate::lang::secret::{Redactor, SecretValue};
use crate::state::{StateDir, StateError};
use crate::sys::files;
use console::{Answer, Console};
use decisions::{ResumeRequest, resume_command};
pub use error::{Ended, RunError};
use journal::{Event, JournalWriter, RunState, RunStatus, StepState};
use lock::{Lock, LockError};
use reporter::ProgressFormat;

/// Options shared by `run`, `drill` and `resume`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// `--state-dir`: a directory or an S3 bucket.
    pub state_dir: StateDir,
    /// `--work-dir`: where steps keep their files when the state is in S3.
    pub work_dir: Option<PathBuf>,
    /// `--state-object-lock DAYS` (already applied to an S3 `state_dir`).
    pub state_object_lock: Option<u32>,
    /// `--yes`: do not ask for confirmation.
    pub yes: bool,
    /// `--approve STEP`
    pub approve: Vec<String>,
    /// `--approver NAME` (or `DR_PLAN_APPROVER`): who approves, besides `user@host`.
    pub approver: Option<String>,
    /// `--concurrency`
    pub concurrency: usize,
    /// `--format`
    pub format: ProgressFormat,
    /// `--break-stale-lock`
    pub break_stale_lock: bool,
    /// `--deadline`
    pub deadline: Option<std::time::Duration>,
    /// `--metrics-file`
    pub metrics_file: Option<PathBuf>,
}

impl RunOptions {
    /// Options of a command that only reads runs (`status`, `report`).
    #[must_use]
    pub fn reading(state_dir: &StateDir) -> RunOptions {
        RunOptions {
            state_dir: state_dir.clone(),
            work_dir: None,
            state_object_lock: None,
            yes: false,
            approve: Vec::new(),
            approver: None,
            concurrency: 1,
            format: ProgressFormat::Human,
            break_stale_lock: false,
            deadline: None,
            metrics_file: None,
        }
    }

    /// `user@host`, after the `--approver` name when one was given.
    #[must_use]
    pub fn operator(&self) -> String {
        match &self.approver {
            Some(name) => format!("{name} ({})", lock::operator()),
            None => lock::operator(),
        }
    }
}

/// What `resume` was asked beyond the run options.
#[derive(Clone, Debug, Default)]
pub struct ResumeArguments {
    /// `--rerun-interrupted`
    pub rerun_interrupted: bool,
    /// `--rerun STEP`
    pub rerun: Vec<String>,
    /// `--mark-done STEP`
    pub mark_done: Vec<String>,
    /// `--reason TEXT` for `--mark-done`.
    pub reason: Option<String>,
    /// `--var` / `--vars-file`
    pub overrides: Overrides,
}

impl ResumeArguments {
    /// What the resume planner is asked to decide.
    fn request(&self) -> ResumeRequest {
        ResumeRequest {
            rerun_interrupted: self.rerun_interrupted,
            rerun: self.rerun.clone(),
            mark_done: self.mark_done.clone(),
            overridden: self.overrides.values.iter().map(|(name, _)| name.clone()).collect(),
        }
    }
}

/// The async runtime and the operator's console of one command. Dropping it does not
/// wait for a prompt's reader: Ctrl-C at a question ends the command at once.
struct Session {
    runtime: Option<tokio::runtime::Runtime>,
    console: Console,
}

impl Session {
    fn start() -> Result<Session, RunError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|error| RunError::System(format!("cannot start the async runtime: {error}")))?;
        let console = runtime
            .block_on(async { Console::start() })
            .map_err(|error| RunError::System(format!("cannot watch Ctrl-C: {error}")))?;
        Ok(Session { runtime: Some(runtime), console })
    }

    /// After a second Ctrl-C the process removes this lock and prints `hint`.
    fn last_words(&self, lock: Option<&Lock>, hint: Option<String>) {
        if let Ok(mut words) = self.console.last_words.lock() {
            words.lock = lock.map(Lock::lease);
            words.hint = hint;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Starts a new run (or drill) of the plan at `path`.
///
/// # Errors
/// Why no run started, or why it stopped around its steps; see [`RunError`].
pub fn start(
    path: &Path,
    overrides: &Overrides,
    drill: bool,
    options: &RunOptions,
) -> Result<Ended, RunError> {
    let plan = crate::kinds::load_plan(path).map_err(RunError::Plan)?;
    check_runnable(&plan, options)?;
    let (inputs, vars) = crate::lang::render::resolve_values(&plan, overrides).map_err(RunError::Usage)?;
    let secrets = resolve_secrets(&plan)?;
    if !options.yes && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        // Nobody can answer the start question: a wrapper script, `ssh` without `-t`
        // or a stray pipe must not start a recovery by accident.
        return Err(RunError::blocked(
            "nothing started: there is no terminal to confirm the start at, and `--yes` was not given.",
            Some(format!("dr-plan {}", this_command_confirmed(path))),
        ));
    }
    // While another operator's run holds the lock, taking a run up is not possible
    // either: the lock error alone says what to do.
    if matches!(lock::obstacle(&options.state_dir, plan.name()), None | Some(LockError::Stale(_))) {
        note_unfinished_runs(&plan, &options.state_dir);
    }
    let mut session = Session::start()?;
    let run_id = new_run_id(&plan);
    // The lock comes first, so nobody starts the plan while this operator reads the
    // question; nothing is written under runs/ until the operator said yes.
    let (lock, broken) = take_lock(&options.state_dir, &plan, &run_id, options.break_stale_lock)?;
    session.last_words(Some(&lock), None);
    if !options.yes {
        let answer = session
            .runtime
            .as_ref()
            .map(|runtime| runtime.block_on(confirm(&mut session.console, &plan, drill)));
        expect_yes(answer, "not started.", "nothing was started.")?;
    }
    let (run_dir, mut writer, mut reporter) = create_run(&plan, &run_id, options)?;
    let redactor = Arc::new(Redactor::new(secrets.values()));
    let started = Event::RunStarted {
        format: journal::FORMAT_VERSION,
        run_id: run_id.clone(),
        plan: plan.name().to_owned(),
        // Absolute, so the run can be resumed from any directory.
        plan_path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string(),
        plan_hash: plan.content_hash.clone(),
        drill,
        inputs: redact_map(&redactor, &inputs),
        vars: redact_map(&redactor, &vars),
        operator: lock::operator(),
    };
    let mut events = vec![started];
    if let Some(holder) = broken {
        events.push(Event::LockBroken { operator: lock::operator(), holder: holder.to_string() });
    }
    append_all(&mut writer, reporter.as_mut(), events)?;
    let context = Context {
        mode: Mode::Run,
        vars,
        inputs,
        secrets,
        run: run_fields(&plan, &run_id, drill, &crate::sys::clock::now(), &run_dir),
        outputs: BTreeMap::new(),
        withheld: BTreeMap::new(),
    };
    let execution = Execution {
        plan: &plan,
        context,
        states: vec![StepState::Pending; plan.steps.len()],
        attempts: vec![0; plan.steps.len()],
        completed: Vec::new(),
        journal: writer,
        reporter,
        run_id: &run_id,
        run_dir: &run_dir,
        drill,
        redactor: &redactor,
        approval_needed_at: BTreeMap::new(),
    };
    execute(execution, options, &mut session, lock)
}

/// `<plan>-<yyyymmdd>-<hhmmss>-<4 hex>`: sorted by time, unique enough for one plan.
fn new_run_id(plan: &Plan) -> String {
    format!("{}-{}-{:04x}", plan.name(), chrono::Utc::now().format("%Y%m%d-%H%M%S"), rand::random::<u16>())
}

/// Names the runs of this plan that did not end, with the command that takes each up:
/// starting anew may not be what the operator wants.
fn note_unfinished_runs(plan: &Plan, state_dir: &StateDir) {
    for (unfinished, status) in unfinished_runs(state_dir, plan.name()) {
        crate::errln!(
            "note: run {unfinished} of this plan is {status}; to take it up instead of starting anew: `{}`",
            stale_run_command(plan, &unfinished, state_dir)
        );
    }
}

/// A new run with the copy of its plan, its work directory, and its journal opened
/// for the reporter of this terminal.
fn create_run(
    plan: &Plan,
    run_id: &str,
    options: &RunOptions,
) -> Result<(PathBuf, JournalWriter, Box<dyn reporter::Reporter>), RunError> {
    let work_dir = work_dir(options, run_id)?;
    options
        .state_dir
        .create_run(run_id, plan.file.text().as_bytes())
        .map_err(|error| match options.state_object_lock {
            Some(days) => RunError::System(format!(
                "cannot create run {run_id} with --state-object-lock {days}: {error}; the bucket must have \
                 versioning and Object Lock enabled (`aws s3api put-object-lock-configuration`), or run without \
                 --state-object-lock"
            )),
            None => RunError::System(format!("cannot create run {run_id}: {error}")),
        })?;
    let (writer, mut reporter) = open_journal(&options.state_dir, run_id, options.format)?;
    match &options.state_dir {
        StateDir::Local(path) if path.is_relative() => {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            reporter.message(&format!(
                "state directory: {} (--state-dir, DR_PLAN_STATE_DIR)",
                absolute.display()
            ));
        }
        StateDir::Local(_) => {}
        StateDir::S3(_) => reporter.message(&format!(
            "state: {}; steps keep their files in {} (--work-dir)",
            options.state_dir.display(),
            work_dir.display()
        )),
    }
    Ok((work_dir, writer, reporter))
}

/// Where the steps of `run_id` keep their files: the run's own directory when the
/// state is local; with the state in S3, `--work-dir` or a new private directory
/// under the system's temporary directory.
fn work_dir(options: &RunOptions, run_id: &str) -> Result<PathBuf, RunError> {
    let directory = match (&options.state_dir, &options.work_dir) {
        (StateDir::Local(path), _) => return Ok(journal::run_dir(path, run_id)),
        (StateDir::S3(_), Some(directory)) => directory.join(run_id),
        (StateDir::S3(_), None) => std::env::temp_dir().join(format!("dr-plan-{run_id}")),
    };
    files::private_dir(&directory)
        .map_err(|error| RunError::System(format!("cannot create {}: {error}", directory.display())))?;
    Ok(directory)
}

/// This command's words with `--yes` added, paths made absolute, so that it works
/// pasted from any directory.
fn this_command_confirmed(path: &Path) -> String {
    let mut previous = String::new();
    let mut words: Vec<String> = Vec::new();
    for word in std::env::args().skip(1) {
        let is_path = (word == path.display().to_string()
            || matches!(previous.as_str(), "--state-dir" | "--vars-file" | "--metrics-file" | "--work-dir"))
            && !word.starts_with("s3://");
        let shown = if is_path {
            std::path::absolute(&word)
                .map_or_else(|_| word.clone(), |absolute| absolute.display().to_string())
        } else {
            word.clone()
        };
        words.push(decisions::shell_quote(&shown));
        previous = word;
    }
    words.push("--yes".to_owned());
    words.join(" ")
}

/// Takes up an interrupted, failed or blocked run where it stopped.
///
/// # Errors
/// Why the run was not taken up, or why it stopped around its steps; see [`RunError`].
pub fn resume(run_id: &str, arguments: &ResumeArguments, options: &RunOptions) -> Result<Ended, RunError> {
    let recorded = RecordedRun::read(run_id, &options.state_dir)?;
    if recorded.state.status == Some(RunStatus::Succeeded) {
        return Ok(already_succeeded(run_id, options));
    }
    // Before any decision: a swap its dead process left refusing every client.
    repair::say_left_behind(run_id, &options.state_dir);
    let plan = recorded.plan(options)?;
    check_runnable(&plan, options)?;
    check_resume_arguments(&plan, arguments)?;
    decisions::check_order(&plan, &recorded.state).map_err(|damage| RunError::Records {
        message: format!(
            "{}:{damage}; the journal is damaged, and resume refuses to run steps out of order. Look at that line; \
             `{}` shows the run",
            recorded.journal_file,
            decisions::command(&["report".to_owned(), run_id.to_owned()], &options.state_dir)
        ),
        help: None,
    })?;
    let request = arguments.request();
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    check_decisions(&plan, &recorded.state, &request, arguments, options, interactive)?;
    let mut session = Session::start()?;
    if !options.yes && interactive {
        let preview = decisions::plan_resume(&plan, &recorded.state, &request);
        let answer = session
            .runtime
            .as_ref()
            .map(|runtime| runtime.block_on(confirm_resume(&mut session.console, &plan, run_id, &preview)));
        expect_yes(answer, "not resumed.", "nothing was resumed.")?;
    }
    let (lock, broken) = take_lock(&options.state_dir, &plan, run_id, options.break_stale_lock)?;
    session.last_words(Some(&lock), None);
    // Read again: the run may have moved on between the first read and the lock.
    let recorded = RecordedRun::read(run_id, &options.state_dir)?;
    if recorded.state.status == Some(RunStatus::Succeeded) {
        return Ok(already_succeeded(run_id, options));
    }
    let resumption = decisions::plan_resume(&plan, &recorded.state, &request);
    if !resumption.decisions.is_empty() || !resumption.refusals.is_empty() {
        return Err(RunError::blocked(
            format!("run {run_id} changed while resume was taking the lock; run the command again"),
            None,
        ));
    }
    let values = recorded.values(&plan, arguments)?;
    let redactor = Arc::new(Redactor::new(values.secrets.values()));
    let (mut writer, mut reporter) = open_journal(&options.state_dir, run_id, options.format)?;
    append_all(
        &mut writer,
        reporter.as_mut(),
        resume_events(arguments, options, &redactor, broken, resumption.rerun.clone()),
    )?;
    let run_dir = work_dir(options, run_id)?;
    if matches!(options.state_dir, StateDir::S3(_)) {
        reporter.message(&format!(
            "state: {}; steps keep their files in {} (--work-dir)",
            options.state_dir.display(),
            run_dir.display()
        ));
    }
    for note in &resumption.notes {
        reporter.message(&format!("note: {note}"));
    }
    let taken_up = TakenUp::from_journal(&plan, &recorded.state, resumption.states);
    let context = Context {
        mode: Mode::Run,
        vars: values.vars,
        inputs: values.inputs,
        secrets: values.secrets,
        run: run_fields(&plan, run_id, values.drill, &recorded.state.started_at, &run_dir),
        outputs: taken_up.outputs,
        withheld: taken_up.withheld,
    };
    let attempts =
        plan.steps.iter().map(|step| recorded.state.attempts.get(&step.id).copied().unwrap_or(0)).collect();
    let execution = Execution {
        plan: &plan,
        context,
        states: taken_up.states,
        attempts,
        completed: taken_up.completed,
        journal: writer,
        reporter,
        run_id,
        run_dir: &run_dir,
        drill: values.drill,
        redactor: &redactor,
        approval_needed_at: recorded.state.approval_needed_at.clone(),
    };
    execute(execution, options, &mut session, lock)
}

/// A run as its journal records it.
struct RecordedRun {
    journal_file: String,
    state: RunState,
    /// The plan file it was started from (absolute).
    plan_path: String,
    /// The hash of the plan it was started with.
    plan_hash: String,
    /// Where the copy of the plan taken at its start is.
    snapshot: String,
    /// That copy.
    snapshot_text: Option<String>,
}

impl RecordedRun {
    /// Reads and replays the journal of `run_id`.
    fn read(run_id: &str, state_dir: &StateDir) -> Result<RecordedRun, RunError> {
        let listed = || decisions::command(&["status".to_owned()], state_dir);
        journal::check_run_id(run_id)
            .map_err(|problem| RunError::usage(format!("{problem}; `{}` lists the runs", listed())))?;
        let journal_file = state_dir.journal_location(run_id);
        if !state_dir.has_run(run_id).map_err(|error| unreachable_state(state_dir, &error))? {
            return Err(RunError::usage(format!(
                "no run `{run_id}` under {}; `{}` lists the runs",
                state_dir.display(),
                listed()
            )));
        }
        // Read once: replayed, chain-checked and the plan copy taken from the same bytes.
        let stored = journal::StoredRun::read(state_dir, run_id).map_err(|error| match error {
            StateError::Unreachable(_) => unreachable_state(state_dir, &error),
            StateError::Refused(message) => RunError::Records { message, help: None },
        })?;
        let state =
            stored.replay().map_err(|error| RunError::Records { message: error.to_string(), help: None })?;
        let Event::RunStarted { plan_path, plan_hash, .. } = state.started.clone() else {
            return Err(RunError::Records {
                message: format!("{journal_file}: the journal does not start with run_started"),
                help: None,
            });
        };
        // Nothing acts on a record that was altered: resume would run steps on a history
        // that did not happen. A journal older than hash chains has none to check.
        match stored.verify() {
            Ok(_) => {}
            Err(broken) if broken.unchained => {}
            Err(broken) => {
                return Err(RunError::Records {
                    message: format!(
                        "{}: the journal does not match its hash chain ({}); resume refuses to act on an \
                         altered record",
                        broken.at, broken.problem
                    ),
                    help: Some(format!(
                        "restore the journal from a copy, or start a new run of the plan; `{}` shows the check",
                        decisions::command(&["verify".to_owned(), run_id.to_owned()], state_dir)
                    )),
                });
            }
        }
        let snapshot = state_dir.snapshot_location(run_id);
        let snapshot_text = stored.snapshot.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        Ok(RecordedRun { journal_file, state, plan_path, plan_hash, snapshot, snapshot_text })
    }

    /// The plan of this run: its file, or the copy taken at its start when the file is
    /// not here (another machine, another directory, a deleted checkout). A plan that
    /// changed since is refused: resume never mixes two plans.
    fn plan(&self, options: &RunOptions) -> Result<Plan, RunError> {
        let plan_path = &self.plan_path;
        let loaded = if Path::new(plan_path).exists() {
            crate::kinds::load_plan(Path::new(plan_path))
        } else {
            match &self.snapshot_text {
                Some(text) => {
                    crate::errln!(
                        "note: {plan_path} is not here; resuming with the copy taken when the run started ({})",
                        self.snapshot
                    );
                    crate::kinds::plan_from_source(&crate::lang::source::SourceFile::new(
                        plan_path.clone(),
                        text.clone(),
                    ))
                }
                None => crate::kinds::load_plan(Path::new(plan_path)),
            }
        };
        let plan = loaded.map_err(RunError::Plan)?;
        if plan.content_hash == self.plan_hash {
            return Ok(plan);
        }
        let run_id = self.run_id();
        Err(RunError::Records {
            message: format!(
                "{plan_path} changed since run {run_id} started ({}); resume refuses to mix two plans.",
                first_difference(self.snapshot_text.as_deref().unwrap_or_default(), plan.file.text()),
            ),
            help: Some(format!(
                "restore the file as it was (a copy is in {}), or start a new run with `{}`",
                self.snapshot,
                decisions::command(&["run".to_owned(), plan_path.clone()], &options.state_dir)
            )),
        })
    }

    fn run_id(&self) -> String {
        match &self.state.started {
            Event::RunStarted { run_id, .. } => run_id.clone(),
            _ => String::new(),
        }
    }

    /// The run's values with this resume's corrections, and its secrets read again.
    fn values(&self, plan: &Plan, arguments: &ResumeArguments) -> Result<RunValues, RunError> {
        let Event::RunStarted { drill, inputs, vars, .. } = self.state.started.clone() else {
            return Err(RunError::Records {
                message: format!("{}: the journal does not start with run_started", self.journal_file),
                help: None,
            });
        };
        let secrets = resolve_secrets(plan)?;
        // Corrections of earlier resumes, then this one's: resolved like `run` does, so an
        // unknown name or a wrong type is refused the same way.
        let mut corrections = Overrides { values: self.state.overridden.clone() };
        corrections.values.extend(arguments.overrides.values.iter().cloned());
        let (inputs, vars) = apply_corrections(plan, inputs, vars, &corrections).map_err(RunError::Usage)?;
        Ok(RunValues { drill, inputs, vars, secrets })
    }
}

/// The values a resumed run goes on with.
struct RunValues {
    drill: bool,
    inputs: Map<String, Json>,
    vars: Map<String, Json>,
    secrets: BTreeMap<String, SecretValue>,
}

/// Every decision at once, before anything is written: the lock, interrupted steps,
/// secret outputs, approvals; refused with one command that makes them all.
fn check_decisions(
    plan: &Plan,
    state: &RunState,
    request: &ResumeRequest,
    arguments: &ResumeArguments,
    options: &RunOptions,
    interactive: bool,
) -> Result<(), RunError> {
    match lock::obstacle(&options.state_dir, plan.name()) {
        Some(LockError::Stale(_)) | None => {}
        Some(obstacle) => return Err(lock_error(plan, obstacle, &options.state_dir)),
    }
    let outlook = resume_outlook(plan, state, request, options, interactive);
    if !outlook.refusals.is_empty() {
        return Err(RunError::Usage(outlook.refusals));
    }
    if outlook.decisions.is_empty() {
        return Ok(());
    }
    let run_id = match &state.started {
        Event::RunStarted { run_id, .. } => run_id.clone(),
        _ => String::new(),
    };
    let mut flags = resumed_flags(arguments, options);
    flags.extend(outlook.flags.iter().cloned());
    Err(RunError::Blocked {
        message: format!("run {run_id} cannot resume before you decide:"),
        details: outlook.decisions,
        help: None,
        next: Some(resume_command(&run_id, &flags, &options.state_dir)),
    })
}

/// What this resume records before its steps run: a broken lock, steps marked done,
/// corrected values, and the resume itself.
fn resume_events(
    arguments: &ResumeArguments,
    options: &RunOptions,
    redactor: &Redactor,
    broken: Option<lock::Holder>,
    rerun: Vec<String>,
) -> Vec<Event> {
    let mut events = Vec::new();
    if let Some(holder) = broken {
        events.push(Event::LockBroken { operator: lock::operator(), holder: holder.to_string() });
    }
    for step in &arguments.mark_done {
        events.push(Event::StepMarkedDone {
            step: step.clone(),
            operator: options.operator(),
            reason: redactor.redact(arguments.reason.as_deref().unwrap_or_default()),
        });
    }
    if !arguments.overrides.values.is_empty() {
        let values: Map<String, Json> = arguments.overrides.values.iter().cloned().collect();
        events.push(Event::ValuesOverridden {
            operator: options.operator(),
            values: redact_map(redactor, &values),
        });
    }
    events.push(Event::Resumed { operator: lock::operator(), rerun });
    events
}

/// Where a resumed run's steps start from.
struct TakenUp {
    states: Vec<StepState>,
    /// The outputs of the steps that succeeded, as templates read them.
    outputs: BTreeMap<String, Json>,
    /// Outputs that held a secret: the journal keeps them redacted, so they are left
    /// out and a step reading one fails saying why instead of receiving `***`.
    withheld: BTreeMap<String, Vec<String>>,
    /// Steps that succeeded, oldest first: compensated too if this resume fails.
    completed: Vec<usize>,
}

impl TakenUp {
    fn from_journal(plan: &Plan, state: &RunState, states: Vec<StepState>) -> TakenUp {
        let withheld: BTreeMap<String, Vec<String>> = state
            .withheld
            .iter()
            .filter(|(_, names)| !names.is_empty())
            .map(|(id, names)| (id.clone(), names.clone()))
            .collect();
        let outputs = plan
            .steps
            .iter()
            .zip(&states)
            .filter_map(|(step, resumed)| match resumed {
                StepState::Succeeded { outputs } => {
                    let mut outputs = outputs.clone();
                    outputs
                        .retain(|name, _| !withheld.get(&step.id).is_some_and(|names| names.contains(name)));
                    Some((step.id.clone(), Json::Object(outputs)))
                }
                StepState::Pending
                | StepState::Interrupted { .. }
                | StepState::Failed { .. }
                | StepState::Skipped { .. }
                | StepState::Undone => None,
            })
            .collect();
        let mut completed: Vec<usize> = Vec::new();
        for record in &state.records {
            if let Event::StepSucceeded { step, .. } = &record.event
                && let Some(index) = plan.index_of(step)
            {
                completed.retain(|&done| done != index);
                completed.push(index);
            }
        }
        completed.retain(|&index| matches!(states[index], StepState::Succeeded { .. }));
        TakenUp { states, outputs, withheld, completed }
    }
}

fn already_succeeded(run_id: &str, options: &RunOptions) -> Ended {
    crate::outln!(
        "run {run_id} already succeeded; nothing to resume. `{}` shows it.",
        decisions::command(&["report".to_owned(), run_id.to_owned()], &options.state_dir)
    );
    Ended::AlreadySucceeded
}

/// The operator's answer at a start or resume question, as the command goes on or ends.
fn expect_yes(
    answer: Option<Answer>,
    declined: &'static str,
    interrupted: &'static str,
) -> Result<(), RunError> {
    match answer {
        Some(Answer::Yes) => Ok(()),
        Some(Answer::Interrupted) => Err(RunError::Interrupted(interrupted)),
        Some(Answer::No | Answer::NoTerminal) | None => Err(RunError::Declined(declined)),
    }
}

/// Runs of `plan` under `state_dir` that did not end (interrupted, blocked, or whose
/// process died), newest last, with their status word.
fn unfinished_runs(state_dir: &StateDir, plan: &str) -> Vec<(String, &'static str)> {
    report::list_runs(state_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, state)| matches!(&state.started, Event::RunStarted { plan: name, .. } if name == plan))
        .filter_map(|(id, state)| match state.status {
            None => Some((id, "not finished")),
            Some(RunStatus::Interrupted) => Some((id, "interrupted")),
            Some(RunStatus::Blocked) => Some((id, "blocked")),
            Some(RunStatus::Succeeded | RunStatus::Failed | RunStatus::CompletedWithFailures) => None,
        })
        .collect()
}

/// `--mark-done` needs `--reason`, and every step named must exist.
fn check_resume_arguments(plan: &Plan, arguments: &ResumeArguments) -> Result<(), RunError> {
    let ids = || plan.steps.iter().map(|step| step.id.as_str());
    for (flag, id) in arguments
        .mark_done
        .iter()
        .map(|id| ("--mark-done", id))
        .chain(arguments.rerun.iter().map(|id| ("--rerun", id)))
    {
        if plan.step(id).is_none() {
            return Err(RunError::usage(format!(
                "`{flag} {id}`: no such step; {}",
                crate::lang::diagnostic::suggestion(id, ids())
            )));
        }
    }
    let reason = arguments.reason.as_deref().map(str::trim).unwrap_or_default();
    if !arguments.mark_done.is_empty() && reason.is_empty() {
        return Err(RunError::usage(
            "`--mark-done` needs `--reason TEXT`: say how you checked that the step finished (it goes into the \
             journal and the report)",
        ));
    }
    Ok(())
}

/// The flags of this resume command that a printed retry must repeat.
fn resumed_flags(arguments: &ResumeArguments, options: &RunOptions) -> Vec<String> {
    let mut flags = Vec::new();
    for id in &arguments.mark_done {
        flags.extend(["--mark-done".to_owned(), id.clone()]);
    }
    if let Some(reason) = &arguments.reason {
        flags.extend(["--reason".to_owned(), reason.clone()]);
    }
    for id in &arguments.rerun {
        flags.extend(["--rerun".to_owned(), id.clone()]);
    }
    if arguments.rerun_interrupted {
        flags.push("--rerun-interrupted".to_owned());
    }
    for (name, value) in &arguments.overrides.values {
        let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
        flags.extend(["--var".to_owned(), format!("{name}={text}")]);
    }
    if options.break_stale_lock {
        flags.push("--break-stale-lock".to_owned());
    }
    for id in &options.approve {
        flags.extend(["--approve".to_owned(), id.clone()]);
    }
    if options.yes {
        flags.push("--yes".to_owned());
    }
    flags
}

/// What a resume of `state` needs, as a person reads it: the decisions (each a
/// sentence), the flags that make them, and requests that cannot be honoured.
#[derive(Debug, Default)]
pub struct Outlook {
    /// One sentence per decision.
    pub decisions: Vec<String>,
    /// The flags that make them, in order.
    pub flags: Vec<String>,
    /// Requests that cannot be honoured.
    pub refusals: Vec<String>,
}

/// Works out every decision a resume of `state` needs. Approvals are added when other
/// decisions are needed and no one can answer at a terminal, so the one printed
/// command is complete.
#[must_use]
pub fn resume_outlook(
    plan: &Plan,
    state: &RunState,
    request: &ResumeRequest,
    options: &RunOptions,
    interactive: bool,
) -> Outlook {
    let mut outlook = Outlook::default();
    if let Some(LockError::Stale(holder)) = lock::obstacle(&options.state_dir, plan.name())
        && !options.break_stale_lock
    {
        outlook.decisions.push(format!(
            "the lock is stale: it names {holder}, and {}. `--break-stale-lock` breaks it (recorded in the \
             journal)",
            holder.why_stale()
        ));
        outlook.flags.push("--break-stale-lock".to_owned());
    }
    let resume = decisions::plan_resume(plan, state, request);
    outlook.refusals = resume.refusals;
    for decision in resume.decisions {
        outlook.decisions.push(decision.why);
        outlook.flags.extend(decision.flags);
    }
    if !outlook.decisions.is_empty() && !interactive {
        for (index, step) in plan.steps.iter().enumerate() {
            let waiting = step.kind.asks_approval()
                && resume.states[index] == StepState::Pending
                && !options.approve.contains(&step.id);
            if waiting {
                outlook.decisions.push(format!(
                    "approval `{}` will ask{}; without a terminal it needs `--approve {}`",
                    step.id,
                    question_of(state, &step.id)
                        .map(|question| format!(": \"{question}\""))
                        .unwrap_or_default(),
                    step.id
                ));
                outlook.flags.extend(["--approve".to_owned(), step.id.clone()]);
            }
        }
    }
    outlook
}

/// The question of an approval step, as the journal last recorded it.
#[must_use]
pub fn question_of(state: &RunState, step: &str) -> Option<String> {
    state.records.iter().rev().find_map(|record| match &record.event {
        Event::ApprovalNeeded { step: asked, question }
        | Event::ApprovalAsked { step: asked, question }
        | Event::ApprovalGranted { step: asked, question, .. }
            if asked == step && !question.is_empty() =>
        {
            Some(question.clone())
        }
        _ => None,
    })
}

/// The `next:` line for a run that did not succeed: the complete resume command, with
/// every flag it will need, and the sentences that explain those flags.
#[must_use]
pub fn next_step(plan: &Plan, state: &RunState, options: &RunOptions) -> (Vec<String>, String) {
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let mut outlook = resume_outlook(plan, state, &ResumeRequest::default(), options, interactive);
    let mut flags = std::mem::take(&mut outlook.flags);
    if state.status == Some(RunStatus::Blocked) {
        for step in state.approval_needed_at.keys() {
            if !flags.contains(step) {
                flags.extend(["--approve".to_owned(), step.clone()]);
            }
        }
    }
    (outlook.decisions, resume_command(state.run_id(), &flags, &options.state_dir))
}

fn apply_corrections(
    plan: &Plan,
    inputs: Map<String, Json>,
    vars: Map<String, Json>,
    corrections: &Overrides,
) -> Result<crate::lang::render::ResolvedValues, Vec<String>> {
    if corrections.values.is_empty() {
        return Ok((inputs, vars));
    }
    // The values of the start are overrides too: resolved together, later wins.
    let mut all = Overrides::default();
    all.values.extend(inputs);
    all.values.extend(vars.into_iter().filter(|(name, _)| plan.spec.vars.get(name).is_some()));
    all.values.extend(corrections.values.iter().cloned());
    crate::lang::render::resolve_values(plan, &all)
}

/// A run's steps and everything the dispatcher starts from.
struct Execution<'a> {
    plan: &'a Plan,
    context: Context,
    states: Vec<StepState>,
    attempts: Vec<u32>,
    completed: Vec<usize>,
    journal: JournalWriter,
    reporter: Box<dyn reporter::Reporter>,
    run_id: &'a str,
    run_dir: &'a Path,
    drill: bool,
    redactor: &'a Arc<Redactor>,
    approval_needed_at: BTreeMap<String, String>,
}

/// Runs the steps: the orphan watchdog, the dispatcher, then the records of the end
/// (drill history, metrics, the summary line) and the next command.
fn execute(
    execution: Execution<'_>,
    options: &RunOptions,
    session: &mut Session,
    lock: Lock,
) -> Result<Ended, RunError> {
    let (plan, run_id, drill) = (execution.plan, execution.run_id, execution.drill);
    let state_dir = &options.state_dir;
    session.last_words(Some(&lock), Some(format!("next: `{}`", resume_command(run_id, &[], state_dir))));
    // Kills the steps' programs should this process die without stopping them (kill -9).
    let watchdog = crate::sys::orphan_watchdog::start().inspect_err(|error| {
        crate::errln!(
            "warning: no orphan watchdog ({error}): a kill -9 would leave the steps' programs running"
        )
    });
    let lease = lock.lease();
    let mut execution = execution;
    execution.journal.hold(lease.clone());
    let status = dispatch(execution, options, session).map_err(|error| match lease.lost() {
        // Another operator broke the lock: the run is theirs now.
        Some(holder) => RunError::Blocked {
            message: format!(
                "the lock of plan {} was broken and taken by {holder}; this process stopped before starting \
                 another step",
                plan.name()
            ),
            details: Vec::new(),
            help: Some("coordinate with them: one operator per run".to_owned()),
            next: Some(decisions::command(&["status".to_owned(), run_id.to_owned()], state_dir)),
        },
        None => RunError::System(format!(
            "{error}; the run stopped. `{}` takes it up again.",
            resume_command(run_id, &[], state_dir)
        )),
    })?;
    let stored = journal::StoredRun::read(state_dir, run_id).map_err(|error| error.to_string());
    let state = stored.as_ref().map_err(Clone::clone).and_then(journal::StoredRun::replay);
    let report = state.as_ref().ok().map(|state| report::Report::new(plan, state));
    if let Some(report) = &report {
        record_the_end(report, plan, run_id, drill && status == RunStatus::Succeeded, options);
    }
    // The chain cannot show its own last event cut off: the head, kept elsewhere, can.
    if let Ok(Ok(verified)) = stored.as_ref().map(journal::StoredRun::verify) {
        crate::errln!(
            "journal head {} ({} events): keep it with the incident record; `dr-plan verify` shows it again",
            verified.head,
            verified.events
        );
    }
    // The lock is released before the hint is computed, so the hint needs no
    // `--break-stale-lock`.
    if status == RunStatus::Succeeded {
        crate::errln!(
            "next: `{}` for the report",
            decisions::command(&["report".to_owned(), run_id.to_owned()], state_dir)
        );
        return Ok(Ended::Run(status));
    }
    // What the steps left running is gone before the lock is released.
    drop(watchdog);
    drop(lock);
    if let Ok(state) = state {
        print_what_next(plan, &state, status, report.as_ref(), options);
    }
    Ok(Ended::Run(status))
}

/// The steps' memories of a run whose state is in S3, kept there with the journal, so
/// that an attempt after a crash on another machine finds what the first one knew.
#[derive(Debug)]
struct SharedMemory {
    state: StateDir,
    run_id: String,
}

impl crate::kinds::MemoryStore for SharedMemory {
    fn load(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        self.state.load_memory(&self.run_id, name).map_err(|error| error.to_string())
    }

    fn save(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        self.state.save_memory(&self.run_id, name, bytes).map_err(|error| error.to_string())
    }

    fn location(&self, name: &str) -> String {
        self.state.memory_location(&self.run_id, name)
    }
}

/// Runs the dispatcher to the run's end on the session's runtime.
fn dispatch(
    execution: Execution<'_>,
    options: &RunOptions,
    session: &mut Session,
) -> Result<RunStatus, String> {
    let Execution {
        plan,
        context,
        states,
        attempts,
        completed,
        journal,
        mut reporter,
        run_id,
        run_dir,
        drill,
        redactor,
        approval_needed_at,
    } = execution;
    let Some(runtime) = session.runtime.take() else {
        return Err("the async runtime is gone before the steps started".to_owned());
    };
    let lease_lost = journal.lease().map(lock::Lease::watch);
    // A local state keeps the memories as files of the run's directory, as before.
    let memory: Option<Arc<dyn crate::kinds::MemoryStore>> = match &options.state_dir {
        StateDir::S3(_) => {
            Some(Arc::new(SharedMemory { state: options.state_dir.clone(), run_id: run_id.to_owned() }))
        }
        StateDir::Local(_) => None,
    };
    let mut dispatcher = scheduler::Dispatcher {
        plan,
        context,
        states,
        attempts,
        journal,
        reporter: reporter.as_mut(),
        concurrency: options.concurrency.max(1),
        approved: options.approve.iter().cloned().collect::<BTreeSet<_>>(),
        interactive: std::io::IsTerminal::is_terminal(&std::io::stdin()),
        redactor: Arc::clone(redactor),
        run_id: run_id.to_owned(),
        run_dir: run_dir.to_path_buf(),
        drill,
        deadline: options.deadline,
        completed,
        progress: tokio::sync::mpsc::unbounded_channel(),
        console: &mut session.console,
        questions: tokio::sync::mpsc::unbounded_channel(),
        asking: std::collections::VecDeque::new(),
        answered: BTreeMap::new(),
        approval_needed_at,
        operator: options.operator(),
        approver: options.approver.clone(),
        aborting: false,
        lease_lost,
        memory,
    };
    let result = runtime.block_on(dispatcher.run());
    drop(dispatcher);
    session.runtime = Some(runtime);
    result
}

/// What outlives the run: a successful drill's durations (for predictions), the
/// metrics file, and the summary line.
fn record_the_end(
    report: &report::Report,
    plan: &Plan,
    run_id: &str,
    drill_succeeded: bool,
    options: &RunOptions,
) {
    if drill_succeeded {
        let record = crate::preview::history::DrillRecord {
            run_id: run_id.to_owned(),
            finished_at: crate::sys::clock::now(),
            steps: report.step_seconds(),
        };
        if let Err(error) = crate::preview::history::History::append(&options.state_dir, plan.name(), &record)
        {
            crate::errln!("warning: cannot record the drill's durations: {error}");
        }
    }
    if let Some(path) = &options.metrics_file
        && let Err(error) = std::fs::write(path, report.prometheus())
    {
        crate::errln!("warning: cannot write {}: {error}", path.display());
    }
    crate::errln!("{}", report.summary_line());
}

/// Why a run that did not succeed stopped, what to check, and the command that goes on.
fn print_what_next(
    plan: &Plan,
    state: &RunState,
    status: RunStatus,
    report: Option<&report::Report>,
    options: &RunOptions,
) {
    let (mut notes, command) = next_step(plan, state, options);
    notes.extend(decisions::value_hints(plan, state));
    match status {
        RunStatus::Blocked => {
            for (step, question) in waiting_questions(state) {
                crate::errln!("⏸ approval `{step}` asks: {question}");
            }
            crate::errln!("an approval is needed: answer it at a terminal, or grant it with `--approve`.");
        }
        RunStatus::Interrupted => crate::errln!("interrupted; the run can be resumed."),
        RunStatus::CompletedWithFailures => {
            let failed: Vec<String> = report.map(report::Report::failed_steps).unwrap_or_default();
            crate::errln!(
                "{} failed (on_failure: continue; nothing was undone): check {}, then resume: the failed steps \
                 run again",
                decisions::quoted_list(&failed),
                if failed.len() == 1 { "it" } else { "them" }
            );
        }
        RunStatus::Failed => crate::errln!("fix the cause, then resume: finished steps are not run again."),
        RunStatus::Succeeded => {}
    }
    for note in notes {
        crate::errln!("  - {note}");
    }
    crate::errln!("next: `{command}`");
}

/// Approval steps waiting for a decision, with their questions.
#[must_use]
pub fn waiting_questions(state: &RunState) -> Vec<(String, String)> {
    state
        .approval_needed_at
        .keys()
        .map(|step| (step.clone(), question_of(state, step).unwrap_or_default()))
        .collect()
}

/// Opens a run's journal for appending, with the reporter for this terminal.
fn open_journal(
    state: &StateDir,
    run_id: &str,
    format: ProgressFormat,
) -> Result<(JournalWriter, Box<dyn reporter::Reporter>), RunError> {
    let writer = JournalWriter::open(state, run_id).map_err(|error| {
        RunError::System(format!("cannot open the journal {}: {error}", state.journal_location(run_id)))
    })?;
    Ok((writer, reporter::for_terminal(format)))
}

/// Journals `events` and shows them; a journal that cannot be written stops the command.
fn append_all(
    writer: &mut JournalWriter,
    reporter: &mut dyn reporter::Reporter,
    events: Vec<Event>,
) -> Result<(), RunError> {
    for event in events {
        let record = writer
            .append(event)
            .map_err(|error| RunError::System(format!("cannot write the journal: {error}")))?;
        reporter.record(&record);
    }
    Ok(())
}

fn check_runnable(plan: &Plan, options: &RunOptions) -> Result<(), RunError> {
    // The state of the run in the region it recovers from: said, not refused (the
    // operator may know the bucket is replicated, or have nothing else).
    if let StateDir::S3(_) = &options.state_dir {
        for finding in crate::lint::state_findings(plan, &options.state_dir.display()) {
            match finding.location() {
                Some((file, line, column)) => {
                    crate::errln!("warning: {file}:{line}:{column}: {}", finding.message)
                }
                None => crate::errln!("warning: {}", finding.message),
            }
            if let Some(help) = &finding.help {
                crate::errln!("  help: {help}");
            }
        }
    }
    // A file named as the state directory, or a bucket that does not answer: say so
    // before anything starts, instead of an error from deep inside the lock.
    match options.state_dir.check() {
        Ok(()) => {}
        Err(StateError::Refused(problem)) if options.state_dir.local().is_some() => {
            return Err(RunError::usage(problem));
        }
        Err(error) => return Err(unreachable_state(&options.state_dir, &error)),
    }
    if let (StateDir::Local(path), Some(_)) = (&options.state_dir, options.state_object_lock) {
        return Err(RunError::usage(format!(
            "--state-object-lock: the state is the local directory {}; Object Lock applies to an s3:// state \
             (--state-dir s3://BUCKET/PREFIX)",
            path.display()
        )));
    }
    if let (StateDir::S3(_), Some(directory)) = (&options.state_dir, &options.work_dir)
        && directory.exists()
        && !directory.is_dir()
    {
        return Err(RunError::usage(format!(
            "--work-dir {}: not a directory; give a directory (it is created when missing)",
            directory.display()
        )));
    }
    for id in &options.approve {
        match plan.step(id) {
            Some(step) if step.kind.asks_approval() => {}
            Some(step) => {
                return Err(RunError::usage(format!(
                    "`--approve {id}`: step `{id}` is a {} step, not an approval",
                    step.kind.name()
                )));
            }
            None => {
                let ids =
                    plan.steps.iter().filter(|step| step.kind.asks_approval()).map(|step| step.id.as_str());
                return Err(RunError::usage(format!(
                    "`--approve {id}`: no such step; {}",
                    crate::lang::diagnostic::suggestion(id, ids)
                )));
            }
        }
    }
    Ok(())
}

/// The state bucket did not answer: nothing starts (exit 3), and a local state
/// directory remains the way to run without it.
fn unreachable_state(state_dir: &StateDir, error: &StateError) -> RunError {
    RunError::Blocked {
        message: format!("cannot reach the state at {}: {error}", state_dir.display()),
        details: Vec::new(),
        help: Some(
            "if the bucket is down for good, run with a local `--state-dir DIR` (runs kept in the bucket stay \
             there)"
                .to_owned(),
        ),
        next: None,
    }
}

fn take_lock(
    state_dir: &StateDir,
    plan: &Plan,
    run_id: &str,
    break_stale: bool,
) -> Result<(Lock, Option<lock::Holder>), RunError> {
    Lock::acquire(state_dir, plan.name(), run_id, break_stale)
        .map_err(|obstacle| lock_error(plan, obstacle, state_dir))
}

/// The complete command that takes up the run of a stale lock: every flag it needs.
fn stale_run_command(plan: &Plan, run_id: &str, state_dir: &StateDir) -> String {
    // resume refuses an altered journal: the command to offer is the check.
    let stored = journal::StoredRun::read(state_dir, run_id);
    if matches!(stored.as_ref().map(journal::StoredRun::verify), Ok(Err(broken)) if !broken.unchained) {
        return decisions::command(&["verify".to_owned(), run_id.to_owned()], state_dir);
    }
    match stored.map_err(|error| error.to_string()).and_then(|stored| stored.replay()) {
        Ok(state) => next_step(plan, &state, &RunOptions::reading(state_dir)).1,
        Err(_) => resume_command(run_id, &["--break-stale-lock".to_owned()], state_dir),
    }
}

/// Why the lock cannot be taken and what to do.
fn lock_error(plan: &Plan, obstacle: LockError, state_dir: &StateDir) -> RunError {
    let blocked = |message: String, help: String| RunError::Blocked {
        message,
        details: Vec::new(),
        help: Some(help),
        next: None,
    };
    match obstacle {
        LockError::Held(holder) => blocked(
            format!("plan {} is already being run by {holder}.", plan.name()),
            format!(
                "wait for it, or coordinate with them; one run per plan and state directory. `{}` shows where it is",
                decisions::command(&["status".to_owned(), holder.run_id.clone()], state_dir)
            ),
        ),
        LockError::Stale(holder) => blocked(
            format!("plan {} is locked by {holder}, but {} (stale lock).", plan.name(), holder.why_stale()),
            format!(
                "take that run up where it stopped: `{}`; or, if it must not go on, start anew with \
                 `--break-stale-lock` (recorded in the journal)",
                stale_run_command(plan, &holder.run_id, state_dir)
            ),
        ),
        LockError::LeftRunning(holder, processes) => {
            let listed: Vec<String> = processes.iter().map(|(pid, name)| format!("{pid} ({name})")).collect();
            let pids: Vec<String> = processes.iter().map(|(pid, _)| pid.to_string()).collect();
            blocked(
                format!(
                    "plan {} is locked by {holder}; {}, but programs its steps started are still running: {}.",
                    plan.name(),
                    holder.why_stale(),
                    listed.join(", ")
                ),
                format!(
                    "wait for them to end, or stop them (`kill {}`), then `{}`; breaking the lock now could run a \
                     step twice at the same time",
                    pids.join(" "),
                    decisions::command(&["status".to_owned(), holder.run_id.clone()], state_dir)
                ),
            )
        }
        LockError::Io(error) => RunError::System(format!("cannot take the lock: {error}")),
        LockError::Unreachable(error) => unreachable_state(state_dir, &StateError::Unreachable(error)),
    }
}

fn resolve_secrets(plan: &Plan) -> Result<BTreeMap<String, SecretValue>, RunError> {
    let mut secrets = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, spec) in &plan.spec.secrets.entries {
        match crate::lang::secret::resolve(&name.value, spec) {
            Ok(value) => {
                secrets.insert(name.value.clone(), value);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() { Ok(secrets) } else { Err(RunError::Usage(problems)) }
}

/// The resume question at a terminal: what will run, what is destructive, what runs again.
async fn confirm_resume(
    console: &mut Console,
    plan: &Plan,
    run_id: &str,
    preview: &decisions::ResumePlan,
) -> Answer {
    let to_run: Vec<&crate::lang::plan::Step> = plan
        .steps
        .iter()
        .zip(&preview.states)
        .filter(|(_, state)| **state == StepState::Pending)
        .map(|(step, _)| step)
        .collect();
    let destructive = to_run.iter().filter(|step| step.kind.is_destructive(&step.with.to_json())).count();
    let again = if preview.rerun.is_empty() {
        String::new()
    } else {
        format!("; running again: {}", decisions::quoted_list(&preview.rerun))
    };
    let question = format!(
        "Resume run {run_id} of plan {} ({} to run, {destructive} destructive{again})?\nType `yes` to resume or \
         `no` to cancel, then Enter: ",
        plan.name(),
        crate::lang::diagnostic::counted(to_run.len(), "step", "steps"),
    );
    console.ask_yes_no(&question, ("resume", "cancel")).await
}

/// The start question: `yes` starts, `no` does not, anything else asks again.
async fn confirm(console: &mut Console, plan: &Plan, drill: bool) -> Answer {
    let destructive = plan.steps.iter().filter(|step| step.kind.is_destructive(&step.with.to_json())).count();
    let question = format!(
        "Run plan {}{} ({}, {destructive} destructive)? `dr-plan dry-run {}` shows them.\nType `yes` to start \
         or `no` to cancel, then Enter: ",
        plan.name(),
        if drill { " as a drill" } else { "" },
        crate::lang::diagnostic::counted(plan.steps.len(), "step", "steps"),
        decisions::shell_quote(plan.file.name())
    );
    console.ask_yes_no(&question, ("start", "cancel")).await
}

fn redact_map(redactor: &Redactor, map: &Map<String, Json>) -> Map<String, Json> {
    match redactor.redact_json(&Json::Object(map.clone())) {
        Json::Object(map) => map,
        _ => Map::new(),
    }
}

fn run_fields(plan: &Plan, run_id: &str, drill: bool, started_at: &str, run_dir: &Path) -> Map<String, Json> {
    let mut run = Map::new();
    run.insert("id".into(), Json::String(run_id.to_owned()));
    run.insert("drill".into(), Json::Bool(drill));
    run.insert("started_at".into(), Json::String(started_at.to_owned()));
    run.insert("dir".into(), Json::String(run_dir.display().to_string()));
    run.insert("plan".into(), Json::String(plan.name().to_owned()));
    run
}

fn first_difference(before: &str, after: &str) -> String {
    let mut before_lines = before.lines();
    let mut after_lines = after.lines();
    let mut number = 0;
    loop {
        number += 1;
        match (before_lines.next(), after_lines.next()) {
            (Some(old), Some(new)) if old == new => {}
            (Some(old), Some(new)) => {
                return format!("line {number} was `{}`, is now `{}`", old.trim(), new.trim());
            }
            (Some(old), None) => return format!("line {number} `{}` was removed", old.trim()),
            (None, Some(new)) => return format!("line {number} `{}` was added", new.trim()),
            (None, None) => return "the content differs".to_owned(),
        }
    }
}
