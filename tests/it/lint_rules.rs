//! The DR-safety rules against their fixtures (each triggers exactly its own rule),
//! the rendered diagnostics as snapshots, edge cases each rule must get right, and
//! the machine formats (SARIF checked against the official schema when the test
//! tools are installed).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dr_plan::kinds::{load_plan, plan_from_source};
use dr_plan::lang::diagnostic::{Diagnostic, Severity};
use dr_plan::lang::source::SourceFile;
use dr_plan::lint::{FileResult, Rule, Summary, format, lint, lint_file};

const FIXTURES: &str = "tests/fixtures/lint";

/// Lints a fixture, loaded by its path relative to the package root (cargo runs
/// integration tests there), so diagnostics name it the way a user would see it.
/// The state bucket the fixtures are linted with: in eu-west-1, which DRP014's fixture
/// fails away from.
const STATE: &str = "s3://festivals-dr-state-eu-west-1/runs";

fn lint_fixture(name: &str) -> Vec<Diagnostic> {
    let path = Path::new(FIXTURES).join(name);
    let plan =
        load_plan(&path).unwrap_or_else(|problems| panic!("{name} must be a valid plan: {problems:#?}"));
    dr_plan::lint::lint_with_state(&plan, Some(STATE))
}

fn codes(diagnostics: &[Diagnostic]) -> Vec<&'static str> {
    diagnostics.iter().map(|diagnostic| diagnostic.code).collect()
}

fn lint_text(text: &str) -> Vec<Diagnostic> {
    let plan = plan_from_source(&SourceFile::new("plan.yaml", text))
        .unwrap_or_else(|problems| panic!("the plan must be valid: {problems:#?}"));
    lint(&plan)
}

/// The text a diagnostic's primary label covers.
fn labelled(diagnostic: &Diagnostic) -> &str {
    let file: &Arc<SourceFile> = diagnostic.file.as_ref().expect("located");
    file.slice(diagnostic.primary_span().expect("labelled"))
}

fn normalise(text: &str) -> String {
    text.replace('\\', "/")
}

#[test]
fn each_fixture_triggers_exactly_its_rule() {
    for rule in Rule::ALL {
        let diagnostics = lint_fixture(&format!("{}.yaml", rule.code()));
        assert_eq!(codes(&diagnostics), [rule.code()], "{}: {diagnostics:#?}", rule.code());
        let diagnostic = &diagnostics[0];
        assert_eq!(diagnostic.severity, Severity::Warning);
        assert!(diagnostic.help.is_some(), "{} needs a help line", rule.code());
        assert!(!labelled(diagnostic).is_empty(), "{} must label some text", rule.code());
        let rendered = normalise(&diagnostic.render(false));
        insta::assert_snapshot!(format!("human_{}", rule.code()), rendered);
    }
}

#[test]
fn labels_sit_on_the_text_they_are_about() {
    let expectations = [
        ("DRP001", "/var/backups/tododb.dump"),
        ("DRP002", "true"),
        ("DRP003", "restore-without-objective"),
        ("DRP004", "20m"),
        ("DRP005", "hunter2"),
        ("DRP006", "switch-dns"),
        ("DRP007", "true"),
        ("DRP008", "region"),
        ("DRP009", "scale-back-up"),
        ("DRP010", "none"),
        ("DRP011", "[helm, rollback, api]"),
        ("DRP012", "inputs.release"),
        ("DRP013", "\"{{steps.restore.outputs.database}}\""),
        ("DRP014", "eu-west-1"),
    ];
    for (code, text) in expectations {
        let diagnostics = lint_fixture(&format!("{code}.yaml"));
        assert_eq!(labelled(&diagnostics[0]), text, "{code}");
    }
}

#[test]
fn the_clean_plan_has_no_finding() {
    let diagnostics = lint_fixture("clean.yaml");
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
}

