//! `dr-plan lint`: validate every plan under the given paths, add the DR-safety
//! rules ([`crate::lint`]), print in the chosen format.

use std::path::PathBuf;

use crate::cli::{LintFormat, plan_files};
use crate::lang::code::Code;
use crate::lang::diagnostic::Diagnostic;
use crate::lint::{self, Summary, format};
use crate::sys::exit_code;

/// Runs lint; returns the exit code (2 when an error, or a warning under `--deny warnings`, was found).
///
/// A path that does not exist, or a directory without a plan file, is an error result
/// in every format: a CI job that lints a mistyped path must fail, visibly, in the
/// SARIF log or the annotations it reads, not pass with nothing checked.
#[must_use]
pub fn run(paths: &[PathBuf], output: LintFormat, deny_warnings: bool, state_dir: Option<&str>) -> i32 {
    let mut results: Vec<lint::FileResult> = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for path in paths {
        let shown = path.display().to_string();
        let problem = if !path.exists() {
            Some(
                Diagnostic::about_path(Code::File, &shown, "no such file or directory")
                    .with_help("check the path: lint takes plan files and directories of plans"),
            )
        } else {
            match plan_files(std::slice::from_ref(path)) {
                Ok(found) if found.is_empty() => Some(
                    Diagnostic::about_path(
                        Code::File,
                        &shown,
                        "no plan files (.yaml, .yml, .toml) in this directory",
                    )
                    .with_help("check the path: nothing was linted"),
                ),
                Ok(found) => {
                    files.extend(found);
                    None
                }
                Err(problem) => Some(Diagnostic::about_path(Code::File, &shown, problem)),
            }
        };
        if let Some(problem) = problem {
            results.push(lint::FileResult { path: shown, diagnostics: vec![problem] });
        }
    }
    files.sort();
    files.dedup();
    results.extend(files.iter().map(|file| lint::lint_file(file, state_dir)));
    let color = crate::sys::output::use_color(std::io::IsTerminal::is_terminal(&std::io::stdout()));
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
