//! RTO prediction: each step's expected duration (measured in earlier drills, else its
//! `estimate:`), and the critical path, the longest chain of `needs`.

use std::time::Duration;

use crate::lang::plan::Plan;
use crate::preview::history::History;

/// Where a step's expected duration comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EstimateSource {
    /// The median of earlier drills (how many).
    DrillHistory(usize),
    /// The plan's `estimate:`.
    Estimate,
    /// Neither: counted as zero.
    Unknown,
    /// The step will not run (a `when` that is false now): zero.
    Skipped,
}

/// The prediction for a plan.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// Expected duration of each step (same order as [`Plan::steps`]).
    pub durations: Vec<(Duration, EstimateSource)>,
    /// When each step is expected to start: when the last of its needs ends (same order
    /// as [`Plan::steps`]).
    pub starts: Vec<Duration>,
    /// Step indices of the critical path, in order.
    pub critical_path: Vec<usize>,
    /// Sum of durations along the critical path: the predicted RTO.
    pub total: Duration,
}

impl Prediction {
    /// Predicts from drill history (preferred) and estimates. Steps in `skipped` count as zero.
    #[must_use]
    pub fn new(plan: &Plan, history: &History, skipped: &[bool]) -> Prediction {
        let durations: Vec<(Duration, EstimateSource)> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(index, step)| {
                if skipped.get(index).copied().unwrap_or(false) {
                    return (Duration::ZERO, EstimateSource::Skipped);
                }
                if let Some((measured, drills)) = history.median(&step.id) {
                    return (measured, EstimateSource::DrillHistory(drills));
                }
                match step.estimate {
                    Some(estimate) => (estimate, EstimateSource::Estimate),
                    None => (Duration::ZERO, EstimateSource::Unknown),
                }
            })
            .collect();
        // Steps are in topological order, so one forward pass finds the longest path.
        let mut finish = vec![Duration::ZERO; plan.steps.len()];
        let mut starts = vec![Duration::ZERO; plan.steps.len()];
        let mut previous: Vec<Option<usize>> = vec![None; plan.steps.len()];
        for (index, step) in plan.steps.iter().enumerate() {
            let start = step
                .needs
                .iter()
                .map(|&need| (finish[need], need))
                .max_by_key(|&(time, need)| (time, std::cmp::Reverse(need)));
            let (start_time, from) = start.map_or((Duration::ZERO, None), |(time, need)| (time, Some(need)));
            // Durations are bounded when parsed, but a path of many steps still must not overflow.
            starts[index] = start_time;
            finish[index] = start_time.saturating_add(durations[index].0);
            previous[index] = from;
        }
        let end = (0..plan.steps.len()).max_by_key(|&index| (finish[index], std::cmp::Reverse(index)));
        let mut critical_path = Vec::new();
        let mut cursor = end;
        while let Some(index) = cursor {
            critical_path.push(index);
            cursor = previous[index];
        }
        critical_path.reverse();
        let total = end.map_or(Duration::ZERO, |index| finish[index]);
        Prediction { durations, starts, critical_path, total }
    }

    /// Steps with neither history nor estimate.
    #[must_use]
    pub fn unestimated(&self) -> usize {
        self.durations.iter().filter(|(_, source)| *source == EstimateSource::Unknown).count()
    }
}
