//! `dr-plan verify RUN_ID`: the journal is a hash chain from the plan snapshot; the
//! command says it holds, or names the first event that does not match — an event
//! changed, removed or reordered, or the snapshot replaced.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PLAN: &str = "version: 1\nname: chained\nsteps:\n  - id: first\n    kind: sleep\n    with: { duration: 10ms }\n  \
                    - id: second\n    kind: sleep\n    needs: [first]\n    with: { duration: 10ms }\n";

fn dr_plan(arguments: &[&str], state: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dr-plan"))
        .args(arguments)
        .arg("--state-dir")
        .arg(state)
        .output()
        .expect("dr-plan runs")
}

/// A finished run: its id and its journal.
fn finished_run(directory: &Path) -> (String, PathBuf) {
    let plan = directory.join("chained.yaml");
    std::fs::write(&plan, PLAN).unwrap();
    let state = directory.join("state");
    let run = dr_plan(&["run", plan.to_str().unwrap(), "--yes"], &state);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let run_dir = std::fs::read_dir(state.join("runs")).unwrap().next().unwrap().unwrap().path();
    let id = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    (id, run_dir.join("journal.jsonl"))
}

/// A run blocked at its approval (no terminal, no `--approve`): its directory.
fn blocked_at_an_approval(directory: &Path, state: &Path) -> PathBuf {
    let plan = directory.join("gated.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: gated\nsteps:\n  - id: ok\n    kind: approval\n    with: { prompt: go? }\n  - id: after\n    \
         kind: sleep\n    needs: [ok]\n    with: { duration: 10ms }\n",
    )
    .unwrap();
    let blocked = dr_plan(&["run", plan.to_str().unwrap(), "--yes"], state);
    assert_eq!(blocked.status.code(), Some(3), "{}", String::from_utf8_lossy(&blocked.stderr));
    std::fs::read_dir(state.join("runs")).unwrap().next().unwrap().unwrap().path()
}

fn verify(id: &str, directory: &Path) -> (i32, String) {
    let output = dr_plan(&["verify", id], &directory.join("state"));
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn an_untouched_journal_verifies_and_names_its_head() {
    let directory = tempfile::tempdir().unwrap();
    let (id, journal) = finished_run(directory.path());
    let (code, text) = verify(&id, directory.path());
    assert_eq!(code, 0, "{text}");
    let events = std::fs::read_to_string(&journal).unwrap().lines().count();
    assert!(text.contains(&format!("journal intact, {events} events")), "{text}");
    assert!(text.contains("head "), "{text}");
}

#[test]
fn a_changed_removed_or_reordered_event_is_named() {
    let directory = tempfile::tempdir().unwrap();
    let (id, journal) = finished_run(directory.path());
    let original = std::fs::read_to_string(&journal).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() >= 5, "{original}");
    let rewrite = |lines: &[String]| std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    let owned: Vec<String> = lines.iter().map(|line| (*line).to_owned()).collect();

    // Changed: a step's duration edited in line 3; line 4 no longer chains to it.
    let mut changed = owned.clone();
    changed[2] = changed[2].replacen("\"attempt\":1", "\"attempt\":2", 1);
    assert_ne!(changed[2], owned[2], "line 3 is a step event: {}", owned[2]);
    rewrite(&changed);
    let (code, text) = verify(&id, directory.path());
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("journal.jsonl:4: its `prev` is not the hash of line 3"), "{text}");

    // Removed: line 2 gone; what was line 3 (now 2) does not chain to line 1.
    let mut removed = owned.clone();
    removed.remove(1);
    rewrite(&removed);
    let (code, text) = verify(&id, directory.path());
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("journal.jsonl:2:"), "{text}");

    // Reordered: lines 2 and 3 swapped.
    let mut reordered = owned.clone();
    reordered.swap(1, 2);
    rewrite(&reordered);
    let (code, text) = verify(&id, directory.path());
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("journal.jsonl:2:"), "{text}");

    // The snapshot replaced: the first event no longer chains to it.
    rewrite(&owned);
    std::fs::write(journal.with_file_name("plan.snapshot"), PLAN.replace("10ms", "20ms")).unwrap();
    let (code, text) = verify(&id, directory.path());
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("journal.jsonl:1: its `prev` is not the hash of plan.snapshot"), "{text}");
}

#[test]
fn a_resumed_run_keeps_one_chain() {
    let directory = tempfile::tempdir().unwrap();
    let state = directory.path().join("state");
    let run_dir = blocked_at_an_approval(directory.path(), &state);
    let id = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    let resumed = dr_plan(&["resume", &id, "--approve", "ok", "--yes"], &state);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let (code, text) = verify(&id, directory.path());
    assert_eq!(code, 0, "{text}");
}

#[test]
fn an_unknown_run_is_a_usage_error_naming_the_status_command() {
    let directory = tempfile::tempdir().unwrap();
    let (code, text) = verify("nothing-20260101-000000-abcd", directory.path());
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("lists the runs"), "{text}");
}

#[test]
fn the_report_shows_the_head_and_whether_the_chain_holds() {
    let directory = tempfile::tempdir().unwrap();
    let (id, journal) = finished_run(directory.path());
    let state = directory.path().join("state");
    let markdown = String::from_utf8_lossy(&dr_plan(&["report", &id], &state).stdout).into_owned();
    assert!(markdown.contains("| Journal | intact ("), "{markdown}");
    let json: serde_json::Value =
        serde_json::from_slice(&dr_plan(&["report", &id, "--format", "json"], &state).stdout).unwrap();
    assert_eq!(json["journal"]["verified"], true, "{json}");
    assert_eq!(json["journal"]["head"].as_str().map(str::len), Some(64), "{json}");

    let text = std::fs::read_to_string(&journal).unwrap();
    std::fs::write(&journal, text.replacen("\"attempt\":1", "\"attempt\":2", 1)).unwrap();
    let markdown = String::from_utf8_lossy(&dr_plan(&["report", &id], &state).stdout).into_owned();
    assert!(markdown.contains("**does not match its hash chain** at line"), "{markdown}");
}

#[test]
fn resume_refuses_a_journal_whose_chain_is_broken() {
    let directory = tempfile::tempdir().unwrap();
    let state = directory.path().join("state");
    let run_dir = blocked_at_an_approval(directory.path(), &state);
    let id = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    let journal = run_dir.join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(1, 2);
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();

    let refused = dr_plan(&["resume", &id, "--approve", "ok", "--yes"], &state);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("journal.jsonl:2: the journal does not match its hash chain"), "{stderr}");
    assert!(stderr.contains("resume refuses to act on an altered record"), "{stderr}");
    assert!(stderr.contains(&format!("dr-plan verify {id} --state-dir")), "{stderr}");
}

#[test]
fn a_blank_line_is_no_tampering_and_status_offers_the_check_not_a_resume_when_the_chain_breaks() {
    let directory = tempfile::tempdir().unwrap();
    let state = directory.path().join("state");
    let run_dir = blocked_at_an_approval(directory.path(), &state);
    let id = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    let journal = run_dir.join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    std::fs::write(&journal, format!("{text}\n")).unwrap();
    let (code, output) = verify(&id, directory.path());
    assert_eq!(code, 0, "{output}");

    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(1, 2);
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    let status = dr_plan(&["status", &id], &state);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(shown.contains("| Journal | **does not match its hash chain** at line 2"), "{shown}");
    let next = format!("next: `dr-plan verify {id} --state-dir {}`", state.display());
    assert!(shown.contains(&next), "{shown}");
}
