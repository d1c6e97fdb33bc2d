//! Every file under `tests/fixtures/invalid/` is a plan with a known problem. For each one
//! the real binary runs `dr-plan validate FILE` the way an SRE or CI would, and the test
//! checks what they rely on: exit code 2, nothing on stdout, no panic, every diagnostic
//! located as `[file:line:col]`, and (through an insta snapshot) the exact text they read.
//!
//! Adding a fixture is adding a file: the test walks the directory. New snapshots are
//! written with `INSTA_UPDATE=always cargo test --test it invalid_plans::` and must then
//! be read as the person who gets them at 3 AM: label on the exact text, help that says
//! what to do.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// Where the fixtures live, relative to the crate root (the binary's working directory,
/// so diagnostics name them the way a user in the repository would type them).
const FIXTURES: &str = "tests/fixtures/invalid";

/// Fixtures whose current output is wrong or misleading, so it is not frozen in a
/// snapshot. They still must exit 2, be located and not panic. Each entry says what is
/// wrong; when the diagnostic is fixed, delete the entry and accept the new snapshot.
const KNOWN_WRONG: &[(&str, &str)] = &[];

fn fixtures() -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURES);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", directory.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "yaml" || extension == "toml"))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().and_then(|name| name.to_str()).expect("fixture names are UTF-8").to_owned()
}

/// Runs `dr-plan validate ARGUMENTS...` from the crate root; returns (exit code, stdout, stderr).
fn validate(arguments: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::cargo_bin("dr-plan")
        .expect("the dr-plan binary is built")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .arg("validate")
        .args(arguments)
        .output()
        .expect("dr-plan runs");
    (
        output.status.code(),
        String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    )
}

/// `(line, column)` of every miette header `[relative:LINE:COLUMN]` in `stderr`.
fn locations(stderr: &str, relative: &str) -> Vec<(usize, usize)> {
    let opening = format!("[{relative}:");
    stderr
        .match_indices(&opening)
        .filter_map(|(index, _)| {
            let rest = &stderr[index + opening.len()..];
            let (line, rest) = rest.split_once(':')?;
            let (column, _) = rest.split_once(']')?;
            Some((line.parse().ok()?, column.parse().ok()?))
        })
        .collect()
}

/// The error count from the summary line `FILE: N error(s), M warning(s)`.
fn error_count(stderr: &str, relative: &str) -> Option<usize> {
    let summary = stderr.lines().rev().find_map(|line| line.strip_prefix(&format!("{relative}: ")))?;
    summary.split_whitespace().next()?.parse().ok()
}

#[test]
fn every_invalid_fixture_is_rejected_with_located_diagnostics() {
    let files = fixtures();
    assert!(files.len() >= 45, "expected at least 45 fixtures, found {}", files.len());
    let names: Vec<String> = files.iter().map(|path| file_name(path)).collect();
    for (listed, _) in KNOWN_WRONG {
        assert!(
            names.iter().any(|name| name == listed),
            "KNOWN_WRONG lists `{listed}`, which is not a fixture"
        );
    }
    for name in &names {
        let relative = format!("{FIXTURES}/{name}");
        let (code, stdout, stderr) = validate(&[&relative]);
        assert_eq!(code, Some(2), "{relative}: exit code\n{stderr}");
        assert!(
            stdout.is_empty(),
            "{relative}: nothing belongs on stdout for an invalid plan, got:\n{stdout}"
        );
        assert!(!stderr.contains("panicked"), "{relative}: dr-plan panicked:\n{stderr}");
        let errors = error_count(&stderr, &relative)
            .unwrap_or_else(|| panic!("{relative}: no `{relative}: N errors` summary line:\n{stderr}"));
        assert!(errors >= 1, "{relative}: exit 2 with no error counted:\n{stderr}");
        let found = locations(&stderr, &relative);
        assert!(
            found.len() >= errors,
            "{relative}: {errors} error(s) but only {} `[{relative}:LINE:COLUMN]` location(s):\n{stderr}",
            found.len()
        );
        assert!(
            found.iter().all(|&(line, column)| line >= 1 && column >= 1),
            "{relative}: locations are 1-based: {found:?}"
        );
        if KNOWN_WRONG.iter().any(|(listed, _)| listed == name) {
            continue;
        }
        let snapshot = name.replace('.', "_");
        insta::with_settings!({ description => format!("dr-plan validate {relative}"), omit_expression => true }, {
            insta::assert_snapshot!(snapshot, stderr);
        });
    }
}

/// One process over every fixture: each file gets its own summary and the run fails,
/// so a bad plan in a directory cannot hide behind a good one or stop the others.
#[test]
fn validating_all_fixtures_at_once_reports_each_file() {
    let names: Vec<String> = fixtures().iter().map(|path| file_name(path)).collect();
    let relatives: Vec<String> = names.iter().map(|name| format!("{FIXTURES}/{name}")).collect();
    let mut arguments: Vec<&str> = relatives.iter().map(String::as_str).collect();
    arguments.push("plans/db-corruption.yaml");
    let (code, stdout, stderr) = validate(&arguments);
    assert_eq!(code, Some(2));
    assert!(!stderr.contains("panicked"));
    for relative in &relatives {
        assert!(
            error_count(&stderr, relative).is_some_and(|errors| errors >= 1),
            "{relative} has no summary"
        );
    }
    assert!(
        stdout.starts_with("ok: plans/db-corruption.yaml ("),
        "the valid plan is still reported: {stdout}"
    );
}
