//! RDB files: the checks made before Redis is stopped (magic, version, the CRC-64 that
//! Redis writes at the end), and the durable copy into Redis's data directory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Bytes copied and checksummed per read.
const CHUNK_BYTES: usize = 1024 * 1024;
/// The opcode that ends an RDB's data, before the 8-byte checksum.
const END_OF_FILE_OPCODE: u8 = 0xFF;

/// What the header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The RDB format version (`REDIS0011` → 11).
    pub version: u32,
}

/// Why an RDB file is refused.
#[derive(Debug, thiserror::Error)]
pub enum RdbError {
    /// The file cannot be read.
    #[error("cannot read {path}: {detail}")]
    Unreadable {
        /// The file.
        path: String,
        /// The error.
        detail: String,
    },
    /// It does not start like an RDB file.
    #[error("{path} is not an RDB file: it does not start with `REDIS` and a 4-digit version ({found})")]
    NotRdb {
        /// The file.
        path: String,
        /// What it starts with.
        found: String,
    },
    /// The data does not match the checksum at its end.
    #[error("{path} is corrupt or truncated: {detail}")]
    Corrupt {
        /// The file.
        path: String,
        /// Which check failed.
        detail: String,
    },
    /// The copy could not be written.
    #[error("cannot write {path}: {detail}")]
    Unwritable {
        /// The file.
        path: String,
        /// The error.
        detail: String,
    },
}

/// Reads and checks the header of the file at `path`.
///
/// # Errors
/// The file is unreadable or is not an RDB file.
pub fn header(path: &Path) -> Result<Header, RdbError> {
    let unreadable = |detail: String| RdbError::Unreadable { path: path.display().to_string(), detail };
    let file = File::open(path).map_err(|error| unreadable(error.to_string()))?;
    let mut magic = Vec::with_capacity(9);
    file.take(9).read_to_end(&mut magic).map_err(|error| unreadable(error.to_string()))?;
    let version =
        (magic.len() == 9 && magic.starts_with(b"REDIS") && magic[5..].iter().all(u8::is_ascii_digit))
            .then(|| String::from_utf8_lossy(&magic[5..]).parse::<u32>().ok())
            .flatten();
    match version {
        Some(version) => Ok(Header { version }),
        None => Err(RdbError::NotRdb {
            path: path.display().to_string(),
            found: if magic.is_empty() {
                "the file is empty".to_owned()
            } else {
                format!("{:?}", String::from_utf8_lossy(&magic))
            },
        }),
    }
}

/// Copies `source` to `destination`, fsyncs it, and checks on the way that the data
/// matches the CRC-64 Redis stored at its end (RDB version 5 and later; a stored
/// checksum of zero means Redis ran with `rdbchecksum no`, and only the end-of-file
/// opcode is checked). `copied` is called with the bytes copied so far.
///
/// # Errors
/// Either file fails, or the copy does not verify; the destination is then removed.
pub fn copy_verified(
    source: &Path,
    destination: &Path,
    header: Header,
    mut copied: impl FnMut(u64, u64),
) -> Result<u64, RdbError> {
    let unreadable = |detail: String| RdbError::Unreadable { path: source.display().to_string(), detail };
    let unwritable =
        |detail: String| RdbError::Unwritable { path: destination.display().to_string(), detail };
    let mut input = File::open(source).map_err(|error| unreadable(error.to_string()))?;
    let total = input.metadata().map_err(|error| unreadable(error.to_string()))?.len();
    // Redis writes the trailer (opcode + checksum) since version 5.
    let trailer = if header.version >= 5 { 9 } else { 1 };
    if total < 9 + trailer {
        return Err(RdbError::Corrupt {
            path: source.display().to_string(),
            detail: format!("{total} bytes is too short for an RDB file"),
        });
    }
    let mut stored = [0_u8; 9];
    input.seek(SeekFrom::Start(total - trailer)).map_err(|error| unreadable(error.to_string()))?;
    input
        .read_exact(&mut stored[..usize::try_from(trailer).unwrap_or(1)])
        .map_err(|error| unreadable(error.to_string()))?;
    input.seek(SeekFrom::Start(0)).map_err(|error| unreadable(error.to_string()))?;

    let result = (|| {
        let mut output = File::create(destination).map_err(|error| unwritable(error.to_string()))?;
        let mut checksum = Crc64::default();
        let checksummed = total - trailer + 1; // everything up to and including the opcode
        let mut done = 0_u64;
        let mut buffer = vec![0; CHUNK_BYTES];
        loop {
            let read = input.read(&mut buffer).map_err(|error| unreadable(error.to_string()))?;
            if read == 0 {
                break;
            }
            let chunk = &buffer[..read];
            let in_checksum =
                usize::try_from(checksummed.saturating_sub(done)).unwrap_or(usize::MAX).min(read);
            checksum.update(&chunk[..in_checksum]);
            output.write_all(chunk).map_err(|error| unwritable(error.to_string()))?;
            done += read as u64;
            copied(done, total);
        }
        output.sync_all().map_err(|error| unwritable(error.to_string()))?;
        if done != total {
            return Err(RdbError::Corrupt {
                path: source.display().to_string(),
                detail: format!("it changed while being copied ({total} bytes, then {done})"),
            });
        }
        verify_trailer(source, &stored, trailer, checksum.value())?;
        Ok(total)
    })();
    if result.is_err() {
        // Nothing half-written may look like a dump Redis could load.
        let _ = std::fs::remove_file(destination);
    }
    result
}

