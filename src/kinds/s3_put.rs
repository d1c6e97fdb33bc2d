//! `s3.put`: upload an artifact with its `.sha256` and `.meta` sidecars.

use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use chrono::{DateTime, SubsecRound, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::clients::s3::{self, S3Error};
use super::{KindInfo, Params, Preflight, StepContext, StepError, StepOutputs, step_outputs};
use crate::artifact::{
    ArtifactError, BackupMetadata, CompressionFormat, ENCRYPTION_ALGORITHM_AES_256_CBC, OPENSSL_MAGIC,
    Sha256Digest, checksum_for_object, checksum_sidecar_line, detect_compression,
};

/// Parameters of `s3.put`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// The local file to upload.
    pub path: String,
    /// Also upload `<key>.sha256` (sha256sum format) and `<key>.meta` (JSON).
    #[serde(default = "super::shared::default_true")]
    pub sidecars: bool,
    /// A custom S3 endpoint (path-style addressing).
    pub endpoint: Option<String>,
    /// The region.
    pub region: Option<String>,
}

step_outputs! {
    /// Outputs of `s3.put`.
    pub struct S3PutOutputs {
        /// the object key
        pub key: String,
        /// bytes uploaded
        pub bytes: u64,
        /// SHA-256 of the uploaded bytes
        pub sha256: String,
        /// s3://bucket/key
        pub uri: String,
    }
}

/// What `s3.put` declares.
pub const INFO: KindInfo = KindInfo {
    name: "s3.put",
    argv_parameters: &[],
    summary: "Upload an artifact with its .sha256 and .meta JSON sidecars.",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: S3PutOutputs::DECLARED,
    preflight: "the bucket exists and the file is readable",
    notes: "The file is read once: hashed while it is uploaded (one PutObject up to 8 MiB, a multipart \
            upload with parts in flight above, aborted on failure). Then `<key>.sha256` (one line in \
            `sha256sum` format naming the key's last component, so `sha256sum -c` works next to a \
            download) and `<key>.meta` (JSON) are uploaded, in that order, so a reader never finds a \
            sidecar without its object.\n\n\
            When `<path>.meta` exists beside the file (the backup scripts write one), it is uploaded with \
            the computed `sha256` added; otherwise the `.meta` describes the artifact as stored: \
            `timestamp` is the file's modification time, `size_bytes` its size, `encrypted` is read \
            from openssl's `Salted__` header. When `<path>.sha256` exists, the file must still match \
            it, or no sidecar is uploaded and the step fails (a fetch then refuses the object).",
    example: "- id: upload\n  kind: s3.put\n  with: { bucket: dharma-backups, key: \"database/{{steps.dump.outputs.name}}\", path: \"{{steps.dump.outputs.path}}\" }\n",
    object_keys: &["key"],
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<S3PutOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `s3.put` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(preflight(super::parameters(with)?).await) }),
    undo: None,
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let mut sentence =
        format!("upload {} to s3://{}/{}", with.text("path"), with.text("bucket"), with.text("key"));
    if with.flag("sidecars", true) {
        sentence.push_str(" with .sha256 and .meta sidecars");
    }
    sentence
}

/// Why `s3.put` failed.
#[derive(Debug, thiserror::Error)]
enum PutError {
    /// Talking to S3 failed.
    #[error(transparent)]
    S3(#[from] S3Error),
    /// The file is not there or not a file.
    #[error("cannot upload {path}: {detail}; check `path` (usually an earlier step's output)")]
    File { path: String, detail: String },
    /// A local sidecar beside the file cannot be read.
    #[error("{path}: {source}")]
    LocalSidecar { path: String, source: ArtifactError },
    /// The file no longer matches the checksum written when it was made.
    #[error(
        "{path} does not match {sidecar}: it was {expected} when the backup was made and is {actual} \
         now; the file changed or is damaged. It was uploaded to {location} without sidecars, so \
         fetches with a checksum refuse it; make the backup again"
    )]
    ChangedSinceBackup {
        path: String,
        sidecar: String,
        expected: Sha256Digest,
        actual: Sha256Digest,
        location: String,
    },
}

