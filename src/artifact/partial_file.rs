//! Writing a file so that it appears under its name only once it is complete.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
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
///
/// The file is readable by its owner only (0600): artifacts are database dumps.
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
    /// Creates `<destination>.partial`, or truncates the one an earlier attempt left
    /// after a crash; never through a symbolic link (see [`open_partial`]).
    ///
    /// # Errors
    /// [`ArtifactError::File`] when it cannot be created, or when what is there is not
    /// a plain file of its own.
    pub fn create(destination: &Path) -> Result<Self, ArtifactError> {
        let partial_path = partial_path_for(destination);
        let file = open_partial(&partial_path).map_err(|source| ArtifactError::File {
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
        if self.file.is_none() {
            return Ok(());
        }
        self.sync()?;
        self.rename_into_place()
    }

    /// Like [`commit`](Self::commit), but never replaces a file it was not told it may
    /// replace: when the destination exists, it must be a plain file whose identity is
    /// `replaceable` (the caller's own earlier output), or the commit fails with
    /// [`ArtifactError::DestinationExists`] and the partial file is removed.
    ///
    /// When the destination does not exist, the file is hard-linked to it, which fails
    /// rather than replaces when something appeared there meanwhile; only on a file
    /// system without hard links is it renamed after checking that nothing is there.
    ///
    /// Returns the identity of the committed file, for the caller to recognise it later.
    ///
    /// # Errors
    /// [`ArtifactError::DestinationExists`], or [`ArtifactError::File`].
    pub fn commit_unless_taken(
        mut self,
        replaceable: Option<FileIdentity>,
    ) -> Result<FileIdentity, ArtifactError> {
        let identity = self.sync()?;
        let existing = match fs::hard_link(&self.partial_path, &self.destination) {
            Ok(()) => {
                // The data has its final name; from here on, dropping `self` must not
                // remove anything but the second name.
                let partial_path = std::mem::take(&mut self.partial_path);
                fs::remove_file(&partial_path).map_err(|source| ArtifactError::File {
                    action: "remove, once linked into place,".to_owned(),
                    path: partial_path,
                    source,
                })?;
                self.sync_directory();
                return Ok(identity);
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                fs::symlink_metadata(&self.destination).map(Some)
            }
            // No hard links here (some FUSE or FAT file systems): check, then rename.
            Err(_) => match fs::symlink_metadata(&self.destination) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
                other => other.map(Some),
            },
        }
        .map_err(|source| ArtifactError::File {
            action: "inspect the existing".to_owned(),
            path: self.destination.clone(),
            source,
        })?;
        if let Some(existing) = existing {
            let own = existing.file_type().is_file() && Some(FileIdentity::of(&existing)) == replaceable;
            if !own {
                return Err(ArtifactError::DestinationExists {
                    path: self.destination.clone(),
                    found: describe_file_type(&existing),
                });
            }
        }
        self.rename_into_place()?;
        Ok(identity)
    }

    /// Waits for the background sync, syncs the data and closes the file.
    fn sync(&mut self) -> Result<FileIdentity, ArtifactError> {
        let sync_failed = |source| ArtifactError::File {
            action: "sync".to_owned(),
            path: self.partial_path.clone(),
            source,
        };
        let file = self.file.take().ok_or_else(|| sync_failed(io::Error::other("already committed")))?;
        if let Some(background_sync) = self.background_sync.take() {
            background_sync.finish().map_err(sync_failed)?;
        }
        file.sync_all().map_err(sync_failed)?;
        let identity = file.metadata().map_err(sync_failed)?;
        Ok(FileIdentity::of(&identity))
    }

    /// Renames the (synced) partial file over the destination.
    fn rename_into_place(&mut self) -> Result<(), ArtifactError> {
        fs::rename(&self.partial_path, &self.destination).map_err(|source| ArtifactError::File {
            action: format!("rename to `{}` the file", self.destination.display()),
            path: self.partial_path.clone(),
            source,
        })?;
        // The rename is done; from here on, dropping `self` must not remove anything.
        self.partial_path = PathBuf::new();
        self.sync_directory();
        Ok(())
    }

    /// Syncs the destination's directory, so the new name survives a crash.
    fn sync_directory(&self) {
        if let Some(directory) = self.destination.parent() {
            let directory = if directory.as_os_str().is_empty() { Path::new(".") } else { directory };
            // Best effort: the file is complete and in place either way; only its
            // survival across a power loss in the next seconds depends on this.
            if let Ok(handle) = File::open(directory) {
                let _ = handle.sync_all();
            }
        }
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

/// Which file a path named when it was looked at: its device and inode. A file put in
/// its place since has another identity, even with the same name, size and content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileIdentity {
    /// The device (`st_dev`).
    pub device: u64,
    /// The inode (`st_ino`).
    pub inode: u64,
}

impl FileIdentity {
    /// The identity of the file `metadata` describes.
    #[must_use]
    pub fn of(metadata: &fs::Metadata) -> Self {
        Self { device: metadata.dev(), inode: metadata.ino() }
    }
}

/// Opens `path` for writing, readable by its owner only, and never through a symbolic
/// link: the directory may hold names chosen by others (an object key), and a link
/// planted at the partial path would otherwise make the write land in its target.
///
/// The file is created new (`O_EXCL`, which refuses any existing name, a dangling link
/// included). Only when a name is there already, which is what a crash or kill -9 of an
/// earlier attempt leaves, is it reopened: with `O_NOFOLLOW`, so that a link fails
/// instead of being followed; with `O_NONBLOCK`, so that a FIFO fails instead of
/// blocking (regular files ignore the flag); and it is then used only if it is a plain
/// file with no other name, since truncating a hard link to, say, the run's journal
/// would truncate the journal.
fn open_partial(path: &Path) -> io::Result<File> {
    let created =
        OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path);
    match created {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        created => return created,
    }
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|error| {
            if error.raw_os_error() == Some(libc::ELOOP) {
                io::Error::other(
                    "a symbolic link is there; an earlier attempt leaves only a plain file, so something \
                     else put it there: it is not followed. Remove it, and check who can write to this directory",
                )
            } else {
                error
            }
        })?;
    let metadata = file.metadata()?;
    if !metadata.file_type().is_file() {
        return Err(io::Error::other(format!(
            "{} is there, not the plain file an earlier attempt leaves: it is not touched; remove it",
            describe_file_type(&metadata)
        )));
    }
    if metadata.nlink() != 1 {
        return Err(io::Error::other(format!(
            "the file there has {} names (hard links), and an earlier attempt leaves a file with one: \
             it is not truncated, as that would truncate its other names too; remove it",
            metadata.nlink()
        )));
    }
    file.set_len(0)?;
    file.set_permissions(Permissions::from_mode(0o600))?;
    Ok(file)
}

