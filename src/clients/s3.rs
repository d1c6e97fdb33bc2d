//! What `s3.fetch` and `s3.put` share: the S3 client (the AWS default chain for
//! credentials and region, path-style addressing for custom endpoints, timeouts and
//! retries on every request), errors that say what to do, and the two data paths —
//! a download that resumes where it was cut off and fetches large objects as parallel
//! ranges delivered in order, and an upload that hashes what it sends.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::artifact::{CHUNK_SIZE, ChunkPool, Sha256Digest};

/// How long a TCP (and TLS) connection may take to open.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may wait for the response headers, its own body sent included;
/// upload parts are sized to fit well within it.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a response body may send nothing before the download counts as
/// interrupted and resumes with a ranged request.
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts of one request, the SDK's backoff between them (transient errors only).
const REQUEST_ATTEMPTS: u32 = 4;
/// Interruptions in a row, without a byte of progress, after which a download gives up.
const RESUME_ATTEMPTS: u32 = 5;
/// The region when neither the plan nor the AWS chain names one.
const FALLBACK_REGION: &str = "us-east-1";

/// Objects larger than this are fetched as parallel ranges.
pub(crate) const PARALLEL_THRESHOLD: u64 = 64 << 20;
/// The most ranges in flight, whatever `parallel` says.
pub(crate) const MAXIMUM_PARALLEL: u32 = 16;
/// Memory for the ranges in flight, the one being delivered included; the part size is
/// this divided by the ranges in flight, so memory does not grow with `parallel`.
/// 16 MiB keeps a restore with its pipeline under 64 MiB resident, and still gives
/// 4 MiB ranges at the default `parallel: 4`, large enough that S3's time to first
/// byte is a small part of each request.
const RANGE_MEMORY_BUDGET: u64 = 16 << 20;
/// The blocks handed to the restore pipeline: its own chunk size, so that they enter
/// it as they are and its pool recycles them.
const BLOCK_SIZE: usize = CHUNK_SIZE;
/// Blocks waiting between the download and the restore pipeline.
pub(crate) const DELIVERY_CAPACITY: usize = 4;

/// Parts of a multipart upload, and the size under which one `PutObject` is used.
const UPLOAD_PART_SIZE: u64 = 8 << 20;
/// Parts uploaded at once.
const UPLOAD_PARALLEL: usize = 4;
/// S3 accepts at most this many parts in one upload.
const MAXIMUM_UPLOAD_PARTS: u64 = 10_000;
/// Sidecars and `.meta` documents bigger than this are not what they claim to be.
pub(crate) const SMALL_OBJECT_LIMIT: usize = 1 << 20;

/// Builds the client: credentials and region from the AWS default chain (environment,
/// profiles, SSO, web identity, ECS, IMDS), `region` first when given and `us-east-1`
/// when nothing names one; `endpoint`, or else `AWS_ENDPOINT_URL_S3` or
/// `AWS_ENDPOINT_URL`, with path-style addressing (what MinIO and other S3-compatible
/// servers expect). Every request has connect and read timeouts, and transient
/// failures are retried with exponential backoff.
pub(crate) async fn connect(endpoint: Option<&str>, region: Option<&str>) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .timeout_config(timeouts())
        .retry_config(retries());
    // Without a region of our own, the loader asks its default chain, which it builds
    // with the HTTP client above (IMDS needs one).
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    let shared = loader.load().await;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared);
    if shared.region().is_none() {
        builder = builder.region(Region::from_static(FALLBACK_REGION));
    }
    if let Some(endpoint) = endpoint.map(str::to_owned).or_else(endpoint_from_environment) {
        builder = builder.endpoint_url(endpoint).force_path_style(true);
    }
    Client::from_conf(builder.build())
}

/// The HTTP client: hyper with rustls on the ring provider (the one crypto provider
/// the whole binary uses).
pub(crate) fn http_client() -> aws_sdk_s3::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// Connect and read timeouts for every request.
pub(crate) fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).read_timeout(READ_TIMEOUT).build()
}

/// The SDK's standard retries (throttling, 5xx, timeouts, broken connections) with
/// exponential backoff and jitter.
pub(crate) fn retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(REQUEST_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(10))
}

fn endpoint_from_environment() -> Option<String> {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .into_iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.trim().is_empty())
}

