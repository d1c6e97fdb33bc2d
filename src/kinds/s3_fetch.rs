//! `s3.fetch`: download, verify, decrypt and decompress a backup in one streaming pass.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::Client;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::clients::s3::{self, Delivery, ObjectVersion, S3Error};
use super::{
    Compression, Encryption, KindInfo, Params, Preflight, PreflightContext, StepContext, StepError,
    StepOutputs, step_outputs,
};
use crate::artifact::{
    ArtifactError, BackupMetadata, ChunkPool, ChunkSource, CompressionFormat, Decompression, EncryptionKey,
    FileIdentity, HashingSource, PartialFile, Password, RestoreOptions, RestoreSummary, Sha256Digest,
    checksum_for_object, describe_file_type, parse_checksum_sidecar, restore_chunks,
};
use crate::lang::duration::format_duration;

/// Parameters of `s3.fetch`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The bucket.
    pub bucket: String,
    /// An object key, or `latest` for the newest object under `prefix` (sidecars
    /// `.sha256` and `.meta` are never chosen).
    pub key: String,
    /// Where to look for `latest`, e.g. `postgres/`.
    #[serde(default)]
    pub prefix: String,
    /// A file or a directory to write to (default: the run's `artifacts/` directory).
    pub dest: Option<String>,
    /// Where the expected SHA-256 comes from: the `<key>.sha256` sidecar, the
    /// `<key>.meta` JSON, or `none` (lint warns).
    #[serde(default)]
    pub checksum: ChecksumSource,
    /// Decrypt an `openssl enc -aes-256-cbc -pbkdf2` object.
    pub decrypt: Option<Encryption>,
    /// Decompress: `auto` follows the key's suffix (`.gz`, `.zst`, after any `.enc`)
    /// and otherwise detects gzip or zstd by magic bytes.
    #[serde(default)]
    pub decompress: Compression,
    /// A custom S3 endpoint (path-style addressing), e.g. MinIO. Default: the AWS
    /// chain, including `AWS_ENDPOINT_URL_S3`.
    pub endpoint: Option<String>,
    /// The region (default: the AWS chain).
    pub region: Option<String>,
    /// Ranged GETs in flight for objects over 64 MiB (1 to 16); memory stays the same
    /// whatever the number.
    #[serde(default = "default_parallel")]
    #[schemars(range(min = 1, max = 16))]
    pub parallel: u32,
}

/// Where the expected checksum of an object comes from.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumSource {
    /// `<key>.sha256`, in `sha256sum` format.
    #[default]
    Sidecar,
    /// The `sha256` field of `<key>.meta`.
    Meta,
    /// Do not verify (not recommended).
    None,
}

fn default_parallel() -> u32 {
    4
}

step_outputs! {
    /// Outputs of `s3.fetch`.
    pub struct S3FetchOutputs {
        /// the local file written
        pub path: String,
        /// the object key fetched (resolved when `latest`)
        pub key: String,
        /// bytes written after decryption and decompression
        pub bytes: u64,
        /// SHA-256 of the object as stored
        pub sha256: String,
        /// the object's Last-Modified (RFC 3339)
        pub last_modified: String,
        /// seconds between Last-Modified and the fetch: the data's RPO
        pub age: u64,
    }
}

/// What `s3.fetch` declares.
pub const INFO: KindInfo = KindInfo {
    name: "s3.fetch",
    argv_parameters: &[],
    summary: "Fetch an object (or the newest under a prefix) and verify, decrypt and decompress it in one pass.",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: S3FetchOutputs::DECLARED,
    preflight: "the bucket and object exist, and the object is younger than `objectives.rpo`",
    notes: "The object is downloaded, hashed, decrypted, decompressed and written in one streaming pass: \
            no second read of the data, and memory stays under 64 MiB whatever the size. The destination \
            is written as `<dest>.partial` and renamed only once the checksum matched, so a corrupt or \
            truncated backup never looks like a finished file and nothing downstream starts.\n\n\
            The sidecar (or `.meta`) is read before the object: when it is missing, the step fails at once. \
            A mismatch is explained: a corrupt or truncated object, a wrong `.sha256` (the object itself \
            decodes cleanly), or a wrong key (the object matches its checksum but does not decrypt). \
            An object older than the plan's `objectives.rpo` is refused, in drills too; `age` feeds the \
            measured RPO.\n\n\
            Without `dest`, the file goes to `artifacts/` in the run's directory (created readable by \
            the operator only), never beside the run's journal. `dest` is a file, or a directory (an \
            existing one, or a path ending in `/`). In a directory the file is named after the key's last \
            segment without `.enc` and compression suffixes (`x.sql.gz.enc` → `x.sql`), made safe: \
            control characters become `_`, leading dots are dropped, the name is cut at 200 bytes, and a \
            name left empty becomes `object`. Files are created readable by the operator only (0600), and \
            the `.partial` file never through a symbolic link. An existing file is replaced only when it \
            is this step's own download of the same object in this run (a retry); any other file there \
            fails the step and is kept.\n\n\
            Objects over 64 MiB are fetched as `parallel` ranged GETs delivered in order; a response cut \
            off is resumed from its first missing byte. After a crash the step starts again (it is \
            idempotent) and truncates the stale `.partial` (a plain file only: a link there fails the \
            step).\n\n\
            Credentials and region come from the AWS chain (environment, profiles, SSO, roles); \
            `endpoint`, `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` select an S3-compatible server, \
            addressed path-style.",
    example: "- id: fetch\n  kind: s3.fetch\n  with:\n    bucket: festivals-backups\n    key: latest\n    prefix: postgres/\n    decrypt: { format: openssl-pbkdf2, key: \"{{secrets.backup_key}}\" }\n",
    role: super::Role::Fetch { checksum: "checksum" },
    object_key: true,
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<S3FetchOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `s3.fetch` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, context| Box::pin(async move { Ok(preflight(super::parameters(with)?, context).await) }),
    undo: None,
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let bucket = with.text("bucket");
    let key = with.text("key");
    let mut sentence = if key == "latest" {
        format!("fetch the newest object under s3://{bucket}/{}", with.text_or("prefix", ""))
    } else {
        format!("fetch s3://{bucket}/{key}")
    };
    match with.text_or("checksum", "sidecar").as_str() {
        "none" => sentence.push_str(", NOT verified"),
        "meta" => sentence.push_str(", verify its SHA-256 against the .meta JSON"),
        _ => sentence.push_str(", verify its SHA-256 against the .sha256 sidecar"),
    }
    if with.has("decrypt") {
        sentence.push_str(", decrypt (openssl aes-256-cbc pbkdf2)");
    }
    match with.text_or("decompress", "auto").as_str() {
        "none" => {}
        "auto" => sentence.push_str(", decompress (gzip/zstd detected)"),
        other => sentence.push_str(&format!(", decompress ({other})")),
    }
    sentence.push_str(&format!(" into {}", with.text_or("dest", "the run directory")));
    sentence
}

