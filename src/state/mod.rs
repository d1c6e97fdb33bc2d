//! Where runs are kept: a local directory (`.dr-plan` by default) or an S3 bucket
//! (`--state-dir s3://BUCKET/PREFIX`), with the same layout:
//!
//! ```text
//! runs/<run id>/plan.snapshot          the plan as it was when the run started
//! runs/<run id>/journal.jsonl          local: the journal, one event per line
//! runs/<run id>/journal/<seq>.jsonl    S3: the journal, one object per group commit
//! locks/<plan>.lock                    who runs the plan now, until when (lease)
//! history/<plan>.jsonl                 local: durations of successful drills
//! history/<plan>/<run id>.json         S3: the same, one object per drill
//! ```
//!
//! Every write that must not be lost is durable before it returns (fsync, or the PUT
//! answered); in S3 every journal object and lock is written conditionally, so two
//! operators can never both write event N or both hold a lock.

pub mod s3;

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sys::files;

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = ".dr-plan";

/// Why the state could not be read or written.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StateError {
    /// The storage did not answer (network, server error, timeout): worth retrying.
    #[error("{0}")]
    Unreachable(String),
    /// The storage answered no (permissions, a missing bucket, a local I/O error).
    #[error("{0}")]
    Refused(String),
}

/// A local state directory or an S3 bucket and prefix.
#[derive(Clone, Debug)]
pub enum StateDir {
    /// A directory on this machine.
    Local(PathBuf),
    /// `s3://bucket/prefix`.
    S3(Arc<s3::Bucket>),
}

/// One line of a journal as stored, and where it is (`path:line` or `s3://…:line`).
#[derive(Clone, Debug)]
pub struct StoredLine {
    /// `file:line` of the line, for messages.
    pub at: String,
    /// The line, without its newline.
    pub bytes: Vec<u8>,
}

/// A journal as stored.
#[derive(Clone, Debug, Default)]
pub struct StoredJournal {
    /// Its complete lines, in order.
    pub lines: Vec<StoredLine>,
    /// Whether the last line is cut short (the writer died while writing it).
    pub torn_last_line: bool,
}

impl StateDir {
    /// `--state-dir` as given: `s3://BUCKET/PREFIX`, or a directory.
    ///
    /// # Errors
    /// An `s3://` URL that names no valid bucket.
    pub fn parse(text: &str) -> Result<StateDir, String> {
        if text.trim().is_empty() {
            return Err("an empty state directory: give a directory or s3://BUCKET/PREFIX".to_owned());
        }
        if text.starts_with("s3://") {
            return s3::Bucket::parse(text).map(|bucket| StateDir::S3(Arc::new(bucket)));
        }
        // `s3:/bucket` or `S3://bucket` would otherwise be a local directory of that name.
        if text.to_ascii_lowercase().starts_with("s3:") {
            return Err(format!(
                "`{text}`: an S3 state is written s3://BUCKET/PREFIX (lowercase, two slashes)"
            ));
        }
        if text.contains("://") {
            return Err(format!("`{text}`: only s3:// URLs and local directories are state directories"));
        }
        Ok(StateDir::Local(PathBuf::from(text)))
    }

    /// Journal objects are written with S3 Object Lock retention of `days` (governance).
    #[must_use]
    pub fn with_object_lock(self, days: Option<u32>) -> StateDir {
        match (self, days) {
            (StateDir::S3(bucket), Some(days)) => match s3::Bucket::parse(&bucket.url()) {
                Ok(mut copy) => {
                    copy.object_lock_days = Some(days);
                    StateDir::S3(Arc::new(copy))
                }
                Err(_) => StateDir::S3(bucket),
            },
            (state, _) => state,
        }
    }

    /// The default `.dr-plan`.
    #[must_use]
    pub fn is_default(&self) -> bool {
        matches!(self, StateDir::Local(path) if path == Path::new(DEFAULT_STATE_DIR))
    }

    /// As written in a command: an absolute path, or the URL.
    #[must_use]
    pub fn argument(&self) -> String {
        match self {
            StateDir::Local(path) => {
                std::path::absolute(path).unwrap_or_else(|_| path.clone()).display().to_string()
            }
            StateDir::S3(bucket) => bucket.url(),
        }
    }

