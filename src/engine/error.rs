//! How `run`, `drill` and `resume` end: the run's status when its steps ran
//! ([`Ended`]), or why they could not ([`RunError`]). The command line prints the
//! error and maps both to exit codes in one place (`cli::exit`).

use std::fmt;

use crate::lang::diagnostic::Diagnostic;

use super::journal::RunStatus;

/// How a run command ended when nothing stopped it before or around its steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The dispatcher ran and the run ended with this status.
    Run(RunStatus),
    /// `resume` of a run that had already succeeded: nothing to do.
    AlreadySucceeded,
}

/// Why a run command stopped without (or around) running steps. Every variant says what
/// is wrong, and where the operator can act, the `help:` and `next:` lines.
#[derive(Debug)]
pub enum RunError {
    /// The plan file is invalid.
    Plan(Vec<Diagnostic>),
    /// The command is wrong: a value, a flag, a run id. One line per problem.
    Usage(Vec<String>),
    /// The run's records cannot be used as they are (a damaged journal, a changed plan).
    Records {
        /// What is wrong.
        message: String,
        /// What to do.
        help: Option<String>,
    },
    /// Nothing goes on until someone decides: the lock is held, the start cannot be
    /// confirmed, resume needs decisions.
    Blocked {
        /// What blocks.
        message: String,
        /// One line per decision or obstacle.
        details: Vec<String>,
        /// What to do.
        help: Option<String>,
        /// The command that goes on, complete.
        next: Option<String>,
    },
    /// The operator answered no at the question (`not started.`).
    Declined(&'static str),
    /// Ctrl-C at the question (`nothing was started.`).
    Interrupted(&'static str),
    /// This machine could not do what the run needs (the runtime, a file, the journal).
    System(String),
}

impl RunError {
    /// A blocking error with a message and the command that goes on.
    #[must_use]
    pub fn blocked(message: impl Into<String>, next: Option<String>) -> RunError {
        RunError::Blocked { message: message.into(), details: Vec::new(), help: None, next }
    }

    /// One usage problem.
    #[must_use]
    pub fn usage(problem: impl Into<String>) -> RunError {
        RunError::Usage(vec![problem.into()])
    }

    /// The `help:` line, when the error has one.
    #[must_use]
    pub fn help(&self) -> Option<&str> {
        match self {
            RunError::Records { help, .. } | RunError::Blocked { help, .. } => help.as_deref(),
            RunError::Plan(_)
            | RunError::Usage(_)
            | RunError::Declined(_)
            | RunError::Interrupted(_)
            | RunError::System(_) => None,
        }
    }

    /// The complete command that goes on, when there is one.
    #[must_use]
    pub fn next(&self) -> Option<&str> {
        match self {
            RunError::Blocked { next, .. } => next.as_deref(),
            RunError::Plan(_)
            | RunError::Usage(_)
            | RunError::Records { .. }
            | RunError::Declined(_)
            | RunError::Interrupted(_)
            | RunError::System(_) => None,
        }
    }

    /// Prints the error to standard error as the operator reads it.
    pub fn print(&self) {
        match self {
            RunError::Plan(diagnostics) => crate::sys::output::print_diagnostics(diagnostics),
            RunError::Declined(words) => crate::errln!("{words}"),
            RunError::Interrupted(words) => crate::errln!("\ninterrupted: {words}"),
            RunError::Usage(_)
            | RunError::Records { .. }
            | RunError::Blocked { .. }
            | RunError::System(_) => {
                crate::errln!("{self}");
            }
        }
    }
}

/// `error: ...` lines, the details, `help:` and `next:`, as printed.
impl fmt::Display for RunError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = match self {
            RunError::Plan(diagnostics) => {
                diagnostics.iter().map(|diagnostic| format!("error: {}", diagnostic.message)).collect()
            }
            RunError::Usage(problems) => problems.iter().map(|problem| format!("error: {problem}")).collect(),
            RunError::Records { message, .. }
            | RunError::Blocked { message, .. }
            | RunError::System(message) => {
                vec![format!("error: {message}")]
            }
            RunError::Declined(words) => vec![(*words).to_owned()],
            RunError::Interrupted(words) => vec![format!("interrupted: {words}")],
        };
        let mut text = lines.join("\n");
        if let RunError::Blocked { details, .. } = self {
            for detail in details {
                text.push_str(&format!("\n  - {detail}"));
            }
        }
        if let Some(help) = self.help() {
            text.push_str(&format!("\n  help: {help}"));
        }
        if let Some(next) = self.next() {
            text.push_str(&format!("\nnext: `{next}`"));
        }
        formatter.write_str(&text)
    }
}

impl std::error::Error for RunError {}