/// At most this many pages of 1000 keys are listed to find `latest`.
const MAXIMUM_LIST_PAGES: u32 = 100;

/// Why `s3.fetch` failed. Each message names the object and says what to do.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    /// Talking to S3 failed.
    #[error(transparent)]
    S3(#[from] S3Error),
    /// `parallel` out of range.
    #[error("`parallel` must be between 1 and {maximum}, found {found}")]
    Parallel { found: u32, maximum: u32 },
    /// The decryption key cannot be used.
    #[error("`decrypt`: {source}")]
    Key { source: Box<ArtifactError> },
    /// `key: latest` found nothing.
    #[error(
        "there is no backup under s3://{bucket}/{prefix} (sidecars `.sha256`, `.meta` and `.partial` \
         files are not candidates); check `bucket`, `prefix` and that the backup job uploads there"
    )]
    NothingUnderPrefix { bucket: String, prefix: String },
    /// `key: latest` under a prefix with too many objects.
    #[error(
        "more than {count} objects under s3://{bucket}/{prefix}: give a narrower `prefix` (e.g. \
         with the year and month) or an explicit `key`"
    )]
    TooManyObjects { bucket: String, prefix: String, count: u64 },
    /// The backup is older than the RPO.
    #[error(
        "{location} is {age} old (last modified {last_modified}), older than the plan's RPO of {rpo}: \
         restoring it would lose more data than the plan allows. Check that backups are running and \
         take a fresh one; if an older backup is really wanted, raise `objectives.rpo`"
    )]
    OlderThanRpo { location: String, age: String, last_modified: String, rpo: String },
    /// `checksum: sidecar` without a sidecar.
    #[error(
        "{sidecar} does not exist, so {location} cannot be verified before it is restored (`checksum: \
         sidecar`); nothing was downloaded. Upload one as the backup script does (`sha256sum FILE > \
         FILE.sha256`), or use `checksum: meta` when the `.meta` JSON has a `sha256`"
    )]
    MissingSidecar { sidecar: String, location: String },
    /// `checksum: meta` without a `.meta`.
    #[error(
        "{meta} does not exist, so {location} cannot be verified before it is restored (`checksum: \
         meta`); nothing was downloaded. Use `checksum: sidecar` for its `.sha256`, or upload the \
         `.meta` with `s3.put`"
    )]
    MissingMeta { meta: String, location: String },
    /// The sidecar or `.meta` cannot be read.
    #[error("{checksum_location}: {source}")]
    InvalidChecksumSource { checksum_location: String, source: Box<ArtifactError> },
    /// The destination cannot be prepared.
    #[error("cannot create the destination directory {path}: {source}; check `dest` and its permissions")]
    Destination { path: String, source: io::Error },
    /// `artifacts/` in the run directory is not the directory dr-plan makes.
    #[error(
        "{path} is {found}, not the directory where dr-plan puts downloads: it is not used. Remove it \
         (and check who can write to the run's directory), or set `dest`"
    )]
    ArtifactsDirectory { path: String, found: &'static str },
    /// The destination holds a file that this step did not download.
    #[error(
        "{destination} already exists ({found}) and is not this step's own download of {location} in \
         this run: s3.fetch never replaces a file it did not write, so that an object's name cannot \
         overwrite the run's journal or another step's download. It is kept; remove it, or set `dest` \
         to another path"
    )]
    DestinationTaken { destination: String, found: &'static str, location: String },
    /// The record of the download cannot be written.
    #[error(
        "{location} was restored into {destination}, but the record that lets a retry of this step \
         replace it could not be written: {source}"
    )]
    Record { location: String, destination: String, source: Box<ArtifactError> },
    /// Decoding failed and the data matches its checksum: the key or the format is wrong.
    #[error(
        "{location} is intact (its SHA-256 matches {checksum_location}) but cannot be restored: {source}"
    )]
    IntactButUndecodable { location: String, checksum_location: String, source: Box<ArtifactError> },
    /// Decoding failed and nothing vouches for the data.
    #[error("{location} cannot be restored: {source} (no checksum was checked: `checksum: none`)")]
    Undecodable { location: String, source: Box<ArtifactError> },
    /// The stored object is shorter than what was written.
    #[error(
        "{} is truncated ({size} bytes stored): {source}. {mismatch}. The upload was cut off: restore \
         from an earlier backup, or run the backup again",
        .mismatch.location
    )]
    Truncated { size: u64, source: Box<ArtifactError>, mismatch: Box<Mismatch> },
    /// The stored object is damaged.
    #[error(
        "{} is corrupt: {mismatch}, and it does not decode either ({source}). Do not restore it: use an \
         earlier backup, or copy the object again from a replica",
        .mismatch.location
    )]
    Corrupt { source: Box<ArtifactError>, mismatch: Box<Mismatch> },
    /// The data decodes cleanly with an integrity check of its own, but the checksum differs.
    #[error(
        "{} is wrong for {}{names}: {mismatch}, yet the object decodes cleanly ({format}'s own integrity \
         check passed). The checksum was probably written for another object; check the object by hand, \
         then regenerate the sidecar (`sha256sum FILE > FILE.sha256`)",
        .mismatch.checksum_location,
        .mismatch.location
    )]
    WrongChecksum { names: String, format: &'static str, mismatch: Box<Mismatch> },
    /// The checksum differs and the data has no integrity check of its own to tell more.
    #[error(
        "checksum mismatch for {}: {mismatch}; the object is corrupt or truncated, or the checksum \
         belongs to another object. Do not restore it: use an earlier backup",
        .mismatch.location
    )]
    ChecksumMismatch { mismatch: Box<Mismatch> },
    /// Writing the destination failed.
    #[error("restoring {location} into {destination} failed: {source}")]
    Write { location: String, destination: String, source: Box<ArtifactError> },
    /// The restore thread failed.
    #[error("the restore of {location} stopped unexpectedly: {detail}")]
    Task { location: String, detail: String },
}

