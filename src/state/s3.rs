//! The state directory in an S3 bucket: objects under a prefix, written with
//! conditional PUTs (`If-None-Match: *` to create, `If-Match: <etag>` to replace), so
//! two operators can never both write the same journal event or both take a lock.
//!
//! The engine's journal and lock code is synchronous; each call here runs its request
//! on a small runtime of its own and waits for it, from inside the run's runtime too.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

use super::StateError;
use crate::clients::s3::{S3Error, connect, request_error, uri};

/// Largest state object read (a journal object, a plan snapshot, a lock).
const OBJECT_LIMIT: usize = 64 << 20;

/// How long a state write is retried (with backoff) before the run stops
/// (`DR_PLAN_STATE_WRITE_DEADLINE`, seconds; default 60).
fn write_deadline() -> Duration {
    std::env::var("DR_PLAN_STATE_WRITE_DEADLINE")
        .ok()
        .and_then(|text| text.trim().trim_end_matches('s').parse::<u64>().ok())
        .map_or(Duration::from_secs(60), Duration::from_secs)
}

/// `s3://bucket/prefix`.
#[derive(Debug)]
pub struct Bucket {
    /// The bucket.
    pub bucket: String,
    /// The prefix, empty or ending with `/`.
    pub prefix: String,
    /// Retention of journal objects (`--state-object-lock DAYS`, governance mode).
    pub object_lock_days: Option<u32>,
    bridge: OnceLock<Result<Bridge, String>>,
}

/// A runtime for the requests, and the client built on it.
struct Bridge {
    runtime: Option<tokio::runtime::Runtime>,
    client: Client,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Bridge")
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Dropped from inside the run's runtime too, where a blocking shutdown panics.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Written {
    /// The new ETag, or `None` when the condition failed.
    #[must_use]
    pub fn version(self) -> Option<String> {
        match self {
            Written::Done(etag) => Some(etag),
            Written::Refused => None,
        }
    }
}

/// When a write may happen.
#[derive(Clone, Debug)]
enum Condition {
    /// Only if the object does not exist (`If-None-Match: *`).
    Absent,
    /// Only if the object still has this ETag (`If-Match`).
    Matches(String),
    /// Whatever the object holds.
    Any,
}

/// What a conditional write found.
#[derive(Debug)]
pub enum Written {
    /// Written; the object's new ETag.
    Done(String),
    /// The condition failed: the object exists (create) or changed (replace).
    Refused,
}

impl Bucket {
    /// A bucket and prefix, parsed from `s3://bucket/prefix`.
    ///
    /// # Errors
    /// A URL without a bucket, or with a bucket name S3 would refuse.
    pub fn parse(url: &str) -> Result<Bucket, String> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| format!("`{url}` is not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b".-".contains(&byte))
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !valid {
            return Err(format!(
                "`{url}`: `{bucket}` is not a bucket name (3 to 63 lowercase letters, digits, dots and hyphens); \
                 write s3://BUCKET/PREFIX"
            ));
        }
        // `a//b/` and `a/b` are one prefix: one lock, one set of runs.
        let parts: Vec<&str> = prefix.split('/').filter(|part| !part.is_empty()).collect();
        if parts.iter().any(|part| *part == "." || *part == "..") {
            return Err(format!("`{url}`: the prefix may not contain `.` or `..` parts"));
        }
        let prefix = parts.join("/");
        Ok(Bucket {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() { String::new() } else { format!("{prefix}/") },
            object_lock_days: None,
            bridge: OnceLock::new(),
        })
    }

