//! The orphan watchdog: the steps' programs die with dr-plan, even when dr-plan is
//! killed alone with SIGKILL and no guard of [`process_tree`](super::process_tree)
//! gets to run. Otherwise they would go on unwatched, and `resume` would refuse to
//! break the dead run's lock until an operator killed them by hand.
//!
//! Before a run spawns any step program, dr-plan starts itself as a hidden helper,
//! `dr-plan __watchdog <dr-plan pid>`, whose stdin is a pipe that only dr-plan can
//! write to. The write end is close-on-exec (as every descriptor std opens), so no step
//! program holds it: the pipe reaches end-of-file exactly when dr-plan is gone, however
//! it ended. The watchdog then kills every process whose token begins with dr-plan's
//! pid (stopped first, as a guard does), and exits. At the normal end of a run it finds
//! nothing left, or what a finished step left in the background, which it kills too.
//!
//! It runs in a process group of its own, so a Ctrl-C at the terminal (SIGINT to
//! dr-plan's group) does not kill it before dr-plan is gone, and it carries no token,
//! so no cleanup of an enclosing dr-plan's steps kills it before it has done its job.
//! (The crate forbids `unsafe`, which rules out `PR_SET_PDEATHSIG` in the child.)

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process_tree::{TOKEN_VARIABLE, stop_then_kill, token_prefix};

/// The hidden first argument that makes the binary the watchdog.
pub const SUBCOMMAND: &str = "__watchdog";

/// How long the end of a run waits for the watchdog to finish its last sweep.
const LAST_SWEEP_WAIT: Duration = Duration::from_secs(2);

/// A running watchdog. Dropping it closes the pipe, so the watchdog sweeps once more
/// and exits; the drop waits for that (boundedly), so whatever the run's steps left
/// running is gone before the run's lock is released.
#[derive(Debug)]
pub struct Watchdog {
    /// The watchdog process; its stdin is the pipe's write end.
    process: Child,
}

/// Starts the watchdog of this process. Call it before any step program is spawned.
///
/// # Errors
/// The binary could not be found or started again.
pub fn start() -> std::io::Result<Watchdog> {
    let process = Command::new(std::env::current_exe()?)
        .arg(SUBCOMMAND)
        .arg(std::process::id().to_string())
        .env_remove(TOKEN_VARIABLE)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    Ok(Watchdog { process })
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.process.stdin.take());
        let deadline = Instant::now() + LAST_SWEEP_WAIT;
        while Instant::now() < deadline {
            match self.process.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Ok(Some(_)) | Err(_) => return,
            }
        }
    }
}

/// The pid to watch over when `arguments` (the program's, its name first) ask for the
/// watchdog: `__watchdog <pid>`.
#[must_use]
pub fn requested(arguments: impl IntoIterator<Item = std::ffi::OsString>) -> Option<u32> {
    let mut arguments = arguments.into_iter().skip(1);
    if arguments.next()? != SUBCOMMAND {
        return None;
    }
    arguments.next()?.to_str()?.parse().ok()
}

/// The watchdog's whole life: waits until its stdin ends (dr-plan is gone), kills every
/// process that a step of `dr_plan_pid` started, and returns the exit code.
#[must_use]
pub fn serve(dr_plan_pid: u32) -> i32 {
    // Nothing is ever written: the read returns at end-of-file, or on an error, after
    // which the pipe cannot tell anything any more either.
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    let prefix = token_prefix(dr_plan_pid);
    stop_then_kill(|entry| entry.starts_with(prefix.as_bytes()), None);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(words: &[&str]) -> Vec<std::ffi::OsString> {
        words.iter().map(Into::into).collect()
    }

    #[test]
    fn only_the_hidden_subcommand_with_a_pid_asks_for_the_watchdog() {
        assert_eq!(requested(arguments(&["dr-plan", "__watchdog", "42"])), Some(42));
        assert_eq!(requested(arguments(&["dr-plan", "__watchdog"])), None);
        assert_eq!(requested(arguments(&["dr-plan", "__watchdog", "x"])), None);
        assert_eq!(requested(arguments(&["dr-plan", "run", "__watchdog", "42"])), None);
        assert_eq!(requested(arguments(&["dr-plan"])), None);
    }
}
