//! The shipped backup and recovery plans, run end to end by the `dr-plan` binary
//! against a real PostgreSQL and an S3 server (s3s-fs) on loopback:
//!
//! - `plans/backup.yaml` uploads what the real `openssl enc -d | gunzip` and plain
//!   `pg_restore` read back;
//! - `plans/verify-backup.yaml` restores the newest backup into a scratch database,
//!   checks it and drops it;
//! - `plans/db-corruption.yaml` (its database part: the Kubernetes steps are taken
//!   out of a test copy) restores a backup made by the real `pg_dump | gzip | openssl
//!   enc` straight from S3 beside a damaged database and, approved, swaps it in,
//!   keeping the damaged one;
//! - nothing is lost: for each of six corrupt or stale backups, the restore never
//!   starts and the database keeps every row.
//!
//! These need `s3.fetch` and `s3.put` to execute, and the shipped plans to exist: in a
//! build without them (the branches that bring them not merged yet) each test says so
//! on stderr and returns without checking anything.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use dr_plan::engine::journal::{self, Event};
use support::festivals::{self, fingerprint, seed, sha256_hex};
use support::sandbox::shipped_plan;
use support::{HttpServer, Postgres, S3};

const BUCKET: &str = "festivals-backups";
/// The passphrase of the test key file (its first line).
const KEY: &str = "test backup key, not a real one";

/// Why the tests cannot run in this tree, if they cannot: one of `plans` is missing.
fn missing_prerequisite(plans: &[&str]) -> Option<String> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    plans
        .iter()
        .find(|plan| !directory.join(plan).is_file())
        .map(|plan| format!("plans/{plan} is not in this tree"))
}

/// Fails the test when [`missing_prerequisite`] finds one.
macro_rules! require {
    ($($plan:expr),*) => {
        // Never a silent pass: a missing prerequisite is a broken tree.
        if let Some(reason) = missing_prerequisite(&[$($plan),*]) {
            panic!("cannot run: {reason}");
        }
    };
}

/// A temporary directory with a key file, plans and a state directory.
struct Sandbox {
    directory: tempfile::TempDir,
}

/// How a `dr-plan` run ended.
struct Finished {
    code: Option<i32>,
    output: String,
    state: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let sandbox = Sandbox { directory: tempfile::tempdir().expect("a temporary directory") };
        std::fs::write(sandbox.key_file(), format!("{KEY}\n")).unwrap();
        sandbox
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    fn key_file(&self) -> PathBuf {
        self.path("encryption.key")
    }

    /// A copy of a shipped plan whose key file is the test's.
    fn shipped_plan(&self, name: &str) -> String {
        shipped_plan(name, &self.key_file())
    }

    fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.path(name), text).unwrap();
        name.to_owned()
    }

    /// `dr-plan run PLAN --yes` with both servers in the environment.
    fn run(&self, plan: &str, postgres: &Postgres, s3: &S3, extra: &[(&str, String)]) -> Finished {
        self.run_approving(plan, postgres, s3, extra, &[])
    }

    /// [`Sandbox::run`] with `--approve STEP` for each of `approved`.
    fn run_approving(
        &self,
        plan: &str,
        postgres: &Postgres,
        s3: &S3,
        extra: &[(&str, String)],
        approved: &[&str],
    ) -> Finished {
        let state = self.path(&format!("state-{}", plan.trim_end_matches(".yaml")));
        let approvals = approved.iter().flat_map(|step| ["--approve", step]);
        let output = assert_cmd::Command::cargo_bin("dr-plan")
            .unwrap()
            .current_dir(self.directory.path())
            .args(["run", plan, "--yes"])
            .args(approvals)
            .arg("--state-dir")
            .arg(&state)
            .envs(postgres.env())
            .envs(s3.env())
            .envs(extra.iter().map(|(name, value)| (*name, value.clone())))
            .env("NO_COLOR", "1")
            .timeout(Duration::from_secs(300))
            .output()
            .unwrap();
        Finished {
            code: output.status.code(),
            output: format!(
                "--- stdout\n{}--- stderr\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            state,
        }
    }
}

