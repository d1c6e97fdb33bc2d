//! How a running step tells the run what it is doing: progress (drawn, not journaled)
//! and warnings (journaled). A step never prints; it sends updates through its sink.

/// A progress update of a running step (not journaled: too frequent, and not needed to resume).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Progress {
    /// The step.
    pub step: String,
    /// Units done.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
    /// What `done` and `total` count.
    pub unit: ProgressUnit,
    /// What the step is doing now ("waiting for INSYNC").
    pub note: Option<String>,
}

/// What a step's progress counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressUnit {
    /// Bytes moved (downloads, uploads, restores).
    Bytes,
    /// Objects handled (manifests applied).
    Objects,
}

/// What a running step tells the run while it works: progress (drawn, not journaled)
/// and warnings (journaled, shown on every output).
#[derive(Clone, Debug)]
pub enum StepUpdate {
    /// Units done.
    Progress(Progress),
    /// Something the operator must know although the step goes on or succeeds (a
    /// notification that was not delivered).
    Warning {
        /// The step.
        step: String,
        /// What happened (redacted by the run before it is journaled).
        text: String,
    },
}

/// Sends progress to the run's reporter; a closed or absent reporter is ignored.
#[derive(Clone, Debug, Default)]
pub struct ProgressSink {
    sender: Option<tokio::sync::mpsc::UnboundedSender<StepUpdate>>,
    step: String,
}

impl ProgressSink {
    /// A sink for `step` sending to `sender`.
    #[must_use]
    pub fn new(sender: tokio::sync::mpsc::UnboundedSender<StepUpdate>, step: &str) -> ProgressSink {
        ProgressSink { sender: Some(sender), step: step.to_owned() }
    }

    /// Reports `done` of `total` bytes.
    pub fn bytes(&self, done: u64, total: Option<u64>) {
        self.send(Progress { step: self.step.clone(), done, total, unit: ProgressUnit::Bytes, note: None });
    }

    /// Reports `done` of `total` objects.
    pub fn objects(&self, done: u64, total: Option<u64>) {
        self.send(Progress { step: self.step.clone(), done, total, unit: ProgressUnit::Objects, note: None });
    }

    /// Reports what the step is doing.
    pub fn note(&self, note: impl Into<String>) {
        self.send(Progress {
            step: self.step.clone(),
            done: 0,
            total: None,
            unit: ProgressUnit::Bytes,
            note: Some(note.into()),
        });
    }

    /// Warns the operator (journaled as `step_warning`).
    pub fn warn(&self, text: impl Into<String>) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(StepUpdate::Warning { step: self.step.clone(), text: text.into() });
        }
    }

    fn send(&self, progress: Progress) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(StepUpdate::Progress(progress));
        }
    }
}