    /// For messages: the path as given, or the URL.
    #[must_use]
    pub fn display(&self) -> String {
        match self {
            StateDir::Local(path) => path.display().to_string(),
            StateDir::S3(bucket) => bucket.url(),
        }
    }

    /// The local directory, if the state is local.
    #[must_use]
    pub fn local(&self) -> Option<&Path> {
        match self {
            StateDir::Local(path) => Some(path),
            StateDir::S3(_) => None,
        }
    }

    /// Whether a run can keep its state here: a local path that is not a file, or a
    /// bucket that answers.
    ///
    /// # Errors
    /// What is wrong, naming the directory or the bucket.
    pub fn check(&self) -> Result<(), StateError> {
        match self {
            StateDir::Local(path) if path.exists() && !path.is_dir() => Err(StateError::Refused(format!(
                "--state-dir {}: not a directory; give a directory (it is created when missing)",
                path.display()
            ))),
            StateDir::Local(_) => Ok(()),
            StateDir::S3(bucket) => bucket.check(),
        }
    }

    /// Where the run's own files are (`runs/<id>`), for messages.
    #[must_use]
    pub fn run_location(&self, run_id: &str) -> String {
        match self {
            StateDir::Local(path) => run_dir(path, run_id).display().to_string(),
            StateDir::S3(bucket) => bucket.location(&format!("runs/{run_id}")),
        }
    }

    /// Where the plan snapshot of `run_id` is, for messages.
    #[must_use]
    pub fn snapshot_location(&self, run_id: &str) -> String {
        match self {
            StateDir::Local(path) => run_dir(path, run_id).join("plan.snapshot").display().to_string(),
            StateDir::S3(bucket) => bucket.location(&format!("runs/{run_id}/plan.snapshot")),
        }
    }

    /// Where the journal of `run_id` is, for messages.
    #[must_use]
    pub fn journal_location(&self, run_id: &str) -> String {
        match self {
            StateDir::Local(path) => journal_path(path, run_id).display().to_string(),
            StateDir::S3(bucket) => bucket.location(&format!("runs/{run_id}/journal/")),
        }
    }

    /// The ids of the runs kept here (a missing directory has none).
    ///
    /// # Errors
    /// The bucket cannot be listed.
    pub fn run_ids(&self) -> Result<Vec<String>, StateError> {
        let mut ids: Vec<String> = match self {
            StateDir::Local(path) => std::fs::read_dir(path.join("runs"))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter(|entry| entry.path().join("journal.jsonl").exists())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect(),
            StateDir::S3(bucket) => bucket
                .list("runs/")?
                .iter()
                .filter_map(|key| {
                    key.strip_prefix("runs/")?.split_once("/journal/").map(|(id, _)| id.to_owned())
                })
                .collect(),
        };
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Whether a run `run_id` is kept here.
    ///
    /// # Errors
    /// The bucket cannot be listed.
    pub fn has_run(&self, run_id: &str) -> Result<bool, StateError> {
        match self {
            StateDir::Local(path) => Ok(journal_path(path, run_id).exists()),
            StateDir::S3(bucket) => Ok(!bucket.list(&format!("runs/{run_id}/journal/"))?.is_empty()),
        }
    }

    /// The plan snapshot of `run_id`; `None` when there is none.
    ///
    /// # Errors
    /// It cannot be read.
    pub fn read_snapshot(&self, run_id: &str) -> Result<Option<Vec<u8>>, StateError> {
        match self {
            StateDir::Local(path) => {
                let file = run_dir(path, run_id).join("plan.snapshot");
                match std::fs::read(&file) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(error) => {
                        Err(StateError::Refused(format!("cannot read {}: {error}", file.display())))
                    }
                }
            }
            StateDir::S3(bucket) => {
                Ok(bucket.get(&format!("runs/{run_id}/plan.snapshot"))?.map(|(bytes, _)| bytes))
            }
        }
    }

