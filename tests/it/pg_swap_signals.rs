//! `pg.swap` interrupted while it waits, by the `dr-plan` binary against a real
//! PostgreSQL: at each phase of the swap (refusing connections, waiting for the sessions
//! to end, renaming) another session holds it up, and dr-plan gets Ctrl-C (SIGINT),
//! SIGTERM or SIGHUP, or is killed with `kill -9`. Each time a client must be able to
//! connect to the live database afterwards, while the session that held the swap up is
//! still there: after a signal the run itself allows connections again and says where
//! each database is; after `kill -9`, `status` or `resume` does, first. The swap back of
//! `undo` is interrupted the same way.

use crate::support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::Postgres;
use support::hints::{printed_command, run_printed};
use support::process::{send_signal, wait_bounded, wait_until};
use support::sandbox::{Finished, Sandbox, finish};

/// Long enough that no phase gives up by itself while a test holds it.
const SWAP: &str = "version: 1
name: swap-signals
description: Swap tododb_new in for tododb.
steps:
  - id: swap
    kind: pg.swap
    with: { database: tododb, replacement: tododb_new, deadline: 90s }
";

/// Swaps, then fails once the file `go` exists, so that the swap is undone.
const SWAP_THEN_FAIL: &str = "version: 1
name: swap-undo
description: Swap tododb_new in, then fail, so that the swap is undone.
steps:
  - id: swap
    kind: pg.swap
    with: { database: tododb, replacement: tododb_new, deadline: 90s }
    undo: true
  - id: fails
    kind: exec
    needs: [swap]
    with: { command: [sh, -c, 'while [ ! -e go ]; do sleep 0.05; done; exit 1'] }
";

/// Where the swap waits.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// `ALTER DATABASE … ALLOW_CONNECTIONS false` waits for a transaction that changed
    /// the live database's catalog row.
    Refusing,
    /// The sessions on the live database do not end (their server process is stopped).
    EndingSessions,
    /// The renames wait for a lock on the live database (`COMMENT ON DATABASE`, not
    /// committed).
    Renaming,
}

/// A PostgreSQL server and a sandbox whose plans swap on it.
struct World {
    postgres: Postgres,
    sandbox: Sandbox,
}

/// What holds the swap up: a psql session, and the server process stopped, if any.
struct Holder {
    psql: Child,
    stopped: Option<String>,
}

impl World {
    fn new() -> World {
        let world = World { postgres: Postgres::start(), sandbox: Sandbox::new(&[]) };
        std::fs::write(world.sandbox.path("swap.yaml"), SWAP).unwrap();
        std::fs::write(world.sandbox.path("swap-undo.yaml"), SWAP_THEN_FAIL).unwrap();
        world
    }

    /// Fresh `tododb` (marked `live`) and `tododb_new` (marked `replacement`).
    fn reset(&self) {
        let _ = std::fs::remove_file(self.sandbox.path("go"));
        let names = self.postgres.psql(
            "postgres",
            "select string_agg(format('%I', datname), ' ') from pg_database where starts_with(datname, 'tododb')",
        );
        for name in names.split_whitespace() {
            self.postgres.psql("postgres", &format!("drop database {name} with (force)"));
        }
        for (database, marker) in [("tododb", "live"), ("tododb_new", "replacement")] {
            self.postgres.create_database(database);
            self.postgres.psql(
                database,
                &format!("create table marker (what text); insert into marker values ('{marker}')"),
            );
        }
    }

    fn command(&self, arguments: &[&str]) -> Command {
        let mut command = self.sandbox.command(arguments);
        command.envs(self.postgres.env()).env_remove("PGPASSWORD");
        command
    }

    fn dr_plan(&self, arguments: &[&str]) -> Finished {
        finish(self.command(arguments))
    }

    fn spawn(&self, arguments: &[&str], name: &str) -> Child {
        self.sandbox.spawn_command(self.command(arguments), name)
    }

    /// A psql session on `database` named `holder`, fed `sql` and kept open.
    fn session(&self, database: &str, sql: &str) -> Child {
        use std::io::Write as _;
        let mut psql = Command::new(self.postgres.binaries().join("psql"))
            .args(["--no-psqlrc", "--quiet", "--dbname", &self.postgres.url(database)])
            .env("PGAPPNAME", "holder")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("psql starts");
        let stdin = psql.stdin.as_mut().unwrap();
        stdin.write_all(sql.as_bytes()).unwrap();
        stdin.flush().unwrap();
        psql
    }

