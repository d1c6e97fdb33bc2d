//! `pg.restore` with `from_s3`, run by the `dr-plan` binary against a real PostgreSQL and
//! an S3 server (s3s-fs) on loopback, with backups made by the real runbook pipeline
//! (`pg_dump | gzip -9 | openssl enc -aes-256-cbc -salt -pbkdf2`, a `.sha256` sidecar):
//!
//! - the object streams into a side database, is checked and swapped in, for plain SQL
//!   (psql), custom (pg_restore from standard input) and custom with `jobs: 2` (staged);
//! - a flipped bit, a truncation, a wrong key and a wrong sidecar each fail the restore,
//!   leave the live database as it was and no side database behind;
//! - `from_s3` without `into: side` is refused by validation, located;
//! - a `kill -9` of dr-plan during the load, then `resume`: nothing of the load was
//!   committed, the side database is dropped and made again, and the run finishes;
//! - a `kill -9` during the swap, then `resume`: the live name is never absent, and the
//!   run finishes.

use crate::support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dr_plan::sys::process_tree::left_running_by;
use support::festivals::{self, put_with_sidecar, sha256_hex};
use support::process::wait_until;
use support::sandbox::{Finished, Sandbox, finish, only_journal};
use support::{Postgres, S3};

const BUCKET: &str = "festivals-backups";
/// The passphrase of the backups (the key file's first line).
const KEY: &str = "test backup key, not a real one";
/// Rows of the `filler` table: enough for a dump of several 512 KiB chunks, so that
/// psql has loaded most of it when a late flipped bit shows.
const FILLER_ROWS: usize = 60_000;

/// A PostgreSQL with `tododb`, an S3 server with the backup bucket, and a sandbox
/// with the key file.
struct World {
    postgres: Postgres,
    s3: S3,
    sandbox: Sandbox,
}

impl World {
    fn new() -> World {
        let postgres = Postgres::start();
        festivals::seed(&postgres, "tododb");
        postgres.psql(
            "tododb",
            &format!(
                "create table filler (id serial primary key, text text not null);
                 insert into filler (text) select md5(n::text) || md5((n * 7)::text)
                   from generate_series(1, {FILLER_ROWS}) n;"
            ),
        );
        let world = World { postgres, s3: S3::start(&[BUCKET]), sandbox: Sandbox::new(&[]) };
        std::fs::write(world.key_file(), format!("{KEY}\n")).unwrap();
        world
    }

    fn key_file(&self) -> std::path::PathBuf {
        self.sandbox.path("encryption.key")
    }

    /// Every row of `database`, as a fingerprint.
    fn fingerprint(&self, database: &str) -> String {
        let tables = festivals::fingerprint(&self.postgres, database);
        let filler = self
            .postgres
            .psql(database, "select count(*), md5(string_agg(t::text, ',' order by id)) from filler t");
        format!("{tables}|{filler}")
    }

    /// The databases whose name starts with `tododb__`.
    fn copies(&self) -> String {
        self.postgres.psql(
            "postgres",
            "select coalesce(string_agg(datname, ',' order by datname), '') from pg_database \
             where starts_with(datname, 'tododb__')",
        )
    }

    /// The runbook's backup of `tododb` with `pg_dump_options`, encrypted with `key`.
    fn backup(&self, pg_dump_options: &str, key: &str) -> Vec<u8> {
        let key_file = self.sandbox.path("backup.key");
        std::fs::write(&key_file, format!("{key}\n")).unwrap();
        festivals::runbook_backup_as(&self.postgres, "tododb", &key_file, pg_dump_options)
    }

    /// Changes the live `tododb`, so that it and the backup tell apart.
    fn damage(&self) {
        self.postgres.psql(
            "tododb",
            "delete from tickets where id % 2 = 0; update users set email = 'corrupted-' || id;
             delete from filler where id % 3 = 0;",
        );
    }

