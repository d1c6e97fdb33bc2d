//! `dr-plan lint`: validate every plan under the given paths, add the DR-safety
//! rules ([`crate::lint`]), print in the chosen format.

use std::path::PathBuf;

use crate::cli::{LintFormat, plan_files};
use crate::exit_code;
use crate::lint::{self, Summary, format};

/// Runs lint; returns the exit code (2 when an error, or a warning under `--deny warnings`, was found).
#[must_use]
pub fn run(paths: &[PathBuf], output: LintFormat, deny_warnings: bool) -> i32 {
    let files = match plan_files(paths) {
        Ok(files) => files,
        Err(problem) => {
            crate::errln!("error: {problem}");
            return exit_code::INVALID;
        }
    };
    let results: Vec<lint::FileResult> = files.iter().map(|file| lint::lint_file(file)).collect();
    let color = crate::cli::use_color(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let text = match output {
        LintFormat::Human => format::human(&results, color),
        LintFormat::Json => format::json(&results),
        LintFormat::Sarif => format::sarif(&results),
        LintFormat::Github => format::github(&results),
    };
    crate::out!("{text}");
    if !text.ends_with('\n') {
        crate::outln!();
    }
    if Summary::of(&results).fails(deny_warnings) { exit_code::INVALID } else { exit_code::SUCCESS }
}