    /// Creates the run `run_id` with its plan snapshot.
    ///
    /// # Errors
    /// It cannot be written, or a run of that id exists.
    pub fn create_run(&self, run_id: &str, snapshot: &[u8]) -> Result<(), StateError> {
        match self {
            StateDir::Local(path) => {
                let directory = run_dir(path, run_id);
                let file = directory.join("plan.snapshot");
                files::private_dir(&directory).and_then(|()| files::create_private(&file, snapshot)).map_err(
                    |error| StateError::Refused(format!("cannot create {}: {error}", file.display())),
                )
            }
            StateDir::S3(bucket) => {
                let key = format!("runs/{run_id}/plan.snapshot");
                match bucket.create(&key, snapshot, true)? {
                    s3::Written::Done(_) => Ok(()),
                    s3::Written::Refused => {
                        Err(StateError::Refused(format!("{} exists already", bucket.location(&key))))
                    }
                }
            }
        }
    }

    /// The journal of `run_id` as stored.
    ///
    /// # Errors
    /// It cannot be read (a missing journal is an error too).
    pub fn read_journal(&self, run_id: &str) -> Result<StoredJournal, StateError> {
        match self {
            StateDir::Local(path) => {
                let file = journal_path(path, run_id);
                let text = std::fs::read(&file).map_err(|error| {
                    StateError::Refused(format!("cannot read {}: {error}", file.display()))
                })?;
                Ok(split_lines(&text, |number| format!("{}:{number}", file.display())))
            }
            StateDir::S3(bucket) => {
                let keys = journal_objects(bucket, run_id)?;
                if keys.is_empty() {
                    return Err(StateError::Refused(format!(
                        "cannot read {}: no journal objects",
                        bucket.location(&format!("runs/{run_id}/journal/"))
                    )));
                }
                let mut journal = StoredJournal::default();
                for (key, bytes) in keys.iter().zip(bucket.get_many(&keys)?) {
                    let location = bucket.location(key);
                    let part =
                        split_lines(&bytes.unwrap_or_default(), |number| format!("{location}:{number}"));
                    journal.lines.extend(part.lines);
                    journal.torn_last_line |= part.torn_last_line;
                }
                Ok(journal)
            }
        }
    }

    /// Opens the journal of `run_id` for appending, with its last complete line. A
    /// local journal whose last line is torn is cut back to its last complete line
    /// first: the next event must not be glued onto it.
    ///
    /// # Errors
    /// It cannot be opened or read.
    pub fn open_journal(&self, run_id: &str) -> Result<(JournalSink, Option<Vec<u8>>), StateError> {
        match self {
            StateDir::Local(path) => {
                let file_path = journal_path(path, run_id);
                let refused =
                    |error: std::io::Error| StateError::Refused(format!("{}: {error}", file_path.display()));
                let file = files::append_private(&file_path).map_err(refused)?;
                let text = std::fs::read(&file_path).map_err(refused)?;
                let complete =
                    text.iter().rposition(|&byte| byte == b'\n').map_or(0, |position| position + 1);
                if complete < text.len() {
                    // Never complete, so nothing acted on it.
                    file.set_len(complete as u64).and_then(|()| file.sync_data()).map_err(refused)?;
                }
                let last = last_line(&text[..complete]);
                Ok((JournalSink::Local(file), last))
            }
            StateDir::S3(bucket) => {
                let keys = journal_objects(bucket, run_id)?;
                let next = keys.last().and_then(|key| sequence_of(key)).map_or(1, |last| last + 1);
                let last = match keys.last() {
                    Some(key) => bucket.get(key)?.and_then(|(bytes, _)| last_line(&bytes)),
                    None => None,
                };
                let sink = JournalSink::S3 { bucket: Arc::clone(bucket), run_id: run_id.to_owned(), next };
                Ok((sink, last))
            }
        }
    }

    /// A step's memory `name` kept for run `run_id` (S3: `runs/<id>/memory/<name>`).
    ///
    /// # Errors
    /// It cannot be read.
    pub fn load_memory(&self, run_id: &str, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        match self {
            StateDir::Local(path) => match std::fs::read(run_dir(path, run_id).join(name)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => {
                    Err(StateError::Refused(format!("{}: {error}", self.memory_location(run_id, name))))
                }
            },
            StateDir::S3(bucket) => Ok(bucket.get(&memory_key(run_id, name))?.map(|(bytes, _)| bytes)),
        }
    }

