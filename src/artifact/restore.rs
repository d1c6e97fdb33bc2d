//! The restore direction: stored bytes → SHA-256 → decrypt → decompress → output, in one
//! streaming pass with every stage on its own thread.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread;

use sha2::{Digest, Sha256};

use super::checksum::Sha256Digest;
use super::chunk_channel::{CHUNK_SIZE, ChunkReader, chunk_channel, read_chunk};
use super::compression::{CompressionFormat, Decompression, MAGIC_LENGTH, detect_compression};
use super::error::{ArtifactError, describe_prefix};
use super::openssl_encryption::{EncryptionKey, OpensslDecryptor};
use super::partial_file::PartialFile;
use super::pipeline::{PipelineCounters, Progress, join_stage, write_chunks};

/// What to do with the stored bytes on the way out.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// The SHA-256 the stored bytes must have (from the `.sha256` sidecar or `.meta`).
    pub expected_sha256: Option<Sha256Digest>,
    /// Decrypt as `openssl enc -d -aes-256-cbc -pbkdf2` would, with this key.
    pub decrypt: Option<EncryptionKey>,
    /// How to decompress what decryption yields.
    pub decompress: Decompression,
}

/// What a successful restore read and wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Bytes read from the input (the stored, possibly encrypted, object).
    pub stored_bytes: u64,
    /// Bytes written to the output.
    pub output_bytes: u64,
    /// SHA-256 of the stored bytes; equal to the expected one when one was given.
    pub sha256: Sha256Digest,
    /// The compression that was undone (the detected one for [`Decompression::Auto`]).
    pub compression: CompressionFormat,
}

