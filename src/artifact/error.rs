//! The one error type of the artifact pipeline.

use std::io;
use std::path::PathBuf;

use super::checksum::Sha256Digest;

/// Everything that can go wrong while reading, checking, decrypting, decompressing,
/// compressing, encrypting or writing a backup artifact.
///
/// The pipeline works on streams and does not know the object's name; the step that
/// calls it names the object (bucket, key, path) around this error.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Decryption was asked for, but the data does not begin with openssl's header.
    #[error(
        "the artifact is not an openssl-encrypted file: it does not start with `Salted__` \
         (it starts with {found}); check that this is the encrypted `.enc` object, or drop \
         `decrypt` if the artifact is not encrypted"
    )]
    NotOpensslEncrypted {
        /// The first bytes found, in hex.
        found: String,
    },

    /// The encrypted data ends inside its header or inside a cipher block.
    #[error(
        "the encrypted artifact is truncated: {detail}; the upload or download was cut off, \
         fetch it again or pick another backup"
    )]
    TruncatedCiphertext {
        /// What exactly is missing.
        detail: String,
    },

    /// The last block does not unpad, which is what a wrong password or a wrong
    /// PBKDF2 iteration count looks like in CBC mode.
    #[error(
        "decryption failed: wrong key or wrong iteration count (the padding of the last block \
         is invalid); use the key file and the PBKDF2 iteration count (openssl `-iter`, default \
         10000) the backup was encrypted with, and check the artifact's sha256 in case it is corrupt"
    )]
    WrongKeyOrIterationCount,

    /// The data came out of decryption but does not look like the compression format
    /// that was asked for, which usually means the key was wrong.
    #[error(
        "the decrypted data does not start with a {format} header (it starts with {found}): \
         wrong key or wrong iteration count, or the artifact is not {format}-compressed \
         (`decompress: auto` detects the format)"
    )]
    DecryptedDataNotCompressed {
        /// The format that was asked for.
        format: &'static str,
        /// The first decrypted bytes, in hex.
        found: String,
    },

    /// Unencrypted data does not start with the magic bytes of the format asked for.
    #[error(
        "the artifact is not {format}-compressed: it starts with {found}; set `decompress` \
         to its real format, or to `auto`"
    )]
    NotCompressed {
        /// The format that was asked for.
        format: &'static str,
        /// The first bytes, in hex.
        found: String,
    },

    /// The compressed stream is corrupt or ends early.
    #[error(
        "{format} decompression failed after {output_bytes} decompressed bytes: {source}; \
         the artifact is corrupt or truncated"
    )]
    Decompression {
        /// The format being decompressed.
        format: &'static str,
        /// How many decompressed bytes had been produced before the failure.
        output_bytes: u64,
        /// What the decoder reported.
        source: io::Error,
    },

    /// The SHA-256 of the stored bytes is not the expected one.
    #[error(
        "checksum mismatch: expected sha256 {expected}, actual {actual}; the artifact is \
         corrupt or truncated, or the checksum belongs to another object"
    )]
    ChecksumMismatch {
        /// The digest from the sidecar or metadata.
        expected: Sha256Digest,
        /// The digest of the bytes actually read.
        actual: Sha256Digest,
    },

    /// Reading the input stream failed.
    #[error("reading the input failed after {bytes} bytes: {source}")]
    ReadInput {
        /// Bytes read successfully before the failure.
        bytes: u64,
        /// The underlying error.
        source: io::Error,
    },

    /// Writing the output stream failed.
    #[error("writing the output failed after {bytes} bytes: {source}")]
    WriteOutput {
        /// Bytes written successfully before the failure.
        bytes: u64,
        /// The underlying error.
        source: io::Error,
    },

    /// The compressor failed.
    #[error("{format} compression failed: {source}")]
    Compression {
        /// The format being written.
        format: &'static str,
        /// The underlying error.
        source: io::Error,
    },

    /// A compression level outside what the format accepts.
    #[error("{format} compression level {level} is out of range: use {range}")]
    InvalidCompressionLevel {
        /// The format.
        format: &'static str,
        /// The level given.
        level: i32,
        /// The accepted range, for the message.
        range: String,
    },

    /// PBKDF2 needs at least one iteration; openssl refuses zero too.
    #[error("the PBKDF2 iteration count must be at least 1 (openssl's default is 10000)")]
    ZeroIterations,

    /// openssl refuses an empty key file, so an empty one is surely a mistake.
    #[error("the key file is empty: put the password on its first line")]
    EmptyKeyFile,

    /// A `.sha256` sidecar that cannot be read.
    #[error("the checksum sidecar is invalid: {reason}")]
    InvalidChecksumSidecar {
        /// What is wrong, with the line number where there is one.
        reason: String,
    },

    /// A hex string that is not a SHA-256 digest.
    #[error("`{text}` is not a sha256 digest: expected 64 hexadecimal digits")]
    InvalidDigest {
        /// The text given (a digest is not a secret).
        text: String,
    },

    /// A `.meta` JSON document that cannot be read.
    #[error("the backup metadata (`.meta` JSON) is invalid: {source}")]
    InvalidMetadata {
        /// Where and what, as serde reports it.
        source: serde_json::Error,
    },

    /// The operating system refused another thread.
    #[error("could not start a pipeline thread: {source}; the system is short of threads or memory")]
    StartThread {
        /// The underlying error.
        source: io::Error,
    },

    /// `checksum: meta` on a `.meta` document without a `sha256` field.
    #[error(
        "the backup metadata (`.meta` JSON) has no `sha256` field, so it cannot vouch for the \
         artifact (the Dharma backup script does not write one): use `checksum: sidecar` for \
         its `.sha256` file instead"
    )]
    MetadataWithoutChecksum,

    /// The destination exists and is not a file the caller may replace.
    #[error(
        "`{path}` already exists ({found}) and is not an earlier output of this step: it is never replaced"
    )]
    DestinationExists {
        /// The destination.
        path: PathBuf,
        /// What is there: "a file", "a symbolic link", ...
        found: &'static str,
    },

    /// A file operation around the destination failed.
    #[error("could not {action} `{path}`: {source}")]
    File {
        /// What was being done ("create", "rename ... to", ...).
        action: String,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Hex of at most the first eight bytes, for messages about unexpected headers.
pub(crate) fn describe_prefix(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing (the data is empty)".to_owned();
    }
    let shown = &bytes[..bytes.len().min(8)];
    let mut text = String::from("0x");
    text.push_str(&hex::encode(shown));
    if bytes.len() > shown.len() {
        text.push('…');
    }
    text
}
