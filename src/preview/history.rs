//! Measured step durations of earlier drills of a plan, kept under the state
//! directory (`history/<plan>.jsonl`); dry-runs predict the RTO from them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One finished drill: the duration of each step that ran.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DrillRecord {
    /// The run.
    pub run_id: String,
    /// When it finished (RFC 3339).
    pub finished_at: String,
    /// Step id → seconds.
    pub steps: BTreeMap<String, f64>,
}

/// The drill history of one plan.
#[derive(Clone, Debug, Default)]
pub struct History {
    records: Vec<DrillRecord>,
}

/// How many of the newest drills a prediction reads.
const RECENT: usize = 5;

impl History {
    /// The history file of `plan` under `state_dir`.
    #[must_use]
    pub fn path(state_dir: &Path, plan: &str) -> PathBuf {
        state_dir.join("history").join(format!("{plan}.jsonl"))
    }

    /// Reads the history (an absent or unreadable file is an empty history; a
    /// damaged line is skipped, since a prediction must never block a dry-run).
    #[must_use]
    pub fn load(state_dir: &Path, plan: &str) -> History {
        let text = std::fs::read_to_string(History::path(state_dir, plan)).unwrap_or_default();
        History { records: text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect() }
    }

    /// Appends a drill's durations.
    ///
    /// # Errors
    /// I/O errors writing the file.
    pub fn append(state_dir: &Path, plan: &str, record: &DrillRecord) -> std::io::Result<()> {
        let path = History::path(state_dir, plan);
        if let Some(parent) = path.parent() {
            crate::sys::files::private_dir(parent)?;
        }
        let mut file = crate::sys::files::append_private(&path)?;
        let line = serde_json::to_string(record).map_err(std::io::Error::other)?;
        writeln!(file, "{line}")?;
        file.sync_all()
    }

    /// Median duration of `step` over the newest drills that ran it, and how many.
    #[must_use]
    pub fn median(&self, step: &str) -> Option<(Duration, usize)> {
        let mut seconds: Vec<f64> = self
            .records
            .iter()
            .rev()
            .filter_map(|record| record.steps.get(step).copied())
            .take(RECENT)
            .collect();
        if seconds.is_empty() {
            return None;
        }
        seconds.sort_by(f64::total_cmp);
        let middle = seconds[seconds.len() / 2];
        // The file is not trusted: a damaged value saturates at the longest duration a plan
        // may state instead of panicking or overflowing the sums of a prediction.
        Some((crate::lang::duration::seconds(middle).min(crate::lang::duration::LONGEST), seconds.len()))
    }

    /// The drills, oldest first.
    #[must_use]
    pub fn records(&self) -> &[DrillRecord] {
        &self.records
    }

    /// Number of drills recorded.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no drill is recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_durations_saturate_instead_of_panicking() {
        let record = |seconds: f64| DrillRecord {
            run_id: "r".to_owned(),
            finished_at: String::new(),
            steps: BTreeMap::from([("a".to_owned(), seconds)]),
        };
        for (value, expected) in [
            (1e300, crate::lang::duration::LONGEST),
            (-5.0, Duration::ZERO),
            (f64::INFINITY, crate::lang::duration::LONGEST),
        ] {
            let history = History { records: vec![record(value)] };
            assert_eq!(history.median("a"), Some((expected, 1)), "{value}");
        }
    }
}
