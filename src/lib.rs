//! dr-plan: declarative, resumable disaster-recovery plans.
//!
//! The stages are types, each consuming the last: a plan file is loaded into a
//! located [`node`] tree, decoded into a [`spec`], validated into a [`plan`], and the
//! same plan drives both the dry-run and the run.

pub mod artifact;
