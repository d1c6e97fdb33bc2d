//! `dr-plan status` and `dr-plan report`: read-only views of runs in the state directory.

use std::path::Path;

use crate::state::{StateDir, StateError};

use crate::cli::{ReportFormat, StatusFormat};
use crate::engine::journal::{self, Broken, Event, RunState, Verified};
use crate::engine::lock::{self, LockError};
use crate::engine::report::{Report, list_runs};
use crate::lang::plan::Plan;
use crate::sys::exit_code;

/// `dr-plan status [RUN_ID]`.
#[must_use]
pub fn status(run_id: Option<&str>, format: StatusFormat, state_dir: &StateDir) -> i32 {
    if let Some(code) = unusable(state_dir) {
        return code;
    }
    if let Some(run_id) = run_id {
        return run_status(run_id, format, state_dir);
    }
    let runs = match list_runs(state_dir) {
        Ok(runs) => runs,
        Err(error) => {
            crate::errln!("error: cannot list the runs in {}: {error}", state_dir.display());
            return exit_code::BLOCKED;
        }
    };
    match format {
        StatusFormat::Json => {
            let list: Vec<serde_json::Value> = runs
                .iter()
                .map(|(id, state)| {
                    serde_json::json!({
                        "run_id": id,
                        "plan": plan_name(state),
                        "started_at": state.started_at,
                        "status": state.status.map_or("not finished", |status| status.word()),
                        "steps_succeeded": succeeded(state),
                    })
                })
                .collect();
            crate::outln!("{}", serde_json::to_string_pretty(&list).unwrap_or_default());
        }
        StatusFormat::Human => {
            if runs.is_empty() {
                crate::outln!(
                    "no runs under {} (give the state directory of the run with --state-dir or DR_PLAN_STATE_DIR)",
                    state_dir.display()
                );
            }
            let width = runs.iter().map(|(id, _)| id.len()).max().unwrap_or(0).max("RUN".len());
            if !runs.is_empty() {
                crate::outln!("{:<width$}  {:<24}  {:<24}  {:>5}  STATUS", "RUN", "PLAN", "STARTED", "DONE");
            }
            for (id, state) in &runs {
                crate::outln!(
                    "{id:<width$}  {:<24}  {:<24}  {:>5}  {}",
                    plan_name(state),
                    state.started_at,
                    succeeded(state),
                    state.status.map_or("not finished", |status| status.word())
                );
            }
            if runs
                .iter()
                .any(|(_, state)| state.status != Some(crate::engine::journal::RunStatus::Succeeded))
            {
                crate::outln!(
                    "\n`{}` shows a run and the command that takes it up.",
                    crate::engine::decisions::command(&["status".to_owned(), "RUN".to_owned()], state_dir)
                );
            }
        }
    }
    exit_code::SUCCESS
}

fn plan_name(state: &RunState) -> String {
    match &state.started {
        Event::RunStarted { plan, .. } => plan.clone(),
        _ => String::new(),
    }
}

fn succeeded(state: &RunState) -> usize {
    state.steps.values().filter(|step| matches!(step, journal::StepState::Succeeded { .. })).count()
}

/// `dr-plan report RUN_ID`: on standard output, or into `out`.
#[must_use]
pub fn report(
    run_id: &str,
    format: ReportFormat,
    out: Option<&Path>,
    metrics_file: Option<&Path>,
    state_dir: &StateDir,
) -> i32 {
    if let Some(code) = unusable(state_dir) {
        return code;
    }
    let Some((plan, state, chain)) = load_run(run_id, state_dir) else { return exit_code::INVALID };
    let report = Report::new(&plan, &state).with_chain(chain);
    let text = match format {
        ReportFormat::Markdown => report.markdown(),
        ReportFormat::Json => {
            format!("{}\n", serde_json::to_string_pretty(&report.json()).unwrap_or_default())
        }
        ReportFormat::Html => report.html(&crate::engine::report::drill_trend(state_dir, plan.name())),
    };
    match out {
        // The report holds outputs and names of the run: private, like the journal.
        Some(path) => {
            if let Err(error) = crate::sys::files::write_private(path, text.as_bytes()) {
                crate::errln!("error: cannot write {}: {error}", path.display());
                return exit_code::FAILED;
            }
        }
        None => crate::out!("{text}"),
    }
    if let Some(path) = metrics_file
        && let Err(error) = std::fs::write(path, report.prometheus())
    {
        crate::errln!("error: cannot write {}: {error}", path.display());
        return exit_code::FAILED;
    }
    exit_code::SUCCESS
}

