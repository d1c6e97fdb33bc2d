//! `dr-plan verify RUN_ID`: recomputes the hash chain of a run's journal, so that an audit
//! can trust the record of an incident (or learn exactly where it was altered).

use crate::state::StateDir;

use crate::engine::{decisions, journal};
use crate::sys::exit_code;

/// `dr-plan verify RUN_ID`.
#[must_use]
pub fn run(run_id: &str, state_dir: &StateDir) -> i32 {
    if let Some(code) = super::commands::unusable(state_dir) {
        return code;
    }
    let listed = || decisions::command(&["status".to_owned()], state_dir);
    if let Err(problem) = journal::check_run_id(run_id) {
        crate::errln!("error: {problem}; `{}` lists the runs", listed());
        return exit_code::INVALID;
    }
    if !state_dir.has_run(run_id).unwrap_or(false) {
        crate::errln!(
            "error: no run `{run_id}` under {}; `{}` lists the runs",
            state_dir.display(),
            listed()
        );
        return exit_code::INVALID;
    }
    match journal::verify(state_dir, run_id) {
        Ok(verified) => {
            crate::outln!(
                "run {run_id}: journal intact, {} events chained from the plan snapshot; head {}",
                verified.events,
                verified.head
            );
            crate::outln!(
                "note: the chain cannot show a change to the last event or its removal: keep the head (the \
                 report shows it too) and compare it later"
            );
            if verified.torn_last_line {
                crate::outln!(
                    "note: the last line was cut short (the process died while writing it); it is not an event \
                     and resume ignores it too"
                );
            }
            exit_code::SUCCESS
        }
        Err(broken) => {
            crate::errln!(
                "error: run {run_id}: the journal does not match its hash chain at {}: {}",
                broken.at,
                broken.problem
            );
            exit_code::FAILED
        }
    }
}
