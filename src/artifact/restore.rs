//! The restore direction: stored bytes → SHA-256 → decrypt → decompress → output, in one
//! streaming pass with every stage on its own thread.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SendError, SyncSender};
use std::thread;

use super::checksum::Sha256Digest;
use super::chunk_channel::{ChunkPool, ChunkReader, chunk_channel, read_chunk};
use super::chunk_source::{ChunkSource, HashingSource, ReadChunks};
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
/// on their own thread, connected by bounded channels of 512 KiB chunks, so memory
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
    restore_chunks(&mut HashingSource::new(ReadChunks(input)), &ChunkPool::new(), options, output, progress)
}

/// [`restore_stream`] over stored bytes that already come in chunks, such as a
/// download's: they enter the pipeline as they are, without a copy. Every buffer the
/// pipeline has used up goes back to `pool`, where `source` should take its new ones.
///
/// The pipeline only borrows `source`: after a failure (when no checksum was expected
/// the reading stops early), the caller can read the rest from it and take its
/// [`HashingSource::sha256`], the digest of the whole input.
///
/// # Errors
/// Those of [`restore_stream`]; [`ArtifactError::ReadInput`] when `source` fails.
pub fn restore_chunks<S: ChunkSource + Send, W: Write>(
    source: &mut HashingSource<S>,
    pool: &ChunkPool,
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
                read_and_hash(source, pool, &stored_sender, read_all_for_checksum, counters, progress)
            })
            .map_err(|source| ArtifactError::StartThread { source })?;

        let (plain_receiver, decryptor) = match &options.decrypt {
            Some(key) => {
                let (sender, receiver) = chunk_channel();
                let handle = thread::Builder::new()
                    .name("artifact-decrypt".to_owned())
                    .spawn_scoped(scope, move || decrypt_stage(stored_receiver, &sender, key, pool))
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
                        decompress_stage(plain_receiver, &sender, mode, decrypting, pool)
                    })
                    .map_err(|source| ArtifactError::StartThread { source })?;
                (receiver, Some(handle))
            }
        };

        let written = write_chunks(final_receiver, output, counters, Some(pool), |_| {});
        let read = join_stage(reader)?;
        let decrypted = decryptor.map(join_stage).transpose();
        let decompressed = decompressor.map(join_stage).transpose();

        let output_bytes = written?;
        if let Some(expected) = options.expected_sha256
            && read.complete
            && read.sha256 != expected
        {
            return Err(ArtifactError::ChecksumMismatch { expected, actual: read.sha256 });
        }
        decrypted?;
        let compression = decompressed?.unwrap_or(CompressionFormat::None);
        // Every stage consumes its input to the end unless it failed, so with no
        // failure the reader has read (and hashed) the whole input.
        debug_assert!(read.complete, "the reader stops early only after a failure");
        Ok(RestoreSummary { stored_bytes: read.bytes, output_bytes, sha256: read.sha256, compression })
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

