//! Writing a file so that it appears under its name only once it is complete.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::{self, JoinHandle};

use super::error::ArtifactError;

/// How much data may be written before a background sync is started, so that the
/// final sync at the commit only has the tail left to write out.
const BACKGROUND_SYNC_INTERVAL: u64 = 32 << 20;

/// A file written as `<destination>.partial` and renamed to `<destination>` by
/// [`commit`](Self::commit), after its data has been synced to disk, so that neither a
/// failure nor a crash can leave a half-written file under the final name. Dropped
/// without a commit, it removes the partial file.
///
/// While it is written, a helper thread syncs the data every 32 MiB, so that the disk
/// works in parallel with the writer instead of all at once at the commit.
pub struct PartialFile {
    file: Option<File>,
    partial_path: PathBuf,
    destination: PathBuf,
    background_sync: Option<BackgroundSync>,
    written_since_sync: u64,
}

/// The helper thread that syncs the partial file while it is being written.
struct BackgroundSync {
    requests: SyncSender<()>,
    thread: JoinHandle<io::Result<()>>,
}

impl BackgroundSync {
    fn start(file: File) -> io::Result<Self> {
        // One request may wait while a sync runs; more would only repeat it.
        let (requests, received) = sync_channel::<()>(1);
        let thread = thread::Builder::new().name("artifact-sync".to_owned()).spawn(move || {
            for () in received {
                file.sync_data()?;
            }
            Ok(())
        })?;
        Ok(Self { requests, thread })
    }

    /// Asks for a sync unless one is already waiting (or the thread stopped on an
    /// error, which [`finish`](Self::finish) reports).
    fn request(&self) {
        let _ = self.requests.try_send(());
    }

    /// Stops the thread, returning the first sync error it met.
    fn finish(self) -> io::Result<()> {
        drop(self.requests);
        self.thread.join().unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    }
}

impl PartialFile {
    /// Creates (or truncates, after an earlier crash) `<destination>.partial`.
    ///
    /// # Errors
    /// [`ArtifactError::File`] when it cannot be created.
    pub fn create(destination: &Path) -> Result<Self, ArtifactError> {
        let partial_path = partial_path_for(destination);
        let file = File::create(&partial_path).map_err(|source| ArtifactError::File {
            action: "create".to_owned(),
            path: partial_path.clone(),
            source,
        })?;
        let mut partial = Self {
            file: None,
            partial_path,
            destination: destination.to_path_buf(),
            background_sync: None,
            written_since_sync: 0,
        };
        // From here on, a failure drops `partial`, which removes the file.
        let background_sync =
            file.try_clone().and_then(BackgroundSync::start).map_err(|source| ArtifactError::File {
                action: "start syncing".to_owned(),
                path: partial.partial_path.clone(),
                source,
            })?;
        partial.file = Some(file);
        partial.background_sync = Some(background_sync);
        Ok(partial)
    }

    /// Where the data goes until the commit.
    #[must_use]
    pub fn partial_path(&self) -> &Path {
        &self.partial_path
    }

    /// Syncs the data, renames the partial file to the destination (replacing any file
    /// there) and syncs the directory, so the new name survives a crash.
    ///
    /// # Errors
    /// [`ArtifactError::File`]; the partial file is removed then.
    pub fn commit(mut self) -> Result<(), ArtifactError> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let sync_failed = |source| ArtifactError::File {
            action: "sync".to_owned(),
            path: self.partial_path.clone(),
            source,
        };
        if let Some(background_sync) = self.background_sync.take() {
            background_sync.finish().map_err(sync_failed)?;
        }
        file.sync_all().map_err(sync_failed)?;
        drop(file);
        fs::rename(&self.partial_path, &self.destination).map_err(|source| ArtifactError::File {
            action: format!("rename to `{}` the file", self.destination.display()),
            path: self.partial_path.clone(),
            source,
        })?;
        // The rename is done; from here on, dropping `self` must not remove anything.
        self.partial_path = PathBuf::new();
        if let Some(directory) = self.destination.parent() {
            let directory = if directory.as_os_str().is_empty() { Path::new(".") } else { directory };
            // Best effort: the file is complete and in place either way; only its
            // survival across a power loss in the next seconds depends on this.
            if let Ok(handle) = File::open(directory) {
                let _ = handle.sync_all();
            }
        }
        Ok(())
    }

    fn file(&mut self) -> io::Result<&mut File> {
        self.file.as_mut().ok_or_else(|| io::Error::other("the partial file is already committed"))
    }

    fn count_written(&mut self, length: usize) {
        self.written_since_sync += length as u64;
        if self.written_since_sync >= BACKGROUND_SYNC_INTERVAL {
            self.written_since_sync = 0;
            if let Some(background_sync) = &self.background_sync {
                background_sync.request();
            }
        }
    }
}

impl Write for PartialFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let written = self.file()?.write(data)?;
        self.count_written(written);
        Ok(written)
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.file()?.write_all(data)?;
        self.count_written(data.len());
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file()?.flush()
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(background_sync) = self.background_sync.take() {
            // The data is being thrown away; a failed sync of it does not matter.
            let _ = background_sync.finish();
        }
        if self.partial_path.as_os_str().is_empty() {
            return;
        }
        drop(self.file.take());
        // Nothing more can be done about a failed removal while dropping; a stale
        // `.partial` never looks like a finished file, and the next run truncates it.
        let _ = fs::remove_file(&self.partial_path);
    }
}

/// `<destination>.partial`, in the same directory so the rename stays atomic.
fn partial_path_for(destination: &Path) -> PathBuf {
    let mut name = OsString::from(destination.as_os_str());
    name.push(".partial");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appears_only_on_commit_and_vanishes_otherwise() {
        let directory = tempfile::tempdir().unwrap();
        let destination = directory.path().join("restored.sql");

        let mut abandoned = PartialFile::create(&destination).unwrap();
        abandoned.write_all(b"half").unwrap();
        assert!(abandoned.partial_path().exists());
        drop(abandoned);
        assert!(!destination.exists());
        assert!(!directory.path().join("restored.sql.partial").exists());

        let mut finished = PartialFile::create(&destination).unwrap();
        // Past the background sync interval, so that the helper thread syncs too.
        let block = vec![b'w'; 1 << 20];
        for _ in 0..(BACKGROUND_SYNC_INTERVAL >> 20) + 3 {
            finished.write_all(&block).unwrap();
        }
        assert!(!destination.exists());
        finished.commit().unwrap();
        assert_eq!(fs::metadata(&destination).unwrap().len(), BACKGROUND_SYNC_INTERVAL + (3 << 20));
        assert!(!directory.path().join("restored.sql.partial").exists());
    }
}
