//! Writing a file so that it appears under its name only once it is complete.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::error::ArtifactError;

/// A file written as `<destination>.partial` and renamed to `<destination>` by
/// [`commit`](Self::commit), after its data has been synced to disk, so that neither a
/// failure nor a crash can leave a half-written file under the final name. Dropped
/// without a commit, it removes the partial file.
pub struct PartialFile {
    file: Option<File>,
    partial_path: PathBuf,
    destination: PathBuf,
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
        Ok(Self {
            file: Some(file),
            partial_path,
            destination: destination.to_path_buf(),
        })
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
        file.sync_all().map_err(|source| ArtifactError::File {
            action: "sync".to_owned(),
            path: self.partial_path.clone(),
            source,
        })?;
        drop(file);
        fs::rename(&self.partial_path, &self.destination).map_err(|source| {
            ArtifactError::File {
                action: format!("rename to `{}` the file", self.destination.display()),
                path: self.partial_path.clone(),
                source,
            }
        })?;
        // The rename is done; from here on, dropping `self` must not remove anything.
        self.partial_path = PathBuf::new();
        if let Some(directory) = self.destination.parent() {
            let directory = if directory.as_os_str().is_empty() {
                Path::new(".")
            } else {
                directory
            };
            // Best effort: the file is complete and in place either way; only its
            // survival across a power loss in the next seconds depends on this.
            if let Ok(handle) = File::open(directory) {
                let _ = handle.sync_all();
            }
        }
        Ok(())
    }

    fn file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("the partial file is already committed"))
    }
}

impl Write for PartialFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.file()?.write(data)
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.file()?.write_all(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file()?.flush()
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
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
        finished.write_all(b"whole").unwrap();
        assert!(!destination.exists());
        finished.commit().unwrap();
        assert_eq!(fs::read(&destination).unwrap(), b"whole");
        assert!(!directory.path().join("restored.sql.partial").exists());
    }
}