    /// Starts what holds the swap up at `phase` on the database now called `live`, once
    /// it holds.
    fn hold(&self, phase: Phase, live: &str) -> Holder {
        let (database, sql) = match phase {
            Phase::Refusing => (
                "postgres",
                format!("begin;\nalter database {live} connection limit 50;\nselect pg_sleep(600);\n"),
            ),
            Phase::EndingSessions => (live, "select pg_sleep(600);\n".to_owned()),
            Phase::Renaming => (
                "postgres",
                format!("begin;\ncomment on database {live} is 'held';\nselect pg_sleep(600);\n"),
            ),
        };
        let psql = self.session(database, &sql);
        let sleeping = wait_until(Duration::from_secs(20), || {
            self.postgres.psql(
                "postgres",
                "select count(*) from pg_stat_activity where application_name = 'holder' and query like 'select pg_sleep%'",
            ) == "1"
        });
        assert!(sleeping, "the holding session never got to its sleep");
        let stopped = matches!(phase, Phase::EndingSessions).then(|| {
            let pid = self
                .postgres
                .psql("postgres", "select pid from pg_stat_activity where application_name = 'holder'");
            send_signal("STOP", &pid);
            pid
        });
        Holder { psql, stopped }
    }

    /// Ends the holding session.
    fn release(&self, mut holder: Holder) {
        if let Some(pid) = &holder.stopped {
            send_signal("CONT", pid);
        }
        self.postgres.psql(
            "postgres",
            "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'holder'",
        );
        let _ = holder.psql.kill();
        let _ = holder.psql.wait();
    }

    /// Whether the swap is waiting at `phase` now.
    fn waits_at(&self, phase: Phase, live: &str) -> bool {
        let swap_waits = |query: &str| {
            self.postgres.psql(
                "postgres",
                &format!(
                    "select count(*) from pg_stat_activity where application_name like 'dr-plan swap %' \
                     and wait_event_type = 'Lock' and query ilike '{query}'"
                ),
            ) != "0"
        };
        match phase {
            Phase::Refusing => swap_waits("%allow_connections false%"),
            Phase::EndingSessions => self.refused().contains(&live.to_owned()),
            Phase::Renaming => swap_waits("%rename%"),
        }
    }

    /// The databases refusing connections, sorted.
    fn refused(&self) -> Vec<String> {
        let names = self.postgres.psql(
            "postgres",
            "select string_agg(datname, ' ' order by datname) from pg_database where not datallowconn \
             and datname <> 'template0'",
        );
        names.split_whitespace().map(str::to_owned).collect()
    }

    /// What a client connecting to `database` reads: its marker.
    fn client_reads(&self, database: &str) -> String {
        self.postgres.psql(database, "select what from marker")
    }

    /// The journal's events of `run_id`, each as `event step: detail`.
    fn events(&self, run_id: &str) -> Vec<String> {
        self.sandbox
            .journal(run_id)
            .iter()
            .map(|record| {
                let event = record["event"].as_str().unwrap_or_default();
                let step = record["step"].as_str().unwrap_or_default();
                let detail =
                    record["error"].as_str().or_else(|| record["status"].as_str()).unwrap_or_default();
                let step = if step.is_empty() { String::new() } else { format!(" {step}") };
                let detail = if detail.is_empty() { String::new() } else { format!(": {detail}") };
                format!("{event}{step}{detail}")
            })
            .collect()
    }

    fn lock_files(&self) -> usize {
        std::fs::read_dir(self.sandbox.state_dir().join("locks")).map(Iterator::count).unwrap_or(0)
    }

    /// The newest run.
    fn last_run(&self) -> String {
        self.sandbox.run_ids().last().cloned().expect("a run")
    }
}

/// What an operator reads, with the run id, times, paths and durations filtered.
fn snapshot(name: &str, text: &str, world: &World) {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&world.sandbox.root.path().display().to_string()), "[sandbox]");
    settings.add_filter(r"swap-(signals|undo)-\d{8}-\d{6}-[0-9a-f]{4}", "[run-id]");
    settings.add_filter(r"__before_[0-9a-f]{4}", "__before_[run]");
    settings.add_filter(r"\b[0-9a-f]{64}\b", "[sha256]");
    settings.add_filter(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", "[time]");
    settings.add_filter(r"\b\d{2}:\d{2}:\d{2}\b", "[clock]");
    settings.add_filter(r"\b\d+(\.\d+)?m?s\b", "[duration]");
    settings.add_filter(r"\(pid \d+\)", "(pid [pid])");
    settings.add_filter(r"port=\d+|:\d{4,5}\b", "[port]");
    settings.set_snapshot_suffix(name);
    settings.bind(|| insta::assert_snapshot!(text));
}

