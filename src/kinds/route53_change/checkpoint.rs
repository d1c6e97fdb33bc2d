//! What the step knew before its first change, kept in the run directory so that an
//! attempt after a crash (`kill -9`, a lost connection) restores what was there before
//! the *first* attempt, not what the first attempt left, and reports the first
//! attempt's change id instead of submitting a second change.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clients::route53::Route53Error;
use crate::clients::route53::records::{PreviousHealthCheck, PreviousRecord};

/// The state recorded before any change of one step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// What the parameters asked (SHA-256 of their rendered form): a checkpoint of
    /// other parameters is ignored.
    pub fingerprint: String,
    /// The hosted zone.
    pub zone_id: String,
    /// The record sets before the change.
    pub previous: Vec<PreviousRecord>,
    /// The health checks before the change.
    pub previous_health_checks: Vec<PreviousHealthCheck>,
    /// The change submitted, once Route53 accepted it.
    pub change_id: Option<String>,
}

/// Where the checkpoint of `step` lives in `run_dir`.
#[must_use]
pub fn path(run_dir: &Path, step: &str) -> PathBuf {
    run_dir.join(format!("{step}.route53-checkpoint.json"))
}

/// SHA-256 of what the step was asked to do, as hex.
#[must_use]
pub fn fingerprint(request: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(request.to_string().as_bytes()))
}

/// The checkpoint at `path` if it was written for these parameters.
///
/// # Errors
/// It exists but cannot be read or parsed.
pub fn load(path: &Path, fingerprint: &str) -> Result<Option<Checkpoint>, Route53Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(checkpoint_error(path, "read", &error.to_string())),
    };
    let checkpoint: Checkpoint =
        serde_json::from_str(&text).map_err(|error| checkpoint_error(path, "parse", &error.to_string()))?;
    Ok((checkpoint.fingerprint == fingerprint).then_some(checkpoint))
}

/// Writes the checkpoint durably: a temporary file, fsync, rename, fsync of the
/// directory. A crash leaves the old checkpoint or the new one, never half of one.
///
/// # Errors
/// The run directory is not writable.
pub fn save(path: &Path, checkpoint: &Checkpoint) -> Result<(), Route53Error> {
    let text = serde_json::to_string_pretty(checkpoint)
        .map_err(|error| checkpoint_error(path, "encode", &error.to_string()))?;
    let partial = path.with_extension("json.partial");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&partial, path)?;
        if let Some(directory) = path.parent() {
            std::fs::File::open(directory)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|error| checkpoint_error(path, "write", &error.to_string()))
}

fn checkpoint_error(path: &Path, action: &str, detail: &str) -> Route53Error {
    Route53Error::Checkpoint {
        path: path.display().to_string(),
        action: action.to_owned(),
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_found_only_for_the_same_parameters() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let file = path(directory.path(), "switch-dns");
        assert!(load(&file, "abc").expect("absent is fine").is_none());
        let checkpoint = Checkpoint {
            fingerprint: "abc".to_owned(),
            zone_id: "Z1".to_owned(),
            previous: Vec::new(),
            previous_health_checks: Vec::new(),
            change_id: Some("/change/C1".to_owned()),
        };
        save(&file, &checkpoint).expect("saved");
        let loaded = load(&file, "abc").expect("readable").expect("same parameters");
        assert_eq!(loaded.change_id.as_deref(), Some("/change/C1"));
        assert!(load(&file, "other").expect("readable").is_none());
        std::fs::write(&file, "{").expect("overwrite");
        let error = load(&file, "abc").expect_err("corrupt");
        assert!(error.to_string().contains("cannot parse the checkpoint"), "{error}");
    }
}
