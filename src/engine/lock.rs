//! One run per plan and state directory: `locks/<plan>.lock` (a file, or an S3 object
//! created with `If-None-Match: *`), naming its holder and the end of its lease. The
//! holder renews the lease (every quarter of it) with a conditional write on the
//! version it wrote; a renewal refused because the lock changed means another operator
//! broke it, and the run stops before starting another step. A lock whose lease
//! expired, or whose process on this host is gone, is stale and may be broken
//! explicitly (`--break-stale-lock`), which the journal records.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::state::{StateDir, StateError};
use crate::sys::process_tree::process_alive;

/// How long a lock holds without renewal (`DR_PLAN_LOCK_LEASE`, seconds; default 60).
#[must_use]
pub fn lease_duration() -> Duration {
    std::env::var("DR_PLAN_LOCK_LEASE")
        .ok()
        .and_then(|text| text.trim().trim_end_matches('s').parse::<u64>().ok())
        .filter(|&seconds| seconds > 0)
        .map_or(Duration::from_secs(60), Duration::from_secs)
}

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
    /// The end of the lease (RFC 3339); locks of older versions have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{}@{} (pid {}) since {}, run {}",
            self.user, self.host, self.pid, self.since, self.run_id
        )?;
        if let Some(expires_at) = &self.expires_at {
            write!(formatter, ", lease until {expires_at}")?;
        }
        Ok(())
    }
}

impl Holder {
    /// Whether the lease ended (a lock without a lease never expires by time).
    fn expired(&self) -> bool {
        self.expires_at
            .as_deref()
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .is_some_and(|at| at < chrono::Utc::now())
    }

    /// Why this holder's lock is stale, in words.
    #[must_use]
    pub fn why_stale(&self) -> String {
        if self.host == host_name() && self.pid != 0 && process_alive(self.pid) {
            format!(
                "its lease ended: that process (pid {}) is alive but stopped renewing it — paused? (`kill -CONT {}` \
                 wakes it, and it then stops by itself)",
                self.pid, self.pid
            )
        } else if self.expired() && self.host != host_name() {
            "its lease ended: that process stopped renewing it (gone, paused or cut off)".to_owned()
        } else {
            "that process is gone".to_owned()
        }
    }

    /// This holder with its lease ending `lease` from now.
    fn leased(mut self, lease: Duration) -> Holder {
        let until = chrono::Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default();
        self.expires_at = Some(until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        self
    }
}

/// Why a lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Someone else runs this plan.
    Held(Box<Holder>),
    /// The holder's process is gone, or its lease expired.
    Stale(Box<Holder>),
    /// The holder's process is gone, but programs its steps started still run (pid,
    /// command name): breaking the lock now could run a step twice at once. Rare: the
    /// run's orphan watchdog kills them when the holder dies, unless it was killed too.
    LeftRunning(Box<Holder>, Vec<(u32, String)>),
    /// The lock could not be read or written.
    Io(String),
    /// The state bucket could not be reached.
    Unreachable(String),
}

impl From<StateError> for LockError {
    fn from(error: StateError) -> LockError {
        match error {
            StateError::Unreachable(detail) => LockError::Unreachable(detail),
            StateError::Refused(detail) => LockError::Io(detail),
        }
    }
}

/// A held lock; its lease is renewed until it is dropped, which releases it.
#[derive(Debug)]
pub struct Lock {
    lease: Lease,
    renewer: Option<std::thread::JoinHandle<()>>,
}

/// The lease of a held lock, shared with the dispatcher (which checks it before
/// starting a step) and the second Ctrl-C (which releases it).
#[derive(Clone, Debug)]
pub struct Lease {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: StateDir,
    plan: String,
    holder: Holder,
    duration: Duration,
    /// The lock's version as last written, and until when it surely holds.
    current: Mutex<Current>,
    /// Set to stop the renewals.
    stop: (Mutex<bool>, Condvar),
    /// Becomes true when a renewal finds the lock taken over: the dispatcher stops.
    lost_signal: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug)]