#[test]
fn shipped_plans_pass_lint() {
    let Ok(entries) = std::fs::read_dir("plans") else { return };
    for entry in entries {
        let path = entry.expect("readable directory").path();
        if !matches!(path.extension().and_then(|extension| extension.to_str()), Some("yaml" | "yml" | "toml"))
        {
            continue;
        }
        let result = lint_file(&path, Some(STATE));
        assert!(
            result.diagnostics.is_empty(),
            "{}:\n{}",
            path.display(),
            format::human(std::slice::from_ref(&result), false)
        );
    }
}

#[test]
fn every_rule_is_documented_with_its_anchor() {
    let docs = std::fs::read_to_string("docs/lint.md").expect("docs/lint.md");
    for rule in Rule::ALL {
        let heading = format!("\n## {} {}\n", rule.code(), rule.name());
        assert!(docs.contains(&heading), "docs/lint.md needs a section `{}`", heading.trim());
        assert_eq!(rule.anchor(), format!("{}-{}", rule.code().to_lowercase(), rule.name()));
    }
    for code in format::VALIDATION_CODES {
        assert!(docs.contains(&format!("| `{code}` |")), "docs/lint.md should list `{code}`");
    }
}

const HEAD: &str = "version: 1\nname: t\nobjectives: { rto: 1h }\n";
const CHECK: &str = "  - { id: check, kind: pg.query, needs: [restore], with: { database: db, assert: [ { sql: 'select 1', expect: '= 1' } ] } }\n";

#[test]
fn unverified_download_is_flagged_where_the_destructive_step_reads_it() {
    let text = format!(
        "{HEAD}steps:\n  - {{ id: fetch, kind: s3.fetch, with: {{ bucket: b, key: latest, checksum: none }} }}\n  - {{ id: restore, kind: pg.restore, needs: [fetch], with: {{ dump: \"{{{{steps.fetch.outputs.path}}}}\", database: db }} }}\n{CHECK}"
    );
    let diagnostics = lint_text(&text);
    assert_eq!(codes(&diagnostics), ["DRP010", "DRP001"]);
    assert_eq!(labelled(&diagnostics[1]), "steps.fetch.outputs.path");
    assert_eq!(diagnostics[1].labels.len(), 2, "the disabled checksum is labelled too");
}

#[test]
fn unverified_data_stays_unverified_through_other_steps() {
    let text = format!(
        "{HEAD}steps:\n  - {{ id: fetch, kind: s3.fetch, with: {{ bucket: b, key: latest, checksum: none }} }}\n  - {{ id: unpack, kind: exec, needs: [fetch], with: {{ command: [tar, xf, \"{{{{steps.fetch.outputs.path}}}}\"] }} }}\n  - {{ id: restore, kind: pg.restore, needs: [unpack], with: {{ dump: \"{{{{steps.unpack.outputs.stdout}}}}\", database: db }} }}\n{CHECK}"
    );
    let diagnostics = lint_text(&text);
    assert_eq!(codes(&diagnostics), ["DRP010", "DRP001"]);
    assert!(diagnostics[1].message.contains("`fetch`"), "{}", diagnostics[1].message);
}

#[test]
fn a_restore_of_a_dump_made_in_the_plan_is_verified() {
    let text = format!(
        "{HEAD}steps:\n  - {{ id: dump, kind: pg.dump, with: {{ database: db }} }}\n  - {{ id: restore, kind: pg.restore, needs: [dump], with: {{ dump: \"{{{{steps.dump.outputs.path}}}}\", database: copy }} }}\n{CHECK}"
    );
    assert!(lint_text(&text).is_empty());
}