fn verify_trailer(source: &Path, stored: &[u8; 9], trailer: u64, computed: u64) -> Result<(), RdbError> {
    let corrupt = |detail: String| RdbError::Corrupt { path: source.display().to_string(), detail };
    if stored[0] != END_OF_FILE_OPCODE {
        return Err(corrupt(format!(
            "it does not end with the end-of-file opcode 0xFF (found 0x{:02X}) where the checksum starts",
            stored[0]
        )));
    }
    if trailer == 9 {
        let mut checksum_bytes = [0_u8; 8];
        checksum_bytes.copy_from_slice(&stored[1..9]);
        let expected = u64::from_le_bytes(checksum_bytes);
        if expected != 0 && expected != computed {
            return Err(corrupt(format!("its CRC-64 is {computed:016x} but the file says {expected:016x}")));
        }
    }
    Ok(())
}

/// Whether two files hold the same bytes.
///
/// # Errors
/// One of them cannot be read.
pub fn same_content(first: &Path, second: &Path) -> std::io::Result<bool> {
    let (mut first, mut second) = (File::open(first)?, File::open(second)?);
    if first.metadata()?.len() != second.metadata()?.len() {
        return Ok(false);
    }
    let mut first_buffer = vec![0; CHUNK_BYTES];
    let mut second_buffer = vec![0; CHUNK_BYTES];
    loop {
        let read = first.read(&mut first_buffer)?;
        if read == 0 {
            return Ok(true);
        }
        second.read_exact(&mut second_buffer[..read])?;
        if first_buffer[..read] != second_buffer[..read] {
            return Ok(false);
        }
    }
}

/// The CRC-64 Redis uses ("Jones" polynomial, reflected, initial value 0).
#[derive(Clone, Copy, Debug, Default)]
struct Crc64 {
    value: u64,
}

/// The polynomial 0xad93d23594c935a9, bit-reversed for the reflected algorithm.
const JONES_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;

const TABLE: [u64; 256] = {
    let mut table = [0_u64; 256];
    let mut index = 0;
    while index < 256 {
        let mut value = index as u64;
        let mut bit = 0;
        while bit < 8 {
            value = if value & 1 == 1 { (value >> 1) ^ JONES_REFLECTED } else { value >> 1 };
            bit += 1;
        }
        table[index] = value;
        index += 1;
    }
    table
};

impl Crc64 {
    fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            let index = usize::from(self.value.to_le_bytes()[0] ^ byte);
            self.value = TABLE[index] ^ (self.value >> 8);
        }
    }

    fn value(self) -> u64 {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_matches_the_check_value_of_redis() {
        // Redis's crc64.c self-test: crc64(0, "123456789") == 0xe9c6d914c4b8d9ca.
        let mut checksum = Crc64::default();
        checksum.update(b"123456789");
        assert_eq!(checksum.value(), 0xe9c6_d914_c4b8_d9ca);
    }

    fn rdb_with_checksum(body: &[u8]) -> Vec<u8> {
        let mut data = b"REDIS0011".to_vec();
        data.extend_from_slice(body);
        data.push(END_OF_FILE_OPCODE);
        let mut checksum = Crc64::default();
        checksum.update(&data);
        data.extend_from_slice(&checksum.value().to_le_bytes());
        data
    }

    #[test]
    fn a_valid_file_is_copied_and_a_damaged_one_refused() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let source = directory.path().join("backup.rdb");
        let destination = directory.path().join("dump.rdb.partial");
        let data = rdb_with_checksum(b"\xfa\x09redis-ver\x057.0.0");
        std::fs::write(&source, &data).expect("write");
        let header = header(&source).expect("an RDB header");
        assert_eq!(header.version, 11);
        let mut reported = 0;
        let copied =
            copy_verified(&source, &destination, header, |done, _| reported = done).expect("verified");
        assert_eq!(copied, data.len() as u64);
        assert_eq!(reported, copied);
        assert!(same_content(&source, &destination).expect("readable"));

        let mut damaged = data.clone();
        damaged[12] ^= 0x01;
        std::fs::write(&source, &damaged).expect("write");
        let error = copy_verified(&source, &destination, header, |_, _| {}).expect_err("checksum mismatch");
        assert!(error.to_string().contains("CRC-64"), "{error}");
        assert!(!destination.exists(), "a refused copy is removed");

        std::fs::write(&source, &data[..data.len() - 4]).expect("write");
        let error = copy_verified(&source, &destination, header, |_, _| {}).expect_err("truncated");
        assert!(error.to_string().contains("corrupt or truncated"), "{error}");
    }

    #[test]
    fn a_file_that_is_not_rdb_is_refused_by_its_header() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let source = directory.path().join("backup.rdb");
        std::fs::write(&source, b"PGDMP\x01\x0e").expect("write");
        let error = header(&source).expect_err("not RDB");
        assert!(error.to_string().contains("is not an RDB file"), "{error}");
        std::fs::write(&source, b"").expect("write");
        assert!(header(&source).expect_err("empty").to_string().contains("the file is empty"));
    }
}
