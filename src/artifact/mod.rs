//! Backup artifacts as the `s3.fetch`, `s3.put` and `pg.dump` steps handle them: pure,
//! synchronous pipelines over `Read`/`Write` streams, with no network of their own.
//!
//! An artifact is what the Dharma runbook's backup job stores:
//! `pg_dump | gzip -9 | openssl enc -aes-256-cbc -salt -pbkdf2 -pass file:KEY`, beside a
//! `.sha256` sidecar in `sha256sum` format and a `.meta` JSON document.
//!
//! - [`restore_stream`] / [`restore_to_file`]: stored bytes → SHA-256 check → decrypt →
//!   decompress → output, in one pass with the stages overlapped on threads;
//!   [`restore_chunks`] does the same over a [`ChunkSource`] (a download's buffers),
//!   recycling its buffers through a [`ChunkPool`].
//! - [`backup_stream`] / [`backup_to_file`]: plain bytes → compress → encrypt → output,
//!   with the SHA-256 of the stored bytes computed on the way.
//! - [`OpensslDecryptor`] / [`OpensslEncryptor`]: `openssl enc -aes-256-cbc -pbkdf2`
//!   compatible streaming cipher; [`password_from_key_file_contents`] reads a key file
//!   the way `-pass file:` does.
//! - [`parse_checksum_sidecar`], [`checksum_for_object`], [`checksum_sidecar_line`] and
//!   [`BackupMetadata`] for the sidecars.

mod backup;
mod checksum;
mod chunk_channel;
mod chunk_source;
mod compression;
mod error;
mod metadata;
mod openssl_encryption;
mod partial_file;
mod pipeline;
mod restore;

pub use backup::{BackupOptions, BackupSummary, backup_stream, backup_to_file};
pub use checksum::{
    ChecksumEntry, Sha256Digest, checksum_for_object, checksum_sidecar_line, parse_checksum_sidecar,
    sha256_of_reader,
};
pub(crate) use chunk_channel::CHUNK_SIZE;
pub use chunk_channel::ChunkPool;
pub use chunk_source::{ChunkSource, HashingSource, ReadChunks};
pub use compression::{Compression, CompressionFormat, Decompression, detect_compression};
pub use error::ArtifactError;
pub use metadata::{BackupMetadata, ENCRYPTION_ALGORITHM_AES_256_CBC};
pub use openssl_encryption::{
    DEFAULT_PBKDF2_ITERATIONS, EncryptionKey, OPENSSL_MAGIC, OpensslDecryptor, OpensslEncryptor, Password,
    password_from_key_file_contents,
};
pub use partial_file::{FileIdentity, PartialFile, describe_file_type};
pub use pipeline::Progress;
pub use restore::{RestoreOptions, RestoreSummary, restore_chunks, restore_stream, restore_to_file};
