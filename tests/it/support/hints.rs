//! The commands dr-plan prints as `next:` hints, taken and run exactly as an operator
//! pastes them into a shell.

use std::path::Path;
use std::process::{Command, Output};

/// The command of the last `next: `...`` line in `text`.
#[must_use]
pub fn printed_command(text: &str) -> Option<String> {
    text.lines().rev().find_map(|line| {
        let rest = line.split_once("next: `")?.1;
        Some(rest.split_once('`')?.0.to_owned())
    })
}

/// Runs `command_line` with `sh -c` in `directory`, with the dr-plan under test first on
/// `PATH` and no terminal, as an operator pasting it would.
#[must_use]
pub fn run_printed(command_line: &str, directory: &Path, environment: &[(&str, &str)]) -> Output {
    let binary = Path::new(env!("CARGO_BIN_EXE_dr-plan"));
    let path = std::env::var("PATH").unwrap_or_default();
    let bin_dir = binary.parent().expect("the binary's directory").display().to_string();
    Command::new("sh")
        .arg("-c")
        .arg(command_line)
        .current_dir(directory)
        .env("PATH", format!("{bin_dir}:{path}"))
        .env("NO_COLOR", "1")
        .envs(environment.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sh runs")
}