#[test]
fn a_safety_backup_must_dump_the_restored_database_and_run_first() {
    let step = |database: &str, needs: &str| {
        format!(
            "{HEAD}vars: {{ database: tododb }}\nsteps:\n  - {{ id: fetch, kind: s3.fetch, with: {{ bucket: b, key: latest }} }}\n  - {{ id: safety, kind: pg.dump, with: {{ database: {database} }} }}\n  - {{ id: restore, kind: pg.restore, needs: [{needs}], with: {{ dump: \"{{{{steps.fetch.outputs.path}}}}\", database: \"{{{{vars.database}}}}\", clean: true }} }}\n{CHECK}"
        )
    };
    assert!(lint_text(&step("tododb", "fetch, safety")).is_empty(), "a var resolving to the same database");
    assert_eq!(
        codes(&lint_text(&step("otherdb", "fetch, safety"))),
        ["DRP002"],
        "a dump of another database"
    );
    let not_upstream = lint_text(&step("tododb", "fetch"));
    assert_eq!(codes(&not_upstream), ["DRP002"]);
    assert!(not_upstream[0].help.as_deref().unwrap().contains("`safety`"), "{:?}", not_upstream[0].help);
}

#[test]
fn create_alone_overwrites_nothing_but_clean_with_create_needs_a_dump_of_that_database() {
    let plan = |flags: &str, dump: &str| {
        format!(
            "{HEAD}steps:\n{dump}  - {{ id: fetch, kind: s3.fetch, with: {{ bucket: b, key: latest }} }}\n  - {{ id: restore, kind: pg.restore, needs: [fetch{}], with: {{ dump: \"{{{{steps.fetch.outputs.path}}}}\", database: scratch, {flags} }} }}\n{CHECK}",
            if dump.is_empty() { "" } else { ", safety" }
        )
    };
    // pg.restore creates the database it is given (never the one named inside the dump).
    assert!(lint_text(&plan("create: true", "")).is_empty());
    let missing = lint_text(&plan("create: true, clean: true", ""));
    assert_eq!(codes(&missing), ["DRP002"]);
    assert!(missing[0].message.contains("database `scratch`"), "{}", missing[0].message);
    let other_database = "  - { id: safety, kind: pg.dump, with: { database: tododb } }\n";
    assert_eq!(codes(&lint_text(&plan("create: true, clean: true", other_database))), ["DRP002"]);
    let same_database = "  - { id: safety, kind: pg.dump, with: { database: scratch } }\n";
    assert!(lint_text(&plan("create: true, clean: true", same_database)).is_empty());
}

#[test]
fn secrets_are_told_from_object_keys_and_identifiers() {
    let text = format!(
        "{HEAD}vars: {{ backup_key: postgres/latest.dump, api_token: abc123 }}\nsteps:\n  - {{ id: fetch, kind: s3.fetch, with: {{ bucket: b, key: \"{{{{vars.backup_key}}}}\", decrypt: {{ format: openssl-pbkdf2, key: correct-horse }} }} }}\n  - {{ id: tool, kind: exec, needs: [fetch], with: {{ command: [\"{{{{vars.api_token}}}}\", \"{{{{steps.fetch.outputs.path}}}}\"], env: {{ AWS_ACCESS_KEY_ID: AKIAEXAMPLE, PGPASSWORD: hunter2, TOKEN_FILE: /run/token }} }} }}\n  - {{ id: probe, kind: http.check, needs: [tool], with: {{ url: \"https://api.example.com\", headers: {{ Authorization: Bearer abc }} }} }}\n"
    );
    let diagnostics = lint_text(&text);
    let flagged: Vec<&str> = diagnostics.iter().map(labelled).collect();
    assert_eq!(codes(&diagnostics), ["DRP005"; 4], "{diagnostics:#?}");
    assert_eq!(flagged, ["abc123", "correct-horse", "hunter2", "Bearer abc"]);
    assert!(
        diagnostics[2].message.contains("`with.env.PGPASSWORD` of step `tool`"),
        "{}",
        diagnostics[2].message
    );
    assert!(diagnostics[2].help.as_deref().unwrap().contains("{{secrets.pgpassword}}"));
}

