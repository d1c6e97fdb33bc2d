//! Standard output that a closed pipe cannot crash. `println!` panics when the reader
//! went away (`dr-plan run ... --format json | head -1`), which would leave a run
//! unfinished in the middle of an incident; here the output is dropped and the command
//! goes on to its documented exit code.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::lang::diagnostic::Diagnostic;

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to standard output; once the reader is gone, nothing more is written.
pub fn write_stdout(text: &str) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_err() {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `print!` to standard output that never panics (see the module documentation).
#[macro_export]
macro_rules! out {
    ($($argument:tt)*) => { $crate::sys::output::write_stdout(&format!($($argument)*)) };
}

/// `println!` to standard output that never panics (see the module documentation).
#[macro_export]
macro_rules! outln {
    () => { $crate::sys::output::write_stdout("\n") };
    ($($argument:tt)*) => { $crate::sys::output::write_stdout(&format!("{}\n", format!($($argument)*))) };
}

/// Writes `text` to standard error, ignoring a closed stream (`2>&1 | head`).
pub fn write_stderr(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes()).and_then(|()| stderr.flush());
}

/// `eprint!` that never panics.
#[macro_export]
macro_rules! errout {
    ($($argument:tt)*) => { $crate::sys::output::write_stderr(&format!($($argument)*)) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    () => { $crate::sys::output::write_stderr("\n") };
    ($($argument:tt)*) => { $crate::sys::output::write_stderr(&format!("{}\n", format!($($argument)*))) };
}

/// Whether to color output on this stream.
#[must_use]
pub fn use_color(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// Prints diagnostics to standard error.
pub fn print_diagnostics(diagnostics: &[Diagnostic]) {
    let color = use_color(std::io::stderr().is_terminal());
    for diagnostic in diagnostics {
        crate::errout!("{}", diagnostic.render(color));
    }
}
