//! Secrets of every shape an operator may hand dr-plan — multi-line keys, JSON,
//! whitespace at either end, unicode, quotes, shell syntax, one secret the beginning of
//! another, one longer than the 64 KiB output cap — each run through
//! `tests/fixtures/secrets/shapes.yaml` by the real binary: printed by `exec` steps on
//! stdout and stderr, in argv, hex- and base64-encoded, cut by the cap, in a failing
//! step's error and through a later step. Then `resume`, `status` and `report` (JSON,
//! markdown, metrics) are run too, and no byte sequence of the secret, of its trimmed
//! lines or of its hex and base64 forms may appear in their output or in any file under
//! the state directory.

use crate::support;

use std::path::Path;

use serde_json::Value as Json;
use support::TargetRedis;
use support::sandbox::{Finished, files_under, finish};

/// `exec` keeps at most this much standard output.
const STDOUT_CAP: usize = 64 * 1024;

/// The fewest characters of a secret (trimmed); also the shortest line of a
/// multi-line secret that dr-plan looks for on its own.
const MINIMUM_LENGTH: usize = 6;

/// The plan's second secret, unless a shape needs it.
const OTHER: &str = "other-unrelated-value-9";

/// A sandbox with a copy of the plan, its state directory and secret file.
struct Sandbox(support::sandbox::Sandbox);

impl std::ops::Deref for Sandbox {
    type Target = support::sandbox::Sandbox;
    fn deref(&self) -> &support::sandbox::Sandbox {
        &self.0
    }
}

/// Where the secret `shape` comes from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// `DR_PLAN_SHAPE` holds the value.
    Environment,
    /// A file with this content (its first line is the value).
    File(&'a str),
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox(support::sandbox::Sandbox::new(&["secrets"]))
    }

    /// Copies the plan, with `shape` read from `source`, and returns its file name.
    fn plan(&self, source: Source<'_>) -> String {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/secrets/shapes.yaml");
        let mut text = std::fs::read_to_string(&fixture).expect("the fixture");
        if let Source::File(content) = source {
            std::fs::write(self.path("shape.secret"), content).unwrap();
            let declared = "shape: { env: DR_PLAN_SHAPE }";
            assert!(text.contains(declared));
            text = text.replace(declared, "shape: { file: shape.secret }");
        }
        std::fs::write(self.path("shapes.yaml"), text).unwrap();
        "shapes.yaml".to_owned()
    }

    /// `dr-plan ARGUMENTS --state-dir …` with both secrets in the environment.
    fn dr_plan(&self, arguments: &[&str], shape: &str, other: &str) -> Finished {
        let mut command = self.command(arguments);
        command.env("DR_PLAN_SHAPE", shape).env("DR_PLAN_OTHER", other);
        finish(command)
    }
}

/// What must appear nowhere: the secret as text (whole, trimmed, and each trimmed line
/// of at least [`MINIMUM_LENGTH`] characters), also as JSON, markdown and Prometheus
/// escape it, and any [`WINDOW`] bytes of those (the part of a long secret that a cut
/// would leave); and its encodings, looked for in text with line breaks removed (tools
/// wrap them).
struct Forbidden {
    text: Vec<String>,
    windows: std::collections::HashSet<Vec<u8>>,
    encoded: Vec<String>,
}

/// Long enough that the plan's own text (`{{secrets.`) is never taken for part of a
/// secret; shorter leaks of short secrets are what the whole-value needles and the
/// `capped` step's exact output check.
const WINDOW: usize = 32;