/// Restores `input` into `output` in one pass: hashes the stored bytes, decrypts,
/// decompresses, writes. Reading and hashing, decryption and decompression each run
/// on their own thread, connected by bounded channels of 1 MiB chunks, so memory
/// stays at a few MiB per stage whatever the size; writing happens on the caller's
/// thread. `progress` is called from the reading thread after every chunk.
///
/// The checksum can only be known at the end, after the output has been written: on
/// any error the output holds garbage and must be thrown away —
/// [`restore_to_file`] does that. When a stage fails on the data and a checksum is
/// expected, the rest of the input is still read and hashed, so that corruption is
/// reported as [`ArtifactError::ChecksumMismatch`] rather than as its symptom.
///
/// # Errors
/// In this order of precedence: [`ArtifactError::ReadInput`],
/// [`ArtifactError::WriteOutput`], [`ArtifactError::ChecksumMismatch`], then the
/// decryption errors ([`ArtifactError::NotOpensslEncrypted`],
/// [`ArtifactError::TruncatedCiphertext`], [`ArtifactError::WrongKeyOrIterationCount`])
/// and the decompression errors ([`ArtifactError::DecryptedDataNotCompressed`],
/// [`ArtifactError::NotCompressed`], [`ArtifactError::Decompression`]).
pub fn restore_stream<R: Read + Send, W: Write>(
    input: R,
    options: &RestoreOptions,
    output: W,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<RestoreSummary, ArtifactError> {
    let counters = &PipelineCounters::default();
    let decrypting = options.decrypt.is_some();
    thread::scope(|scope| {
        let (stored_sender, stored_receiver) = chunk_channel();
        let read_all_for_checksum = options.expected_sha256.is_some();
        let reader = thread::Builder::new()
            .name("artifact-read".to_owned())
            .spawn_scoped(scope, move || {
                read_and_hash(
                    input,
                    &stored_sender,
                    read_all_for_checksum,
                    counters,
                    progress,
                )
            })
            .map_err(|source| ArtifactError::StartThread { source })?;

        let (plain_receiver, decryptor) = match &options.decrypt {
            Some(key) => {
                let (sender, receiver) = chunk_channel();
                let handle = thread::Builder::new()
                    .name("artifact-decrypt".to_owned())
                    .spawn_scoped(scope, move || decrypt_stage(stored_receiver, &sender, key))
                    .map_err(|source| ArtifactError::StartThread { source })?;
                (receiver, Some(handle))
            }
            None => (stored_receiver, None),
        };

        let (final_receiver, decompressor) = match options.decompress {
            Decompression::None => (plain_receiver, None),
            mode @ (Decompression::Gzip | Decompression::Zstd | Decompression::Auto) => {
                let (sender, receiver) = chunk_channel();
                let handle = thread::Builder::new()
                    .name("artifact-decompress".to_owned())
                    .spawn_scoped(scope, move || {
                        decompress_stage(plain_receiver, &sender, mode, decrypting)
                    })
                    .map_err(|source| ArtifactError::StartThread { source })?;
                (receiver, Some(handle))
            }
        };

        let written = write_chunks(final_receiver, output, counters, |_| {});
        let read = join_stage(reader)?;
        let decrypted = decryptor.map(join_stage).transpose();
        let decompressed = decompressor.map(join_stage).transpose();

        let output_bytes = written?;
        if let Some(expected) = options.expected_sha256
            && read.complete
            && read.sha256 != expected
        {
            return Err(ArtifactError::ChecksumMismatch {
                expected,
                actual: read.sha256,
            });
        }
        decrypted?;
        let compression = decompressed?.unwrap_or(CompressionFormat::None);
        // Every stage consumes its input to the end unless it failed, so with no
        // failure the reader has read (and hashed) the whole input.
        debug_assert!(read.complete, "the reader stops early only after a failure");
        Ok(RestoreSummary {
            stored_bytes: read.bytes,
            output_bytes,
            sha256: read.sha256,
            compression,
        })
    })
}

/// [`restore_stream`] into the file `destination`, which appears only when everything,
/// the checksum included, succeeded: the data goes to `<destination>.partial`, which
/// is synced and renamed over `destination` at the end, and removed on any failure.
///
/// # Errors
/// Those of [`restore_stream`], and [`ArtifactError::File`] for the file operations.
pub fn restore_to_file<R: Read + Send>(
    input: R,
    options: &RestoreOptions,
    destination: &Path,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<RestoreSummary, ArtifactError> {
    let mut partial = PartialFile::create(destination)?;
    let summary = restore_stream(input, options, &mut partial, progress)?;
    partial.commit()?;
    Ok(summary)
}

struct ReadOutcome {
    sha256: Sha256Digest,
    bytes: u64,
    /// Whether the input was read to its end (not stopped early after a failure).
    complete: bool,
}

/// First stage: reads the input in whole chunks, hashes them, passes them on.
fn read_and_hash<R: Read>(
    mut input: R,
    sender: &SyncSender<Vec<u8>>,
    read_all_for_checksum: bool,
    counters: &PipelineCounters,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<ReadOutcome, ArtifactError> {
    let mut hasher = Sha256::new();
    let mut total = 0_u64;
    let mut passing_on = true;
    let mut chunk = Vec::with_capacity(CHUNK_SIZE);
    loop {
        let read =
            read_chunk(&mut input, &mut chunk).map_err(|source| ArtifactError::ReadInput {
                bytes: total,
                source,
            })?;
        if read == 0 {
            break;
        }
        hasher.update(&chunk);
        total += read as u64;
        counters.record_read(total, progress);
        if passing_on {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_SIZE));
            if sender.send(full).is_err() {
                // A later stage stopped. If it stopped on the data and a checksum is
                // expected, read on: a mismatch explains the failure better.
                passing_on = false;
                if !read_all_for_checksum || counters.output_failed() {
                    return Ok(ReadOutcome {
                        sha256: Sha256Digest::from_bytes(hasher.finalize().into()),
                        bytes: total,
                        complete: false,
                    });
                }
            }
        }
    }
    Ok(ReadOutcome {
        sha256: Sha256Digest::from_bytes(hasher.finalize().into()),
        bytes: total,
        complete: true,
    })
}

/// Second stage: openssl-compatible decryption, chunk by chunk.
fn decrypt_stage(
    receiver: Receiver<Vec<u8>>,
    sender: &SyncSender<Vec<u8>>,
    key: &EncryptionKey,
) -> Result<(), ArtifactError> {
    let mut decryptor = OpensslDecryptor::new(key);
    for chunk in &receiver {
        let mut plain = Vec::with_capacity(chunk.len() + 32);
        decryptor.update(&chunk, &mut plain)?;
        if !plain.is_empty() && sender.send(plain).is_err() {
            // The next stage stopped and reports why.
            return Ok(());
        }
    }
    let mut last = Vec::with_capacity(16);
    decryptor.finish(&mut last)?;
    if !last.is_empty() {
        // A stopped next stage reports why; nothing to add here.
        let _ = sender.send(last);
    }
    Ok(())
}

/// Third stage: checks or detects the format, then decompresses.
fn decompress_stage(
    receiver: Receiver<Vec<u8>>,
    sender: &SyncSender<Vec<u8>>,
    mode: Decompression,
    decrypting: bool,
) -> Result<CompressionFormat, ArtifactError> {
    let mut reader = ChunkReader::new(receiver);
    let prefix = reader.peek(MAGIC_LENGTH);
    let format = match mode {
        Decompression::None => CompressionFormat::None,
        Decompression::Auto => detect_compression(prefix),
        Decompression::Gzip => require_format(CompressionFormat::Gzip, prefix, decrypting)?,
        Decompression::Zstd => require_format(CompressionFormat::Zstd, prefix, decrypting)?,
    };
    let decode_error = |output_bytes: u64, source: io::Error| ArtifactError::Decompression {
        format: format.name(),
        output_bytes,
        source,
    };
    let mut produced = 0_u64;
    let leftover = match format {
        CompressionFormat::None => {
            // Only fails when the next stage stopped, which reports why.
            let _ = reader.forward_all(sender, |_| {});
            return Ok(format);
        }
        CompressionFormat::Gzip => {
            let mut decoder = flate2::bufread::MultiGzDecoder::new(reader);
            match pump(&mut decoder, sender, &mut produced) {
                Pumped::Finished => decoder.into_inner(),
                Pumped::DownstreamStopped => return Ok(format),
                Pumped::Failed(source) => return Err(decode_error(produced, source)),
            }
        }
        CompressionFormat::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(reader)
                .map_err(|source| decode_error(0, source))?;
            match pump(&mut decoder, sender, &mut produced) {
                Pumped::Finished => decoder.into_inner(),
                Pumped::DownstreamStopped => return Ok(format),
                Pumped::Failed(source) => return Err(decode_error(produced, source)),
            }
        }
    };
    let mut leftover = leftover;
    if leftover.has_data_left() {
        return Err(decode_error(
            produced,
            io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected data after the end of the compressed stream",
            ),
        ));
    }
    Ok(format)
}

