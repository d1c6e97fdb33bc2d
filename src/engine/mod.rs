//! Runs: `run`, `drill`, `resume`. Each checks the plan, takes the lock, journals every
//! event, and ends with an exit code and the next command to type.

pub mod console;
pub mod decisions;
pub mod journal;
pub mod lock;
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
use crate::sys::exit_code;
use crate::sys::files;
use console::{Answer, Console};
use decisions::{ResumeRequest, resume_command};
use journal::{Event, JournalWriter, RunState, RunStatus, StepState};
use lock::{Lock, LockError};
use reporter::ProgressFormat;

/// Options shared by `run`, `drill` and `resume`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// `--state-dir`
    pub state_dir: PathBuf,
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
    pub fn reading(state_dir: &Path) -> RunOptions {
        RunOptions {
            state_dir: state_dir.to_path_buf(),
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

/// The async runtime and the operator's console of one command. Dropping it does not
/// wait for a prompt's reader: Ctrl-C at a question ends the command at once.
struct Session {
    runtime: Option<tokio::runtime::Runtime>,
    console: Console,
}

impl Session {
    fn start() -> Result<Session, i32> {
        let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                crate::errln!("error: cannot start the async runtime: {error}");
                return Err(exit_code::FAILED);
            }
        };
        match runtime.block_on(async { Console::start() }) {
            Ok(console) => Ok(Session { runtime: Some(runtime), console }),
            Err(error) => {
                crate::errln!("error: cannot watch Ctrl-C: {error}");
                Err(exit_code::FAILED)
            }
        }
    }

    /// After a second Ctrl-C the process removes this lock and prints `hint`.
    fn last_words(&self, lock: Option<&Lock>, hint: Option<String>) {
        if let Ok(mut words) = self.console.last_words.lock() {
            words.lock = lock.map(|lock| lock.path().to_path_buf());
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
#[must_use]
pub fn start(path: &Path, overrides: &Overrides, drill: bool, options: &RunOptions) -> i32 {
    let plan = match crate::kinds::load_plan(path) {
        Ok(plan) => plan,
        Err(problems) => {
            crate::sys::output::print_diagnostics(&problems);
            return exit_code::INVALID;
        }
    };
    if let Some(code) = check_runnable(&plan, options) {
        return code;
    }
    let (inputs, vars) = match crate::lang::render::resolve_values(&plan, overrides) {
        Ok(values) => values,
        Err(problems) => return usage_errors(&problems),
    };
    let secrets = match resolve_secrets(&plan) {
        Ok(secrets) => secrets,
        Err(problems) => return usage_errors(&problems),
    };
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if !options.yes && !interactive {
        // Nobody can answer the start question: a wrapper script, `ssh` without `-t`
        // or a stray pipe must not start a recovery by accident.
        // Paths made absolute, so the command works from any directory.
        let mut previous = String::new();
        let mut words: Vec<String> = Vec::new();
        for word in std::env::args().skip(1) {
            let is_path = word == path.display().to_string()
                || matches!(previous.as_str(), "--state-dir" | "--vars-file" | "--metrics-file");
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
        crate::errln!(
            "error: nothing started: there is no terminal to confirm the start at, and `--yes` was not given.\n\
             next: `dr-plan {}`",
            words.join(" ")
        );
        return exit_code::BLOCKED;
    }
    for (unfinished, status) in unfinished_runs(&options.state_dir, plan.name()) {
        crate::errln!(
            "note: run {unfinished} of this plan is {status}; to take it up instead of starting anew: `{}`",
            stale_run_command(&plan, &unfinished, &options.state_dir)
        );
    }
    let mut session = match Session::start() {
        Ok(session) => session,
        Err(code) => return code,
    };
    let run_id = format!(
        "{}-{}-{:04x}",
        plan.name(),
        chrono::Utc::now().format("%Y%m%d-%H%M%S"),
        rand::random::<u16>()
    );
    // The lock comes first, so nobody starts the plan while this operator reads the
    // question; nothing is written under runs/ until the operator said yes.
    let (lock, broken) = match take_lock(&options.state_dir, &plan, &run_id, options.break_stale_lock) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    session.last_words(Some(&lock), None);
    if !options.yes {
        let answer = session
            .runtime
            .as_ref()
            .map(|runtime| runtime.block_on(confirm(&mut session.console, &plan, drill)));
        match answer {
            Some(Answer::Yes) => {}
            Some(Answer::Interrupted) => {
                crate::errln!("\ninterrupted: nothing was started.");
                return exit_code::INTERRUPTED;
            }
            Some(Answer::No | Answer::NoTerminal) | None => {
                crate::errln!("not started.");
                return exit_code::FAILED;
            }
        }
    }
    let run_dir = journal::run_dir(&options.state_dir, &run_id);
    let snapshot = run_dir.join("plan.snapshot");
    if let Err(error) = files::private_dir(&run_dir)
        .and_then(|()| files::create_private(&snapshot, plan.file.text().as_bytes()))
    {
        crate::errln!("error: cannot create {}: {error}", snapshot.display());
        return exit_code::FAILED;
    }
    let redactor = Arc::new(Redactor::new(secrets.values()));
    let (mut writer, mut reporter) =
        match open_journal(&journal::journal_path(&options.state_dir, &run_id), options.format) {
            Ok(opened) => opened,
            Err(code) => return code,
        };
    if options.state_dir.is_relative() {
        let absolute = std::path::absolute(&options.state_dir).unwrap_or_else(|_| options.state_dir.clone());
        reporter
            .message(&format!("state directory: {} (--state-dir, DR_PLAN_STATE_DIR)", absolute.display()));
    }
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
    if let Err(code) = append_all(&mut writer, reporter.as_mut(), events) {
        return code;
    }
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

/// Takes up an interrupted, failed or blocked run where it stopped.
#[must_use]
pub fn resume(run_id: &str, arguments: &ResumeArguments, options: &RunOptions) -> i32 {
    if let Err(problem) = journal::check_run_id(run_id) {
        crate::errln!(
            "error: {problem}; `{}` lists the runs",
            decisions::command(&["status".to_owned()], &options.state_dir)
        );
        return exit_code::INVALID;
    }
    let journal_file = journal::journal_path(&options.state_dir, run_id);
    if !journal_file.exists() {
        crate::errln!(
            "error: no run `{run_id}` under {}; `{}` lists the runs",
            options.state_dir.display(),
            decisions::command(&["status".to_owned()], &options.state_dir)
        );
        return exit_code::INVALID;
    }
    let state = match journal::read(&journal_file).and_then(RunState::replay) {
        Ok(state) => state,
        Err(error) => {
            crate::errln!("error: {error}");
            return exit_code::INVALID;
        }
    };
    let Event::RunStarted { plan_path, plan_hash, .. } = state.started.clone() else {
        crate::errln!("error: {}: the journal does not start with run_started", journal_file.display());
        return exit_code::INVALID;
    };
    if state.status == Some(RunStatus::Succeeded) {
        return already_succeeded(run_id, options);
    }
    let run_dir = journal::run_dir(&options.state_dir, run_id);
    let snapshot = run_dir.join("plan.snapshot");
    let loaded = if Path::new(&plan_path).exists() {
        crate::kinds::load_plan(Path::new(&plan_path))
    } else {
        // The plan file is not here (another machine, another directory, a deleted
        // checkout): the copy taken when the run started is the plan of this run.
        match std::fs::read_to_string(&snapshot) {
            Ok(text) => {
                crate::errln!(
                    "note: {plan_path} is not here; resuming with the copy taken when the run started ({})",
                    snapshot.display()
                );
                crate::kinds::plan_from_source(&crate::lang::source::SourceFile::new(plan_path.clone(), text))
            }
            Err(_) => crate::kinds::load_plan(Path::new(&plan_path)),
        }
    };
    let plan = match loaded {
        Ok(plan) => plan,
        Err(problems) => {
            crate::sys::output::print_diagnostics(&problems);
            return exit_code::INVALID;
        }
    };
    if plan.content_hash != plan_hash {
        crate::errln!(
            "error: {plan_path} changed since run {run_id} started ({}); resume refuses to mix two plans.\n  \
             help: restore the file as it was (a copy is in {}), or start a new run with `{}`",
            first_difference(
                &std::fs::read_to_string(run_dir.join("plan.snapshot")).unwrap_or_default(),
                plan.file.text()
            ),
            run_dir.join("plan.snapshot").display(),
            decisions::command(&["run".to_owned(), plan_path.clone()], &options.state_dir)
        );
        return exit_code::INVALID;
    }
    if let Some(code) = check_runnable(&plan, options).or_else(|| check_resume_arguments(&plan, arguments)) {
        return code;
    }
    if let Err(damage) = decisions::check_order(&plan, &state) {
        crate::errln!(
            "error: {}:{damage}; the journal is damaged, and resume refuses to run steps out of order. Look at \
             that line; `{}` shows the run",
            journal_file.display(),
            decisions::command(&["report".to_owned(), run_id.to_owned()], &options.state_dir)
        );
        return exit_code::INVALID;
    }
    let request = ResumeRequest {
        rerun_interrupted: arguments.rerun_interrupted,
        rerun: arguments.rerun.clone(),
        mark_done: arguments.mark_done.clone(),
        overridden: arguments.overrides.values.iter().map(|(name, _)| name.clone()).collect(),
    };
    // Every decision at once, before anything is written: the lock, interrupted steps,
    // secret outputs, approvals; then one command that makes them all.
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    match lock::obstacle(&options.state_dir, plan.name()) {
        Some(LockError::Stale(_)) | None => {}
        Some(obstacle) => return print_lock_error(&plan, obstacle, &options.state_dir),
    }
    let outlook = resume_outlook(&plan, &state, &request, options, interactive);
    if !outlook.refusals.is_empty() {
        for refusal in &outlook.refusals {
            crate::errln!("error: {refusal}");
        }
        return exit_code::INVALID;
    }
    if !outlook.decisions.is_empty() {
        crate::errln!("error: run {run_id} cannot resume before you decide:");
        for decision in &outlook.decisions {
            crate::errln!("  - {decision}");
        }
        let mut flags = resumed_flags(arguments, options);
        flags.extend(outlook.flags.iter().cloned());
        crate::errln!("next: `{}`", resume_command(run_id, &flags, &options.state_dir));
        return exit_code::BLOCKED;
    }
    let mut session = match Session::start() {
        Ok(session) => session,
        Err(code) => return code,
    };
    if !options.yes && interactive {
        let preview = decisions::plan_resume(&plan, &state, &request);
        let answer = session
            .runtime
            .as_ref()
            .map(|runtime| runtime.block_on(confirm_resume(&mut session.console, &plan, run_id, &preview)));
        match answer {
            Some(Answer::Yes) => {}
            Some(Answer::Interrupted) => {
                crate::errln!("\ninterrupted: nothing was resumed.");
                return exit_code::INTERRUPTED;
            }
            Some(Answer::No | Answer::NoTerminal) | None => {
                crate::errln!("not resumed.");
                return exit_code::FAILED;
            }
        }
    }
    let (lock, broken) = match take_lock(&options.state_dir, &plan, run_id, options.break_stale_lock) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    session.last_words(Some(&lock), None);
    // Read again: the run may have moved on between the first read and the lock.
    let state = match journal::read(&journal_file).and_then(RunState::replay) {
        Ok(state) => state,
        Err(error) => {
            crate::errln!("error: {error}");
            return exit_code::INVALID;
        }
    };
    if state.status == Some(RunStatus::Succeeded) {
        return already_succeeded(run_id, options);
    }
    let resume = decisions::plan_resume(&plan, &state, &request);
    if !resume.decisions.is_empty() || !resume.refusals.is_empty() {
        crate::errln!("error: run {run_id} changed while resume was taking the lock; run the command again");
        return exit_code::BLOCKED;
    }
    let Event::RunStarted { drill, inputs, vars, .. } = state.started.clone() else {
        crate::errln!("error: {}: the journal does not start with run_started", journal_file.display());
        return exit_code::INVALID;
    };
    let secrets = match resolve_secrets(&plan) {
        Ok(secrets) => secrets,
        Err(problems) => return usage_errors(&problems),
    };
    // Corrections of earlier resumes, then this one's: resolved like `run` does, so an
    // unknown name or a wrong type is refused the same way.
    let mut corrections = Overrides { values: state.overridden.clone() };
    corrections.values.extend(arguments.overrides.values.iter().cloned());
    let (inputs, vars) = match apply_corrections(&plan, inputs, vars, &corrections) {
        Ok(values) => values,
        Err(problems) => return usage_errors(&problems),
    };
    let redactor = Arc::new(Redactor::new(secrets.values()));
    let (mut writer, mut reporter) = match open_journal(&journal_file, options.format) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
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
            values: redact_map(&redactor, &values),
        });
    }
    events.push(Event::Resumed { operator: lock::operator(), rerun: resume.rerun.clone() });
    if let Err(code) = append_all(&mut writer, reporter.as_mut(), events) {
        return code;
    }
    let states = resume.states;
    // Outputs that held a secret are in the journal redacted: they are left out, so a
    // step reading one fails saying why instead of receiving `***`.
    let withheld: BTreeMap<String, Vec<String>> = state
        .withheld
        .iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(id, names)| (id.clone(), names.clone()))
        .collect();
    let outputs: BTreeMap<String, Json> = plan
        .steps
        .iter()
        .zip(&states)
        .filter_map(|(step, resumed)| match resumed {
            StepState::Succeeded { outputs } => {
                let mut outputs = outputs.clone();
                outputs.retain(|name, _| !withheld.get(&step.id).is_some_and(|names| names.contains(name)));
                Some((step.id.clone(), Json::Object(outputs)))
            }
            StepState::Pending
            | StepState::Interrupted { .. }
            | StepState::Failed { .. }
            | StepState::Skipped { .. }
            | StepState::Undone => None,
        })
        .collect();
    // Steps that succeeded before this resume are compensated too if it fails, newest first.
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
    let context = Context {
        mode: Mode::Run,
        vars,
        inputs,
        secrets,
        run: run_fields(&plan, run_id, drill, &state.started_at, &run_dir),
        outputs,
        withheld,
    };
    let attempts = plan.steps.iter().map(|step| state.attempts.get(&step.id).copied().unwrap_or(0)).collect();
    let execution = Execution {
        plan: &plan,
        context,
        states,
        attempts,
        completed,
        journal: writer,
        reporter,
        run_id,
        run_dir: &run_dir,
        drill,
        redactor: &redactor,
        approval_needed_at: state.approval_needed_at.clone(),
    };
    execute(execution, options, &mut session, lock)
}

fn already_succeeded(run_id: &str, options: &RunOptions) -> i32 {
    crate::outln!(
        "run {run_id} already succeeded; nothing to resume. `{}` shows it.",
        decisions::command(&["report".to_owned(), run_id.to_owned()], &options.state_dir)
    );
    exit_code::SUCCESS
}

/// Runs of `plan` under `state_dir` that did not end (interrupted, blocked, or whose
/// process died), newest last, with their status word.
fn unfinished_runs(state_dir: &Path, plan: &str) -> Vec<(String, &'static str)> {
    report::list_runs(state_dir)
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
fn check_resume_arguments(plan: &Plan, arguments: &ResumeArguments) -> Option<i32> {
    let ids = || plan.steps.iter().map(|step| step.id.as_str());
    for (flag, id) in arguments
        .mark_done
        .iter()
        .map(|id| ("--mark-done", id))
        .chain(arguments.rerun.iter().map(|id| ("--rerun", id)))
    {
        if plan.step(id).is_none() {
            crate::errln!(
                "error: `{flag} {id}`: no such step; {}",
                crate::lang::diagnostic::suggestion(id, ids())
            );
            return Some(exit_code::INVALID);
        }
    }
    let reason = arguments.reason.as_deref().map(str::trim).unwrap_or_default();
    if !arguments.mark_done.is_empty() && reason.is_empty() {
        crate::errln!(
            "error: `--mark-done` needs `--reason TEXT`: say how you checked that the step finished (it goes \
             into the journal and the report)"
        );
        return Some(exit_code::INVALID);
    }
    None
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
            "the lock is stale: it names {holder}, and that process is gone. `--break-stale-lock` breaks it \
             (recorded in the journal)"
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

fn execute(execution: Execution<'_>, options: &RunOptions, session: &mut Session, lock: Lock) -> i32 {
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
    let state_dir = &options.state_dir;
    session.last_words(Some(&lock), Some(format!("next: `{}`", resume_command(run_id, &[], state_dir))));
    // Kills the steps' programs should this process die without stopping them (kill -9).
    let watchdog = crate::sys::orphan_watchdog::start().inspect_err(|error| {
        crate::errln!(
            "warning: no orphan watchdog ({error}): a kill -9 would leave the steps' programs running"
        )
    });
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let Some(runtime) = session.runtime.take() else { return exit_code::FAILED };
    let mut dispatcher = scheduler::Dispatcher {
        plan,
        context,
        states,
        attempts,
        journal,
        reporter: reporter.as_mut(),
        concurrency: options.concurrency.max(1),
        approved: options.approve.iter().cloned().collect::<BTreeSet<_>>(),
        interactive,
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
    };
    let result = runtime.block_on(dispatcher.run());
    drop(dispatcher);
    session.runtime = Some(runtime);
    let status = match result {
        Ok(status) => status,
        Err(error) => {
            crate::errln!(
                "error: {error}; the run stopped. `{}` takes it up again.",
                resume_command(run_id, &[], state_dir)
            );
            return exit_code::FAILED;
        }
    };
    let state = journal::read(&journal::journal_path(state_dir, run_id)).and_then(RunState::replay);
    let report = state.as_ref().ok().map(|state| report::Report::new(plan, state));
    if let Some(report) = &report {
        if drill && status == RunStatus::Succeeded {
            let record = crate::preview::history::DrillRecord {
                run_id: run_id.to_owned(),
                finished_at: crate::sys::clock::now(),
                steps: report.step_seconds(),
            };
            if let Err(error) = crate::preview::history::History::append(state_dir, plan.name(), &record) {
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
    // The lock is released before the hint is computed, so the hint needs no
    // `--break-stale-lock`.
    let code = match status {
        RunStatus::Succeeded => {
            crate::errln!(
                "next: `{}` for the report",
                decisions::command(&["report".to_owned(), run_id.to_owned()], state_dir)
            );
            return exit_code::SUCCESS;
        }
        RunStatus::Failed => exit_code::FAILED,
        RunStatus::Blocked => exit_code::BLOCKED,
        RunStatus::Interrupted => exit_code::INTERRUPTED,
        RunStatus::CompletedWithFailures => exit_code::FAILED,
    };
    // What the steps left running is gone before the lock is released.
    drop(watchdog);
    drop(lock);
    let Ok(state) = state else { return code };
    let (mut notes, command) = next_step(plan, &state, options);
    notes.extend(decisions::value_hints(plan, &state));
    match status {
        RunStatus::Blocked => {
            for (step, question) in waiting_questions(&state) {
                crate::errln!("⏸ approval `{step}` asks: {question}");
            }
            crate::errln!("an approval is needed: answer it at a terminal, or grant it with `--approve`.");
        }
        RunStatus::Interrupted => crate::errln!("interrupted; the run can be resumed."),
        RunStatus::CompletedWithFailures => {
            let failed: Vec<String> = report.as_ref().map(report::Report::failed_steps).unwrap_or_default();
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
    code
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
    path: &Path,
    format: ProgressFormat,
) -> Result<(JournalWriter, Box<dyn reporter::Reporter>), i32> {
    match JournalWriter::open(path) {
        Ok(writer) => Ok((writer, reporter::for_terminal(format))),
        Err(error) => {
            crate::errln!("error: cannot open the journal {}: {error}", path.display());
            Err(exit_code::FAILED)
        }
    }
}

/// Journals `events` and shows them; a journal that cannot be written stops the command.
fn append_all(
    writer: &mut JournalWriter,
    reporter: &mut dyn reporter::Reporter,
    events: Vec<Event>,
) -> Result<(), i32> {
    for event in events {
        match writer.append(event) {
            Ok(record) => reporter.record(&record),
            Err(error) => {
                crate::errln!("error: cannot write the journal: {error}");
                return Err(exit_code::FAILED);
            }
        }
    }
    Ok(())
}

fn check_runnable(plan: &Plan, options: &RunOptions) -> Option<i32> {
    for id in &options.approve {
        match plan.step(id) {
            Some(step) if step.kind.asks_approval() => {}
            Some(step) => {
                crate::errln!(
                    "error: `--approve {id}`: step `{id}` is a {} step, not an approval",
                    step.kind.name()
                );
                return Some(exit_code::INVALID);
            }
            None => {
                let ids =
                    plan.steps.iter().filter(|step| step.kind.asks_approval()).map(|step| step.id.as_str());
                crate::errln!(
                    "error: `--approve {id}`: no such step; {}",
                    crate::lang::diagnostic::suggestion(id, ids)
                );
                return Some(exit_code::INVALID);
            }
        }
    }
    None
}

fn take_lock(
    state_dir: &Path,
    plan: &Plan,
    run_id: &str,
    break_stale: bool,
) -> Result<(Lock, Option<lock::Holder>), i32> {
    Lock::acquire(state_dir, plan.name(), run_id, break_stale)
        .map_err(|obstacle| print_lock_error(plan, obstacle, state_dir))
}

/// The complete command that takes up the run of a stale lock: every flag it needs.
fn stale_run_command(plan: &Plan, run_id: &str, state_dir: &Path) -> String {
    match journal::read(&journal::journal_path(state_dir, run_id)).and_then(RunState::replay) {
        Ok(state) => next_step(plan, &state, &RunOptions::reading(state_dir)).1,
        Err(_) => resume_command(run_id, &["--break-stale-lock".to_owned()], state_dir),
    }
}

/// Says why the lock cannot be taken and what to do; returns the exit code.
fn print_lock_error(plan: &Plan, obstacle: LockError, state_dir: &Path) -> i32 {
    match obstacle {
        LockError::Held(holder) => {
            crate::errln!(
                "error: plan {} is already being run by {holder}.\n  help: wait for it, or coordinate with them; \
                 one run per plan and state directory. `{}` shows where it is",
                plan.name(),
                decisions::command(&["status".to_owned(), holder.run_id.clone()], state_dir)
            );
            exit_code::BLOCKED
        }
        LockError::Stale(holder) => {
            crate::errln!(
                "error: plan {} is locked by {holder}, but that process is gone (stale lock).\n  help: take that \
                 run up where it stopped: `{}`; or, if it must not go on, start anew with `--break-stale-lock` \
                 (recorded in the journal)",
                plan.name(),
                stale_run_command(plan, &holder.run_id, state_dir)
            );
            exit_code::BLOCKED
        }
        LockError::LeftRunning(holder, processes) => {
            let listed: Vec<String> = processes.iter().map(|(pid, name)| format!("{pid} ({name})")).collect();
            let pids: Vec<String> = processes.iter().map(|(pid, _)| pid.to_string()).collect();
            crate::errln!(
                "error: plan {} is locked by {holder}; that process is gone, but programs its steps started are \
                 still running: {}.\n  help: wait for them to end, or stop them (`kill {}`), then `{}`; \
                 breaking the lock now could run a step twice at the same time",
                plan.name(),
                listed.join(", "),
                pids.join(" "),
                decisions::command(&["status".to_owned(), holder.run_id.clone()], state_dir)
            );
            exit_code::BLOCKED
        }
        LockError::Io(error) => {
            crate::errln!("error: cannot take the lock: {error}");
            exit_code::FAILED
        }
    }
}

fn resolve_secrets(plan: &Plan) -> Result<BTreeMap<String, SecretValue>, Vec<String>> {
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
    if problems.is_empty() { Ok(secrets) } else { Err(problems) }
}

fn usage_errors(problems: &[String]) -> i32 {
    for problem in problems {
        crate::errln!("error: {problem}");
    }
    exit_code::INVALID
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