impl Finished {
    /// Every journal event of the run.
    fn events(&self) -> Vec<Event> {
        let runs = std::fs::read_dir(self.state.join("runs")).expect("a runs directory");
        let mut events = Vec::new();
        for run in runs.flatten() {
            let records = journal::read(&run.path().join("journal.jsonl")).expect("a readable journal");
            events.extend(records.into_iter().map(|record| record.event));
        }
        events
    }

    fn started(&self, step: &str) -> bool {
        self.events()
            .iter()
            .any(|event| matches!(event, Event::StepStarted { step: started, .. } if started == step))
    }
}

/// The real runbook's backup (seed 003) with `key` as the passphrase.
fn cli_backup(postgres: &Postgres, sandbox: &Sandbox, database: &str, key: &str) -> Vec<u8> {
    let key_file = sandbox.path("cli.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    festivals::runbook_backup(postgres, database, &key_file)
}

/// Puts an object of the test bucket and its `sha256sum`-format sidecar.
fn put_with_sidecar(s3: &S3, key: &str, bytes: &[u8]) {
    festivals::put_with_sidecar(s3, BUCKET, key, bytes);
}

#[test]
fn the_backup_plan_uploads_what_openssl_gunzip_and_pg_restore_read_back() {
    require!("backup.yaml");
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let s3 = S3::start(&[BUCKET]);
    let webhook = HttpServer::start([(200, "ok")]);
    let sandbox = Sandbox::new();
    let plan = sandbox.write("backup.yaml", &sandbox.shipped_plan("backup.yaml"));
    let finished = sandbox.run(&plan, &postgres, &s3, &[("SLACK_WEBHOOK", webhook.url())]);
    assert_eq!(finished.code, Some(0), "{}", finished.output);

    let objects = s3.list(BUCKET);
    let dump_key = objects
        .iter()
        .find(|key| key.starts_with("postgres/tododb-") && key.ends_with(".dump.gz.enc"))
        .unwrap_or_else(|| panic!("no encrypted dump uploaded: {objects:?}"));
    assert!(objects.contains(&format!("{dump_key}.sha256")), "{objects:?}");
    assert!(objects.contains(&format!("{dump_key}.meta")), "{objects:?}");
    let stored = s3.get_file(BUCKET, dump_key).unwrap();
    let sidecar = String::from_utf8(s3.get_file(BUCKET, &format!("{dump_key}.sha256")).unwrap()).unwrap();
    assert!(sidecar.starts_with(&sha256_hex(&stored)), "{sidecar}");

    // What the Dharma runbook does by hand with the object.
    std::fs::write(sandbox.path("downloaded.enc"), &stored).unwrap();
    std::fs::write(sandbox.path("runbook.key"), format!("{KEY}\n")).unwrap();
    let script = format!(
        "cd {} && sha256sum -c <(sed 's/  .*/  downloaded.enc/' sidecar) && \
         openssl enc -d -aes-256-cbc -pbkdf2 -pass file:runbook.key -in downloaded.enc | gunzip > restored.dump",
        sandbox.directory.path().display()
    );
    std::fs::write(sandbox.path("sidecar"), &sidecar).unwrap();
    let shell = Command::new("bash").args(["-o", "pipefail", "-c", &script]).output().unwrap();
    assert!(shell.status.success(), "{script}: {}", String::from_utf8_lossy(&shell.stderr));
    postgres.create_database("copy");
    let output = Command::new(postgres.binaries().join("pg_restore"))
        .args(["--exit-on-error", "-d", "copy"])
        .arg(sandbox.path("restored.dump"))
        .envs(postgres.env())
        .output()
        .unwrap();
    assert!(output.status.success(), "pg_restore: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(fingerprint(&postgres, "copy"), fingerprint(&postgres, "tododb"));

    let messages: Vec<String> = webhook.requests().iter().map(support::RecordedRequest::body_text).collect();
    assert!(messages.iter().any(|message| message.contains("Backup of tododb verified")), "{messages:?}");
}

#[test]
fn the_verify_backup_plan_restores_the_newest_backup_into_a_scratch_database_and_drops_it() {
    require!("verify-backup.yaml");
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let s3 = S3::start(&[BUCKET]);
    let webhook = HttpServer::start([(200, "ok")]);
    let sandbox = Sandbox::new();
    // An older backup and the newest one, both made by the runbook's own commands.
    let older = cli_backup(&postgres, &sandbox, "tododb", KEY);
    put_with_sidecar(&s3, "postgres/tododb-20240101T000000Z.dump.gz.enc", &older);
    s3.set_last_modified(
        BUCKET,
        "postgres/tododb-20240101T000000Z.dump.gz.enc",
        SystemTime::now() - Duration::from_secs(3 * 3600),
    );
    postgres.psql("tododb", "insert into festivals (name) values ('only in the newest backup')");
    let newest = cli_backup(&postgres, &sandbox, "tododb", KEY);
    put_with_sidecar(&s3, "postgres/tododb-20240101T060000Z.dump.gz.enc", &newest);

    let plan = sandbox.write("verify-backup.yaml", &sandbox.shipped_plan("verify-backup.yaml"));
    let finished = sandbox.run(&plan, &postgres, &s3, &[("SLACK_WEBHOOK", webhook.url())]);
    assert_eq!(finished.code, Some(0), "{}", finished.output);
    assert!(finished.started("restore") && finished.started("check"));
    let results = finished.events().into_iter().find_map(|event| match event {
        Event::StepSucceeded { step, outputs, .. } if step == "check" => Some(outputs["results"].clone()),
        _ => None,
    });
    assert_eq!(results, Some(serde_json::json!(["500", "41"])), "the newest backup was restored");
    assert_eq!(
        postgres.psql("postgres", "select count(*) from pg_database where datname = 'tododb_verify'"),
        "0"
    );
    let messages: Vec<String> = webhook.requests().iter().map(support::RecordedRequest::body_text).collect();
    assert!(messages.iter().any(|message| message.contains("Backup verification passed")), "{messages:?}");
}

/// db-corruption without its Kubernetes steps (there is no cluster here): the steps of
/// kind `k8s.*` are removed, and so are the `needs` on them.
fn database_part_of_db_corruption(text: &str) -> String {
    let mut kept = Vec::new();
    let mut removed_ids = Vec::new();
    let (head, steps) = text.split_once("\nsteps:\n").expect("a steps list");
    let mut blocks: Vec<String> = Vec::new();
    for line in steps.lines() {
        if line.starts_with("  - id:") || blocks.is_empty() {
            blocks.push(String::new());
        }
        let block = blocks.last_mut().unwrap();
        block.push_str(line);
        block.push('\n');
    }
    for block in blocks {
        if block.contains("kind: k8s.") {
            let id = block.lines().next().unwrap().trim_start_matches("  - id:").trim().to_owned();
            removed_ids.push(id);
        } else {
            kept.push(block);
        }
    }
    let mut steps = kept.concat();
    for id in &removed_ids {
        steps = steps
            .replace(&format!("needs: [{id}]"), "needs: []")
            .replace(&format!("{id}, "), "")
            .replace(&format!(", {id}"), "");
    }
    assert!(!removed_ids.is_empty() && !steps.contains("k8s."), "{steps}");
    format!("{head}\nsteps:\n{steps}")
}

#[test]
fn db_corruption_swaps_a_runbook_backup_in_for_a_damaged_database() {
    require!("db-corruption.yaml");
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let expected = fingerprint(&postgres, "tododb");
    let s3 = S3::start(&[BUCKET]);
    let sandbox = Sandbox::new();
    put_with_sidecar(
        &s3,
        "postgres/tododb-20240101T060000Z.dump.gz.enc",
        &cli_backup(&postgres, &sandbox, "tododb", KEY),
    );
    postgres.psql("tododb", "delete from tickets where id % 2 = 0; update users set email = 'corrupted-' || id; drop index tickets_festival;");
    assert_ne!(fingerprint(&postgres, "tododb"), expected);
    let damaged = fingerprint(&postgres, "tododb");

    let plan = sandbox.write(
        "db-corruption.yaml",
        &database_part_of_db_corruption(&sandbox.shipped_plan("db-corruption.yaml")),
    );
    let finished = sandbox.run_approving(&plan, &postgres, &s3, &[], &["approve-swap"]);
    assert_eq!(finished.code, Some(0), "{}", finished.output);
    assert_eq!(fingerprint(&postgres, "tododb"), expected);
    assert_eq!(
        postgres.psql("tododb", "select count(*) from pg_indexes where indexname = 'tickets_festival'"),
        "1"
    );
    // The damaged database is kept beside it, as the safety copy undo would swap back.
    let kept = postgres.psql(
        "postgres",
        "select string_agg(datname, ',') from pg_database where starts_with(datname, 'tododb__')",
    );
    assert!(kept.starts_with("tododb__before_") && !kept.contains(','), "{kept}");
    assert_eq!(fingerprint(&postgres, &kept), damaged);
    // The report measures the unavailability (the swap's window) apart from the RTO.
    let run = std::fs::read_dir(finished.state.join("runs")).unwrap().next().unwrap().unwrap().file_name();
    let report = |format: &str| {
        let output = assert_cmd::Command::cargo_bin("dr-plan")
            .unwrap()
            .args(["report", &run.to_string_lossy(), "--format", format, "--state-dir"])
            .arg(&finished.state)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let json: serde_json::Value = serde_json::from_str(&report("json")).unwrap();
    let unavailable = json["unavailable_seconds"].as_f64().expect("the swap measured its window");
    assert!(unavailable < json["rto"]["measured_seconds"].as_f64().unwrap(), "{json}");
    let markdown = report("markdown");
    assert!(markdown.contains("| Unavailable | ") && markdown.contains(" recovery |"), "{markdown}");
}

/// A backup that must never be restored.
#[derive(Clone, Copy, Debug)]
enum Corruption {
    FlippedBit,
    Truncated,
    WrongKey,
    WrongSidecar,
    MissingSidecar,
    OlderThanTheRpo,
}

/// The recovery plan under test: fetch the newest backup, verified, then restore it
/// with `clean` (what would destroy the data if a bad backup got through).
fn restore_plan(key_file: &Path) -> String {
    format!(
        r#"version: 1
name: restore-newest
description: Fetch the newest backup and restore it over tododb.
objectives: {{ rto: 30m, rpo: 6h }}
secrets:
  backup_key: {{ file: {key_file} }}
steps:
  - id: fetch
    kind: s3.fetch
    with:
      bucket: {BUCKET}
      key: latest
      prefix: postgres/
      checksum: sidecar
      decrypt: {{ format: openssl-pbkdf2, key: "{{{{secrets.backup_key}}}}" }}
      decompress: auto
  - id: restore
    kind: pg.restore
    needs: [fetch]
    with: {{ dump: "{{{{steps.fetch.outputs.path}}}}", database: tododb, clean: true, jobs: 2 }}
"#,
        key_file = key_file.display()
    )
}

/// How the restore plan ended on one backup.
struct Outcome {
    code: Option<i32>,
    output: String,
    restore_started: bool,
    /// The database fingerprint before the plan ran (before any damage).
    before: String,
    after: String,
}

/// Puts a backup spoiled by `corruption` (or a good one for `None`), runs the restore
/// plan, and says how it ended.
fn restore_from(corruption: Option<Corruption>) -> Outcome {
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let s3 = S3::start(&[BUCKET]);
    let sandbox = Sandbox::new();
    let key = if matches!(corruption, Some(Corruption::WrongKey)) { "another key" } else { KEY };
    let mut stored = cli_backup(&postgres, &sandbox, "tododb", key);
    let object = "postgres/tododb-20240101T060000Z.dump.gz.enc";
    let sidecar = format!("{}  tododb-20240101T060000Z.dump.gz.enc\n", sha256_hex(&stored));
    match corruption {
        Some(Corruption::FlippedBit) => {
            let middle = stored.len() / 2;
            stored[middle] ^= 0x10;
        }
        Some(Corruption::Truncated) => stored.truncate(stored.len() * 2 / 3),
        Some(
            Corruption::WrongKey
            | Corruption::WrongSidecar
            | Corruption::MissingSidecar
            | Corruption::OlderThanTheRpo,
        )
        | None => {}
    }
    s3.put_file(BUCKET, object, &stored);
    match corruption {
        Some(Corruption::MissingSidecar) => {}
        Some(Corruption::WrongSidecar) => {
            s3.put_file(
                BUCKET,
                &format!("{object}.sha256"),
                format!("{}  tododb-20240101T060000Z.dump.gz.enc\n", "ab".repeat(32)),
            );
        }
        _ => s3.put_file(BUCKET, &format!("{object}.sha256"), &sidecar),
    }
    if matches!(corruption, Some(Corruption::OlderThanTheRpo)) {
        s3.set_last_modified(BUCKET, object, SystemTime::now() - Duration::from_secs(7 * 3600));
    }
    // What a restore of the good backup must put back, once the data is damaged.
    let before = fingerprint(&postgres, "tododb");
    if corruption.is_none() {
        postgres.psql("tododb", "delete from tickets");
    }
    let plan = sandbox.write("restore.yaml", &restore_plan(&sandbox.key_file()));
    let finished = sandbox.run(&plan, &postgres, &s3, &[]);
    Outcome {
        code: finished.code,
        restore_started: finished.started("restore"),
        output: finished.output,
        before,
        after: fingerprint(&postgres, "tododb"),
    }
}

fn assert_nothing_lost(corruption: Corruption, expected_error: &str) {
    require!();
    let outcome = restore_from(Some(corruption));
    assert_eq!(outcome.code, Some(1), "{corruption:?}: {}", outcome.output);
    assert!(
        outcome.output.to_lowercase().contains(&expected_error.to_lowercase()),
        "{corruption:?}: expected `{expected_error}` in\n{}",
        outcome.output
    );
    assert!(!outcome.restore_started, "{corruption:?}: the restore started");
    assert_eq!(outcome.after, outcome.before, "{corruption:?}: the database changed");
}

#[test]
fn a_good_backup_is_restored_by_the_same_plan() {
    require!();
    let outcome = restore_from(None);
    assert_eq!(outcome.code, Some(0), "{}", outcome.output);
    assert!(outcome.restore_started);
    assert_eq!(outcome.after, outcome.before, "the deleted rows are back");
}

#[test]
fn nothing_lost_with_a_flipped_bit() {
    assert_nothing_lost(Corruption::FlippedBit, "sha-256");
}

#[test]
fn nothing_lost_with_a_truncated_object() {
    assert_nothing_lost(Corruption::Truncated, "truncated");
}

#[test]
fn nothing_lost_with_the_wrong_key() {
    assert_nothing_lost(Corruption::WrongKey, "key");
}

#[test]
fn nothing_lost_with_a_wrong_sidecar() {
    assert_nothing_lost(Corruption::WrongSidecar, "sha256");
}

#[test]
fn nothing_lost_with_a_missing_sidecar() {
    assert_nothing_lost(Corruption::MissingSidecar, ".sha256");
}

#[test]
fn nothing_lost_with_a_backup_older_than_the_rpo() {
    assert_nothing_lost(Corruption::OlderThanTheRpo, "rpo");
}