impl Forbidden {
    fn of(value: &str) -> Forbidden {
        let trimmed = value.trim();
        let mut plain = vec![value.to_owned(), trimmed.to_owned()];
        plain.extend(
            value
                .lines()
                .map(str::trim)
                .filter(|line| line.chars().count() >= MINIMUM_LENGTH)
                .map(str::to_owned),
        );
        let mut text = Vec::new();
        for item in plain {
            let json = serde_json::to_string(&item).unwrap();
            text.push(json[1..json.len() - 1].to_owned());
            text.push(item.replace('|', "\\|").replace('<', "&lt;").replace('>', "&gt;").replace('\n', " "));
            text.push(item.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"));
            text.push(item);
        }
        let mut encoded = Vec::new();
        for form in [value.to_owned(), trimmed.to_owned(), format!("{value}\n"), format!("{trimmed}\n")] {
            let bytes = form.as_bytes();
            encoded.push(hex::encode(bytes));
            encoded.push(hex::encode_upper(bytes));
            for url_safe in [false, true] {
                let padded = base64(bytes, url_safe);
                encoded.push(padded.trim_end_matches('=').to_owned());
                encoded.push(padded);
                // Inside a longer encoded stream, only the 4-character groups made of the
                // secret's bytes alone are fixed: at each of the three alignments, from
                // its first group boundary to its last. Two groups at least.
                for skipped in 0..3 {
                    let inner = &bytes[skipped.min(bytes.len())..];
                    let inner = base64(&inner[..inner.len() / 3 * 3], url_safe);
                    if inner.len() >= 8 {
                        encoded.push(inner);
                    }
                }
            }
        }
        text.sort();
        text.dedup();
        encoded.sort();
        encoded.dedup();
        text.retain(|needle| !needle.is_empty());
        let windows =
            text.iter().flat_map(|needle| needle.as_bytes().windows(WINDOW).map(<[u8]>::to_vec)).collect();
        Forbidden { text, windows, encoded }
    }

    /// The first forbidden sequence in `haystack`.
    fn found_in(&self, haystack: &str) -> Option<String> {
        let unwrapped: String =
            haystack.chars().filter(|character| !matches!(character, '\n' | '\r')).collect();
        self.text
            .iter()
            .find(|needle| haystack.contains(needle.as_str()))
            .or_else(|| self.encoded.iter().find(|needle| unwrapped.contains(needle.as_str())))
            .cloned()
            .or_else(|| {
                haystack
                    .as_bytes()
                    .windows(WINDOW)
                    .find(|window| self.windows.contains(*window))
                    .map(|window| String::from_utf8_lossy(window).into_owned())
            })
    }
}

/// RFC 4648 base64, padded; URL-safe alphabet when asked.
fn base64(bytes: &[u8], url_safe: bool) -> String {
    let alphabet: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        .chars()
        .chain(if url_safe { ['-', '_'] } else { ['+', '/'] })
        .collect();
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let mut bits = 0_u32;
        for index in 0..3 {
            bits = (bits << 8) | u32::from(group.get(index).copied().unwrap_or(0));
        }
        for position in 0..4 {
            if position <= group.len() {
                out.push(alphabet[((bits >> (18 - 6 * position)) & 63) as usize]);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Runs the plan with `shape` (from `source`) and `other`, then resumes it and asks
/// for its status and reports, and checks that neither secret shows anywhere.
fn check(value: &str, source: Source<'_>, other: &str) {
    let sandbox = Sandbox::new();
    let plan = sandbox.plan(source);
    let shape_variable = match source {
        Source::Environment => value,
        Source::File(_) => "unused",
    };
    let run = |arguments: &[&str]| sandbox.dr_plan(arguments, shape_variable, other);
    // The cap falls in the middle of the secret.
    let filler = STDOUT_CAP.saturating_sub(value.len() / 2);
    let filler_argument = format!("filler={filler}");
    let run_metrics = sandbox.state_dir().join("run.prom").display().to_string();
    let report_metrics = sandbox.state_dir().join("report.prom").display().to_string();
    let mut printed = Vec::new();

    let first = run(&[
        "run",
        &plan,
        "--yes",
        "--format",
        "json",
        "--var",
        &filler_argument,
        "--metrics-file",
        &run_metrics,
    ]);
    assert_eq!(first.code, 1, "`fail` fails, the run completes with failures: {first}");
    for line in first.stdout.lines() {
        let event: Json = serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"));
        assert!(event["event"].is_string(), "{line}");
    }
    printed.push(first);
    let run_id = sandbox.only_run();
    let resumed = run(&["resume", &run_id]);
    assert_eq!(resumed.code, 1, "`fail` fails again: {resumed}");
    assert!(resumed.stderr.contains("stderr: failing with ***"), "{resumed}");
    printed.push(resumed);
    for arguments in [
        &["status"][..],
        &["status", "--format", "json"],
        &["status", &run_id],
        &["status", &run_id, "--format", "json"],
        &["report", &run_id, "--format", "markdown"],
        &["report", &run_id, "--format", "json", "--metrics-file", &report_metrics],
    ] {
        let shown = run(arguments);
        assert_eq!(shown.code, 0, "{arguments:?}: {shown}");
        printed.push(shown);
    }

    // The secrets did flow: redacted where they were printed, and the cap was moved
    // before the secret rather than through it.
    let journal =
        std::fs::read_to_string(sandbox.state_dir().join("runs").join(&run_id).join("journal.jsonl"))
            .expect("the journal");
    let records: Vec<Json> = journal.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let output = |step: &str| {
        records
            .iter()
            .find(|record| record["event"] == "step_succeeded" && record["step"] == step)
            .map(|record| record["outputs"]["stdout"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|| panic!("`{step}` succeeded"))
    };
    // (A secret longer than the cap is all that a cut output could hold: it is cut before.)
    let cut_before = |text: &str| text == "… [truncated]" || text == "argv: … [truncated]";
    assert!(output("argv").starts_with("argv: ***") || cut_before(&output("argv")), "{}", output("argv"));
    assert_eq!(output("capped"), format!("{}… [truncated]", "x".repeat(filler)));
    assert!(
        output("encode").lines().take(9).all(|line| line == "***" || cut_before(line)),
        "{}",
        output("encode")
    );
    assert!(
        records.iter().any(|record| record["event"] == "step_failed"
            && record["error"].as_str().is_some_and(|error| error.ends_with("stderr: failing with ***"))),
        "{journal}"
    );

    let files = files_under(&sandbox.state_dir());
    assert!(files.iter().any(|file| file.ends_with("encode.stderr.log")), "{files:?}");
    assert!(files.iter().any(|file| file.ends_with("report.prom")), "{files:?}");
    for secret in [value, other] {
        let forbidden = Forbidden::of(secret);
        for file in &files {
            let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
            if let Some(found) = forbidden.found_in(&text) {
                panic!("{} holds {found:?} of a secret", file.display());
            }
        }
        for finished in &printed {
            for text in [&finished.stdout, &finished.stderr] {
                if let Some(found) = forbidden.found_in(text) {
                    panic!("printed {found:?} of a secret: {finished}");
                }
            }
        }
    }
}

fn check_environment(value: &str) {
    check(value, Source::Environment, OTHER);
}

#[test]
fn a_multi_line_pem_private_key() {
    check_environment(
        "-----BEGIN PRIVATE KEY-----\n\
         MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n\
         MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n\
         NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ\n\
         -----END PRIVATE KEY-----\n",
    );
}

#[test]
fn a_json_blob_with_newlines() {
    check_environment("{\n  \"user\": \"svc-restore\",\n  \"password\": \"Zx9!q-7Lm\"\n}");
}

#[test]
fn lines_with_trailing_whitespace() {
    check_environment("line-one-value   \n\tline-two-value\t\n");
}

#[test]
fn leading_and_trailing_spaces() {
    check_environment("   padded secret value   ");
}

#[test]
fn tabs() {
    check_environment("\ttab\tseparated\tsecret\t");
}

#[test]
fn a_trailing_newline_in_the_environment() {
    check_environment("env-secret-with-newline\n");
}

#[test]
fn a_secret_file_with_a_trailing_newline() {
    check("file-secret-Qw7", Source::File("file-secret-Qw7\n"), OTHER);
}

#[test]
fn a_secret_file_with_crlf_and_more_lines() {
    check("crlf secret Rt5 ", Source::File("crlf secret Rt5 \r\nnot the secret\r\n"), OTHER);
}

#[test]
fn unicode() {
    check_environment("pässwörd-日本語-🔑-e\u{301}");
}

#[test]
fn quotes_and_backslashes() {
    check_environment(r#"it's "quoted" \back\slash\n"#);
}

#[test]
fn shell_metacharacters() {
    check_environment("$(touch pwned);`id`|&><*?[]{}~#!$HOME%s%n");
}

#[test]
fn template_syntax() {
    check_environment("{{secrets.other}}-{{ not a template }}");
}

#[test]
fn a_secret_that_begins_another() {
    check("prefix-secret", Source::Environment, "prefix-secret-and-more");
    check("prefix-secret-and-more", Source::Environment, "prefix-secret");
}

#[test]
fn a_secret_that_overlaps_another() {
    check("overlap-AAAA-BBBB", Source::Environment, "BBBB-CCCC-overlap");
}

#[test]
fn digits_only() {
    check_environment("8675309");
}

#[test]
fn asterisks_like_the_redaction() {
    check_environment("star***star");
}

#[test]
fn a_url_with_credentials() {
    check_environment("https://restore:p%40ss-W0rd@db.internal:5432/tododb?sslmode=require&x=1");
}

#[test]
fn a_value_that_is_already_base64() {
    check_environment("c2VjcmV0LXZhbHVlLWluLWJhc2U2NA==");
}

#[test]
fn a_leading_dash() {
    check_environment("--secret-flag=on");
}

#[test]
fn longer_than_the_output_cap() {
    // Not a repetition: a periodic secret would match itself at many offsets.
    let mut state = 0x2545_f491_u32;
    let value: String = (0..STDOUT_CAP + 4000)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            char::from(
                b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"[(state >> 26) as usize],
            )
        })
        .collect();
    check_environment(&value);
}

/// `DR_PLAN_SHAPE` of 5 characters: run and resume refuse it (exit 2), naming the secret
/// and the rule, and never showing the value.
#[test]
fn a_secret_shorter_than_six_characters_is_refused_by_run_and_resume() {
    for (value, source) in [
        ("abcde", Source::Environment),
        ("  abcde \t", Source::Environment),
        ("unused", Source::File("abcde\nrest of the file is not the secret\n")),
    ] {
        let sandbox = Sandbox::new();
        let plan = sandbox.plan(source);
        let refused = sandbox.dr_plan(&["run", &plan, "--yes"], value, OTHER);
        assert_eq!(refused.code, 2, "{refused}");
        assert!(refused.stderr.contains("secret `shape`: "), "{refused}");
        assert!(refused.stderr.contains("holds 5 characters, and a secret needs at least 6"), "{refused}");
        assert!(!refused.stderr.contains("abcde") && !refused.stdout.contains("abcde"), "{refused}");
        assert!(!sandbox.state_dir().join("runs").exists(), "nothing is written: {refused}");
    }

    let sandbox = Sandbox::new();
    let plan = sandbox.plan(Source::Environment);
    let first = sandbox.dr_plan(&["run", &plan, "--yes"], "long-enough", OTHER);
    assert_eq!(first.code, 1, "{first}");
    let run_id = sandbox.only_run();
    let refused = sandbox.dr_plan(&["resume", &run_id], "long-enough", "zq7x9");
    assert_eq!(refused.code, 2, "{refused}");
    assert!(
        refused.stderr.contains(
            "secret `other`: environment variable DR_PLAN_OTHER holds 5 characters, and a secret needs at least 6 \
             (leading and trailing whitespace not counted)"
        ),
        "{refused}"
    );
    assert!(!refused.stderr.contains("zq7x9"), "{refused}");
}

/// A step's own progress notes reach the terminal without going through the journal:
/// `redis.restore` says which command starts Redis again, `--requirepass` and all.
#[test]
fn a_secret_in_a_progress_note_is_redacted() {
    let password = "redis-pass-Hq4xZ81";
    let target = TargetRedis::start(Some(password));
    let sandbox = Sandbox::new();
    let rdb = sandbox.path("backup.rdb");
    // An RDB made by the target itself: one key.
    assert_eq!(target.cli(&["SET", "user:1", "ada"]), "OK");
    assert_eq!(target.cli(&["SAVE"]), "OK");
    std::fs::copy(target.dir().join("dump.rdb"), &rdb).unwrap();
    let start: Vec<String> = target
        .start_argv()
        .into_iter()
        .map(|argument| if argument == password { "{{secrets.redis}}".to_owned() } else { argument })
        .map(|argument| serde_json::to_string(&argument).unwrap())
        .collect();
    let plan = format!(
        "version: 1\nname: redis-note\nsecrets:\n  redis: {{ env: DR_PLAN_SHAPE }}\nsteps:\n  - id: restore\n    \
         kind: redis.restore\n    with:\n      rdb: {rdb:?}\n      dir: {dir:?}\n      url: \
         \"redis://:{{{{secrets.redis}}}}@127.0.0.1:{port}\"\n      start: [{start}]\n      deadline: 30s\n",
        rdb = rdb.display().to_string(),
        dir = target.dir().display().to_string(),
        port = target.port,
        start = start.join(", "),
    );
    std::fs::write(sandbox.path("redis.yaml"), plan).unwrap();

    let finished = sandbox.dr_plan(&["run", "redis.yaml", "--yes", "--format", "json"], password, OTHER);
    assert_eq!(finished.code, 0, "{finished}");
    assert!(finished.stdout.contains("starting Redis: redis-server --port"), "the note is shown: {finished}");
    assert_eq!(target.cli(&["GET", "user:1"]), "ada");
    let forbidden = Forbidden::of(password);
    assert_eq!(forbidden.found_in(&finished.stdout), None, "{finished}");
    assert_eq!(forbidden.found_in(&finished.stderr), None, "{finished}");
    for file in files_under(&sandbox.state_dir()) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert_eq!(forbidden.found_in(&text), None, "{}", file.display());
    }
}
