//! The commands dr-plan prints as `next:` hints, taken and run exactly as an operator
//! pastes them into a shell.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::process::run_bounded;

/// How long a pasted command may take (a whole resume of a test plan, on a debug build).
const PASTED_COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// The command of the last `next: `...`` line in `text`.
#[must_use]
pub fn printed_command(text: &str) -> Option<String> {
    text.lines().rev().find_map(|line| {
        let rest = line.split_once("next: `")?.1;
        Some(rest.split_once('`')?.0.to_owned())
    })
}

/// Runs `command_line` with `sh -c` in `directory`, with the dr-plan under test first on
/// `PATH` and no terminal, as an operator pasting it would; panics if it takes longer
/// than two minutes.
#[must_use]
pub fn run_printed(command_line: &str, directory: &Path, environment: &[(&str, &str)]) -> Output {
    let binary = Path::new(env!("CARGO_BIN_EXE_dr-plan"));
    let path = std::env::var("PATH").unwrap_or_default();
    let bin_dir = binary.parent().expect("the binary's directory").display().to_string();
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(command_line)
        .current_dir(directory)
        .env("PATH", format!("{bin_dir}:{path}"))
        .env("NO_COLOR", "1")
        .envs(environment.iter().copied());
    run_bounded(&mut shell, None, PASTED_COMMAND_LIMIT, command_line)
}
