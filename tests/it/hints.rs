//! The incident path followed the way an operator follows it: every `next:` command
//! the tool prints is run verbatim (through `sh -c`, with no terminal), and each
//! scenario reaches a finished run in at most two printed commands, plus the operator's
//! own fix where the scenario needs one. The state directory is a relative one that is
//! not the default, so every printed command must name it.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use dr_plan::engine::journal::{Event, RunStatus};

use crate::support;

use support::hints::{printed_command, run_printed};
use support::process::{free_port, wait_until};
use support::sandbox::{BINARY, Sandbox, text};

const STATE: &str = "team-state";

/// The operator's working directory of these tests: plans from `tests/fixtures/hints`
/// or `run`, and the state directory [`STATE`], relative.
struct Desk(Sandbox);

impl std::ops::Deref for Desk {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.0
    }
}

impl Desk {
    /// A working directory with the given fixtures.
    fn with(plans: &[&str]) -> Desk {
        let desk = Sandbox::new(&["hints", "run"]).with_relative_state(STATE);
        for plan in plans {
            desk.plan(plan);
        }
        Desk(desk)
    }

    /// `dr-plan ARGUMENTS --state-dir team-state` in the directory, to its end.
    fn dr_plan(&self, arguments: &[&str]) -> Output {
        self.command(arguments).output().expect("dr-plan runs")
    }

    /// Runs the `next:` command of `output` as printed.
    fn follow(&self, output: &Output) -> Output {
        let text =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        let command = printed_command(&text).unwrap_or_else(|| panic!("no next: command in\n{text}"));
        let state = self.path(STATE).display().to_string();
        assert!(
            command.contains(&format!("--state-dir {state}")),
            "the hint names the state directory: {command}"
        );
        run_printed(&command, self.root.path(), &[])
    }

    /// Starts `interrupt.yaml` and returns once its `long` step runs.
    fn start_long(&self) -> Child {
        let log = format!("log={}", self.path("log").display());
        let release = format!("release={}", self.path("release").display());
        let child = self
            .command(&["run", "interrupt.yaml", "--yes", "--var", &log, "--var", &release])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dr-plan starts");
        let started = wait_until(Duration::from_secs(20), || self.text("log").contains("long started"));
        assert!(started, "`long` never started");
        child
    }
}

fn kill_9(child: &mut Child) {
    child.kill().expect("kill -9 dr-plan alone");
    child.wait().expect("reap it");
}