#[test]
fn an_inverted_health_check_fails_over() {
    let text = format!(
        "{HEAD}steps:\n  - {{ id: probe, kind: http.check, with: {{ url: \"https://dr.example.com\" }} }}\n  - {{ id: flip, kind: route53.change, needs: [probe], with: {{ zone: z, health_checks: [ {{ id: a, disabled: true, inverted: true }}, {{ id: b, inverted: true }} ] }} }}\n"
    );
    assert!(lint_text(&text).is_empty());
}

#[test]
fn references_in_when_count_as_uses() {
    let text = format!(
        "{HEAD}inputs: {{ skip_check: {{ default: false }} }}\nsteps:\n  - {{ id: probe, kind: http.check, when: \"{{{{not inputs.skip_check}}}}\", with: {{ url: \"https://dr.example.com\" }} }}\n"
    );
    assert!(lint_text(&text).is_empty());
}

#[test]
fn redis_restore_with_expected_keys_verifies() {
    let restore = |expect: &str| {
        format!(
            "{HEAD}steps:\n  - {{ id: fetch, kind: s3.fetch, with: {{ bucket: b, key: latest }} }}\n  - {{ id: restore, kind: redis.restore, needs: [fetch], with: {{ rdb: \"{{{{steps.fetch.outputs.path}}}}\", dir: /data, url: \"redis://127.0.0.1:6379\", start: [redis-server]{expect} }} }}\n"
        )
    };
    assert!(lint_text(&restore(", expect_keys: 1")).is_empty());
    assert_eq!(codes(&lint_text(&restore(""))), ["DRP009"]);
}

#[test]
fn the_rto_warning_lists_the_critical_path() {
    let diagnostics = lint_fixture("DRP004.yaml");
    assert_eq!(diagnostics[0].message, "the predicted recovery time 29m10s exceeds the RTO of 20m");
    assert_eq!(
        diagnostics[0].help.as_deref().unwrap().split(';').next().unwrap(),
        "critical path: fetch (4m) → restore (25m) → check (10s)"
    );
}

#[test]
fn toml_plans_are_linted_the_same_way() {
    let text = "version = 1\nname = \"t\"\n[objectives]\nrto = \"1h\"\n\n[[steps]]\nid = \"fetch\"\nkind = \"s3.fetch\"\nwith = { bucket = \"b\", key = \"latest\", checksum = \"none\" }\n";
    let plan = plan_from_source(&SourceFile::new("plan.toml", text)).expect("valid");
    let diagnostics = lint(&plan);
    assert_eq!(codes(&diagnostics), ["DRP010"]);
    assert_eq!(labelled(&diagnostics[0]), "\"none\"");
}

/// Every fixture, one plan that does not validate, and one missing file.
fn all_results() -> Vec<FileResult> {
    let mut results: Vec<FileResult> = Rule::ALL
        .into_iter()
        .map(|rule| lint_file(&Path::new(FIXTURES).join(format!("{}.yaml", rule.code())), Some(STATE)))
        .collect();
    results.push(lint_file(&Path::new(FIXTURES).join("clean.yaml"), Some(STATE)));
    let invalid = SourceFile::new("invalid.yaml", "version: 1\nname: x\nstepz: []\n");
    let problems = plan_from_source(&invalid).expect_err("invalid");
    results.push(FileResult { path: "invalid.yaml".to_owned(), diagnostics: problems });
    results.push(lint_file(Path::new("does-not-exist.yaml"), None));
    results
}

#[test]
fn summaries_count_errors_warnings_and_files() {
    let results = all_results();
    let summary = Summary::of(&results);
    let rules = Rule::ALL.len();
    assert_eq!((summary.warnings, summary.files), (rules, rules + 3));
    assert!(summary.errors >= 2);
    assert!(summary.fails(false));
    // One fixture per rule, then the clean one.
    let warnings_only = &results[..=rules];
    assert!(!Summary::of(warnings_only).fails(false));
    assert!(Summary::of(warnings_only).fails(true), "--deny warnings");
    let ending = format!("0 errors, {rules} warnings in {} files\n", rules + 1);
    assert!(format::human(warnings_only, false).ends_with(&ending));
}

