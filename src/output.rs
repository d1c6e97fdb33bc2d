//! Standard output that a closed pipe cannot crash. `println!` panics when the reader
//! went away (`dr-plan run ... --format json | head -1`), which would leave a run
//! unfinished in the middle of an incident; here the output is dropped and the command
//! goes on to its documented exit code.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

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
    ($($argument:tt)*) => { $crate::output::write_stdout(&format!($($argument)*)) };
}

/// `println!` to standard output that never panics (see the module documentation).
#[macro_export]
macro_rules! outln {
    () => { $crate::output::write_stdout("\n") };
    ($($argument:tt)*) => { $crate::output::write_stdout(&format!("{}\n", format!($($argument)*))) };
}

/// Writes `text` to standard error, ignoring a closed stream (`2>&1 | head`).
pub fn write_stderr(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes()).and_then(|()| stderr.flush());
}

/// `eprint!` that never panics.
#[macro_export]
macro_rules! errout {
    ($($argument:tt)*) => { $crate::output::write_stderr(&format!($($argument)*)) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    () => { $crate::output::write_stderr("\n") };
    ($($argument:tt)*) => { $crate::output::write_stderr(&format!("{}\n", format!($($argument)*))) };
}