/// First stage: takes the stored chunks from the source, which hashes them, and passes
/// them on.
fn read_and_hash<S: ChunkSource>(
    source: &mut HashingSource<S>,
    pool: &ChunkPool,
    sender: &SyncSender<Vec<u8>>,
    read_all_for_checksum: bool,
    counters: &PipelineCounters,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<ReadOutcome, ArtifactError> {
    let mut passing_on = true;
    loop {
        let chunk = source
            .next_chunk(pool)
            .map_err(|error| ArtifactError::ReadInput { bytes: source.bytes(), source: error })?;
        let Some(chunk) = chunk else {
            break;
        };
        counters.record_read(source.bytes(), progress);
        if !passing_on {
            pool.give(chunk);
            continue;
        }
        if let Err(SendError(chunk)) = sender.send(chunk) {
            pool.give(chunk);
            // A later stage stopped. If it stopped on the data and a checksum is
            // expected, read on: a mismatch explains the failure better.
            passing_on = false;
            if !read_all_for_checksum || counters.output_failed() {
                return Ok(ReadOutcome { sha256: source.sha256(), bytes: source.bytes(), complete: false });
            }
        }
    }
    Ok(ReadOutcome { sha256: source.sha256(), bytes: source.bytes(), complete: true })
}

/// Second stage: openssl-compatible decryption, chunk by chunk.
fn decrypt_stage(
    receiver: Receiver<Vec<u8>>,
    sender: &SyncSender<Vec<u8>>,
    key: &EncryptionKey,
    pool: &ChunkPool,
) -> Result<(), ArtifactError> {
    let mut decryptor = OpensslDecryptor::new(key);
    for chunk in &receiver {
        let mut plain = pool.take();
        decryptor.update(&chunk, &mut plain)?;
        pool.give(chunk);
        if plain.is_empty() {
            pool.give(plain);
        } else if sender.send(plain).is_err() {
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
    pool: &ChunkPool,
) -> Result<CompressionFormat, ArtifactError> {
    let mut reader = ChunkReader::new(receiver, pool.clone());
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
    let mut leftover = match format {
        CompressionFormat::None => {
            // Only fails when the next stage stopped, which reports why.
            let _ = reader.forward_all(sender);
            return Ok(format);
        }
        CompressionFormat::Gzip => {
            let mut decoder = flate2::bufread::MultiGzDecoder::new(reader);
            match pump(&mut decoder, sender, &mut produced, pool) {
                Pumped::Finished => decoder.into_inner(),
                Pumped::DownstreamStopped => return Ok(format),
                Pumped::Failed(source) => return Err(decode_error(produced, source)),
            }
        }
        CompressionFormat::Zstd => {
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(reader).map_err(|source| decode_error(0, source))?;
            match pump(&mut decoder, sender, &mut produced, pool) {
                Pumped::Finished => decoder.into_inner(),
                Pumped::DownstreamStopped => return Ok(format),
                Pumped::Failed(source) => return Err(decode_error(produced, source)),
            }
        }
    };
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
        ArtifactError::DecryptedDataNotCompressed { format: format.name(), found }
    } else {
        ArtifactError::NotCompressed { format: format.name(), found }
    })
}

enum Pumped {
    Finished,
    DownstreamStopped,
    Failed(io::Error),
}

/// Reads `decoder` to its end in whole chunks and sends them on.
fn pump<D: Read>(
    decoder: &mut D,
    sender: &SyncSender<Vec<u8>>,
    produced: &mut u64,
    pool: &ChunkPool,
) -> Pumped {
    loop {
        let mut chunk = pool.take();
        match read_chunk(decoder, &mut chunk) {
            Ok(0) => {
                pool.give(chunk);
                return Pumped::Finished;
            }
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

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::artifact::backup::{BackupOptions, backup_stream};
    use crate::artifact::chunk_channel::{CHANNEL_CAPACITY, CHUNK_SIZE};
    use crate::artifact::compression::Compression;
    use crate::artifact::openssl_encryption::{OpensslEncryptor, Password};

    fn key(password: &str) -> EncryptionKey {
        EncryptionKey::new(Password::new(password.as_bytes().to_vec()), 1000).unwrap()
    }

    fn no_progress(_: Progress) {}

    /// SQL-like text that compresses the way a dump does.
    fn plain(length: usize) -> Vec<u8> {
        let mut text = Vec::with_capacity(length + 64);
        let mut row = 0_u64;
        while text.len() < length {
            writeln!(
                text,
                "{row}\tuser-{}\t{}@example.org\t2025-11-{:02}",
                row * 7919 % 1000,
                row,
                row % 28 + 1
            )
            .unwrap();
            row += 1;
        }
        text.truncate(length);
        text
    }

    fn stored(
        plain: &[u8],
        compress: Compression,
        encrypt: Option<EncryptionKey>,
    ) -> (Vec<u8>, Sha256Digest) {
        let mut output = Vec::new();
        let summary =
            backup_stream(plain, &BackupOptions { compress, encrypt }, &mut output, &no_progress).unwrap();
        assert_eq!(summary.sha256, Sha256Digest::of(&output));
        (output, summary.sha256)
    }

    fn restore(stored: &[u8], options: &RestoreOptions) -> Result<(Vec<u8>, RestoreSummary), ArtifactError> {
        let mut output = Vec::new();
        let summary = restore_stream(stored, options, &mut output, &no_progress)?;
        Ok((output, summary))
    }

    /// gzip, then encrypted with a fixed salt, so that what a wrong key yields is the
    /// same on every run.
    fn fixed_salt_artifact(plain: &[u8], key: &EncryptionKey) -> Vec<u8> {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gzip.write_all(plain).unwrap();
        let compressed = gzip.finish().unwrap();
        let mut encryptor = OpensslEncryptor::with_salt(key, *b"drplan01");
        let mut output = Vec::new();
        encryptor.update(&compressed, &mut output);
        encryptor.finish(&mut output);
        output
    }

    #[test]
    fn round_trips_every_combination_and_size() {
        let sizes = [0, 1, 15, 16, 17, CHUNK_SIZE + 3];
        let compressions = [
            (Compression::None, Decompression::None, CompressionFormat::None),
            (Compression::Gzip { level: 6 }, Decompression::Gzip, CompressionFormat::Gzip),
            (Compression::Zstd { level: 3 }, Decompression::Zstd, CompressionFormat::Zstd),
        ];
        for size in sizes {
            let data = plain(size);
            for (compress, decompress, format) in compressions {
                for encrypt in [None, Some(key("secret"))] {
                    let (stored, sha256) = stored(&data, compress, encrypt.clone());
                    for mode in [decompress, Decompression::Auto] {
                        let options = RestoreOptions {
                            expected_sha256: Some(sha256),
                            decrypt: encrypt.clone(),
                            decompress: mode,
                        };
                        let (output, summary) = restore(&stored, &options).unwrap();
                        assert!(output == data, "size {size}, {compress:?}, {mode:?}");
                        assert_eq!(summary.stored_bytes, stored.len() as u64);
                        assert_eq!(summary.output_bytes, size as u64);
                        assert_eq!(summary.sha256, sha256);
                        // Plain text is never mistaken for a compressed format.
                        assert_eq!(summary.compression, format);
                    }
                }
            }
        }
    }

    #[test]
    fn reports_progress_up_to_the_stored_size() {
        let (stored, _) = stored(&plain(3 * CHUNK_SIZE), Compression::Gzip { level: 1 }, None);
        let last = std::sync::Mutex::new(Progress::default());
        let record = |progress: Progress| *last.lock().unwrap() = progress;
        let options = RestoreOptions::default();
        restore_stream(&stored[..], &options, io::sink(), &record).unwrap();
        assert_eq!(last.lock().unwrap().bytes_read, stored.len() as u64);
    }

    #[test]
    fn names_expected_and_actual_digests_on_a_mismatch() {
        let (stored, actual) = stored(&plain(1000), Compression::Gzip { level: 6 }, Some(key("k")));
        let expected = Sha256Digest::of(b"something else");
        let options = RestoreOptions {
            expected_sha256: Some(expected),
            decrypt: Some(key("k")),
            decompress: Decompression::Auto,
        };
        let error = restore(&stored, &options).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, ArtifactError::ChecksumMismatch { .. }));
        assert!(message.contains(&expected.to_hex()) && message.contains(&actual.to_hex()), "{message}");
    }

    #[test]
    fn blames_corruption_on_the_checksum_even_when_decryption_fails_first() {
        let data = plain(4 * CHUNK_SIZE);
        let (mut stored, sha256) = stored(&data, Compression::Gzip { level: 6 }, Some(key("k")));
        // Early in the gzip header: decompression fails at once, the checksum only at the end.
        stored[17] ^= 0x01;
        let mut options = RestoreOptions {
            expected_sha256: Some(sha256),
            decrypt: Some(key("k")),
            decompress: Decompression::Gzip,
        };
        let error = restore(&stored, &options).unwrap_err();
        assert!(matches!(error, ArtifactError::ChecksumMismatch { .. }), "{error}");
        // Without a checksum, the symptom is all there is.
        options.expected_sha256 = None;
        let error = restore(&stored, &options).unwrap_err();
        assert!(
            matches!(
                error,
                ArtifactError::DecryptedDataNotCompressed { .. } | ArtifactError::Decompression { .. }
            ),
            "{error}"
        );
    }

    /// Bytes that do not compress, so that the artifact spans several chunks.
    fn noise(length: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect()
    }

    #[test]
    fn tells_a_wrong_key_apart_from_other_failures() {
        // More chunks than the channel between decryption and decompression holds, so
        // that decompression sees the wrong bytes before decryption reaches the padding.
        let data = noise((CHANNEL_CAPACITY + 4) * CHUNK_SIZE);
        let stored = fixed_salt_artifact(&data, &key("right"));
        let mut options = RestoreOptions {
            expected_sha256: None,
            decrypt: Some(key("wrong")),
            decompress: Decompression::Gzip,
        };
        let error = restore(&stored, &options).unwrap_err();
        assert!(matches!(error, ArtifactError::DecryptedDataNotCompressed { format: "gzip", .. }), "{error}");
        assert!(error.to_string().contains("wrong key or wrong iteration count"));
        options.decompress = Decompression::Auto;
        let error = restore(&stored, &options).unwrap_err();
        assert!(matches!(error, ArtifactError::WrongKeyOrIterationCount), "{error}");
        options.decrypt = Some(EncryptionKey::new(Password::new(b"right".to_vec()), 999).unwrap());
        let error = restore(&stored, &options).unwrap_err();
        assert!(matches!(error, ArtifactError::WrongKeyOrIterationCount), "{error}");
        options.decrypt = Some(key("right"));
        assert_eq!(restore(&stored, &options).unwrap().0, data);
    }

    #[test]
    fn reports_truncation_and_missing_headers() {
        let data = plain(100_000);
        let (stored, sha256) = stored(&data, Compression::Gzip { level: 6 }, Some(key("k")));
        let mut options = RestoreOptions {
            expected_sha256: None,
            decrypt: Some(key("k")),
            decompress: Decompression::Auto,
        };
        let error = restore(&stored[..stored.len() - 5], &options).unwrap_err();
        assert!(matches!(error, ArtifactError::TruncatedCiphertext { .. }), "{error}");
        options.expected_sha256 = Some(sha256);
        let error = restore(&stored[..stored.len() - 5], &options).unwrap_err();
        assert!(matches!(error, ArtifactError::ChecksumMismatch { .. }), "{error}");

        let (gzip_only, _) = stored_plain_gzip(&data);
        let error = restore(&gzip_only, &options_with_key_only()).unwrap_err();
        assert!(matches!(error, ArtifactError::NotOpensslEncrypted { .. }), "{error}");
        assert!(error.to_string().contains("not an openssl-encrypted file"));
    }

    fn stored_plain_gzip(data: &[u8]) -> (Vec<u8>, Sha256Digest) {
        stored(data, Compression::Gzip { level: 6 }, None)
    }

    fn options_with_key_only() -> RestoreOptions {
        RestoreOptions { expected_sha256: None, decrypt: Some(key("k")), decompress: Decompression::Auto }
    }

    #[test]
    fn reports_damaged_or_mislabelled_compressed_data() {
        let data = plain(300_000);
        let gzip =
            |options: Decompression| RestoreOptions { decompress: options, ..RestoreOptions::default() };
        let (compressed, _) = stored_plain_gzip(&data);
        let error = restore(&compressed[..compressed.len() / 2], &gzip(Decompression::Gzip)).unwrap_err();
        assert!(matches!(error, ArtifactError::Decompression { format: "gzip", .. }), "{error}");
        let mut trailing = compressed.clone();
        trailing.extend_from_slice(b"garbage");
        let error = restore(&trailing, &gzip(Decompression::Auto)).unwrap_err();
        assert!(matches!(error, ArtifactError::Decompression { format: "gzip", .. }), "{error}");
        let error = restore(&data, &gzip(Decompression::Gzip)).unwrap_err();
        assert!(matches!(error, ArtifactError::NotCompressed { format: "gzip", .. }), "{error}");
        let error = restore(b"", &gzip(Decompression::Zstd)).unwrap_err();
        assert!(matches!(error, ArtifactError::NotCompressed { format: "zstd", .. }), "{error}");

        let (zstd, _) = stored(&data, Compression::Zstd { level: 3 }, None);
        let error = restore(&zstd[..zstd.len() - 10], &gzip(Decompression::Auto)).unwrap_err();
        assert!(matches!(error, ArtifactError::Decompression { format: "zstd", .. }), "{error}");
    }

    #[test]
    fn reads_multi_member_gzip_and_multi_frame_zstd() {
        let (first, _) = stored_plain_gzip(b"first member\n");
        let (second, _) = stored_plain_gzip(b"second member\n");
        let (third, _) = stored(b"first frame\n", Compression::Zstd { level: 1 }, None);
        let (fourth, _) = stored(b"second frame\n", Compression::Zstd { level: 1 }, None);
        let options = RestoreOptions::default();
        assert_eq!(restore(&[first, second].concat(), &options).unwrap().0, b"first member\nsecond member\n");
        assert_eq!(restore(&[third, fourth].concat(), &options).unwrap().0, b"first frame\nsecond frame\n");
    }

    struct FailingReader {
        remaining: usize,
    }

    impl Read for FailingReader {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            if self.remaining == 0 {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection reset"));
            }
            let length = buffer.len().min(self.remaining);
            buffer[..length].fill(b'x');
            self.remaining -= length;
            Ok(length)
        }
    }

    struct FailingWriter {
        room: usize,
    }

    impl Write for FailingWriter {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            let length = data.len().min(self.room);
            self.room -= length;
            Ok(length)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn reports_read_and_write_failures_first() {
        let options = RestoreOptions {
            expected_sha256: Some(Sha256Digest::of(b"")),
            decrypt: Some(key("k")),
            decompress: Decompression::Auto,
        };
        let reader = FailingReader { remaining: 3 * CHUNK_SIZE + 5 };
        let error = restore_stream(reader, &options, io::sink(), &no_progress).unwrap_err();
        assert!(
            matches!(error, ArtifactError::ReadInput { bytes, .. } if bytes == 3 * CHUNK_SIZE as u64),
            "{error}"
        );

        let (stored, sha256) = stored(&plain(8 * CHUNK_SIZE), Compression::None, None);
        let options = RestoreOptions { expected_sha256: Some(sha256), ..RestoreOptions::default() };
        let error =
            restore_stream(&stored[..], &options, FailingWriter { room: 1000 }, &no_progress).unwrap_err();
        assert!(matches!(error, ArtifactError::WriteOutput { bytes: 0, .. }), "{error}");
    }

    #[test]
    fn leaves_no_file_behind_on_failure() {
        let directory = tempfile::tempdir().unwrap();
        let destination = directory.path().join("dump.sql");
        let (stored, sha256) = stored(&plain(100_000), Compression::Gzip { level: 6 }, Some(key("k")));
        let wrong = RestoreOptions {
            expected_sha256: Some(Sha256Digest::of(b"other")),
            decrypt: Some(key("k")),
            decompress: Decompression::Auto,
        };
        assert!(restore_to_file(&stored[..], &wrong, &destination, &no_progress).is_err());
        assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 0);

        let right = RestoreOptions { expected_sha256: Some(sha256), ..wrong };
        let summary = restore_to_file(&stored[..], &right, &destination, &no_progress).unwrap();
        assert_eq!(std::fs::read(&destination).unwrap(), plain(100_000));
        assert_eq!(summary.output_bytes, 100_000);
        assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 1);
    }
}
