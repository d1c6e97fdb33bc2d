//! `openssl enc -aes-256-cbc -salt -pbkdf2` compatible streaming encryption.
//!
//! The file layout is `Salted__`, an 8-byte salt, then AES-256-CBC ciphertext with
//! PKCS#7 padding. Key and IV are the 48 bytes of PBKDF2-HMAC-SHA256(password, salt,
//! iterations): key = bytes 0–31, IV = bytes 32–47. CBC has no integrity of its own,
//! which is why the pipeline checks a SHA-256 of the stored bytes.

use std::fmt;

use aes::Aes256;
use cbc::cipher::{Block, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use sha2::Sha256;

use super::error::{ArtifactError, describe_prefix};

/// The eight bytes every salted openssl file starts with.
pub const OPENSSL_MAGIC: &[u8; 8] = b"Salted__";

/// openssl's `-iter` default when `-pbkdf2` is given without `-iter`.
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 10_000;

/// Length of the salt that follows the magic.
const SALT_LENGTH: usize = 8;
/// Magic plus salt.
const HEADER_LENGTH: usize = OPENSSL_MAGIC.len() + SALT_LENGTH;
/// The AES block size.
const BLOCK_LENGTH: usize = 16;
/// openssl reads `-pass file:` with a 1024-byte buffer, keeping at most 1023 bytes.
const OPENSSL_PASSWORD_LIMIT: usize = 1023;

type Aes256CbcDecryptor = cbc::Decryptor<Aes256>;
type Aes256CbcEncryptor = cbc::Encryptor<Aes256>;

/// The password exactly as openssl derives it from `-pass file:KEY`: the file's first
/// line without its newline.
///
/// openssl reads the line as a C string, so it also stops at a NUL byte, keeps a `\r`
/// before the newline, and keeps at most 1023 bytes. An empty result is possible (a
/// file holding only a newline); openssl accepts that, but refuses an empty file,
/// which [`Password::from_key_file_contents`] reports.
#[must_use]
pub fn password_from_key_file_contents(contents: &[u8]) -> Vec<u8> {
    let line_end = contents.iter().position(|&byte| byte == b'\n' || byte == 0).unwrap_or(contents.len());
    contents[..line_end.min(OPENSSL_PASSWORD_LIMIT)].to_vec()
}

/// A password for openssl-compatible encryption. Its `Debug` output is redacted and
/// it has no `Display`, so it cannot end up in a message or the journal by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    /// Wraps the password bytes as they are.
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The password openssl would use for `-pass file:` with a file of these contents.
    ///
    /// # Errors
    /// [`ArtifactError::EmptyKeyFile`] for an empty file, which openssl refuses too.
    pub fn from_key_file_contents(contents: &[u8]) -> Result<Self, ArtifactError> {
        if contents.is_empty() {
            return Err(ArtifactError::EmptyKeyFile);
        }
        Ok(Self(password_from_key_file_contents(contents)))
    }

    /// The raw password bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Password(<redacted>)")
    }
}

/// What openssl needs besides the salt to derive key and IV: the password and the
/// PBKDF2 iteration count. Used for both directions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionKey {
    password: Password,
    iterations: u32,
}

impl EncryptionKey {
    /// A key from a password and an iteration count.
    ///
    /// # Errors
    /// [`ArtifactError::ZeroIterations`] when `iterations` is 0.
    pub fn new(password: Password, iterations: u32) -> Result<Self, ArtifactError> {
        if iterations == 0 {
            return Err(ArtifactError::ZeroIterations);
        }
        Ok(Self { password, iterations })
    }

    /// A key from the contents of an openssl key file (`-pass file:KEY`).
    ///
    /// # Errors
    /// An empty file, or zero iterations.
    pub fn from_key_file_contents(contents: &[u8], iterations: u32) -> Result<Self, ArtifactError> {
        Self::new(Password::from_key_file_contents(contents)?, iterations)
    }

    /// The password.
    #[must_use]
    pub fn password(&self) -> &Password {
        &self.password
    }

    /// The PBKDF2 iteration count.
    #[must_use]
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// PBKDF2-HMAC-SHA256 → (AES-256 key, CBC IV), as `openssl enc -pbkdf2` derives them.
    fn derive_key_and_iv(&self, salt: [u8; SALT_LENGTH]) -> ([u8; 32], [u8; 16]) {
        let derived: [u8; 48] =
            pbkdf2::pbkdf2_hmac_array::<Sha256, 48>(self.password.as_bytes(), &salt, self.iterations);
        let mut key = [0_u8; 32];
        let mut iv = [0_u8; 16];
        key.copy_from_slice(&derived[..32]);
        iv.copy_from_slice(&derived[32..]);
        (key, iv)
    }
}

