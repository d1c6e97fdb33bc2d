//! Exit codes of the run commands, decided in one place: from the run's status when its
//! steps ran, from the error when they could not (see `sys::exit_code` for the table).

use crate::engine::journal::RunStatus;
use crate::engine::{Ended, RunError};
use crate::sys::exit_code;

/// Prints the error of a run command, if any, and gives its exit code.
#[must_use]
pub fn of_run(result: Result<Ended, RunError>) -> i32 {
    match result {
        Ok(Ended::AlreadySucceeded) => exit_code::SUCCESS,
        Ok(Ended::Run(status)) => of_status(status),
        Err(error) => {
            error.print();
            of_error(&error)
        }
    }
}

/// The exit code of a run that ended with `status`.
#[must_use]
pub fn of_status(status: RunStatus) -> i32 {
    match status {
        RunStatus::Succeeded => exit_code::SUCCESS,
        RunStatus::Failed | RunStatus::CompletedWithFailures => exit_code::FAILED,
        RunStatus::Blocked => exit_code::BLOCKED,
        RunStatus::Interrupted => exit_code::INTERRUPTED,
    }
}

/// The exit code of a run command that stopped with `error`.
#[must_use]
pub fn of_error(error: &RunError) -> i32 {
    match error {
        RunError::Plan(_) | RunError::Usage(_) | RunError::Records { .. } => exit_code::INVALID,
        RunError::Blocked { .. } => exit_code::BLOCKED,
        RunError::Declined(_) | RunError::System(_) => exit_code::FAILED,
        RunError::Interrupted(_) => exit_code::INTERRUPTED,
    }
}
