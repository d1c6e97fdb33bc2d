//! What `s3.fetch` and `pg.restore`'s `from_s3` share: the object to read (a key, or the
//! newest under a prefix), the checks made before anything is downloaded (the RPO, the
//! checksum's sidecar or `.meta`), and the download decoded in one streaming pass —
//! SHA-256, openssl decryption, gzip/zstd decompression — into any writer, with a
//! verdict that tells a corrupt or truncated object from a wrong key or a wrong checksum.

use std::io::{self, Write};
use std::time::Duration;

use aws_sdk_s3::Client;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{Compression, Encryption, Params, StepContext};
use crate::artifact::{
    ArtifactError, BackupMetadata, ChunkPool, ChunkSource, CompressionFormat, Decompression, EncryptionKey,
    HashingSource, Password, Progress, RestoreOptions, RestoreSummary, Sha256Digest, checksum_for_object,
    parse_checksum_sidecar, restore_chunks,
};
use crate::clients::s3::{self, Delivery, ObjectVersion, S3Error};
use crate::lang::duration::format_duration;

/// A backup object in S3 and how to decode it: `from_s3` of `pg.restore`, and the
/// parameters of `s3.fetch` but `dest`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectSource {
    /// The bucket.
    pub bucket: String,
    /// An object key, or `latest` for the newest object under `prefix` (sidecars
    /// `.sha256` and `.meta` are never chosen).
    pub key: String,
    /// Where to look for `latest`, e.g. `postgres/`.
    #[serde(default)]
    pub prefix: String,
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

pub(super) fn default_parallel() -> u32 {
    4
}

/// The object, for a dry-run sentence: `s3://bucket/key`, or the newest under the prefix.
pub(super) fn describe_object(with: &Params<'_>) -> String {
    let bucket = with.text("bucket");
    let key = with.text("key");
    if key == "latest" {
        format!("the newest object under s3://{bucket}/{}", with.text_or("prefix", ""))
    } else {
        format!("s3://{bucket}/{key}")
    }
}

/// What is done to the object on the way, for a dry-run sentence: `, verify its SHA-256
/// against the .sha256 sidecar, decrypt (…), decompress (…)`.
pub(super) fn describe_decoding(with: &Params<'_>) -> String {
    let mut sentence = String::new();
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
    sentence
}

/// At most this many pages of 1000 keys are listed to find `latest`.
const MAXIMUM_LIST_PAGES: u32 = 100;

/// Why reading a backup object failed (`s3.fetch`, `pg.restore` with `from_s3`). Each
/// message names the object and says what to do.
#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
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

impl FetchError {
    /// Whether the object itself is bad (corrupt, truncated, undecodable, or its
    /// checksum wrong): fetching it again gives the same bytes, so a retry cannot help.
    pub(super) fn is_final(&self) -> bool {
        matches!(
            self,
            FetchError::Truncated { .. }
                | FetchError::Corrupt { .. }
                | FetchError::WrongChecksum { .. }
                | FetchError::ChecksumMismatch { .. }
                | FetchError::IntactButUndecodable { .. }
                | FetchError::Undecodable { .. }
        )
    }
}

