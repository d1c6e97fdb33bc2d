//! What a run would do, without doing it: the dry-run, the predicted RTO (from estimates
//! and drill history), and the graph.

pub mod dry_run;
pub mod gantt;
pub mod graph;
pub mod history;
pub mod predict;