/// Streaming decryption of `openssl enc -aes-256-cbc -pbkdf2` output.
///
/// Feed the stored bytes in pieces of any size with [`update`](Self::update), then call
/// [`finish`](Self::finish). The last cipher block is held back until `finish`, because
/// only the final block carries the padding.
pub struct OpensslDecryptor {
    key: EncryptionKey,
    state: DecryptorState,
    ciphertext_bytes: u64,
}

enum DecryptorState {
    /// Collecting the 16-byte header; holds what arrived so far.
    ReadingHeader(Vec<u8>),
    /// Decrypting; `pending` holds ciphertext not yet decrypted (at most one block
    /// plus an incomplete one).
    Decrypting { cipher: Box<Aes256CbcDecryptor>, pending: Vec<u8> },
}

impl OpensslDecryptor {
    /// A decryptor that will derive its key once the salt has been read.
    #[must_use]
    pub fn new(key: &EncryptionKey) -> Self {
        Self {
            key: key.clone(),
            state: DecryptorState::ReadingHeader(Vec::with_capacity(HEADER_LENGTH)),
            ciphertext_bytes: 0,
        }
    }

    /// Consumes `input` and appends whatever plaintext is certain to `output`.
    ///
    /// # Errors
    /// [`ArtifactError::NotOpensslEncrypted`] as soon as the first bytes differ from
    /// `Salted__`.
    pub fn update(&mut self, mut input: &[u8], output: &mut Vec<u8>) -> Result<(), ArtifactError> {
        if let DecryptorState::ReadingHeader(header) = &mut self.state {
            let wanted = HEADER_LENGTH - header.len();
            let taken = wanted.min(input.len());
            header.extend_from_slice(&input[..taken]);
            input = &input[taken..];
            let magic_seen = header.len().min(OPENSSL_MAGIC.len());
            if header[..magic_seen] != OPENSSL_MAGIC[..magic_seen] {
                return Err(ArtifactError::NotOpensslEncrypted { found: describe_prefix(header) });
            }
            if header.len() < HEADER_LENGTH {
                return Ok(());
            }
            let mut salt = [0_u8; SALT_LENGTH];
            salt.copy_from_slice(&header[OPENSSL_MAGIC.len()..]);
            let (key, iv) = self.key.derive_key_and_iv(salt);
            self.state = DecryptorState::Decrypting {
                cipher: Box::new(Aes256CbcDecryptor::new(&key.into(), &iv.into())),
                pending: Vec::with_capacity(2 * BLOCK_LENGTH),
            };
        }
        let DecryptorState::Decrypting { cipher, pending } = &mut self.state else {
            return Ok(());
        };
        self.ciphertext_bytes += input.len() as u64;
        let available = pending.len() + input.len();
        // Keep back an incomplete block, or else the last complete block: it may be
        // the final one, whose padding can only be removed once the end is known.
        let remainder = available % BLOCK_LENGTH;
        let kept = if remainder == 0 { available.min(BLOCK_LENGTH) } else { remainder };
        let decrypted_length = available - kept;
        if decrypted_length == 0 {
            pending.extend_from_slice(input);
            return Ok(());
        }
        // `pending` is shorter than one block here, so all of it is decrypted now.
        let from_input = decrypted_length - pending.len();
        let start = output.len();
        output.reserve(decrypted_length);
        output.extend_from_slice(pending);
        output.extend_from_slice(&input[..from_input]);
        decrypt_in_place(cipher, &mut output[start..]);
        pending.clear();
        pending.extend_from_slice(&input[from_input..]);
        Ok(())
    }

    /// Decrypts the held-back last block, removes its padding and appends the rest.
    ///
    /// # Errors
    /// [`ArtifactError::TruncatedCiphertext`] when the data ended inside the header or
    /// inside a block, [`ArtifactError::WrongKeyOrIterationCount`] when the padding is
    /// invalid.
    pub fn finish(self, output: &mut Vec<u8>) -> Result<(), ArtifactError> {
        let (mut cipher, pending) = match self.state {
            DecryptorState::ReadingHeader(header) => {
                let detail = if header.is_empty() {
                    "it is empty, but an encrypted file has at least a 16-byte header and one \
                     16-byte block"
                        .to_owned()
                } else {
                    format!("it ends after {} bytes, inside the 16-byte `Salted__` header", header.len())
                };
                return Err(ArtifactError::TruncatedCiphertext { detail });
            }
            DecryptorState::Decrypting { cipher, pending } => (cipher, pending),
        };
        if pending.len() != BLOCK_LENGTH {
            let detail = if self.ciphertext_bytes == 0 {
                "nothing follows the 16-byte header, but openssl always writes at least one \
                 16-byte block"
                    .to_owned()
            } else {
                format!(
                    "the {} bytes after the header are not a whole number of 16-byte AES blocks",
                    self.ciphertext_bytes
                )
            };
            return Err(ArtifactError::TruncatedCiphertext { detail });
        }
        let mut last_block = [0_u8; BLOCK_LENGTH];
        last_block.copy_from_slice(&pending);
        decrypt_in_place(&mut cipher, &mut last_block);
        let padding = usize::from(last_block[BLOCK_LENGTH - 1]);
        let padding_is_valid = (1..=BLOCK_LENGTH).contains(&padding)
            && last_block[BLOCK_LENGTH - padding..].iter().all(|&byte| usize::from(byte) == padding);
        if !padding_is_valid {
            return Err(ArtifactError::WrongKeyOrIterationCount);
        }
        output.extend_from_slice(&last_block[..BLOCK_LENGTH - padding]);
        Ok(())
    }
}

