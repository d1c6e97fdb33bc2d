//! The artifact pipeline against the real `openssl`, `gzip`, `zstd` and `sha256sum`:
//! what the Dharma backup job writes, dr-plan reads, and the other way round.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use dr_plan::artifact::{
    ArtifactError, BackupMetadata, BackupOptions, Compression, Decompression, EncryptionKey, Progress,
    RestoreOptions, Sha256Digest, backup_to_file, checksum_for_object, checksum_sidecar_line,
    restore_to_file,
};

const SIZES: [usize; 7] = [0, 1, 15, 16, 17, (1 << 20) + 3, 3 * (1 << 20) + 7];

fn no_progress(_: Progress) {}

/// Runs a shell pipeline; panics with its stderr when it fails.
fn shell(script: &str) -> Vec<u8> {
    let output = Command::new("sh").arg("-c").arg(format!("set -e; {script}")).output().expect("sh runs");
    assert!(
        output.status.success(),
        "`{script}` failed (are openssl, gzip, zstd and sha256sum installed?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// SQL-dump-like text of exactly `length` bytes.
fn plain(length: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(length + 100);
    let mut row = 0_u64;
    while text.len() < length {
        writeln!(
            text,
            "{row}\t{}\tcustomer-{}@example.org\t{}.{:02}\t2025-11-{:02} 02:00:00+00",
            row * 7919 % 100_003,
            row % 5000,
            row * 31 % 10_000,
            row % 100,
            row % 28 + 1
        )
        .unwrap();
        row += 1;
    }
    text.truncate(length);
    text
}

struct Workspace {
    directory: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        Self { directory: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, contents).unwrap();
        path
    }

    /// A key file as the runbook makes one: `openssl rand -base64 32 > encryption.key`.
    fn key_file(&self) -> (PathBuf, EncryptionKey) {
        let path = self.path("encryption.key");
        shell(&format!("openssl rand -base64 32 > {}", path.display()));
        let key = EncryptionKey::from_key_file_contents(&fs::read(&path).unwrap(), 10_000).unwrap();
        (path, key)
    }

    /// Names in the directory, to check that nothing was left behind.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn with_iterations(key: &EncryptionKey, iterations: u32) -> EncryptionKey {
    EncryptionKey::new(key.password().clone(), iterations).unwrap()
}

/// The Dharma backup job's artifact, made by the real tools, with its sidecar.
fn dharma_artifact(
    workspace: &Workspace,
    plain_path: &Path,
    key_file: &Path,
    compressor: &str,
    extra: &str,
) -> PathBuf {
    let stored = workspace.path("dharma_dharma_20251116_020000.sql.gz.enc");
    shell(&format!(
        "{compressor} < {plain} | openssl enc -aes-256-cbc -salt -pbkdf2 {extra} -pass file:{key} > {stored}; \
         cd {directory} && sha256sum {name} > {name}.sha256",
        plain = plain_path.display(),
        key = key_file.display(),
        stored = stored.display(),
        directory = workspace.directory.path().display(),
        name = stored.file_name().unwrap().to_string_lossy(),
    ));
    stored
}

fn expected_from_sidecar(stored: &Path) -> Sha256Digest {
    let sidecar = fs::read_to_string(format!("{}.sha256", stored.display())).unwrap();
    checksum_for_object(&sidecar, &stored.file_name().unwrap().to_string_lossy()).unwrap()
}

#[test]
fn restores_what_gzip_openssl_and_sha256sum_wrote() {
    let workspace = Workspace::new();
    let (key_file, key) = workspace.key_file();
    for size in SIZES {
        let data = plain(size);
        let plain_path = workspace.write("plain.sql", &data);
        for (compressor, decompress) in [
            ("gzip -9", Decompression::Gzip),
            ("zstd -q -3", Decompression::Zstd),
            ("gzip -1", Decompression::Auto),
            ("cat", Decompression::Auto),
        ] {
            let stored = dharma_artifact(&workspace, &plain_path, &key_file, compressor, "");
            let destination = workspace.path("restored.sql");
            let options = RestoreOptions {
                expected_sha256: Some(expected_from_sidecar(&stored)),
                decrypt: Some(key.clone()),
                decompress,
            };
            let summary =
                restore_to_file(fs::File::open(&stored).unwrap(), &options, &destination, &no_progress)
                    .unwrap_or_else(|error| panic!("{size} bytes, {compressor}: {error}"));
            assert!(fs::read(&destination).unwrap() == data, "{size} bytes, {compressor}");
            assert_eq!(summary.stored_bytes, fs::metadata(&stored).unwrap().len());
            assert_eq!(summary.output_bytes, size as u64);
        }
    }
}

#[test]
fn writes_what_sha256sum_openssl_gzip_and_zstd_read() {
    let workspace = Workspace::new();
    let (key_file, key) = workspace.key_file();
    for size in SIZES {
        let data = plain(size);
        for (compress, decompressor) in [
            (Compression::Gzip { level: 9 }, "gzip -dc"),
            (Compression::Zstd { level: 3 }, "zstd -dcq"),
            (Compression::None, "cat"),
        ] {
            let name = "backup.sql.enc";
            let stored = workspace.path(name);
            let options = BackupOptions { compress, encrypt: Some(key.clone()) };
            let summary = backup_to_file(&data[..], &options, &stored, &no_progress).unwrap();
            workspace
                .write(&format!("{name}.sha256"), checksum_sidecar_line(&summary.sha256, name).as_bytes());
            let restored = shell(&format!(
                "cd {directory} && sha256sum -c --quiet {name}.sha256 && \
                 openssl enc -d -aes-256-cbc -pbkdf2 -pass file:{key} -in {name} | {decompressor}",
                directory = workspace.directory.path().display(),
                key = key_file.display(),
            ));
            assert!(restored == data, "{size} bytes, {compress:?}");
            assert_eq!(summary.bytes_in, size as u64);
        }
    }
}

#[test]
fn agrees_with_openssl_at_250000_iterations_both_ways() {
    let workspace = Workspace::new();
    let (key_file, key) = workspace.key_file();
    let key = with_iterations(&key, 250_000);
    let data = plain((1 << 20) + 3);
    let plain_path = workspace.write("plain.sql", &data);

    let stored = dharma_artifact(&workspace, &plain_path, &key_file, "gzip -9", "-iter 250000");
    let destination = workspace.path("restored.sql");
    let options = RestoreOptions {
        expected_sha256: Some(expected_from_sidecar(&stored)),
        decrypt: Some(key.clone()),
        decompress: Decompression::Auto,
    };
    restore_to_file(fs::File::open(&stored).unwrap(), &options, &destination, &no_progress).unwrap();
    assert!(fs::read(&destination).unwrap() == data);
    // The default count does not open it: CBC shows that only as bad padding.
    let default_count =
        RestoreOptions { decrypt: Some(with_iterations(&key, 10_000)), expected_sha256: None, ..options };
    let error = restore_to_file(fs::File::open(&stored).unwrap(), &default_count, &destination, &no_progress)
        .unwrap_err();
    assert!(
        matches!(
            error,
            ArtifactError::WrongKeyOrIterationCount | ArtifactError::DecryptedDataNotCompressed { .. }
        ),
        "{error}"
    );

    let ours = workspace.path("ours.enc");
    let backup = BackupOptions { compress: Compression::None, encrypt: Some(key) };
    backup_to_file(&data[..], &backup, &ours, &no_progress).unwrap();
    let restored = shell(&format!(
        "openssl enc -d -aes-256-cbc -pbkdf2 -iter 250000 -pass file:{} -in {}",
        key_file.display(),
        ours.display()
    ));
    assert!(restored == data);
}

#[test]
fn reads_key_files_the_way_openssl_does() {
    let workspace = Workspace::new();
    let data = plain(1000);
    let plain_path = workspace.write("plain.sql", &data);
    for contents in [&b"no newline"[..], b"windows line\r\n", b"first\nsecond\n", b"\n"] {
        let key_file = workspace.write("odd.key", contents);
        let stored = dharma_artifact(&workspace, &plain_path, &key_file, "cat", "");
        let options = RestoreOptions {
            expected_sha256: None,
            decrypt: Some(EncryptionKey::from_key_file_contents(contents, 10_000).unwrap()),
            decompress: Decompression::None,
        };
        let destination = workspace.path("restored.sql");
        restore_to_file(fs::File::open(&stored).unwrap(), &options, &destination, &no_progress)
            .unwrap_or_else(|error| panic!("{contents:?}: {error}"));
        assert!(fs::read(&destination).unwrap() == data, "{contents:?}");
    }
}

#[test]
fn reads_multi_member_gzip_as_gzip_does() {
    let workspace = Workspace::new();
    let first = workspace.write("first.sql", &plain(70_000));
    let second = workspace.write("second.sql", b"-- the end\n");
    let stored = workspace.path("both.sql.gz");
    shell(&format!(
        "gzip -c {} > {stored}; gzip -9c {} >> {stored}",
        first.display(),
        second.display(),
        stored = stored.display()
    ));
    let destination = workspace.path("restored.sql");
    let options = RestoreOptions::default();
    let summary =
        restore_to_file(fs::File::open(&stored).unwrap(), &options, &destination, &no_progress).unwrap();
    assert_eq!(fs::read(&destination).unwrap(), shell(&format!("gzip -dc {}", stored.display())));
    assert_eq!(summary.output_bytes, 70_000 + 11);
}

/// Every failure: the right error, and nothing under the destination's name (nor a
/// `.partial` file) afterwards.
#[test]
fn fails_cleanly_on_corrupt_truncated_or_mismatched_artifacts() {
    let workspace = Workspace::new();
    let (key_file, key) = workspace.key_file();
    let data = plain(3 * (1 << 20) + 7);
    let plain_path = workspace.write("plain.sql", &data);
    let stored = dharma_artifact(&workspace, &plain_path, &key_file, "gzip -9", "");
    let good = fs::read(&stored).unwrap();
    let expected = expected_from_sidecar(&stored);
    let before = workspace.names();
    let destination = workspace.path("restored.sql");

    let attempt = |bytes: &[u8], options: &RestoreOptions| -> ArtifactError {
        let error = restore_to_file(bytes, options, &destination, &no_progress).unwrap_err();
        assert_eq!(workspace.names(), before, "left something behind after: {error}");
        error
    };
    let checked = RestoreOptions {
        expected_sha256: Some(expected),
        decrypt: Some(key.clone()),
        decompress: Decompression::Gzip,
    };
    let unchecked = RestoreOptions { expected_sha256: None, ..checked.clone() };

    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x10;
    assert!(matches!(attempt(&flipped, &checked), ArtifactError::ChecksumMismatch { .. }));
    let error = attempt(&flipped, &unchecked);
    assert!(matches!(error, ArtifactError::Decompression { .. }), "{error}");

    let truncated = &good[..good.len() - 9];
    assert!(matches!(attempt(truncated, &checked), ArtifactError::ChecksumMismatch { .. }));
    let error = attempt(truncated, &unchecked);
    assert!(matches!(error, ArtifactError::TruncatedCiphertext { .. }), "{error}");
    let error = attempt(&good[..10], &unchecked);
    assert!(matches!(error, ArtifactError::TruncatedCiphertext { .. }), "{error}");

    let wrong_key = RestoreOptions {
        decrypt: Some(EncryptionKey::from_key_file_contents(b"not the key\n", 10_000).unwrap()),
        ..unchecked.clone()
    };
    let error = attempt(&good, &wrong_key);
    // Which stage notices first depends on the size: decryption at the padding (this
    // artifact fits in one chunk) or decompression at the header. Either names the key.
    // The salt is random, so once in 65536 runs the garbage starts with gzip's magic
    // and it is the decoder that fails.
    assert!(
        matches!(
            error,
            ArtifactError::WrongKeyOrIterationCount
                | ArtifactError::DecryptedDataNotCompressed { .. }
                | ArtifactError::Decompression { .. }
        ),
        "{error}"
    );

    let wrong_sha256 =
        RestoreOptions { expected_sha256: Some(Sha256Digest::of(b"another backup")), ..checked.clone() };
    let error = attempt(&good, &wrong_sha256);
    assert!(matches!(error, ArtifactError::ChecksumMismatch { .. }), "{error}");
    assert!(error.to_string().contains(&expected.to_hex()), "{error}");

    let plain_gzip = shell(&format!("gzip -c {}", plain_path.display()));
    let error = attempt(&plain_gzip, &unchecked);
    assert!(matches!(error, ArtifactError::NotOpensslEncrypted { .. }), "{error}");

    // And the good artifact does restore, into exactly one new file.
    restore_to_file(&good[..], &checked, &destination, &no_progress).unwrap();
    assert!(fs::read(&destination).unwrap() == data);
}

#[test]
fn metadata_round_trips_through_a_backup() {
    let workspace = Workspace::new();
    let (key_file, key) = workspace.key_file();
    let data = plain(200_000);
    let options = BackupOptions { compress: Compression::Gzip { level: 9 }, encrypt: Some(key) };
    let stored = workspace.path("dharma.sql.gz.enc");
    let summary = backup_to_file(&data[..], &options, &stored, &no_progress).unwrap();
    let mut metadata = BackupMetadata::describe(&summary, &options, chrono::Utc::now());
    metadata.database = Some("dharma".to_owned());
    metadata.retention_days = Some(30);
    let parsed = BackupMetadata::parse(&metadata.to_json_pretty()).unwrap();
    assert_eq!(parsed.sha256, Some(Sha256Digest::of(&fs::read(&stored).unwrap())));
    assert_eq!(parsed.size_bytes, 200_000);
    assert_eq!(parsed.encryption_algorithm.as_deref(), Some("aes-256-cbc"));
    let compressed = shell(&format!(
        "openssl enc -d -aes-256-cbc -pbkdf2 -pass file:{} -in {} | wc -c",
        key_file.display(),
        stored.display()
    ));
    assert_eq!(parsed.compressed_size, String::from_utf8(compressed).unwrap().trim().parse().ok());
}
