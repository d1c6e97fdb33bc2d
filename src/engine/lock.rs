//! One run per plan and state directory: `locks/<plan>.lock`, created exclusively,
//! naming its holder. A lock whose process is gone is stale and may be broken
//! explicitly (`--break-stale-lock`), which the journal records.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sys::process_tree::process_alive;

/// Who holds a lock.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    /// User name.
    pub user: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Since when (RFC 3339).
    pub since: String,
    /// The run it protects.
    pub run_id: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{}@{} (pid {}) since {}, run {}",
            self.user, self.host, self.pid, self.since, self.run_id
        )
    }
}

/// Why a lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Someone else runs this plan.
    Held(Holder),
    /// The holder's process is gone.
    Stale(Holder),
    /// The holder's process is gone, but programs its steps started still run (pid,
    /// command name): breaking the lock now could run a step twice at once. Rare: the
    /// run's orphan watchdog kills them when the holder dies, unless it was killed too.
    LeftRunning(Box<Holder>, Vec<(u32, String)>),
    /// The lock file could not be read or written.
    Io(String),
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

impl Lock {
    /// Takes the lock of `plan` under `state_dir` for `run_id`. With `break_stale`, a
    /// stale lock is removed first (and returned, for the journal).
    ///
    /// # Errors
    /// See [`LockError`].
    pub fn acquire(
        state_dir: &Path,
        plan: &str,
        run_id: &str,
        break_stale: bool,
    ) -> Result<(Lock, Option<Holder>), LockError> {
        let directory = state_dir.join("locks");
        crate::sys::files::private_dir(&directory)
            .map_err(|error| LockError::Io(format!("{}: {error}", directory.display())))?;
        let path = directory.join(format!("{plan}.lock"));
        let mut broken = None;
        let holder = Holder {
            user: user_name(),
            host: host_name(),
            pid: std::process::id(),
            since: crate::sys::clock::now(),
            run_id: run_id.to_owned(),
        };
        let text = serde_json::to_string(&holder).map_err(|error| LockError::Io(error.to_string()))?;
        for _ in 0..8 {
            match create_filled(&path, &text) {
                Ok(()) => return Ok((Lock { path }, broken)),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    // A lock that vanished since the create is not stale: another process
                    // broke or released it; try again.
                    let Ok(seen) = std::fs::read_to_string(&path) else { continue };
                    match examine_text(&seen) {
                        LockError::Stale(stale) if break_stale => {
                            if break_exactly(&path, &seen)? {
                                broken = Some(stale);
                            }
                        }
                        obstacle => return Err(obstacle),
                    }
                }
                Err(error) => return Err(LockError::Io(format!("{}: {error}", path.display()))),
            }
        }
        Err(LockError::Io(format!("{}: could not take the lock (it keeps changing)", path.display())))
    }

    /// The lock file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What stands in the way of taking the lock of `plan`, without taking it (`None`: free).
#[must_use]
pub fn obstacle(state_dir: &Path, plan: &str) -> Option<LockError> {
    let path = state_dir.join("locks").join(format!("{plan}.lock"));
    path.exists().then(|| examine(&path))
}

/// Why an existing lock file stops a new holder.
fn examine(path: &Path) -> LockError {
    examine_text(&std::fs::read_to_string(path).unwrap_or_default())
}

/// Removes the lock at `path` only if it still holds `seen` (the stale lock that was
/// examined). Two operators breaking the same stale lock at once must not remove each
/// other's fresh lock: the lock is moved aside atomically, and put back if what was
/// moved is not what was examined. Returns whether this process broke it.
fn break_exactly(path: &Path, seen: &str) -> Result<bool, LockError> {
    let aside =
        path.with_extension(format!("lock.broken.{}.{:08x}", std::process::id(), rand::random::<u32>()));
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        // Someone else moved it first: try again from the start.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(LockError::Io(format!("{}: {error}", path.display()))),
    }
    let moved = std::fs::read_to_string(&aside).unwrap_or_default();
    let broke = moved == seen;
    if !broke {
        // A fresh lock, taken since it was examined: give it back. If yet another lock
        // appeared meanwhile, its holder and this one's both see a lock that is theirs
        // only if the link below wins; the loser finds it taken and stops.
        let _ = std::fs::hard_link(&aside, path);
    }
    let _ = std::fs::remove_file(&aside);
    Ok(broke)
}

/// Why a lock holding `text` stops a new holder.
fn examine_text(text: &str) -> LockError {
    // A lock that does not parse names no process that could still hold it (storage
    // damage, or an older dr-plan killed while writing it): it is stale, and may be
    // broken like any other stale lock.
    let holder: Holder = serde_json::from_str(text).unwrap_or_else(|_| Holder {
        user: "unknown".into(),
        host: host_name(),
        pid: 0,
        since: "unknown (the lock file is empty or damaged)".into(),
        run_id: "unknown".into(),
    });
    // Another machine's process cannot be checked from here: treat it as holding.
    if holder.host != host_name() || process_alive(holder.pid) {
        return LockError::Held(holder);
    }
    // Programs killed with their dr-plan (a group kill, or the orphan watchdog's sweep)
    // take a moment to exit: give them up to a second before calling them left running.
    let mut left_running = crate::sys::process_tree::left_running_by(holder.pid);
    for _ in 0..10 {
        if holder.pid == 0 || left_running.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        left_running = crate::sys::process_tree::left_running_by(holder.pid);
    }
    if holder.pid != 0 && !left_running.is_empty() {
        return LockError::LeftRunning(Box::new(holder), left_running);
    }
    LockError::Stale(holder)
}

/// Creates `path` holding `text`, or fails with `AlreadyExists`. The text is written
/// to a private file first and then linked into place, so the lock never exists empty
/// or half-written, even when the process is killed while taking it.
fn create_filled(path: &Path, text: &str) -> std::io::Result<()> {
    let private = path.with_extension(format!("lock.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&private);
    let result = crate::sys::files::create_private(&private, text.as_bytes())
        .and_then(|()| std::fs::hard_link(&private, path))
        .and_then(|()| crate::sys::files::sync_parent(path));
    let _ = std::fs::remove_file(&private);
    result
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The operator's user name.
#[must_use]
pub fn user_name() -> String {
    if let Ok(name) = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        return name;
    }
    // No login environment (cron, containers): look the uid up in /etc/passwd.
    let uid = std::fs::read_to_string("/proc/self/status").ok().and_then(|status| {
        status.lines().find_map(|line| {
            line.strip_prefix("Uid:").map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
        })
    });
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    uid.and_then(|uid| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.get(2) == Some(&uid.as_str())).then(|| fields[0].to_owned())
        })
    })
    .unwrap_or_else(|| "unknown".to_owned())
}

/// This machine's host name.
#[must_use]
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// `user@host`.
#[must_use]
pub fn operator() -> String {
    format!("{}@{}", user_name(), host_name())
}
