//! `s3.fetch`: download, verify, decrypt and decompress a backup in one streaming pass.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use schemars::JsonSchema;
use serde::Deserialize;

pub use super::s3_object::ChecksumSource;
use super::s3_object::{FetchError, ObjectSource, base_name, check_before_download, choose};
use super::{
    Compression, Encryption, KindInfo, Params, Preflight, PreflightContext, StepContext, StepError,
    StepOutputs, step_outputs,
};
use crate::artifact::{ArtifactError, FileIdentity, PartialFile, describe_file_type};
use crate::clients::s3::{self, ObjectVersion};
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
    #[serde(default = "super::s3_object::default_parallel")]
    #[schemars(range(min = 1, max = 16))]
    pub parallel: u32,
}

impl Parameters {
    /// The object and how to decode it (what `pg.restore`'s `from_s3` takes too), and `dest`.
    fn into_parts(self) -> (ObjectSource, Option<String>) {
        let Parameters { bucket, key, prefix, dest, checksum, decrypt, decompress, endpoint, region, parallel } =
            self;
        (ObjectSource { bucket, key, prefix, checksum, decrypt, decompress, endpoint, region, parallel }, dest)
    }
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
    object_keys: &["key"],
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
    format!(
        "fetch {}{} into {}",
        super::s3_object::describe_object(with),
        super::s3_object::describe_decoding(with),
        with.text_or("dest", "the run directory")
    )
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
    fetch(parameters, context, client).await.map_err(|error| {
        let message = context.redactor.redact(&error.to_string());
        if error.is_final() { StepError::Final(message) } else { StepError::Failed(message) }
    })
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
    let (source, _) = parameters.into_parts();
    match check_before_download(&source, context.rpo, client).await {
        Ok((object, age)) => {
            let objective = context
                .rpo
                .map(|rpo| format!(", within the RPO of {}", format_duration(rpo)))
                .unwrap_or_default();
            let checksum = match source.checksum {
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

async fn fetch(
    parameters: Parameters,
    context: &StepContext,
    client: &Client,
) -> Result<S3FetchOutputs, FetchError> {
    let (source, dest) = parameters.into_parts();
    let chosen = choose(&source, context.rpo, client).await?;
    let object = chosen.object.clone();
    let destination = destination(&source, dest.as_deref(), &object.key, &context.run_dir).await?;
    let record_path = record_path(&context.run_dir, &context.step_id);
    let replaceable = replaceable_download(&record_path, &object, &destination).await?;
    context.progress.note(format!("downloading {}", object.uri()));
    let (target, location) = (destination.clone(), object.uri());
    let (summary, identity) = chosen
        .transfer(client, context, move |decoding| {
            let shown = target.display().to_string();
            let write_error = |source| FetchError::Write {
                location: location.clone(),
                destination: shown.clone(),
                source: Box::new(source),
            };
            let mut partial = PartialFile::create(&target).map_err(write_error)?;
            let summary = decoding.decode_into(&mut partial, &shown)?;
            let identity = commit(partial, replaceable, &location, &shown)?;
            Ok((summary, identity))
        })
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
        age: chosen.age.as_secs(),
    })
}

/// Puts the verified file in place, unless another file than the step's own earlier
/// download (`replaceable`) is there.
fn commit(
    partial: PartialFile,
    replaceable: Option<FileIdentity>,
    location: &str,
    destination: &str,
) -> Result<FileIdentity, FetchError> {
    partial.commit_unless_taken(replaceable).map_err(|error| match error {
        ArtifactError::DestinationExists { found, .. } => FetchError::DestinationTaken {
            destination: destination.to_owned(),
            found,
            location: location.to_owned(),
        },
        source => FetchError::Write {
            location: location.to_owned(),
            destination: destination.to_owned(),
            source: Box::new(source),
        },
    })
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
async fn destination(
    source: &ObjectSource,
    dest: Option<&str>,
    key: &str,
    run_dir: &Path,
) -> Result<PathBuf, FetchError> {
    let name = local_name(key, source.decrypt.is_some(), source.decompress != Compression::None);
    let (directory, file) = match dest {
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
}