/// Streaming encryption producing exactly what `openssl enc -aes-256-cbc -salt -pbkdf2`
/// writes: header, full blocks as they fill, PKCS#7 padding at [`finish`](Self::finish).
pub struct OpensslEncryptor {
    cipher: Box<Aes256CbcEncryptor>,
    header: Option<[u8; HEADER_LENGTH]>,
    pending: Vec<u8>,
}

impl OpensslEncryptor {
    /// An encryptor with a fresh random salt, as `-salt` does.
    #[must_use]
    pub fn new(key: &EncryptionKey) -> Self {
        Self::with_salt(key, rand::random())
    }

    /// An encryptor with a chosen salt (openssl's `-S`); for reproducible output.
    #[must_use]
    pub fn with_salt(key: &EncryptionKey, salt: [u8; SALT_LENGTH]) -> Self {
        let (aes_key, iv) = key.derive_key_and_iv(salt);
        let mut header = [0_u8; HEADER_LENGTH];
        header[..OPENSSL_MAGIC.len()].copy_from_slice(OPENSSL_MAGIC);
        header[OPENSSL_MAGIC.len()..].copy_from_slice(&salt);
        Self {
            cipher: Box::new(Aes256CbcEncryptor::new(&aes_key.into(), &iv.into())),
            header: Some(header),
            pending: Vec::with_capacity(BLOCK_LENGTH),
        }
    }

    /// Consumes plaintext and appends the ciphertext of every completed block (and the
    /// header, the first time) to `output`.
    pub fn update(&mut self, input: &[u8], output: &mut Vec<u8>) {
        if let Some(header) = self.header.take() {
            output.extend_from_slice(&header);
        }
        let available = self.pending.len() + input.len();
        let encrypted_length = available - available % BLOCK_LENGTH;
        if encrypted_length == 0 {
            self.pending.extend_from_slice(input);
            return;
        }
        let from_input = encrypted_length - self.pending.len();
        let start = output.len();
        output.reserve(encrypted_length);
        output.extend_from_slice(&self.pending);
        output.extend_from_slice(&input[..from_input]);
        encrypt_in_place(&mut self.cipher, &mut output[start..]);
        self.pending.clear();
        self.pending.extend_from_slice(&input[from_input..]);
    }

    /// Pads and encrypts the last block (a whole block of padding when the plaintext
    /// length is a multiple of 16, as PKCS#7 wants).
    pub fn finish(mut self, output: &mut Vec<u8>) {
        if let Some(header) = self.header.take() {
            output.extend_from_slice(&header);
        }
        let padding = BLOCK_LENGTH - self.pending.len();
        let mut last_block = [u8::try_from(padding).unwrap_or(u8::MAX); BLOCK_LENGTH];
        last_block[..self.pending.len()].copy_from_slice(&self.pending);
        encrypt_in_place(&mut self.cipher, &mut last_block);
        output.extend_from_slice(&last_block);
    }
}

/// Decrypts whole blocks in place; `data.len()` is a multiple of 16 by construction.
fn decrypt_in_place(cipher: &mut Aes256CbcDecryptor, data: &mut [u8]) {
    let (blocks, rest) = Block::<Aes256CbcDecryptor>::slice_as_chunks_mut(data);
    debug_assert!(rest.is_empty(), "callers pass whole blocks");
    cipher.decrypt_blocks(blocks);
}