/// `s3://bucket/key`, for messages.
#[must_use]
pub(crate) fn uri(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// What went wrong talking to S3. Every message names the object or bucket and says
/// what to check.
#[derive(Debug, thiserror::Error)]
pub(crate) enum S3Error {
    /// The object does not exist.
    #[error("{location} does not exist; check the bucket, the key and the endpoint")]
    NotFound {
        /// `s3://bucket/key`.
        location: String,
    },
    /// The bucket does not exist.
    #[error(
        "bucket `{bucket}` does not exist at this endpoint ({location}); check the bucket name, \
         the region and `endpoint`"
    )]
    NoSuchBucket {
        /// The bucket.
        bucket: String,
        /// What was asked for.
        location: String,
    },
    /// The request signature was refused: the secret key does not belong to the key id.
    #[error(
        "S3 refused the request signature for {location} (SignatureDoesNotMatch): the secret \
         access key does not match the access key id; check AWS_SECRET_ACCESS_KEY or the \
         profile's aws_secret_access_key"
    )]
    SignatureRejected {
        /// What was asked for.
        location: String,
    },
    /// The access key id is unknown to the endpoint.
    #[error(
        "S3 does not know the access key id used for {location} (InvalidAccessKeyId); check \
         AWS_ACCESS_KEY_ID or AWS_PROFILE, and that `endpoint` is the right server"
    )]
    UnknownAccessKey {
        /// What was asked for.
        location: String,
    },
    /// Temporary credentials that expired.
    #[error(
        "the AWS credentials have expired ({code}) while accessing {location}; refresh them (e.g. `aws sso login`)"
    )]
    ExpiredCredentials {
        /// `ExpiredToken` or similar.
        code: String,
        /// What was asked for.
        location: String,
    },
    /// Valid credentials without the permission.
    #[error(
        "access denied to {location} ({detail}); the credentials lack the permission ({permission}) \
         or a bucket policy refuses it"
    )]
    AccessDenied {
        /// What was asked for.
        location: String,
        /// The IAM action needed.
        permission: &'static str,
        /// The server's code and message.
        detail: String,
    },
    /// The object changed while it was being downloaded in several requests.
    #[error(
        "{location} changed while it was being downloaded (its ETag no longer matches); run the \
         step again to fetch the new version"
    )]
    ObjectChanged {
        /// `s3://bucket/key`.
        location: String,
    },
    /// No AWS credentials anywhere in the chain.
    #[error(
        "no AWS credentials found for {location}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
         or AWS_PROFILE (with ~/.aws/credentials or SSO), or run where an instance or pod role \
         applies ({detail})"
    )]
    NoCredentials {
        /// What was asked for.
        location: String,
        /// The SDK's account of the chain.
        detail: String,
    },
    /// The endpoint could not be reached.
    #[error(
        "cannot reach the S3 endpoint for {location}: {detail}; check `endpoint` (or \
         AWS_ENDPOINT_URL_S3), the region and the network"
    )]
    Unreachable {
        /// What was asked for.
        location: String,
        /// The connection error.
        detail: String,
    },
    /// No answer in time, after retries.
    #[error(
        "S3 did not answer in time for {location} ({detail}), after {REQUEST_ATTEMPTS} attempts; \
         check the endpoint and the network, then run the step again"
    )]
    TimedOut {
        /// What was asked for.
        location: String,
        /// Which timeout.
        detail: String,
    },
    /// Any other answer from S3.
    #[error("S3 refused to {action} {location}: HTTP {status}{detail}")]
    Service {
        /// What was being done (`read`, `list`, `upload`).
        action: &'static str,
        /// What was asked for.
        location: String,
        /// The HTTP status.
        status: u16,
        /// `: Code: message`, when the server said.
        detail: String,
    },
    /// Anything else the SDK reports.
    #[error("could not {action} {location}: {detail}")]
    Other {
        /// What was being done.
        action: &'static str,
        /// What was asked for.
        location: String,
        /// The SDK's error chain.
        detail: String,
    },
    /// A download was interrupted more often than it may be resumed.
    #[error(
        "downloading {location} failed after {bytes} of {size} bytes: {reason}; it was resumed \
         {attempts} times without progress; check the network and run the step again"
    )]
    DownloadInterrupted {
        /// `s3://bucket/key`.
        location: String,
        /// Bytes received before giving up.
        bytes: u64,
        /// The object's size.
        size: u64,
        /// The last interruption.
        reason: String,
        /// Resumes tried.
        attempts: u32,
    },
    /// The server sent more bytes than the object (or range) has.
    #[error(
        "{location} sent more bytes than its size ({size}) for the range {range}; the server is \
         misbehaving or the object is changing, run the step again"
    )]
    TooManyBytes {
        /// `s3://bucket/key`.
        location: String,
        /// The object's size.
        size: u64,
        /// The range asked for.
        range: String,
    },
    /// A sidecar or `.meta` too big to be one.
    #[error(
        "{location} is {size} bytes, too big for a checksum or metadata file (at most {SMALL_OBJECT_LIMIT}); check the key"
    )]
    SmallObjectTooBig {
        /// `s3://bucket/key`.
        location: String,
        /// Its size.
        size: u64,
    },
    /// Reading the local file to upload failed.
    #[error("cannot read {path} to upload it to {location}: {source}")]
    ReadFile {
        /// The local path.
        path: String,
        /// The destination.
        location: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file changed size while it was uploaded.
    #[error(
        "{path} changed while it was uploaded to {location} ({expected} bytes at the start, {actual} \
         read); wait until whatever writes it has finished, then run the step again"
    )]
    FileChanged {
        /// The local path.
        path: String,
        /// The destination.
        location: String,
        /// Its size when the upload started.
        expected: u64,
        /// Bytes read.
        actual: u64,
    },
    /// A spawned task panicked or was cancelled.
    #[error("an internal task failed while transferring {location}: {detail}")]
    Task {
        /// What was being transferred.
        location: String,
        /// The join error.
        detail: String,
    },
}