#[test]
fn github_annotations_point_at_the_fixture() {
    let out = format::github(&[lint_file(&Path::new(FIXTURES).join("DRP010.yaml"), None)]);
    assert!(
        out.starts_with("::warning file=tests/fixtures/lint/DRP010.yaml,line=8,col=82,endLine=8,endColumn=86,title=DRP010::"),
        "{out}"
    );
}

/// `check-jsonschema` from PATH or the directory `scripts/install-test-deps.sh` fills.
fn test_tool(name: &str) -> Option<PathBuf> {
    let tools = std::env::var_os("DR_PLAN_TEST_TOOLS").map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/dr-plan-test-tools"))
    })?;
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|directory| directory.join(name)).collect())
        .unwrap_or_default();
    candidates.push(tools.join("bin").join(name));
    candidates.push(tools.join("venv/bin").join(name));
    candidates.into_iter().find(|candidate| candidate.is_file())
}

/// The official SARIF 2.1.0 schema, when the test environment provides it
/// (`DR_PLAN_SARIF_SCHEMA`, or `sarif-schema-2.1.0.json` in the test tools directory).
fn sarif_schema() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("DR_PLAN_SARIF_SCHEMA") {
        return Some(PathBuf::from(path));
    }
    let tools = std::env::var_os("DR_PLAN_TEST_TOOLS").map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/dr-plan-test-tools"))
    })?;
    Some(tools.join("sarif-schema-2.1.0.json")).filter(|path| path.is_file())
}