/// An object whose SHA-256 is not the expected one.
#[derive(Debug)]
pub(super) struct Mismatch {
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

/// The object to fetch and its age, after the checks that need no download: it
/// exists, it is younger than the RPO, and its sidecar or `.meta` exists.
pub(super) async fn check_before_download(
    parameters: &ObjectSource,
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
async fn resolve(client: &Client, parameters: &ObjectSource) -> Result<ObjectVersion, FetchError> {
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
            let (Some(key), Some(last_modified)) = (entry.key(), entry.last_modified().and_then(s3::to_utc))
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

pub(super) fn base_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The object chosen and checked before anything is downloaded, with what decoding it
/// needs.
pub(super) struct Chosen {
    /// The object (resolved when `latest`).
    pub(super) object: ObjectVersion,
    /// How long ago it was written: the data's RPO.
    pub(super) age: Duration,
    parallel: u32,
    /// Without `expected_sha256`: the decoding checks it itself, so that it can tell
    /// a wrong checksum from a damaged object.
    options: RestoreOptions,
    expected: Option<ExpectedChecksum>,
}

/// Chooses the object and checks what can be checked before downloading it: `parallel`
/// in range, a usable decryption key, the object there (the newest under `prefix` for
/// `latest`), younger than the RPO, and its expected checksum read.
///
/// # Errors
/// The first check that fails, naming the object and what to do.
pub(super) async fn choose(
    source: &ObjectSource,
    rpo: Option<Duration>,
    client: &Client,
) -> Result<Chosen, FetchError> {
    let parallel = check_parallel(source.parallel)?;
    let decrypt = source
        .decrypt
        .as_ref()
        .map(|decrypt| {
            EncryptionKey::new(Password::new(decrypt.key.clone().into_bytes()), decrypt.iterations)
        })
        .transpose()
        .map_err(|source| FetchError::Key { source: Box::new(source) })?;
    let object = resolve(client, source).await?;
    let age = age_of(&object, Utc::now());
    check_rpo(&object, age, rpo)?;
    let expected = expected_checksum(client, &object, source.checksum).await?;
    let options = RestoreOptions {
        expected_sha256: None,
        decrypt,
        decompress: decompression(source.decompress, &object.key),
    };
    Ok(Chosen { object, age, parallel, options, expected })
}

impl Chosen {
    /// Downloads the object while `decode` runs on a blocking thread over its bytes
    /// ([`Decoding::decode_into`]), joined by a bounded channel of 512 KiB blocks. The
    /// blocks enter the pipeline as they are, and come back through one pool once
    /// written, so the whole transfer reuses the same few MiB.
    ///
    /// # Errors
    /// What `decode` returns, or [`FetchError::Task`] when its thread died.
    pub(super) async fn transfer<T: Send + 'static>(
        &self,
        client: &Client,
        context: &StepContext,
        decode: impl FnOnce(Decoding) -> Result<T, FetchError> + Send + 'static,
    ) -> Result<T, FetchError> {
        let (sender, receiver) = mpsc::channel(s3::DELIVERY_CAPACITY);
        let pool = ChunkPool::new();
        let progress = context.progress.clone();
        let size = self.object.size;
        let decoding = Decoding {
            download: DownloadReader::new(receiver),
            location: self.object.uri(),
            size,
            options: self.options.clone(),
            expected: self.expected.clone(),
            pool: pool.clone(),
            progress: Box::new(move |update: Progress| progress.bytes(update.bytes_read, Some(size))),
        };
        let restore = tokio::task::spawn_blocking(move || decode(decoding));
        let ((), restored) =
            tokio::join!(s3::download(client, &self.object, self.parallel, sender, &pool), restore);
        restored
            .map_err(|error| FetchError::Task { location: self.object.uri(), detail: error.to_string() })?
    }
}

/// The blocking half of a transfer: the downloaded bytes, the restore pipeline over
/// them, and the verdict on the checksum.
pub(super) struct Decoding {
    download: DownloadReader,
    /// `s3://bucket/key`.
    location: String,
    size: u64,
    options: RestoreOptions,
    expected: Option<ExpectedChecksum>,
    /// Where the download takes its blocks and the pipeline returns them.
    pool: ChunkPool,
    progress: Box<dyn Fn(Progress) + Send + Sync>,
}

impl Decoding {
    /// Hashes, decrypts and decompresses the object into `output` (named `destination`
    /// in errors), and returns what was read and written once its SHA-256 is the
    /// expected one. `output` has received everything by then: whoever reads it must
    /// not take it as good before this returns `Ok`.
    ///
    /// The pipeline stops at the first decoding failure; the rest of the object is
    /// then still read and hashed, so that the checksum can say whether the object
    /// is damaged (mismatch) or the key or format is wrong (match).
    ///
    /// # Errors
    /// The download failed, `output` refused the data, or the object is damaged, was
    /// checked against a wrong checksum, or does not decode.
    pub(super) fn decode_into<W: Write>(
        self,
        output: W,
        destination: &str,
    ) -> Result<RestoreSummary, FetchError> {
        let Decoding { download, location, size, options, expected, pool, progress } = self;
        let verdict = Verdict { location, size };
        let write_error = |source| FetchError::Write {
            location: verdict.location.clone(),
            destination: destination.to_owned(),
            source: Box::new(source),
        };
        let mut source = HashingSource::new(download);
        let restored = restore_chunks(&mut source, &pool, &options, output, &*progress);
        let decoding = match restored {
            Ok(summary) => Ok(summary),
            Err(ArtifactError::ReadInput { bytes, source: read_error }) => {
                return Err(source.source_mut().take_failure().map_or_else(
                    || {
                        FetchError::S3(S3Error::Other {
                            action: "download",
                            location: verdict.location.clone(),
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
        let Some(expected) = &expected else {
            return decoding.map_err(|source| FetchError::Undecodable {
                location: verdict.location.clone(),
                source: Box::new(source),
            });
        };
        match decoding {
            Ok(summary) if summary.sha256 == expected.digest => Ok(summary),
            Ok(summary) => Err(verdict.mismatch_after_clean_decode(expected, &summary)),
            Err(decode_error) => {
                // Read and hash the rest, so that the checksum can speak.
                loop {
                    match source.next_chunk(&pool) {
                        Ok(Some(chunk)) => pool.give(chunk),
                        Ok(None) => break,
                        Err(read_error) => {
                            return Err(source.source_mut().take_failure().map_or_else(
                                || {
                                    FetchError::S3(S3Error::Other {
                                        action: "download",
                                        location: verdict.location.clone(),
                                        detail: read_error.to_string(),
                                    })
                                },
                                FetchError::S3,
                            ));
                        }
                    }
                }
                let actual = source.sha256();
                Err(verdict.judge_undecodable(expected, actual, decode_error))
            }
        }
    }
}

/// What the verdict on a decoded object needs to name it.
struct Verdict {
    /// `s3://bucket/key`.
    location: String,
    /// Its size as stored.
    size: u64,
}

impl Verdict {
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
