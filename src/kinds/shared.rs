//! Parameter types several kinds share.

use schemars::JsonSchema;
use serde::Deserialize;

/// The only encryption format backups use today: `openssl enc -aes-256-cbc -pbkdf2`.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
pub enum EncryptionFormat {
    /// `Salted__` + salt + AES-256-CBC, key and IV from PBKDF2-HMAC-SHA256.
    #[serde(rename = "openssl-pbkdf2")]
    OpensslPbkdf2,
}

/// How an artifact is (or is to be) encrypted.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// The format; only `openssl-pbkdf2` (what `openssl enc -aes-256-cbc -pbkdf2` writes).
    pub format: EncryptionFormat,
    /// The passphrase, usually `{{secrets.backup_key}}` (a key file's first line).
    pub key: String,
    /// PBKDF2 iterations (`openssl enc -iter`); openssl's default is 10000.
    #[serde(default = "default_iterations")]
    #[schemars(range(min = 1))]
    pub iterations: u32,
}

fn default_iterations() -> u32 {
    10_000
}

/// A compression algorithm, or `auto` to detect it from the data's magic bytes.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Detect gzip or zstd by magic bytes; otherwise leave as is.
    #[default]
    Auto,
    /// gzip (what `gzip` writes).
    Gzip,
    /// zstd (what `zstd` writes).
    Zstd,
    /// No compression.
    None,
}

pub(crate) fn default_true() -> bool {
    true
}

/// The preflight of a kind that only calls a URL: the URL in parameter `key` parses.
pub(super) fn url_preflight(with: &serde_json::Value, key: &str) -> super::Preflight {
    match with.get(key).and_then(serde_json::Value::as_str).map(reqwest::Url::parse) {
        Some(Ok(url)) => super::Preflight::Passed(format!("{} URL parses ({})", key, url.scheme())),
        Some(Err(error)) => super::Preflight::Failed(format!("`{key}` is not a URL: {error}")),
        None => super::Preflight::Failed(format!("`{key}` is missing")),
    }
}
