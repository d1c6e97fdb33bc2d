//! The backup direction: plain bytes → compress → encrypt → SHA-256 → output, in one
//! streaming pass with every stage on its own thread. The result is what
//! `pg_dump | gzip -9 | openssl enc -aes-256-cbc -salt -pbkdf2 -pass file:KEY` writes,
//! and what `openssl enc -d` and `gunzip` (or `zstd -d`) read back.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread;

use sha2::{Digest, Sha256};

use super::checksum::Sha256Digest;
use super::chunk_channel::{CHUNK_SIZE, ChunkWriter, chunk_channel, read_chunk};
use super::compression::Compression;
use super::error::ArtifactError;
use super::openssl_encryption::{EncryptionKey, OpensslEncryptor};
use super::partial_file::PartialFile;
use super::pipeline::{PipelineCounters, Progress, join_stage, write_chunks};

/// How to turn the plain data into the stored artifact.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// Compression applied first.
    pub compress: Compression,
    /// openssl-compatible encryption applied to the compressed data.
    pub encrypt: Option<EncryptionKey>,
}

/// What a successful backup read and wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// Plain bytes read from the input (the `.meta` `size_bytes`).
    pub bytes_in: u64,
    /// Bytes after compression, before encryption (the `.meta` `compressed_size`);
    /// `None` without compression.
    pub compressed_bytes: Option<u64>,
    /// Stored bytes written to the output.
    pub bytes_out: u64,
    /// SHA-256 of the stored bytes, for the `.sha256` sidecar and the `.meta`.
    pub sha256: Sha256Digest,
}

