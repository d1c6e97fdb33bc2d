//! Children in a process group of their own, so that a cancelled or timed-out step
//! stops everything its program started: `kill_on_drop` stops only the program itself,
//! while `pg_restore -j N` forks N workers and `sh -c "a | b"` runs a pipeline.

use std::process::Stdio;

/// Starts `command`, which must have been given `.process_group(0)`, and returns it
/// with the guard that kills its whole group if it is dropped unfinished.
///
/// # Errors
/// The program could not be started.
pub(super) fn spawn(
    command: &mut tokio::process::Command,
) -> std::io::Result<(tokio::process::Child, ProcessGroup)> {
    let child = command.spawn()?;
    let group = ProcessGroup { leader: child.id() };
    Ok((child, group))
}

/// A child's process group, killed with SIGKILL when this is dropped before
/// [`finished`](Self::finished).
#[derive(Debug)]
pub(super) struct ProcessGroup {
    leader: Option<u32>,
}

impl ProcessGroup {
    /// The program ended by itself: there is nothing to kill.
    pub(super) fn finished(mut self) {
        self.leader = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let Some(leader) = self.leader.take() else { return };
        // Signals need `unsafe` through libc, which this crate forbids; kill(1) does it.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{leader}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
