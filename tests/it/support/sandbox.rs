//! An operator's working directory: plan fixtures copied in, `dr-plan` run there with a
//! state directory of its own and no terminal, its journal read back, and the outputs
//! shown whole (or nearly) when an assertion fails.
//!
//! The state directory is `state` inside the sandbox, passed by absolute path, or, with
//! [`Sandbox::with_relative_state`], passed as the relative name an operator standing in
//! the sandbox would type (the hints tests need one that is neither absolute nor the
//! default).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use dr_plan::engine::journal::{self, Record, RunState};
use serde_json::Value as Json;

use super::process::{temporary_directory, wait_until};

/// The dr-plan binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_dr-plan");

/// How much of each stream a [`Finished`] shows: a long secret's output would bury the
/// assertion message.
const SHOWN_CHARACTERS: usize = 4000;

/// A temporary directory holding copies of fixtures, a state directory and the files
/// the plans' commands write; removed on drop.
pub struct Sandbox {
    /// The directory.
    pub root: tempfile::TempDir,
    /// What `--state-dir` is given: absolute, or relative to [`Sandbox::root`].
    state: String,
    /// The folders of `tests/fixtures/` that [`Sandbox::plan`] copies from.
    fixtures: Vec<&'static str>,
}

/// How a `dr-plan` process ended.
pub struct Finished {
    /// The exit code (-1 when a signal ended it).
    pub code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl std::fmt::Display for Finished {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |text: &str| {
            let mut shown: String = text.chars().take(SHOWN_CHARACTERS).collect();
            if shown.len() < text.len() {
                shown.push_str("… [cut]\n");
            }
            shown
        };
        write!(
            formatter,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code,
            shown(&self.stdout),
            shown(&self.stderr)
        )
    }
}

impl Sandbox {
    /// A sandbox whose plans come from the folders `tests/fixtures/{fixtures}` (the first
    /// that has the file), with its state directory passed by absolute path.
    #[must_use]
    pub fn new(fixtures: &[&'static str]) -> Sandbox {
        let root = temporary_directory("sandbox");
        let state = root.path().join("state").display().to_string();
        Sandbox { root, state, fixtures: fixtures.to_vec() }
    }

    /// The same sandbox, with its state directory `name` given relative to the sandbox,
    /// as typed by an operator working there.
    #[must_use]
    pub fn with_relative_state(self, name: &str) -> Sandbox {
        Sandbox { state: name.to_owned(), ..self }
    }

    /// A path in the sandbox.
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// The state directory (absolute).
    #[must_use]
    pub fn state_dir(&self) -> PathBuf {
        self.root.path().join(&self.state)
    }

    /// Copies a fixture into the sandbox and returns its file name, which is how the
    /// commands (run from the sandbox) refer to it.
    pub fn plan(&self, fixture: &str) -> String {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let source = self
            .fixtures
            .iter()
            .map(|folder| directory.join(folder).join(fixture))
            .find(|path| path.exists())
            .unwrap_or_else(|| panic!("no fixture {fixture} in tests/fixtures/{:?}", self.fixtures));
        std::fs::copy(&source, self.path(fixture))
            .unwrap_or_else(|error| panic!("cannot copy {}: {error}", source.display()));
        fixture.to_owned()
    }

    /// `NAME=<absolute path of file in the sandbox>`, for `--var`.
    #[must_use]
    pub fn var_path(&self, name: &str, file: &str) -> String {
        format!("{name}={}", self.path(file).display())
    }

    /// `dr-plan ARGUMENTS --state-dir STATE` in the sandbox, stdin closed, no colour.
    #[must_use]
    pub fn command(&self, arguments: &[&str]) -> Command {
        let mut command = Command::new(BINARY);
        command
            .current_dir(self.root.path())
            .args(arguments)
            .args(["--state-dir", &self.state])
            .stdin(Stdio::null())
            .env("NO_COLOR", "1");
        command
    }

    /// Runs [`Sandbox::command`] to its end.
    #[must_use]
    pub fn dr_plan(&self, arguments: &[&str]) -> Finished {
        finish(self.command(arguments))
    }

    /// Starts [`Sandbox::command`] in the background, its output kept in the files
    /// `NAME.stdout` and `NAME.stderr` of the sandbox.
    #[must_use]
    pub fn spawn(&self, arguments: &[&str], name: &str) -> Child {
        self.spawn_command(self.command(arguments), name)
    }

    /// Starts `command` (a [`Sandbox::command`] with more environment) in the
    /// background, its output kept in the files `NAME.stdout` and `NAME.stderr`.
    #[must_use]
    pub fn spawn_command(&self, mut command: Command, name: &str) -> Child {
        let stdout = std::fs::File::create(self.path(&format!("{name}.stdout"))).expect("stdout file");
        let stderr = std::fs::File::create(self.path(&format!("{name}.stderr"))).expect("stderr file");
        command.stdout(stdout).stderr(stderr).stdin(Stdio::null()).spawn().expect("dr-plan starts")
    }

    /// The ids of the runs under the state directory, sorted.
    #[must_use]
    pub fn run_ids(&self) -> Vec<String> {
        run_ids(&self.state_dir())
    }

    /// The one run under the state directory.
    #[must_use]
    pub fn only_run(&self) -> String {
        let ids = self.run_ids();
        assert_eq!(ids.len(), 1, "expected exactly one run, found {ids:?}");
        ids[0].clone()
    }

    /// The journal file of `run_id`.
    #[must_use]
    pub fn journal_path(&self, run_id: &str) -> PathBuf {
        journal::journal_path(&self.state_dir(), run_id)
    }

    /// The journal of `run_id`, as dr-plan reads it.
    #[must_use]
    pub fn records(&self, run_id: &str) -> Vec<Record> {
        journal::read(&self.journal_path(run_id)).unwrap_or_else(|error| panic!("journal: {error}"))
    }

    /// The journal of `run_id`, replayed.
    #[must_use]
    pub fn state(&self, run_id: &str) -> RunState {
        RunState::replay(self.records(run_id)).unwrap_or_else(|error| panic!("replay: {error}"))
    }

    /// The journal of `run_id` as JSON, one value a line (none when there is no
    /// journal yet): for tests that must not depend on the crate's types.
    #[must_use]
    pub fn journal(&self, run_id: &str) -> Vec<Json> {
        journal_lines(&self.journal_path(run_id))
    }

    /// Waits up to `timeout` until the journal of a run says `step` started; returns
    /// whether it did.
    #[must_use]
    pub fn wait_step_started(&self, step: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.run_ids().iter().any(|id| {
                self.journal(id)
                    .iter()
                    .any(|record| record["event"] == "step_started" && record["step"] == step)
            })
        })
    }

    /// A file of the sandbox as text (empty when it is not there).
    #[must_use]
    pub fn text(&self, file: &str) -> String {
        std::fs::read_to_string(self.path(file)).unwrap_or_default()
    }

    /// The lines of a file of the sandbox.
    #[must_use]
    pub fn lines(&self, file: &str) -> Vec<String> {
        self.text(file).lines().map(str::to_owned).collect()
    }
}

