//! An operator's working directory: plan fixtures copied in, `dr-plan` run there with
//! a state directory of its own and no terminal, and the outputs shown whole when an
//! assertion fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temporary working directory.
pub struct Desk {
    /// The directory (removed on drop).
    pub root: tempfile::TempDir,
    /// The `--state-dir` every command gets, relative to the root.
    pub state: &'static str,
}

impl Desk {
    /// A directory holding `plans`, each found in one of the fixture folders
    /// `tests/fixtures/{folders}`.
    #[must_use]
    pub fn with(folders: &[&str], plans: &[&str], state: &'static str) -> Desk {
        let root = tempfile::tempdir().expect("a temporary directory");
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for plan in plans {
            let source = folders
                .iter()
                .map(|folder| fixtures.join(folder).join(plan))
                .find(|path| path.exists())
                .unwrap_or_else(|| panic!("no fixture {plan} in {folders:?}"));
            std::fs::copy(source, root.path().join(plan)).expect("copy the plan");
        }
        Desk { root, state }
    }

    /// A path in the directory.
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// `dr-plan ARGUMENTS --state-dir STATE` in the directory, without a terminal.
    #[must_use]
    pub fn command(&self, arguments: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dr-plan"));
        command
            .current_dir(self.root.path())
            .args(arguments)
            .args(["--state-dir", self.state])
            .stdin(Stdio::null())
            .env("NO_COLOR", "1");
        command
    }

    /// Runs [`Desk::command`] to the end.
    #[must_use]
    pub fn dr_plan(&self, arguments: &[&str]) -> Output {
        self.command(arguments).output().expect("dr-plan runs")
    }

    /// The ids of the runs under the state directory, sorted.
    #[must_use]
    pub fn runs(&self) -> Vec<String> {
        let mut runs: Vec<String> = std::fs::read_dir(self.path(self.state).join("runs"))
            .map(|entries| {
                entries
                    .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        runs.sort();
        runs
    }

    /// The one run under the state directory.
    #[must_use]
    pub fn only_run(&self) -> String {
        let mut runs = self.runs();
        assert_eq!(runs.len(), 1, "{runs:?}");
        runs.remove(0)
    }
}

/// An output whole, for assertion messages.
#[must_use]
pub fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