/// An object whose SHA-256 is not the expected one.
#[derive(Debug)]
struct Mismatch {
    /// `s3://bucket/key`.
    location: String,
    /// Where the expected checksum comes from.
    checksum_location: String,
    expected: Sha256Digest,
    actual: Sha256Digest,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "its SHA-256 is {}, but {} says {}",
            self.actual, self.checksum_location, self.expected
        )
    }
}

/// Runs `s3.fetch` with a client built from the AWS chain, `endpoint` and `region`.
///
/// # Errors
/// [`StepError::Failed`] naming the object and what to do.
pub async fn run(parameters: Parameters, context: &StepContext) -> Result<S3FetchOutputs, StepError> {
    let client = s3::connect(parameters.endpoint.as_deref(), parameters.region.as_deref()).await;
    run_with_client(parameters, context, &client).await
}

/// Runs `s3.fetch` with a client the caller built (`endpoint` and `region` are then
/// the client's business).
///
/// # Errors
/// [`StepError::Failed`] naming the object and what to do.
pub async fn run_with_client(
    parameters: Parameters,
    context: &StepContext,
    client: &Client,
) -> Result<S3FetchOutputs, StepError> {
    fetch(parameters, context, client)
        .await
        .map_err(|error| StepError::Failed(context.redactor.redact(&error.to_string())))
}

/// Checks that the object exists, is younger than the RPO, and that its sidecar (or
/// `.meta`) is there, without downloading it.
pub async fn preflight(parameters: Parameters, context: &PreflightContext) -> Preflight {
    let client = s3::connect(parameters.endpoint.as_deref(), parameters.region.as_deref()).await;
    preflight_with_client(parameters, context, &client).await
}

/// [`preflight`] with a client the caller built.
pub async fn preflight_with_client(
    parameters: Parameters,
    context: &PreflightContext,
    client: &Client,
) -> Preflight {
    match check_before_download(&parameters, context.rpo, client).await {
        Ok((object, age)) => {
            let objective = context
                .rpo
                .map(|rpo| format!(", within the RPO of {}", format_duration(rpo)))
                .unwrap_or_default();
            let checksum = match parameters.checksum {
                ChecksumSource::Sidecar => format!("; {}.sha256 present", object.uri()),
                ChecksumSource::Meta => format!("; {}.meta present", object.uri()),
                ChecksumSource::None => "; no checksum will be checked".to_owned(),
            };
            Preflight::Passed(format!(
                "{} exists ({} bytes, {} old{objective}){checksum}",
                object.uri(),
                object.size,
                format_duration(age)
            ))
        }
        Err(error) => Preflight::Failed(error.to_string()),
    }
}

/// The object to fetch and its age, after the checks that need no download: it
/// exists, it is younger than the RPO, and its sidecar or `.meta` exists.
async fn check_before_download(
    parameters: &Parameters,
    rpo: Option<Duration>,
    client: &Client,
) -> Result<(ObjectVersion, Duration), FetchError> {
    check_parallel(parameters.parallel)?;
    let object = resolve(client, parameters).await?;
    let age = age_of(&object, Utc::now());
    check_rpo(&object, age, rpo)?;
    let (suffix, present) = match parameters.checksum {
        ChecksumSource::None => return Ok((object, age)),
        ChecksumSource::Sidecar => (".sha256", true),
        ChecksumSource::Meta => (".meta", false),
    };
    let checksum_key = format!("{}{suffix}", object.key);
    if !s3::object_exists(client, &object.bucket, &checksum_key).await? {
        return Err(missing_checksum(&object, &checksum_key, present));
    }
    Ok((object, age))
}

fn missing_checksum(object: &ObjectVersion, checksum_key: &str, sidecar: bool) -> FetchError {
    let missing = s3::uri(&object.bucket, checksum_key);
    if sidecar {
        FetchError::MissingSidecar { sidecar: missing, location: object.uri() }
    } else {
        FetchError::MissingMeta { meta: missing, location: object.uri() }
    }
}