    /// Writes the plan: `pg.restore` of `object` with `from_s3` into a side database
    /// with `jobs`, then, with `swap`, a check and the swap.
    fn plan(&self, object: &str, jobs: u32, swap: bool) -> String {
        let mut text = format!(
            r#"version: 1
name: from-s3
description: Restore tododb from S3 beside itself, check it, swap it in.
objectives: {{ rto: 30m, rpo: 6h }}
secrets:
  backup_key: {{ file: {key_file} }}
steps:
  - id: restore
    kind: pg.restore
    with:
      database: tododb
      into: side
      jobs: {jobs}
      from_s3:
        bucket: {BUCKET}
        key: {object}
        checksum: sidecar
        decrypt: {{ format: openssl-pbkdf2, key: "{{{{secrets.backup_key}}}}" }}
"#,
            key_file = self.key_file().display()
        );
        if swap {
            text.push_str(
                r#"  - id: check
    kind: pg.query
    needs: [restore]
    with:
      database: "{{steps.restore.outputs.database}}"
      assert:
        - { sql: "select count(*) from users", expect: "> 0" }
  - id: swap
    kind: pg.swap
    needs: [check]
    with: { database: tododb, replacement: "{{steps.restore.outputs.database}}" }
"#,
            );
        }
        std::fs::write(self.sandbox.path("from-s3.yaml"), text).unwrap();
        "from-s3.yaml".to_owned()
    }

    /// `dr-plan ARGUMENTS` in the sandbox with both servers in its environment.
    fn command(&self, arguments: &[&str]) -> Command {
        let mut command = self.sandbox.command(arguments);
        command.envs(self.postgres.env()).envs(self.s3.env()).env_remove("PGPASSWORD");
        command
    }

    fn dr_plan(&self, arguments: &[&str]) -> Finished {
        finish(self.command(arguments))
    }

    /// Starts `dr-plan ARGUMENTS` in the background, its output in `NAME.stdout|stderr`.
    fn spawn(&self, arguments: &[&str], name: &str) -> Child {
        self.sandbox.spawn_command(self.command(arguments), name)
    }

    /// The outputs of step `step` in the journal of the only run.
    fn outputs(&self, step: &str) -> serde_json::Value {
        only_journal(&self.sandbox.state_dir())
            .into_iter()
            .find(|record| record["event"] == "step_succeeded" && record["step"] == step)
            .map(|record| record["outputs"].clone())
            .unwrap_or_else(|| panic!("`{step}` never succeeded"))
    }

    /// Whether a session of step `step` of dr-plan is doing what `condition` says
    /// (an SQL condition on `pg_stat_activity`).
    fn session_of(&self, step: &str, condition: &str) -> bool {
        self.postgres.psql(
            "postgres",
            &format!(
                "select count(*) from pg_stat_activity where (application_name = 'dr-plan {step}' or application_name like 'dr-plan {step} %') and {condition}"
            ),
        ) != "0"
    }

