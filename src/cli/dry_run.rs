//! `dr-plan dry-run`: what a run would do, in the operator's, the reviewer's (markdown) or
//! a program's (JSON) format, with live read-only checks on `--preflight`.

use std::path::Path;

use super::{DryRunFormat, ValueArgs};
use crate::preview::dry_run::DryRun;
use crate::sys::exit_code;

/// `dr-plan dry-run PLAN`.
#[must_use]
pub fn run(
    path: &Path,
    values: &ValueArgs,
    format: DryRunFormat,
    drill: bool,
    preflight: bool,
    state_dir: &crate::state::StateDir,
) -> i32 {
    let plan = match crate::kinds::load_plan(path) {
        Ok(plan) => plan,
        Err(problems) => {
            crate::sys::output::print_diagnostics(&problems);
            return exit_code::INVALID;
        }
    };
    let overrides = match crate::lang::render::Overrides::parse(&values.vars, values.vars_file.as_deref()) {
        Ok(overrides) => overrides,
        Err(problem) => {
            crate::errln!("error: {problem}");
            return exit_code::INVALID;
        }
    };
    let (inputs, vars) = match crate::lang::render::resolve_values(&plan, &overrides) {
        Ok(values) => values,
        Err(problems) => {
            for problem in problems {
                crate::errln!("error: {problem}");
            }
            return exit_code::INVALID;
        }
    };
    if let crate::state::StateDir::S3(_) = state_dir
        && let Err(error) = state_dir.check()
    {
        crate::errln!(
            "warning: cannot read the drill history in {}: {error}; the prediction uses the estimates only",
            state_dir.display()
        );
    }
    let history = crate::preview::history::History::load(state_dir, plan.name());
    let mut preview = DryRun::new(&plan, vars, inputs, drill, &history);
    if preflight {
        preview.run_preflight(&plan);
    }
    match format {
        DryRunFormat::Human => crate::out!("{}", preview.human()),
        DryRunFormat::Markdown => crate::out!("{}", preview.markdown(&crate::preview::graph::mermaid(&plan))),
        DryRunFormat::Json => {
            crate::outln!("{}", serde_json::to_string_pretty(&preview.json()).unwrap_or_default())
        }
    }
    if preview.preflight_failed() {
        crate::errln!("preflight: a live check failed (see above); fix it before running the plan");
        return exit_code::FAILED;
    }
    exit_code::SUCCESS
}
