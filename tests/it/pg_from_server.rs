//! `pg.restore` with `from_server`, run by the `dr-plan` binary against two real
//! PostgreSQL clusters on loopback: a source (as a point-in-time recovery's side server
//! would be) and the live server.
//!
//! - one database of the source streams into a side database of the live server and its
//!   rows come back, while a client of the live database is answered throughout;
//! - the source failing in the middle of the dump (its pg_dump session terminated)
//!   fails the step, drops the side database and leaves the live database as it was;
//! - `from_server` without `into: side` is refused by validation, located.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::Postgres;
use support::festivals;
use support::sandbox::{Finished, Sandbox, finish, only_journal};

/// Rows of `filler` in the source: a dump of several MiB, so that it is still running
/// when the test stops the source.
const FILLER_ROWS: usize = 300_000;

struct World {
    source: Postgres,
    live: Postgres,
    sandbox: Sandbox,
}

impl World {
    fn new() -> World {
        let source = Postgres::start();
        festivals::seed(&source, "tododb");
        source.psql(
            "tododb",
            &format!(
                "create table filler (id serial primary key, text text not null);
                 insert into filler (text) select md5(n::text) || md5((n * 7)::text)
                   from generate_series(1, {FILLER_ROWS}) n;"
            ),
        );
        let live = Postgres::start();
        festivals::seed(&live, "tododb");
        live.psql(
            "tododb",
            "delete from tickets where id % 2 = 0; update users set email = 'damaged-' || id;",
        );
        World { source, live, sandbox: Sandbox::new(&[]) }
    }

    fn fingerprint(postgres: &Postgres, database: &str) -> String {
        format!(
            "{}|{}",
            festivals::fingerprint(postgres, database),
            postgres.psql(database, "select count(*) from filler").replace('\n', "")
        )
    }

    fn copies(&self) -> String {
        self.live.psql(
            "postgres",
            "select coalesce(string_agg(datname, ',' order by datname), '') from pg_database \
             where starts_with(datname, 'tododb__')",
        )
    }

    fn plan(&self, into: &str) -> String {
        let text = format!(
            r#"version: 1
name: from-server
description: Restore tododb beside itself from another server, then check it.
objectives: {{ rto: 30m, rpo: 6h }}
steps:
  - id: restore
    kind: pg.restore
    with:
      database: tododb
      {into}
      from_server: {{ connection: "{source}", database: tododb }}
  - id: check
    kind: pg.query
    needs: [restore]
    with:
      database: "{{{{steps.restore.outputs.database}}}}"
      assert:
        - {{ sql: "select count(*) from users", expect: "> 0" }}
"#,
            source = self.source.url("postgres"),
        );
        std::fs::write(self.sandbox.path("from-server.yaml"), text).unwrap();
        "from-server.yaml".to_owned()
    }

    fn command(&self, arguments: &[&str]) -> std::process::Command {
        let mut command = self.sandbox.command(arguments);
        command.envs(self.live.env()).env_remove("PGPASSWORD");
        command
    }

    fn dr_plan(&self, arguments: &[&str]) -> Finished {
        finish(self.command(arguments))
    }
}