async fn fetch(
    parameters: Parameters,
    context: &StepContext,
    client: &Client,
) -> Result<S3FetchOutputs, FetchError> {
    let parallel = check_parallel(parameters.parallel)?;
    let decrypt = parameters
        .decrypt
        .as_ref()
        .map(|decrypt| {
            EncryptionKey::new(Password::new(decrypt.key.clone().into_bytes()), decrypt.iterations)
        })
        .transpose()
        .map_err(|source| FetchError::Key { source: Box::new(source) })?;
    let object = resolve(client, &parameters).await?;
    let age = age_of(&object, Utc::now());
    check_rpo(&object, age, context.rpo)?;
    let expected = expected_checksum(client, &object, parameters.checksum).await?;
    let destination = destination(&parameters, &object.key, &context.run_dir).await?;
    let record_path = record_path(&context.run_dir, &context.step_id);
    let replaceable = replaceable_download(&record_path, &object, &destination).await?;
    context.progress.note(format!("downloading {}", object.uri()));
    let options = RestoreOptions {
        expected_sha256: None,
        decrypt,
        decompress: decompression(parameters.decompress, &object.key),
    };
    let (summary, identity) =
        transfer(client, &object, parallel, options, expected, (destination.clone(), replaceable), context)
            .await?;
    let record = DownloadRecord {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        path: destination.clone(),
        file: identity,
    };
    write_record(&record_path, &record).await?;

    Ok(S3FetchOutputs {
        path: destination.display().to_string(),
        key: object.key.clone(),
        bytes: summary.output_bytes,
        sha256: summary.sha256.to_hex(),
        last_modified: object.last_modified.to_rfc3339(),
        age: age.as_secs(),
    })
}

fn check_parallel(parallel: u32) -> Result<u32, FetchError> {
    if (1..=s3::MAXIMUM_PARALLEL).contains(&parallel) {
        Ok(parallel)
    } else {
        Err(FetchError::Parallel { found: parallel, maximum: s3::MAXIMUM_PARALLEL })
    }
}

/// The decompression to apply. `auto` follows the key's suffix when it names a
/// format (`x.sql.gz.enc` must be gzip once decrypted), and only otherwise the magic
/// bytes: a wrong key yields random bytes, whose padding passes by chance once in
/// 256 tries, and which magic-byte detection would pass through as uncompressed.
fn decompression(compression: Compression, key: &str) -> Decompression {
    match compression {
        Compression::Auto => compression_named_by(key).unwrap_or(Decompression::Auto),
        Compression::Gzip => Decompression::Gzip,
        Compression::Zstd => Decompression::Zstd,
        Compression::None => Decompression::None,
    }
}

/// The compression a key's suffix names, after any `.enc`.
fn compression_named_by(key: &str) -> Option<Decompression> {
    let name = base_name(key);
    let name = name.strip_suffix(".enc").unwrap_or(name);
    if name.ends_with(".gz") || name.ends_with(".gzip") {
        Some(Decompression::Gzip)
    } else if name.ends_with(".zst") || name.ends_with(".zstd") {
        Some(Decompression::Zstd)
    } else {
        None
    }
}

/// The object named by `key`, or the newest under `prefix` for `latest`.
async fn resolve(client: &Client, parameters: &Parameters) -> Result<ObjectVersion, FetchError> {
    if parameters.key == "latest" {
        newest_under_prefix(client, &parameters.bucket, &parameters.prefix).await
    } else {
        Ok(s3::head_object(client, &parameters.bucket, &parameters.key).await?)
    }
}

/// Whether a key is a backup rather than a sidecar, a partial upload or a folder marker.
fn is_backup_candidate(key: &str) -> bool {
    ![".sha256", ".meta", ".partial", "/"].iter().any(|suffix| key.ends_with(suffix))
}