/// Turns an SDK error into an [`S3Error`] naming `location`, for a request that
/// `action`s it (`read`, `list`, `upload`) and needs the IAM `permission`.
pub(crate) fn request_error<E>(
    error: &SdkError<E, HttpResponse>,
    action: &'static str,
    permission: &'static str,
    bucket: &str,
    location: &str,
) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let location = location.to_owned();
    let chain = error_chain(error);
    match error {
        SdkError::ServiceError(context) => classify_answer(
            Answer {
                status: context.raw().status().as_u16(),
                code: context.err().code().map(str::to_owned),
                message: context.err().message().map(str::to_owned),
            },
            action,
            permission,
            bucket,
            location,
        ),
        SdkError::TimeoutError(_) => S3Error::TimedOut { location, detail: chain },
        SdkError::DispatchFailure(failure) => {
            if failure.is_timeout() {
                S3Error::TimedOut { location, detail: chain }
            } else if failure.is_io() {
                S3Error::Unreachable { location, detail: chain }
            } else if is_missing_credentials(&chain) {
                S3Error::NoCredentials { location, detail: chain }
            } else {
                S3Error::Other { action, location, detail: chain }
            }
        }
        SdkError::ResponseError(context) => {
            let status = context.raw().status().as_u16();
            S3Error::Service { action, location, status, detail: format!(" (unreadable answer: {chain})") }
        }
        _ if is_missing_credentials(&chain) => S3Error::NoCredentials { location, detail: chain },
        _ => S3Error::Other { action, location, detail: chain },
    }
}

/// An error and its sources as one line, each cause once (SDK errors often repeat
/// their source in their own message).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn is_missing_credentials(chain: &str) -> bool {
    let chain = chain.to_ascii_lowercase();
    [
        "loading credentials",
        "no providers in chain provided credentials",
        "credentials provider was not enabled",
    ]
    .iter()
    .any(|symptom| chain.contains(symptom))
}

/// An HTTP answer from S3: status and, when the body had one, its error code and message.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) code: Option<String>,
    pub(crate) message: Option<String>,
}

/// Maps an S3 error answer to what it means for the operator.
pub(crate) fn classify_answer(
    answer: Answer,
    action: &'static str,
    permission: &'static str,
    bucket: &str,
    location: String,
) -> S3Error {
    let detail = match (&answer.code, &answer.message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.clone(),
        (None, Some(message)) => message.clone(),
        (None, None) => format!("HTTP {}", answer.status),
    };
    match (answer.code.as_deref(), answer.status) {
        (Some("NoSuchKey" | "NotFound"), _) | (None, 404) => S3Error::NotFound { location },
        (Some("NoSuchBucket"), _) => S3Error::NoSuchBucket { bucket: bucket.to_owned(), location },
        (Some("SignatureDoesNotMatch"), _) => S3Error::SignatureRejected { location },
        (Some("InvalidAccessKeyId"), _) => S3Error::UnknownAccessKey { location },
        (Some(code @ ("ExpiredToken" | "TokenRefreshRequired" | "RequestExpired")), _) => {
            S3Error::ExpiredCredentials { code: code.to_owned(), location }
        }
        (Some("PreconditionFailed"), _) | (None, 412) => S3Error::ObjectChanged { location },
        (Some("AccessDenied" | "AllAccessDisabled"), _) | (None, 403) => {
            S3Error::AccessDenied { location, permission, detail }
        }
        _ => S3Error::Service {
            action,
            location,
            status: answer.status,
            detail: if answer.code.is_some() || answer.message.is_some() {
                format!(": {detail}")
            } else {
                String::new()
            },
        },
    }
}

