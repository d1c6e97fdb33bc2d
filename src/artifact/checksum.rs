//! SHA-256 digests and `.sha256` sidecars in the format `sha256sum` writes and checks.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::error::ArtifactError;

/// A SHA-256 digest. Displays (and serializes) as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// Wraps raw digest bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest of `data`.
    #[must_use]
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// Parses 64 hex digits, upper or lower case.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidDigest`] for anything else.
    pub fn from_hex(text: &str) -> Result<Self, ArtifactError> {
        let mut bytes = [0_u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|_| ArtifactError::InvalidDigest { text: text.to_owned() })?;
        Ok(Self(bytes))
    }

    /// 64 lowercase hex digits, as `sha256sum` prints them.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<[u8; 32]> for Sha256Digest {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl FromStr for Sha256Digest {
    type Err = ArtifactError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_hex(text)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Sha256Digest({})", self.to_hex())
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// SHA-256 and length of everything `reader` yields, for uploading a file that did not
/// come out of [`backup_stream`](super::backup_stream).
///
/// # Errors
/// [`ArtifactError::ReadInput`] when reading fails.
pub fn sha256_of_reader<R: Read>(mut reader: R) -> Result<(Sha256Digest, u64), ArtifactError> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; 1 << 20];
    let mut total = 0_u64;
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                hasher.update(&buffer[..read]);
                total += read as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ArtifactError::ReadInput { bytes: total, source });
            }
        }
    }
    Ok((Sha256Digest(hasher.finalize().into()), total))
}

/// One line of a checksum sidecar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChecksumEntry {
    /// The digest.
    pub digest: Sha256Digest,
    /// The file name the line names; `None` for a line holding only the digest.
    pub name: Option<String>,
}

/// Reads a `.sha256` sidecar: lines as `sha256sum` writes them (`<hex>  <name>`, or
/// `<hex> *<name>` in binary mode, with `\`-escaped names), BSD-style lines
/// (`SHA256 (<name>) = <hex>`, from `sha256sum --tag`), or a line with just the hex.
/// Blank lines are skipped; a trailing `\r` is ignored.
///
/// # Errors
/// [`ArtifactError::InvalidChecksumSidecar`] naming the first unreadable line, or
/// when there is no checksum at all.
pub fn parse_checksum_sidecar(text: &str) -> Result<Vec<ChecksumEntry>, ArtifactError> {
    let mut entries = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        if line.trim().is_empty() {
            continue;
        }
        let entry = parse_sidecar_line(line).ok_or_else(|| ArtifactError::InvalidChecksumSidecar {
            reason: format!(
                "line {} is neither `<sha256>  <name>`, `SHA256 (<name>) = <sha256>` nor a bare \
                 sha256: `{}`",
                index + 1,
                shorten(line)
            ),
        })?;
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(ArtifactError::InvalidChecksumSidecar { reason: "it holds no checksum line".to_owned() });
    }
    Ok(entries)
}

/// The expected digest of `object_name` from a sidecar's text.
///
/// A sidecar with one line applies to the object whatever name it gives (backup scripts
/// often record a temporary path); with several lines, the line whose file name (last
/// path component) equals the object's is used.
///
/// # Errors
/// An unreadable sidecar, or several lines none of which names the object.
pub fn checksum_for_object(text: &str, object_name: &str) -> Result<Sha256Digest, ArtifactError> {
    let entries = parse_checksum_sidecar(text)?;
    if let [only] = entries.as_slice() {
        return Ok(only.digest);
    }
    let wanted = last_path_component(object_name);
    entries
        .iter()
        .find(|entry| entry.name.as_deref().map(last_path_component) == Some(wanted))
        .map(|entry| entry.digest)
        .ok_or_else(|| ArtifactError::InvalidChecksumSidecar {
            reason: format!("it lists {} files, none of them named `{wanted}`", entries.len()),
        })
}

/// One sidecar line in `sha256sum` text mode (`<hex>  <name>\n`), escaping the name the
/// way `sha256sum` does when it holds a backslash, newline or carriage return, so that
/// `sha256sum -c` accepts the file.
#[must_use]
pub fn checksum_sidecar_line(digest: &Sha256Digest, name: &str) -> String {
    let needs_escape = name.contains(['\\', '\n', '\r']);
    let mut line = String::with_capacity(name.len() + 68);
    if needs_escape {
        line.push('\\');
    }
    line.push_str(&digest.to_hex());
    line.push_str("  ");
    if needs_escape {
        for character in name.chars() {
            match character {
                '\\' => line.push_str("\\\\"),
                '\n' => line.push_str("\\n"),
                '\r' => line.push_str("\\r"),
                other => line.push(other),
            }
        }
    } else {
        line.push_str(name);
    }
    line.push('\n');
    line
}