    /// Keeps a step's memory `name` for run `run_id`, durably.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn save_memory(&self, run_id: &str, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        match self {
            StateDir::Local(path) => {
                let file = run_dir(path, run_id).join(name);
                files::replace_durably(&file, bytes)
                    .map_err(|error| StateError::Refused(format!("{}: {error}", file.display())))
            }
            StateDir::S3(bucket) => bucket.overwrite(&memory_key(run_id, name), bytes).map(|_| ()),
        }
    }

    /// Where a step's memory is kept, for messages.
    #[must_use]
    pub fn memory_location(&self, run_id: &str, name: &str) -> String {
        match self {
            StateDir::Local(path) => run_dir(path, run_id).join(name).display().to_string(),
            StateDir::S3(bucket) => bucket.location(&memory_key(run_id, name)),
        }
    }

    /// The lines of the drill history of `plan` (none when there is none).
    #[must_use]
    pub fn history(&self, plan: &str) -> Vec<String> {
        match self {
            StateDir::Local(path) => std::fs::read_to_string(history_path(path, plan))
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect(),
            StateDir::S3(bucket) => {
                let keys = bucket.list(&format!("history/{plan}/")).unwrap_or_default();
                bucket
                    .get_many(&keys)
                    .unwrap_or_default()
                    .into_iter()
                    .flatten()
                    .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
                    .collect()
            }
        }
    }

    /// Adds a drill's line to the history of `plan`.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn append_history(&self, plan: &str, run_id: &str, line: &str) -> Result<(), StateError> {
        match self {
            StateDir::Local(path) => {
                let file = history_path(path, plan);
                let refused =
                    |error: std::io::Error| StateError::Refused(format!("{}: {error}", file.display()));
                if let Some(parent) = file.parent() {
                    files::private_dir(parent).map_err(refused)?;
                }
                let mut handle = files::append_private(&file).map_err(refused)?;
                writeln!(handle, "{line}").and_then(|()| handle.sync_all()).map_err(refused)
            }
            StateDir::S3(bucket) => {
                bucket.create(&format!("history/{plan}/{run_id}.json"), line.as_bytes(), false).map(|_| ())
            }
        }
    }

    /// Where the lock of `plan` is, for messages.
    #[must_use]
    pub fn lock_location(&self, plan: &str) -> String {
        match self {
            StateDir::Local(path) => lock_path(path, plan).display().to_string(),
            StateDir::S3(bucket) => bucket.location(&lock_key(plan)),
        }
    }

    /// The lock of `plan`: its text and version (the ETag, or locally the text itself).
    ///
    /// # Errors
    /// It cannot be read.
    pub fn read_lock(&self, plan: &str) -> Result<Option<(String, String)>, StateError> {
        match self {
            StateDir::Local(path) => match std::fs::read_to_string(lock_path(path, plan)) {
                Ok(text) => Ok(Some((text.clone(), text))),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(StateError::Refused(format!("{}: {error}", self.lock_location(plan)))),
            },
            StateDir::S3(bucket) => Ok(bucket
                .get(&lock_key(plan))?
                .map(|(bytes, etag)| (String::from_utf8_lossy(&bytes).into_owned(), etag))),
        }
    }

    /// Creates the lock of `plan` holding `text`; `None` when it exists.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn create_lock(&self, plan: &str, text: &str) -> Result<Option<String>, StateError> {
        match self {
            StateDir::Local(path) => {
                let directory = path.join("locks");
                files::private_dir(&directory)
                    .map_err(|error| StateError::Refused(format!("{}: {error}", directory.display())))?;
                new_lock(&lock_path(path, plan), text)
            }
            StateDir::S3(bucket) => Ok(bucket.create(&lock_key(plan), text.as_bytes(), false)?.version()),
        }
    }

    /// Renews the lock of `plan` (still at `version`) with `text`; `None` when it
    /// changed: someone else broke it.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn renew_lock(&self, plan: &str, version: &str, text: &str) -> Result<Option<String>, StateError> {
        match self {
            StateDir::Local(path) => {
                let file = lock_path(path, plan);
                let refused =
                    |error: std::io::Error| StateError::Refused(format!("{}: {error}", file.display()));
                match std::fs::read_to_string(&file) {
                    Ok(current) if current == version => {}
                    Ok(_) => return Ok(None),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(error) => return Err(refused(error)),
                }
                // Replaced in one rename: the lock never disappears while it is renewed.
                let private = file.with_extension(format!("lock.{}.renew", std::process::id()));
                let _ = std::fs::remove_file(&private);
                files::create_private(&private, text.as_bytes())
                    .and_then(|()| std::fs::rename(&private, &file))
                    .and_then(|()| files::sync_parent(&file))
                    .map_err(refused)?;
                Ok(Some(text.to_owned()))
            }
            StateDir::S3(bucket) => Ok(bucket.replace(&lock_key(plan), text.as_bytes(), version)?.version()),
        }
    }

    /// Replaces the stale lock of `plan` (still at `version`) with `text`; `None`
    /// when it changed since it was examined (another operator was faster). Two
    /// operators breaking the same stale lock never both succeed.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn take_over_lock(
        &self,
        plan: &str,
        version: &str,
        text: &str,
    ) -> Result<Option<String>, StateError> {
        match self {
            StateDir::Local(path) => {
                let file = lock_path(path, plan);
                if !break_exactly(&file, version)? {
                    return Ok(None);
                }
                new_lock(&file, text)
            }
            StateDir::S3(bucket) => Ok(bucket.replace(&lock_key(plan), text.as_bytes(), version)?.version()),
        }
    }

    /// Removes the lock of `plan` if it is still at `version` (ours).
    pub fn remove_lock(&self, plan: &str, version: &str) {
        match self.read_lock(plan) {
            Ok(Some((_, current))) if current == version => {}
            _ => return,
        }
        match self {
            StateDir::Local(path) => {
                let _ = std::fs::remove_file(lock_path(path, plan));
            }
            StateDir::S3(bucket) => {
                let _ = bucket.delete(&lock_key(plan));
            }
        }
    }
}

