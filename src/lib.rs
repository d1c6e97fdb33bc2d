//! dr-plan: declarative, resumable disaster-recovery plans.
//!
//! The stages are types, each consuming the last: a plan file is loaded into a
//! located [`node`] tree, decoded into a [`spec`], validated into a [`plan`], and the
//! same plan drives both the dry-run and the run.

pub mod artifact;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod completions;
pub mod diagnostic;
pub mod dry_run;
pub mod duration;
pub mod exit_code;
pub mod graph;
pub mod history;
pub mod lint;
pub mod lint_command;
pub mod load;
pub mod node;
pub mod output;
pub mod plan;
pub mod predict;
pub mod render;
pub mod run;
pub mod schema;
pub mod schema_check;
pub mod secret;
pub mod source;
pub mod spec;
pub mod steps;
pub mod template;