/// One version of an object, as HEAD or a listing described it.
#[derive(Clone, Debug)]
pub(crate) struct ObjectVersion {
    /// The bucket.
    pub(crate) bucket: String,
    /// The key.
    pub(crate) key: String,
    /// Its size in bytes.
    pub(crate) size: u64,
    /// Its ETag, which later requests must match so that all parts come from one version.
    pub(crate) etag: Option<String>,
    /// Its `Last-Modified`.
    pub(crate) last_modified: DateTime<Utc>,
}

impl ObjectVersion {
    /// `s3://bucket/key`.
    pub(crate) fn uri(&self) -> String {
        uri(&self.bucket, &self.key)
    }
}

/// Converts an S3 timestamp; `None` when it is out of chrono's range.
pub(crate) fn to_utc(time: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.secs(), time.subsec_nanos())
}

/// HEAD of an object.
///
/// HEAD answers carry no body, so a refusal comes without S3's error code; then the
/// first byte is asked for with GET, whose answer says whether the signature, the key
/// id or a permission is the problem.
pub(crate) async fn head_object(client: &Client, bucket: &str, key: &str) -> Result<ObjectVersion, S3Error> {
    let location = uri(bucket, key);
    let head = client.head_object().bucket(bucket).key(key).send().await;
    let output = match head {
        Ok(output) => output,
        Err(error) => {
            let described = request_error(&error, "read", "s3:GetObject", bucket, &location);
            if let S3Error::AccessDenied { .. } = described
                && let Err(error) =
                    client.get_object().bucket(bucket).key(key).range("bytes=0-0").send().await
            {
                return Err(request_error(&error, "read", "s3:GetObject", bucket, &location));
            }
            return Err(described);
        }
    };
    let size = output.content_length().and_then(|length| u64::try_from(length).ok()).ok_or_else(|| {
        S3Error::Other {
            action: "read",
            location: location.clone(),
            detail: "HEAD gave no Content-Length".to_owned(),
        }
    })?;
    let last_modified = output.last_modified().and_then(to_utc).ok_or_else(|| S3Error::Other {
        action: "read",
        location: location.clone(),
        detail: "HEAD gave no Last-Modified".to_owned(),
    })?;
    Ok(ObjectVersion {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        size,
        etag: output.e_tag().map(str::to_owned),
        last_modified,
    })
}