/// Runs `s3.put` with a client built from the AWS chain, `endpoint` and `region`.
///
/// # Errors
/// [`StepError::Failed`] naming the file or object and what to do.
pub async fn run(parameters: Parameters, context: &StepContext) -> Result<S3PutOutputs, StepError> {
    let client = s3::connect(parameters.endpoint.as_deref(), parameters.region.as_deref()).await;
    run_with_client(parameters, context, &client).await
}

/// Runs `s3.put` with a client the caller built.
///
/// # Errors
/// [`StepError::Failed`] naming the file or object and what to do.
pub async fn run_with_client(
    parameters: Parameters,
    context: &StepContext,
    client: &Client,
) -> Result<S3PutOutputs, StepError> {
    put(parameters, context, client)
        .await
        .map_err(|error| StepError::Failed(context.redactor.redact(&error.to_string())))
}

/// Checks that the file is readable and the bucket exists.
pub async fn preflight(parameters: Parameters) -> Preflight {
    let client = s3::connect(parameters.endpoint.as_deref(), parameters.region.as_deref()).await;
    preflight_with_client(parameters, &client).await
}

/// [`preflight`] with a client the caller built.
pub async fn preflight_with_client(parameters: Parameters, client: &Client) -> Preflight {
    let path = PathBuf::from(&parameters.path);
    let size = match tokio::fs::File::open(&path).await {
        Ok(file) => match file.metadata().await {
            Ok(metadata) if metadata.is_file() => metadata.len(),
            Ok(_) => return Preflight::Failed(format!("{} is not a file", path.display())),
            Err(error) => return Preflight::Failed(format!("cannot read {}: {error}", path.display())),
        },
        Err(error) => return Preflight::Failed(format!("cannot read {}: {error}", path.display())),
    };
    let bucket = &parameters.bucket;
    match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => Preflight::Passed(format!(
            "{} is readable ({size} bytes) and bucket `{bucket}` exists",
            path.display()
        )),
        Err(error) => {
            let location = format!("s3://{bucket}");
            Preflight::Failed(
                match s3::request_error(&error, "read", "s3:ListBucket", bucket, &location) {
                    S3Error::NotFound { location } => {
                        S3Error::NoSuchBucket { bucket: bucket.clone(), location }.to_string()
                    }
                    other => other.to_string(),
                },
            )
        }
    }
}

async fn put(
    parameters: Parameters,
    context: &StepContext,
    client: &Client,
) -> Result<S3PutOutputs, PutError> {
    let path = PathBuf::from(&parameters.path);
    let (bucket, key) = (parameters.bucket.as_str(), parameters.key.as_str());
    let location = s3::uri(bucket, key);
    let file_error = |detail: String| PutError::File { path: path.display().to_string(), detail };
    let metadata = tokio::fs::metadata(&path).await.map_err(|error| file_error(error.to_string()))?;
    if !metadata.is_file() {
        return Err(file_error("it is not a regular file".to_owned()));
    }
    let header = read_header(&path).await.map_err(|error| file_error(error.to_string()))?;
    // Read before the upload, so that a bad local sidecar fails before anything is sent.
    let local_sidecar = read_local(&sidecar_path(&path, "sha256")).await;
    let local_meta = read_local(&sidecar_path(&path, "meta")).await;

    context.progress.note(format!("uploading {} to {location}", path.display()));
    let progress = context.progress.clone();
    let uploaded = s3::upload_file(client, bucket, key, &path, &move |done, total| {
        progress.bytes(done, Some(total));
    })
    .await?;

    if parameters.sidecars {
        if let Some(text) = &local_sidecar {
            let sidecar = sidecar_path(&path, "sha256").display().to_string();
            let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            let expected = checksum_for_object(text, &name)
                .map_err(|source| PutError::LocalSidecar { path: sidecar.clone(), source })?;
            if expected != uploaded.sha256 {
                return Err(PutError::ChangedSinceBackup {
                    path: path.display().to_string(),
                    sidecar,
                    expected,
                    actual: uploaded.sha256,
                    location,
                });
            }
        }
        let name = key.rsplit('/').next().unwrap_or(key);
        s3::put_text(
            client,
            bucket,
            &format!("{key}.sha256"),
            checksum_sidecar_line(&uploaded.sha256, name),
            "text/plain",
        )
        .await?;
        let metadata = match &local_meta {
            Some(text) => {
                let mut described = BackupMetadata::parse(text).map_err(|source| PutError::LocalSidecar {
                    path: sidecar_path(&path, "meta").display().to_string(),
                    source,
                })?;
                described.sha256 = Some(uploaded.sha256);
                described
            }
            None => describe_artifact(&header, uploaded.bytes, uploaded.sha256, modified_time(&metadata)),
        };
        s3::put_text(
            client,
            bucket,
            &format!("{key}.meta"),
            metadata.to_json_pretty(),
            "application/json",
        )
        .await?;
    }

    Ok(S3PutOutputs {
        key: key.to_owned(),
        bytes: uploaded.bytes,
        sha256: uploaded.sha256.to_hex(),
        uri: location,
    })
}