/// Where a journal is written.
#[derive(Debug)]
pub enum JournalSink {
    /// An append-only file, fsync'd at each write.
    Local(File),
    /// Objects `runs/<id>/journal/<seq>.jsonl`, each created once.
    S3 {
        /// The state bucket.
        bucket: Arc<s3::Bucket>,
        /// The run.
        run_id: String,
        /// The next object's sequence number.
        next: u64,
    },
}

impl JournalSink {
    /// Writes `bytes` (whole lines) and returns once they are durable: fsync'd, or
    /// the object created.
    ///
    /// # Errors
    /// The write failed; or in S3, another writer wrote this object first (the run
    /// is no longer this process's to write).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            JournalSink::Local(file) => {
                file.write_all(bytes).and_then(|()| file.sync_data()).map_err(|error| error.to_string())
            }
            JournalSink::S3 { bucket, run_id, next } => {
                let key = journal_key(run_id, *next);
                match bucket.create(&key, bytes, true).map_err(|error| error.to_string())? {
                    s3::Written::Done(_) => {
                        *next += 1;
                        Ok(())
                    }
                    s3::Written::Refused => Err(format!(
                        "{} was written by another process: another operator is writing this run's journal",
                        bucket.location(&key)
                    )),
                }
            }
        }
    }
}

/// The run's directory under a local state directory.
#[must_use]
pub fn run_dir(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("runs").join(run_id)
}

fn journal_path(state_dir: &Path, run_id: &str) -> PathBuf {
    run_dir(state_dir, run_id).join("journal.jsonl")
}

fn history_path(state_dir: &Path, plan: &str) -> PathBuf {
    state_dir.join("history").join(format!("{plan}.jsonl"))
}

fn lock_path(state_dir: &Path, plan: &str) -> PathBuf {
    state_dir.join("locks").join(format!("{plan}.lock"))
}

fn memory_key(run_id: &str, name: &str) -> String {
    format!("runs/{run_id}/memory/{name}")
}

fn lock_key(plan: &str) -> String {
    format!("locks/{plan}.lock")
}

/// `runs/<id>/journal/00000042.jsonl`: sorted by name in the order written.
fn journal_key(run_id: &str, sequence: u64) -> String {
    format!("runs/{run_id}/journal/{sequence:010}.jsonl")
}

fn sequence_of(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.strip_suffix(".jsonl")?.parse().ok()
}