/// The format asked for must be what the data starts with. After decryption a
/// mismatch almost always means a wrong key, so it is reported as such.
fn require_format(
    format: CompressionFormat,
    prefix: &[u8],
    decrypting: bool,
) -> Result<CompressionFormat, ArtifactError> {
    if format.matches_prefix(prefix) {
        return Ok(format);
    }
    let found = describe_prefix(prefix);
    Err(if decrypting {
        ArtifactError::DecryptedDataNotCompressed {
            format: format.name(),
            found,
        }
    } else {
        ArtifactError::NotCompressed {
            format: format.name(),
            found,
        }
    })
}

enum Pumped {
    Finished,
    DownstreamStopped,
    Failed(io::Error),
}

/// Reads `decoder` to its end in whole chunks and sends them on.
fn pump<D: Read>(decoder: &mut D, sender: &SyncSender<Vec<u8>>, produced: &mut u64) -> Pumped {
    loop {
        let mut chunk = Vec::with_capacity(CHUNK_SIZE);
        match read_chunk(decoder, &mut chunk) {
            Ok(0) => return Pumped::Finished,
            Ok(read) => {
                *produced += read as u64;
                if sender.send(chunk).is_err() {
                    return Pumped::DownstreamStopped;
                }
            }
            Err(error) => return Pumped::Failed(error),
        }
    }
}
