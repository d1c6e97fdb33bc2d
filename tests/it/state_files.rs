//! The state directory against hostile or unlucky conditions: run ids that try to
//! leave it, a permissive umask, three operators breaking the same stale lock at once,
//! and a journal that tells the steps out of order.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support;

use support::sandbox::{Sandbox, text};

/// A working directory with `once.yaml` and `order.yaml`, and the relative state
/// directory `state`.
fn desk() -> Sandbox {
    let desk = Sandbox::new(&["state", "run"]).with_relative_state("state");
    desk.plan("once.yaml");
    desk.plan("order.yaml");
    desk
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|error| panic!("{}: {error}", path.display())).permissions().mode()
        & 0o777
}

#[test]
fn run_ids_are_checked_before_any_path_is_built() {
    let desk = desk();
    for run_id in ["../..", "/etc", "..", "a/../../b", "run\nid", "", "x\u{1b}[2J"] {
        for arguments in [vec!["status", run_id], vec!["report", run_id], vec!["resume", run_id, "--yes"]] {
            let output = desk.command(&arguments).output().expect("dr-plan runs");
            assert_eq!(output.status.code(), Some(2), "{arguments:?}: {}", text(&output));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("is not a run id"), "{arguments:?}: {stderr}");
        }
    }
}

#[test]
fn the_state_directory_is_private_whatever_the_umask() {
    let desk = desk();
    let log = format!("log={}", desk.path("log").display());
    let command = desk.command(&["run", "once.yaml", "--yes", "--var", &log]);
    // A permissive umask, as in a container or a careless shell profile.
    let output = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(command.get_program())
        .args(command.get_args())
        .current_dir(desk.root.path())
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let run = desk.path("state/runs").join(&desk.run_ids()[0]);
    for directory in [desk.path("state"), desk.path("state/runs"), desk.path("state/locks"), run.clone()] {
        assert_eq!(mode(&directory), 0o700, "{}", directory.display());
    }
    for file in [run.join("journal.jsonl"), run.join("plan.snapshot")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    // Everything else the run wrote (step logs) too.
    for entry in std::fs::read_dir(&run).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), if path.is_dir() { 0o700 } else { 0o600 }, "{}", path.display());
    }
}

#[test]
fn three_operators_breaking_one_stale_lock_run_the_step_once() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    for trial in 0..8 {
        let desk = desk();
        let mut gone = Command::new("true").spawn().unwrap();
        let dead_pid = gone.id();
        gone.wait().unwrap();
        std::fs::create_dir_all(desk.path("state/locks")).unwrap();
        let stale = serde_json::json!({
            "user": "ghost", "host": host, "pid": dead_pid, "since": "2026-01-01T00:00:00.000Z", "run_id": "once-old"
        });
        std::fs::write(desk.path("state/locks/once.lock"), stale.to_string()).unwrap();
        let log = format!("log={}", desk.path("log").display());
        let children: Vec<_> = (0..3)
            .map(|_| {
                desk.command(&["run", "once.yaml", "--yes", "--break-stale-lock", "--var", &log])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("dr-plan starts")
            })
            .collect();
        let outputs: Vec<Output> =
            children.into_iter().map(|child| child.wait_with_output().unwrap()).collect();
        let log = std::fs::read_to_string(desk.path("log")).unwrap_or_default();
        let winners = outputs.iter().filter(|output| output.status.code() == Some(0)).count();
        let report: Vec<String> = outputs.iter().map(text).collect();
        // One run at a time: never two at once. A loser that came after the winner
        // finished may run the plan again, strictly after it.
        assert!(winners >= 1, "trial {trial}: nobody ran\n{}", report.join("\n"));
        assert_eq!(log.lines().count(), winners, "trial {trial}: {log}\n{}", report.join("\n"));
        for output in outputs.iter().filter(|output| output.status.code() != Some(0)) {
            assert_eq!(output.status.code(), Some(3), "trial {trial}: {}", text(output));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("already being run by") || stderr.contains("stale"), "{stderr}");
        }
        // The stale lock was broken once at most (the one who broke it may still lose the
        // race to take the lock afterwards, and then stops like the others).
        let broke = desk
            .run_ids()
            .iter()
            .map(|run| {
                std::fs::read_to_string(desk.path("state/runs").join(run).join("journal.jsonl")).unwrap()
            })
            .filter(|journal| journal.contains("lock_broken"))
            .count();
        assert!(broke <= 1, "trial {trial}: {broke} runs say they broke the one stale lock");
    }
}

#[test]
fn a_journal_that_tells_steps_out_of_order_is_refused_naming_the_line() {
    let desk = desk();
    let output = desk.command(&["run", "order.yaml", "--yes"]).output().expect("dr-plan runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let run = desk.run_ids().remove(0);
    let journal = desk.path("state/runs").join(&run).join("journal.jsonl");
    // Keep the start of the run and the start of its last step, as if the lines between
    // were lost; mark it failed so resume takes it up.
    let lines: Vec<String> = std::fs::read_to_string(&journal).unwrap().lines().map(str::to_owned).collect();
    let last_start = lines.iter().rposition(|line| line.contains("\"step_started\"")).unwrap();
    // Without `prev` fields, as a journal written before hash chains: the order check,
    // not the chain, must catch it (a chained journal is refused earlier, by its chain).
    let unchained = |line: &str| {
        let mut event: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
        event.remove("prev");
        serde_json::to_string(&event).unwrap()
    };
    let damaged = [unchained(&lines[0]), unchained(&lines[last_start])].join("\n") + "\n";
    std::fs::write(&journal, damaged).unwrap();
    let resumed =
        desk.command(&["resume", &run, "--yes", "--rerun-interrupted"]).output().expect("dr-plan runs");
    assert_eq!(resumed.status.code(), Some(2), "{}", text(&resumed));
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(stderr.contains("journal.jsonl:2:") && stderr.contains("had finished"), "{stderr}");
}
