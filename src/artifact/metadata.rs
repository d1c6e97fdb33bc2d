//! The `.meta` JSON written beside a backup: the fields of the Dharma backup script plus
//! the `sha256` of the stored bytes that dr-plan adds.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::backup::{BackupOptions, BackupSummary};
use super::checksum::Sha256Digest;
use super::error::ArtifactError;

/// The algorithm name the Dharma scripts record for openssl's AES-256-CBC.
pub const ENCRYPTION_ALGORITHM_AES_256_CBC: &str = "aes-256-cbc";

/// A backup's metadata document.
///
/// Only `timestamp` and `size_bytes` are required when reading; other tools' extra
/// fields are ignored, since this is a file dr-plan reads but does not own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupMetadata {
    /// When the backup was taken (RFC 3339, e.g. `2025-11-16T02:00:00Z`).
    pub timestamp: DateTime<Utc>,
    /// The database dumped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Size of the plain dump, before compression and encryption.
    pub size_bytes: u64,
    /// Size after compression (before encryption); absent when not compressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_size: Option<u64>,
    /// Whether the stored object is encrypted.
    #[serde(default)]
    pub encrypted: bool,
    /// The cipher, `aes-256-cbc` for openssl-compatible encryption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_algorithm: Option<String>,
    /// How long the backup is meant to be kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// `full` for the Dharma dumps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_type: Option<String>,
    /// SHA-256 of the stored object, which dr-plan writes so that `checksum: meta` works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Digest>,
}

impl BackupMetadata {
    /// Reads a `.meta` document.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidMetadata`] with serde's line, column and reason.
    pub fn parse(text: &str) -> Result<Self, ArtifactError> {
        serde_json::from_str(text).map_err(|source| ArtifactError::InvalidMetadata { source })
    }

    /// The `sha256` field, for `checksum: meta`.
    ///
    /// # Errors
    /// [`ArtifactError::MetadataWithoutChecksum`] when the document has none, as the
    /// Dharma backup script's documents do not.
    pub fn expected_sha256(&self) -> Result<Sha256Digest, ArtifactError> {
        self.sha256.ok_or(ArtifactError::MetadataWithoutChecksum)
    }

    /// Describes what [`backup_stream`](super::backup_stream) produced with `options`,
    /// taken at `timestamp` (kept to whole seconds, like the Dharma script writes it).
    /// `database` and `retention_days` are the caller's to fill in.
    #[must_use]
    pub fn describe(summary: &BackupSummary, options: &BackupOptions, timestamp: DateTime<Utc>) -> Self {
        let encrypted = options.encrypt.is_some();
        Self {
            timestamp: timestamp.trunc_subsecs(0),
            database: None,
            size_bytes: summary.bytes_in,
            compressed_size: summary.compressed_bytes,
            encrypted,
            encryption_algorithm: encrypted.then(|| ENCRYPTION_ALGORITHM_AES_256_CBC.to_owned()),
            retention_days: None,
            backup_type: Some("full".to_owned()),
            sha256: Some(summary.sha256),
        }
    }

    /// Pretty-printed JSON with a final newline, ready to upload as `<object>.meta`.
    #[must_use]
    pub fn to_json_pretty(&self) -> String {
        // Serializing this struct cannot fail: every field is a string, number or bool.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::compression::Compression;

    const DHARMA_EXAMPLE: &str = r#"{
  "timestamp": "2025-11-16T02:00:00Z",
  "database": "dharma",
  "size_bytes": 12345678,
  "compressed_size": 2345678,
  "encrypted": true,
  "encryption_algorithm": "aes-256-cbc",
  "retention_days": 30,
  "backup_type": "full"
}"#;

    #[test]
    fn reads_the_dharma_runbook_example() {
        let metadata = BackupMetadata::parse(DHARMA_EXAMPLE).unwrap();
        assert_eq!(metadata.timestamp.to_rfc3339(), "2025-11-16T02:00:00+00:00");
        assert_eq!(metadata.database.as_deref(), Some("dharma"));
        assert_eq!(metadata.size_bytes, 12_345_678);
        assert_eq!(metadata.compressed_size, Some(2_345_678));
        assert!(metadata.encrypted);
        assert_eq!(metadata.encryption_algorithm.as_deref(), Some("aes-256-cbc"));
        assert_eq!(metadata.retention_days, Some(30));
        assert_eq!(metadata.backup_type.as_deref(), Some("full"));
        assert_eq!(metadata.sha256, None);
        let error = metadata.expected_sha256().unwrap_err();
        assert!(error.to_string().contains("checksum: sidecar"), "{error}");
    }

    #[test]
    fn writes_what_it_reads_including_the_checksum() {
        let summary = BackupSummary {
            bytes_in: 100,
            compressed_bytes: Some(40),
            bytes_out: 64,
            sha256: Sha256Digest::of(b"stored"),
        };
        let options = BackupOptions { compress: Compression::Gzip { level: 9 }, encrypt: None };
        let timestamp = DateTime::parse_from_rfc3339("2025-11-16T02:00:00.75Z").unwrap().with_timezone(&Utc);
        let mut metadata = BackupMetadata::describe(&summary, &options, timestamp);
        metadata.database = Some("dharma".to_owned());
        let json = metadata.to_json_pretty();
        assert!(json.contains(r#""timestamp": "2025-11-16T02:00:00Z""#), "{json}");
        assert!(json.contains(&format!(r#""sha256": "{}""#, Sha256Digest::of(b"stored"))));
        assert!(!json.contains("encryption_algorithm"));
        assert_eq!(BackupMetadata::parse(&json).unwrap(), metadata);
        assert_eq!(metadata.expected_sha256().unwrap(), Sha256Digest::of(b"stored"));
    }

    #[test]
    fn names_the_bad_field() {
        let error = BackupMetadata::parse(r#"{"timestamp": "yesterday", "size_bytes": 1}"#).unwrap_err();
        assert!(error.to_string().contains("line 1"), "{error}");
        let error = BackupMetadata::parse(r#"{"timestamp": "2025-11-16T02:00:00Z"}"#).unwrap_err();
        assert!(error.to_string().contains("size_bytes"), "{error}");
    }
}