struct Current {
    version: String,
    valid_until: Instant,
    /// Who broke the lock, once a renewal found it changed.
    lost: Option<String>,
    released: bool,
}

impl Lock {
    /// Takes the lock of `plan` under `state` for `run_id`. With `break_stale`, a
    /// stale lock is replaced (and returned, for the journal).
    ///
    /// # Errors
    /// See [`LockError`].
    pub fn acquire(
        state: &StateDir,
        plan: &str,
        run_id: &str,
        break_stale: bool,
    ) -> Result<(Lock, Option<Holder>), LockError> {
        let duration = lease_duration();
        let holder = Holder {
            user: user_name(),
            host: host_name(),
            pid: std::process::id(),
            since: crate::sys::clock::now(),
            run_id: run_id.to_owned(),
            expires_at: None,
        };
        for _ in 0..8 {
            let started = Instant::now();
            let text = encode(&holder.clone().leased(duration));
            if let Some(version) = state.create_lock(plan, &text)? {
                return Ok((Lock::held(state, plan, holder, duration, version, started), None));
            }
            // A lock that vanished since the create is not stale: another process
            // broke or released it; try again.
            let Some((seen, version)) = state.read_lock(plan)? else { continue };
            match examine_text(&seen) {
                LockError::Stale(stale) if break_stale => {
                    if let Some(version) = state.take_over_lock(plan, &version, &text)? {
                        let lock = Lock::held(state, plan, holder, duration, version, started);
                        return Ok((lock, Some(*stale)));
                    }
                }
                obstacle => return Err(obstacle),
            }
        }
        Err(LockError::Io(format!(
            "{}: could not take the lock (it keeps changing)",
            state.lock_location(plan)
        )))
    }

    fn held(
        state: &StateDir,
        plan: &str,
        holder: Holder,
        duration: Duration,
        version: String,
        at: Instant,
    ) -> Lock {
        let shared = Arc::new(Shared {
            state: state.clone(),
            plan: plan.to_owned(),
            holder,
            duration,
            current: Mutex::new(Current { version, valid_until: at + duration, lost: None, released: false }),
            stop: (Mutex::new(false), Condvar::new()),
            lost_signal: tokio::sync::watch::Sender::new(false),
        });
        let lease = Lease { shared };
        let renewing = lease.clone();
        let renewer = std::thread::Builder::new()
            .name("dr-plan-lease".into())
            .spawn(move || renewing.renew_until_stopped())
            .ok();
        Lock { lease, renewer }
    }

    /// The lease, for the dispatcher and the second Ctrl-C.
    #[must_use]
    pub fn lease(&self) -> Lease {
        self.lease.clone()
    }
}

impl Lease {
    /// Renews the lease every quarter of its duration until the lock is dropped, or
    /// until a renewal finds that someone else broke it.
    fn renew_until_stopped(&self) {
        let (stopped, wake) = &self.shared.stop;
        let interval = self.shared.duration / 4;
        loop {
            let Ok(guard) = stopped.lock() else { return };
            let Ok((guard, _)) = wake.wait_timeout_while(guard, interval, |stopped| !*stopped) else {
                return;
            };
            if *guard {
                return;
            }
            drop(guard);
            match self.renew() {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => crate::errln!("warning: cannot renew the lock's lease ({error}); trying again"),
            }
        }
    }

    /// Writes a new lease on the version last written: `Ok(false)` when the lock
    /// changed (someone broke it; who is recorded).
    fn renew(&self) -> Result<bool, StateError> {
        let Ok(mut current) = self.shared.current.lock() else { return Ok(false) };
        if current.lost.is_some() || current.released {
            return Ok(false);
        }
        let started = Instant::now();
        let text = encode(&self.shared.holder.clone().leased(self.shared.duration));
        match self.shared.state.renew_lock(&self.shared.plan, &current.version, &text)? {
            Some(version) => {
                current.version = version;
                current.valid_until = started + self.shared.duration;
                Ok(true)
            }
            None => {
                let who = match self.shared.state.read_lock(&self.shared.plan) {
                    Ok(Some((text, _))) => serde_json::from_str::<Holder>(&text)
                        .map_or_else(|_| "an unreadable lock".to_owned(), |holder| holder.to_string()),
                    Ok(None) => "nobody (the lock was removed)".to_owned(),
                    Err(error) => format!("unknown ({error})"),
                };
                current.lost = Some(who);
                self.shared.lost_signal.send_replace(true);
                Ok(false)
            }
        }
    }

