//! The plans shipped in `plans/` are what an SRE runs at 3 AM and what a reviewer reads
//! in a pull request. These tests run the real binary on them, as those people would:
//!
//! - every plan validates, and lints without a warning (DESIGN §8);
//! - the dry-run of every plan, in every format, is frozen in a snapshot, so a change to
//!   a plan or to the dry-run wording shows up in review as a diff of what people read;
//! - the markdown dry-run fits in a pull request comment;
//! - the TOML twin of `db-corruption` is the same plan as the YAML one, and the same
//!   mistake made in either syntax gets the same diagnostics.
//!
//! Dry-runs use an empty state directory, so the drill history of whoever runs the
//! tests cannot change the predicted RTO. New snapshots are written with
//! `INSTA_UPDATE=always cargo test --test it shipped_plans::` and must be read before they
//! are committed.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The shipped plans, relative to the crate root (the binary's working directory).
const PLANS: &str = "plans";

/// The dry-run formats.
const FORMATS: [&str; 3] = ["human", "markdown", "json"];

/// GitHub refuses pull request comments longer than 65,536 characters; DESIGN §5 keeps
/// the markdown dry-run under this.
const MARKDOWN_LIMIT: usize = 60_000;

/// Every plan file under `plans/`, sorted, as paths relative to the crate root.
fn plan_files() -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join(PLANS);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", directory.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension()
                .and_then(|extension| extension.to_str())
                .is_some_and(|extension| matches!(extension, "yaml" | "yml" | "toml"))
        })
        .map(|path| Path::new(PLANS).join(path.file_name().expect("a file name")))
        .collect();
    files.sort();
    files
}

/// The YAML plans: one per scenario. The TOML files are twins of YAML plans and are
/// checked against them instead of having snapshots of their own.
fn yaml_plans() -> Vec<PathBuf> {
    plan_files()
        .into_iter()
        .filter(|path| path.extension().is_some_and(|extension| extension != "toml"))
        .collect()
}

/// The file name without extension: `cluster-loss`.
fn stem(path: &Path) -> String {
    path.file_stem().and_then(|stem| stem.to_str()).expect("plan names are UTF-8").to_owned()
}

/// What one run of the binary gave.
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `dr-plan ARGUMENTS...` from the crate root, without colour.
fn dr_plan(arguments: &[&str]) -> Output {
    let output = Command::cargo_bin("dr-plan")
        .expect("the dr-plan binary is built")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .args(arguments)
        .output()
        .expect("dr-plan runs");
    Output {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

/// `dr-plan dry-run PLAN --format FORMAT [--drill]` with an empty state directory;
/// panics unless it succeeds.
fn dry_run(plan: &Path, format: &str, drill: bool) -> String {
    let state = tempfile::tempdir().expect("a temporary state directory");
    let plan = plan.to_str().expect("plan paths are UTF-8");
    let state_path = state.path().to_str().expect("temporary paths are UTF-8");
    let mut arguments = vec!["dry-run", plan, "--format", format, "--state-dir", state_path];
    if plan.contains("point-in-time") {
        // Its one input is required: the moment to recover to.
        arguments.extend(["--var", "target_time=2026-12-07T10:28:59+00:00"]);
    }
    if drill {
        arguments.push("--drill");
    }
    let output = dr_plan(&arguments);
    assert_eq!(
        output.code,
        Some(0),
        "`dr-plan {}` failed:\n{}{}",
        arguments.join(" "),
        output.stdout,
        output.stderr
    );
    output.stdout
}

/// Snapshots `value` under `name`, with the command that produced it as the description.
fn snapshot(name: &str, command: &str, value: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_description(command);
    settings.set_prepend_module_to_snapshot(true);
    settings.bind(|| insta::assert_snapshot!(name, value));
}

#[test]
fn the_shipped_plans_are_all_there() {
    let names: Vec<String> = plan_files()
        .iter()
        .map(|path| path.file_name().and_then(|name| name.to_str()).expect("UTF-8").to_owned())
        .collect();
    for expected in [
        "backup.yaml",
        "cluster-loss.yaml",
        "db-corruption.toml",
        "db-corruption.yaml",
        "full-rebuild.yaml",
        "point-in-time.toml",
        "point-in-time.yaml",
        "region-outage.yaml",
        "verify-backup.yaml",
    ] {
        assert!(names.iter().any(|name| name == expected), "plans/{expected} is missing; found {names:?}");
    }
}

#[test]
fn every_shipped_plan_validates() {
    for plan in plan_files() {
        let plan = plan.to_str().expect("plan paths are UTF-8");
        let output = dr_plan(&["validate", plan]);
        assert_eq!(output.code, Some(0), "`dr-plan validate {plan}` failed:\n{}", output.stderr);
        assert!(output.stdout.starts_with(&format!("ok: {plan} (")), "unexpected output: {}", output.stdout);
    }
}

#[test]
fn every_shipped_plan_lints_without_warnings() {
    let output = dr_plan(&["lint", PLANS, "--deny", "warnings"]);
    assert_eq!(
        output.code,
        Some(0),
        "`dr-plan lint plans --deny warnings` found problems:\n{}{}",
        output.stdout,
        output.stderr
    );
    assert!(
        output.stdout.contains(&format!("0 errors, 0 warnings in {} files", plan_files().len())),
        "lint did not see every plan: {}",
        output.stdout
    );
}

#[test]
fn every_yaml_plan_starts_with_the_schema_line() {
    for plan in yaml_plans() {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&plan))
            .expect("readable plan");
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/plan.schema.json\n"),
            "{} does not start with the schema line editors use for completion",
            plan.display()
        );
    }
}