/// `<path>.<extension>`.
fn sidecar_path(path: &Path, extension: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

/// A small local file's text, or `None` when it is absent (or too big to be a sidecar).
async fn read_local(path: &Path) -> Option<String> {
    let metadata = tokio::fs::metadata(path).await.ok()?;
    if !metadata.is_file() || metadata.len() > s3::SMALL_OBJECT_LIMIT as u64 {
        return None;
    }
    tokio::fs::read_to_string(path).await.ok()
}

/// The first bytes of the file, enough to recognise openssl's header and compression magic.
async fn read_header(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut header = Vec::with_capacity(16);
    tokio::fs::File::open(path).await?.take(16).read_to_end(&mut header).await?;
    Ok(header)
}

fn modified_time(metadata: &std::fs::Metadata) -> DateTime<Utc> {
    metadata.modified().map_or_else(|_| Utc::now(), DateTime::<Utc>::from).trunc_subsecs(0)
}

/// A `.meta` for an artifact dr-plan did not make: what can be read from the file.
fn describe_artifact(
    header: &[u8],
    bytes: u64,
    sha256: Sha256Digest,
    timestamp: DateTime<Utc>,
) -> BackupMetadata {
    let encrypted = header.starts_with(OPENSSL_MAGIC);
    let compressed = !encrypted && detect_compression(header) != CompressionFormat::None;
    BackupMetadata {
        timestamp,
        database: None,
        size_bytes: bytes,
        compressed_size: compressed.then_some(bytes),
        encrypted,
        encryption_algorithm: encrypted.then(|| ENCRYPTION_ALGORITHM_AES_256_CBC.to_owned()),
        retention_days: None,
        backup_type: None,
        sha256: Some(sha256),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_what_the_file_shows() {
        let time = DateTime::parse_from_rfc3339("2025-11-16T02:00:00Z").unwrap().with_timezone(&Utc);
        let digest = Sha256Digest::of(b"x");
        let encrypted = describe_artifact(b"Salted__12345678", 64, digest, time);
        assert!(encrypted.encrypted);
        assert_eq!(encrypted.encryption_algorithm.as_deref(), Some("aes-256-cbc"));
        assert_eq!(encrypted.compressed_size, None);
        let gzip = describe_artifact(&[0x1f, 0x8b, 8, 0], 10, digest, time);
        assert!(!gzip.encrypted);
        assert_eq!(gzip.compressed_size, Some(10));
        assert_eq!(gzip.sha256, Some(digest));
        assert_eq!(BackupMetadata::parse(&gzip.to_json_pretty()).unwrap(), gzip);
        assert_eq!(
            sidecar_path(Path::new("/tmp/a.sql.gz.enc"), "sha256"),
            Path::new("/tmp/a.sql.gz.enc.sha256")
        );
    }
}