/// Reads a small object (a sidecar or a `.meta`) as text; `Ok(None)` when it does not exist.
pub(crate) async fn read_small_object(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<Option<String>, S3Error> {
    let location = uri(bucket, key);
    let response = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(response) => response,
        Err(error) => {
            return match request_error(&error, "read", "s3:GetObject", bucket, &location) {
                S3Error::NotFound { .. } => Ok(None),
                other => Err(other),
            };
        }
    };
    if let Some(length) = response.content_length()
        && usize::try_from(length).is_ok_and(|length| length > SMALL_OBJECT_LIMIT)
    {
        return Err(S3Error::SmallObjectTooBig { location, size: length.unsigned_abs() });
    }
    let mut body = response.body;
    let mut bytes = Vec::new();
    loop {
        let chunk =
            tokio::time::timeout(STALL_TIMEOUT, body.next()).await.map_err(|_| S3Error::TimedOut {
                location: location.clone(),
                detail: format!("no data for {}s", STALL_TIMEOUT.as_secs()),
            })?;
        match chunk {
            None => break,
            Some(Ok(chunk)) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > SMALL_OBJECT_LIMIT {
                    return Err(S3Error::SmallObjectTooBig { location, size: bytes.len() as u64 });
                }
            }
            Some(Err(error)) => {
                return Err(S3Error::Unreachable { location, detail: error_chain(&error) });
            }
        }
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Whether an object exists (HEAD), for preflight checks of sidecars.
pub(crate) async fn object_exists(client: &Client, bucket: &str, key: &str) -> Result<bool, S3Error> {
    match head_object(client, bucket, key).await {
        Ok(_) => Ok(true),
        Err(S3Error::NotFound { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}

/// What the download hands to the restore pipeline, in order.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// The next bytes of the object.
    Data(Vec<u8>),
    /// The download failed; nothing more will come.
    Failed(S3Error),
    /// Every byte of the object was delivered.
    Complete,
}

/// The receiver went away: the restore pipeline stopped and says why.
struct Stopped;

/// Where downloaded blocks go: the pipeline's channel, or a part's buffer.
enum BlockSink<'a> {
    Channel(&'a mpsc::Sender<Delivery>),
    Buffer(&'a mut Vec<Vec<u8>>),
}

impl BlockSink<'_> {
    async fn deliver(&mut self, block: Vec<u8>) -> Result<(), Stopped> {
        match self {
            BlockSink::Channel(sender) => sender.send(Delivery::Data(block)).await.map_err(|_| Stopped),
            BlockSink::Buffer(blocks) => {
                blocks.push(block);
                Ok(())
            }
        }
    }
}

enum DownloadFailure {
    Stopped,
    Failed(S3Error),
}

impl From<Stopped> for DownloadFailure {
    fn from(_: Stopped) -> Self {
        DownloadFailure::Stopped
    }
}

impl From<S3Error> for DownloadFailure {
    fn from(error: S3Error) -> Self {
        DownloadFailure::Failed(error)
    }
}

/// Downloads `object` into `sender`, in order, ending with [`Delivery::Complete`] or
/// [`Delivery::Failed`]. Objects above [`PARALLEL_THRESHOLD`] are fetched as up to
/// `parallel` concurrent ranges; a response cut short is resumed with a ranged GET
/// from the first missing byte. Returns early, quietly, when the receiver is dropped.
pub(crate) async fn download(
    client: &Client,
    object: &ObjectVersion,
    parallel: u32,
    sender: mpsc::Sender<Delivery>,
    pool: &ChunkPool,
) {
    let parallel = parallel.clamp(1, MAXIMUM_PARALLEL);
    let result = if object.size > PARALLEL_THRESHOLD && parallel > 1 {
        download_in_parts(client, object, parallel, &sender, pool).await
    } else {
        let mut sink = BlockSink::Channel(&sender);
        read_range(client, object, 0, object.size, &mut sink, pool).await
    };
    let last = match result {
        Ok(()) => Delivery::Complete,
        Err(DownloadFailure::Failed(error)) => Delivery::Failed(error),
        Err(DownloadFailure::Stopped) => return,
    };
    // A receiver gone by now stopped on its own error, which it reports.
    let _ = sender.send(last).await;
}

/// A range's blocks, or why it could not be had.
type PartResult = Result<Vec<Vec<u8>>, DownloadFailure>;

/// The size of each range: the memory budget shared by the ranges in flight, in whole
/// MiB, at least 1 MiB.
pub(crate) fn part_size(parallel: u32) -> u64 {
    let share = RANGE_MEMORY_BUDGET / u64::from(parallel.max(1));
    (share >> 20).max(1) << 20
}

/// Fetches the object as consecutive ranges, at most `parallel` of them downloaded or
/// waiting at once, and delivers them in order.
async fn download_in_parts(
    client: &Client,
    object: &ObjectVersion,
    parallel: u32,
    sender: &mpsc::Sender<Delivery>,
    pool: &ChunkPool,
) -> Result<(), DownloadFailure> {
    let part_size = part_size(parallel);
    let parts: Vec<(u64, u64)> = (0..object.size.div_ceil(part_size))
        .map(|index| (index * part_size, ((index + 1) * part_size).min(object.size)))
        .collect();
    let window = parallel as usize;
    let shared_object = Arc::new(object.clone());
    // Dropping the set (on error or cancellation) aborts the ranges still running.
    let mut running: JoinSet<(usize, PartResult)> = JoinSet::new();
    let mut finished: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
    let (mut next_to_start, mut next_to_deliver) = (0, 0);
    while next_to_deliver < parts.len() {
        while next_to_start < parts.len() && next_to_start < next_to_deliver + window {
            let (start, end) = parts[next_to_start];
            let (client, object, index) = (client.clone(), Arc::clone(&shared_object), next_to_start);
            let pool = pool.clone();
            running.spawn(async move {
                let mut blocks = Vec::new();
                let result =
                    read_range(&client, &object, start, end, &mut BlockSink::Buffer(&mut blocks), &pool)
                        .await;
                (index, result.map(|()| blocks))
            });
            next_to_start += 1;
        }
        if let Some(blocks) = finished.remove(&next_to_deliver) {
            for block in blocks {
                sender.send(Delivery::Data(block)).await.map_err(|_| Stopped)?;
            }
            next_to_deliver += 1;
            continue;
        }
        match running.join_next().await {
            Some(Ok((index, Ok(blocks)))) => {
                finished.insert(index, blocks);
            }
            Some(Ok((_, Err(failure)))) => return Err(failure),
            Some(Err(error)) => {
                return Err(DownloadFailure::Failed(S3Error::Task {
                    location: object.uri(),
                    detail: error.to_string(),
                }));
            }
            None => {
                return Err(DownloadFailure::Failed(S3Error::Task {
                    location: object.uri(),
                    detail: format!("range {next_to_deliver} was never started"),
                }));
            }
        }
    }
    Ok(())
}

/// Reads bytes `start..end` of the object into `sink` in blocks of [`BLOCK_SIZE`],
/// taken from `pool` (where the restore pipeline returns them once used).
/// When a response is cut off or stalls, it asks again for `Range: bytes=OFFSET-LAST`
/// from the first byte it lacks, with exponential backoff, giving up after
/// [`RESUME_ATTEMPTS`] interruptions in a row that brought nothing new.
async fn read_range(
    client: &Client,
    object: &ObjectVersion,
    start: u64,
    end: u64,
    sink: &mut BlockSink<'_>,
    pool: &ChunkPool,
) -> Result<(), DownloadFailure> {
    let mut read = RangeRead { object, location: object.uri(), end, offset: start, block: pool.take() };
    let mut fruitless = 0_u32;
    loop {
        if read.offset >= end {
            return read.finish(sink, pool).await;
        }
        let whole_object = start == 0 && end == object.size && read.offset == 0;
        let range = format!("bytes={}-{}", read.offset, end - 1);
        let mut request = client.get_object().bucket(&object.bucket).key(&object.key);
        if !whole_object {
            request = request.range(&range);
        }
        if let Some(etag) = &object.etag {
            request = request.if_match(etag);
        }
        let reached_before = read.offset;
        let interruption = match request.send().await {
            Err(error) => {
                let error = request_error(&error, "read", "s3:GetObject", &object.bucket, &read.location);
                match error {
                    // The SDK has already retried these; one more round after a pause
                    // costs little when the network is flapping.
                    S3Error::TimedOut { .. } | S3Error::Unreachable { .. } => error.to_string(),
                    other => return Err(DownloadFailure::Failed(other)),
                }
            }
            Ok(response) => read.copy_body(response.body, &range, sink, pool).await?,
        };
        if read.offset >= end {
            continue;
        }
        fruitless = if read.offset > reached_before { 1 } else { fruitless + 1 };
        if fruitless > RESUME_ATTEMPTS {
            return Err(DownloadFailure::Failed(S3Error::DownloadInterrupted {
                location: read.location,
                bytes: read.offset,
                size: object.size,
                reason: interruption,
                attempts: RESUME_ATTEMPTS,
            }));
        }
        tokio::time::sleep(backoff(fruitless)).await;
    }
}

/// A [`read_range`] under way: the first byte it lacks, and the block it is filling.
struct RangeRead<'a> {
    object: &'a ObjectVersion,
    /// `s3://bucket/key`.
    location: String,
    /// One past the last byte to read.
    end: u64,
    /// The first byte not read yet.
    offset: u64,
    /// Read bytes not delivered yet, fewer than [`BLOCK_SIZE`].
    block: Vec<u8>,
}

impl RangeRead<'_> {
    /// Copies one response's body into blocks until it ends, stalls or fails, or the
    /// range is complete; returns why it stopped (empty when complete).
    async fn copy_body(
        &mut self,
        mut body: ByteStream,
        range: &str,
        sink: &mut BlockSink<'_>,
        pool: &ChunkPool,
    ) -> Result<String, DownloadFailure> {
        loop {
            match tokio::time::timeout(STALL_TIMEOUT, body.next()).await {
                Err(_) => return Ok(format!("no data for {}s", STALL_TIMEOUT.as_secs())),
                Ok(None) => return Ok("the response ended early".to_owned()),
                Ok(Some(Err(error))) => return Ok(error_chain(&error)),
                Ok(Some(Ok(bytes))) => {
                    let length = bytes.len() as u64;
                    if self.offset + length > self.end {
                        return Err(DownloadFailure::Failed(S3Error::TooManyBytes {
                            location: self.location.clone(),
                            size: self.object.size,
                            range: range.to_owned(),
                        }));
                    }
                    self.offset += length;
                    self.fill_blocks(&bytes, sink, pool).await?;
                    if self.offset == self.end {
                        return Ok(String::new());
                    }
                }
            }
        }
    }

    /// Appends `bytes` to the block, delivering each block that fills up.
    async fn fill_blocks(
        &mut self,
        mut rest: &[u8],
        sink: &mut BlockSink<'_>,
        pool: &ChunkPool,
    ) -> Result<(), Stopped> {
        while !rest.is_empty() {
            let room = BLOCK_SIZE - self.block.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.block.extend_from_slice(now);
            rest = later;
            if self.block.len() == BLOCK_SIZE {
                let full = std::mem::replace(&mut self.block, pool.take());
                sink.deliver(full).await?;
            }
        }
        Ok(())
    }

    /// Delivers the last, partly filled block, or gives an empty one back to the pool.
    async fn finish(self, sink: &mut BlockSink<'_>, pool: &ChunkPool) -> Result<(), DownloadFailure> {
        if self.block.is_empty() {
            pool.give(self.block);
        } else {
            sink.deliver(self.block).await?;
        }
        Ok(())
    }
}

/// 200 ms, 400 ms, 800 ms, … at most 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200_u64.saturating_mul(1 << attempt.min(5).saturating_sub(1)))
        .min(Duration::from_secs(5))
}

