//! A throwaway Redis: `redis-server` on a free loopback port, without persistence.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::process::{
    LOOPBACK, ServerProcess, describe_output, find_tool, run_bounded, start_on_free_port, temporary_directory,
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

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{LOOPBACK}:{}", self.port)
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