/// Compresses, encrypts and hashes `input` into `output` in one pass. Reading,
/// compression and encryption each run on their own thread, connected by bounded
/// channels of 512 KiB chunks; hashing and writing happen on the caller's thread.
/// `progress` is called from the reading thread after every chunk.
///
/// # Errors
/// [`ArtifactError::InvalidCompressionLevel`] before anything is read; then, in this
/// order of precedence, [`ArtifactError::ReadInput`], [`ArtifactError::WriteOutput`],
/// [`ArtifactError::Compression`]. On error the output is incomplete.
pub fn backup_stream<R: Read + Send, W: Write>(
    input: R,
    options: &BackupOptions,
    output: W,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<BackupSummary, ArtifactError> {
    let compression = options.compress.validate()?;
    let counters = &PipelineCounters::default();
    thread::scope(|scope| {
        let (plain_sender, plain_receiver) = chunk_channel();
        let reader = thread::Builder::new()
            .name("artifact-read".to_owned())
            .spawn_scoped(scope, move || read_plain(input, &plain_sender, counters, progress))
            .map_err(|source| ArtifactError::StartThread { source })?;

        let compressor = match compression {
            Compression::None => None,
            Compression::Gzip { level } => Some(Compressor::Gzip { level }),
            Compression::Zstd { level } => Some(Compressor::Zstd { level }),
        };
        let (compressed_receiver, compressor) = match compressor {
            None => (plain_receiver, None),
            Some(compression) => {
                let (sender, receiver) = chunk_channel();
                let handle = thread::Builder::new()
                    .name("artifact-compress".to_owned())
                    .spawn_scoped(scope, move || compress_stage(plain_receiver, sender, compression))
                    .map_err(|source| ArtifactError::StartThread { source })?;
                (receiver, Some(handle))
            }
        };

        let (stored_receiver, encryptor) = match &options.encrypt {
            Some(key) => {
                let (sender, receiver) = chunk_channel();
                let handle = thread::Builder::new()
                    .name("artifact-encrypt".to_owned())
                    .spawn_scoped(scope, move || {
                        encrypt_stage(compressed_receiver, &sender, key);
                    })
                    .map_err(|source| ArtifactError::StartThread { source })?;
                (receiver, Some(handle))
            }
            None => (compressed_receiver, None),
        };

        let mut hasher = Sha256::new();
        let written = write_chunks(stored_receiver, output, counters, None, |chunk| {
            hasher.update(chunk);
        });
        let bytes_in = join_stage(reader)?;
        let compressed = compressor.map(join_stage).transpose();
        if let Some(handle) = encryptor {
            join_stage(handle);
        }
        let bytes_out = written?;
        let compressed_bytes = compressed?.flatten();
        Ok(BackupSummary {
            bytes_in,
            compressed_bytes,
            bytes_out,
            sha256: Sha256Digest::from_bytes(hasher.finalize().into()),
        })
    })
}

/// [`backup_stream`] into the file `destination`, which appears only when the whole
/// artifact has been written and synced (see [`PartialFile`]).
///
/// # Errors
/// Those of [`backup_stream`], and [`ArtifactError::File`] for the file operations.
pub fn backup_to_file<R: Read + Send>(
    input: R,
    options: &BackupOptions,
    destination: &Path,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<BackupSummary, ArtifactError> {
    let mut partial = PartialFile::create(destination)?;
    let summary = backup_stream(input, options, &mut partial, progress)?;
    partial.commit()?;
    Ok(summary)
}

/// First stage: reads the input in whole chunks and passes them on.
fn read_plain<R: Read>(
    mut input: R,
    sender: &SyncSender<Vec<u8>>,
    counters: &PipelineCounters,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<u64, ArtifactError> {
    let mut total = 0_u64;
    loop {
        let mut chunk = Vec::with_capacity(CHUNK_SIZE);
        let read = read_chunk(&mut input, &mut chunk)
            .map_err(|source| ArtifactError::ReadInput { bytes: total, source })?;
        if read == 0 {
            return Ok(total);
        }
        total += read as u64;
        counters.record_read(total, progress);
        if sender.send(chunk).is_err() {
            // A later stage stopped and reports why.
            return Ok(total);
        }
    }
}

/// A compression that does something (the stage is left out for none).
#[derive(Clone, Copy)]
enum Compressor {
    Gzip { level: u32 },
    Zstd { level: i32 },
}

/// Second stage: compresses into chunks. Returns the compressed size (`None` only when
/// a later stage stopped, which that stage reports).
fn compress_stage(
    receiver: Receiver<Vec<u8>>,
    sender: SyncSender<Vec<u8>>,
    compression: Compressor,
) -> Result<Option<u64>, ArtifactError> {
    let writer = ChunkWriter::new(sender);
    let format = match compression {
        Compressor::Gzip { .. } => "gzip",
        Compressor::Zstd { .. } => "zstd",
    };
    let failed = |source: io::Error| ArtifactError::Compression { format, source };
    let writer = match compression {
        Compressor::Gzip { level } => {
            let mut encoder = flate2::write::GzEncoder::new(writer, flate2::Compression::new(level));
            let written = receiver.iter().try_for_each(|chunk| encoder.write_all(&chunk));
            if let Err(source) = written.and_then(|()| encoder.try_finish()) {
                return stopped_or(encoder.get_ref(), failed(source));
            }
            encoder.finish().map_err(failed)?
        }
        Compressor::Zstd { level } => {
            let mut encoder = zstd::stream::write::Encoder::new(writer, level).map_err(failed)?;
            // The zstd CLI stores a content checksum by default; do the same.
            encoder.include_checksum(true).map_err(failed)?;
            let written = receiver.iter().try_for_each(|chunk| encoder.write_all(&chunk));
            if let Err(source) = written.and_then(|()| encoder.do_finish()) {
                return stopped_or(encoder.get_ref(), failed(source));
            }
            encoder.finish().map_err(failed)?
        }
    };
    if writer.has_stopped() {
        return Ok(None);
    }
    match writer.finish() {
        Ok(total) => Ok(Some(total)),
        // The next stage stopped and reports why.
        Err(_) => Ok(None),
    }
}

/// A compressor's write failed: if because the next stage stopped, that stage reports
/// why; otherwise the compressor itself failed.
fn stopped_or(writer: &ChunkWriter, error: ArtifactError) -> Result<Option<u64>, ArtifactError> {
    if writer.has_stopped() { Ok(None) } else { Err(error) }
}

/// Third stage: openssl-compatible encryption, chunk by chunk.
fn encrypt_stage(receiver: Receiver<Vec<u8>>, sender: &SyncSender<Vec<u8>>, key: &EncryptionKey) {
    let mut encryptor = OpensslEncryptor::new(key);
    for chunk in &receiver {
        let mut stored = Vec::with_capacity(chunk.len() + 32);
        encryptor.update(&chunk, &mut stored);
        if !stored.is_empty() && sender.send(stored).is_err() {
            // The writer stopped and reports why.
            return;
        }
    }
    let mut last = Vec::with_capacity(32);
    encryptor.finish(&mut last);
    // A stopped writer reports why; nothing to add here.
    let _ = sender.send(last);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::openssl_encryption::Password;

    fn no_progress(_: Progress) {}

    fn key() -> EncryptionKey {
        EncryptionKey::new(Password::new(b"k".to_vec()), 1000).unwrap()
    }

    #[test]
    fn summarises_sizes_and_the_digest_of_what_it_wrote() {
        let plain = b"INSERT INTO t VALUES (1);\n".repeat(100_000);
        for (compress, encrypt) in [
            (Compression::Gzip { level: 9 }, Some(key())),
            (Compression::Zstd { level: 3 }, None),
            (Compression::None, Some(key())),
            (Compression::None, None),
        ] {
            let options = BackupOptions { compress, encrypt };
            let mut stored = Vec::new();
            let summary = backup_stream(&plain[..], &options, &mut stored, &no_progress).unwrap();
            assert_eq!(summary.bytes_in, plain.len() as u64);
            assert_eq!(summary.bytes_out, stored.len() as u64);
            assert_eq!(summary.sha256, Sha256Digest::of(&stored));
            match (compress, &options.encrypt) {
                (Compression::None, _) => assert_eq!(summary.compressed_bytes, None),
                (_, Some(_)) => {
                    let compressed = summary.compressed_bytes.unwrap();
                    assert!(compressed < plain.len() as u64 / 10);
                    assert_eq!(stored.len() as u64, 16 + (compressed / 16 + 1) * 16);
                }
                (_, None) => assert_eq!(summary.compressed_bytes, Some(stored.len() as u64)),
            }
        }
    }

    #[test]
    fn refuses_a_bad_level_before_reading() {
        let options = BackupOptions { compress: Compression::Gzip { level: 11 }, encrypt: None };
        let error = backup_stream(FailingReader, &options, io::sink(), &no_progress).unwrap_err();
        assert!(matches!(error, ArtifactError::InvalidCompressionLevel { .. }), "{error}");
    }

    struct FailingReader;

    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "pg_dump exited"))
        }
    }

    struct FullDisk;

    impl Write for FullDisk {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn reports_read_and_write_failures() {
        let options = BackupOptions { compress: Compression::Gzip { level: 1 }, encrypt: Some(key()) };
        let error = backup_stream(FailingReader, &options, io::sink(), &no_progress).unwrap_err();
        assert!(matches!(error, ArtifactError::ReadInput { bytes: 0, .. }), "{error}");
        let plain = vec![b'x'; 5 * CHUNK_SIZE];
        let error = backup_stream(&plain[..], &options, FullDisk, &no_progress).unwrap_err();
        assert!(matches!(error, ArtifactError::WriteOutput { bytes: 0, .. }), "{error}");
    }
}
