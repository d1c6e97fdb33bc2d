//! What the restore and backup pipelines share: progress reports, counters that
//! stages read across threads, and the final stage that writes to the caller's output.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::thread::ScopedJoinHandle;

use super::chunk_channel::ChunkPool;
use super::error::ArtifactError;

/// Where a pipeline is; reported after every chunk read from the input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes read from the input so far: stored bytes when restoring, plain bytes when
    /// backing up.
    pub bytes_read: u64,
    /// Bytes written to the output so far.
    pub bytes_written: u64,
}

/// Counters shared between the stages of one run.
#[derive(Default)]
pub(crate) struct PipelineCounters {
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    /// Set when writing the output failed, so that the reader stops at once instead of
    /// reading on to complete a checksum that no longer matters.
    output_failed: AtomicBool,
}

impl PipelineCounters {
    /// Records `total` bytes read and reports progress.
    pub(crate) fn record_read(&self, total: u64, progress: &(dyn Fn(Progress) + Sync)) {
        self.bytes_read.store(total, Ordering::Relaxed);
        progress(Progress { bytes_read: total, bytes_written: self.bytes_written.load(Ordering::Relaxed) });
    }

    pub(crate) fn output_failed(&self) -> bool {
        self.output_failed.load(Ordering::SeqCst)
    }
}

/// The last stage, on the caller's thread: writes every chunk to `output` (after
/// showing it to `inspect`), then flushes. Returns the number of bytes written.
/// Written chunks go back to `pool`, when the stages before take theirs from one.
///
/// On failure it marks the output as failed and returns; dropping `receiver` then
/// stops the stages before it.
pub(crate) fn write_chunks<W: Write>(
    receiver: Receiver<Vec<u8>>,
    mut output: W,
    counters: &PipelineCounters,
    pool: Option<&ChunkPool>,
    mut inspect: impl FnMut(&[u8]),
) -> Result<u64, ArtifactError> {
    let mut written = 0_u64;
    let result = (|| {
        for chunk in &receiver {
            inspect(&chunk);
            output.write_all(&chunk)?;
            written += chunk.len() as u64;
            counters.bytes_written.store(written, Ordering::Relaxed);
            if let Some(pool) = pool {
                pool.give(chunk);
            }
        }
        output.flush()
    })();
    result.map_err(|source| {
        counters.output_failed.store(true, Ordering::SeqCst);
        ArtifactError::WriteOutput { bytes: written, source }
    })?;
    Ok(written)
}

/// Waits for a stage thread. A panic in a stage is a bug, so it is passed on as a panic.
pub(crate) fn join_stage<T>(handle: ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}