/// What an upload sent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Uploaded {
    /// SHA-256 of the bytes sent.
    pub(crate) sha256: Sha256Digest,
    /// How many.
    pub(crate) bytes: u64,
}

/// Uploads the file at `path` to `bucket`/`key`, hashing it as it is read: one
/// `PutObject` up to [`UPLOAD_PART_SIZE`], a multipart upload with a few parts in
/// flight above (aborted on failure, so no orphaned parts are billed). `progress` gets
/// the bytes read so far and the total.
pub(crate) async fn upload_file(
    client: &Client,
    bucket: &str,
    key: &str,
    path: &Path,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Uploaded, S3Error> {
    let location = uri(bucket, key);
    let read_error =
        |source| S3Error::ReadFile { path: path.display().to_string(), location: location.clone(), source };
    let mut file = tokio::fs::File::open(path).await.map_err(read_error)?;
    let size = file.metadata().await.map_err(read_error)?.len();
    let part_size = UPLOAD_PART_SIZE.max(size.div_ceil(MAXIMUM_UPLOAD_PARTS).next_multiple_of(1 << 20));
    let mut hasher = Sha256::new();
    if size <= part_size {
        let block = read_block(&mut file, part_size + 1).await.map_err(read_error)?;
        check_size(path, &location, size, block.len() as u64)?;
        hasher.update(&block);
        let bytes = block.len() as u64;
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(block))
            .send()
            .await
            .map_err(|error| request_error(&error, "upload", "s3:PutObject", bucket, &location))?;
        progress(bytes, size);
        return Ok(Uploaded { sha256: Sha256Digest::from_bytes(hasher.finalize().into()), bytes });
    }
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|error| request_error(&error, "upload", "s3:PutObject", bucket, &location))?;
    let Some(upload_id) = created.upload_id().map(str::to_owned) else {
        return Err(S3Error::Other {
            action: "upload",
            location,
            detail: "CreateMultipartUpload gave no upload id".to_owned(),
        });
    };
    let upload = MultipartUpload { client, bucket, key, upload_id: &upload_id, path, location: &location };
    match upload.send_parts(&mut file, size, part_size, &mut hasher, progress).await {
        Ok(parts) => {
            let completion = client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await;
            if let Err(error) = completion {
                upload.abort().await;
                return Err(request_error(&error, "upload", "s3:PutObject", bucket, &location));
            }
            Ok(Uploaded { sha256: Sha256Digest::from_bytes(hasher.finalize().into()), bytes: size })
        }
        Err(error) => {
            upload.abort().await;
            Err(error)
        }
    }
}

