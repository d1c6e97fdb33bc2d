//! `dr-plan status` and `dr-plan report`: read-only views of runs in the state directory.

use std::path::Path;

use crate::cli::{ReportFormat, StatusFormat};
use crate::exit_code;
use crate::run::journal::{self, Event, RunState};
use crate::run::report::{Report, list_runs};

/// `dr-plan status [RUN_ID]`.
#[must_use]
pub fn status(run_id: Option<&str>, format: StatusFormat, state_dir: &Path) -> i32 {
    if let Some(run_id) = run_id {
        let as_report = match format {
            StatusFormat::Human => ReportFormat::Markdown,
            StatusFormat::Json => ReportFormat::Json,
        };
        return report(run_id, as_report, None, state_dir);
    }
    let runs = list_runs(state_dir);
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
            println!("{}", serde_json::to_string_pretty(&list).unwrap_or_default());
        }
        StatusFormat::Human => {
            if runs.is_empty() {
                println!("no runs under {}", state_dir.display());
            }
            for (id, state) in &runs {
                println!(
                    "{id}  {}  started {}  {}  ({} steps succeeded)",
                    plan_name(state),
                    state.started_at,
                    state.status.map_or("not finished (resume it)", |status| status.word()),
                    succeeded(state)
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

/// `dr-plan report RUN_ID`.
#[must_use]
pub fn report(run_id: &str, format: ReportFormat, metrics_file: Option<&Path>, state_dir: &Path) -> i32 {
    let state = match journal::read(&journal::journal_path(state_dir, run_id)).and_then(RunState::replay) {
        Ok(state) => state,
        Err(error) => {
            eprintln!(
                "error: run `{run_id}`: {error}; `dr-plan status --state-dir {}` lists the runs",
                state_dir.display()
            );
            return exit_code::INVALID;
        }
    };
    let snapshot = journal::run_dir(state_dir, run_id).join("plan.snapshot");
    let Event::RunStarted { plan_path, .. } = &state.started else { return exit_code::INVALID };
    // The report reads the plan as it was when the run started.
    let text = std::fs::read_to_string(&snapshot)
        .or_else(|_| std::fs::read_to_string(plan_path))
        .unwrap_or_default();
    let plan = match crate::plan::plan_from_source(&crate::source::SourceFile::new(plan_path.clone(), text)) {
        Ok(plan) => plan,
        Err(problems) => {
            crate::cli::print_diagnostics(&problems);
            return exit_code::INVALID;
        }
    };
    let report = Report::new(&plan, &state);
    match format {
        ReportFormat::Markdown => print!("{}", report.markdown()),
        ReportFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&report.json()).unwrap_or_default())
        }
    }
    if let Some(path) = metrics_file
        && let Err(error) = std::fs::write(path, report.prometheus())
    {
        eprintln!("error: cannot write {}: {error}", path.display());
        return exit_code::FAILED;
    }
    exit_code::SUCCESS
}