    /// `dr-plan resume` after a kill -9, once the killed run's programs are gone.
    fn resume(&self, run_id: &str) -> Finished {
        let started = Instant::now();
        loop {
            let resumed =
                self.dr_plan(&["resume", run_id, "--break-stale-lock", "--rerun-interrupted", "--yes"]);
            if resumed.code != 3 || !resumed.stderr.contains("still running") {
                return resumed;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the killed run's programs never ended: {resumed}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A backup in the runbook's form streams into a side database, is checked and swapped
/// in; the damaged database is kept as `tododb__before_<run>`.
fn restores_and_swaps(pg_dump_options: &str, jobs: u32, format: &str) {
    let world = World::new();
    let expected = world.fingerprint("tododb");
    let backup = world.backup(pg_dump_options, KEY);
    let object = "postgres/tododb-20240101T060000Z.sql.gz.enc";
    put_with_sidecar(&world.s3, BUCKET, object, &backup);
    world.damage();
    let damaged = world.fingerprint("tododb");

    let plan = world.plan(object, jobs, true);
    let finished = world.dr_plan(&["run", &plan, "--yes"]);
    assert_eq!(finished.code, 0, "{finished}");
    assert_eq!(world.fingerprint("tododb"), expected, "the backup's data is live");
    let copies = world.copies();
    assert!(copies.starts_with("tododb__before_") && !copies.contains(','), "{copies}");
    assert_eq!(world.fingerprint(&copies), damaged, "the damaged database is kept beside");
    // The operator reads, in the run's own lines, where the damaged database went and how
    // long the live name was unavailable.
    let said = format!("`{copies}` the former `tododb`; unavailable for ");
    assert!(finished.stderr.contains(&said), "{finished}");

    let outputs = world.outputs("restore");
    assert_eq!(outputs["format"], format, "{outputs}");
    assert_eq!(outputs["key"], object);
    assert_eq!(outputs["sha256"], sha256_hex(&backup));
    assert!(outputs["bytes"].as_u64().unwrap() > backup.len() as u64, "{outputs}");
    assert!(outputs["age"].as_u64().unwrap() < 600, "{outputs}");
    assert!(outputs["database"].as_str().unwrap().starts_with("tododb__restore_"), "{outputs}");
    // Nothing staged is left in the run directory.
    let leftovers: Vec<_> = support::sandbox::files_under(&world.sandbox.state_dir())
        .into_iter()
        .filter(|path| path.to_string_lossy().contains("staged"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The age of the object is the measured RPO.
    let run_id = world.sandbox.only_run();
    let report = world.dr_plan(&["report", &run_id, "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&report.stdout).expect("a JSON report");
    assert!(report["rpo"]["measured_seconds"].as_f64().is_some(), "{report}");
}

#[test]
fn a_plain_sql_backup_streams_through_psql_and_is_swapped_in() {
    restores_and_swaps("-Fp", 1, "plain");
}

#[test]
fn a_custom_backup_streams_through_pg_restore_and_is_swapped_in() {
    restores_and_swaps("-Fc", 1, "custom");
}

#[test]
fn a_custom_backup_restored_with_two_jobs_is_staged_then_deleted() {
    restores_and_swaps("-Fc", 2, "custom");
}

/// A backup that must never be restored.
#[derive(Clone, Copy, Debug)]
enum Corruption {
    FlippedBit,
    Truncated,
    WrongKey,
    WrongSidecar,
}

#[test]
fn a_bad_object_leaves_the_live_database_as_it_was_and_no_side_database() {
    let world = World::new();
    let live = world.fingerprint("tododb");
    let good = world.backup("-Fp", KEY);
    for (index, corruption) in
        [Corruption::FlippedBit, Corruption::Truncated, Corruption::WrongKey, Corruption::WrongSidecar]
            .into_iter()
            .enumerate()
    {
        let object = format!("postgres/bad-{index}.sql.gz.enc");
        let (stored, sidecar_of) = match corruption {
            Corruption::FlippedBit => {
                // Late in the object: psql has loaded most of the dump when it shows.
                let mut bytes = good.clone();
                let at = bytes.len() * 9 / 10;
                bytes[at] ^= 0x10;
                (bytes, good.clone())
            }
            // Cut inside a cipher block, as an interrupted upload is.
            Corruption::Truncated => (good[..(good.len() * 2 / 3) / 16 * 16 + 5].to_vec(), good.clone()),
            Corruption::WrongKey => {
                let other = world.backup("-Fp", "another key");
                (other.clone(), other)
            }
            Corruption::WrongSidecar => (good.clone(), b"another object".to_vec()),
        };
        world.s3.put_file(BUCKET, &object, &stored);
        let name = object.rsplit('/').next().unwrap();
        world.s3.put_file(
            BUCKET,
            &format!("{object}.sha256"),
            format!("{}  {name}\n", sha256_hex(&sidecar_of)),
        );
        // With the key of the good backup: the wrong-key object was encrypted with another.
        // A retry would download the same bad bytes again: the step asks for one, and
        // does not get it.
        let plan = world.plan(&object, 1, true);
        let text = std::fs::read_to_string(world.sandbox.path(&plan)).unwrap().replacen(
            "    kind: pg.restore\n",
            "    kind: pg.restore\n    retry: { attempts: 3, backoff: 1s }\n",
            1,
        );
        std::fs::write(world.sandbox.path(&plan), text).unwrap();
        let finished = world.dr_plan(&["run", &plan, "--yes"]);
        assert_eq!(finished.code, 1, "{corruption:?}: {finished}");
        let output = format!("{}{}", finished.stdout, finished.stderr);
        let said = match corruption {
            Corruption::FlippedBit => "is corrupt",
            Corruption::Truncated => "is truncated",
            Corruption::WrongKey => "cannot be restored",
            Corruption::WrongSidecar => "is wrong for",
        };
        assert!(output.contains(said), "{corruption:?} should say `{said}`: {finished}");
        assert!(
            output.contains("was dropped; database tododb was not touched"),
            "{corruption:?}: {finished}"
        );
        assert_eq!(world.fingerprint("tododb"), live, "{corruption:?}: the live database is as it was");
        assert_eq!(world.copies(), "", "{corruption:?}: no side database is left");
        let run_id = world.sandbox.run_ids().pop().expect("a run");
        let starts = world
            .sandbox
            .journal(&run_id)
            .iter()
            .filter(|event| event["event"] == "step_started" && event["step"] == "restore")
            .count();
        assert_eq!(starts, 1, "{corruption:?}: a bad backup is not downloaded again");
    }
}

#[test]
fn from_s3_without_into_side_is_refused_with_its_place() {
    let world = World { postgres: Postgres::start(), s3: S3::start(&[BUCKET]), sandbox: Sandbox::new(&[]) };
    std::fs::write(world.key_file(), format!("{KEY}\n")).unwrap();
    let plan = world.plan("postgres/x.sql.gz.enc", 1, false);
    let text = std::fs::read_to_string(world.sandbox.path(&plan)).unwrap().replace("      into: side\n", "");
    std::fs::write(world.sandbox.path(&plan), text).unwrap();
    let mut validate = Command::new(support::sandbox::BINARY);
    validate.current_dir(world.sandbox.path("")).args(["validate", &plan]).env("NO_COLOR", "1");
    let finished = finish(validate);
    assert_eq!(finished.code, 2, "{finished}");
    let output = format!("{}{}", finished.stdout, finished.stderr);
    assert!(output.contains("from-s3.yaml:13:7"), "located at `from_s3`: {finished}");
    assert!(output.contains("gives `from_s3` but not `into: side`"), "{finished}");
    assert!(output.contains("add `into: side`"), "{finished}");
}

#[test]
fn a_kill_during_the_load_commits_nothing_and_resume_restores_from_a_fresh_side_database() {
    let world = World::new();
    // An index whose key takes 50 ms a row: restoring it keeps psql busy for seconds,
    // after the tables were loaded in the same (uncommitted) transaction.
    world.postgres.psql(
        "tododb",
        "create function slow_key(integer) returns integer language plpgsql immutable
           as $$ begin perform pg_sleep(0.05); return $1; end $$;
         create table slow (id int);
         insert into slow select generate_series(1, 80);
         create index slow_by_key on slow (slow_key(id));",
    );
    let expected = world.fingerprint("tododb");
    let backup = world.backup("-Fp", KEY);
    let object = "postgres/tododb-20240101T060000Z.sql.gz.enc";
    put_with_sidecar(&world.s3, BUCKET, object, &backup);
    world.damage();
    let damaged = world.fingerprint("tododb");

    let plan = world.plan(object, 1, true);
    let mut child = world.spawn(&["run", &plan, "--yes"], "run");
    let indexing = wait_until(Duration::from_secs(60), || {
        world.session_of("restore", "query ilike 'create index slow_by_key%'")
    });
    assert!(indexing, "psql never reached the slow index: {}", world.sandbox.text("run.stderr"));
    child.kill().expect("kill -9 dr-plan");
    let _ = child.wait();
    let run_id = world.sandbox.only_run();
    // The watchdog ends psql; its transaction is rolled back: nothing was committed.
    assert!(
        wait_until(Duration::from_secs(10), || !world.session_of("restore", "true")),
        "psql outlived dr-plan"
    );
    let side = world.copies();
    assert!(side.starts_with("tododb__restore_"), "{side}");
    assert_eq!(
        world.postgres.psql(&side, "select count(*) from pg_tables where schemaname = 'public'"),
        "0",
        "nothing of the interrupted load was committed"
    );
    assert_eq!(world.fingerprint("tododb"), damaged, "the live database is untouched");

    let resumed = world.resume(&run_id);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert_eq!(world.fingerprint("tododb"), expected);
    let copies = world.copies();
    assert!(copies.starts_with("tododb__before_") && !copies.contains(','), "{copies}");
    assert_eq!(world.fingerprint(&copies), damaged);
}

#[test]
fn a_kill_during_the_swap_never_leaves_the_live_name_absent_and_resume_finishes() {
    let world = World::new();
    let expected = world.fingerprint("tododb");
    let backup = world.backup("-Fc", KEY);
    let object = "postgres/tododb-20240101T060000Z.dump.gz.enc";
    put_with_sidecar(&world.s3, BUCKET, object, &backup);
    world.damage();
    let damaged = world.fingerprint("tododb");

    // A transaction elsewhere holds a lock on database tododb: the swap waits for it.
    let mut holder = Command::new(world.postgres.binaries().join("psql"))
        .args(["--no-psqlrc", "--quiet", "--dbname", &world.postgres.url("postgres")])
        .env("PGAPPNAME", "lock holder")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("psql starts");
    {
        use std::io::Write as _;
        let stdin = holder.stdin.as_mut().unwrap();
        stdin.write_all(b"begin;\ncomment on database tododb is 'held';\nselect pg_sleep(120);\n").unwrap();
        stdin.flush().unwrap();
    }
    let plan = world.plan(object, 1, true);
    let mut child = world.spawn(&["run", &plan, "--yes"], "run");
    let waiting =
        wait_until(Duration::from_secs(60), || world.session_of("swap", "wait_event_type = 'Lock'"));
    assert!(waiting, "the swap never waited for the lock: {}", world.sandbox.text("run.stderr"));
    let pid = child.id();
    child.kill().expect("kill -9 dr-plan");
    let _ = child.wait();
    let run_id = world.sandbox.only_run();
    // The watchdog ends the swap's psql (its server session, waiting for the lock,
    // learns of it only once it gets the lock, and then cannot commit).
    assert!(
        wait_until(Duration::from_secs(10), || left_running_by(pid).is_empty()),
        "the swap's psql outlived dr-plan: {:?}",
        left_running_by(pid)
    );
    let names = world.postgres.psql(
        "postgres",
        "select string_agg(datname, ',' order by datname) from pg_database where starts_with(datname, 'tododb')",
    );
    assert!(names.split(',').any(|name| name == "tododb"), "the live name is there: {names}");
    // Its server session sleeps on without its client: end it.
    world.postgres.psql(
        "postgres",
        "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'lock holder'",
    );
    let _ = holder.kill();
    let _ = holder.wait();

    let resumed = world.resume(&run_id);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert_eq!(world.fingerprint("tododb"), expected, "the swap finished");
    let copies = world.copies();
    assert!(copies.starts_with("tododb__before_") && !copies.contains(','), "{copies}");
    assert_eq!(world.fingerprint(&copies), damaged);
}