    /// Whether this process may still start a step: the lock is still its own. A
    /// lease that expired (the process was paused, or renewals failed) is renewed
    /// first; a renewal refused because the lock changed means it was broken.
    ///
    /// # Errors
    /// Who holds the lock now, or why the lease could not be renewed.
    pub fn check(&self) -> Result<(), String> {
        {
            let Ok(current) = self.shared.current.lock() else {
                return Err("the lease is unreadable".into());
            };
            if let Some(who) = &current.lost {
                return Err(who.clone());
            }
            if Instant::now() < current.valid_until {
                return Ok(());
            }
        }
        match self.renew() {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.lost().unwrap_or_else(|| "another operator".to_owned())),
            Err(error) => Err(format!("the lease expired and could not be renewed: {error}")),
        }
    }

    /// Turns true when a renewal finds the lock taken over.
    #[must_use]
    pub fn watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shared.lost_signal.subscribe()
    }

    /// Who broke the lock, if a renewal found it broken.
    #[must_use]
    pub fn lost(&self) -> Option<String> {
        self.shared.current.lock().ok().and_then(|current| current.lost.clone())
    }

    /// Where the lock is, for messages.
    #[must_use]
    pub fn location(&self) -> String {
        self.shared.state.lock_location(&self.shared.plan)
    }

    /// Removes the lock if it is still this process's.
    pub fn release(&self) {
        let (stopped, wake) = &self.shared.stop;
        if let Ok(mut stopped) = stopped.lock() {
            *stopped = true;
            wake.notify_all();
        }
        let Ok(mut current) = self.shared.current.lock() else { return };
        if current.lost.is_none() && !current.released {
            current.released = true;
            self.shared.state.remove_lock(&self.shared.plan, &current.version);
        }
    }
}

/// What stands in the way of taking the lock of `plan`, without taking it (`None`: free).
#[must_use]
pub fn obstacle(state: &StateDir, plan: &str) -> Option<LockError> {
    match state.read_lock(plan) {
        Ok(Some((text, _))) => Some(examine_text(&text)),
        Ok(None) => None,
        Err(error) => Some(error.into()),
    }
}

fn encode(holder: &Holder) -> String {
    // Strings and a number: serializing cannot fail.
    serde_json::to_string(holder).unwrap_or_default()
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
        expires_at: None,
    });
    // A lease that ended: its holder stopped renewing it (gone, paused, cut off). A
    // paused holder on this host may still have step programs running: breaking its lock
    // now would run a step beside them.
    if holder.expired() {
        if holder.host == host_name() && holder.pid != 0 && process_alive(holder.pid) {
            let left_running = crate::sys::process_tree::left_running_by(holder.pid);
            if !left_running.is_empty() {
                return LockError::LeftRunning(Box::new(holder), left_running);
            }
        }
        return LockError::Stale(Box::new(holder));
    }
    // Another machine's process cannot be checked from here: its lease decides.
    if holder.host != host_name() || process_alive(holder.pid) {
        return LockError::Held(Box::new(holder));
    }
    // Programs killed with their dr-plan (a group kill, or the orphan watchdog's sweep)
    // take a moment to exit: give them up to a second before calling them left running.
    let mut left_running = crate::sys::process_tree::left_running_by(holder.pid);
    for _ in 0..10 {
        if holder.pid == 0 || left_running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left_running = crate::sys::process_tree::left_running_by(holder.pid);
    }
    if holder.pid != 0 && !left_running.is_empty() {
        return LockError::LeftRunning(Box::new(holder), left_running);
    }
    LockError::Stale(Box::new(holder))
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.lease.release();
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
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