/// One multipart upload in progress.
struct MultipartUpload<'a> {
    client: &'a Client,
    bucket: &'a str,
    key: &'a str,
    upload_id: &'a str,
    path: &'a Path,
    location: &'a str,
}

impl MultipartUpload<'_> {
    /// Reads the file part by part, hashing each, with up to [`UPLOAD_PARALLEL`] parts
    /// uploading at once; returns the parts in order for the completion.
    async fn send_parts(
        &self,
        file: &mut tokio::fs::File,
        size: u64,
        part_size: u64,
        hasher: &mut Sha256,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Vec<CompletedPart>, S3Error> {
        let read_error = |source| S3Error::ReadFile {
            path: self.path.display().to_string(),
            location: self.location.to_owned(),
            source,
        };
        let mut running: JoinSet<Result<CompletedPart, S3Error>> = JoinSet::new();
        let mut completed = Vec::new();
        let mut read = 0_u64;
        let mut part_number = 0_i32;
        while read < size {
            while running.len() >= UPLOAD_PARALLEL {
                completed.push(join_part(&mut running, self.location).await?);
            }
            let block = read_block(file, part_size).await.map_err(read_error)?;
            if block.is_empty() {
                break;
            }
            hasher.update(&block);
            read += block.len() as u64;
            part_number += 1;
            let request = self
                .client
                .upload_part()
                .bucket(self.bucket)
                .key(self.key)
                .upload_id(self.upload_id)
                .part_number(part_number)
                .body(ByteStream::from(block));
            let (bucket, location) = (self.bucket.to_owned(), self.location.to_owned());
            running.spawn(async move {
                let answer = request
                    .send()
                    .await
                    .map_err(|error| request_error(&error, "upload", "s3:PutObject", &bucket, &location))?;
                Ok(CompletedPart::builder()
                    .set_e_tag(answer.e_tag().map(str::to_owned))
                    .part_number(part_number)
                    .build())
            });
            progress(read, size);
        }
        while !running.is_empty() {
            completed.push(join_part(&mut running, self.location).await?);
        }
        // One more byte would mean the file grew.
        let extra = read_block(file, 1).await.map_err(read_error)?.len() as u64;
        check_size(self.path, self.location, size, read + extra)?;
        completed.sort_by_key(CompletedPart::part_number);
        Ok(completed)
    }

    async fn abort(&self) {
        // Best effort: a lifecycle rule for incomplete uploads is the backstop.
        let _ = self
            .client
            .abort_multipart_upload()
            .bucket(self.bucket)
            .key(self.key)
            .upload_id(self.upload_id)
            .send()
            .await;
    }
}

