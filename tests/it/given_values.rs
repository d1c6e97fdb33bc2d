//! Values given on the command line (`--var`, `--vars-file`) are checked before
//! anything runs: against an input's `type` and `enum`, and, once rendered into a
//! step's parameters, against the step kind's parameter types. A wrong value is exit 2
//! with a message naming the input (or step), what it expects and what was given, in
//! dry-run and run alike.

use assert_cmd::Command;

const PLAN: &str = r#"version: 1
name: typed-inputs
inputs:
  count: { description: API replicas, type: integer, default: 2 }
  region: { type: string, enum: [eu-west-1, eu-west-2], default: eu-west-1 }
  settle: { type: duration, default: 1s }
  dry: { type: boolean, default: true }
  zones: { type: list, default: [a] }
  since: { type: time, default: "2026-12-07T10:29:00+01:00" }
  note: { description: untyped }
steps:
  - id: scale-api
    kind: k8s.scale
    with: { namespace: "{{inputs.region}}", target: deployment/api, replicas: "{{inputs.count}}" }
  - id: scale-worker
    kind: k8s.scale
    with: { namespace: "{{inputs.region}}", target: deployment/worker, replicas: "{{inputs.note}}" }
  - id: wait
    kind: sleep
    with: { duration: "{{inputs.settle}}" }
"#;

/// Runs `dr-plan ARGUMENTS... PLAN` on [`PLAN`] (or `plan`) in a temporary directory;
/// returns (exit code, stdout, stderr).
fn dr_plan(plan: &str, arguments: &[&str], vars_file: Option<&str>) -> (Option<i32>, String, String) {
    let directory = tempfile::tempdir().expect("temporary directory");
    std::fs::write(directory.path().join("plan.yaml"), plan).expect("write the plan");
    let mut command = Command::cargo_bin("dr-plan").expect("the dr-plan binary is built");
    command.current_dir(directory.path()).env("NO_COLOR", "1").args(arguments).arg("plan.yaml");
    if let Some(text) = vars_file {
        std::fs::write(directory.path().join("vars.yaml"), text).expect("write the vars file");
        command.args(["--vars-file", "vars.yaml"]);
    }
    if matches!(arguments.first(), Some(&"dry-run" | &"run")) {
        command.args(["--state-dir", "state"]);
    }
    if arguments.first() == Some(&"run") {
        // A run asks for confirmation at a terminal; the values are refused before that.
        command.arg("--yes");
    }
    let output = command.output().expect("dr-plan runs");
    (
        output.status.code(),
        String::from_utf8(output.stdout).expect("UTF-8"),
        String::from_utf8(output.stderr).expect("UTF-8"),
    )
}

#[test]
fn well_typed_values_dry_run() {
    let (code, stdout, stderr) =
        dr_plan(PLAN, &["dry-run", "--var", "count=3", "--var", "region=eu-west-2", "--var", "note=1"], None);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("scale deployment/api in eu-west-2 to 3"), "{stdout}");
}

#[test]
fn a_value_of_the_wrong_type_names_the_input_the_type_and_the_value() {
    for command in ["dry-run", "run"] {
        let (code, stdout, stderr) =
            dr_plan(PLAN, &[command, "--var", "count=five", "--var", "note=1"][..], None);
        assert_eq!(code, Some(2), "{command}: {stderr}");
        assert!(stdout.is_empty(), "{command}: {stdout}");
        assert!(stderr.contains("input `count` must be an integer, got `five`"), "{command}: {stderr}");
    }
}

#[test]
fn every_type_and_the_enum_are_checked_in_a_vars_file_too() {
    let (code, _, stderr) = dr_plan(
        PLAN,
        &["dry-run"],
        Some("count: 2.5\nregion: us-east-1\nsettle: soon\ndry: maybe\nnote: 1\n"),
    );
    assert_eq!(code, Some(2), "{stderr}");
    for expected in [
        "input `count` must be an integer, got `2.5`",
        "input `region` must be one of eu-west-1, eu-west-2, got `us-east-1`",
        "input `settle` must be a duration such as 90s, 45m or 2h, got `soon`",
        "input `dry` must be true or false, got `maybe`",
    ] {
        assert!(stderr.contains(expected), "missing `{expected}` in:\n{stderr}");
    }
}

#[test]
fn a_time_input_needs_its_offset() {
    let (code, _, stderr) =
        dr_plan(PLAN, &["dry-run", "--var", "note=1", "--var", "since=2026-12-07T10:29:00"], None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "input `since` must be a time with its offset such as 2026-12-07T10:29:00+01:00 (RFC 3339), got `2026-12-07T10:29:00`"
        ),
        "{stderr}"
    );
    let (code, _, stderr) =
        dr_plan(PLAN, &["dry-run", "--var", "note=1", "--var", "since=2026-12-07T09:29:00Z"], None);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn an_untyped_input_rendered_into_an_integer_parameter_is_refused_at_dry_run() {
    for command in ["dry-run", "run"] {
        let (code, stdout, stderr) = dr_plan(PLAN, &[command, "--var", "note=five"][..], None);
        assert_eq!(code, Some(2), "{command}: {stderr}");
        assert!(!stdout.contains("to five"), "{command}: {stdout}");
        assert!(
            stderr.contains("step `scale-worker`: `with.replicas` must be an integer")
                && stderr.contains("(rendered: `five`)"),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn a_default_the_input_refuses_is_a_validation_error() {
    let plan = PLAN.replace("default: 2 }", "default: two }");
    let (code, _, stderr) = dr_plan(&plan, &["validate"], None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("the default of input `count` must be an integer, got `two`"), "{stderr}");
    let unknown_type = PLAN.replace("type: integer", "type: int");
    let (code, _, stderr) = dr_plan(&unknown_type, &["validate"], None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("input type `int` does not exist") && stderr.contains("integer"), "{stderr}");
}

#[test]
fn a_missing_vars_file_is_named_once_with_what_to_do() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dr-plan"))
        .args(["dry-run", "plans/backup.yaml", "--vars-file", "/nonexistent/drill.yaml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("error: --vars-file /nonexistent/drill.yaml: cannot read"), "{stderr}");
    assert!(!stderr.contains("error[file]") && stderr.contains("help: check the path"), "{stderr}");
}

#[test]
fn a_state_dir_that_is_not_a_directory_is_a_usage_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dr-plan"))
        .args(["run", "plans/backup.yaml", "--yes", "--state-dir", "/dev/null"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("error: --state-dir /dev/null: not a directory"), "{stderr}");
}
