//! Where the restore pipeline's stored bytes come from: owned chunks, cut from a `Read`
//! or handed over as they are by something that already has them in chunks (a
//! download), and hashed on the way.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use super::checksum::Sha256Digest;
use super::chunk_channel::{ChunkPool, read_chunk};

/// Stored bytes as a sequence of owned chunks, so that a source that already holds its
/// data in buffers passes them on instead of having them copied out through `Read`.
pub trait ChunkSource {
    /// The next chunk (it may be empty); `Ok(None)` after the last one. New buffers
    /// should come from `pool`, where the pipeline returns the chunks it has used up.
    ///
    /// # Errors
    /// Whatever keeps the source from delivering the rest of the data.
    fn next_chunk(&mut self, pool: &ChunkPool) -> io::Result<Option<Vec<u8>>>;
}

/// A `Read` cut into whole chunks (the last one shorter), so that chunks are large
/// and multiples of the cipher block size whatever the reader's own granularity.
pub struct ReadChunks<R>(pub R);

impl<R: Read> ChunkSource for ReadChunks<R> {
    fn next_chunk(&mut self, pool: &ChunkPool) -> io::Result<Option<Vec<u8>>> {
        let mut chunk = pool.take();
        match read_chunk(&mut self.0, &mut chunk) {
            Ok(0) => {
                pool.give(chunk);
                Ok(None)
            }
            Ok(_) => Ok(Some(chunk)),
            Err(error) => {
                pool.give(chunk);
                Err(error)
            }
        }
    }
}

/// A [`ChunkSource`] whose chunks are hashed (SHA-256) and counted as they are handed
/// out. The restore pipeline only borrows it: a caller whose restore failed can read
/// the rest of the source and still learn the digest of the whole input, without a
/// second hash of what the pipeline already read.
pub struct HashingSource<S> {
    source: S,
    hasher: Sha256,
    bytes: u64,
}

impl<S: ChunkSource> HashingSource<S> {
    /// Wraps `source`; nothing is read yet.
    pub fn new(source: S) -> Self {
        Self { source, hasher: Sha256::new(), bytes: 0 }
    }

    /// The next chunk that is not empty, hashed and counted; `Ok(None)` at the end.
    ///
    /// # Errors
    /// The source's own; [`bytes`](Self::bytes) then counts what came before.
    pub fn next_chunk(&mut self, pool: &ChunkPool) -> io::Result<Option<Vec<u8>>> {
        loop {
            match self.source.next_chunk(pool)? {
                Some(chunk) if chunk.is_empty() => pool.give(chunk),
                Some(chunk) => {
                    self.hasher.update(&chunk);
                    self.bytes += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                None => return Ok(None),
            }
        }
    }

    /// SHA-256 of every byte handed out so far.
    #[must_use]
    pub fn sha256(&self) -> Sha256Digest {
        Sha256Digest::from_bytes(self.hasher.clone().finalize().into())
    }

    /// How many bytes were handed out so far.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The source itself, e.g. to ask it why it failed.
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::chunk_channel::CHUNK_SIZE;

    /// Hands out the pieces it was given, as they are.
    struct Pieces(Vec<Vec<u8>>);

    impl ChunkSource for Pieces {
        fn next_chunk(&mut self, _pool: &ChunkPool) -> io::Result<Option<Vec<u8>>> {
            Ok(if self.0.is_empty() { None } else { Some(self.0.remove(0)) })
        }
    }

    #[test]
    fn hashes_and_counts_what_it_hands_out_and_skips_empty_chunks() {
        let pool = ChunkPool::new();
        let mut source = HashingSource::new(Pieces(vec![b"hello ".to_vec(), Vec::new(), b"world".to_vec()]));
        assert_eq!(source.next_chunk(&pool).unwrap().unwrap(), b"hello ");
        assert_eq!(source.sha256(), Sha256Digest::of(b"hello "));
        assert_eq!(source.next_chunk(&pool).unwrap().unwrap(), b"world");
        assert!(source.next_chunk(&pool).unwrap().is_none());
        assert_eq!(source.sha256(), Sha256Digest::of(b"hello world"));
        assert_eq!(source.bytes(), 11);
    }

    #[test]
    fn cuts_a_reader_into_whole_chunks() {
        let data = vec![7_u8; 2 * CHUNK_SIZE + 10];
        let pool = ChunkPool::new();
        let mut source = ReadChunks(io::BufReader::with_capacity(1000, &data[..]));
        let mut lengths = Vec::new();
        while let Some(chunk) = source.next_chunk(&pool).unwrap() {
            lengths.push(chunk.len());
        }
        assert_eq!(lengths, [CHUNK_SIZE, CHUNK_SIZE, 10]);
    }
}