#[test]
fn dry_runs_of_every_plan_in_every_format() {
    for plan in yaml_plans() {
        for format in FORMATS {
            let text = dry_run(&plan, format, false);
            let command = format!("dr-plan dry-run {} --format {format} --state-dir EMPTY", plan.display());
            snapshot(&format!("dry_run_{}_{format}", stem(&plan)), &command, &text);
        }
    }
}

#[test]
fn drill_dry_run_skips_the_dns_switch_and_the_notification() {
    let plan = Path::new(PLANS).join("region-outage.yaml");
    let text = dry_run(&plan, "human", true);
    assert!(text.starts_with("Dry-run of plan region-outage (drill)"), "not a drill preview:\n{text}");
    snapshot(
        "dry_run_region-outage_human_drill",
        "dr-plan dry-run plans/region-outage.yaml --drill --state-dir EMPTY",
        &text,
    );
}

#[test]
fn markdown_dry_runs_fit_in_a_pull_request_comment() {
    for plan in yaml_plans() {
        let text = dry_run(&plan, "markdown", false);
        let characters = text.chars().count();
        assert!(
            characters < MARKDOWN_LIMIT,
            "the markdown dry-run of {} has {characters} characters, over {MARKDOWN_LIMIT}",
            plan.display()
        );
    }
}

#[test]
fn graphs_of_region_outage() {
    for format in ["mermaid", "dot"] {
        let output = dr_plan(&["graph", "plans/region-outage.yaml", "--format", format]);
        assert_eq!(output.code, Some(0), "graph --format {format} failed:\n{}", output.stderr);
        snapshot(
            &format!("graph_region-outage_{format}"),
            &format!("dr-plan graph plans/region-outage.yaml --format {format}"),
            &output.stdout,
        );
    }
}

#[test]
fn yaml_and_toml_twins_are_the_same_plan() {
    for name in ["db-corruption", "point-in-time"] {
        let yaml = Path::new(PLANS).join(format!("{name}.yaml"));
        let toml = Path::new(PLANS).join(format!("{name}.toml"));
        for format in FORMATS {
            assert_eq!(
                dry_run(&yaml, format, false),
                dry_run(&toml, format, false),
                "the {format} dry-runs of the YAML and TOML {name} plans differ"
            );
        }
        let graph =
            |plan: &Path| dr_plan(&["graph", plan.to_str().expect("UTF-8"), "--format", "dot"]).stdout;
        assert_eq!(graph(&yaml), graph(&toml), "the graphs of the YAML and TOML {name} plans differ");
    }
}

/// The same two mistakes (a misspelt step field, a `needs` naming a step that does not
/// exist) written in YAML and in TOML.
const INVALID_YAML: &str = r#"version: 1
name: twin
objectives: { rto: 30m }
steps:
  - id: fetch
    kind: s3.fetch
    with: { bucket: festivals-backups, key: latest, prefix: postgres/, checksum: sidecar }
    estimat: 4m
  - id: restore
    kind: pg.restore
    needs: [fetch, safty-backup]
    with: { dump: "{{steps.fetch.outputs.path}}", database: tododb }
"#;

const INVALID_TOML: &str = r#"version = 1
name = "twin"
objectives = { rto = "30m" }

[[steps]]
id = "fetch"
kind = "s3.fetch"
with = { bucket = "festivals-backups", key = "latest", prefix = "postgres/", checksum = "sidecar" }
estimat = "4m"

[[steps]]
id = "restore"
kind = "pg.restore"
needs = ["fetch", "safty-backup"]
with = { dump = "{{steps.fetch.outputs.path}}", database = "tododb" }
"#;

