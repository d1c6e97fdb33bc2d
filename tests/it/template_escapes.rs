//! `\{{` is a literal `{{` in every string, also in one whose every `{{` is escaped (a
//! `kubectl -o go-template=` argument): the program receives the braces, not the backslash.

use std::process::Command;

#[test]
fn an_escaped_brace_reaches_the_program_without_its_backslash() {
    let directory = tempfile::tempdir().unwrap();
    let plan = directory.path().join("escapes.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: escapes\nsteps:\n  - id: show\n    kind: exec\n    with:\n      command: [echo, \
         '-o=go-template=\\{{.status.phase}}']\n",
    )
    .unwrap();
    let binary = env!("CARGO_BIN_EXE_dr-plan");
    let dry_run = Command::new(binary).arg("dry-run").arg(&plan).output().unwrap();
    let shown = String::from_utf8_lossy(&dry_run.stdout);
    assert!(shown.contains("run `echo -o=go-template={{.status.phase}}`"), "{shown}");

    let state = directory.path().join("state");
    let run = Command::new(binary)
        .arg("run")
        .arg(&plan)
        .arg("--yes")
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let runs = std::fs::read_dir(state.join("runs")).unwrap().next().unwrap().unwrap().path();
    let journal = std::fs::read_to_string(runs.join("journal.jsonl")).unwrap();
    assert!(journal.contains(r#""stdout":"-o=go-template={{.status.phase}}""#), "{journal}");
}
