//! dr-plan: declarative, resumable disaster-recovery plans.
//!
//! The folders are the layers, each importing only from the layers below it (checked
//! by `tests/it/layers.rs`):
//!
//! ```text
//! cli                      the command line: argument types, one file per command
//! engine | preview | lint  running a plan; what a run would do; DR-safety rules
//! kinds | state            the step kinds (one file each, listed once in a table);
//!                          where runs are kept (a directory, or an S3 bucket)
//! clients | artifact | sys protocol clients; backup artifacts; processes, files, clock
//! lang                     the plan language: file → located tree → spec → plan
//! ```
//!
//! A plan file is loaded into a located [`lang::node`] tree, decoded into a
//! [`lang::spec`], validated into a [`lang::plan`], and the same plan drives both the
//! dry-run and the run. See `ARCHITECTURE.md`.

pub mod artifact;
pub mod cli;
pub mod clients;
pub mod engine;
pub mod kinds;
pub mod lang;
pub mod lint;
pub mod preview;
pub mod state;
pub mod sys;