/// "a directory", "a symbolic link", ...: what kind of file `metadata` describes, for
/// messages.
#[must_use]
pub fn describe_file_type(metadata: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let file_type = metadata.file_type();
    if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_file() {
        "a file"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "a device"
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
        assert_eq!(fs::metadata(&destination).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn truncates_a_plain_partial_file_an_earlier_attempt_left() {
        let directory = tempfile::tempdir().unwrap();
        let destination = directory.path().join("dump.sql");
        fs::write(directory.path().join("dump.sql.partial"), b"stale data from a crash").unwrap();
        let mut partial = PartialFile::create(&destination).unwrap();
        partial.write_all(b"new").unwrap();
        partial.commit().unwrap();
        assert_eq!(fs::read(&destination).unwrap(), b"new");
        assert_eq!(fs::metadata(&destination).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn never_writes_through_a_link_or_into_another_file_at_the_partial_path() {
        let directory = tempfile::tempdir().unwrap();
        let victim = directory.path().join("journal.jsonl");
        fs::write(&victim, b"the journal").unwrap();
        let destination = directory.path().join("dump.sql");
        let partial_path = directory.path().join("dump.sql.partial");

        std::os::unix::fs::symlink(&victim, &partial_path).unwrap();
        let error = PartialFile::create(&destination).err().unwrap().to_string();
        assert!(error.contains("a symbolic link is there") && error.contains("not followed"), "{error}");
        assert!(fs::symlink_metadata(&partial_path).unwrap().file_type().is_symlink());
        fs::remove_file(&partial_path).unwrap();

        fs::hard_link(&victim, &partial_path).unwrap();
        let error = PartialFile::create(&destination).err().unwrap().to_string();
        assert!(error.contains("has 2 names"), "{error}");
        fs::remove_file(&partial_path).unwrap();

        fs::create_dir(&partial_path).unwrap();
        let error = PartialFile::create(&destination).err().unwrap().to_string();
        assert!(error.contains("could not create"), "{error}");
        fs::remove_dir(&partial_path).unwrap();

        assert_eq!(fs::read(&victim).unwrap(), b"the journal");
        assert!(!destination.exists());
    }

    #[test]
    fn replaces_only_the_file_it_was_told_it_may_replace() {
        let directory = tempfile::tempdir().unwrap();
        let destination = directory.path().join("dump.sql");
        let write = |data: &[u8], replaceable| {
            let mut partial = PartialFile::create(&destination).unwrap();
            partial.write_all(data).unwrap();
            partial.commit_unless_taken(replaceable)
        };
        let first = write(b"first", None).unwrap();
        assert_eq!(FileIdentity::of(&fs::metadata(&destination).unwrap()), first);
        assert_eq!(fs::metadata(&destination).unwrap().nlink(), 1);

        // Not told it may replace the file there: it stays, the partial file goes.
        let error = write(b"second", None).unwrap_err();
        assert!(matches!(error, ArtifactError::DestinationExists { found: "a file", .. }), "{error}");
        let other = FileIdentity { device: first.device, inode: first.inode + 1 };
        assert!(write(b"second", Some(other)).is_err());
        assert_eq!(fs::read(&destination).unwrap(), b"first");

        let second = write(b"second", Some(first)).unwrap();
        assert_eq!(fs::read(&destination).unwrap(), b"second");
        assert_ne!(first, second);

        // A link at the destination is never replaced, even one with the right identity.
        fs::remove_file(&destination).unwrap();
        std::os::unix::fs::symlink("elsewhere", &destination).unwrap();
        let error = write(b"third", None).unwrap_err();
        assert!(
            matches!(error, ArtifactError::DestinationExists { found: "a symbolic link", .. }),
            "{error}"
        );
        assert_eq!(fs::read_dir(directory.path()).unwrap().count(), 1);
    }
}