/// Runs `command` to its end and keeps what it printed.
pub fn finish(mut command: Command) -> Finished {
    let output = command.output().expect("dr-plan starts");
    Finished {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The ids of the runs under the state directory `state_dir`, sorted.
#[must_use]
pub fn run_ids(state_dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(state_dir.join("runs"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// The journal of the one run under `state_dir`, as JSON lines.
#[must_use]
pub fn only_journal(state_dir: &Path) -> Vec<Json> {
    let ids = run_ids(state_dir);
    assert_eq!(ids.len(), 1, "expected exactly one run under {}, found {ids:?}", state_dir.display());
    let path = journal::journal_path(state_dir, &ids[0]);
    assert!(path.is_file(), "no journal at {}", path.display());
    journal_lines(&path)
}

/// A journal file as JSON, one value a line; none when the file is not there.
fn journal_lines(path: &Path) -> Vec<Json> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{path:?}: {line}: {error}")))
        .collect()
}

/// A shipped plan (`plans/NAME`) with its backup key file (`/etc/backup/encryption.key`)
/// replaced by `key_file`, as text.
#[must_use]
pub fn shipped_plan(name: &str, key_file: &Path) -> String {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans").join(name);
    let text = std::fs::read_to_string(&source).unwrap_or_else(|error| {
        panic!("cannot read {}: {error} (the shipped plans come with the plans branch)", source.display())
    });
    assert!(
        text.contains("/etc/backup/encryption.key"),
        "{name} reads the key from /etc/backup/encryption.key"
    );
    text.replace("/etc/backup/encryption.key", &key_file.display().to_string())
}

/// Every file under `directory`, recursively.
#[must_use]
pub fn files_under(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory).into_iter().flatten().filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// A finished command's exit code and both streams, for assertion messages.
#[must_use]
pub fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
