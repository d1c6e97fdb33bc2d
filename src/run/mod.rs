//! Runs: `run`, `drill`, `resume`. Each checks the plan, takes the lock, journals every
//! event, and ends with an exit code and the next command to type.

pub mod journal;
pub mod lock;
pub mod report;
pub mod reporter;
pub mod scheduler;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use crate::exit_code;
use crate::plan::Plan;
use crate::render::{Context, Mode, Overrides};
use crate::secret::{Redactor, SecretValue};
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

/// Starts a new run (or drill) of the plan at `path`.
#[must_use]
pub fn start(path: &Path, overrides: &Overrides, drill: bool, options: &RunOptions) -> i32 {
    let plan = match crate::plan::load_plan(path) {
        Ok(plan) => plan,
        Err(problems) => {
            crate::cli::print_diagnostics(&problems);
            return exit_code::INVALID;
        }
    };
    if let Some(code) = check_runnable(&plan, options) {
        return code;
    }
    let (inputs, vars) = match crate::render::resolve_values(&plan, overrides) {
        Ok(values) => values,
        Err(problems) => return usage_errors(&problems),
    };
    let secrets = match resolve_secrets(&plan) {
        Ok(secrets) => secrets,
        Err(problems) => return usage_errors(&problems),
    };
    let run_id = format!(
        "{}-{}-{:04x}",
        plan.name(),
        chrono::Utc::now().format("%Y%m%d-%H%M%S"),
        rand::random::<u16>()
    );
    let run_dir = journal::run_dir(&options.state_dir, &run_id);
    if let Err(error) = std::fs::create_dir_all(&run_dir) {
        eprintln!("error: cannot create {}: {error}", run_dir.display());
        return exit_code::INVALID;
    }
    let (_lock, broken) = match take_lock(&options.state_dir, &plan, &run_id, options.break_stale_lock) {
        Ok(lock) => lock,
        Err(code) => {
            let _ = std::fs::remove_dir_all(&run_dir);
            return code;
        }
    };
    let _ = std::fs::write(run_dir.join("plan.snapshot"), plan.file.text());
    if !confirm(&plan, drill, options) {
        eprintln!("not started.");
        let _ = std::fs::remove_dir_all(&run_dir);
        return exit_code::FAILED;
    }
    let redactor = Arc::new(Redactor::new(secrets.values()));
    let (mut writer, mut reporter) =
        match open_journal(&journal::journal_path(&options.state_dir, &run_id), options.format) {
            Ok(opened) => opened,
            Err(code) => return code,
        };
    let started = Event::RunStarted {
        format: journal::FORMAT_VERSION,
        run_id: run_id.clone(),
        plan: plan.name().to_owned(),
        plan_path: path.display().to_string(),
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
    for event in events {
        match writer.append(event) {
            Ok(record) => reporter.record(&record),
            Err(error) => {
                eprintln!("error: cannot write the journal: {error}");
                return exit_code::FAILED;
            }
        }
    }
    let context = Context {
        mode: Mode::Run,
        vars,
        inputs,
        secrets,
        run: run_fields(&plan, &run_id, drill, &journal::now(), &run_dir),
        outputs: BTreeMap::new(),
        withheld: BTreeMap::new(),
    };
    let states = vec![StepState::Pending; plan.steps.len()];
    let attempts = vec![0; plan.steps.len()];
    execute(
        &plan,
        context,
        states,
        attempts,
        Vec::new(),
        writer,
        reporter.as_mut(),
        &run_id,
        &run_dir,
        drill,
        &redactor,
        options,
    )
}

/// Takes up an interrupted, failed or blocked run where it stopped.
#[must_use]
pub fn resume(run_id: &str, rerun_interrupted: bool, options: &RunOptions) -> i32 {
    let journal_file = journal::journal_path(&options.state_dir, run_id);
    if !journal_file.exists() {
        eprintln!(
            "error: no run `{run_id}` under {}; `dr-plan status --state-dir {}` lists the runs",
            options.state_dir.display(),
            options.state_dir.display()
        );
        return exit_code::INVALID;
    }
    let state = match journal::read(&journal_file).and_then(RunState::replay) {
        Ok(state) => state,
        Err(error) => {
            eprintln!("error: {error}");
            return exit_code::INVALID;
        }
    };
    let Event::RunStarted { plan_path, plan_hash, drill, inputs, vars, .. } = state.started.clone() else {
        return exit_code::INVALID;
    };
    if state.status == Some(RunStatus::Succeeded) {
        println!("run {run_id} already succeeded; nothing to resume. `dr-plan report {run_id}` shows it.");
        return exit_code::SUCCESS;
    }
    let plan = match crate::plan::load_plan(Path::new(&plan_path)) {
        Ok(plan) => plan,
        Err(problems) => {
            crate::cli::print_diagnostics(&problems);
            return exit_code::INVALID;
        }
    };
    let run_dir = journal::run_dir(&options.state_dir, run_id);
    if plan.content_hash != plan_hash {
        let before = std::fs::read_to_string(run_dir.join("plan.snapshot")).unwrap_or_default();
        eprintln!(
            "error: {plan_path} changed since run {run_id} started ({}); resume refuses to mix two plans.\n  \
             help: restore the file as it was (a copy is in {}), or start a new run with `dr-plan run {plan_path}`",
            first_difference(&before, plan.file.text()),
            run_dir.join("plan.snapshot").display()
        );
        return exit_code::INVALID;
    }
    if let Some(code) = check_runnable(&plan, options) {
        return code;
    }
    // The lock comes before any decision: while another process still runs this plan,
    // its steps look interrupted in the journal but are not.
    let (_lock, broken) = match take_lock(&options.state_dir, &plan, run_id, options.break_stale_lock) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    // Read again: the run may have moved on between the first read and the lock.
    let state = match journal::read(&journal_file).and_then(RunState::replay) {
        Ok(state) => state,
        Err(error) => {
            eprintln!("error: {error}");
            return exit_code::INVALID;
        }
    };
    if state.status == Some(RunStatus::Succeeded) {
        println!("run {run_id} already succeeded; nothing to resume. `dr-plan report {run_id}` shows it.");
        return exit_code::SUCCESS;
    }
    let (mut writer, mut reporter) = match open_journal(&journal_file, options.format) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    // A broken lock is journaled even if resume then stops: breaking it is the audited act.
    let mut events = Vec::new();
    if let Some(holder) = broken {
        events.push(Event::LockBroken { operator: lock::operator(), holder: holder.to_string() });
    }
    let mut states = Vec::with_capacity(plan.steps.len());
    let mut rerun = Vec::new();
    let mut refused = Vec::new();
    for step in &plan.steps {
        let recorded = state.steps.get(&step.id).cloned().unwrap_or(StepState::Pending);
        let resumed = match recorded {
            StepState::Interrupted { .. } => {
                if step.kind.info().idempotent || rerun_interrupted {
                    rerun.push(step.id.clone());
                } else {
                    refused.push(step.id.clone());
                }
                StepState::Pending
            }
            // An undone step's effect was reversed: the steps after it need it again.
            StepState::Failed { .. } | StepState::Undone => StepState::Pending,
            StepState::Skipped { reason } if reason.starts_with("needs ") => StepState::Pending,
            other @ (StepState::Pending | StepState::Succeeded { .. } | StepState::Skipped { .. }) => other,
        };
        states.push(resumed);
    }
    if !refused.is_empty() {
        eprintln!(
            "error: step(s) {} were running when run {run_id} stopped and may have half-finished; their kinds are not \
             idempotent, so resume will not run them again on its own.\n  help: check what they did, then \
             `dr-plan resume {run_id} --rerun-interrupted` to run them again",
            refused.join(", ")
        );
        return match append_all(&mut writer, reporter.as_mut(), events) {
            Ok(()) => exit_code::BLOCKED,
            Err(code) => code,
        };
    }
    let secrets = match resolve_secrets(&plan) {
        Ok(secrets) => secrets,
        Err(problems) => {
            let _ = append_all(&mut writer, reporter.as_mut(), events);
            return usage_errors(&problems);
        }
    };
    let redactor = Arc::new(Redactor::new(secrets.values()));
    events.push(Event::Resumed { operator: lock::operator(), rerun });
    if let Err(code) = append_all(&mut writer, reporter.as_mut(), events) {
        return code;
    }
    // Outputs that held a secret are in the journal redacted: they are left out, so a
    // step reading one fails saying why instead of receiving `***`.
    let withheld: BTreeMap<String, Vec<String>> = state
        .withheld
        .iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(id, names)| (id.clone(), names.clone()))
        .collect();
    let outputs: BTreeMap<String, Json> = state
        .steps
        .iter()
        .filter_map(|(id, step)| match step {
            StepState::Succeeded { outputs } => {
                let mut outputs = outputs.clone();
                outputs.retain(|name, _| !withheld.get(id).is_some_and(|names| names.contains(name)));
                Some((id.clone(), Json::Object(outputs)))
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
            && let Some(index) = plan.steps.iter().position(|candidate| &candidate.id == step)
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
    execute(
        &plan,
        context,
        states,
        attempts,
        completed,
        writer,
        reporter.as_mut(),
        run_id,
        &run_dir,
        drill,
        &redactor,
        options,
    )
}

#[expect(
    clippy::too_many_arguments,
    reason = "the one place start and resume meet; a struct would only rename them"
)]
fn execute(
    plan: &Plan,
    context: Context,
    states: Vec<StepState>,
    attempts: Vec<u32>,
    completed: Vec<usize>,
    journal: JournalWriter,
    reporter: &mut dyn reporter::Reporter,
    run_id: &str,
    run_dir: &Path,
    drill: bool,
    redactor: &Arc<Redactor>,
    options: &RunOptions,
) -> i32 {
    // Kills the steps' programs should this process die without stopping them (kill -9).
    let _watchdog = crate::steps::orphan_watchdog::start().inspect_err(|error| {
        eprintln!("warning: no orphan watchdog ({error}): a kill -9 would leave the steps' programs running")
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return exit_code::FAILED;
        }
    };
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let mut dispatcher = scheduler::Dispatcher {
        plan,
        context,
        states,
        attempts,
        journal,
        reporter,
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
    };
    let status = match runtime.block_on(dispatcher.run()) {
        Ok(status) => status,
        Err(error) => {
            eprintln!("error: {error}; the run stopped. `dr-plan resume {run_id}` takes it up again.");
            return exit_code::FAILED;
        }
    };
    drop(dispatcher);
    let state_dir = &options.state_dir;
    let report = journal::read(&journal::journal_path(state_dir, run_id))
        .and_then(RunState::replay)
        .map(|state| report::Report::new(plan, &state));
    if let Ok(report) = &report {
        if drill && status == RunStatus::Succeeded {
            let record = crate::history::DrillRecord {
                run_id: run_id.to_owned(),
                finished_at: journal::now(),
                steps: report.step_seconds(),
            };
            if let Err(error) = crate::history::History::append(state_dir, plan.name(), &record) {
                eprintln!("warning: cannot record the drill's durations: {error}");
            }
        }
        if let Some(path) = &options.metrics_file
            && let Err(error) = std::fs::write(path, report.prometheus())
        {
            eprintln!("warning: cannot write {}: {error}", path.display());
        }
        eprintln!("{}", report.summary_line());
    }
    let dir = state_dir.display();
    match status {
        RunStatus::Succeeded => {
            eprintln!("next: `dr-plan report {run_id} --state-dir {dir}` for the report");
            exit_code::SUCCESS
        }
        RunStatus::Failed => {
            eprintln!(
                "next: fix the cause, then `dr-plan resume {run_id} --state-dir {dir}` (finished steps are not run again)"
            );
            exit_code::FAILED
        }
        RunStatus::Blocked => {
            let waiting: Vec<String> = report
                .as_ref()
                .map(|report| report.waiting_approvals())
                .unwrap_or_default()
                .iter()
                .map(|step| format!("--approve {step}"))
                .collect();
            eprintln!(
                "next: an approval is needed: `dr-plan resume {run_id} --state-dir {dir} {}` (or resume at a terminal)",
                waiting.join(" ")
            );
            exit_code::BLOCKED
        }
        RunStatus::Interrupted => {
            eprintln!("interrupted. next: `dr-plan resume {run_id} --state-dir {dir}`");
            exit_code::INTERRUPTED
        }
        RunStatus::CompletedWithFailures => {
            let failed: Vec<String> = report
                .as_ref()
                .map(report::Report::failed_steps)
                .unwrap_or_default()
                .iter()
                .map(|step| format!("`{step}`"))
                .collect();
            eprintln!(
                "next: {} failed (on_failure: continue; nothing was undone): check it, then `dr-plan resume {run_id} \
                 --state-dir {dir}` runs the failed steps again",
                failed.join(", ")
            );
            exit_code::FAILED
        }
    }
}

/// Opens a run's journal for appending, with the reporter for this terminal.
fn open_journal(
    path: &Path,
    format: ProgressFormat,
) -> Result<(JournalWriter, Box<dyn reporter::Reporter>), i32> {
    match JournalWriter::open(path) {
        Ok(writer) => Ok((writer, reporter::for_terminal(format))),
        Err(error) => {
            eprintln!("error: cannot open the journal {}: {error}", path.display());
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
                eprintln!("error: cannot write the journal: {error}");
                return Err(exit_code::FAILED);
            }
        }
    }
    Ok(())
}

