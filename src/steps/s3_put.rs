//! `s3.put`: upload an artifact with its `.sha256` and `.meta` sidecars.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, OutputInfo, Params};

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

/// What `s3.put` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "Upload an artifact with its .sha256 and .meta JSON sidecars.",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: &[
        OutputInfo { name: "key", description: "the object key" },
        OutputInfo { name: "bytes", description: "bytes uploaded" },
        OutputInfo { name: "sha256", description: "SHA-256 of the uploaded bytes" },
        OutputInfo { name: "uri", description: "s3://bucket/key" },
    ],
    preflight: "the bucket exists and the file is readable",
    notes: "",
    example: "- id: upload\n  kind: s3.put\n  with: { bucket: dharma-backups, key: \"database/{{steps.dump.outputs.name}}\", path: \"{{steps.dump.outputs.path}}\" }\n",
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
