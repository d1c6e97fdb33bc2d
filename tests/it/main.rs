//! dr-plan's integration tests, in one test binary: one module per area (what used to be
//! one file, and one binary, each under `tests/`), with the servers, sandboxes and waits
//! they share in [`support`], compiled once. Linking one binary instead of twenty-one
//! is what makes a warm `cargo test` build fast, and what `support` no longer uses is
//! a warning rather than an `allow`.
//!
//! Run one area with a filter, e.g. `cargo test --test it run_engine::` or
//! `scripts/test.sh --test it terminal::`. Snapshots are under `tests/it/snapshots/`,
//! named `it__<module>__<name>.snap`; fixtures stay in `tests/fixtures/`.

mod support;

mod artifact_cli_compat;
mod backup_plans;
mod crash_resume;
mod dr_plans_e2e;
mod given_values;
mod hints;
mod hostile_inputs;
mod html_report;
mod integrations;
mod invalid_plans;
mod k8s_steps;
mod layers;
mod lint_rules;
mod pg_from_s3;
mod pg_from_server;
mod pg_pitr;
mod pg_steps;
mod pg_swap_signals;
mod plan_language_doc;
mod redis_steps;
mod route53_steps;
mod run_engine;
mod s3_steps;
mod secret_shapes;
mod servers;
mod shipped_plans;
mod state_files;
mod team_state;
mod template_compat;
mod template_escapes;
mod terminal;
mod verify;
