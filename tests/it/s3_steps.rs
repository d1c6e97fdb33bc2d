//! `s3.fetch` and `s3.put` against a real S3 server on loopback (s3s-fs, which checks
//! SigV4), with backups made by the real CLIs exactly as the Dharma runbook (seed 003)
//! makes them: `pg_dump | gzip -9 | openssl enc -aes-256-cbc -salt -pbkdf2 -pass
//! file:KEY`, then `sha256sum`.

use crate::support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use dr_plan::kinds::{
    Outputs, Preflight, PreflightContext, StepContext, StepOutputs, parameters, s3_fetch, s3_put,
};
use dr_plan::lang::secret::{Redactor, SecretValue};
use serde_json::{Value as Json, json};
use support::S3;

const BUCKET: &str = "dharma-backups";
const PASSWORD: &str = "Zm9yIHRlc3RzIG9ubHksIG5vdCBhIHJlYWwga2V5Cg==";

/// A pg_dump-like plain SQL dump: a header, two tables in COPY blocks, a footer.
fn sql_dump(rows: usize, seed: u64) -> Vec<u8> {
    let mut text = String::from(
        "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n\n\
         CREATE TABLE public.users (id integer NOT NULL, name text, email text, created_at timestamp with time zone);\n\n\
         COPY public.users (id, name, email, created_at) FROM stdin;\n",
    );
    let mut state = seed | 1;
    for row in 0..rows {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push_str(&format!(
            "{row}\tuser-{}\tuser{}@example.org\t2025-11-{:02} {:02}:{:02}:00+00\n",
            state % 100_000,
            state % 7919,
            state % 28 + 1,
            state % 24,
            state % 60
        ));
    }
    text.push_str("\\.\n\n--\n-- PostgreSQL database dump complete\n--\n");
    text.into_bytes()
}

/// Bytes that do not compress, for objects that must stay large.
fn noise(length: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect()
}

/// A directory where backups are made with the runbook's commands.
struct Workshop {
    directory: tempfile::TempDir,
}

