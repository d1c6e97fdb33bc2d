//! Running a step kind directly, as the run would: the context it gets, and the notes
//! it reports while it works (what it waits for), which a test can wait on instead of
//! sleeping and hoping the step got that far.

use std::path::Path;
use std::time::Duration;

use dr_plan::kinds::{ApprovalMode, ProgressSink, StepContext, StepUpdate};
use tokio::sync::mpsc::UnboundedReceiver;

/// The context of step `step_id` of plan `plan` in run `test-run`, working in
/// `run_dir`: not a drill, no approvals possible, nothing to redact, no RPO, progress
/// going nowhere. Change what a test needs with struct update syntax.
#[must_use]
pub fn context(plan: &str, step_id: &str, run_dir: &Path) -> StepContext {
    StepContext {
        run_id: "test-run".to_owned(),
        plan: plan.to_owned(),
        step_id: step_id.to_owned(),
        run_dir: run_dir.to_path_buf(),
        drill: false,
        approval: ApprovalMode::Unavailable,
        operator: "tester@test-host".to_owned(),
        redactor: std::sync::Arc::default(),
        progress: ProgressSink::default(),
        rpo: None,
        memory: None,
    }
}

/// The progress notes a step sends through its context.
pub struct Notes {
    receiver: UnboundedReceiver<StepUpdate>,
    seen: Vec<String>,
}

/// `context` with its progress going to the returned [`Notes`].
#[must_use]
pub fn with_notes(context: StepContext) -> (StepContext, Notes) {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let progress = ProgressSink::new(sender, &context.step_id);
    (StepContext { progress, ..context }, Notes { receiver, seen: Vec::new() })
}

impl Notes {
    /// The notes sent since the last call, without waiting.
    pub fn take(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        while let Ok(update) = self.receiver.try_recv() {
            if let StepUpdate::Progress(progress) = update {
                notes.extend(progress.note);
            }
        }
        self.seen.extend(notes.iter().cloned());
        notes
    }

    /// Waits until the step sends a note that contains `text`, up to `timeout`; returns
    /// it, or panics with the notes seen.
    pub async fn wait_for(&mut self, text: &str, timeout: Duration) -> String {
        let waited = tokio::time::timeout(timeout, async {
            while let Some(update) = self.receiver.recv().await {
                if let StepUpdate::Progress(progress) = update
                    && let Some(note) = progress.note
                {
                    self.seen.push(note.clone());
                    if note.contains(text) {
                        return Some(note);
                    }
                }
            }
            None
        })
        .await;
        match waited {
            Ok(Some(note)) => note,
            Ok(None) => panic!("the step ended without a note containing {text:?}; notes: {:#?}", self.seen),
            Err(_) => panic!("no note containing {text:?} within {timeout:?}; notes: {:#?}", self.seen),
        }
    }
}