    /// `s3://bucket/prefix` as given to `--state-dir`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix.trim_end_matches('/')).trim_end_matches('/').to_owned()
    }

    /// `s3://bucket/prefix/key`, for messages.
    #[must_use]
    pub fn location(&self, key: &str) -> String {
        uri(&self.bucket, &self.key(key))
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs `request` with the client and waits for it.
    fn call<T, F>(&self, request: impl FnOnce(Client) -> F) -> Result<T, StateError>
    where
        F: Future<Output = Result<T, StateError>>,
    {
        let bridge = self
            .bridge
            .get_or_init(|| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("dr-plan-state")
                    .enable_all()
                    .build()
                    .map_err(|error| format!("cannot start the S3 state client: {error}"))?;
                // State requests are small: a server that accepts the connection and then
                // says nothing must not hold a run for the download timeouts of s3.fetch.
                let connected = runtime.block_on(connect(None, None));
                let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(15))
                    .operation_timeout(Duration::from_secs(30))
                    .build();
                let client =
                    Client::from_conf(connected.config().to_builder().timeout_config(timeouts).build());
                Ok(Bridge { runtime: Some(runtime), client })
            })
            .as_ref()
            .map_err(|error| StateError::Unreachable(error.clone()))?;
        let Some(runtime) = &bridge.runtime else {
            return Err(StateError::Unreachable("the S3 state client is shut down".to_owned()));
        };
        let future = request(bridge.client.clone());
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::block_in_place(|| runtime.block_on(future))
        } else {
            runtime.block_on(future)
        }
    }

    /// Whether the bucket answers (HEAD bucket).
    ///
    /// # Errors
    /// The bucket cannot be reached or read, with S3's reason.
    pub fn check(&self) -> Result<(), StateError> {
        let bucket = self.bucket.clone();
        let location = self.url();
        self.call(|client| async move {
            client.list_objects_v2().bucket(&bucket).max_keys(1).send().await.map(|_| ()).map_err(|error| {
                unreachable_or_refused(&request_error(&error, "list", "s3:ListBucket", &bucket, &location))
            })
        })
    }

    /// The object `key` and its ETag; `None` when it does not exist.
    ///
    /// # Errors
    /// S3 cannot be reached or refuses.
    pub fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, StateError> {
        let (bucket, full, location) = (self.bucket.clone(), self.key(key), self.location(key));
        self.call(|client| async move { read_object(&client, &bucket, &full, &location).await })
    }

    /// The objects `keys`, in order (`None` for one that does not exist), sixteen
    /// requests at a time.
    ///
    /// # Errors
    /// S3 cannot be reached or refuses.
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StateError> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(16) {
            let requests: Vec<(String, String, String)> =
                chunk.iter().map(|key| (self.bucket.clone(), self.key(key), self.location(key))).collect();
            let answers = self.call(|client| async move {
                let mut running = tokio::task::JoinSet::new();
                for (index, (bucket, full, location)) in requests.into_iter().enumerate() {
                    let client = client.clone();
                    running
                        .spawn(async move { (index, read_object(&client, &bucket, &full, &location).await) });
                }
                let mut answers = vec![None; running.len()];
                while let Some(joined) = running.join_next().await {
                    let (index, answer) = joined
                        .map_err(|error| StateError::Unreachable(format!("a state read failed: {error}")))?;
                    answers[index] = answer?.map(|(bytes, _)| bytes);
                }
                Ok(answers)
            })?;
            found.extend(answers);
        }
        Ok(found)
    }

    /// Keys under `prefix` (relative to the state prefix), sorted.
    ///
    /// # Errors
    /// S3 cannot be reached or refuses.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        let (bucket, full, location) = (self.bucket.clone(), self.key(prefix), self.location(prefix));
        let strip = self.prefix.len();
        self.call(|client| async move {
            let mut keys = Vec::new();
            let mut token: Option<String> = None;
            // Bounded: 10,000 pages of 1,000 keys.
            for _ in 0..10_000 {
                let answer = client
                    .list_objects_v2()
                    .bucket(&bucket)
                    .prefix(&full)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|error| {
                        unreachable_or_refused(&request_error(
                            &error,
                            "list",
                            "s3:ListBucket",
                            &bucket,
                            &location,
                        ))
                    })?;
                keys.extend(
                    answer
                        .contents()
                        .iter()
                        .filter_map(|object| object.key())
                        .map(|key| key[strip..].to_owned()),
                );
                match answer.next_continuation_token() {
                    Some(next) if answer.is_truncated() == Some(true) => token = Some(next.to_owned()),
                    _ => break,
                }
            }
            keys.sort();
            Ok(keys)
        })
    }

    /// Creates `key` holding `bytes` unless it exists (`If-None-Match: *`). Transient
    /// failures are retried with backoff for up to a minute; a retry that finds the
    /// object already holding `bytes` (the first attempt landed, its answer was lost)
    /// is a success.
    ///
    /// # Errors
    /// S3 cannot be reached within the deadline, or refuses.
    pub fn create(&self, key: &str, bytes: &[u8], retained: bool) -> Result<Written, StateError> {
        self.write_retrying(key, bytes, &Condition::Absent, retained)
    }

    /// Writes `key` whatever it holds (a step's memory: only this run's holder writes
    /// it), retried like [`Bucket::create`].
    ///
    /// # Errors
    /// S3 cannot be reached within the deadline, or refuses.
    pub fn overwrite(&self, key: &str, bytes: &[u8]) -> Result<Written, StateError> {
        self.write_retrying(key, bytes, &Condition::Any, false)
    }

    fn write_retrying(
        &self,
        key: &str,
        bytes: &[u8],
        condition: &Condition,
        retained: bool,
    ) -> Result<Written, StateError> {
        let deadline = Instant::now() + write_deadline();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.put(key, bytes, condition, retained) {
                Ok(Written::Refused) if attempt > 1 => {
                    return match self.get(key)? {
                        Some((existing, etag)) if existing == bytes => Ok(Written::Done(etag)),
                        _ => Ok(Written::Refused),
                    };
                }
                Err(StateError::Unreachable(detail)) if Instant::now() < deadline => {
                    crate::errln!("warning: cannot write {} ({detail}); retrying", self.location(key));
                    let pause = || std::thread::sleep(backoff(attempt));
                    // From the run's runtime, its other tasks (Ctrl-C among them) go on.
                    if tokio::runtime::Handle::try_current().is_ok() {
                        tokio::task::block_in_place(pause);
                    } else {
                        pause();
                    }
                }
                other => return other,
            }
        }
    }

    /// Replaces `key` with `bytes` if its ETag is still `etag` (`If-Match`).
    ///
    /// # Errors
    /// S3 cannot be reached, or refuses.
    pub fn replace(&self, key: &str, bytes: &[u8], etag: &str) -> Result<Written, StateError> {
        self.put(key, bytes, &Condition::Matches(etag.to_owned()), false)
    }

    fn put(
        &self,
        key: &str,
        bytes: &[u8],
        condition: &Condition,
        retained: bool,
    ) -> Result<Written, StateError> {
        let (bucket, full, location) = (self.bucket.clone(), self.key(key), self.location(key));
        let body = bytes.to_vec();
        let condition = condition.clone();
        let expected = matches!(condition, Condition::Matches(_));
        let retain_until = retained.then_some(self.object_lock_days).flatten().map(|days| {
            aws_sdk_s3::primitives::DateTime::from_secs(
                chrono::Utc::now().timestamp() + i64::from(days) * 86_400,
            )
        });
        self.call(|client| async move {
            let mut request = client.put_object().bucket(&bucket).key(&full).body(ByteStream::from(body));
            request = match condition {
                Condition::Matches(etag) => request.if_match(etag),
                Condition::Absent => request.if_none_match("*"),
                Condition::Any => request,
            };
            if let Some(until) = retain_until {
                request = request
                    .object_lock_mode(aws_sdk_s3::types::ObjectLockMode::Governance)
                    .object_lock_retain_until_date(until);
            }
            match request.send().await {
                Ok(answer) => Ok(Written::Done(answer.e_tag().unwrap_or_default().to_owned())),
                Err(error) => {
                    match request_error(&error, "upload", "s3:PutObject", &bucket, &location) {
                        // 412 PreconditionFailed; 409 ConditionalRequestConflict when two
                        // conditional writes race on AWS.
                        S3Error::ObjectChanged { .. } => Ok(Written::Refused),
                        // `If-Match` on an object that is gone (a lock released by
                        // whoever broke it): it changed too.
                        S3Error::NotFound { .. } if expected => Ok(Written::Refused),
                        S3Error::Service { status: 409, .. } => Ok(Written::Refused),
                        other => Err(unreachable_or_refused(&other)),
                    }
                }
            }
        })
    }

    /// Deletes `key` (a lock being released).
    ///
    /// # Errors
    /// S3 cannot be reached, or refuses.
    pub fn delete(&self, key: &str) -> Result<(), StateError> {
        let (bucket, full, location) = (self.bucket.clone(), self.key(key), self.location(key));
        self.call(|client| async move {
            client.delete_object().bucket(&bucket).key(&full).send().await.map(|_| ()).map_err(|error| {
                unreachable_or_refused(&request_error(
                    &error,
                    "delete",
                    "s3:DeleteObject",
                    &bucket,
                    &location,
                ))
            })
        })
    }
}