#[test]
fn sarif_output_is_valid_against_the_official_schema() {
    let log = format::sarif(&all_results());
    let parsed: serde_json::Value = serde_json::from_str(&log).expect("SARIF is JSON");
    assert_eq!(parsed["version"], "2.1.0");
    let (Some(checker), Some(schema)) = (test_tool("check-jsonschema"), sarif_schema()) else {
        // scripts/test.sh installs both and sets DR_PLAN_TEST_TOOLS: there, a missing
        // checker is a broken environment, not a reason to pass.
        assert!(
            std::env::var_os("DR_PLAN_TEST_TOOLS").is_none(),
            "check-jsonschema or the SARIF schema is missing: run scripts/install-test-deps.sh"
        );
        eprintln!(
            "skipped the schema check: needs check-jsonschema and the SARIF 2.1.0 schema \
             (DR_PLAN_SARIF_SCHEMA or $DR_PLAN_TEST_TOOLS/sarif-schema-2.1.0.json)"
        );
        return;
    };
    let directory = tempfile::tempdir().expect("temporary directory");
    let instance = directory.path().join("lint.sarif");
    std::fs::write(&instance, &log).expect("write the log");
    let output = std::process::Command::new(checker)
        // The published 2.1.0 schema has a pattern with a stray `]` (fixed in its errata);
        // Python's regex dialect accepts it, ECMA's unicode mode does not.
        .args(["--regex-variant", "python"])
        .arg("--schemafile")
        .arg(&schema)
        .arg(&instance)
        .output()
        .expect("run check-jsonschema");
    assert!(
        output.status.success(),
        "{}\n{}\n{log}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn an_undo_command_is_flagged_only_without_undo_true() {
    let plan = |flag: &str| {
        format!(
            "{HEAD}steps:\n  - {{ id: deploy, kind: exec, with: {{ command: [helm, upgrade, api], undo: [helm, rollback, api] }}{flag} }}\n"
        )
    };
    assert_eq!(codes(&lint_text(&plan(""))), ["DRP011"]);
    let turned_off = lint_text(&plan(", undo: false"));
    assert_eq!(codes(&turned_off), ["DRP011"]);
    assert_eq!(turned_off[0].labels.len(), 2, "the `undo: false` is labelled too");
    assert!(lint_text(&plan(", undo: true")).is_empty());
}

/// `dr-plan lint PATHS... --format FORMAT` in `directory`; returns (exit code, stdout).
fn lint_command(directory: &Path, paths: &[&str], output_format: &str) -> (Option<i32>, String) {
    let output = assert_cmd::Command::cargo_bin("dr-plan")
        .expect("the dr-plan binary is built")
        .current_dir(directory)
        .env("NO_COLOR", "1")
        .arg("lint")
        .args(paths)
        .args(["--format", output_format])
        .output()
        .expect("dr-plan runs");
    (output.status.code(), String::from_utf8(output.stdout).expect("UTF-8"))
}

#[test]
fn a_missing_path_or_a_directory_without_plans_is_an_error_in_every_format() {
    let directory = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir(directory.path().join("empty")).expect("an empty directory");
    std::fs::write(directory.path().join("empty/notes.txt"), "not a plan")
        .expect("a file that is not a plan");
    for paths in [&["missing.yaml"][..], &["empty"][..]] {
        let name = paths[0];
        let (code, human) = lint_command(directory.path(), paths, "human");
        assert_eq!(code, Some(2), "{name}: {human}");
        assert!(human.contains(&format!("× {name}: ")) && human.contains("1 error"), "{name}: {human}");

        let (code, json) = lint_command(directory.path(), paths, "json");
        assert_eq!(code, Some(2), "{name}: {json}");
        let document: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(document["diagnostics"][0]["severity"], "error", "{json}");
        assert_eq!(document["diagnostics"][0]["file"], name, "{json}");
        assert_eq!(document["summary"]["errors"], 1, "{json}");

        let (code, sarif) = lint_command(directory.path(), paths, "sarif");
        assert_eq!(code, Some(2), "{name}: {sarif}");
        let log: serde_json::Value = serde_json::from_str(&sarif).expect("a SARIF log, not nothing");
        assert_eq!(log["version"], "2.1.0");
        let result = &log["runs"][0]["results"][0];
        assert_eq!(result["level"], "error", "{sarif}");
        assert_eq!(result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"], name, "{sarif}");

        let (code, github) = lint_command(directory.path(), paths, "github");
        assert_eq!(code, Some(2), "{name}: {github}");
        assert!(github.starts_with(&format!("::error file={name},title=file::{name}: ")), "{github}");
    }
    let (code, text) = lint_command(directory.path(), &["empty"], "human");
    assert_eq!(code, Some(2));
    assert!(text.contains("no plan files (.yaml, .yml, .toml) in this directory"), "{text}");
}

#[test]
fn a_template_in_a_shell_script_is_flagged_but_not_as_an_argument_or_in_env() {
    let plan = |command: &str| {
        format!(
            "{HEAD}inputs: {{ release: {{}} }}\nsteps:\n  - id: roll-back\n    kind: exec\n    with:\n{command}\n    estimate: 1m\n"
        )
    };
    let flagged =
        lint_text(&plan("      command: [/bin/bash, -euc, \"helm rollback api {{inputs.release}}\"]"));
    assert_eq!(codes(&flagged), ["DRP012"]);
    assert_eq!(labelled(&flagged[0]), "inputs.release");
    let in_undo = lint_text(&plan(
        "      command: [echo]\n      undo: [sh, -c, \"helm rollback api {{inputs.release}}\"]\n    undo: true",
    ));
    assert_eq!(codes(&in_undo), ["DRP012"]);
    for safe in [
        "      command: [sh, -c, 'helm rollback api \"$1\"', sh, \"{{inputs.release}}\"]",
        "      command: [sh, -c, 'helm rollback api \"$RELEASE\"']\n      env: { RELEASE: \"{{inputs.release}}\" }",
        "      command: [helm, rollback, api, \"{{inputs.release}}\"]",
        "      command: [sh, -c, 'echo {{run.id}} \"$1\"', sh, \"{{inputs.release}}\"]",
    ] {
        assert_eq!(codes(&lint_text(&plan(safe))), Vec::<&str>::new(), "{safe}");
    }
}

#[test]
fn the_shell_script_help_is_written_in_toml_for_a_toml_plan() {
    let text = "version = 1\nname = \"t\"\nobjectives = { rto = \"1h\" }\n[inputs.release]\n\n[[steps]]\nid = \"roll-back\"\nkind = \"exec\"\nestimate = \"1m\"\nwith = { command = [\"sh\", \"-c\", \"helm rollback api {{inputs.release}}\"] }\n";
    let plan = plan_from_source(&SourceFile::new("plan.toml", text)).expect("valid");
    let diagnostics = lint(&plan);
    assert_eq!(codes(&diagnostics), ["DRP012"]);
    let help = diagnostics[0].help.as_deref().unwrap();
    assert!(help.contains("[\"sh\", \"-c\", '... \"$1\" ...', \"sh\", \"{{inputs.release}}\"]"), "{help}");
}

/// A side restore of tododb (`clean` too, which a side copy makes harmless), then the
/// steps given, then a swap needing `swap_needs`, with `swap_with` added to its `with`,
/// and a check of the live database after it.
fn side_then_swap(between: &str, swap_needs: &str, swap_with: &str) -> String {
    format!(
        "{HEAD}steps:\n  - {{ id: fetch, kind: s3.fetch, with: {{ bucket: b, key: latest }} }}\n  - {{ id: restore, kind: pg.restore, needs: [fetch], with: {{ dump: \"{{{{steps.fetch.outputs.path}}}}\", database: tododb, into: side, clean: true }} }}\n{between}  - {{ id: swap, kind: pg.swap, needs: [{swap_needs}], with: {{ database: tododb, replacement: \"{{{{steps.restore.outputs.database}}}}\"{swap_with} }} }}\n  - {{ id: after, kind: pg.query, needs: [swap], with: {{ database: tododb, assert: [ {{ sql: 'select 1', expect: '= 1' }} ] }} }}\n"
    )
}

const CHECK_RESTORED: &str = "  - { id: check, kind: pg.query, needs: [restore], with: { database: \"{{steps.restore.outputs.database}}\", assert: [ { sql: 'select count(*) from users', expect: '> 0' } ] } }\n";

#[test]
fn a_side_restore_swapped_in_with_the_previous_kept_needs_no_safety_backup() {
    assert!(lint_text(&side_then_swap(CHECK_RESTORED, "check", "")).is_empty());
    assert!(lint_text(&side_then_swap(CHECK_RESTORED, "check", ", keep_previous: true")).is_empty());
    // Dropping the previous database is what overwrites the live one: DRP002 on the flag.
    let dropped = lint_text(&side_then_swap(CHECK_RESTORED, "check", ", keep_previous: false"));
    assert_eq!(codes(&dropped), ["DRP002"]);
    assert_eq!(labelled(&dropped[0]), "false");
    assert!(dropped[0].message.contains("database `tododb`"), "{}", dropped[0].message);
    // ... unless a dump of the live database runs before the swap.
    let dump = "  - { id: safety, kind: pg.dump, with: { database: tododb } }\n";
    let backed_up = format!("{dump}{CHECK_RESTORED}");
    assert!(lint_text(&side_then_swap(&backed_up, "check, safety", ", keep_previous: false")).is_empty());
    // A restore whose `into` is known only at run time is taken as overwriting its target.
    let unknown = side_then_swap(CHECK_RESTORED, "check", "")
        .replace("into: side", "into: \"{{inputs.into}}\"")
        .replace(
            "objectives: { rto: 1h }\n",
            "objectives: { rto: 1h }\ninputs: { into: { description: where } }\n",
        );
    assert_eq!(codes(&lint_text(&unknown)), ["DRP002"]);
}

#[test]
fn a_swap_needs_a_check_of_the_replacement_upstream() {
    let unchecked = lint_text(&side_then_swap("", "restore", ""));
    assert_eq!(codes(&unchecked), ["DRP013"]);
    let help = unchecked[0].help.as_deref().unwrap();
    assert!(help.contains("`pg.query`") && help.contains("`needs` of `swap`"), "{help}");
    // A check of the live database does not vouch for the replacement.
    let live = CHECK_RESTORED.replace("\"{{steps.restore.outputs.database}}\"", "tododb");
    assert_eq!(codes(&lint_text(&side_then_swap(&live, "check", ""))), ["DRP013"]);
    // A check that exists but does not run before the swap does not count.
    assert_eq!(codes(&lint_text(&side_then_swap(CHECK_RESTORED, "restore", ""))), ["DRP013"]);
    // Known names are compared.
    let named = |checked: &str| {
        format!(
            "{HEAD}steps:\n  - {{ id: check, kind: pg.query, with: {{ database: {checked}, assert: [ {{ sql: 'select 1', expect: '= 1' }} ] }} }}\n  - {{ id: swap, kind: pg.swap, needs: [check], with: {{ database: tododb, replacement: tododb_new }} }}\n"
        )
    };
    assert!(lint_text(&named("tododb_new")).is_empty());
    assert_eq!(codes(&lint_text(&named("tododb"))), ["DRP013"]);
}

#[test]
fn a_state_bucket_elsewhere_or_local_state_is_no_finding() {
    let plan = load_plan(&Path::new(FIXTURES).join("DRP014.yaml")).expect("valid");
    for state in
        [None, Some("s3://festivals-dr-state-eu-west-2/runs"), Some("/var/lib/dr-plan"), Some(".dr-plan")]
    {
        let found = dr_plan::lint::lint_with_state(&plan, state);
        assert!(codes(&found).is_empty(), "{state:?}: {found:#?}");
    }
}

#[test]
fn lint_reads_the_state_dir_from_the_flag_and_the_environment() {
    let fixture = Path::new(FIXTURES).join("DRP014.yaml");
    let fixture = fixture.to_str().unwrap();
    let flag = std::process::Command::new(env!("CARGO_BIN_EXE_dr-plan"))
        .args(["lint", fixture, "--state-dir", STATE, "--format", "json"])
        .env_remove("DR_PLAN_STATE_DIR")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&flag.stdout).contains("\"DRP014\""), "{flag:?}");
    let environment = std::process::Command::new(env!("CARGO_BIN_EXE_dr-plan"))
        .args(["lint", fixture, "--format", "json"])
        .env("DR_PLAN_STATE_DIR", STATE)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&environment.stdout).contains("\"DRP014\""), "{environment:?}");
    let without = std::process::Command::new(env!("CARGO_BIN_EXE_dr-plan"))
        .args(["lint", fixture, "--format", "json"])
        .env_remove("DR_PLAN_STATE_DIR")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&without.stdout).contains("\"DRP014\""), "{without:?}");
}

#[test]
fn a_restore_streamed_without_verification_is_an_unverified_input() {
    for (fixture, labelled_text) in
        [("DRP001-from-s3", "none"), ("DRP001-from-server", "\"postgresql://restore@standby.internal:5432\"")]
    {
        let diagnostics = lint_fixture(&format!("{fixture}.yaml"));
        assert_eq!(codes(&diagnostics), ["DRP001"], "{fixture}: {diagnostics:#?}");
        assert_eq!(labelled(&diagnostics[0]), labelled_text, "{fixture}");
        insta::assert_snapshot!(format!("human_{fixture}"), normalise(&diagnostics[0].render(false)));
    }
    // A server made by a step of the plan is vouched for by that step.
    let text = format!(
        "{HEAD}steps:\n  - {{ id: made, kind: exec, with: {{ command: [echo, postgresql://127.0.0.1:5999] }} }}\n  - {{ id: restore, kind: pg.restore, needs: [made], with: {{ database: db, into: side, from_server: {{ connection: \"{{{{steps.made.outputs.stdout}}}}\", database: db }} }} }}\n{CHECK}"
    );
    assert!(codes(&lint_text(&text)).iter().all(|code| *code != "DRP001"), "{:#?}", lint_text(&text));
}
