//! Children whose whole process tree is stopped with them: a cancelled or timed-out
//! step must not leave behind what its program started (`pg_restore -j N` forks N
//! workers, `sh -c "a | b"` runs a pipeline, a script may start background jobs).
//! `kill_on_drop` stops only the program itself.
//!
//! Each child gets an environment variable with a token of its own, which its
//! descendants inherit; when the guard is dropped before the program finished, every
//! process whose environment holds the token is killed, whether its parent is still
//! alive or it was already handed to init. The children stay in dr-plan's process
//! group, so a terminal hang-up or a kill of the group reaches them too.
//!
//! A guard runs only while dr-plan does: when dr-plan is killed alone (`kill -9` of its
//! pid), the [orphan watchdog](super::orphan_watchdog) that every run starts kills what
//! carries any of its tokens instead.

use std::process::Stdio;

/// The variable that marks a step's processes.
pub const TOKEN_VARIABLE: &str = "DR_PLAN_PROCESS_TOKEN";

/// Starts `command` marked with a fresh token and returns it with the guard that kills
/// every process carrying that token if the guard is dropped unfinished.
///
/// # Errors
/// The program could not be started.
pub(crate) fn spawn(
    command: &mut tokio::process::Command,
) -> std::io::Result<(tokio::process::Child, ProcessTree)> {
    let token = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
    command.env(TOKEN_VARIABLE, &token);
    let child = command.spawn()?;
    let tree = ProcessTree { token: Some(token), leader: child.id() };
    Ok((child, tree))
}

/// A child's process tree, killed with SIGKILL when this is dropped before
/// [`finished`](Self::finished).
#[derive(Debug)]
pub(crate) struct ProcessTree {
    token: Option<String>,
    leader: Option<u32>,
}

impl ProcessTree {
    /// The program ended by itself: what it left running is left alone.
    pub(crate) fn finished(mut self) {
        self.token = None;
    }
}

impl Drop for ProcessTree {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else { return };
        let marker = format!("{TOKEN_VARIABLE}={token}");
        stop_then_kill(|entry| entry == marker.as_bytes(), self.leader);
    }
}

/// Kills `leader` and every process with an environment entry that `entry_matches`.
/// They are stopped first, so that nothing forks between the listing and the kill;
/// then what matches is found again and killed with them.
pub(crate) fn stop_then_kill(entry_matches: impl Fn(&[u8]) -> bool, leader: Option<u32>) {
    let mut stopped = processes_where(&entry_matches);
    stopped.extend(leader);
    signal("-STOP", &stopped);
    let mut doomed = processes_where(&entry_matches);
    doomed.extend(stopped);
    signal("-KILL", &doomed);
}

/// The environment entry that marks the processes of the steps of the dr-plan process
/// `pid`: their tokens begin with that pid.
pub(crate) fn token_prefix(pid: u32) -> String {
    format!("{TOKEN_VARIABLE}={pid}-")
}

/// Processes with an environment entry that `entry_matches`, from `/proc` (none where
/// there is no `/proc`).
fn processes_where(entry_matches: impl Fn(&[u8]) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|environment| environment.split(|byte| *byte == 0).any(&entry_matches))
        })
        .collect()
}

/// Processes still running that steps of the dr-plan process `pid` started (their
/// token begins with that pid), with their command names. After a dr-plan was killed
/// alone (SIGKILL of its pid, not of its group), its steps' programs may go on.
#[must_use]
pub fn left_running_by(pid: u32) -> Vec<(u32, String)> {
    let prefix = token_prefix(pid);
    processes_where(|entry| entry.starts_with(prefix.as_bytes()))
        .into_iter()
        .filter(|process| process_alive(*process))
        .map(|process| {
            let name = std::fs::read_to_string(format!("/proc/{process}/comm")).unwrap_or_default();
            (process, name.trim().to_owned())
        })
        .collect()
}

/// Sends `signal` to `pids` with kill(1): signals need `unsafe` through libc, which
/// this crate forbids.
fn signal(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg(signal)
        .arg("--")
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether a process with this pid exists on this machine.
#[must_use]
pub fn process_alive(pid: u32) -> bool {
    pid != 0 && std::path::Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}
