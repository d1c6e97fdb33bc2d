//! A throwaway PostgreSQL cluster: `initdb` into a temporary directory, `pg_ctl start`
//! on a free loopback port with trust authentication and no fsync.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{
    LOOPBACK, StartFailure, describe_output, log_tail, run_bounded, running_as_root, start_on_free_port,
    temporary_directory, wait_until,
};

/// The superuser `initdb` creates; tests connect as it.
const SUPERUSER: &str = "postgres";
/// The operating-system user PostgreSQL runs as when the tests run as root, because
/// `postgres` refuses to start as root.
const SYSTEM_USER: &str = "postgres";
const INSTALL_HINT: &str = "run scripts/install-test-deps.sh (it installs the Debian packages \
     `postgresql` and `postgresql-client`), or set DR_PLAN_TEST_POSTGRES_BIN to a directory \
     holding initdb, pg_ctl, pg_isready and psql";

/// A running PostgreSQL server on 127.0.0.1, stopped and deleted on drop.
pub struct Postgres {
    port: u16,
    binaries: PathBuf,
    /// Set when the tests run as root: server commands then run as [`SYSTEM_USER`].
    run_as_system_user: bool,
    log: PathBuf,
    /// Holds `data/`, `socket/` and the logs; dropped (deleted) after the server stops.
    directory: tempfile::TempDir,
}

impl Postgres {
    /// Creates a cluster and starts it; panics with the server log when it does not
    /// come up.
    pub fn start() -> Self {
        let binaries = binaries_directory();
        let directory = temporary_directory("postgres");
        let run_as_system_user = running_as_root(directory.path());
        if run_as_system_user {
            give_to_system_user(directory.path());
        }
        let socket_directory = directory.path().join("socket");
        let mut server = Self {
            port: 0,
            binaries,
            run_as_system_user,
            log: directory.path().join("postgres.log"),
            directory,
        };
        server.initialize_cluster(&socket_directory);
        let (port, log) = start_on_free_port("PostgreSQL", |port| server.start_on(port));
        server.port = port;
        server.log = log;
        server.wait_until_accepting();
        server
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq connection URL for `database`, as the superuser, without a password.
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://{SUPERUSER}@{LOOPBACK}:{}/{}", self.port, percent_encode(database))
    }