/// The journal objects of `run_id`, in sequence order.
fn journal_objects(bucket: &s3::Bucket, run_id: &str) -> Result<Vec<String>, StateError> {
    let mut keys: Vec<String> = bucket
        .list(&format!("runs/{run_id}/journal/"))?
        .into_iter()
        .filter(|key| sequence_of(key).is_some())
        .collect();
    keys.sort_by_key(|key| sequence_of(key));
    Ok(keys)
}

/// The lines of `text`, each with where it is; a last line without its newline is torn.
fn split_lines(text: &[u8], at: impl Fn(usize) -> String) -> StoredJournal {
    let mut parts: Vec<&[u8]> = text.split(|&byte| byte == b'\n').collect();
    let torn_last_line = parts.pop().is_some_and(|last| !last.is_empty());
    let lines = parts
        .into_iter()
        .enumerate()
        .map(|(index, line)| StoredLine { at: at(index + 1), bytes: line.to_vec() })
        .collect();
    StoredJournal { lines, torn_last_line }
}

/// The last line of `text` that is not blank.
fn last_line(text: &[u8]) -> Option<Vec<u8>> {
    text.split(|&byte| byte == b'\n')
        .rfind(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
}

/// A new local lock holding `text`, its version (the text); `None` when one exists.
fn new_lock(file: &Path, text: &str) -> Result<Option<String>, StateError> {
    match create_filled(file, text) {
        Ok(()) => Ok(Some(text.to_owned())),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(error) => Err(StateError::Refused(format!("{}: {error}", file.display()))),
    }
}

/// Creates `path` holding `text`, or fails with `AlreadyExists`. The text is written
/// to a private file first and then linked into place, so the lock never exists empty
/// or half-written, even when the process is killed while taking it.
fn create_filled(path: &Path, text: &str) -> std::io::Result<()> {
    let private = path.with_extension(format!("lock.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&private);
    let result = files::create_private(&private, text.as_bytes())
        .and_then(|()| std::fs::hard_link(&private, path))
        .and_then(|()| files::sync_parent(path));
    let _ = std::fs::remove_file(&private);
    result
}

/// Removes the lock at `path` only if it still holds `seen` (the stale lock that was
/// examined). Two operators breaking the same stale lock at once must not remove each
/// other's fresh lock: the lock is moved aside atomically, and put back if what was
/// moved is not what was examined. Returns whether this process broke it.
fn break_exactly(path: &Path, seen: &str) -> Result<bool, StateError> {
    let aside =
        path.with_extension(format!("lock.broken.{}.{:08x}", std::process::id(), rand::random::<u32>()));
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        // Someone else moved it first.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(StateError::Refused(format!("{}: {error}", path.display()))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_dir_is_a_directory_or_an_s3_url() {
        assert!(matches!(StateDir::parse(".dr-plan").unwrap(), StateDir::Local(_)));
        assert!(StateDir::parse(".dr-plan").unwrap().is_default());
        let remote = StateDir::parse("s3://team-dr/prod").unwrap();
        assert_eq!(
            (remote.display(), remote.argument()),
            ("s3://team-dr/prod".into(), "s3://team-dr/prod".into())
        );
        assert!(StateDir::parse("gs://bucket/x").unwrap_err().contains("only s3://"));
        assert!(StateDir::parse("s3:/team-dr/prod").unwrap_err().contains("two slashes"));
        assert!(StateDir::parse("S3://team-dr/prod").unwrap_err().contains("lowercase"));
    }

    #[test]
    fn journal_objects_sort_in_the_order_written() {
        assert_eq!(journal_key("r", 42), "runs/r/journal/0000000042.jsonl");
        assert_eq!(sequence_of("runs/r/journal/0000000042.jsonl"), Some(42));
        assert_eq!(sequence_of("runs/r/journal/notes.txt"), None);
    }

    #[test]
    fn torn_lines_are_told_apart() {
        let journal = split_lines(b"a\nb\nc", |number| format!("f:{number}"));
        assert_eq!(journal.lines.len(), 2);
        assert_eq!(journal.lines[1].at, "f:2");
        assert!(journal.torn_last_line);
        assert!(!split_lines(b"a\n", |number| number.to_string()).torn_last_line);
    }
}
