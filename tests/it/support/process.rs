//! What every server here needs: free ports, finding the tools, bounded waits, child
//! processes that die with their owner, and log tails for panic messages.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The address every test server listens on.
pub const LOOPBACK: &str = "127.0.0.1";

/// How many fresh ports a server is tried on when the one picked was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// Where `scripts/install-test-deps.sh` puts the tools that are not Debian packages.
pub fn tools_directory() -> PathBuf {
    if let Some(directory) = std::env::var_os("DR_PLAN_TEST_TOOLS") {
        return PathBuf::from(directory);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/dr-plan-test-tools")
}

/// Finds `name` on PATH, then among the tools `scripts/install-test-deps.sh` installs;
/// panics saying how to get it.
pub fn find_tool(name: &str, how_to_install: &str) -> PathBuf {
    let tools = tools_directory();
    let path_directories = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let candidates = path_directories.into_iter().chain([tools.join("bin"), tools.join("venv/bin")]);
    for directory in candidates {
        let candidate = directory.join(name);
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!(
        "`{name}` was not found on PATH nor under {tools}/bin or {tools}/venv/bin; \
         run scripts/install-test-deps.sh (or scripts/test.sh, which runs it), or {how_to_install}",
        tools = tools.display()
    );
}

fn is_executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|metadata| metadata.is_file() && metadata.mode() & 0o111 != 0)
}

/// A port that was free a moment ago. Servers that take a port number (rather than a
/// bound socket) can lose it to another test in between; [`start_on_free_port`] retries.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|error| panic!("cannot bind a port on {LOOPBACK}: {error}"));
    listener.local_addr().unwrap_or_else(|error| panic!("cannot read the bound port: {error}")).port()
}

/// Whether something accepts TCP connections on the loopback port.
pub fn port_answers(port: u16) -> bool {
    let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into();
    TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
}

/// Why a server did not come up on a port.
pub enum StartFailure {
    /// Another process took the port between [`free_port`] and the server binding it.
    PortTaken(String),
    /// Anything else: retrying on another port would not help.
    Other(String),
}

impl StartFailure {
    /// Sorts a failure by its log: servers all say "already in use" when they lose a port.
    pub fn from_log(message: String) -> Self {
        if message.contains("already in use") { Self::PortTaken(message) } else { Self::Other(message) }
    }
}

/// Starts a server on a free port, trying another port when the one picked was taken.
pub fn start_on_free_port<Server>(
    what: &str,
    mut start: impl FnMut(u16) -> Result<Server, StartFailure>,
) -> Server {
    let mut last_failure = String::new();
    for _ in 0..PORT_ATTEMPTS {
        match start(free_port()) {
            Ok(server) => return server,
            Err(StartFailure::PortTaken(message)) => last_failure = message,
            Err(StartFailure::Other(message)) => panic!("{what} did not start: {message}"),
        }
    }
    panic!("{what} did not start on {PORT_ATTEMPTS} different ports: {last_failure}")
}

/// Polls `ready` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `kill -s SIGNAL -- TARGET`: TARGET is a pid, or `-PGID` for a process group.
pub fn send_signal(signal: &str, target: &str) {
    let status = Command::new("kill").args(["-s", signal, "--", target]).status().expect("kill runs");
    assert!(status.success(), "kill -s {signal} -- {target} failed");
}

/// The last `lines` lines of a log file, or a note saying why there are none.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            format!("last lines of {}:\n{}", path.display(), all[start..].join("\n"))
        }
        Err(error) => format!("(no log at {}: {error})", path.display()),
    }
}

/// Opens (creating) a log file that a child's stdout and stderr both append to.
pub fn log_file(path: &Path) -> (Stdio, Stdio) {
    let file = File::options()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|error| panic!("cannot open log file {}: {error}", path.display()));
    let second =
        file.try_clone().unwrap_or_else(|error| panic!("cannot share log file {}: {error}", path.display()));
    (Stdio::from(file), Stdio::from(second))
}

/// Whether this process runs as root, judged by the owner of a directory it just made.
/// (Asking libc would need `unsafe`, which the crate forbids.)
pub fn running_as_root(directory_it_created: &Path) -> bool {
    directory_it_created.metadata().is_ok_and(|metadata| metadata.uid() == 0)
}

/// A temporary directory named for what it holds; removed when dropped.
pub fn temporary_directory(what: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("dr-plan-{what}-"))
        .tempdir()
        .unwrap_or_else(|error| panic!("cannot create a temporary directory for {what}: {error}"))
}

/// Runs a command to completion within `timeout`, feeding it `stdin`; kills it and
/// panics if it takes longer. Its output is returned whatever its exit status.
pub fn run_bounded(command: &mut Command, stdin: Option<Vec<u8>>, timeout: Duration, what: &str) -> Output {
    command
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child =
        command.spawn().unwrap_or_else(|error| panic!("cannot run {what} ({command:?}): {error}"));
    // Pipes are drained on threads so a child writing a lot never blocks on a full pipe.
    let writer = child.stdin.take().zip(stdin).map(|(mut pipe, bytes)| {
        thread::spawn(move || {
            // A child that exits without reading its input is reported by its status.
            let _ = pipe.write_all(&bytes);
        })
    });
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_bounded(&mut child, timeout)
        .unwrap_or_else(|| panic!("{what} did not finish within {timeout:?} and was killed ({command:?})"));
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    Output { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Waits for a child until `timeout`; kills it and returns `None` when it is late.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Formats a finished command's stderr (and stdout, which some tools use for errors).
pub fn describe_output(output: &Output) -> String {
    format!(
        "{}\nstderr:\n{}\nstdout:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim_end(),
        String::from_utf8_lossy(&output.stdout).trim_end()
    )
}

/// A server that runs as our child process, with its log in a file; killed on drop.
pub struct ServerProcess {
    child: Child,
    what: &'static str,
    log: PathBuf,
}

impl ServerProcess {
    /// Spawns `command` with stdout and stderr appended to `log`.
    pub fn spawn(what: &'static str, command: &mut Command, log: &Path) -> Self {
        let (stdout, stderr) = log_file(log);
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {what} ({command:?}): {error}"));
        Self { child, what, log: log.to_path_buf() }
    }

    /// Waits until the server's log contains `ready_line` (which it writes once it has
    /// bound its port) and `ready` holds. The log line makes sure the server answering
    /// is ours, not another test's that took the port first. Fails when the process
    /// exits first (sorted by its log, so a lost port is retried) or when `timeout`
    /// passes.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        ready_line: &str,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), StartFailure> {
        let mut exited = None;
        let became_ready = wait_until(timeout, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                exited = Some(status);
                return true;
            }
            std::fs::read(&self.log).is_ok_and(|log| String::from_utf8_lossy(&log).contains(ready_line))
                && ready()
        });
        if let Some(status) = exited {
            return Err(StartFailure::from_log(format!(
                "{} exited with {status} before it was ready; {}",
                self.what,
                log_tail(&self.log, 30)
            )));
        }
        if became_ready {
            Ok(())
        } else {
            Err(StartFailure::Other(format!(
                "{} did not log {ready_line:?} and answer within {timeout:?}; {}",
                self.what,
                log_tail(&self.log, 30)
            )))
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // SIGKILL: the data lives in a temporary directory that is deleted next, so
        // there is nothing to shut down cleanly for.
        let _ = self.child.kill();
        let _ = wait_bounded(&mut self.child, Duration::from_secs(10));
    }
}
