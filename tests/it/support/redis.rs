//! Throwaway Redis servers: [`Redis`], `redis-server` on a free loopback port without
//! persistence, and [`TargetRedis`], one in a data directory of its own for
//! `redis.restore` to stop, replace the data of and start again.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::process::{
    LOOPBACK, ServerProcess, describe_output, find_tool, free_port, run_bounded, start_on_free_port,
    temporary_directory, wait_until,
};

const INSTALL_HINT: &str = "apt-get install redis-server";

/// A running redis-server on 127.0.0.1, killed and deleted on drop.
pub struct Redis {
    port: u16,
    client: PathBuf,
    _process: ServerProcess,
    _directory: tempfile::TempDir,
}

impl Redis {
    /// Starts redis-server with saving and the append-only file off.
    pub fn start() -> Self {
        let server = find_tool("redis-server", INSTALL_HINT);
        let client = find_tool("redis-cli", INSTALL_HINT);
        let directory = temporary_directory("redis");
        let (port, process) = start_on_free_port("redis-server", |port| {
            let log = directory.path().join(format!("redis-{port}.log"));
            let mut command = Command::new(&server);
            command
                .args(["--port", &port.to_string(), "--bind", LOOPBACK])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(directory.path());
            let mut process = ServerProcess::spawn("redis-server", &mut command, &log);
            process
                .wait_ready(Duration::from_secs(30), "Ready to accept connections", || answers_ping(port))?;
            Ok((port, process))
        });
        Self { port, client, _process: process, _directory: directory }
    }

    /// An RDB made by a real redis-server (`SAVE`): `user:1` = ada, `user:2` = grace and
    /// `session:9` = active in database 0, `queue:jobs` = 3 in database 1.
    pub fn sample_rdb() -> Vec<u8> {
        let source = Self::start();
        for (key, value) in [("user:1", "ada"), ("user:2", "grace"), ("session:9", "active")] {
            assert_eq!(source.cli(&["SET", key, value]), "OK");
        }
        assert_eq!(source.cli(&["-n", "1", "SET", "queue:jobs", "3"]), "OK");
        assert_eq!(source.cli(&["SAVE"]), "OK");
        let directory = source.cli(&["CONFIG", "GET", "dir"]);
        let directory = directory.lines().nth(1).expect("CONFIG GET dir answers the directory");
        std::fs::read(std::path::Path::new(directory).join("dump.rdb")).expect("the saved RDB")
    }

    /// The TCP port redis-server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `redis-cli ARGS…` against this server and returns its output without the
    /// trailing newline. redis-cli exits 0 on a Redis error reply and prints it (`ERR …`)
    /// as output, so callers check the text.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new(&self.client);
        command.args(["-h", LOOPBACK, "-p", &self.port.to_string()]).args(args);
        let output = run_bounded(&mut command, None, Duration::from_secs(30), "redis-cli");
        assert!(output.status.success(), "redis-cli {args:?} failed: {}", describe_output(&output));
        String::from_utf8_lossy(&output.stdout).trim_end_matches('\n').to_owned()
    }
}

/// Sends an inline `PING` and expects `+PONG`: the server is up and serving.
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((LOOPBACK, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0_u8; 7];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// A redis-server the test starts in a directory it owns, as the target of
/// `redis.restore`. The step under test stops it and starts another on the same port
/// with [`TargetRedis::start_argv`]; dropping this stops whatever serves the port.
pub struct TargetRedis {
    /// The loopback port it listens on.
    pub port: u16,
    directory: tempfile::TempDir,
    password: Option<String>,
    first: Child,
}

impl TargetRedis {
    /// Starts redis-server with saving and the append-only file off, with `password`
    /// (`requirepass`) when given, and waits until it answers `PING`.
    pub fn start(password: Option<&str>) -> Self {
        let directory = temporary_directory("redis-target");
        let port = free_port();
        let password = password.map(str::to_owned);
        let log = std::fs::File::create(directory.path().join("first.log")).expect("a log");
        let first = Command::new("redis-server")
            .args(server_arguments(port, directory.path(), password.as_deref()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("redis-server starts (scripts/install-test-deps.sh installs it)");
        let target = Self { port, directory, password, first };
        assert!(
            wait_until(Duration::from_secs(20), || target.try_cli(&["PING"]).as_deref() == Some("PONG")),
            "redis-server on port {port} did not answer PING"
        );
        target
    }

    /// The command that starts this server: what the plan gives as `start`.
    pub fn start_argv(&self) -> Vec<String> {
        let mut argv = vec!["redis-server".to_owned()];
        argv.extend(server_arguments(self.port, self.dir(), self.password.as_deref()));
        argv
    }

    /// `redis://[:PASSWORD@]127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@{LOOPBACK}:{}", self.port),
            None => format!("redis://{LOOPBACK}:{}", self.port),
        }
    }

    /// Its data directory (`dump.rdb` goes there).
    pub fn dir(&self) -> &Path {
        self.directory.path()
    }

    /// `redis-cli ARGUMENTS…` against it; `None` when it cannot connect or fails.
    pub fn try_cli(&self, arguments: &[&str]) -> Option<String> {
        let mut command = Command::new("redis-cli");
        command.args(["-h", LOOPBACK, "-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            // redis-cli reads the password from its environment, not its command line.
            command.env("REDISCLI_AUTH", password);
        }
        let output = command.args(arguments).stderr(Stdio::null()).output().ok()?;
        let text = String::from_utf8_lossy(&output.stdout).trim_end().to_owned();
        (output.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }

    /// [`TargetRedis::try_cli`], which must succeed.
    pub fn cli(&self, arguments: &[&str]) -> String {
        self.try_cli(arguments)
            .unwrap_or_else(|| panic!("redis-cli {arguments:?} on port {} failed", self.port))
    }
}

impl Drop for TargetRedis {
    fn drop(&mut self) {
        // Whatever serves the port now (the step's restarted server, in its own process
        // group) is told to stop; then the first server is reaped.
        let _ = self.try_cli(&["SHUTDOWN", "NOSAVE"]);
        wait_until(Duration::from_secs(10), || TcpStream::connect((LOOPBACK, self.port)).is_err());
        let _ = self.first.kill();
        let _ = self.first.wait();
    }
}

/// Saving and the append-only file off, as a restore needs; the data directory is `dir`.
fn server_arguments(port: u16, dir: &Path, password: Option<&str>) -> Vec<String> {
    let mut arguments: Vec<String> =
        ["--port", &port.to_string(), "--bind", LOOPBACK, "--dir", &dir.display().to_string()]
            .iter()
            .chain(&["--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no"])
            .map(|text| (*text).to_owned())
            .collect();
    if let Some(password) = password {
        arguments.extend(["--requirepass".to_owned(), password.to_owned()]);
    }
    arguments
}