    /// The libpq variables that point a child process (psql, pg_dump, pg_restore, …)
    /// at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PGHOST", LOOPBACK.to_owned()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", SUPERUSER.to_owned()),
        ]
    }

    /// The directory holding this PostgreSQL's programs (`pg_dump`, `pg_restore`, …).
    pub fn binaries(&self) -> &Path {
        &self.binaries
    }

    /// Runs `sql` in `database` with the psql CLI (stopping at the first error) and
    /// returns what it printed: unaligned rows without headers, `|` between columns,
    /// without the trailing newline. Panics with psql's stderr when a statement fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let mut command = Command::new(self.binaries.join("psql"));
        command
            .args(["--no-psqlrc", "--quiet", "--no-align", "--tuples-only"])
            .args(["--set", "ON_ERROR_STOP=1", "--file", "-"])
            .args(["--host", LOOPBACK, "--username", SUPERUSER])
            .args(["--port", &self.port.to_string(), "--dbname", database])
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE");
        let output =
            run_bounded(&mut command, Some(sql.as_bytes().to_vec()), Duration::from_secs(60), "psql");
        assert!(
            output.status.success(),
            "psql failed in database {database:?} on port {} running:\n{sql}\n{}",
            self.port,
            describe_output(&output)
        );
        String::from_utf8_lossy(&output.stdout).trim_end_matches('\n').to_owned()
    }

    /// Creates an empty database owned by the superuser.
    pub fn create_database(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {}", quote_identifier(name)));
    }

    fn initialize_cluster(&self, socket_directory: &Path) {
        let mut command = self.server_command("initdb");
        command.args(["--pgdata", "data", "--auth", "trust", "--no-sync"]).args([
            "--username",
            SUPERUSER,
            "--encoding",
            "UTF8",
            "--no-locale",
        ]);
        let output = run_bounded(&mut command, None, Duration::from_secs(120), "initdb");
        assert!(
            output.status.success(),
            "initdb failed in {} (as root, PostgreSQL runs as user `{SYSTEM_USER}`, who \
             must be able to enter every parent of that directory: check TMPDIR): {}",
            self.directory.path().display(),
            describe_output(&output)
        );
        std::fs::create_dir(socket_directory)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", socket_directory.display()));
        if self.run_as_system_user {
            give_to_system_user(socket_directory);
        }
    }

    /// One `pg_ctl start` on `port`, with its own log so a failure is judged by what
    /// this attempt wrote.
    fn start_on(&self, port: u16) -> Result<(u16, PathBuf), StartFailure> {
        let log = self.directory.path().join(format!("postgres-{port}.log"));
        let server_options = format!(
            "-c listen_addresses={LOOPBACK} -p {port} -k {} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off",
            self.directory.path().join("socket").display()
        );
        let mut command = self.server_command("pg_ctl");
        command
            .args(["start", "--pgdata", "data", "--wait", "--timeout", "60"])
            .arg("--log")
            .arg(&log)
            .args(["-o", &server_options]);
        let output = run_bounded(&mut command, None, Duration::from_secs(90), "pg_ctl start");
        if output.status.success() {
            Ok((port, log))
        } else {
            Err(StartFailure::from_log(format!(
                "pg_ctl start: {}\n{}",
                describe_output(&output),
                log_tail(&log, 30)
            )))
        }
    }

    fn wait_until_accepting(&self) {
        let timeout = Duration::from_secs(30);
        let accepting = wait_until(timeout, || {
            let mut command = Command::new(self.binaries.join("pg_isready"));
            command.args(["--host", LOOPBACK, "--port", &self.port.to_string()]).args([
                "--username",
                SUPERUSER,
                "--dbname",
                "postgres",
                "--timeout",
                "1",
            ]);
            run_bounded(&mut command, None, Duration::from_secs(10), "pg_isready").status.success()
        });
        assert!(
            accepting,
            "PostgreSQL on port {} did not accept connections within {timeout:?}; {}",
            self.port,
            log_tail(&self.log, 30)
        );
    }

    /// A command for one of the server programs, run as [`SYSTEM_USER`] when we are
    /// root, from the temporary directory (which that user can enter).
    fn server_command(&self, program: &str) -> Command {
        let program = self.binaries.join(program);
        let mut command = if self.run_as_system_user {
            let mut command = Command::new("runuser");
            command.args(["-u", SYSTEM_USER, "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.current_dir(self.directory.path());
        command
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.directory.path().join("data");
        if !data.join("postmaster.pid").exists() {
            return;
        }
        let mut command = self.server_command("pg_ctl");
        command.args(["stop", "--pgdata", "data", "--mode", "immediate", "--wait"]);
        let stopped =
            run_bounded(&mut command, None, Duration::from_secs(30), "pg_ctl stop").status.success();
        if !stopped {
            kill_postmaster(&data);
        }
    }
}

/// Last resort when `pg_ctl stop` failed: SIGKILL the postmaster named in its pid file.
fn kill_postmaster(data: &Path) {
    let Ok(pid_file) = std::fs::read_to_string(data.join("postmaster.pid")) else {
        return;
    };
    if let Some(pid) = pid_file.lines().next().filter(|line| !line.is_empty()) {
        let _ = run_bounded(Command::new("kill").args(["-KILL", pid]), None, Duration::from_secs(10), "kill");
    }
}

/// `DR_PLAN_TEST_POSTGRES_BIN`, else the newest `/usr/lib/postgresql/<version>/bin`.
fn binaries_directory() -> PathBuf {
    if let Some(directory) = std::env::var_os("DR_PLAN_TEST_POSTGRES_BIN") {
        return PathBuf::from(directory);
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let binaries = entry.path().join("bin");
            binaries.join("initdb").exists().then_some((version, binaries))
        })
        .max_by_key(|(version, _)| *version);
    match newest {
        Some((_, binaries)) => binaries,
        None => panic!("no PostgreSQL server found under {}/<version>/bin; {INSTALL_HINT}", root.display()),
    }
}

/// Hands a directory we created to [`SYSTEM_USER`] so the server can write in it.
fn give_to_system_user(directory: &Path) {
    let id = |flag: &str| -> u32 {
        let output =
            run_bounded(Command::new("id").args([flag, SYSTEM_USER]), None, Duration::from_secs(10), "id");
        assert!(
            output.status.success(),
            "there is no `{SYSTEM_USER}` user to run PostgreSQL as (it refuses to run as \
             root); {INSTALL_HINT}. {}",
            describe_output(&output)
        );
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|error| panic!("`id {flag} {SYSTEM_USER}` printed no number: {error}"))
    };
    std::os::unix::fs::chown(directory, Some(id("-u")), Some(id("-g")))
        .unwrap_or_else(|error| panic!("cannot give {} to user {SYSTEM_USER}: {error}", directory.display()));
}

/// Quotes an SQL identifier: double quotes around it, inner double quotes doubled.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Percent-encodes everything but unreserved URL characters, for a URL path segment.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}
