//! `dr-plan run`, `drill` and `resume`: the values and flags of the command line handed to
//! the engine, and its end mapped to an exit code.

use std::path::Path;

use super::{RunArgs, ValueArgs};
use crate::engine::ResumeArguments;
use crate::lang::render::Overrides;
use crate::sys::exit_code;

/// `dr-plan run PLAN` (or `drill` when `drill`).
#[must_use]
pub fn start(path: &Path, values: &ValueArgs, run: &RunArgs, drill: bool) -> i32 {
    match Overrides::parse(&values.vars, values.vars_file.as_deref()) {
        Ok(overrides) => super::exit::of_run(crate::engine::start(path, &overrides, drill, &run.options())),
        Err(problem) => {
            crate::errln!("error: {problem}");
            exit_code::INVALID
        }
    }
}

/// What `resume` was asked besides the run options.
pub struct Resume {
    /// The run.
    pub run_id: String,
    /// `--rerun-interrupted`
    pub rerun_interrupted: bool,
    /// `--rerun STEP`
    pub rerun: Vec<String>,
    /// `--mark-done STEP`
    pub mark_done: Vec<String>,
    /// `--reason TEXT`
    pub reason: Option<String>,
    /// `--var`
    pub vars: Vec<String>,
    /// `--vars-file`
    pub vars_file: Option<std::path::PathBuf>,
}

/// `dr-plan resume RUN_ID`.
#[must_use]
pub fn resume(request: Resume, run: &RunArgs) -> i32 {
    match Overrides::parse(&request.vars, request.vars_file.as_deref()) {
        Ok(overrides) => {
            let arguments = ResumeArguments {
                rerun_interrupted: request.rerun_interrupted,
                rerun: request.rerun,
                mark_done: request.mark_done,
                reason: request.reason,
                overrides,
            };
            super::exit::of_run(crate::engine::resume(&request.run_id, &arguments, &run.options()))
        }
        Err(problem) => {
            crate::errln!("error: {problem}");
            exit_code::INVALID
        }
    }
}