fn parse_sidecar_line(line: &str) -> Option<ChecksumEntry> {
    if let Some(rest) = line.strip_prefix("SHA256 (") {
        let (name, hex_digits) = rest.rsplit_once(") = ")?;
        let digest = Sha256Digest::from_hex(hex_digits.trim()).ok()?;
        return Some(ChecksumEntry { digest, name: Some(name.to_owned()) });
    }
    let (escaped, line) = match line.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let hex_digits = line.get(..64)?;
    let digest = Sha256Digest::from_hex(hex_digits).ok()?;
    let rest = &line[64..];
    if rest.trim().is_empty() && !escaped {
        return Some(ChecksumEntry { digest, name: None });
    }
    // `sha256sum` separates digest and name by a space and a mode character: a second
    // space for text mode, `*` for binary mode.
    let name = rest.strip_prefix("  ").or_else(|| rest.strip_prefix(" *"))?;
    if name.is_empty() {
        return None;
    }
    let name = if escaped { unescape_name(name)? } else { name.to_owned() };
    Some(ChecksumEntry { digest, name: Some(name) })
}

fn unescape_name(name: &str) -> Option<String> {
    let mut unescaped = String::with_capacity(name.len());
    let mut characters = name.chars();
    while let Some(character) = characters.next() {
        if character == '\\' {
            match characters.next()? {
                '\\' => unescaped.push('\\'),
                'n' => unescaped.push('\n'),
                'r' => unescaped.push('\r'),
                _ => return None,
            }
        } else {
            unescaped.push(character);
        }
    }
    Some(unescaped)
}

fn last_path_component(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn shorten(line: &str) -> String {
    const LIMIT: usize = 100;
    match line.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn digests_and_hex_round_trip() {
        assert_eq!(Sha256Digest::of(b"").to_hex(), EMPTY);
        assert_eq!(Sha256Digest::of(b"abc").to_string(), ABC);
        assert_eq!(Sha256Digest::from_hex(&ABC.to_uppercase()).unwrap(), Sha256Digest::of(b"abc"));
        assert!(Sha256Digest::from_hex("abc").is_err());
        assert_eq!(sha256_of_reader(&b"abc"[..]).unwrap(), (Sha256Digest::of(b"abc"), 3));
    }

    #[test]
    fn reads_every_sidecar_style() {
        let text_mode = format!("{ABC}  dharma_dharma_20251116_020000.sql.gz.enc\n");
        let binary_mode = format!("{ABC} */tmp/backup/dharma.sql.gz.enc\n");
        let bare = format!("{ABC}\r\n");
        let tagged = format!("SHA256 (dharma.sql.gz.enc) = {ABC}\n");
        for text in [text_mode, binary_mode, bare, tagged] {
            assert_eq!(
                checksum_for_object(&text, "dharma.sql.gz.enc").unwrap(),
                Sha256Digest::of(b"abc"),
                "{text}"
            );
        }
    }

    #[test]
    fn picks_the_line_naming_the_object_when_there_are_several() {
        let text = format!("{EMPTY}  other.enc\n\n{ABC}  backups/wanted.enc\n");
        assert_eq!(checksum_for_object(&text, "prefix/wanted.enc").unwrap(), Sha256Digest::of(b"abc"));
        let error = checksum_for_object(&text, "missing.enc").unwrap_err();
        assert!(error.to_string().contains("none of them named `missing.enc`"));
    }

    #[test]
    fn rejects_malformed_sidecars_with_the_line_number() {
        let error = parse_checksum_sidecar(&format!("{ABC}  ok\nnot a checksum\n")).unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
        assert!(parse_checksum_sidecar("\n\n").is_err());
        assert!(parse_checksum_sidecar(&format!("{ABC} x")).is_err());
    }

    #[test]
    fn writes_and_reads_back_escaped_names() {
        let digest = Sha256Digest::of(b"abc");
        assert_eq!(checksum_sidecar_line(&digest, "a.enc"), format!("{ABC}  a.enc\n"));
        let odd = "we\\ird\nname";
        let line = checksum_sidecar_line(&digest, odd);
        assert!(line.starts_with('\\'));
        let entries = parse_checksum_sidecar(&line).unwrap();
        assert_eq!(entries[0].name.as_deref(), Some(odd));
    }
}