/// The newest backup under `prefix` by `LastModified`; among equals, the last key.
async fn newest_under_prefix(
    client: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<ObjectVersion, FetchError> {
    let location = s3::uri(bucket, prefix);
    let mut newest: Option<ObjectVersion> = None;
    let mut continuation: Option<String> = None;
    let mut listed = 0_u64;
    for _page in 0..MAXIMUM_LIST_PAGES {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(continuation.take())
            .send()
            .await
            .map_err(|error| s3::request_error(&error, "list", "s3:ListBucket", bucket, &location))?;
        for entry in page.contents() {
            listed += 1;
            let (Some(key), Some(last_modified)) =
                (entry.key(), entry.last_modified().and_then(s3::to_utc))
            else {
                continue;
            };
            if !is_backup_candidate(key) {
                continue;
            }
            let newer = newest
                .as_ref()
                .is_none_or(|best| (last_modified, key) > (best.last_modified, best.key.as_str()));
            if newer {
                newest = Some(ObjectVersion {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    size: entry.size().and_then(|size| u64::try_from(size).ok()).unwrap_or_default(),
                    etag: entry.e_tag().map(str::to_owned),
                    last_modified,
                });
            }
        }
        continuation = page.next_continuation_token().map(str::to_owned);
        if page.is_truncated() != Some(true) || continuation.is_none() {
            return newest.ok_or_else(|| FetchError::NothingUnderPrefix {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
    }
    Err(FetchError::TooManyObjects { bucket: bucket.to_owned(), prefix: prefix.to_owned(), count: listed })
}

/// How long ago the object was written; zero when its clock is ahead of ours.
fn age_of(object: &ObjectVersion, now: DateTime<Utc>) -> Duration {
    (now - object.last_modified).to_std().unwrap_or_default()
}

fn check_rpo(object: &ObjectVersion, age: Duration, rpo: Option<Duration>) -> Result<(), FetchError> {
    match rpo {
        Some(rpo) if age > rpo => Err(FetchError::OlderThanRpo {
            location: object.uri(),
            age: format_duration(Duration::from_secs(age.as_secs())),
            last_modified: object.last_modified.to_rfc3339(),
            rpo: format_duration(rpo),
        }),
        Some(_) | None => Ok(()),
    }
}

/// The SHA-256 the object must have, and where it comes from.
#[derive(Clone, Debug)]
struct ExpectedChecksum {
    digest: Sha256Digest,
    /// `s3://bucket/key.sha256` or `.meta`.
    location: String,
    /// The file name the sidecar gives, when it is not the object's.
    other_name: Option<String>,
}

/// Reads the sidecar or `.meta`, before the object, so that a missing one fails at once.
async fn expected_checksum(
    client: &Client,
    object: &ObjectVersion,
    source: ChecksumSource,
) -> Result<Option<ExpectedChecksum>, FetchError> {
    let sidecar = match source {
        ChecksumSource::None => return Ok(None),
        ChecksumSource::Sidecar => true,
        ChecksumSource::Meta => false,
    };
    let checksum_key = format!("{}{}", object.key, if sidecar { ".sha256" } else { ".meta" });
    let location = s3::uri(&object.bucket, &checksum_key);
    let Some(text) = s3::read_small_object(client, &object.bucket, &checksum_key).await? else {
        return Err(missing_checksum(object, &checksum_key, sidecar));
    };
    let invalid = |source| FetchError::InvalidChecksumSource {
        checksum_location: location.clone(),
        source: Box::new(source),
    };
    if sidecar {
        let digest = checksum_for_object(&text, &object.key).map_err(invalid)?;
        let object_name = base_name(&object.key);
        let other_name = parse_checksum_sidecar(&text)
            .ok()
            .and_then(|entries| entries.into_iter().find(|entry| entry.digest == digest))
            .and_then(|entry| entry.name)
            .filter(|name| base_name(name) != object_name);
        Ok(Some(ExpectedChecksum { digest, location, other_name }))
    } else {
        let digest =
            BackupMetadata::parse(&text).and_then(|metadata| metadata.expected_sha256()).map_err(invalid)?;
        Ok(Some(ExpectedChecksum { digest, location, other_name: None }))
    }
}

fn base_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The local file name for a key: its last component without `.enc` when decrypting
/// and without a compression suffix when decompressing.
fn local_name(key: &str, decrypting: bool, decompressing: bool) -> String {
    let mut name = base_name(key);
    if decrypting {
        name = name.strip_suffix(".enc").unwrap_or(name);
    }
    if decompressing {
        for suffix in [".gz", ".gzip", ".zst", ".zstd"] {
            if let Some(stripped) = name.strip_suffix(suffix) {
                name = stripped;
                break;
            }
        }
    }
    safe_file_name(name)
}

/// The longest file name a key gives, in bytes: well under the 255 of most file
/// systems, with room for `.partial`.
const MAXIMUM_NAME_BYTES: usize = 200;

/// A name that the last segment of an object key (anyone who can write to the bucket
/// chooses it) may safely have in a directory of ours: control characters (NUL
/// included) become `_`, leading dots go (no `.`, `..`, or hidden file: names that
/// start with a dot stay free for dr-plan's own records), the length is bounded, and
/// what is left empty becomes `object`. The caller has already cut at the last `/`.
fn safe_file_name(segment: &str) -> String {
    let cleaned: String =
        segment.chars().map(|character| if character.is_control() { '_' } else { character }).collect();
    let cleaned = cleaned.trim_start_matches('.');
    let mut end = cleaned.len().min(MAXIMUM_NAME_BYTES);
    while !cleaned.is_char_boundary(end) {
        end -= 1;
    }
    match &cleaned[..end] {
        "" => "object".to_owned(),
        name => name.to_owned(),
    }
}

/// Where downloads go in the run directory when `dest` is not given: a directory of
/// their own, so that no object name can land on the run's journal, plan snapshot,
/// logs or checkpoints.
const ARTIFACTS_DIRECTORY: &str = "artifacts";

/// The file to write: `dest` itself, or a file named after the key inside `dest` when
/// that is a directory, or inside the run's `artifacts/` without `dest`.
async fn destination(parameters: &Parameters, key: &str, run_dir: &Path) -> Result<PathBuf, FetchError> {
    let name = local_name(key, parameters.decrypt.is_some(), parameters.decompress != Compression::None);
    let (directory, file) = match &parameters.dest {
        None => {
            let directory = run_dir.join(ARTIFACTS_DIRECTORY);
            create_artifacts_directory(&directory).await?;
            return Ok(directory.join(name));
        }
        Some(dest) => {
            let path = PathBuf::from(dest);
            if dest.ends_with('/') || tokio::fs::metadata(&path).await.is_ok_and(|metadata| metadata.is_dir())
            {
                (path.clone(), path.join(name))
            } else {
                let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty());
                (parent.map_or_else(|| PathBuf::from("."), Path::to_path_buf), path)
            }
        }
    };
    tokio::fs::create_dir_all(&directory)
        .await
        .map_err(|source| FetchError::Destination { path: directory.display().to_string(), source })?;
    Ok(file)
}

/// Creates `artifacts/` for the operator only (0700), or checks that the one there is
/// a real directory: a symbolic link there would send downloads elsewhere.
async fn create_artifacts_directory(directory: &Path) -> Result<(), FetchError> {
    let failed = |source| FetchError::Destination { path: directory.display().to_string(), source };
    tokio::fs::DirBuilder::new().recursive(true).mode(0o700).create(directory).await.map_err(failed)?;
    let metadata = tokio::fs::symlink_metadata(directory).await.map_err(failed)?;
    if metadata.is_dir() {
        Ok(())
    } else {
        Err(FetchError::ArtifactsDirectory {
            path: directory.display().to_string(),
            found: describe_file_type(&metadata),
        })
    }
}

/// What `s3.fetch` keeps of its download in a run: which object went to which file,
/// and that file's identity. It is written once the file is in place, to
/// `.<step>.s3-fetch.json` in the run directory (a name starting with a dot, which no
/// downloaded file has).
///
/// A retry of the step in the same run (a resumed run, `--rerun`) downloads again, and
/// must then replace its own earlier download, while never replacing any other file
/// under that name: the run's own files, another step's download, a file planted there.
/// The record tells the two apart: a file is this step's own only if the record names
/// the same object and path, and the file there is still the very file (device and
/// inode) that was put in place, not another one created since under the same name.
/// Should the step die between putting the file in place and writing the record, its
/// retry refuses that file and says to remove it: the safe side.
#[derive(Debug, serde::Serialize, Deserialize)]
struct DownloadRecord {
    bucket: String,
    key: String,
    path: PathBuf,
    file: FileIdentity,
}

fn record_path(run_dir: &Path, step_id: &str) -> PathBuf {
    run_dir.join(format!(".{step_id}.s3-fetch.json"))
}

/// The identity of the file at `destination` that this download may replace: none when
/// nothing is there; the step's earlier download of the same object in this run; any
/// other file fails the step now, before the download, as it would at the end.
async fn replaceable_download(
    record_path: &Path,
    object: &ObjectVersion,
    destination: &Path,
) -> Result<Option<FileIdentity>, FetchError> {
    // When the destination cannot be inspected, writing it will fail with the reason.
    let Ok(existing) = tokio::fs::symlink_metadata(destination).await else {
        return Ok(None);
    };
    let record = tokio::fs::read(record_path)
        .await
        .ok()
        .and_then(|text| serde_json::from_slice::<DownloadRecord>(&text).ok());
    let identity = FileIdentity::of(&existing);
    match record {
        Some(record)
            if existing.is_file()
                && record.bucket == object.bucket
                && record.key == object.key
                && record.path == destination
                && record.file == identity =>
        {
            Ok(Some(identity))
        }
        Some(_) | None => Err(FetchError::DestinationTaken {
            destination: destination.display().to_string(),
            found: describe_file_type(&existing),
            location: object.uri(),
        }),
    }
}

/// Writes the record of a download, replacing the step's earlier one.
async fn write_record(path: &Path, record: &DownloadRecord) -> Result<(), FetchError> {
    let failed = |source| FetchError::Record {
        location: s3::uri(&record.bucket, &record.key),
        destination: record.path.display().to_string(),
        source: Box::new(source),
    };
    let text = serde_json::to_vec(record).map_err(|error| {
        failed(ArtifactError::File {
            action: "serialize the record for".to_owned(),
            path: path.to_path_buf(),
            source: io::Error::other(error),
        })
    })?;
    let path = path.to_path_buf();
    let written = tokio::task::spawn_blocking(move || {
        let mut partial = PartialFile::create(&path)?;
        partial.write_all(&text).map_err(|source| ArtifactError::File {
            action: "write".to_owned(),
            path: partial.partial_path().to_path_buf(),
            source,
        })?;
        partial.commit()
    })
    .await;
    match written {
        Ok(result) => result.map_err(failed),
        Err(error) => Err(failed(ArtifactError::File {
            action: "write".to_owned(),
            path: PathBuf::new(),
            source: io::Error::other(error.to_string()),
        })),
    }
}

/// Downloads the object and restores it into `destination` at the same time: the
/// download runs here, the restore pipeline on a blocking thread, joined by a bounded
/// channel of 512 KiB blocks. The blocks enter the pipeline as they are, and come back
/// through one pool once written, so the whole transfer reuses the same few MiB.
async fn transfer(
    client: &Client,
    object: &ObjectVersion,
    parallel: u32,
    options: RestoreOptions,
    expected: Option<ExpectedChecksum>,
    (destination, replaceable): (PathBuf, Option<FileIdentity>),
    context: &StepContext,
) -> Result<(RestoreSummary, FileIdentity), FetchError> {
    let (sender, receiver) = mpsc::channel(s3::DELIVERY_CAPACITY);
    let pool = ChunkPool::new();
    let progress = context.progress.clone();
    let size = object.size;
    let job = RestoreJob {
        location: object.uri(),
        size,
        options,
        expected,
        destination,
        replaceable,
        pool: pool.clone(),
    };
    let restore = tokio::task::spawn_blocking(move || {
        job.run(DownloadReader::new(receiver), &|update: crate::artifact::Progress| {
            progress.bytes(update.bytes_read, Some(size));
        })
    });
    let ((), restored) = tokio::join!(s3::download(client, object, parallel, sender, &pool), restore);
    restored.map_err(|error| FetchError::Task { location: object.uri(), detail: error.to_string() })?
}

/// The blocking half of a fetch: the restore pipeline over the downloaded bytes, and
/// the verdict on the checksum.
struct RestoreJob {
    location: String,
    size: u64,
    /// Without `expected_sha256`: the job checks it itself, so that it can tell a
    /// wrong checksum from a damaged object.
    options: RestoreOptions,
    expected: Option<ExpectedChecksum>,
    destination: PathBuf,
    /// The step's own earlier download at `destination`, the only file it may replace.
    replaceable: Option<FileIdentity>,
    /// Where the download takes its blocks and the pipeline returns them.
    pool: ChunkPool,
}

impl RestoreJob {
    /// Restores into `<destination>.partial`, renamed to the destination only when
    /// the data decoded and its SHA-256 is the expected one, and never over a file that
    /// is not the step's own earlier download. Returns the identity of the file written.
    ///
    /// The pipeline stops at the first decoding failure; the rest of the object is
    /// then still read and hashed, so that the checksum can say whether the object
    /// is damaged (mismatch) or the key or format is wrong (match).
    fn run(
        self,
        download: DownloadReader,
        progress: &(dyn Fn(crate::artifact::Progress) + Sync),
    ) -> Result<(RestoreSummary, FileIdentity), FetchError> {
        let write_error = |source| FetchError::Write {
            location: self.location.clone(),
            destination: self.destination.display().to_string(),
            source: Box::new(source),
        };
        let mut partial = PartialFile::create(&self.destination).map_err(write_error)?;
        let mut source = HashingSource::new(download);
        let restored = restore_chunks(&mut source, &self.pool, &self.options, &mut partial, progress);
        let decoding = match restored {
            Ok(summary) => Ok(summary),
            Err(ArtifactError::ReadInput { bytes, source: read_error }) => {
                return Err(source.source_mut().take_failure().map_or_else(
                    || {
                        FetchError::S3(S3Error::Other {
                            action: "download",
                            location: self.location.clone(),
                            detail: format!("stopped after {bytes} bytes: {read_error}"),
                        })
                    },
                    FetchError::S3,
                ));
            }
            Err(
                error @ (ArtifactError::WriteOutput { .. }
                | ArtifactError::File { .. }
                | ArtifactError::StartThread { .. }),
            ) => {
                return Err(write_error(error));
            }
            Err(error) => Err(error),
        };
        let Some(expected) = &self.expected else {
            return match decoding {
                Ok(summary) => Ok((summary, self.commit(partial)?)),
                Err(source) => {
                    Err(FetchError::Undecodable { location: self.location.clone(), source: Box::new(source) })
                }
            };
        };
        match decoding {
            Ok(summary) if summary.sha256 == expected.digest => Ok((summary, self.commit(partial)?)),
            Ok(summary) => Err(self.mismatch_after_clean_decode(expected, &summary)),
            Err(decode_error) => {
                // Read and hash the rest, so that the checksum can speak.
                loop {
                    match source.next_chunk(&self.pool) {
                        Ok(Some(chunk)) => self.pool.give(chunk),
                        Ok(None) => break,
                        Err(read_error) => {
                            return Err(source.source_mut().take_failure().map_or_else(
                                || {
                                    FetchError::S3(S3Error::Other {
                                        action: "download",
                                        location: self.location.clone(),
                                        detail: read_error.to_string(),
                                    })
                                },
                                FetchError::S3,
                            ));
                        }
                    }
                }
                let actual = source.sha256();
                Err(self.judge_undecodable(expected, actual, decode_error))
            }
        }
    }

    /// Puts the verified file in place, unless another file is there.
    fn commit(&self, partial: PartialFile) -> Result<FileIdentity, FetchError> {
        partial.commit_unless_taken(self.replaceable).map_err(|error| match error {
            ArtifactError::DestinationExists { found, .. } => FetchError::DestinationTaken {
                destination: self.destination.display().to_string(),
                found,
                location: self.location.clone(),
            },
            source => FetchError::Write {
                location: self.location.clone(),
                destination: self.destination.display().to_string(),
                source: Box::new(source),
            },
        })
    }

    /// The object decoded, but its hash is not the expected one.
    fn mismatch_after_clean_decode(
        &self,
        expected: &ExpectedChecksum,
        summary: &RestoreSummary,
    ) -> FetchError {
        let mismatch = self.mismatch(expected, summary.sha256);
        // gzip (CRC-32 and length) and zstd (content checksum, written by default)
        // check their own data; plain or only encrypted data proves nothing.
        match summary.compression {
            format @ (CompressionFormat::Gzip | CompressionFormat::Zstd) => FetchError::WrongChecksum {
                names: expected
                    .other_name
                    .as_ref()
                    .map(|name| format!(" (it names `{name}`)"))
                    .unwrap_or_default(),
                format: format.name(),
                mismatch,
            },
            CompressionFormat::None => FetchError::ChecksumMismatch { mismatch },
        }
    }

    /// The object did not decode; the checksum tells whether it is damaged.
    fn judge_undecodable(
        &self,
        expected: &ExpectedChecksum,
        actual: Sha256Digest,
        source: ArtifactError,
    ) -> FetchError {
        let truncated = matches!(source, ArtifactError::TruncatedCiphertext { .. });
        let source = Box::new(source);
        if actual == expected.digest {
            return FetchError::IntactButUndecodable {
                location: self.location.clone(),
                checksum_location: expected.location.clone(),
                source,
            };
        }
        let mismatch = self.mismatch(expected, actual);
        if truncated {
            FetchError::Truncated { size: self.size, source, mismatch }
        } else {
            FetchError::Corrupt { source, mismatch }
        }
    }

    fn mismatch(&self, expected: &ExpectedChecksum, actual: Sha256Digest) -> Box<Mismatch> {
        Box::new(Mismatch {
            location: self.location.clone(),
            checksum_location: expected.location.clone(),
            expected: expected.digest,
            actual,
        })
    }
}

/// The restore pipeline's input: the blocks the download delivers, in order, handed
/// on as they are. It ends only on [`Delivery::Complete`]; a failed download, or a
/// download that went away (the step was cancelled), is a read error, so that
/// nothing short can pass for the whole object.
struct DownloadReader {
    receiver: mpsc::Receiver<Delivery>,
    state: ReaderState,
    failure: Option<S3Error>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReaderState {
    Open,
    Complete,
    Failed,
    Abandoned,
}

impl DownloadReader {
    fn new(receiver: mpsc::Receiver<Delivery>) -> Self {
        Self { receiver, state: ReaderState::Open, failure: None }
    }

    /// Why the download failed, once.
    fn take_failure(&mut self) -> Option<S3Error> {
        self.failure.take()
    }
}

impl ChunkSource for DownloadReader {
    fn next_chunk(&mut self, _pool: &ChunkPool) -> io::Result<Option<Vec<u8>>> {
        loop {
            match self.state {
                ReaderState::Open => {}
                ReaderState::Complete => return Ok(None),
                ReaderState::Failed => return Err(io::Error::other("the download failed")),
                ReaderState::Abandoned => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the download stopped before the end of the object (the step was cancelled)",
                    ));
                }
            }
            match self.receiver.blocking_recv() {
                Some(Delivery::Data(block)) => return Ok(Some(block)),
                Some(Delivery::Complete) => self.state = ReaderState::Complete,
                Some(Delivery::Failed(error)) => {
                    self.failure = Some(error);
                    self.state = ReaderState::Failed;
                }
                None => self.state = ReaderState::Abandoned,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_local_file_after_the_key() {
        assert_eq!(local_name("postgres/x.sql.gz.enc", true, true), "x.sql");
        assert_eq!(local_name("postgres/x.sql.gz.enc", false, true), "x.sql.gz.enc");
        assert_eq!(local_name("postgres/x.sql.gz.enc", true, false), "x.sql.gz");
        assert_eq!(local_name("dump.tar.zst", false, true), "dump.tar");
        assert_eq!(local_name("a/b/", true, true), "object");
        assert_eq!(local_name(".enc", true, true), "object");
    }

    #[test]
    fn makes_hostile_key_segments_safe_file_names() {
        assert_eq!(local_name("evil/journal.jsonl", true, true), "journal.jsonl");
        assert_eq!(local_name("../../escape", true, true), "escape");
        for key in ["..", "a/..", ".", "a/.", "evil/", "", "a/...", "x/.gz"] {
            assert_eq!(local_name(key, true, true), "object", "{key:?}");
        }
        assert_eq!(local_name("evil/.bashrc", false, false), "bashrc");
        assert_eq!(local_name("evil/..hidden.gz", true, true), "hidden");
        assert_eq!(local_name("evil/a\0b\nc\u{7f}d\u{1b}[31m", false, false), "a_b_c_d_[31m");
        let long = format!("p/{}", "é".repeat(300));
        let name = local_name(&long, false, false);
        assert!(name.len() <= MAXIMUM_NAME_BYTES && name.len() >= MAXIMUM_NAME_BYTES - 1, "{}", name.len());
        assert!(name.chars().all(|character| character == 'é'));
    }

    #[test]
    fn auto_follows_the_suffix_the_key_names() {
        assert_eq!(decompression(Compression::Auto, "db/x.sql.gz.enc"), Decompression::Gzip);
        assert_eq!(decompression(Compression::Auto, "db/x.sql.gzip"), Decompression::Gzip);
        assert_eq!(decompression(Compression::Auto, "db/x.tar.zst.enc"), Decompression::Zstd);
        assert_eq!(decompression(Compression::Auto, "db/x.dump.enc"), Decompression::Auto);
        assert_eq!(decompression(Compression::Auto, "db.gz/x.dump"), Decompression::Auto);
        assert_eq!(decompression(Compression::None, "db/x.sql.gz.enc"), Decompression::None);
        assert_eq!(decompression(Compression::Zstd, "db/x.sql.gz"), Decompression::Zstd);
    }

    #[test]
    fn skips_sidecars_and_markers_when_choosing_latest() {
        assert!(is_backup_candidate("postgres/x.sql.gz.enc"));
        for key in ["postgres/x.sql.gz.enc.sha256", "postgres/x.sql.gz.enc.meta", "x.partial", "postgres/"] {
            assert!(!is_backup_candidate(key), "{key}");
        }
    }

    fn object(last_modified: DateTime<Utc>) -> ObjectVersion {
        ObjectVersion { bucket: "b".into(), key: "k".into(), size: 1, etag: None, last_modified }
    }

    #[test]
    fn refuses_a_backup_older_than_the_rpo() {
        let now = Utc::now();
        let old = object(now - chrono::Duration::hours(7));
        let age = age_of(&old, now);
        assert_eq!(age, Duration::from_secs(7 * 3600));
        let error = check_rpo(&old, age, Some(Duration::from_secs(6 * 3600))).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("is 7h old") && message.contains("RPO of 6h"), "{message}");
        assert!(check_rpo(&old, age, Some(Duration::from_secs(8 * 3600))).is_ok());
        assert!(check_rpo(&old, age, None).is_ok());
        // A clock ahead of ours is not an age.
        assert_eq!(age_of(&object(now + chrono::Duration::minutes(5)), now), Duration::ZERO);
    }

    #[test]
    fn reader_ends_only_on_complete() {
        let pool = ChunkPool::new();
        let (sender, receiver) = mpsc::channel(4);
        sender.try_send(Delivery::Data(b"hello ".to_vec())).unwrap();
        sender.try_send(Delivery::Data(b"world".to_vec())).unwrap();
        sender.try_send(Delivery::Complete).unwrap();
        let mut reader = HashingSource::new(DownloadReader::new(receiver));
        let mut text = Vec::new();
        while let Some(chunk) = reader.next_chunk(&pool).unwrap() {
            text.extend_from_slice(&chunk);
        }
        assert_eq!(text, b"hello world");
        assert_eq!(reader.sha256(), Sha256Digest::of(b"hello world"));

        let (sender, receiver) = mpsc::channel(4);
        sender.try_send(Delivery::Data(b"half".to_vec())).unwrap();
        drop(sender);
        let mut reader = DownloadReader::new(receiver);
        assert_eq!(reader.next_chunk(&pool).unwrap().unwrap(), b"half");
        let error = reader.next_chunk(&pool).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
