//! Measured step durations of earlier drills of a plan, kept in the state
//! (`history/<plan>.jsonl`, or one object per drill in S3); dry-runs predict the RTO from them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::state::StateDir;

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
    /// Reads the history (an absent or unreadable one is empty; a damaged line is
    /// skipped, since a prediction must never block a dry-run).
    #[must_use]
    pub fn load(state: &StateDir, plan: &str) -> History {
        History {
            records: state.history(plan).iter().filter_map(|line| serde_json::from_str(line).ok()).collect(),
        }
    }

    /// Adds a drill's durations.
    ///
    /// # Errors
    /// The history cannot be written.
    pub fn append(state: &StateDir, plan: &str, record: &DrillRecord) -> Result<(), String> {
        let line = serde_json::to_string(record).map_err(|error| error.to_string())?;
        state.append_history(plan, &record.run_id, &line).map_err(|error| error.to_string())
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
