//! Files of the state directory: private (directories 0700, files 0600, whatever the
//! umask: a journal names hosts and backups, a run directory may hold a restored
//! customer database dump) and durable (a directory entry is fsynced after a file or
//! directory is created in it, so a power loss cannot take back a journal whose every
//! event was fsynced).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `directory` and its missing parents, each 0700, and makes each new entry
/// durable in its parent.
///
/// # Errors
/// I/O errors.
pub fn private_dir(directory: &Path) -> std::io::Result<()> {
    if directory.is_dir() {
        return Ok(());
    }
    if let Some(parent) = directory.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        private_dir(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(directory) {
        Ok(()) => sync_parent(directory),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && directory.is_dir() => Ok(()),
        Err(error) => Err(error),
    }
}

/// Opens `path` for appending, creating it 0600 (and durable in its directory) when
/// it is new.
///
/// # Errors
/// I/O errors.
pub fn append_private(path: &Path) -> std::io::Result<File> {
    let existed = path.exists();
    let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    if !existed {
        sync_parent(path)?;
    }
    Ok(file)
}

/// Creates `path` (which must not exist) 0600 holding `bytes`, on disk with its
/// directory entry.
///
/// # Errors
/// I/O errors, `AlreadyExists` among them.
pub fn create_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    sync_parent(path)
}

/// Writes `bytes` to `path` (replacing it), the file 0600 even if it existed with a
/// wider mode: a step's logs and saved outputs may quote customer data.
///
/// # Errors
/// I/O errors.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}

/// Replaces `path` with `bytes` (0600) so that a crash leaves the old content or the new,
/// never half of one: written aside, synced, renamed into place, the directory synced.
///
/// # Errors
/// I/O errors.
pub fn replace_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    write_private(&partial, bytes)?;
    File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, path)?;
    sync_parent(path)
}

/// Makes the entry of `path` in its directory durable.
///
/// # Errors
/// I/O errors.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn what_is_created_is_private() {
        let root = tempfile::tempdir().unwrap();
        let directory = root.path().join("state/runs/r-1");
        private_dir(&directory).unwrap();
        for created in ["state", "state/runs", "state/runs/r-1"] {
            let mode = std::fs::metadata(root.path().join(created)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{created}");
        }
        let journal = directory.join("journal.jsonl");
        drop(append_private(&journal).unwrap());
        create_private(&directory.join("plan.snapshot"), b"x").unwrap();
        for file in [journal, directory.join("plan.snapshot")] {
            assert_eq!(
                std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600,
                "{}",
                file.display()
            );
        }
        assert!(create_private(&directory.join("plan.snapshot"), b"y").is_err(), "never replaces a file");
    }
}