/// GET of one state object and its ETag; `None` when it does not exist.
async fn read_object(
    client: &Client,
    bucket: &str,
    key: &str,
    location: &str,
) -> Result<Option<(Vec<u8>, String)>, StateError> {
    let response = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(response) => response,
        Err(error) => {
            return match request_error(&error, "read", "s3:GetObject", bucket, location) {
                S3Error::NotFound { .. } => Ok(None),
                other => Err(unreachable_or_refused(&other)),
            };
        }
    };
    if response
        .content_length()
        .is_some_and(|length| usize::try_from(length).map_or(true, |length| length > OBJECT_LIMIT))
    {
        return Err(StateError::Refused(format!("{location} is larger than {OBJECT_LIMIT} bytes")));
    }
    let etag = response.e_tag().unwrap_or_default().to_owned();
    let bytes = response
        .body
        .collect()
        .await
        .map_err(|error| StateError::Unreachable(format!("{location}: {error}")))?
        .into_bytes();
    Ok(Some((bytes.to_vec(), etag)))
}

/// Whether an S3 error is worth retrying (the server or the network) or final
/// (permissions, a missing bucket, bad credentials).
fn unreachable_or_refused(error: &S3Error) -> StateError {
    // The client's messages are written for steps, whose `endpoint` parameter the state
    // does not have: it has the environment.
    let text = error
        .to_string()
        .replace("`endpoint` (or AWS_ENDPOINT_URL_S3)", "AWS_ENDPOINT_URL_S3")
        .replace("`endpoint`", "AWS_ENDPOINT_URL_S3");
    match error {
        S3Error::Unreachable { .. } | S3Error::TimedOut { .. } => StateError::Unreachable(text),
        S3Error::Service { status, .. } if *status >= 500 => StateError::Unreachable(text),
        _ => StateError::Refused(text),
    }
}

/// 0.2 s, 0.4 s, … up to 5 s between attempts.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(5).saturating_sub(1)))
        .min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        let bucket = Bucket::parse("s3://team-dr/state/prod/").unwrap();
        assert_eq!((bucket.bucket.as_str(), bucket.prefix.as_str()), ("team-dr", "state/prod/"));
        assert_eq!(bucket.url(), "s3://team-dr/state/prod");
        assert_eq!(bucket.location("runs/x/plan.snapshot"), "s3://team-dr/state/prod/runs/x/plan.snapshot");
        let bare = Bucket::parse("s3://team-dr").unwrap();
        assert_eq!((bare.prefix.as_str(), bare.url()), ("", "s3://team-dr".to_owned()));
        assert!(Bucket::parse("s3://").unwrap_err().contains("not a bucket name"));
        assert!(Bucket::parse("s3://Team_DR/x").unwrap_err().contains("not a bucket name"));
        assert!(Bucket::parse("s3://team-dr/a/../b").unwrap_err().contains(".."));
        assert_eq!(Bucket::parse("s3://team-dr//a//b/").unwrap().url(), "s3://team-dr/a/b");
    }
}