impl Workshop {
    fn new() -> Self {
        let workshop = Self { directory: tempfile::tempdir().expect("temporary directory") };
        std::fs::write(workshop.path("encryption.key"), format!("{PASSWORD}\n")).expect("key file");
        workshop
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    fn shell(&self, script: &str) {
        let output = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(self.directory.path())
            .output()
            .unwrap_or_else(|error| panic!("cannot run sh: {error}"));
        assert!(output.status.success(), "`{script}` failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// `pg_dump | gzip -9 | openssl enc … -pass file:KEY > NAME; sha256sum NAME > NAME.sha256`,
    /// with `dump` standing in for pg_dump's output. Returns the artifact and its sidecar.
    fn encrypted_backup(&self, name: &str, dump: &[u8]) -> (Vec<u8>, String) {
        std::fs::write(self.path("dump.sql"), dump).expect("dump");
        self.shell(&format!(
            "gzip -9 < dump.sql | openssl enc -aes-256-cbc -salt -pbkdf2 -pass file:encryption.key > {name} \
             && sha256sum {name} > {name}.sha256"
        ));
        self.artifact(name)
    }

    fn artifact(&self, name: &str) -> (Vec<u8>, String) {
        let bytes = std::fs::read(self.path(name)).expect("artifact");
        let sidecar = std::fs::read_to_string(self.path(&format!("{name}.sha256"))).expect("sidecar");
        (bytes, sidecar)
    }
}

/// The `.meta` the Dharma backup script writes (no `sha256`), or with one added.
fn dharma_meta(dump: &[u8], sha256: Option<&str>) -> String {
    let mut meta = json!({
        "timestamp": "2025-11-16T02:00:00Z",
        "database": "dharma",
        "size_bytes": dump.len(),
        "compressed_size": 1234,
        "encrypted": true,
        "encryption_algorithm": "aes-256-cbc",
        "retention_days": 30,
        "backup_type": "full"
    });
    if let Some(sha256) = sha256 {
        meta["sha256"] = json!(sha256);
    }
    serde_json::to_string_pretty(&meta).expect("JSON")
}

fn client_for(endpoint: &str, secret_key: &str) -> aws_sdk_s3::Client {
    let http_client =
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http_client)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .read_timeout(Duration::from_secs(30))
                .build(),
        )
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            "DRPLANTESTACCESSKEY",
            secret_key,
            None,
            None,
            "dr-plan tests",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn client(s3: &S3) -> aws_sdk_s3::Client {
    client_for(&s3.endpoint(), s3.secret_key())
}

fn context(run_dir: &Path, rpo: Option<Duration>) -> StepContext {
    StepContext {
        run_id: "20251116-020000-test".to_owned(),
        redactor: Arc::new(Redactor::new([&SecretValue::new(PASSWORD)])),
        rpo,
        ..support::steps::context("s3-steps", STEP, run_dir)
    }
}

/// The step id of the steps these tests run.
const STEP: &str = "fetch";

/// The usual `s3.fetch` of the runbook's backups, with `extra` parameters merged in.
fn fetch_parameters(key: &str, extra: &Json) -> s3_fetch::Parameters {
    let mut with = json!({
        "bucket": BUCKET,
        "key": key,
        "decrypt": { "format": "openssl-pbkdf2", "key": PASSWORD },
    });
    for (name, value) in extra.as_object().expect("an object") {
        if value.is_null() {
            with.as_object_mut().expect("an object").remove(name);
        } else {
            with[name] = value.clone();
        }
    }
    parameters(with).expect("valid parameters")
}

async fn fetch(
    client: &aws_sdk_s3::Client,
    run_dir: &Path,
    key: &str,
    extra: &Json,
) -> Result<Outputs, String> {
    fetch_within(client, run_dir, key, extra, None).await
}

async fn fetch_within(
    client: &aws_sdk_s3::Client,
    run_dir: &Path,
    key: &str,
    extra: &Json,
    rpo: Option<Duration>,
) -> Result<Outputs, String> {
    s3_fetch::run_with_client(fetch_parameters(key, extra), &context(run_dir, rpo), client)
        .await
        .and_then(StepOutputs::into_map)
        .map_err(|error| error.to_string())
}

/// [`fetch`] as the step `step` of the run.
async fn fetch_as(
    step: &str,
    client: &aws_sdk_s3::Client,
    run_dir: &Path,
    key: &str,
    extra: &Json,
) -> Result<Outputs, String> {
    let context = StepContext { step_id: step.to_owned(), ..context(run_dir, None) };
    s3_fetch::run_with_client(fetch_parameters(key, extra), &context, client)
        .await
        .and_then(StepOutputs::into_map)
        .map_err(|error| error.to_string())
}

/// A file's permission bits.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

fn entries(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .map(|entries| {
            entries.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

const KEY: &str = "database/dharma_dharma_20251116_020000.sql.gz.enc";

/// A server holding one backup made by the runbook, with its sidecar.
fn server_with_backup(workshop: &Workshop, dump: &[u8]) -> (S3, Vec<u8>, String) {
    let s3 = S3::start(&[BUCKET]);
    let (artifact, sidecar) = workshop.encrypted_backup("dharma_dharma_20251116_020000.sql.gz.enc", dump);
    s3.put_file(BUCKET, KEY, &artifact);
    s3.put_file(BUCKET, &format!("{KEY}.sha256"), &sidecar);
    (s3, artifact, sidecar)
}

#[tokio::test]
async fn fetches_verifies_decrypts_and_decompresses_a_runbook_backup() {
    let workshop = Workshop::new();
    let dump = sql_dump(20_000, 1);
    let (s3, artifact, sidecar) = server_with_backup(&workshop, &dump);
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    s3.set_last_modified(BUCKET, KEY, an_hour_ago);
    let run_dir = tempfile::tempdir().expect("run dir");

    let outputs =
        fetch_within(&client(&s3), run_dir.path(), KEY, &json!({}), Some(Duration::from_secs(6 * 3600)))
            .await
            .expect("the backup restores");

    let restored = run_dir.path().join("artifacts/dharma_dharma_20251116_020000.sql");
    assert_eq!(outputs["path"], json!(restored.display().to_string()));
    assert!(std::fs::read(&restored).expect("restored file") == dump, "the restored dump differs");
    assert_eq!(entries(run_dir.path()), [".fetch.s3-fetch.json", "artifacts"]);
    assert_eq!(entries(&run_dir.path().join("artifacts")), ["dharma_dharma_20251116_020000.sql"]);
    assert_eq!(mode(&run_dir.path().join("artifacts")), 0o700);
    assert_eq!(mode(&restored), 0o600);
    assert_eq!(outputs["key"], json!(KEY));
    assert_eq!(outputs["bytes"], json!(dump.len()));
    assert_eq!(outputs["sha256"], json!(&sidecar[..64]));
    let age = outputs["age"].as_u64().expect("age in seconds");
    assert!((3600..3700).contains(&age), "age {age}");
    let last_modified =
        chrono::DateTime::parse_from_rfc3339(outputs["last_modified"].as_str().expect("text"))
            .expect("RFC 3339");
    let expected_seconds = an_hour_ago.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs();
    assert_eq!(last_modified.timestamp(), i64::try_from(expected_seconds).expect("fits"));
    assert!(artifact.starts_with(b"Salted__"));

    // Into a named file, and into a directory to be created.
    let file = run_dir.path().join("restored/tododb.sql");
    let outputs = fetch(&client(&s3), run_dir.path(), KEY, &json!({ "dest": file.display().to_string() }))
        .await
        .expect("restores into a file");
    assert_eq!(outputs["path"], json!(file.display().to_string()));
    assert!(std::fs::read(&file).expect("file") == dump);
    let directory = format!("{}/", run_dir.path().join("elsewhere").display());
    let outputs = fetch(&client(&s3), run_dir.path(), KEY, &json!({ "dest": directory }))
        .await
        .expect("restores into a directory");
    assert!(outputs["path"].as_str().expect("path").ends_with("elsewhere/dharma_dharma_20251116_020000.sql"));
}

#[tokio::test]
async fn latest_is_the_newest_backup_under_the_prefix_never_a_sidecar() {
    let workshop = Workshop::new();
    let s3 = S3::start(&[BUCKET]);
    let now = SystemTime::now();
    let mut dumps = Vec::new();
    for (index, (name, age_hours)) in [
        ("dharma_dharma_20251114_020000", 50),
        ("dharma_dharma_20251116_020000", 2),
        ("dharma_dharma_20251115_020000", 26),
    ]
    .into_iter()
    .enumerate()
    {
        let dump = sql_dump(500, index as u64 + 10);
        let file = format!("{name}.sql.gz.enc");
        let (artifact, sidecar) = workshop.encrypted_backup(&file, &dump);
        let key = format!("database/{file}");
        s3.put_file(BUCKET, &key, &artifact);
        s3.put_file(BUCKET, &format!("{key}.sha256"), &sidecar);
        s3.put_file(BUCKET, &format!("{key}.meta"), dharma_meta(&dump, None));
        s3.set_last_modified(BUCKET, &key, now - Duration::from_secs(age_hours * 3600));
        dumps.push((key, dump));
    }
    // Newer than every backup, but not backups: sidecars, a partial upload, a folder
    // marker, and an object outside the prefix.
    s3.put_file(BUCKET, "database/stale.sql.gz.enc.partial", b"half");
    s3.put_file(BUCKET, "logs/newest.log", b"not a backup");
    let run_dir = tempfile::tempdir().expect("run dir");

    let outputs = fetch(&client(&s3), run_dir.path(), "latest", &json!({ "prefix": "database/" }))
        .await
        .expect("latest restores");
    let (newest_key, newest_dump) = &dumps[1];
    assert_eq!(outputs["key"], json!(newest_key));
    let restored = std::fs::read(outputs["path"].as_str().expect("path")).expect("restored");
    assert!(restored == *newest_dump);

    let error = fetch(&client(&s3), run_dir.path(), "latest", &json!({ "prefix": "nothing-here/" }))
        .await
        .expect_err("an empty prefix has no latest");
    assert!(error.contains("there is no backup under s3://dharma-backups/nothing-here/"), "{error}");
}

#[tokio::test]
async fn verifies_against_the_meta_json_and_fetches_zstd_and_plain_objects() {
    let workshop = Workshop::new();
    let dump = sql_dump(3000, 2);
    let (s3, _artifact, sidecar) = server_with_backup(&workshop, &dump);
    let run_dir = tempfile::tempdir().expect("run dir");

    // The Dharma script's .meta has no sha256: it cannot vouch for the object.
    s3.put_file(BUCKET, &format!("{KEY}.meta"), dharma_meta(&dump, None));
    let error = fetch(&client(&s3), run_dir.path(), KEY, &json!({ "checksum": "meta" }))
        .await
        .expect_err("a .meta without sha256 cannot verify");
    assert!(error.contains("has no `sha256` field") && error.contains("checksum: sidecar"), "{error}");
    assert!(entries(run_dir.path()).is_empty());
    s3.put_file(BUCKET, &format!("{KEY}.meta"), dharma_meta(&dump, Some(&sidecar[..64])));
    let outputs = fetch(&client(&s3), run_dir.path(), KEY, &json!({ "checksum": "meta" }))
        .await
        .expect("meta verifies");
    assert!(std::fs::read(outputs["path"].as_str().expect("path")).expect("file") == dump);

    // zstd, not encrypted, format named explicitly.
    std::fs::write(workshop.path("dump.sql"), &dump).expect("dump");
    workshop.shell("zstd -q -19 -c dump.sql > dump.sql.zst && sha256sum dump.sql.zst > dump.sql.zst.sha256");
    let (zstd, zstd_sidecar) = workshop.artifact("dump.sql.zst");
    s3.put_file(BUCKET, "zstd/dump.sql.zst", &zstd);
    s3.put_file(BUCKET, "zstd/dump.sql.zst.sha256", &zstd_sidecar);
    let outputs = fetch(
        &client(&s3),
        run_dir.path(),
        "zstd/dump.sql.zst",
        &json!({ "decrypt": null, "decompress": "zstd" }),
    )
    .await
    .expect("zstd restores");
    assert!(outputs["path"].as_str().expect("path").ends_with("/dump.sql"));
    assert!(std::fs::read(outputs["path"].as_str().expect("path")).expect("file") == dump);

    // Neither compressed nor encrypted, and not verified.
    s3.put_file(BUCKET, "plain/notes.txt", b"kept as is\n");
    let outputs = fetch(
        &client(&s3),
        run_dir.path(),
        "plain/notes.txt",
        &json!({ "decrypt": null, "decompress": "none", "checksum": "none" }),
    )
    .await
    .expect("plain object");
    assert_eq!(std::fs::read(outputs["path"].as_str().expect("path")).expect("file"), b"kept as is\n");
    assert_eq!(outputs["bytes"], json!(11));
}

/// Each corruption fails with its own message, and leaves nothing in the destination.
#[tokio::test]
async fn every_kind_of_bad_backup_fails_with_its_own_message_and_leaves_no_file() {
    let workshop = Workshop::new();
    let dump = sql_dump(40_000, 3);
    let (s3, artifact, sidecar) = server_with_backup(&workshop, &dump);
    let dest = tempfile::tempdir().expect("dest");
    let client = client(&s3);
    let restore_into_dest = json!({ "dest": format!("{}/", dest.path().display()) });
    let attempt = async |case: &str, extra: &Json, rpo: Option<Duration>| {
        let mut parameters = restore_into_dest.clone();
        for (name, value) in extra.as_object().expect("object") {
            parameters[name] = value.clone();
        }
        let error = fetch_within(&client, dest.path(), KEY, &parameters, rpo).await;
        let error = match error {
            Ok(outputs) => panic!("{case}: restored anyway: {outputs:?}"),
            Err(error) => error,
        };
        assert!(
            entries(dest.path()).is_empty(),
            "files left behind after `{error}`: {:?}",
            entries(dest.path())
        );
        assert!(!error.contains(PASSWORD), "the key leaked: {error}");
        error
    };

    // One flipped bit in the middle of the object.
    let mut flipped = artifact.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    s3.put_file(BUCKET, KEY, &flipped);
    let error = attempt("flipped bit", &json!({}), None).await;
    assert!(error.starts_with(&format!("s3://{BUCKET}/{KEY} is corrupt: its SHA-256 is ")), "{error}");
    assert!(error.contains(&format!("but s3://{BUCKET}/{KEY}.sha256 says {}", &sidecar[..64])), "{error}");

    // The object cut short (the upload was interrupted).
    s3.put_file(BUCKET, KEY, &artifact[..artifact.len() - 1000]);
    let error = attempt("truncated", &json!({}), None).await;
    assert!(
        error.starts_with(&format!(
            "s3://{BUCKET}/{KEY} is truncated ({} bytes stored)",
            artifact.len() - 1000
        )),
        "{error}"
    );

    // The right object, the wrong key.
    s3.put_file(BUCKET, KEY, &artifact);
    let error = attempt(
        "wrong key",
        &json!({ "decrypt": { "format": "openssl-pbkdf2", "key": "not-the-key" } }),
        None,
    )
    .await;
    assert!(error.contains("is intact (its SHA-256 matches") && error.contains("wrong key"), "{error}");

    // The sidecar of another backup.
    let (_, other_sidecar) =
        workshop.encrypted_backup("dharma_dharma_20251115_020000.sql.gz.enc", &sql_dump(10, 4));
    s3.put_file(BUCKET, &format!("{KEY}.sha256"), &other_sidecar);
    let error = attempt("wrong sidecar", &json!({}), None).await;
    assert!(
        error.starts_with(&format!("s3://{BUCKET}/{KEY}.sha256 is wrong for s3://{BUCKET}/{KEY}"))
            && error.contains("names `dharma_dharma_20251115_020000.sql.gz.enc`")
            && error.contains("decodes cleanly (gzip's own integrity check passed)"),
        "{error}"
    );

    // No sidecar at all, while one is required.
    s3.put_file(BUCKET, &format!("{KEY}.sha256"), &sidecar);
    std::fs::remove_file(s3.root().join(BUCKET).join(format!("{KEY}.sha256"))).expect("remove sidecar");
    let error = attempt("missing sidecar", &json!({}), None).await;
    assert!(
        error.starts_with(&format!("s3://{BUCKET}/{KEY}.sha256 does not exist"))
            && error.contains("nothing was downloaded")
            && error.contains("checksum: meta"),
        "{error}"
    );
    s3.put_file(BUCKET, &format!("{KEY}.sha256"), &sidecar);

    // A backup older than the plan's RPO.
    s3.set_last_modified(BUCKET, KEY, SystemTime::now() - Duration::from_secs(30 * 3600));
    let error = attempt("older than the RPO", &json!({}), Some(Duration::from_secs(24 * 3600))).await;
    assert!(error.contains("is 1d6h old") && error.contains("older than the plan's RPO of 1d"), "{error}");

    // All six cases fixed: the same call succeeds.
    s3.set_last_modified(BUCKET, KEY, SystemTime::now());
    fetch_within(&client, dest.path(), KEY, &restore_into_dest, Some(Duration::from_secs(24 * 3600)))
        .await
        .expect("the repaired backup restores");
}

/// Whoever can write to the bucket chooses the object keys: a key never names one of
/// the run's own files (its journal), never leads out of `artifacts/`, and never
/// replaces a file the step did not download; the `.partial` file is never written
/// through a symbolic link.
#[tokio::test]
async fn hostile_keys_never_touch_the_run_files_or_anything_outside_artifacts() {
    let s3 = S3::start(&[BUCKET]);
    let client = client(&s3);
    let base = tempfile::tempdir().expect("base");
    let run_dir = base.path().join("runs/20251116-020000-test");
    std::fs::create_dir_all(&run_dir).expect("run dir");
    let journal = run_dir.join("journal.jsonl");
    let journal_text = "{\"event\":\"run_started\"}\n";
    std::fs::write(&journal, journal_text).expect("journal");
    std::fs::write(run_dir.join("plan.snapshot"), "name: the plan\n").expect("snapshot");
    let artifacts = run_dir.join("artifacts");
    let untouched = |when: &str| {
        assert_eq!(std::fs::read_to_string(&journal).expect("journal"), journal_text, "{when}");
        assert_eq!(
            std::fs::read_to_string(run_dir.join("plan.snapshot")).expect("snapshot"),
            "name: the plan\n",
            "{when}"
        );
        assert_eq!(entries(base.path()), ["runs"], "{when}");
        assert_eq!(entries(&base.path().join("runs")), ["20251116-020000-test"], "{when}");
    };
    let as_is = json!({ "decrypt": null, "decompress": "none", "checksum": "none" });
    let with = |extra: Json| {
        let mut parameters = as_is.clone();
        for (name, value) in extra.as_object().expect("object") {
            parameters[name] = value.clone();
        }
        parameters
    };

    // A key named like the run's journal lands in artifacts/.
    s3.put_file(BUCKET, "evil/journal.jsonl", b"forged journal\n");
    let outputs = fetch(&client, &run_dir, "evil/journal.jsonl", &as_is).await.expect("fetched");
    let downloaded = artifacts.join("journal.jsonl");
    assert_eq!(outputs["path"], json!(downloaded.display().to_string()));
    assert_eq!(std::fs::read(&downloaded).expect("download"), b"forged journal\n");
    assert_eq!((mode(&artifacts), mode(&downloaded)), (0o700, 0o600));
    untouched("evil/journal.jsonl");

    // A retry of the step replaces its own download; another step never does.
    s3.put_file(BUCKET, "evil/journal.jsonl", b"forged journal, second version\n");
    fetch(&client, &run_dir, "evil/journal.jsonl", &as_is).await.expect("a retry replaces its own file");
    assert_eq!(std::fs::read(&downloaded).expect("download"), b"forged journal, second version\n");
    s3.put_file(BUCKET, "other/journal.jsonl", b"another object\n");
    let error = fetch_as("restore_redis", &client, &run_dir, "other/journal.jsonl", &as_is)
        .await
        .expect_err("another step's download is kept");
    assert!(
        error
            .starts_with(&format!("{} already exists (a file) and is not this step's", downloaded.display()))
            && error.contains("never replaces a file it did not write")
            && error.contains("set `dest`"),
        "{error}"
    );
    // Nor does a retry for another object under the same name.
    let error = fetch(&client, &run_dir, "other/journal.jsonl", &as_is).await.expect_err("another object");
    assert!(error.contains("already exists (a file)"), "{error}");
    // Nor once another file took the name of its download.
    let impostor = run_dir.join("impostor");
    std::fs::write(&impostor, b"planted\n").expect("impostor");
    std::fs::rename(&impostor, &downloaded).expect("swap");
    let error = fetch(&client, &run_dir, "evil/journal.jsonl", &as_is).await.expect_err("swapped file");
    assert!(error.contains("already exists (a file)"), "{error}");
    assert_eq!(std::fs::read(&downloaded).expect("planted"), b"planted\n");
    untouched("another step, another object, a swapped file");

    // `dest` the run directory itself: the journal is refused before any download.
    let error = fetch(
        &client,
        &run_dir,
        "evil/journal.jsonl",
        &with(json!({ "dest": format!("{}/", run_dir.display()) })),
    )
    .await
    .expect_err("the journal is never replaced");
    assert!(error.starts_with(&format!("{} already exists (a file)", journal.display())), "{error}");
    untouched("dest: the run directory");

    // `latest` under a prefix anyone can write: a hidden name with a control character.
    let now = SystemTime::now();
    s3.put_file(BUCKET, "uploads/plan.snapshot", b"older\n");
    s3.set_last_modified(BUCKET, "uploads/plan.snapshot", now - Duration::from_secs(60));
    s3.put_file(BUCKET, "uploads/..\tjournal.jsonl", b"newest\n");
    let outputs = fetch(&client, &run_dir, "latest", &with(json!({ "prefix": "uploads/" })))
        .await
        .expect("latest fetched");
    assert_eq!(outputs["key"], json!("uploads/..\tjournal.jsonl"));
    assert_eq!(outputs["path"], json!(artifacts.join("_journal.jsonl").display().to_string()));
    s3.set_last_modified(BUCKET, "uploads/plan.snapshot", now + Duration::from_secs(60));
    let outputs = fetch(&client, &run_dir, "latest", &with(json!({ "prefix": "uploads/" })))
        .await
        .expect("latest fetched");
    assert_eq!(outputs["path"], json!(artifacts.join("plan.snapshot").display().to_string()));
    untouched("latest");

    // A key that climbs out: named by its last segment when a server holds it; s3s-fs,
    // which keeps objects as files, cannot, and says so. Nothing is written outside
    // artifacts/ either way (the unit tests check the names such keys give).
    match fetch(&client, &run_dir, "../../escape", &as_is).await {
        Ok(outputs) => assert_eq!(outputs["path"], json!(artifacts.join("escape").display().to_string())),
        Err(error) => assert!(error.contains("s3://dharma-backups/../../escape does not exist"), "{error}"),
    }
    untouched("../../escape");

    // A symbolic link planted at the `.partial` path is not followed, nor replaced.
    s3.put_file(BUCKET, "evil/payload.sql", b"payload\n");
    let outside = base.path().join("outside");
    for target in [&journal, &outside] {
        let partial = artifacts.join("payload.sql.partial");
        std::os::unix::fs::symlink(target, &partial).expect("plant a link");
        let error = fetch(&client, &run_dir, "evil/payload.sql", &as_is).await.expect_err("a planted link");
        assert!(
            error.contains(&format!("could not create `{}`: a symbolic link is there", partial.display()))
                && error.contains("it is not followed"),
            "{error}"
        );
        assert!(std::fs::symlink_metadata(&partial).expect("link").file_type().is_symlink());
        assert!(!artifacts.join("payload.sql").exists());
        std::fs::remove_file(&partial).expect("remove the link");
        untouched("a link at the partial path");
    }
    // A plain `.partial` is what a crash leaves: it is truncated and used.
    std::fs::write(artifacts.join("payload.sql.partial"), b"stale bytes of an earlier attempt")
        .expect("stale");
    let outputs = fetch(&client, &run_dir, "evil/payload.sql", &as_is).await.expect("fetched after a crash");
    assert_eq!(std::fs::read(outputs["path"].as_str().expect("path")).expect("download"), b"payload\n");
    assert!(!artifacts.join("payload.sql.partial").exists());

    // An `artifacts` that is a link is not used.
    let other_run = base.path().join("runs/other");
    std::fs::create_dir_all(&other_run).expect("other run");
    let elsewhere = base.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, other_run.join("artifacts")).expect("plant a link");
    let error =
        fetch(&client, &other_run, "evil/payload.sql", &as_is).await.expect_err("a linked artifacts/");
    assert!(
        error.contains("artifacts is a symbolic link, not the directory where dr-plan puts downloads"),
        "{error}"
    );
    assert!(entries(&elsewhere).is_empty());
}

/// CBC has no integrity: under a wrong key the last block still unpads once in 256
/// tries. The key's `.gz` suffix makes `decompress: auto` insist on gzip, so such a key
/// fails too instead of passing random bytes through as "uncompressed".
#[tokio::test]
async fn a_wrong_key_whose_padding_passes_by_chance_still_fails() {
    use dr_plan::artifact::{EncryptionKey, OpensslDecryptor, Password};
    let workshop = Workshop::new();
    let dump = sql_dump(2000, 12);
    std::fs::write(workshop.path("dump.sql"), &dump).expect("dump");
    workshop.shell(
        "gzip -9 < dump.sql | openssl enc -aes-256-cbc -salt -pbkdf2 -iter 1 -pass file:encryption.key \
         > lucky.sql.gz.enc && sha256sum lucky.sql.gz.enc > lucky.sql.gz.enc.sha256",
    );
    let (artifact, sidecar) = workshop.artifact("lucky.sql.gz.enc");
    // Header and the last two blocks: enough to see whether the padding passes.
    let tail = [&artifact[..16], &artifact[artifact.len() - 32..]].concat();
    let unpads = |password: &String| {
        let key = EncryptionKey::new(Password::new(password.as_bytes().to_vec()), 1).expect("key");
        let mut decryptor = OpensslDecryptor::new(&key);
        let mut plain = Vec::new();
        decryptor.update(&tail, &mut plain).is_ok() && decryptor.finish(&mut plain).is_ok()
    };
    let lucky = (0..20_000)
        .map(|attempt| format!("wrong-{attempt}"))
        .find(unpads)
        .expect("about one wrong password in 256 unpads");
    let s3 = S3::start(&[BUCKET]);
    s3.put_file(BUCKET, "database/lucky.sql.gz.enc", &artifact);
    s3.put_file(BUCKET, "database/lucky.sql.gz.enc.sha256", &sidecar);
    let run_dir = tempfile::tempdir().expect("run dir");
    let error = fetch(
        &client(&s3),
        run_dir.path(),
        "database/lucky.sql.gz.enc",
        &json!({ "decrypt": { "format": "openssl-pbkdf2", "key": lucky, "iterations": 1 } }),
    )
    .await
    .expect_err("a wrong key never restores");
    assert!(error.contains("wrong key"), "{error}");
    assert_eq!(entries(run_dir.path()), ["artifacts"]);
    assert!(entries(&run_dir.path().join("artifacts")).is_empty());
    let outputs = fetch(
        &client(&s3),
        run_dir.path(),
        "database/lucky.sql.gz.enc",
        &json!({ "decrypt": { "format": "openssl-pbkdf2", "key": PASSWORD, "iterations": 1 } }),
    )
    .await
    .expect("the right key restores");
    assert!(std::fs::read(outputs["path"].as_str().expect("path")).expect("file") == dump);
}

#[tokio::test]
async fn a_missing_sidecar_fails_before_the_object_is_downloaded() {
    let workshop = Workshop::new();
    let (s3, _, _) = server_with_backup(&workshop, &sql_dump(100, 5));
    std::fs::remove_file(s3.root().join(BUCKET).join(format!("{KEY}.sha256"))).expect("remove sidecar");
    let proxy = Proxy::start(s3.port(), 0);
    let run_dir = tempfile::tempdir().expect("run dir");
    let error = fetch(&client_for(&proxy.url(), s3.secret_key()), run_dir.path(), KEY, &json!({}))
        .await
        .expect_err("no sidecar");
    assert!(error.contains("does not exist"), "{error}");
    let requests = proxy.requests();
    let object_gets: Vec<&String> =
        requests.iter().filter(|line| line.starts_with(&format!("GET /{BUCKET}/{KEY}?"))).collect();
    assert!(object_gets.is_empty(), "the object was downloaded: {object_gets:?} (all: {requests:?})");
    assert!(
        requests.iter().any(|line| line.starts_with(&format!("GET /{BUCKET}/{KEY}.sha256"))),
        "{requests:?}"
    );
}

#[tokio::test]
async fn preflight_checks_the_object_its_age_and_its_sidecar_without_downloading() {
    let workshop = Workshop::new();
    let (s3, _, _) = server_with_backup(&workshop, &sql_dump(100, 13));
    let client = client(&s3);
    let within = |hours: u64| PreflightContext { rpo: Some(Duration::from_secs(hours * 3600)) };
    let check = async |key: &str, context: &PreflightContext| {
        s3_fetch::preflight_with_client(
            fetch_parameters(key, &json!({ "prefix": "database/" })),
            context,
            &client,
        )
        .await
    };

    let Preflight::Passed(detail) = check(KEY, &within(6)).await else { panic!("a fresh backup passes") };
    assert!(detail.contains("within the RPO of 6h") && detail.contains(".sha256 present"), "{detail}");
    let Preflight::Passed(detail) = check("latest", &PreflightContext::default()).await else {
        panic!("latest passes")
    };
    assert!(detail.starts_with(&format!("s3://{BUCKET}/{KEY} exists")), "{detail}");

    s3.set_last_modified(BUCKET, KEY, SystemTime::now() - Duration::from_secs(7 * 3600));
    let Preflight::Failed(detail) = check(KEY, &within(6)).await else { panic!("a stale backup fails") };
    assert!(detail.contains("older than the plan's RPO of 6h"), "{detail}");

    std::fs::remove_file(s3.root().join(BUCKET).join(format!("{KEY}.sha256"))).expect("remove sidecar");
    let Preflight::Failed(detail) = check(KEY, &within(8)).await else { panic!("no sidecar fails") };
    assert!(detail.contains(".sha256 does not exist"), "{detail}");
    let Preflight::Failed(detail) = check("database/absent.sql.gz.enc", &within(8)).await else {
        panic!("an absent object fails")
    };
    assert!(detail.contains("absent.sql.gz.enc does not exist"), "{detail}");

    let put = |bucket: &str| {
        parameters(json!({ "bucket": bucket, "key": "k", "path": workshop.path("encryption.key") }))
            .expect("parameters")
    };
    assert!(matches!(s3_put::preflight_with_client(put(BUCKET), &client).await, Preflight::Passed(_)));
    let Preflight::Failed(detail) = s3_put::preflight_with_client(put("no-such-bucket"), &client).await
    else {
        panic!("a missing bucket fails")
    };
    assert!(detail.contains("bucket `no-such-bucket` does not exist"), "{detail}");
}

#[tokio::test]
async fn a_wrong_secret_key_is_refused_with_a_clear_message() {
    let workshop = Workshop::new();
    let (s3, _, _) = server_with_backup(&workshop, &sql_dump(100, 6));
    let run_dir = tempfile::tempdir().expect("run dir");
    let forged = client_for(&s3.endpoint(), "not-the-secret-key");
    for key in [KEY, "latest"] {
        let error = fetch(&forged, run_dir.path(), key, &json!({ "prefix": "database/" }))
            .await
            .expect_err("a bad signature is refused");
        assert!(
            error.contains("SignatureDoesNotMatch") && error.contains("AWS_SECRET_ACCESS_KEY"),
            "{key}: {error}"
        );
    }
    assert!(entries(run_dir.path()).is_empty());
}

#[tokio::test]
async fn large_objects_come_as_parallel_ranges_and_interrupted_ranges_resume() {
    let s3 = S3::start(&[BUCKET]);
    let data = noise(80 << 20, 7);
    let digest = dr_plan::artifact::Sha256Digest::of(&data);
    s3.put_file(BUCKET, "big/blob.bin", &data);
    s3.put_file(BUCKET, "big/blob.bin.sha256", format!("{digest}  blob.bin\n"));
    // Three connections carrying a ranged GET are cut after 2 MiB of their answer.
    let proxy = Proxy::start(s3.port(), 3);
    let run_dir = tempfile::tempdir().expect("run dir");

    let outputs = fetch(
        &client_for(&proxy.url(), s3.secret_key()),
        run_dir.path(),
        "big/blob.bin",
        &json!({ "decrypt": null, "decompress": "none", "parallel": 4 }),
    )
    .await
    .expect("the download survives cut connections");

    assert_eq!(outputs["sha256"], json!(digest.to_hex()));
    let restored = std::fs::read(outputs["path"].as_str().expect("path")).expect("file");
    assert!(restored == data, "the restored object differs");
    assert_eq!(proxy.cuts_made(), 3);
    let ranges: Vec<(u64, u64)> = proxy
        .requests()
        .iter()
        .filter_map(|line| line.split_once(" range: bytes=").map(|(_, range)| range.to_owned()))
        .map(|range| {
            let (start, end) = range.split_once('-').expect("start-end");
            (start.parse().expect("start"), end.parse().expect("end"))
        })
        .collect();
    // s3.fetch shares 16 MiB among the ranges in flight: 4 MiB parts at `parallel: 4`.
    let part = 4 << 20;
    assert!(ranges.len() >= 20 + 3, "{} ranges: {ranges:?}", ranges.len());
    let resumed: Vec<&(u64, u64)> = ranges.iter().filter(|(start, _)| start % part != 0).collect();
    assert!(resumed.len() >= 3, "no range resumed mid-part: {ranges:?}");
    for (start, end) in &resumed {
        assert!(
            (end + 1) % part == 0 || end + 1 == 80 << 20,
            "a resumed range keeps its part's end: {start}-{end}"
        );
    }
}

#[tokio::test]
async fn put_uploads_the_artifact_with_sidecars_that_the_runbook_tools_accept() {
    let workshop = Workshop::new();
    let s3 = S3::start(&[BUCKET]);
    // Over the single-request size: a multipart upload of several parts.
    let dump = [sql_dump(2000, 8), noise(20 << 20, 8)].concat();
    let (artifact, sidecar) = workshop.encrypted_backup("dharma_dharma_20251117_020000.sql.gz.enc", &dump);
    std::fs::remove_file(workshop.path("dharma_dharma_20251117_020000.sql.gz.enc.sha256"))
        .expect("remove local");
    let key = "database/dharma_dharma_20251117_020000.sql.gz.enc";
    let with = json!({
        "bucket": BUCKET,
        "key": key,
        "path": workshop.path("dharma_dharma_20251117_020000.sql.gz.enc").display().to_string(),
    });
    let run_dir = tempfile::tempdir().expect("run dir");
    let outputs = s3_put::run_with_client(
        parameters(with).expect("parameters"),
        &context(run_dir.path(), None),
        &client(&s3),
    )
    .await
    .and_then(StepOutputs::into_map)
    .expect("the upload succeeds");
    assert_eq!(outputs["sha256"], json!(&sidecar[..64]));
    assert_eq!(outputs["bytes"], json!(artifact.len()));
    assert_eq!(outputs["uri"], json!(format!("s3://{BUCKET}/{key}")));
    assert_eq!(outputs["key"], json!(key));

    let stored = s3.get_file(BUCKET, key).expect("object");
    assert!(stored == artifact, "the stored object differs");
    let meta: Json =
        serde_json::from_slice(&s3.get_file(BUCKET, &format!("{key}.meta")).expect(".meta")).expect("JSON");
    assert_eq!(meta["sha256"], json!(&sidecar[..64]));
    assert_eq!(meta["encrypted"], json!(true));
    assert_eq!(meta["encryption_algorithm"], json!("aes-256-cbc"));

    // The runbook's own tools accept what was uploaded: sha256sum -c, openssl enc -d, gunzip.
    let download = Workshop::new();
    std::fs::write(download.path("dharma_dharma_20251117_020000.sql.gz.enc"), &stored).expect("write");
    std::fs::write(
        download.path("dharma_dharma_20251117_020000.sql.gz.enc.sha256"),
        s3.get_file(BUCKET, &format!("{key}.sha256")).expect(".sha256"),
    )
    .expect("write");
    download.shell(
        "sha256sum -c --quiet dharma_dharma_20251117_020000.sql.gz.enc.sha256 && \
         openssl enc -d -aes-256-cbc -pbkdf2 -pass file:encryption.key -in dharma_dharma_20251117_020000.sql.gz.enc \
         | gunzip > restored.sql",
    );
    assert!(std::fs::read(download.path("restored.sql")).expect("restored") == dump);

    // And s3.fetch restores it, by sidecar and by .meta.
    for checksum in ["sidecar", "meta"] {
        let outputs = fetch(&client(&s3), run_dir.path(), key, &json!({ "checksum": checksum }))
            .await
            .unwrap_or_else(|error| panic!("fetch by {checksum}: {error}"));
        assert!(std::fs::read(outputs["path"].as_str().expect("path")).expect("file") == dump);
    }
}

#[tokio::test]
async fn put_refuses_a_file_that_no_longer_matches_its_local_sidecar() {
    let workshop = Workshop::new();
    let s3 = S3::start(&[BUCKET]);
    workshop.encrypted_backup("backup.sql.gz.enc", &sql_dump(100, 9));
    // Damaged after the backup script wrote its checksum.
    let mut bytes = std::fs::read(workshop.path("backup.sql.gz.enc")).expect("artifact");
    bytes[40] ^= 1;
    std::fs::write(workshop.path("backup.sql.gz.enc"), &bytes).expect("write");
    let with = json!({ "bucket": BUCKET, "key": "db/backup.sql.gz.enc", "path": workshop.path("backup.sql.gz.enc") });
    let run_dir = tempfile::tempdir().expect("run dir");
    let error = s3_put::run_with_client(
        parameters(with).expect("parameters"),
        &context(run_dir.path(), None),
        &client(&s3),
    )
    .await
    .expect_err("a damaged file is refused")
    .to_string();
    assert!(error.contains("does not match") && error.contains("without sidecars"), "{error}");
    assert_eq!(s3.list(BUCKET), ["db/backup.sql.gz.enc"]);
}

/// The real binary: a plan that fetches the newest backup from the local server (the
/// endpoint from `--vars-file`, credentials from the AWS environment, the key from a
/// file secret) and compares it with the original dump.
#[test]
fn dr_plan_run_restores_the_newest_backup_end_to_end() {
    let workshop = Workshop::new();
    let dump = sql_dump(5000, 11);
    let (s3, _, _) = server_with_backup(&workshop, &dump);
    std::fs::write(workshop.path("expected.sql"), &dump).expect("expected dump");
    let vars = workshop.path("vars.yaml");
    std::fs::write(
        &vars,
        format!(
            "endpoint: {}\nbucket: {BUCKET}\nexpected: {}\n",
            s3.endpoint(),
            workshop.path("expected.sql").display()
        ),
    )
    .expect("vars file");
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/s3/restore-latest.yaml");

    let run = |secret_key: &str| {
        let mut command = assert_cmd::Command::cargo_bin("dr-plan").expect("the binary");
        command
            .current_dir(workshop.directory.path())
            .arg("run")
            .arg(&plan)
            .args(["--yes", "--state-dir"])
            .arg(workshop.path("state"))
            .arg("--vars-file")
            .arg(&vars)
            .env("AWS_ACCESS_KEY_ID", s3.access_key())
            .env("AWS_SECRET_ACCESS_KEY", secret_key)
            .env("AWS_REGION", s3.region())
            .env("AWS_CONFIG_FILE", workshop.path("no-aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", workshop.path("no-aws-credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env_remove("AWS_PROFILE")
            .timeout(Duration::from_secs(120));
        command.output().expect("dr-plan runs")
    };

    let output = run(s3.secret_key());
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "dr-plan run failed:\n{text}");
    assert!(!text.contains(PASSWORD), "the key leaked:\n{text}");

    let output = run("not-the-secret-key");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "a forged signature must fail the run:\n{text}");
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");
}

/// A TCP proxy in front of s3s-fs that records request heads and cuts the first few
/// connections whose first request is a ranged GET, after 2 MiB of the answer: what a
/// flaky network does, which the real server cannot show.
struct Proxy {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    cuts_made: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
}

const CUT_AFTER: usize = 2 << 20;

impl Proxy {
    fn start(upstream: u16, cuts: usize) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind a port");
        let port = listener.local_addr().expect("address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let cuts_left = Arc::new(AtomicUsize::new(cuts));
        let cuts_made = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        {
            let (requests, cuts_made, stopping) =
                (Arc::clone(&requests), Arc::clone(&cuts_made), Arc::clone(&stopping));
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                    let (requests, cuts_left, cuts_made) =
                        (Arc::clone(&requests), Arc::clone(&cuts_left), Arc::clone(&cuts_made));
                    std::thread::spawn(move || relay(client, server, &requests, &cuts_left, &cuts_made));
                }
            });
        }
        Self { port, requests, cuts_made, stopping }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `METHOD PATH range: bytes=A-B` (the range only when there is one).
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn cuts_made(&self) -> usize {
        self.cuts_made.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn relay(
    client: TcpStream,
    server: TcpStream,
    requests: &Mutex<Vec<String>>,
    cuts_left: &AtomicUsize,
    cuts_made: &AtomicUsize,
) {
    let cut = Arc::new(AtomicBool::new(false));
    let (Ok(mut client_reader), Ok(mut server_writer)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let answers = {
        let (mut server_reader, mut client_writer, cut) = (server, client, Arc::clone(&cut));
        std::thread::spawn(move || {
            let mut buffer = vec![0; 64 * 1024];
            let mut forwarded = 0;
            while let Ok(read) = server_reader.read(&mut buffer) {
                if read == 0 || client_writer.write_all(&buffer[..read]).is_err() {
                    break;
                }
                forwarded += read;
                if cut.load(Ordering::SeqCst) && forwarded >= CUT_AFTER {
                    break;
                }
            }
            let _ = client_writer.shutdown(Shutdown::Both);
            let _ = server_reader.shutdown(Shutdown::Both);
        })
    };
    let mut pending = Vec::new();
    let mut first = true;
    let mut buffer = vec![0; 64 * 1024];
    while let Ok(read) = client_reader.read(&mut buffer) {
        if read == 0 {
            break;
        }
        pending.extend_from_slice(&buffer[..read]);
        // GET and HEAD have no body, so heads follow each other.
        while let Some(end) = pending.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..end + 4);
            let mut lines = head.lines();
            let request_line = lines.next().unwrap_or_default();
            let mut parts = request_line.split(' ');
            let mut record =
                format!("{} {}", parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            let range = lines.find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("range").then(|| value.trim().to_owned())
            });
            if let Some(range) = &range {
                record.push_str(&format!(" range: {range}"));
            }
            if first && range.is_some() && request_line.starts_with("GET ") {
                let claimed =
                    cuts_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1));
                if claimed.is_ok() {
                    cut.store(true, Ordering::SeqCst);
                    cuts_made.fetch_add(1, Ordering::SeqCst);
                }
            }
            first = false;
            requests.lock().unwrap_or_else(PoisonError::into_inner).push(record);
        }
        if server_writer.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = server_writer.shutdown(Shutdown::Write);
    let _ = answers.join();
}
