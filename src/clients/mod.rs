//! Protocol clients the step kinds share: S3, Route53, Kubernetes, PostgreSQL (its
//! command-line tools) and Redis. They know nothing of plans or steps.

pub mod kubernetes;
pub mod postgres;
pub mod redis;
pub mod route53;
pub mod s3;

/// A client call that failed: the message says what, where, and what to try.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(pub String);