/// Connects to the live database over and over until told to stop; counts failures.
fn keep_asking(
    live: &Postgres,
    stop: &Arc<AtomicBool>,
    failures: &Arc<AtomicUsize>,
) -> std::thread::JoinHandle<usize> {
    let (binary, port) = (live.binaries().join("psql"), live.port());
    let (stop, failures) = (Arc::clone(stop), Arc::clone(failures));
    std::thread::spawn(move || {
        let mut asked = 0;
        while !stop.load(Ordering::SeqCst) {
            let answered = std::process::Command::new(&binary)
                .args(["--no-psqlrc", "-tA", "-h", "127.0.0.1", "-U", "postgres", "-p", &port.to_string()])
                .args(["-d", "tododb", "-c", "select count(*) from users"])
                .env_remove("PGPASSWORD")
                .output()
                .is_ok_and(|output| output.status.success());
            if !answered {
                failures.fetch_add(1, Ordering::SeqCst);
            }
            asked += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        asked
    })
}

#[test]
fn a_database_of_another_server_streams_into_a_side_database_while_the_live_one_answers() {
    let world = World::new();
    let expected = World::fingerprint(&world.source, "tododb");
    let live_before = festivals::fingerprint(&world.live, "tododb");
    let plan = world.plan("into: side");

    let (stop, failures) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let asking = keep_asking(&world.live, &stop, &failures);
    let finished = world.dr_plan(&["run", &plan, "--yes"]);
    stop.store(true, Ordering::SeqCst);
    let asked = asking.join().unwrap();
    assert_eq!(finished.code, 0, "{finished}");
    assert!(asked > 0);
    assert_eq!(failures.load(Ordering::SeqCst), 0, "the live database answered every one of {asked} clients");

    let side = world.copies();
    assert!(side.starts_with("tododb__restore_") && !side.contains(','), "{side}");
    assert_eq!(World::fingerprint(&world.live, &side), expected, "the source's rows are back, beside");
    assert_eq!(festivals::fingerprint(&world.live, "tododb"), live_before, "the live database is untouched");
    let outputs = only_journal(&world.sandbox.state_dir())
        .into_iter()
        .find(|record| record["event"] == "step_succeeded" && record["step"] == "restore")
        .map(|record| record["outputs"].clone())
        .expect("restore succeeded");
    assert_eq!(outputs["database"], side.as_str(), "{outputs}");
    assert_eq!(outputs["format"], "custom", "{outputs}");

    // The dry-run says where the data comes from, and that nothing is written to disk.
    let dry_run = world.dr_plan(&["dry-run", &plan, "--preflight"]);
    assert_eq!(dry_run.code, 0, "{dry_run}");
    let said = format!(
        "restore database tododb on postgresql://postgres@127.0.0.1:{} as pg_dump streams it, into a new side \
         database tododb__restore_<run>, nothing written to disk",
        world.source.port()
    );
    assert!(dry_run.stdout.replace('\n', " ").contains(&said) || dry_run.stdout.contains(&said), "{dry_run}");
    assert!(dry_run.stdout.contains("the source database tododb on"), "{dry_run}");
}

#[test]
fn the_source_failing_during_the_dump_drops_the_side_database_and_leaves_the_live_one() {
    let world = World::new();
    let live_before = festivals::fingerprint(&world.live, "tododb");
    let plan = world.plan("into: side");
    let child = world
        .command(&["run", &plan, "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once pg_dump copies the filler table, its session on the source is ended.
    let started = Instant::now();
    loop {
        let ended = world.source.psql(
            "postgres",
            "select count(pg_terminate_backend(pid)) from pg_stat_activity \
             where application_name = 'dr-plan restore' and query ilike 'copy%filler%'",
        );
        if ended != "0" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "pg_dump never copied the filler table");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pg_dump of database tododb on"), "{stderr}");
    assert!(stderr.contains("nothing of it committed"), "{stderr}");
    assert!(stderr.contains("was dropped; database tododb was not touched"), "{stderr}");
    assert_eq!(world.copies(), "", "no side database is left");
    assert_eq!(festivals::fingerprint(&world.live, "tododb"), live_before, "the live database is as it was");
}

#[test]
fn from_server_without_a_side_database_is_refused_by_validation() {
    let world = World::new();
    let plan = world.plan("into: target");
    let finished = world.dr_plan(&["dry-run", &plan]);
    assert_eq!(finished.code, 2, "{finished}");
    assert!(finished.stderr.contains("gives `from_server` but not `into: side`"), "{finished}");
    assert!(finished.stderr.contains("from-server.yaml:11:7"), "{finished}");
}