/// Encrypts whole blocks in place; `data.len()` is a multiple of 16 by construction.
fn encrypt_in_place(cipher: &mut Aes256CbcEncryptor, data: &mut [u8]) {
    let (blocks, rest) = Block::<Aes256CbcEncryptor>::slice_as_chunks_mut(data);
    debug_assert!(rest.is_empty(), "callers pass whole blocks");
    cipher.encrypt_blocks(blocks);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(password: &str, iterations: u32) -> EncryptionKey {
        EncryptionKey::new(Password::new(password.as_bytes().to_vec()), iterations).unwrap()
    }

    fn encrypt_all(key: &EncryptionKey, salt: [u8; 8], plaintext: &[u8], piece: usize) -> Vec<u8> {
        let mut encryptor = OpensslEncryptor::with_salt(key, salt);
        let mut output = Vec::new();
        for part in plaintext.chunks(piece.max(1)) {
            encryptor.update(part, &mut output);
        }
        encryptor.finish(&mut output);
        output
    }

    fn decrypt_all(key: &EncryptionKey, stored: &[u8], piece: usize) -> Result<Vec<u8>, ArtifactError> {
        let mut decryptor = OpensslDecryptor::new(key);
        let mut output = Vec::new();
        for part in stored.chunks(piece.max(1)) {
            decryptor.update(part, &mut output)?;
        }
        decryptor.finish(&mut output)?;
        Ok(output)
    }

    /// Produced once with `printf 'hello, dr-plan' | openssl enc -aes-256-cbc -pbkdf2
    /// -salt -pass pass:secret | xxd -p` (openssl 3.0.19); its salt is b51a9a993e3ee3c0.
    const OPENSSL_HELLO: &str = "53616c7465645f5fb51a9a993e3ee3c0226de0e98a468fed01ae6c8553b086df";

    #[test]
    fn matches_a_file_written_by_the_openssl_cli() {
        let stored = hex::decode(OPENSSL_HELLO).unwrap();
        let key = key("secret", DEFAULT_PBKDF2_ITERATIONS);
        assert_eq!(decrypt_all(&key, &stored, 5).unwrap(), b"hello, dr-plan");
        assert_eq!(
            encrypt_all(&key, [0xb5, 0x1a, 0x9a, 0x99, 0x3e, 0x3e, 0xe3, 0xc0], b"hello, dr-plan", 3),
            stored
        );
    }

    #[test]
    fn round_trips_every_length_around_the_block_size_in_any_piece_size() {
        let key = key("pass phrase", 3);
        for length in [0, 1, 15, 16, 17, 31, 32, 33, 100] {
            let plaintext: Vec<u8> =
                (0..length).map(|index| u8::try_from(index * 7 % 251).unwrap()).collect();
            let stored = encrypt_all(&key, [9; 8], &plaintext, 7);
            assert_eq!(stored.len(), 16 + (length / 16 + 1) * 16);
            for piece in [1, 3, 16, 17, 1000] {
                assert_eq!(decrypt_all(&key, &stored, piece).unwrap(), plaintext);
            }
        }
    }

    #[test]
    fn reports_a_missing_header_at_the_first_wrong_byte() {
        let key = key("k", 1);
        let mut decryptor = OpensslDecryptor::new(&key);
        let error = decryptor.update(b"\x1f\x8b", &mut Vec::new()).unwrap_err();
        assert!(matches!(error, ArtifactError::NotOpensslEncrypted { .. }));
        assert!(error.to_string().contains("not an openssl-encrypted file"));
    }

    #[test]
    fn reports_truncation_inside_the_header_and_inside_a_block() {
        let key = key("k", 1);
        let stored = encrypt_all(&key, [0; 8], b"some plaintext, long enough", 64);
        for cut in [0, 5, 12, 16, stored.len() - 1, 20] {
            let error = decrypt_all(&key, &stored[..cut], 64).unwrap_err();
            assert!(matches!(error, ArtifactError::TruncatedCiphertext { .. }), "cut at {cut}: {error}");
        }
    }

    #[test]
    fn reports_a_wrong_password_or_iteration_count_as_bad_padding() {
        let stored = encrypt_all(&key("right", 1000), [4; 8], &[b'x'; 1000], 100);
        for wrong in [key("wrong", 1000), key("right", 999)] {
            let error = decrypt_all(&wrong, &stored, 100).unwrap_err();
            assert!(matches!(error, ArtifactError::WrongKeyOrIterationCount));
            assert!(error.to_string().contains("wrong key or wrong iteration count"));
        }
    }

    #[test]
    fn takes_the_password_from_the_first_line_like_openssl() {
        assert_eq!(password_from_key_file_contents(b"abc\ndef\n"), b"abc");
        assert_eq!(password_from_key_file_contents(b"abc\r\n"), b"abc\r");
        assert_eq!(password_from_key_file_contents(b"ab\0cd\n"), b"ab");
        assert_eq!(password_from_key_file_contents(b"no newline"), b"no newline");
        assert_eq!(password_from_key_file_contents(b"\n"), b"");
        assert_eq!(password_from_key_file_contents(&[b'x'; 2000]).len(), 1023);
        assert!(matches!(Password::from_key_file_contents(b""), Err(ArtifactError::EmptyKeyFile)));
        assert!(matches!(
            EncryptionKey::new(Password::new(b"x".to_vec()), 0),
            Err(ArtifactError::ZeroIterations)
        ));
    }

    #[test]
    fn never_shows_the_password() {
        let key = key("hunter2", 1);
        assert!(!format!("{key:?}").contains("hunter2"));
    }
}
