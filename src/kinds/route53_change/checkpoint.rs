//! What the step knew before its first change, kept as the step's memory (the run
//! directory, or the run's shared state in S3) so that an attempt after a crash, on this
//! machine or another, (`kill -9`, a lost connection) restores what was there before
//! the *first* attempt, not what the first attempt left, and reports the first
//! attempt's change id instead of submitting a second change.


use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clients::route53::Route53Error;
use crate::kinds::StepContext;
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

/// The name of the checkpoint of `step` among the step memories of the run.
#[must_use]
pub fn name(step: &str) -> String {
    format!("{step}.route53-checkpoint.json")
}

/// SHA-256 of what the step was asked to do, as hex.
#[must_use]
pub fn fingerprint(request: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(request.to_string().as_bytes()))
}

/// The checkpoint of this step if it was written for these parameters.
///
/// # Errors
/// It exists but cannot be read or parsed.
pub fn load(context: &StepContext, fingerprint: &str) -> Result<Option<Checkpoint>, Route53Error> {
    let name = name(&context.step_id);
    let Some(bytes) = context.recall(&name).map_err(|detail| checkpoint_error(context, "read", &detail))? else {
        return Ok(None);
    };
    let checkpoint: Checkpoint =
        serde_json::from_slice(&bytes).map_err(|error| checkpoint_error(context, "parse", &error.to_string()))?;
    Ok((checkpoint.fingerprint == fingerprint).then_some(checkpoint))
}

/// Keeps the checkpoint durably before anything acts on it: a crash leaves the old
/// checkpoint or the new one, never half of one.
///
/// # Errors
/// It cannot be written.
pub fn save(context: &StepContext, checkpoint: &Checkpoint) -> Result<(), Route53Error> {
    let text = serde_json::to_vec_pretty(checkpoint)
        .map_err(|error| checkpoint_error(context, "encode", &error.to_string()))?;
    context.remember(&name(&context.step_id), &text).map_err(|detail| checkpoint_error(context, "write", &detail))
}

fn checkpoint_error(context: &StepContext, action: &str, detail: &str) -> Route53Error {
    Route53Error::Checkpoint {
        path: context.memory_location(&name(&context.step_id)),
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
        let context = StepContext {
            run_id: "r".to_owned(),
            plan: "p".to_owned(),
            step_id: "switch-dns".to_owned(),
            run_dir: directory.path().to_path_buf(),
            drill: false,
            approval: crate::kinds::ApprovalMode::PreApproved,
            operator: "o".to_owned(),
            redactor: std::sync::Arc::default(),
            progress: crate::kinds::ProgressSink::default(),
            rpo: None,
            memory: None,
        };
        assert!(load(&context, "abc").expect("absent is fine").is_none());
        let checkpoint = Checkpoint {
            fingerprint: "abc".to_owned(),
            zone_id: "Z1".to_owned(),
            previous: Vec::new(),
            previous_health_checks: Vec::new(),
            change_id: Some("/change/C1".to_owned()),
        };
        save(&context, &checkpoint).expect("saved");
        let loaded = load(&context, "abc").expect("readable").expect("same parameters");
        assert_eq!(loaded.change_id.as_deref(), Some("/change/C1"));
        assert!(load(&context, "other").expect("readable").is_none());
        std::fs::write(directory.path().join(name("switch-dns")), "{").expect("overwrite");
        let error = load(&context, "abc").expect_err("corrupt");
        assert!(error.to_string().contains("cannot parse the checkpoint"), "{error}");
    }
}