fn check_runnable(plan: &Plan, options: &RunOptions) -> Option<i32> {
    for id in &options.approve {
        match plan.step(id) {
            Some(step) if step.kind == crate::steps::StepKind::Approval => {}
            Some(step) => {
                eprintln!(
                    "error: `--approve {id}`: step `{id}` is a {} step, not an approval",
                    step.kind.name()
                );
                return Some(exit_code::INVALID);
            }
            None => {
                let ids = plan
                    .steps
                    .iter()
                    .filter(|step| step.kind == crate::steps::StepKind::Approval)
                    .map(|step| step.id.as_str());
                eprintln!(
                    "error: `--approve {id}`: no such step; {}",
                    crate::diagnostic::suggestion(id, ids)
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
    match Lock::acquire(state_dir, plan.name(), run_id, break_stale) {
        Ok(lock) => Ok(lock),
        Err(LockError::Held(holder)) => {
            eprintln!(
                "error: plan {} is already being run by {holder}.\n  help: wait for it, or coordinate with them; \
                 one run per plan and state directory",
                plan.name()
            );
            Err(exit_code::BLOCKED)
        }
        Err(LockError::Stale(holder)) => {
            eprintln!(
                "error: plan {} is locked by {holder}, but that process is gone (stale lock).\n  help: if you are \
                 sure nobody runs it, add `--break-stale-lock` (recorded in the journal)",
                plan.name()
            );
            Err(exit_code::BLOCKED)
        }
        Err(LockError::LeftRunning(holder, processes)) => {
            let listed: Vec<String> = processes.iter().map(|(pid, name)| format!("{pid} ({name})")).collect();
            let pids: Vec<String> = processes.iter().map(|(pid, _)| pid.to_string()).collect();
            eprintln!(
                "error: plan {} is locked by {holder}; that process is gone, but programs its steps started are \
                 still running: {}.\n  help: wait for them to end, or stop them (`kill {}`), then resume; \
                 breaking the lock now could run a step twice at the same time",
                plan.name(),
                listed.join(", "),
                pids.join(" ")
            );
            Err(exit_code::BLOCKED)
        }
        Err(LockError::Io(error)) => {
            eprintln!("error: cannot take the lock: {error}");
            Err(exit_code::FAILED)
        }
    }
}

fn resolve_secrets(plan: &Plan) -> Result<BTreeMap<String, SecretValue>, Vec<String>> {
    let mut secrets = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, spec) in &plan.spec.secrets.entries {
        match crate::secret::resolve(&name.value, spec) {
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
        eprintln!("error: {problem}");
    }
    exit_code::INVALID
}

fn confirm(plan: &Plan, drill: bool, options: &RunOptions) -> bool {
    if options.yes || !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return true;
    }
    let destructive = plan.steps.iter().filter(|step| step.kind.is_destructive(&step.with.to_json())).count();
    eprint!(
        "Run plan {}{} ({} steps, {destructive} destructive)? `dr-plan dry-run` shows them. Type `yes` to start: ",
        plan.name(),
        if drill { " as a drill" } else { "" },
        plan.steps.len()
    );
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && answer.trim() == "yes"
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
