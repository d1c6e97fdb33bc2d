//! `pg.pitr` against a real PostgreSQL 15 archiving into a pgBackRest posix repository:
//! marker rows before and after a target time, exactly the first set back; a target
//! after the newest archived commit refused before anything is restored; nothing of the
//! side server in the production archive afterwards.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::process::{free_port, run_bounded, temporary_directory};

const BINARY: &str = env!("CARGO_BIN_EXE_dr-plan");
const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A cluster archiving into a pgBackRest posix repository, with one full backup.
struct Production {
    directory: tempfile::TempDir,
    port: u16,
}

fn shell(script: &str, what: &str) -> String {
    let output =
        run_bounded(Command::new("bash").args(["-ec", script]), None, Duration::from_secs(180), what);
    assert!(output.status.success(), "{what}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

impl Production {
    fn start() -> Production {
        let directory = temporary_directory("pitr");
        let port = free_port();
        let root = directory.path().display().to_string();
        shell(
            &format!(
                r#"D={root}; mkdir -p $D/repo $D/sock $D/pgbr/log $D/pgbr/lock $D/pgbr/spool
cat > $D/pgbackrest.conf <<C
[global]
repo1-type=posix
repo1-path=$D/repo
log-path=$D/pgbr/log
lock-path=$D/pgbr/lock
spool-path=$D/pgbr/spool
start-fast=y
repo1-retention-full=9
[main]
pg1-path=$D/data
pg1-port={port}
pg1-socket-path=$D/sock
C
chown -R postgres $D; chmod 711 $D
runuser -u postgres -- {BIN}/initdb -D $D/data -A trust -U postgres --no-sync >/dev/null
runuser -u postgres -- {BIN}/pg_ctl -D $D/data -l $D/pg.log -w start -o "-c listen_addresses=127.0.0.1 -p {port} -k $D/sock -c wal_level=replica -c archive_mode=on -c archive_timeout=2 -c fsync=off -c \"archive_command=pgbackrest --config=$D/pgbackrest.conf --stanza=main archive-push %p\"" >/dev/null
runuser -u postgres -- pgbackrest --config=$D/pgbackrest.conf --stanza=main stanza-create >/dev/null
runuser -u postgres -- pgbackrest --config=$D/pgbackrest.conf --stanza=main --type=full backup >/dev/null"#
            ),
            "set up PostgreSQL with pgBackRest",
        );
        Production { directory, port }
    }

    /// Marker 1, a target time 1.5 s later, marker 2 1.5 s after it, archived; returns the target.
    fn markers_around_a_target(&self) -> String {
        self.psql("create table marker(i int); insert into marker values (1)");
        std::thread::sleep(Duration::from_millis(1500));
        let target = self
            .psql("select to_char(now() at time zone 'UTC', 'YYYY-MM-DD\\\"T\\\"HH24:MI:SS.US\\\"Z\\\"')");
        std::thread::sleep(Duration::from_millis(1500));
        self.psql("insert into marker values (2)");
        self.psql("select pg_switch_wal()");
        std::thread::sleep(Duration::from_secs(4));
        target
    }

    fn psql(&self, sql: &str) -> String {
        shell(&format!("{BIN}/psql -h 127.0.0.1 -p {} -U postgres -qAt -c \"{sql}\"", self.port), "psql")
    }

    fn path(&self, name: &str) -> String {
        self.directory.path().join(name).display().to_string()
    }

    fn plan(&self, target: &str) -> String {
        let plan = self.directory.path().join(format!("plan-{}.yaml", rand_name()));
        std::fs::write(
            &plan,
            format!(
                "version: 1\nname: pitr-test\nsteps:\n  - id: pitr\n    kind: pg.pitr\n    with:\n      stanza: main\n      \
                 config: {}\n      target: {target}\n      run_as: postgres\n  - id: check\n    kind: pg.query\n    \
                 needs: [pitr]\n    with:\n      database: postgres\n      connection: \"{{{{steps.pitr.outputs.connection}}}}\"\n      \
                 assert:\n        - {{ sql: \"select string_agg(i::text, ',' order by i) from marker\", expect: \"1\" }}\n",
                self.path("pgbackrest.conf")
            ),
        )
        .unwrap();
        plan.display().to_string()
    }
}

impl Drop for Production {
    fn drop(&mut self) {
        let _ = run_bounded(
            Command::new("runuser")
                .args(["-u", "postgres", "--", &format!("{BIN}/pg_ctl"), "stop", "-m", "immediate", "-D"])
                .arg(self.path("data")),
            None,
            Duration::from_secs(30),
            "pg_ctl stop",
        );
    }
}

fn rand_name() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

fn dr_plan(state: &Path, arguments: &[&str]) -> std::process::Output {
    let mut command = Command::new(BINARY);
    command.args(arguments).arg("--state-dir").arg(state);
    run_bounded(&mut command, None, Duration::from_secs(240), "dr-plan")
}

#[test]
fn recovers_to_a_time_beside_the_live_cluster_and_refuses_an_unreachable_target() {
    let production = Production::start();
    let target = production.markers_around_a_target();
    let state = production.directory.path().join("state");

    let too_late = production.plan("{ time: \"2099-01-01T00:00:00Z\" }");
    let refused = dr_plan(&state, &["run", &too_late, "--yes"]);
    let text =
        String::from_utf8_lossy(&refused.stderr).into_owned() + &String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(
        text.contains("is not reachable")
            && text.contains("target: latest")
            && text.contains("nothing was restored"),
        "{text}"
    );

    let too_early = production.plan("{ time: \"2000-01-01T00:00:00Z\" }");
    let preflight = dr_plan(&state, &["dry-run", &too_early, "--preflight"]);
    let text =
        String::from_utf8_lossy(&preflight.stderr).into_owned() + &String::from_utf8_lossy(&preflight.stdout);
    assert!(text.contains("before the oldest backup"), "{text}");
    let refused = dr_plan(&state, &["run", &too_early, "--yes"]);
    let text =
        String::from_utf8_lossy(&refused.stderr).into_owned() + &String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(text.contains("before the oldest backup") && text.contains("nothing was restored"), "{text}");

    let plan = production.plan(&format!("{{ time: \"{target}\" }}"));
    let finished = dr_plan(&state, &["run", &plan, "--yes"]);
    let text =
        String::from_utf8_lossy(&finished.stderr).into_owned() + &String::from_utf8_lossy(&finished.stdout);
    assert!(finished.status.success(), "{text}");
    assert!(text.contains("on timeline 2"), "{text}");
    // The side server is stopped and its directory removed once dr-plan ended.
    let gone = crate::support::process::wait_until(Duration::from_secs(30), || {
        crate::support::sandbox::files_under(&state)
            .iter()
            .all(|file| !file.to_string_lossy().contains("/data-"))
    });
    assert!(gone, "the side server's data directory is still there");
    // Nothing of the side server's timeline reached the production archive.
    let archive = shell(&format!("ls -R {}", production.path("repo/archive")), "list the archive");
    assert!(!archive.contains("00000002.history") && !archive.contains("0000000200000000"), "{archive}");
    assert_eq!(production.psql("select count(*) from marker"), "2");
}

#[test]
fn a_segment_missing_from_the_archive_stops_recovery_with_what_was_reached_and_nothing_promoted() {
    let production = Production::start();
    production.psql("create table marker(i int); insert into marker values (1)");
    production.psql("select pg_switch_wal()");
    std::thread::sleep(Duration::from_millis(1500));
    let target = production
        .psql("select to_char(now() at time zone 'UTC', 'YYYY-MM-DD\\\"T\\\"HH24:MI:SS.US\\\"Z\\\"')");
    std::thread::sleep(Duration::from_millis(1500));
    production.psql("insert into marker values (2)");
    production.psql("select pg_switch_wal()");
    std::thread::sleep(Duration::from_secs(4));
    // The segment after the backup's, holding marker 1, goes missing.
    shell(
        &format!(
            "rm {}/repo/archive/main/15-1/0000000100000000/000000010000000000000003-*",
            production.path("")
        ),
        "remove a segment",
    );
    let state = production.directory.path().join("state");
    let plan = production.plan(&format!("{{ time: \"{target}\" }}"));
    let finished = dr_plan(&state, &["run", &plan, "--yes"]);
    let text =
        String::from_utf8_lossy(&finished.stderr).into_owned() + &String::from_utf8_lossy(&finished.stdout);
    assert_eq!(finished.status.code(), Some(1), "{text}");
    assert!(text.contains("reached only") && text.contains("nothing was promoted"), "{text}");
    assert!(!text.contains("▶ check"), "{text}");
    assert_eq!(production.psql("select count(*) from marker"), "2");
}

#[test]
fn recovers_to_a_transaction_id_and_to_a_named_restore_point() {
    let production = Production::start();
    production.psql("create table marker(i int)");
    let xid = production.psql("begin; insert into marker values (1); select txid_current(); commit;");
    production.psql("select pg_create_restore_point('before-two')");
    production.psql("insert into marker values (2)");
    production.psql("select pg_switch_wal()");
    std::thread::sleep(Duration::from_secs(4));
    let state = production.directory.path().join("state");
    for target in [format!("{{ xid: \"{xid}\" }}"), "{ name: before-two }".to_owned()] {
        let plan = production.plan(&target);
        let finished = dr_plan(&state, &["run", &plan, "--yes"]);
        let text = String::from_utf8_lossy(&finished.stderr).into_owned()
            + &String::from_utf8_lossy(&finished.stdout);
        assert!(finished.status.success(), "{target}: {text}");
    }
}

#[test]
fn after_kill_9_during_recovery_the_side_server_is_stopped_and_resume_recovers_again() {
    let production = Production::start();
    let target = production.markers_around_a_target();
    let state = production.directory.path().join("state");
    let plan = production.plan(&format!("{{ time: \"{target}\" }}"));
    let mut child = Command::new(BINARY)
        .args(["run", &plan, "--yes", "--state-dir"])
        .arg(&state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = crate::support::process::wait_until(Duration::from_secs(60), || {
        crate::support::sandbox::files_under(&state)
            .iter()
            .any(|file| file.to_string_lossy().contains("postmaster.pid"))
    });
    assert!(started, "the side server never started");
    another_local_user_cannot_reach_the_side_server(&state);
    child.kill().unwrap();
    let _ = child.wait();
    let stopped = crate::support::process::wait_until(Duration::from_secs(40), || {
        crate::support::sandbox::files_under(&state)
            .iter()
            .all(|file| !file.to_string_lossy().contains("/data-"))
    });
    assert!(stopped, "the side server outlived dr-plan's kill -9");
    let run_id = crate::support::sandbox::run_ids(&state).pop().unwrap();
    let resumed = dr_plan(&state, &["resume", &run_id, "--break-stale-lock"]);
    let text =
        String::from_utf8_lossy(&resumed.stderr).into_owned() + &String::from_utf8_lossy(&resumed.stdout);
    assert!(resumed.status.success(), "{text}");
    assert!(text.contains("on timeline 2"), "{text}");
}

/// The side server holds a copy of production with trust authentication: no other local
/// user may reach it, neither over loopback TCP nor through its socket directory.
fn another_local_user_cannot_reach_the_side_server(state: &std::path::Path) {
    let pid_file = crate::support::sandbox::files_under(state)
        .into_iter()
        .find(|file| file.to_string_lossy().ends_with("postmaster.pid"))
        .expect("postmaster.pid");
    let lines: Vec<String> =
        std::fs::read_to_string(&pid_file).expect("read postmaster.pid").lines().map(str::to_owned).collect();
    // postmaster.pid: pid, data directory, start time, port, socket directory, listen address.
    let (port, socket_dir, listen) = (&lines[3], &lines[4], lines.get(5).cloned().unwrap_or_default());
    assert!(listen.trim().is_empty(), "the side server listens on `{listen}`");
    let can_run = Command::new("runuser")
        .args(["-u", "nobody", "--", &format!("{BIN}/psql"), "--version"])
        .output()
        .expect("runuser runs");
    assert!(can_run.status.success(), "nobody cannot run psql at all: the check below would prove nothing");
    for host in ["127.0.0.1", socket_dir.as_str()] {
        let output = Command::new("runuser")
            .args(["-u", "nobody", "--", &format!("{BIN}/psql"), "-h", host, "-p", port, "-U", "postgres"])
            .args(["-d", "postgres", "-qAtc", "select 1"])
            .output()
            .expect("runuser runs");
        assert!(
            !output.status.success(),
            "another user read the side server through {host}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}