async fn join_part(
    running: &mut JoinSet<Result<CompletedPart, S3Error>>,
    location: &str,
) -> Result<CompletedPart, S3Error> {
    match running.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(error)) => Err(S3Error::Task { location: location.to_owned(), detail: error.to_string() }),
        None => {
            Err(S3Error::Task { location: location.to_owned(), detail: "no part was uploading".to_owned() })
        }
    }
}

fn check_size(path: &Path, location: &str, expected: u64, actual: u64) -> Result<(), S3Error> {
    if expected == actual {
        Ok(())
    } else {
        Err(S3Error::FileChanged {
            path: path.display().to_string(),
            location: location.to_owned(),
            expected,
            actual,
        })
    }
}

/// Reads up to `limit` bytes (fewer only at the end of the file).
async fn read_block(file: &mut tokio::fs::File, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut block =
        Vec::with_capacity(usize::try_from(limit.min(UPLOAD_PART_SIZE * 4)).unwrap_or(BLOCK_SIZE));
    (&mut *file).take(limit).read_to_end(&mut block).await?;
    Ok(block)
}

/// Uploads a small text object (a sidecar or a `.meta`).
pub(crate) async fn put_text(
    client: &Client,
    bucket: &str,
    key: &str,
    text: String,
    content_type: &str,
) -> Result<(), S3Error> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(ByteStream::from(text.into_bytes()))
        .send()
        .await
        .map(|_| ())
        .map_err(|error| request_error(&error, "upload", "s3:PutObject", bucket, &uri(bucket, key)))
}

impl fmt::Display for ObjectVersion {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} ({} bytes, last modified {})",
            self.uri(),
            self.size,
            self.last_modified.to_rfc3339()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_share_a_fixed_memory_budget() {
        assert_eq!(part_size(1), 16 << 20);
        assert_eq!(part_size(4), 4 << 20);
        assert_eq!(part_size(16), 1 << 20);
        assert_eq!(part_size(0), 16 << 20);
        for parallel in 1..=MAXIMUM_PARALLEL {
            assert!(part_size(parallel) * u64::from(parallel) <= RANGE_MEMORY_BUDGET);
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(40), Duration::from_millis(3200));
        assert!(backoff(u32::MAX) <= Duration::from_secs(5));
    }

    #[test]
    fn answers_become_advice() {
        let answer =
            |status, code: Option<&str>| Answer { status, code: code.map(str::to_owned), message: None };
        let classify = |answer| classify_answer(answer, "read", "s3:GetObject", "b", "s3://b/k".to_owned());
        assert!(matches!(classify(answer(404, Some("NoSuchKey"))), S3Error::NotFound { .. }));
        assert!(matches!(classify(answer(404, None)), S3Error::NotFound { .. }));
        assert!(matches!(classify(answer(404, Some("NoSuchBucket"))), S3Error::NoSuchBucket { .. }));
        assert!(matches!(
            classify(answer(403, Some("SignatureDoesNotMatch"))),
            S3Error::SignatureRejected { .. }
        ));
        assert!(matches!(
            classify(answer(403, Some("InvalidAccessKeyId"))),
            S3Error::UnknownAccessKey { .. }
        ));
        assert!(matches!(classify(answer(403, None)), S3Error::AccessDenied { .. }));
        assert!(matches!(classify(answer(412, None)), S3Error::ObjectChanged { .. }));
        let other = classify(Answer {
            status: 500,
            code: Some("InternalError".into()),
            message: Some("boom".into()),
        });
        assert_eq!(other.to_string(), "S3 refused to read s3://b/k: HTTP 500: InternalError: boom");
    }
}