#[test]
fn after_kill_9_mid_step_status_prints_the_one_command_that_finishes_the_run() {
    let desk = Desk::with(&["interrupt.yaml"]);
    let mut child = desk.start_long();
    kill_9(&mut child);
    let run_id = desk.only_run();
    // The operator comes back and asks where the run is.
    let status = desk.dr_plan(&["status", &run_id]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let command = printed_command(&String::from_utf8_lossy(&status.stdout)).expect("status ends with next:");
    assert_eq!(
        command,
        format!(
            "dr-plan resume {run_id} --break-stale-lock --rerun-interrupted --state-dir {}",
            desk.path(STATE).display()
        ),
        "{}",
        text(&status)
    );
    std::fs::write(desk.path("release"), "").unwrap();
    let resumed = desk.follow(&status);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_eq!(desk.state(&run_id).status, Some(RunStatus::Succeeded));
}

#[test]
fn a_stale_lock_met_by_a_new_run_points_to_the_complete_resume() {
    let desk = Desk::with(&["interrupt.yaml"]);
    let mut child = desk.start_long();
    kill_9(&mut child);
    let run_id = desk.only_run();
    // The next operator just starts the plan again.
    let again = desk.dr_plan(&["run", "interrupt.yaml", "--yes"]);
    assert_eq!(again.status.code(), Some(3), "{}", text(&again));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("stale lock"), "{stderr}");
    let command = stderr
        .split('`')
        .find(|part| part.starts_with("dr-plan resume"))
        .unwrap_or_else(|| panic!("a resume command in {stderr}"))
        .to_owned();
    assert_eq!(
        command,
        format!(
            "dr-plan resume {run_id} --break-stale-lock --rerun-interrupted --state-dir {}",
            desk.path(STATE).display()
        )
    );
    std::fs::write(desk.path("release"), "").unwrap();
    let resumed = run_printed(&command, desk.root.path(), &[]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
}

#[test]
fn a_failed_step_finishes_with_the_printed_command_once_the_cause_is_fixed() {
    let desk = Desk::with(&["copy.yaml"]);
    let missing = desk.path("backup.sql");
    let source = format!("source={}", missing.display());
    let failed = desk.dr_plan(&["run", "copy.yaml", "--yes", "--var", &source]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    // The operator's fix: the file was not there yet.
    std::fs::write(&missing, "data").unwrap();
    let resumed = desk.follow(&failed);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
}

#[test]
fn a_wrong_var_is_corrected_by_resume_unless_a_finished_step_used_it() {
    let desk = Desk::with(&["copy.yaml"]);
    std::fs::write(desk.path("good.sql"), "data").unwrap();
    let failed = desk.dr_plan(&["run", "copy.yaml", "--yes", "--var", "source=/no/such/backup.sql"]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let run_id = desk.only_run();

    // `label` was read by `announce`, which finished: refused, naming it.
    let refused = desk.dr_plan(&["resume", &run_id, "--var", "label=second"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("`announce` already ran with the old value of `label`")
    );

    // The operator's fix added to the printed command: the right source.
    let stderr = String::from_utf8_lossy(&failed.stderr);
    let command = printed_command(&stderr).expect("a next: command");
    let fixed = format!("{command} --var source=good.sql");
    let resumed = run_printed(&fixed, desk.root.path(), &[]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    let state = desk.state(&run_id);
    assert!(state.records.iter().any(|record| matches!(
        &record.event,
        Event::ValuesOverridden { values, .. } if values.get("source") == Some(&serde_json::json!("good.sql"))
    )));
}

#[test]
fn an_approval_block_shows_the_question_and_the_printed_command_grants_it() {
    let desk = Desk::with(&["approval.yaml"]);
    let blocked = desk.dr_plan(&["run", "approval.yaml", "--yes"]);
    assert_eq!(blocked.status.code(), Some(3), "{}", text(&blocked));
    let stderr = String::from_utf8_lossy(&blocked.stderr);
    assert!(stderr.contains("Switch traffic to the standby?"), "the question is shown: {stderr}");
    let run_id = desk.only_run();
    let status = desk.dr_plan(&["status", &run_id]);
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(status_text.contains("Switch traffic to the standby?"), "{status_text}");
    assert!(
        printed_command(&status_text).is_some_and(|command| command.contains("--approve gate")),
        "{status_text}"
    );
    let granted = desk.follow(&blocked);
    assert_eq!(granted.status.code(), Some(0), "{}", text(&granted));
}

#[test]
fn a_step_marked_done_by_hand_is_journaled_and_its_outputs_are_not_invented() {
    let desk = Desk::with(&["marked.yaml"]);
    let release = format!("release={}", desk.path("release").display());
    let mut child = desk
        .command(&["run", "marked.yaml", "--yes", "--var", &release])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dr-plan starts");
    assert!(desk.wait_step_started("long", Duration::from_secs(20)), "`long` never started");
    let run_id = desk.only_run();
    kill_9(&mut child);

    let no_reason = desk.dr_plan(&["resume", &run_id, "--break-stale-lock", "--mark-done", "long"]);
    assert_eq!(no_reason.status.code(), Some(2), "{}", text(&no_reason));
    let reads = desk.dr_plan(&[
        "resume",
        &run_id,
        "--break-stale-lock",
        "--mark-done",
        "long",
        "--reason",
        "saw the dump in the bucket",
    ]);
    assert_eq!(reads.status.code(), Some(2), "{}", text(&reads));
    assert!(
        String::from_utf8_lossy(&reads.stderr)
            .contains("`after` reads `steps.long.outputs.stdout`, but `long` was marked done by hand"),
        "{}",
        text(&reads)
    );
    assert!(desk.state(&run_id).marked_done.is_empty(), "a refused resume writes nothing");
}

#[test]
fn marking_done_finishes_the_run_and_shows_in_status_and_report() {
    let desk = Desk::with(&["interrupt.yaml"]);
    let mut child = desk.start_long();
    kill_9(&mut child);
    let run_id = desk.only_run();
    let reason = "the orphan finished: the log says long end";
    let resumed =
        desk.dr_plan(&["resume", &run_id, "--break-stale-lock", "--mark-done", "long", "--reason", reason]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    let state = desk.state(&run_id);
    assert_eq!(state.marked_done.get("long").map(String::as_str), Some(reason));
    let report = desk.dr_plan(&["report", &run_id, "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).expect("report JSON");
    assert_eq!(report["marked_done"][0]["reason"], reason);
    assert!(report["marked_done"][0]["by"].as_str().is_some_and(|by| by.contains('@')));
    let status = desk.dr_plan(&["status", &run_id]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("done by hand") && status.contains(reason), "{status}");
}

#[test]
fn a_closed_stdout_never_panics_and_the_run_finishes() {
    let desk = Desk::with(&["interrupt.yaml"]);
    std::fs::write(desk.path("release"), "").unwrap();
    let release = format!("--var release={}", desk.path("release").display());
    let script = format!(
        "\"{BINARY}\" run interrupt.yaml --yes --format json {release} --state-dir {STATE} | head -1; \
         echo \"exit=${{PIPESTATUS[0]}}\" >&2; \"{BINARY}\" schema | head -1 >/dev/null; echo \"schema=${{PIPESTATUS[0]}}\" >&2"
    );
    let output =
        Command::new("bash").arg("-c").arg(&script).current_dir(desk.root.path()).output().expect("bash");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("exit=0") && stderr.contains("schema=0"), "{stderr}");
    assert_eq!(desk.state(&desk.only_run()).status, Some(RunStatus::Succeeded));
}

#[test]
fn a_run_that_did_not_recover_says_so_on_every_output() {
    let desk = Desk::with(&["copy.yaml"]);
    let failed = desk.dr_plan(&[
        "run",
        "copy.yaml",
        "--yes",
        "--var",
        "source=/no/such/file",
        "--metrics-file",
        "dr.prom",
    ]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("RTO not recovered") && !stderr.contains("met"), "{stderr}");
    let metrics = std::fs::read_to_string(desk.path("dr.prom")).unwrap();
    assert!(
        metrics.contains(r#"dr_plan_run_status{plan="copy",drill="false",status="failed"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"dr_plan_run_status{plan="copy",drill="false",status="succeeded"} 0"#),
        "{metrics}"
    );
    let report = desk.dr_plan(&["report", &desk.only_run()]);
    assert!(String::from_utf8_lossy(&report.stdout).contains("not recovered"));
}

#[test]
fn the_state_directory_can_be_set_once_and_a_relative_one_is_shown_absolute() {
    let desk = Desk::with(&["interrupt.yaml"]);
    std::fs::write(desk.path("release"), "").unwrap();
    let release = format!("release={}", desk.path("release").display());
    let output = Command::new(BINARY)
        .current_dir(desk.root.path())
        .args(["run", "interrupt.yaml", "--yes", "--var", &release])
        .env("DR_PLAN_STATE_DIR", "from-env")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("dr-plan runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    let absolute = desk.root.path().canonicalize().unwrap().join("from-env");
    assert!(
        first.contains(&absolute.display().to_string())
            || first.contains(&desk.path("from-env").display().to_string()),
        "{stderr}"
    );
    assert!(desk.path("from-env/runs").is_dir());
    let usage = desk.dr_plan(&["run", "interrupt.yaml", "--yes", "--concurrency", "0"]);
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage));
}

#[test]
fn the_wording_says_what_is_wrong_in_plain_words() {
    let desk = Desk::with(&[]);
    std::fs::write(
        desk.path("words.yaml"),
        "version: 1\nname: words\nsecrets:\n  token: { env: WORDS_TOKEN }\nsteps:\n  - id: here\n    kind: exec\n    \
         with: { command: [\"true\"], cwd: /no/such/directory, env: { TOKEN: \"{{secrets.token}}\" } }\n",
    )
    .unwrap();
    let unset = desk.command(&["run", "words.yaml", "--yes"]).env_remove("WORDS_TOKEN").output().unwrap();
    assert_eq!(unset.status.code(), Some(2), "{}", text(&unset));
    assert!(String::from_utf8_lossy(&unset.stderr).contains("is not set"), "{}", text(&unset));
    let empty = desk.command(&["run", "words.yaml", "--yes"]).env("WORDS_TOKEN", "").output().unwrap();
    assert_eq!(empty.status.code(), Some(2), "{}", text(&empty));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("is empty"), "{}", text(&empty));
    let missing_cwd =
        desk.command(&["run", "words.yaml", "--yes"]).env("WORDS_TOKEN", "s3cr3t-t0ken").output().unwrap();
    assert_eq!(missing_cwd.status.code(), Some(1), "{}", text(&missing_cwd));
    let stderr = String::from_utf8_lossy(&missing_cwd.stderr);
    assert!(stderr.contains("working directory `/no/such/directory` does not exist"), "{stderr}");
    assert!(stderr.contains("0/1 step done"), "{stderr}");
}

#[test]
fn without_a_terminal_a_run_starts_only_with_yes_and_the_hint_adds_it() {
    let desk = Desk::with(&["copy.yaml"]);
    std::fs::write(desk.path("good.sql"), "data").unwrap();
    let refused = desk.dr_plan(&["run", "copy.yaml", "--var", "source=good.sql"]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(!desk.path(STATE).join("runs").exists(), "nothing was started");
    // The command as typed, with `--yes`: pasted in the same directory.
    let command = printed_command(&String::from_utf8_lossy(&refused.stderr)).expect("a next: command");
    assert!(command.ends_with("--yes"), "{command}");
    // Pasted from another directory: the plan and the state directory are absolute.
    let elsewhere = desk.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let started = run_printed(
        &command.replace("source=good.sql", &format!("source={}", desk.path("good.sql").display())),
        &elsewhere,
        &[],
    );
    assert_eq!(started.status.code(), Some(0), "{}", text(&started));
}

#[test]
fn the_printed_commands_work_from_another_directory() {
    let desk = Desk::with(&["approval.yaml"]);
    let blocked = desk.dr_plan(&["run", "approval.yaml", "--yes"]);
    assert_eq!(blocked.status.code(), Some(3), "{}", text(&blocked));
    let elsewhere = desk.path("another/shell");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let stderr = String::from_utf8_lossy(&blocked.stderr);
    let command = printed_command(&stderr).expect("a next: command");
    let granted = run_printed(&command, &elsewhere, &[]);
    assert_eq!(granted.status.code(), Some(0), "{}", text(&granted));
}

#[test]
fn mark_done_is_only_for_steps_that_ran_and_never_for_an_approval() {
    let desk = Desk::with(&["approval.yaml"]);
    let blocked = desk.dr_plan(&["run", "approval.yaml", "--yes"]);
    assert_eq!(blocked.status.code(), Some(3), "{}", text(&blocked));
    let run_id = desk.only_run();
    for (step, says) in [("gate", "granted with `--approve gate`"), ("switch", "never started")] {
        let refused = desk.dr_plan(&["resume", &run_id, "--mark-done", step, "--reason", "did it by hand"]);
        assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
        assert!(String::from_utf8_lossy(&refused.stderr).contains(says), "{}", text(&refused));
    }
}

#[test]
fn a_failed_step_names_the_values_it_used() {
    let desk = Desk::with(&["copy.yaml"]);
    let failed = desk.dr_plan(&["run", "copy.yaml", "--yes", "--var", "source=/no/such/backup.sql"]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("`copy` used dest=/dev/null, source=/no/such/backup.sql"), "{stderr}");
    assert!(stderr.contains("--var NAME=VALUE"), "{stderr}");
}

#[test]
fn an_approval_records_who_how_and_the_wait_which_is_the_steps_duration() {
    let desk = Desk::with(&["approval.yaml"]);
    let blocked = desk.dr_plan(&["run", "approval.yaml", "--yes"]);
    assert_eq!(blocked.status.code(), Some(3), "{}", text(&blocked));
    let run_id = desk.only_run();
    std::thread::sleep(Duration::from_millis(1200));
    let granted = desk
        .command(&["resume", &run_id, "--approve", "gate"])
        .env("DR_PLAN_APPROVER", "Alice Ops")
        .output()
        .expect("dr-plan runs");
    assert_eq!(granted.status.code(), Some(0), "{}", text(&granted));
    let report = desk.dr_plan(&["report", &run_id, "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).expect("report JSON");
    let approval = &report["approvals"][0];
    assert_eq!(approval["approver"], "Alice Ops", "{approval}");
    assert_eq!(approval["via"], "--approve", "{approval}");
    assert_eq!(approval["question"], "Switch traffic to the standby?", "{approval}");
    let waited = approval["waited_seconds"].as_f64().expect("waited_seconds");
    assert!(waited >= 1.2, "the wait since the run blocked: {approval}");
    let gate = report["steps"].as_array().unwrap().iter().find(|step| step["id"] == "gate").unwrap();
    assert!(
        (gate["seconds"].as_f64().unwrap() - waited).abs() < 0.01,
        "the step's duration is the wait: {gate}"
    );
    let markdown = desk.dr_plan(&["report", &run_id]);
    assert!(
        String::from_utf8_lossy(&markdown.stdout).contains("approved by Alice Ops ("),
        "{}",
        text(&markdown)
    );
}

#[test]
fn an_undelivered_notification_warns_every_time_even_as_the_last_step() {
    let desk = Desk::with(&[]);
    let port = free_port();
    std::fs::write(
        desk.path("tell.yaml"),
        format!(
            "version: 1\nname: tell\nsteps:\n  - id: tell\n    kind: notify\n    with: {{ webhook: \"http://127.0.0.1:{port}/hook\", message: hi }}\n"
        ),
    )
    .unwrap();
    // The warning travels beside the step's result: it must be journaled before the run ends.
    for attempt in 0..10 {
        let output = desk.dr_plan(&["run", "tell.yaml", "--yes"]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("⚠ tell:") && stderr.contains("message not delivered"),
            "attempt {attempt}: {stderr}"
        );
    }
}

/// An interrupted step whose outputs a later step reads cannot be marked done by hand
/// (it would have no outputs): resume offers only to run it again.
#[test]
fn an_interrupted_step_whose_outputs_are_read_is_not_offered_mark_done() {
    let sandbox = Sandbox::new(&[]);
    std::fs::write(
        sandbox.path("read.yaml"),
        r#"version: 1
name: read-outputs
description: b reads what a printed
steps:
  - id: a
    kind: exec
    with: { command: ["sh", "-c", "echo started; [ -e go ] || sleep 30"] }
  - id: b
    kind: exec
    needs: [a]
    with: { command: ["echo", "{{steps.a.outputs.stdout}}"] }
"#,
    )
    .unwrap();
    let mut run = sandbox.spawn(&["run", "read.yaml", "--yes"], "run");
    assert!(sandbox.wait_step_started("a", Duration::from_secs(30)), "a never started");
    support::process::send_signal("KILL", &run.id().to_string());
    let _ = run.wait();
    let run_id = sandbox.only_run();
    let resumed = sandbox.dr_plan(&["resume", &run_id, "--yes"]);
    assert_eq!(resumed.code, 3, "{resumed}");
    assert!(
        resumed.stderr.contains("`a` cannot be marked done by hand: later steps read its outputs"),
        "{resumed}"
    );
    assert!(!resumed.stderr.contains("--mark-done a"), "{resumed}");
    // The command it prints runs it again, and the run finishes.
    std::fs::write(sandbox.path("go"), "").unwrap();
    let command = printed_command(&resumed.stderr).expect("a next: command");
    assert!(command.contains("--rerun-interrupted"), "{command}");
    let finished = run_printed(&command, &sandbox.path(""), &[]);
    assert!(finished.status.success(), "{command}: {}", String::from_utf8_lossy(&finished.stderr));
}
