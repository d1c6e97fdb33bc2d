//! Real servers on loopback for dr-plan's integration tests.
//!
//! Declared once, in `tests/it/main.rs`; each module of the test binary brings it in
//! with `use crate::support;` and starts what it needs:
//! [`Postgres`], [`S3`] (s3s-fs, which checks SigV4), [`Redis`] and [`TargetRedis`],
//! [`Moto`] (moto's server, for Route53), [`KubeApiServer`] (kube-apiserver 1.20 with
//! etcd, no controllers) and [`HttpServer`] (a scripted HTTP/1.1 server that records
//! requests), with [`RecordingProxy`] to count and hold back what a binary sends to
//! one of them, [`cluster`] to play the controllers the API server lacks and
//! [`festivals`] for the seeds' database and its runbook-made backups. Every server
//! listens on 127.0.0.1 on a free port, every wait has a deadline and panics with what
//! to install or where to look, and each server is stopped and its temporary directory
//! removed when the value is dropped.
//!
//! Besides servers: [`sandbox`] (a working directory with plans, a state directory and
//! `dr-plan` run in it), [`steps`] (a step kind run directly, and its progress notes),
//! [`terminal`] (a pseudo-terminal read as a screen), [`hints`] (printed `next:`
//! commands run as pasted) and [`process`] (free ports, bounded waits, signals). There
//! is one of each helper: a module that needs a variant extends these rather than
//! copying them.
//!
//! The servers come from `scripts/install-test-deps.sh`; `scripts/test.sh` runs it
//! before `cargo test`.

pub mod cluster;
pub mod festivals;
pub mod hints;
mod http_server;
pub mod kinds;
mod kube;
mod moto;
mod postgres;
pub mod process;
mod recording_proxy;
mod redis;
mod route53_stub;
mod s3;
pub mod sandbox;
pub mod steps;
pub mod terminal;

pub use self::kube::KubeApiServer;
pub use http_server::{HttpServer, RecordedRequest, ScriptedResponse};
pub use moto::Moto;
pub use postgres::Postgres;
pub use recording_proxy::RecordingProxy;
pub use redis::{Redis, TargetRedis};
pub use route53_stub::{Route53Stub, StubRecord};
pub use s3::S3;
