//! Compression formats: what to write, what to read, and how to tell them apart.

use super::error::ArtifactError;

/// How the restore direction decompresses the (decrypted) data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Decompression {
    /// Pass the data through as it is.
    None,
    /// gzip, including multi-member files (`cat a.gz b.gz`, pigz output).
    Gzip,
    /// zstd, including several frames.
    Zstd,
    /// Decide by the magic bytes: gzip, zstd, or otherwise none.
    #[default]
    Auto,
}

/// How the backup direction compresses the plain data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Store as it is.
    None,
    /// gzip at `level` 0–9 (`gzip -9` is 9; `gzip`'s default is 6).
    Gzip {
        /// The compression level.
        level: u32,
    },
    /// zstd at `level` (1–22, or negative for the fast levels; `zstd`'s default is 3).
    Zstd {
        /// The compression level.
        level: i32,
    },
}

impl Compression {
    /// Checks the level against what the format accepts.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidCompressionLevel`] naming the accepted range.
    pub fn validate(self) -> Result<Self, ArtifactError> {
        match self {
            Self::None => Ok(self),
            Self::Gzip { level } => {
                if level <= 9 {
                    Ok(self)
                } else {
                    Err(ArtifactError::InvalidCompressionLevel {
                        format: "gzip",
                        level: i32::try_from(level).unwrap_or(i32::MAX),
                        range: "0 to 9".to_owned(),
                    })
                }
            }
            Self::Zstd { level } => {
                let range = zstd::compression_level_range();
                if range.contains(&level) && level != 0 {
                    Ok(self)
                } else {
                    Err(ArtifactError::InvalidCompressionLevel {
                        format: "zstd",
                        level,
                        range: format!("{} to -1 or 1 to {}", range.start(), range.end()),
                    })
                }
            }
        }
    }

    /// The format this setting writes.
    #[must_use]
    pub fn format(self) -> CompressionFormat {
        match self {
            Self::None => CompressionFormat::None,
            Self::Gzip { .. } => CompressionFormat::Gzip,
            Self::Zstd { .. } => CompressionFormat::Zstd,
        }
    }
}

/// A compression format as found in data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionFormat {
    /// Not compressed (or not in a format dr-plan knows).
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl CompressionFormat {
    /// The format's name as used in plans and messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }

    /// Whether `prefix` (the first bytes of the data) starts like this format. With
    /// fewer bytes than the magic has, only the bytes present are compared.
    #[must_use]
    pub fn matches_prefix(self, prefix: &[u8]) -> bool {
        match self {
            Self::None => true,
            Self::Gzip => !prefix.is_empty() && starts_like(prefix, &GZIP_MAGIC),
            Self::Zstd => {
                !prefix.is_empty() && (starts_like(prefix, &ZSTD_MAGIC) || is_zstd_skippable_frame(prefix))
            }
        }
    }
}

/// Bytes needed to tell the formats apart.
pub(crate) const MAGIC_LENGTH: usize = 4;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The format the data starting with `prefix` is in: gzip (`1f 8b`), zstd
/// (`28 b5 2f fd`, or a skippable frame `5? 2a 4d 18`), otherwise none.
#[must_use]
pub fn detect_compression(prefix: &[u8]) -> CompressionFormat {
    if prefix.len() >= GZIP_MAGIC.len() && prefix.starts_with(&GZIP_MAGIC) {
        CompressionFormat::Gzip
    } else if prefix.len() >= ZSTD_MAGIC.len()
        && (prefix.starts_with(&ZSTD_MAGIC) || is_zstd_skippable_frame(prefix))
    {
        CompressionFormat::Zstd
    } else {
        CompressionFormat::None
    }
}

fn starts_like(prefix: &[u8], magic: &[u8]) -> bool {
    let compared = prefix.len().min(magic.len());
    prefix[..compared] == magic[..compared]
}

/// Skippable frames have the little-endian magic `0x184D2A50`..=`0x184D2A5F`.
fn is_zstd_skippable_frame(prefix: &[u8]) -> bool {
    let Some(first) = prefix.first() else {
        return false;
    };
    first & 0xf0 == 0x50 && starts_like(&prefix[1..], &[0x2a, 0x4d, 0x18])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_by_their_magic_bytes() {
        assert_eq!(detect_compression(&[0x1f, 0x8b, 8, 0]), CompressionFormat::Gzip);
        assert_eq!(detect_compression(&[0x28, 0xb5, 0x2f, 0xfd]), CompressionFormat::Zstd);
        assert_eq!(detect_compression(&[0x5e, 0x2a, 0x4d, 0x18]), CompressionFormat::Zstd);
        assert_eq!(detect_compression(b"-- PostgreSQL"), CompressionFormat::None);
        assert_eq!(detect_compression(b""), CompressionFormat::None);
        assert_eq!(detect_compression(&[0x1f]), CompressionFormat::None);
        assert!(CompressionFormat::Gzip.matches_prefix(&[0x1f]));
        assert!(!CompressionFormat::Zstd.matches_prefix(b""));
    }

    #[test]
    fn validates_levels() {
        assert!(Compression::Gzip { level: 9 }.validate().is_ok());
        assert!(Compression::Gzip { level: 10 }.validate().is_err());
        assert!(Compression::Zstd { level: 19 }.validate().is_ok());
        assert!(Compression::Zstd { level: -5 }.validate().is_ok());
        let error = Compression::Zstd { level: 99 }.validate().unwrap_err();
        assert!(error.to_string().contains("1 to 22"), "{error}");
    }
}