fn regex_escape(text: &str) -> String {
    text.chars().fold(String::new(), |mut escaped, character| {
        if "\\.+*?()|[]{}^$".contains(character) {
            escaped.push('\\');
        }
        escaped.push(character);
        escaped
    })
}

/// A signal at `phase` of the swap: the run stops (130), the swap allowed connections
/// to both databases again and said where they are, the journal says so, the lock is
/// gone, a client connects to the live database while the holder still holds, and the
/// printed `next:` finishes the swap once the holder is gone.
fn signal_at(world: &World, phase: Phase, signal: &str) {
    world.reset();
    let holder = world.hold(phase, "tododb");
    let mut run = world.spawn(&["run", "swap.yaml", "--yes"], "run");
    let waiting = wait_until(Duration::from_secs(30), || world.waits_at(phase, "tododb"));
    assert!(waiting, "{phase:?}: the swap never waited there: {}", world.sandbox.text("run.stderr"));
    send_signal(signal, &run.id().to_string());
    let status = wait_bounded(&mut run, Duration::from_secs(30));
    let stderr = world.sandbox.text("run.stderr");
    assert_eq!(status.and_then(|status| status.code()), Some(130), "{phase:?} {signal}: {stderr}");
    // The outage ended with the run, though the session that held the swap is still there.
    assert_eq!(world.refused(), Vec::<String>::new(), "{phase:?} {signal}: {stderr}");
    assert_eq!(world.client_reads("tododb"), "live", "{phase:?} {signal}");
    assert_eq!(world.client_reads("tododb_new"), "replacement", "{phase:?} {signal}");
    assert_eq!(world.lock_files(), 0, "{phase:?} {signal}: the lock is left: {stderr}");
    let run_id = world.last_run();
    let events = world.events(&run_id);
    assert_eq!(events.last().map(String::as_str), Some("run_finished: interrupted"), "{events:#?}");
    let failed =
        events.iter().find(|event| event.starts_with("step_failed swap")).cloned().unwrap_or_default();
    assert!(
        failed.contains("stopped during the swap")
            && failed.contains("`tododb` is still the live database (unchanged)")
            && failed.contains("connections to both are allowed again"),
        "{events:#?}"
    );
    snapshot(&format!("{phase:?}_{signal}"), &stderr, world);
    world.release(holder);
    let next = printed_command(&stderr).unwrap_or_else(|| panic!("no next: line\n{stderr}"));
    let environment: Vec<(&str, String)> = world.postgres.env();
    let environment: Vec<(&str, &str)> =
        environment.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let resumed = run_printed(&next, world.sandbox.root.path(), &environment);
    assert!(resumed.status.success(), "`{next}`: {}", support::sandbox::text(&resumed));
    assert_eq!(world.client_reads("tododb"), "replacement", "the resumed swap is done");
}

#[test]
fn a_signal_while_the_swap_refuses_connections_leaves_them_allowed() {
    let world = World::new();
    for signal in ["INT", "TERM", "HUP"] {
        signal_at(&world, Phase::Refusing, signal);
    }
}

#[test]
fn a_signal_while_the_swap_waits_for_the_sessions_to_end_allows_connections_again() {
    let world = World::new();
    for signal in ["INT", "TERM", "HUP"] {
        signal_at(&world, Phase::EndingSessions, signal);
    }
}

#[test]
fn a_signal_while_the_renames_wait_for_a_lock_allows_connections_again() {
    let world = World::new();
    for signal in ["INT", "TERM", "HUP"] {
        signal_at(&world, Phase::Renaming, signal);
    }
}

/// `kill -9` at `phase`, then `command` (`status RUN` or `resume RUN`): it allows
/// connections to the databases the dead run left refused, first, and says so.
fn killed_at(world: &World, phase: Phase, command: &str) -> (String, Finished, Holder) {
    world.reset();
    let holder = world.hold(phase, "tododb");
    // The lock of the run killed before this one is stale.
    let mut run = world.spawn(&["run", "swap.yaml", "--yes", "--break-stale-lock"], "run");
    let waiting = wait_until(Duration::from_secs(30), || world.waits_at(phase, "tododb"));
    assert!(waiting, "{phase:?}: the swap never waited there: {}", world.sandbox.text("run.stderr"));
    run.kill().expect("kill -9 dr-plan");
    let _ = run.wait();
    let run_id = world.last_run();
    if !matches!(phase, Phase::Refusing) {
        assert_eq!(world.refused(), ["tododb", "tododb_new"], "the dead run left both refusing clients");
    }
    let after = world.dr_plan(&[command, &run_id]);
    assert_eq!(world.refused(), Vec::<String>::new(), "{phase:?} `{command}`: {after}");
    assert_eq!(world.client_reads("tododb"), "live", "{phase:?} `{command}`");
    assert_eq!(world.client_reads("tododb_new"), "replacement", "{phase:?} `{command}`");
    (run_id, after, holder)
}