/// What a diagnostic says, without where it says it: the code, the message, every
/// label's text and the help, with the file name and `:line:col` replaced by
/// placeholders. The quoted source lines and the underlines are dropped, since they
/// show the plan in its own syntax.
fn normalise_diagnostics(stderr: &str, file: &str) -> Vec<String> {
    let mut kept = Vec::new();
    for line in stderr.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('╰') && trimmed.trim_start_matches(['╰', '─']).is_empty()
        {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("╭─[") {
            // `╭─[FILE:LINE:COLUMN]`
            let location = rest.trim_end_matches(']');
            let without_position = location
                .rsplitn(3, ':')
                .nth(2)
                .unwrap_or_else(|| panic!("a location `{location}` without line and column"));
            kept.push(format!("at [{}:LINE:COLUMN]", without_position.replace(file, "FILE")));
            continue;
        }
        if let Some(label) = trimmed.strip_prefix('·') {
            // Underlines (`───┬───`) carry no words; a label line ends in `╰── text`.
            if let Some((_, text)) = label.split_once("╰──") {
                kept.push(format!("label: {}", text.trim()));
            }
            continue;
        }
        if is_source_line(trimmed) {
            continue;
        }
        kept.push(trimmed.replace(file, "FILE"));
    }
    kept
}

/// A quoted source line of a miette excerpt: `12 │ text` (or a bare `│`).
fn is_source_line(trimmed: &str) -> bool {
    let after_number = trimmed.trim_start_matches(|character: char| character.is_ascii_digit());
    after_number.trim_start().starts_with('│')
}

#[test]
fn the_same_mistake_in_yaml_and_toml_gets_the_same_diagnostics() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let yaml = directory.path().join("twin.yaml");
    let toml = directory.path().join("twin.toml");
    std::fs::write(&yaml, INVALID_YAML).expect("write the YAML plan");
    std::fs::write(&toml, INVALID_TOML).expect("write the TOML plan");
    let yaml = yaml.to_str().expect("UTF-8 path");
    let toml = toml.to_str().expect("UTF-8 path");
    let from_yaml = dr_plan(&["validate", yaml]);
    let from_toml = dr_plan(&["validate", toml]);
    assert_eq!(from_yaml.code, Some(2), "the invalid YAML plan was accepted:\n{}", from_yaml.stderr);
    assert_eq!(from_toml.code, Some(2), "the invalid TOML plan was accepted:\n{}", from_toml.stderr);
    let yaml_diagnostics = normalise_diagnostics(&from_yaml.stderr, yaml);
    let toml_diagnostics = normalise_diagnostics(&from_toml.stderr, toml);
    // The normaliser must have kept the substance, or the comparison proves nothing.
    for expected in [
        "unknown field `estimat` in a step",
        "did you mean `estimate`?",
        "unknown step `safty-backup` in `needs`",
        "at [FILE:LINE:COLUMN]",
        "FILE: 2 errors, 0 warnings",
    ] {
        assert!(
            yaml_diagnostics.iter().any(|line| line.contains(expected)),
            "`{expected}` is missing from the normalised YAML diagnostics: {yaml_diagnostics:#?}\nraw:\n{}",
            from_yaml.stderr
        );
    }
    assert_eq!(
        yaml_diagnostics, toml_diagnostics,
        "YAML and TOML diagnostics differ.\nYAML:\n{}\nTOML:\n{}",
        from_yaml.stderr, from_toml.stderr
    );
}

#[test]
fn the_same_mistake_in_yaml_and_toml_gets_the_same_lint_json() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let yaml = directory.path().join("twin.yaml");
    let toml = directory.path().join("twin.toml");
    std::fs::write(&yaml, INVALID_YAML).expect("write the YAML plan");
    std::fs::write(&toml, INVALID_TOML).expect("write the TOML plan");
    let lint = |path: &Path| -> serde_json::Value {
        let output = dr_plan(&["lint", path.to_str().expect("UTF-8 path"), "--format", "json"]);
        assert_eq!(output.code, Some(2), "lint accepted an invalid plan:\n{}", output.stdout);
        let mut document: serde_json::Value = serde_json::from_str(&output.stdout).expect("lint JSON parses");
        strip_positions(&mut document);
        document
    };
    let from_yaml = lint(&yaml);
    let from_toml = lint(&toml);
    assert_eq!(
        from_yaml["diagnostics"].as_array().map(Vec::len),
        Some(2),
        "expected the two mistakes: {from_yaml:#}"
    );
    assert_eq!(from_yaml, from_toml, "YAML and TOML lint findings differ");
}

/// Removes what depends on the syntax (file, lines, columns) from a lint JSON document.
fn strip_positions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for key in ["file", "line", "column", "end_line", "end_column"] {
                map.remove(key);
            }
            map.values_mut().for_each(strip_positions);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_positions),
        serde_json::Value::Null
        | serde_json::Value::Bool(_)
        | serde_json::Value::Number(_)
        | serde_json::Value::String(_) => {}
    }
}