/// `dr-plan status RUN_ID`: the report, then what to type next when the run did not
/// succeed.
fn run_status(run_id: &str, format: StatusFormat, state_dir: &StateDir) -> i32 {
    let Some((plan, state, chain)) = load_run(run_id, state_dir) else { return exit_code::INVALID };
    // A swap the run's dead process left refusing every client is an outage going on:
    // put back first, then shown.
    crate::engine::repair::say_left_behind(run_id, state_dir);
    // resume refuses a journal whose chain breaks: offer the check, not a resume.
    let broken = matches!(&chain, Err(broken) if !broken.unchained);
    let report = Report::new(&plan, &state).with_chain(chain);
    let next = (state.status != Some(crate::engine::journal::RunStatus::Succeeded)).then(|| {
        if broken {
            let note = "the journal does not match its hash chain: resume refuses to act on it".to_owned();
            (
                vec![note],
                crate::engine::decisions::command(&["verify".to_owned(), run_id.to_owned()], state_dir),
            )
        } else {
            next_for_status(&plan, &state, state_dir)
        }
    });
    match format {
        StatusFormat::Human => {
            crate::out!("{}", report.markdown());
            if let Some((notes, command)) = next {
                crate::outln!();
                for note in notes {
                    crate::outln!("- {note}");
                }
                crate::outln!("next: `{command}`");
            }
        }
        StatusFormat::Json => {
            let mut json = report.json();
            if let (Some(object), Some((notes, command))) = (json.as_object_mut(), next) {
                object.insert("next".into(), serde_json::json!({ "command": command, "decisions": notes }));
            }
            crate::outln!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
        }
    }
    exit_code::SUCCESS
}

/// What to type next for a run that did not succeed; a run whose process still holds
/// the lock is running, and only watching it makes sense.
fn next_for_status(plan: &Plan, state: &RunState, state_dir: &StateDir) -> (Vec<String>, String) {
    let run_id = state.run_id();
    if let Some(LockError::Held(holder)) = lock::obstacle(state_dir, plan.name())
        && holder.run_id == run_id
    {
        let watch = crate::engine::decisions::command(&["status".to_owned(), run_id.to_owned()], state_dir);
        let mut notes =
            vec![format!("the run is in progress: {holder}; look again later with the command below")];
        for (step, question) in crate::engine::waiting_questions(state) {
            notes.push(format!(
                "approval `{step}` is waiting for an answer at that terminal (pid {}): \"{question}\"",
                holder.pid
            ));
        }
        return (notes, watch);
    }
    // Its process stopped renewing the lease (paused?) while programs of its steps still
    // run: a resume now would be refused, so say what resume would say.
    if let Some(LockError::LeftRunning(holder, processes)) = lock::obstacle(state_dir, plan.name())
        && holder.run_id == run_id
    {
        let listed: Vec<String> = processes.iter().map(|(pid, name)| format!("{pid} ({name})")).collect();
        let pids: Vec<String> = processes.iter().map(|(pid, _)| pid.to_string()).collect();
        let note = format!(
            "the run's lock names {holder}; {}, and programs its steps started are still running: {}. Wait for \
             them, or stop them (`kill {}`), then look again with the command below",
            holder.why_stale(),
            listed.join(", "),
            pids.join(" ")
        );
        return (
            vec![note],
            crate::engine::decisions::command(&["status".to_owned(), run_id.to_owned()], state_dir),
        );
    }
    crate::engine::next_step(plan, state, &crate::engine::RunOptions::reading(state_dir))
}

/// A run's plan (as it was when the run started), its replayed journal, and the check
/// of its hash chain, all from one read of the state.
fn load_run(run_id: &str, state_dir: &StateDir) -> Option<(Plan, RunState, Result<Verified, Broken>)> {
    if let Err(problem) = journal::check_run_id(run_id) {
        crate::errln!(
            "error: {problem}; `{}` lists the runs",
            crate::engine::decisions::command(&["status".to_owned()], state_dir)
        );
        return None;
    }
    if !state_dir.has_run(run_id).unwrap_or(false) {
        crate::errln!(
            "error: no run `{run_id}` under {}; `{}` lists the runs",
            state_dir.display(),
            crate::engine::decisions::command(&["status".to_owned()], state_dir)
        );
        return None;
    }
    let stored = journal::StoredRun::read(state_dir, run_id);
    let state = match stored.as_ref().map_err(ToString::to_string).and_then(journal::StoredRun::replay) {
        Ok(state) => state,
        Err(error) => {
            crate::errln!(
                "error: run `{run_id}`: {error}; `{}` lists the runs",
                crate::engine::decisions::command(&["status".to_owned()], state_dir)
            );
            return None;
        }
    };
    let Event::RunStarted { plan_path, .. } = &state.started else { return None };
    // The report reads the plan as it was when the run started.
    let stored = stored.ok()?;
    let text = match &stored.snapshot {
        Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        None => std::fs::read_to_string(plan_path).unwrap_or_default(),
    };
    match crate::kinds::plan_from_source(&crate::lang::source::SourceFile::new(plan_path.clone(), text)) {
        Ok(plan) => Some((plan, state, stored.verify())),
        Err(problems) => {
            crate::sys::output::print_diagnostics(&problems);
            None
        }
    }
}

/// A state that cannot hold runs at all: a local path that is a file (exit 2), a
/// bucket that does not answer (exit 3). Said at once, instead of "no runs".
pub fn unusable(state_dir: &StateDir) -> Option<i32> {
    match state_dir.check() {
        Ok(()) => None,
        Err(StateError::Refused(problem)) if state_dir.local().is_some() => {
            crate::errln!("error: {problem}");
            Some(exit_code::INVALID)
        }
        Err(error) => {
            crate::errln!("error: cannot reach the state at {}: {error}", state_dir.display());
            Some(exit_code::BLOCKED)
        }
    }
}