#[test]
fn after_a_kill_during_the_swap_status_allows_the_refused_connections_again() {
    let world = World::new();
    for phase in [Phase::Refusing, Phase::EndingSessions, Phase::Renaming] {
        let (_, status, holder) = killed_at(&world, phase, "status");
        assert_eq!(status.code, 0, "{status}");
        let said = status.stderr.lines().any(|line| line.starts_with("repaired: step `swap` of run "));
        assert_eq!(said, !matches!(phase, Phase::Refusing), "{phase:?}: {status}");
        if matches!(phase, Phase::Renaming) {
            snapshot("status_after_kill", &status.stderr, &world);
        }
        world.release(holder);
    }
}

#[test]
fn after_a_kill_during_the_swap_resume_allows_the_refused_connections_first() {
    let world = World::new();
    for phase in [Phase::EndingSessions, Phase::Renaming] {
        let (_, resumed, holder) = killed_at(&world, phase, "resume");
        // The swap was interrupted and is not idempotent: resume asks for a decision, but
        // only after the outage it found was ended.
        assert_eq!(resumed.code, 3, "{resumed}");
        assert!(resumed.stderr.starts_with("repaired: step `swap` of run "), "{resumed}");
        if matches!(phase, Phase::Renaming) {
            snapshot("resume_after_kill", &resumed.stderr, &world);
        }
        world.release(holder);
        let next = printed_command(&resumed.stderr).unwrap_or_else(|| panic!("no next: line\n{resumed}"));
        let environment: Vec<(&str, String)> = world.postgres.env();
        let environment: Vec<(&str, &str)> =
            environment.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let finished = run_printed(&next, world.sandbox.root.path(), &environment);
        assert!(finished.status.success(), "`{next}`: {}", support::sandbox::text(&finished));
        assert_eq!(world.client_reads("tododb"), "replacement");
    }
}

#[test]
fn a_signal_during_the_swap_back_of_undo_allows_connections_again() {
    let world = World::new();
    for signal in ["INT", "TERM", "HUP"] {
        world.reset();
        let before = world.sandbox.run_ids().len();
        let mut run = world.spawn(&["run", "swap-undo.yaml", "--yes"], "run");
        let swapped = wait_until(Duration::from_secs(30), || {
            world.sandbox.run_ids().len() > before
                && world
                    .events(&world.last_run())
                    .iter()
                    .any(|event| event.starts_with("step_succeeded swap"))
        });
        assert!(swapped, "the swap never happened: {}", world.sandbox.text("run.stderr"));
        // The swap back renames the live name away: it waits for this lock on it.
        let holder = world.hold(Phase::Renaming, "tododb");
        std::fs::write(world.sandbox.path("go"), "").unwrap();
        let waiting = wait_until(Duration::from_secs(30), || world.waits_at(Phase::Renaming, "tododb"));
        assert!(waiting, "the swap back never waited: {}", world.sandbox.text("run.stderr"));
        send_signal(signal, &run.id().to_string());
        let status = wait_bounded(&mut run, Duration::from_secs(30));
        let stderr = world.sandbox.text("run.stderr");
        assert_eq!(status.and_then(|status| status.code()), Some(130), "{signal}: {stderr}");
        assert_eq!(world.refused(), Vec::<String>::new(), "{signal}: {stderr}");
        // Nothing was swapped back: the live name still holds the replacement.
        assert_eq!(world.client_reads("tododb"), "replacement", "{signal}");
        let events = world.events(&world.last_run());
        let undo =
            events.iter().find(|event| event.starts_with("undo_finished swap")).cloned().unwrap_or_default();
        assert!(
            undo.contains("interrupted by the operator")
                && undo.contains("stopped during the swap back")
                && undo.contains("connections to both are allowed again"),
            "{events:#?}"
        );
        if signal == "HUP" {
            snapshot("undo_HUP", &stderr, &world);
        }
        world.release(holder);
    }
}
