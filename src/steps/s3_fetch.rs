//! `s3.fetch`: download, verify, decrypt and decompress a backup in one streaming pass.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Compression, Encryption, KindInfo, OutputInfo, Params};

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
    /// A file or a directory to write to (default: the run's directory).
    pub dest: Option<String>,
    /// Where the expected SHA-256 comes from: the `<key>.sha256` sidecar, the
    /// `<key>.meta` JSON, or `none` (lint warns).
    #[serde(default)]
    pub checksum: ChecksumSource,
    /// Decrypt an `openssl enc -aes-256-cbc -pbkdf2` object.
    pub decrypt: Option<Encryption>,
    /// Decompress: `auto` detects gzip or zstd by magic bytes.
    #[serde(default)]
    pub decompress: Compression,
    /// A custom S3 endpoint (path-style addressing), e.g. MinIO. Default: the AWS
    /// chain, including `AWS_ENDPOINT_URL_S3`.
    pub endpoint: Option<String>,
    /// The region (default: the AWS chain).
    pub region: Option<String>,
    /// Ranged GETs in flight for large objects.
    #[serde(default = "default_parallel")]
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

/// What `s3.fetch` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "Fetch an object (or the newest under a prefix) and verify, decrypt and decompress it in one pass.",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: &[
        OutputInfo { name: "path", description: "the local file written" },
        OutputInfo { name: "key", description: "the object key fetched (resolved when `latest`)" },
        OutputInfo { name: "bytes", description: "bytes written after decryption and decompression" },
        OutputInfo { name: "sha256", description: "SHA-256 of the object as stored" },
        OutputInfo { name: "last_modified", description: "the object's Last-Modified (RFC 3339)" },
        OutputInfo {
            name: "age",
            description: "seconds between Last-Modified and the fetch: the data's RPO",
        },
    ],
    preflight: "the bucket and object exist, and the object is younger than `objectives.rpo`",
    notes: "The destination is written as `<dest>.partial` and renamed only once the checksum matched, \
            so a corrupt or truncated backup never looks like a finished file and nothing downstream starts.",
    example: "- id: fetch\n  kind: s3.fetch\n  with:\n    bucket: festivals-backups\n    key: latest\n    prefix: postgres/\n    decrypt: { format: openssl-pbkdf2, key: \"{{secrets.backup_key}}\" }\n",
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
