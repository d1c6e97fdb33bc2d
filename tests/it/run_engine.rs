//! The execution engine as an operator meets it: `dr-plan run`, `drill`, `resume`,
//! `status` and `report` on the plans in `tests/fixtures/run/`. Each test works in its
//! own temporary directory with its own `--state-dir`, and stdin is closed, so every
//! run is non-interactive (no terminal: approvals need `--approve`).

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use dr_plan::engine::journal::{self, Event, Record, RunState, RunStatus, StepState};
use serde_json::{Value as Json, json};
use support::HttpServer;
use support::process::{free_port, send_signal, wait_bounded, wait_until};
use support::sandbox::{Finished, Sandbox, files_under, finish};

/// Runs FIXTURE with `--var log=LOG` and `--var marker=…` naming a file that does not
/// exist yet, so the step that needs it fails (exit 1, checked); returns the plan's name
/// and the run's output. Creating the marker lets a resume go on.
fn run_until_marker(sandbox: &Sandbox, fixture: &str, log: &str) -> (String, Finished) {
    let plan = sandbox.plan(fixture);
    let log = sandbox.var_path("log", log);
    let marker = sandbox.var_path("marker", "marker");
    let finished = sandbox.dr_plan(&["run", &plan, "--yes", "--var", &log, "--var", &marker]);
    assert_eq!(finished.code, 1, "{finished}");
    (plan, finished)
}

/// Waits for a background `dr-plan` with a deadline; returns its exit code.
fn wait_exit(child: &mut Child, limit: Duration) -> i32 {
    let status =
        wait_bounded(child, limit).unwrap_or_else(|| panic!("dr-plan did not stop within {limit:?}"));
    status.code().unwrap_or(-1)
}

fn events(records: &[Record]) -> Vec<&Event> {
    records.iter().map(|record| &record.event).collect()
}

fn starts(records: &[Record], id: &str) -> usize {
    records
        .iter()
        .filter(|record| matches!(&record.event, Event::StepStarted { step, .. } if step == id))
        .count()
}

fn outputs<'a>(state: &'a RunState, id: &str) -> &'a serde_json::Map<String, Json> {
    match state.steps.get(id) {
        Some(StepState::Succeeded { outputs }) => outputs,
        other => panic!("step `{id}` did not succeed: {other:?}"),
    }
}

fn skip_reason(state: &RunState, id: &str) -> String {
    match state.steps.get(id) {
        Some(StepState::Skipped { reason, .. }) => reason.clone(),
        other => panic!("step `{id}` was not skipped: {other:?}"),
    }
}

fn time(record: &Record) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(&record.at)
        .unwrap_or_else(|error| panic!("`at` {:?} is not RFC 3339: {error}", record.at))
}

fn seconds_between(earlier: &Record, later: &Record) -> f64 {
    (time(later) - time(earlier)).as_seconds_f64()
}

#[test]
fn a_step_starts_only_after_everything_it_needs_has_ended() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("order.yaml");
    let log = sandbox.var_path("log", "order.log");
    let finished = sandbox.dr_plan(&["run", &plan, "--yes", "--var", &log]);
    assert_eq!(finished.code, 0, "{finished}");

    // `id start|end nanoseconds`, in the order the steps wrote them.
    let mut starts: BTreeMap<String, (usize, u128)> = BTreeMap::new();
    let mut ends: BTreeMap<String, (usize, u128)> = BTreeMap::new();
    for (position, line) in sandbox.lines("order.log").iter().enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [id, what, nanoseconds] = fields[..] else { panic!("malformed log line {line:?}") };
        let entry = (position, nanoseconds.parse().expect("a timestamp"));
        let previous = match what {
            "start" => starts.insert(id.to_owned(), entry),
            "end" => ends.insert(id.to_owned(), entry),
            _ => panic!("malformed log line {line:?}"),
        };
        assert!(previous.is_none(), "step {id} wrote `{what}` twice");
    }
    assert_eq!(starts.len(), 6, "every step ran once: {starts:?}");
    for (step, needs) in [("b", &["a"][..]), ("c", &["a"]), ("d", &["b", "c"]), ("f", &["d", "e"])] {
        for need in needs {
            assert!(
                starts[step].0 > ends[*need].0 && starts[step].1 >= ends[*need].1,
                "{step} started at {:?} before {need} ended at {:?}",
                starts[step],
                ends[*need]
            );
        }
    }
    // `e` needs nothing: it ran alongside the a → b|c → d chain.
    assert!(starts["e"].1 < ends["d"].1 && ends["e"].1 > starts["a"].1, "e did not overlap the chain");
}

/// The steps of `records` with a `step_started`, and those with a `step_succeeded`.
fn started_and_succeeded(records: &[Record]) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut started, mut succeeded) = (BTreeSet::new(), BTreeSet::new());
    for record in records {
        match &record.event {
            Event::StepStarted { step, .. } => started.insert(step.clone()),
            Event::StepSucceeded { step, .. } => succeeded.insert(step.clone()),
            _ => false,
        };
    }
    (started, succeeded)
}

/// Group commit: the starts that one success releases are journaled together, and their
/// steps spawned only after the one fsync that covers them, so the journal a stage's
/// program sees already holds the success that released it and the start of every step
/// of the stage; and what each program saw is a prefix of the final journal (events are
/// only ever appended, in order).
#[test]
fn a_wide_stage_is_journaled_whole_before_any_of_its_programs_runs() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("wide.yaml");
    let seen = sandbox.path("seen");
    std::fs::create_dir(&seen).unwrap();
    let log = sandbox.var_path("log", "log");
    let seen_var = format!("seen={}", seen.display());
    let arguments = ["run", &plan, "--yes", "--concurrency", "10", "--var", &log, "--var", &seen_var];
    let finished = sandbox.dr_plan(&arguments);
    assert_eq!(finished.code, 0, "{finished}");
    let run_id = sandbox.only_run();
    let journal = std::fs::read_to_string(sandbox.journal_path(&run_id)).unwrap();
    let records = sandbox.records(&run_id);

    // `first`'s success is followed at once by the eight starts it releases, in plan order.
    let stage: Vec<String> = (1..=8).map(|number| format!("w{number}")).collect();
    let released = records
        .iter()
        .position(|record| matches!(&record.event, Event::StepSucceeded { step, .. } if step == "first"))
        .expect("first succeeded");
    let next: Vec<&Event> = events(&records[released + 1..released + 9]);
    for (event, id) in next.iter().zip(&stage) {
        assert!(
            matches!(event, Event::StepStarted { step, attempt: 1 } if step == id),
            "after first's success: {next:?}"
        );
    }

    let everything: BTreeSet<String> =
        ["first", "last"].into_iter().map(str::to_owned).chain(stage.iter().cloned()).collect();
    let mut copies = 0;
    for path in files_under(&seen) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let step = name.split('.').next().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(journal.starts_with(&text), "what {step} saw is not the beginning of the journal:\n{text}");
        let (started, succeeded) = started_and_succeeded(&journal::read(&path).unwrap());
        let (must_start, must_succeed): (BTreeSet<String>, BTreeSet<String>) = match step.as_str() {
            "first" => (["first".to_owned()].into(), BTreeSet::new()),
            "last" => (everything.clone(), everything.iter().filter(|id| *id != "last").cloned().collect()),
            _ => {
                (everything.iter().filter(|id| *id != "last").cloned().collect(), ["first".to_owned()].into())
            }
        };
        assert!(
            started.is_superset(&must_start) && succeeded.is_superset(&must_succeed),
            "when {step}'s program ran, the journal had the starts of {started:?} and the successes of \
             {succeeded:?}; it must have had at least {must_start:?} and {must_succeed:?}"
        );
        copies += 1;
    }
    assert_eq!(copies, everything.len(), "every step ran once: {:?}", files_under(&seen));
    assert_eq!(sandbox.lines("log").len(), everything.len());
}

#[test]
fn no_more_steps_run_at_once_than_the_concurrency_allows() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("concurrency.yaml");
    let finished = sandbox.dr_plan(&["run", &plan, "--yes", "--concurrency", "2"]);
    assert_eq!(finished.code, 0, "{finished}");
    let records = sandbox.records(&sandbox.only_run());
    let mut running = 0_i32;
    let mut most = 0;
    for event in events(&records) {
        match event {
            Event::StepStarted { .. } => running += 1,
            Event::StepSucceeded { .. } | Event::StepFailed { .. } => running -= 1,
            _ => {}
        }
        most = most.max(running);
    }
    assert_eq!(most, 2, "at most two steps at once, and two did run together");
    let first_start =
        records.iter().find(|record| matches!(record.event, Event::StepStarted { .. })).unwrap();
    let last_end =
        records.iter().rev().find(|record| matches!(record.event, Event::StepSucceeded { .. })).unwrap();
    let elapsed = seconds_between(first_start, last_end);
    assert!(elapsed >= 0.6, "four 300ms waits two at a time took only {elapsed}s");
}

#[test]
fn a_false_when_skips_the_step_and_what_needs_it() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("when.yaml");
    let log = sandbox.var_path("log", "when.log");
    let finished = sandbox.dr_plan(&["run", &plan, "--yes", "--var", &log]);
    assert_eq!(finished.code, 0, "{finished}");
    let state = sandbox.state(&sandbox.only_run());
    assert_eq!(skip_reason(&state, "optional"), "`when` is false");
    let reason = skip_reason(&state, "after-optional");
    assert!(reason.contains("needs") && reason.contains("`optional` was skipped"), "{reason}");
    assert_eq!(sandbox.lines("when.log"), ["always"]);
    assert!(finished.stderr.contains("optional skipped: `when` is false"), "{finished}");

    let enabled = Sandbox::new(&["run"]);
    let plan = enabled.plan("when.yaml");
    let log = enabled.var_path("log", "when.log");
    let finished = enabled.dr_plan(&["run", &plan, "--yes", "--var", &log, "--var", "enabled=true"]);
    assert_eq!(finished.code, 0, "{finished}");
    let mut lines = enabled.lines("when.log");
    lines.sort();
    assert_eq!(lines, ["after-optional", "always", "optional"]);
}

#[test]
fn a_failure_starts_nothing_new_lets_running_steps_finish_and_exits_1() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("failure.yaml");
    let log = sandbox.var_path("log", "failure.log");
    let finished = sandbox.dr_plan(&["run", &plan, "--yes", "--var", &log]);
    assert_eq!(finished.code, 1, "{finished}");
    assert!(
        finished.stderr.contains("exited with 7") && finished.stderr.contains("disk on fire"),
        "{finished}"
    );
    let run_id = sandbox.only_run();
    assert!(finished.stderr.contains(&format!("dr-plan resume {run_id}")), "says how to resume: {finished}");
    let records = sandbox.records(&run_id);
    let failed_at = records
        .iter()
        .position(|record| matches!(&record.event, Event::StepFailed { step, .. } if step == "bad"))
        .expect("bad failed");
    let slow_done = records
        .iter()
        .position(|record| matches!(&record.event, Event::StepSucceeded { step, .. } if step == "slow"))
        .expect("slow, already running, finished");
    assert!(slow_done > failed_at, "slow finished after the failure");
    assert_eq!(starts(&records, "after-slow"), 0, "nothing new started after the failure");
    assert_eq!(starts(&records, "after-bad"), 0);
    assert_eq!(sandbox.lines("failure.log"), ["slow end"]);
    assert_eq!(sandbox.state(&run_id).status, Some(RunStatus::Failed));
}

#[test]
fn on_failure_continue_keeps_the_run_going_skips_only_the_dependents_and_is_not_a_success() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("continue.yaml");
    let (log, fixed) = (sandbox.var_path("log", "continue.log"), sandbox.var_path("fixed", "fixed"));
    let finished = sandbox.dr_plan(&["run", &plan, "--yes", "--var", &log, "--var", &fixed]);
    assert_eq!(finished.code, 1, "a step failed, so the run did not succeed: {finished}");
    let run_id = sandbox.only_run();
    let state = sandbox.state(&run_id);
    assert_eq!(state.status, Some(RunStatus::CompletedWithFailures));
    assert!(matches!(state.steps.get("flaky"), Some(StepState::Failed { .. })), "{:?}", state.steps);
    assert!(skip_reason(&state, "needs-flaky").contains("`flaky` failed"));
    assert_eq!(sandbox.lines("continue.log"), ["other", "after-other"]);
    assert!(finished.stderr.contains("completed with failures: 2/4 steps done"), "{finished}");
    assert!(
        finished.stderr.contains("`flaky` failed (on_failure: continue; nothing was undone)"),
        "{finished}"
    );

    // Once the cause is fixed, resume runs the failed step and what it held back.
    std::fs::write(sandbox.path("fixed"), "").expect("fix the cause");
    let resumed = sandbox.dr_plan(&["resume", &run_id, "--yes"]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert_eq!(sandbox.state(&run_id).status, Some(RunStatus::Succeeded));
    assert_eq!(sandbox.lines("continue.log"), ["other", "after-other", "needs-flaky"]);
}

#[test]
fn a_step_past_its_timeout_fails_the_run_says_it_timed_out_and_stops_what_it_started() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("timeout.yaml");
    let started = Instant::now();
    let pid_file = sandbox.var_path("pid_file", "sleep.pid");
    let finished = sandbox.dr_plan(&["run", &plan, "--yes", "--var", &pid_file]);
    assert_eq!(finished.code, 1, "{finished}");
    assert!(started.elapsed() < Duration::from_secs(10), "the 30s command was not stopped");
    // The shell's background `sleep` went with it.
    let sleep = sandbox.text("sleep.pid").trim().to_owned();
    let running = || {
        std::fs::read_to_string(format!("/proc/{sleep}/stat"))
            .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
    };
    let gone = wait_until(Duration::from_secs(5), || !running());
    assert!(gone, "the background sleep (pid {sleep}) outlived the step");
    assert!(finished.stderr.contains("timed out after 1s"), "{finished}");
    let state = sandbox.state(&sandbox.only_run());
    let Some(StepState::Failed { error }) = state.steps.get("hangs") else { panic!("{:?}", state.steps) };
    assert!(error.contains("timed out"), "{error}");
}

#[test]
fn the_run_deadline_stops_the_run_as_a_failure() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("lock.yaml");
    let started = Instant::now();
    let finished = sandbox.dr_plan(&["run", &plan, "--yes", "--deadline", "1s"]);
    assert_eq!(finished.code, 1, "{finished}");
    assert!(started.elapsed() < Duration::from_secs(10), "the 20s step was not stopped");
    assert!(finished.stderr.contains("the run deadline passed"), "{finished}");
    let state = sandbox.state(&sandbox.only_run());
    assert_eq!(state.status, Some(RunStatus::Failed));
    let Some(StepState::Failed { error }) = state.steps.get("hold") else { panic!("{:?}", state.steps) };
    assert_eq!(error, "the run deadline passed");
}

#[test]
fn a_retried_step_is_attempted_again_with_doubling_backoff() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("retry.yaml");
    let counter = sandbox.var_path("counter", "counter");
    let finished = sandbox.dr_plan(&["run", &plan, "--yes", "--var", &counter]);
    assert_eq!(finished.code, 0, "{finished}");
    assert_eq!(sandbox.text("counter").trim(), "3", "the command ran three times");
    let run_id = sandbox.only_run();
    let records = sandbox.records(&run_id);
    let attempts: Vec<(u32, &str, &Record)> = records
        .iter()
        .filter_map(|record| match &record.event {
            Event::StepStarted { attempt, .. } => Some((*attempt, "started", record)),
            Event::StepFailed { attempt, will_retry: true, .. } => {
                Some((*attempt, "failed, will retry", record))
            }
            Event::StepSucceeded { attempt, .. } => Some((*attempt, "succeeded", record)),
            _ => None,
        })
        .collect();
    let shape: Vec<(u32, &str)> = attempts.iter().map(|(attempt, what, _)| (*attempt, *what)).collect();
    assert_eq!(
        shape,
        [
            (1, "started"),
            (1, "failed, will retry"),
            (2, "started"),
            (2, "failed, will retry"),
            (3, "started"),
            (3, "succeeded")
        ]
    );
    // Backoff 200ms, then 400ms, between a failure and the end of the next attempt.
    let second = seconds_between(attempts[1].2, attempts[3].2);
    let third = seconds_between(attempts[3].2, attempts[5].2);
    assert!(second >= 0.2, "second attempt came {second}s after the first failed");
    assert!(third >= 0.4, "third attempt came {third}s after the second failed");
    let report = sandbox.dr_plan(&["report", &run_id, "--format", "json"]);
    let report: Json = serde_json::from_str(&report.stdout).expect("report JSON");
    assert_eq!(report["steps"][0]["attempts"], 3);
}

#[test]
fn the_journal_is_versioned_json_lines_with_the_plan_hash_and_redacted_inputs() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("secrets.yaml");
    let server = HttpServer::start([(200, "ok")]);
    let token = "tkn-J0urn4l-0001";
    std::fs::write(sandbox.path("webhook.secret"), format!("{}/hooks/whk-journal\n", server.url())).unwrap();
    std::fs::write(sandbox.path("marker"), "").unwrap();
    let marker = sandbox.var_path("marker", "marker");
    let note = format!("note=operator pasted {token} here");
    let mut command = sandbox.command(&["run", &plan, "--yes", "--var", &marker, "--var", &note]);
    command.env("DR_PLAN_TEST_TOKEN", token);
    let finished = finish(command);
    assert_eq!(finished.code, 0, "{finished}");

    let run_id = sandbox.only_run();
    let text = std::fs::read_to_string(sandbox.journal_path(&run_id)).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<Json> = text
        .lines()
        .enumerate()
        .map(|(number, line)| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("line {}: {error}: {line}", number + 1))
        })
        .collect();
    for line in &lines {
        assert!(line["at"].is_string() && line["event"].is_string(), "{line}");
    }
    let first = &lines[0];
    assert_eq!(first["event"], "run_started");
    assert_eq!(first["format"], journal::FORMAT_VERSION);
    assert_eq!(first["run_id"], run_id.as_str());
    let plan_bytes = std::fs::read(sandbox.path(&plan)).unwrap();
    assert_eq!(first["plan_hash"], hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&plan_bytes)));
    assert_eq!(first["inputs"]["note"], "operator pasted *** here");
    assert_eq!(first["vars"]["marker"], sandbox.path("marker").display().to_string());
    assert!(first["operator"].as_str().is_some_and(|operator| operator.contains('@')));
    assert_eq!(lines.last().unwrap()["event"], "run_finished");
    assert_eq!(lines.last().unwrap()["status"], "succeeded");
    assert!(!text.contains(token), "the token is in the journal");
    let state = sandbox.state(&run_id);
    assert_eq!(outputs(&state, "show")["stdout"], "stdout has ***");
    assert_eq!(outputs(&state, "guarded")["stdout"], "done with ***");
    // Times never go backwards.
    let records = sandbox.records(&run_id);
    assert!(records.windows(2).all(|pair| time(&pair[0]) <= time(&pair[1])));
}

#[test]
fn resume_never_reruns_a_finished_step_and_feeds_its_recorded_outputs_on() {
    let sandbox = Sandbox::new(&["run"]);
    run_until_marker(&sandbox, "resume.yaml", "resume.log");
    assert_eq!(sandbox.lines("resume.log"), ["produce"]);
    let run_id = sandbox.only_run();

    std::fs::write(sandbox.path("marker"), "").unwrap();
    let resumed = sandbox.dr_plan(&["resume", &run_id]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert_eq!(sandbox.lines("resume.log"), ["produce", "consume got value-42"]);
    let records = sandbox.records(&run_id);
    assert_eq!(starts(&records, "produce"), 1);
    assert_eq!(starts(&records, "consume"), 2);
    assert_eq!(outputs(&sandbox.state(&run_id), "consume")["stdout"], "consumed value-42");
    assert_eq!(sandbox.run_ids(), std::slice::from_ref(&run_id), "resume continues the same run");

    let again = sandbox.dr_plan(&["resume", &run_id]);
    assert_eq!(again.code, 0, "{again}");
    assert!(again.stdout.contains("already succeeded"), "{again}");
    assert_eq!(sandbox.lines("resume.log").len(), 2);
}

#[test]
fn resume_refuses_a_changed_plan_and_names_the_changed_line() {
    let sandbox = Sandbox::new(&["run"]);
    let (plan, _) = run_until_marker(&sandbox, "resume.yaml", "resume.log");
    let run_id = sandbox.only_run();

    let original = sandbox.text(&plan);
    let changed = original.replace("echo value-42", "echo value-43");
    assert_ne!(original, changed);
    std::fs::write(sandbox.path(&plan), &changed).unwrap();
    let line = changed.lines().position(|line| line.contains("value-43")).unwrap() + 1;
    std::fs::write(sandbox.path("marker"), "").unwrap();
    let refused = sandbox.dr_plan(&["resume", &run_id]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(refused.stderr.contains("changed since run"), "{refused}");
    assert!(refused.stderr.contains(&format!("line {line} was `")), "names line {line}: {refused}");
    assert!(refused.stderr.contains("value-42") && refused.stderr.contains("value-43"), "{refused}");
    assert_eq!(sandbox.lines("resume.log"), ["produce"], "nothing ran");

    std::fs::write(sandbox.path(&plan), &original).unwrap();
    let resumed = sandbox.dr_plan(&["resume", &run_id]);
    assert_eq!(resumed.code, 0, "the restored plan resumes: {resumed}");
}

#[test]
fn an_interrupted_exec_step_is_rerun_only_with_rerun_interrupted() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("interrupt.yaml");
    let log = sandbox.var_path("log", "interrupt.log");
    let release = sandbox.var_path("release", "release");
    let mut child = sandbox.spawn(&["run", &plan, "--yes", "--var", &log, "--var", &release], "first");
    let long_started = wait_until(Duration::from_secs(20), || {
        sandbox.lines("interrupt.log").contains(&"long started".to_owned())
    });
    assert!(long_started, "waited 20s for `long` to start");
    // While it runs, a resume is turned away by the lock, not told the step was interrupted.
    let live = sandbox.dr_plan(&["resume", &sandbox.only_run(), "--rerun-interrupted"]);
    assert_eq!(live.code, 3, "{live}");
    assert!(
        live.stderr.contains("already being run") && live.stderr.contains(&format!("(pid {})", child.id()))
    );
    let live = sandbox.dr_plan(&["resume", &sandbox.only_run()]);
    assert_eq!(live.code, 3, "{live}");
    assert!(live.stderr.contains("already being run"), "{live}");

    send_signal("TERM", &child.id().to_string());
    let code = wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(code, 130, "interrupted: {}", sandbox.text("first.stderr"));
    assert!(sandbox.text("first.stderr").contains("interrupted"));
    let run_id = sandbox.only_run();
    let state = sandbox.state(&run_id);
    assert_eq!(state.status, Some(RunStatus::Interrupted));
    assert!(matches!(state.steps.get("long"), Some(StepState::Interrupted { .. })), "{:?}", state.steps);
    assert!(!sandbox.state_dir().join("locks/interrupt.lock").exists(), "the lock was released");

    let refused = sandbox.dr_plan(&["resume", &run_id]);
    assert_eq!(refused.code, 3, "{refused}");
    assert!(refused.stderr.contains("long") && refused.stderr.contains("--rerun-interrupted"), "{refused}");
    assert_eq!(starts(&sandbox.records(&run_id), "long"), 1, "refusing ran nothing");

    std::fs::write(sandbox.path("release"), "").unwrap();
    let resumed = sandbox.dr_plan(&["resume", &run_id, "--rerun-interrupted"]);
    assert_eq!(resumed.code, 0, "{resumed}");
    let records = sandbox.records(&run_id);
    assert_eq!(starts(&records, "quick"), 1);
    assert_eq!(starts(&records, "long"), 2);
    assert!(
        events(&records)
            .iter()
            .any(|event| matches!(event, Event::Resumed { rerun, .. } if rerun == &["long"])),
        "the journal says which step ran again"
    );
    assert_eq!(sandbox.lines("interrupt.log"), ["quick", "long started", "long started", "long end"]);
}

#[test]
fn a_second_run_while_the_first_holds_the_lock_is_blocked_and_names_the_holder() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("lock.yaml");
    let mut first = sandbox.spawn(&["run", &plan, "--yes"], "first");
    let lock_file = sandbox.state_dir().join("locks/lock.lock");
    let started = wait_until(Duration::from_secs(20), || {
        sandbox.run_ids().first().is_some_and(|id| {
            journal::read(&sandbox.journal_path(id)).is_ok_and(|records| {
                records.iter().any(|record| matches!(record.event, Event::StepStarted { .. }))
            })
        })
    });
    assert!(started, "waited 20s for the first run to take the lock and start");
    let holder: Json = serde_json::from_str(&std::fs::read_to_string(&lock_file).unwrap()).unwrap();
    assert_eq!(holder["pid"], first.id());

    let second = sandbox.dr_plan(&["run", &plan, "--yes"]);
    assert_eq!(second.code, 3, "{second}");
    let user = holder["user"].as_str().unwrap();
    let host = holder["host"].as_str().unwrap();
    assert!(second.stderr.contains(&format!("{user}@{host} (pid {})", first.id())), "{second}");
    assert!(second.stderr.contains("already being run"), "{second}");
    assert_eq!(sandbox.run_ids().len(), 1, "the refused run left no run behind");

    // Ctrl-C: interrupted, resumable, and the lock is released.
    send_signal("INT", &first.id().to_string());
    assert_eq!(wait_exit(&mut first, Duration::from_secs(20)), 130, "{}", sandbox.text("first.stderr"));
    assert!(!lock_file.exists(), "the lock was released");
}

#[test]
fn a_stale_lock_blocks_until_it_is_broken_and_breaking_it_is_journaled() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("quick.yaml");
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    std::fs::create_dir_all(sandbox.state_dir().join("locks")).unwrap();
    let lock = json!({ "user": "ghost", "host": host, "pid": dead_pid, "since": "2026-01-01T00:00:00.000Z", "run_id": "quick-old" });
    std::fs::write(sandbox.state_dir().join("locks/quick.lock"), lock.to_string()).unwrap();

    let blocked = sandbox.dr_plan(&["run", &plan, "--yes"]);
    assert_eq!(blocked.code, 3, "{blocked}");
    assert!(blocked.stderr.contains("stale"), "{blocked}");
    assert!(blocked.stderr.contains(&format!("ghost@{host} (pid {dead_pid})")), "{blocked}");
    assert!(blocked.stderr.contains("--break-stale-lock"), "{blocked}");
    assert!(sandbox.run_ids().is_empty(), "nothing started");

    let broken = sandbox.dr_plan(&["run", &plan, "--yes", "--break-stale-lock"]);
    assert_eq!(broken.code, 0, "{broken}");
    let records = sandbox.records(&sandbox.only_run());
    let holder = events(&records)
        .into_iter()
        .find_map(|event| match event {
            Event::LockBroken { holder, operator } => Some((holder.clone(), operator.clone())),
            _ => None,
        })
        .expect("lock_broken is journaled");
    assert!(holder.0.contains("ghost") && holder.0.contains(&dead_pid.to_string()), "{holder:?}");
    assert!(holder.1.contains('@'));
    assert!(!sandbox.state_dir().join("locks/quick.lock").exists());

    // A lock file that names nobody (empty or damaged) is stale too, never held forever.
    std::fs::write(sandbox.state_dir().join("locks/quick.lock"), "").unwrap();
    let blocked = sandbox.dr_plan(&["run", &plan, "--yes"]);
    assert_eq!(blocked.code, 3, "{blocked}");
    assert!(blocked.stderr.contains("stale") && blocked.stderr.contains("empty or damaged"), "{blocked}");
    let broken = sandbox.dr_plan(&["run", &plan, "--yes", "--break-stale-lock"]);
    assert_eq!(broken.code, 0, "{broken}");
    let locks: Vec<_> = std::fs::read_dir(sandbox.state_dir().join("locks")).unwrap().collect();
    assert!(locks.is_empty(), "no lock and no leftover files: {locks:?}");
}

#[test]
fn an_approval_without_a_terminal_blocks_resumably_and_is_journaled_when_granted() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("approval.yaml");
    let log = sandbox.var_path("log", "approval.log");
    let blocked = sandbox.dr_plan(&["run", &plan, "--yes", "--var", &log]);
    assert_eq!(blocked.code, 3, "{blocked}");
    assert!(blocked.stderr.contains("--approve gate"), "says how to grant it: {blocked}");
    let run_id = sandbox.only_run();
    let records = sandbox.records(&run_id);
    assert!(
        events(&records)
            .iter()
            .any(|event| matches!(event, Event::ApprovalNeeded { step, question } if step == "gate" && !question.is_empty()))
    );
    assert_eq!(starts(&records, "switch"), 0);
    let status = sandbox.dr_plan(&["status", "--format", "json"]);
    let status: Json = serde_json::from_str(&status.stdout).expect("status JSON");
    assert_eq!(status[0]["run_id"], run_id.as_str());
    assert_eq!(status[0]["status"], "blocked");

    let still = sandbox.dr_plan(&["resume", &run_id]);
    assert_eq!(still.code, 3, "no approval, still blocked: {still}");

    let granted = sandbox.dr_plan(&["resume", &run_id, "--approve", "gate"]);
    assert_eq!(granted.code, 0, "{granted}");
    assert_eq!(sandbox.lines("approval.log"), ["prepare", "switch"]);
    let records = sandbox.records(&run_id);
    let (by, via, at) = records
        .iter()
        .find_map(|record| match &record.event {
            Event::ApprovalGranted { step, by, via, .. } if step == "gate" => {
                Some((by.clone(), via.clone(), record.at.clone()))
            }
            _ => None,
        })
        .expect("the approval is journaled");
    assert!(by.contains('@'), "who: {by}");
    assert_eq!(via, "--approve");
    let report = sandbox.dr_plan(&["report", &run_id, "--format", "json"]);
    let report: Json = serde_json::from_str(&report.stdout).expect("report JSON");
    let approval = &report["approvals"][0];
    assert_eq!(
        (&approval["step"], &approval["by"], &approval["via"], &approval["at"]),
        (&json!("gate"), &json!(by), &json!("--approve"), &json!(at))
    );
    assert!(approval["question"].as_str().is_some_and(|question| !question.is_empty()), "{approval}");
    assert!(
        approval["waited_seconds"].as_f64().is_some_and(|waited| waited > 0.0),
        "the wait since blocking: {approval}"
    );
    assert_eq!(report["steps"][1]["attempts"], 1, "waiting for an approval is not an attempt");
    let rerun: Vec<&Vec<String>> = events(&records)
        .into_iter()
        .filter_map(|event| match event {
            Event::Resumed { rerun, .. } => Some(rerun),
            _ => None,
        })
        .collect();
    assert!(rerun.iter().all(|rerun| rerun.is_empty()), "a blocked approval was not interrupted: {rerun:?}");
    let markdown = sandbox.dr_plan(&["report", &run_id, "--format", "markdown"]);
    assert!(
        markdown.stdout.contains(&format!("approved by {by} via --approve at {at}"))
            && markdown.stdout.contains("Switch traffic to the standby?"),
        "{markdown}"
    );

    // Granted up front, the run goes through; an unknown step name is a usage error.
    let upfront = Sandbox::new(&["run"]);
    let plan = upfront.plan("approval.yaml");
    let log = upfront.var_path("log", "approval.log");
    let typo = upfront.dr_plan(&["run", &plan, "--yes", "--var", &log, "--approve", "gates"]);
    assert_eq!(typo.code, 2, "{typo}");
    assert!(typo.stderr.contains("gate"), "{typo}");
    let finished = upfront.dr_plan(&["run", &plan, "--yes", "--var", &log, "--approve", "gate"]);
    assert_eq!(finished.code, 0, "{finished}");
    assert_eq!(upfront.lines("approval.log"), ["prepare", "switch"]);
}

#[test]
fn a_failed_run_undoes_compensable_steps_newest_first() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("undo.yaml");
    let log = sandbox.var_path("log", "undo.log");
    let finished = sandbox.dr_plan(&["run", &plan, "--yes", "--var", &log]);
    assert_eq!(finished.code, 1, "{finished}");
    assert_eq!(
        sandbox.lines("undo.log"),
        ["do first", "do second", "do no-undo", "undo second", "undo first"]
    );
    let records = sandbox.records(&sandbox.only_run());
    let undone: Vec<(String, Option<String>)> = events(&records)
        .into_iter()
        .filter_map(|event| match event {
            Event::UndoFinished { step, error } => Some((step.clone(), error.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(undone, [("second".to_owned(), None), ("first".to_owned(), None)]);
    assert!(
        finished.stderr.contains("second undone") && finished.stderr.contains("first undone"),
        "{finished}"
    );
}

#[test]
fn a_step_is_not_compensated_once_a_destructive_step_that_needs_it_started() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("undo_unsafe.yaml");
    let log = sandbox.var_path("log", "undo.log");
    let finished = sandbox.dr_plan(&["run", &plan, "--yes", "--var", &log]);
    assert_eq!(finished.code, 1, "{finished}");
    assert_eq!(sandbox.lines("undo.log"), ["do stop-writers"], "the undo command must not run");
    let records = sandbox.records(&sandbox.only_run());
    let skipped: Vec<(String, String)> = events(&records)
        .into_iter()
        .filter_map(|event| match event {
            Event::UndoSkipped { step, reason } => Some((step.clone(), reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(skipped.len(), 1, "{finished}");
    assert_eq!(skipped[0].0, "stop-writers");
    assert!(skipped[0].1.contains("`restore`"), "{}", skipped[0].1);
    assert!(finished.stderr.contains("stop-writers not compensated"), "{finished}");
}

#[test]
fn resume_after_an_undo_runs_the_undone_steps_again() {
    let sandbox = Sandbox::new(&["run"]);
    run_until_marker(&sandbox, "undo.yaml", "undo.log");
    let run_id = sandbox.only_run();
    let report = sandbox.dr_plan(&["report", &run_id, "--format", "json"]);
    let report: Json = serde_json::from_str(&report.stdout).expect("report JSON");
    let states: Vec<&str> =
        report["steps"].as_array().unwrap().iter().map(|step| step["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["undone", "undone", "succeeded", "failed"], "the report says what was compensated");

    // Their effects are gone: the preconditions of `breaks` must be rebuilt first.
    std::fs::write(sandbox.path("marker"), "").unwrap();
    let resumed = sandbox.dr_plan(&["resume", &run_id]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert_eq!(
        sandbox.lines("undo.log"),
        ["do first", "do second", "do no-undo", "undo second", "undo first", "do first", "do second"]
    );
    let records = sandbox.records(&run_id);
    assert_eq!(starts(&records, "no-undo"), 1, "a step that was not undone is not run again");
}

#[test]
fn a_failure_after_a_resume_also_undoes_steps_finished_before_it() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("undo_after_resume.yaml");
    let log = sandbox.var_path("log", "undo.log");
    let blocked = sandbox.dr_plan(&["run", &plan, "--yes", "--var", &log]);
    assert_eq!(blocked.code, 3, "{blocked}");
    let run_id = sandbox.only_run();
    let failed = sandbox.dr_plan(&["resume", &run_id, "--approve", "gate"]);
    assert_eq!(failed.code, 1, "{failed}");
    assert_eq!(sandbox.lines("undo.log"), ["do first", "undo first"]);
}

fn contains_bytes(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

#[test]
fn secrets_appear_nowhere_dr_plan_writes_or_prints() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("secrets.yaml");
    // The first notification is refused (best effort), the rest are accepted.
    let server = HttpServer::start([(500, "no"), (200, "ok")]);
    let token = "tkn-7Qx93vLmZ2";
    let hook_path = "whk-P4s8Rt6Yu1";
    let webhook = format!("{}/hooks/{hook_path}", server.url());
    std::fs::write(sandbox.path("webhook.secret"), format!("{webhook}\n")).unwrap();
    let marker = sandbox.var_path("marker", "marker");
    let note = format!("note=see {token}");
    let mut printed: Vec<Finished> = Vec::new();
    let with_token = |mut command: Command| {
        command.env("DR_PLAN_TEST_TOKEN", token);
        finish(command)
    };

    let failed = with_token(sandbox.command(&["run", &plan, "--yes", "--var", &marker, "--var", &note]));
    assert_eq!(failed.code, 1, "{failed}");
    assert!(failed.stderr.contains("no marker for *** at ***"), "the error is kept, redacted: {failed}");
    printed.push(failed);
    let run_id = sandbox.only_run();
    let state = sandbox.state(&run_id);
    assert_eq!(
        outputs(&state, "tell")["delivered"],
        false,
        "a refused best-effort notification does not fail"
    );

    std::fs::write(sandbox.path("marker"), "").unwrap();
    let resumed = with_token(sandbox.command(&["resume", &run_id, "--format", "json"]));
    assert_eq!(resumed.code, 0, "{resumed}");
    for line in resumed.stdout.lines() {
        let event: Json = serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"));
        assert!(event["event"].is_string(), "{line}");
    }
    assert!(resumed.stdout.contains("\"event\":\"step_succeeded\""), "{resumed}");
    printed.push(resumed);
    assert_eq!(server.request_count(), 2);
    assert!(server.requests().iter().all(|request| request.path == format!("/hooks/{hook_path}")));

    let metrics = sandbox.state_dir().join("metrics.prom");
    let metrics_argument = metrics.display().to_string();
    for arguments in [
        &["report", &run_id, "--format", "markdown"][..],
        &["report", &run_id, "--format", "json", "--metrics-file", &metrics_argument],
        &["status"],
        &["status", "--format", "json"],
        &["status", &run_id],
        &["status", &run_id, "--format", "json"],
    ] {
        let shown = sandbox.dr_plan(arguments);
        assert_eq!(shown.code, 0, "{arguments:?}: {shown}");
        printed.push(shown);
    }

    let files = files_under(&sandbox.state_dir());
    assert!(files.iter().any(|file| file.ends_with("show.stderr.log")), "stderr logs are kept: {files:?}");
    assert!(files.contains(&metrics));
    for secret in [token, &webhook, hook_path] {
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            assert!(!contains_bytes(&bytes, secret), "{} contains the secret {secret:?}", file.display());
        }
        for finished in &printed {
            assert!(
                !finished.stdout.contains(secret) && !finished.stderr.contains(secret),
                "printed the secret {secret:?}: {finished}"
            );
        }
    }
}

#[test]
fn the_report_measures_the_rto_against_the_objective_and_writes_prometheus_metrics() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("report.yaml");
    let run_metrics = sandbox.path("run.prom").display().to_string();
    let finished = sandbox.dr_plan(&["run", &plan, "--yes", "--metrics-file", &run_metrics]);
    assert_eq!(finished.code, 0, "{finished}");
    assert!(finished.stderr.contains("RTO") && finished.stderr.contains("met (objective 5m)"), "{finished}");
    let run_id = sandbox.only_run();

    let markdown = sandbox.dr_plan(&["report", &run_id, "--format", "markdown"]);
    assert_eq!(markdown.code, 0, "{markdown}");
    assert!(markdown.stdout.contains(&format!("## dr-plan run `{run_id}`")), "{markdown}");
    assert!(markdown.stdout.contains("| Status | **succeeded** |"), "{markdown}");
    assert!(markdown.stdout.contains("| Measured RTO |") && markdown.stdout.contains("met (objective 5m)"));
    assert!(markdown.stdout.contains("| `pause` | sleep | succeeded |"), "{markdown}");

    let report_metrics = sandbox.path("report.prom").display().to_string();
    let json = sandbox.dr_plan(&["report", &run_id, "--format", "json", "--metrics-file", &report_metrics]);
    assert_eq!(json.code, 0, "{json}");
    let report: Json = serde_json::from_str(&json.stdout).expect("report JSON");
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["rto"]["objective_seconds"], 300.0);
    assert_eq!(report["rpo"]["objective_seconds"], 3600.0);
    let measured = report["rto"]["measured_seconds"].as_f64().expect("a measured RTO");
    assert!((0.3..30.0).contains(&measured), "measured RTO {measured}");
    assert_eq!(report["steps"][1]["id"], "pause");
    assert!(report["steps"][1]["seconds"].as_f64().unwrap() >= 0.3);
    assert_eq!(report["steps"][1]["attempts"], 1);
    assert_eq!(report["drill"], false);

    for file in ["run.prom", "report.prom"] {
        let text = sandbox.text(file);
        for metric in [
            "dr_plan_run_duration_seconds{plan=\"report\",drill=\"false\"} ",
            "dr_plan_last_success_timestamp_seconds{plan=\"report\",drill=\"false\"} ",
            "dr_plan_step_duration_seconds{plan=\"report\",step=\"pause\"} ",
        ] {
            assert!(text.contains(metric), "{file} lacks {metric}:\n{text}");
        }
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{file}: {line}");
        }
    }

    // Same plan with an objective it cannot meet.
    let missed = Sandbox::new(&["run"]);
    let plan = missed.plan("report.yaml");
    std::fs::write(missed.path(&plan), missed.text(&plan).replace("rto: 5m", "rto: 100ms")).unwrap();
    let finished = missed.dr_plan(&["run", &plan, "--yes"]);
    assert_eq!(finished.code, 0, "{finished}");
    let markdown = missed.dr_plan(&["report", &missed.only_run()]);
    assert!(markdown.stdout.contains("MISSED (objective 100ms)"), "{markdown}");
}

#[test]
fn a_drill_records_its_durations_and_the_next_dry_run_predicts_from_them() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("drill.yaml");
    let before = sandbox.dr_plan(&["dry-run", &plan]);
    assert_eq!(before.code, 0, "{before}");
    assert!(before.stdout.contains("from estimates") && !before.stdout.contains("drill history"), "{before}");

    let drill = sandbox.dr_plan(&["drill", &plan, "--yes"]);
    assert_eq!(drill.code, 0, "{drill}");
    let run_id = sandbox.only_run();
    let state = sandbox.state(&run_id);
    assert!(matches!(state.started, Event::RunStarted { drill: true, .. }));
    assert_eq!(outputs(&state, "mode")["stdout"], "drill=true");
    assert_eq!(skip_reason(&state, "page-oncall"), "`when` is false");

    let history = sandbox.text("state/history/drill.jsonl");
    let lines: Vec<Json> =
        history.lines().map(|line| serde_json::from_str(line).expect("history JSON")).collect();
    assert_eq!(lines.len(), 1, "{history}");
    assert_eq!(lines[0]["run_id"], run_id.as_str());
    assert!(lines[0]["steps"]["restore"].as_f64().unwrap() >= 0.3, "{history}");
    assert!(lines[0]["steps"]["mode"].is_number(), "{history}");
    assert!(lines[0]["steps"].get("page-oncall").is_none(), "a skipped step has no duration: {history}");

    let after = sandbox.dr_plan(&["dry-run", &plan]);
    assert_eq!(after.code, 0, "{after}");
    assert!(after.stdout.contains("from drill history"), "{after}");
    let report = sandbox.dr_plan(&["report", &run_id]);
    assert!(report.stdout.contains("(drill)") && report.stdout.contains("| Drill | yes |"), "{report}");
}

#[test]
fn http_check_polls_until_healthy_and_reports_the_last_answer_when_it_gives_up() {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("http_check.yaml");
    let server = HttpServer::start([(503, "starting"), (503, "starting"), (200, "all ok")]);
    let url = format!("url={}", server.url());
    let finished = sandbox.dr_plan(&["run", &plan, "--yes", "--var", &url]);
    assert_eq!(finished.code, 0, "{finished}");
    let state = sandbox.state(&sandbox.only_run());
    assert_eq!(outputs(&state, "healthy")["attempts"], 3);
    assert_eq!(outputs(&state, "healthy")["status"], 200);
    assert_eq!(server.request_count(), 3);
    assert!(server.requests().iter().all(|request| request.method == "GET" && request.path == "/healthz"));

    let never = Sandbox::new(&["run"]);
    let plan = never.plan("http_check.yaml");
    let down = HttpServer::start([(503, "down")]);
    let url = format!("url={}", down.url());
    let started = Instant::now();
    let finished = never.dr_plan(&["run", &plan, "--yes", "--var", &url, "--var", "deadline=1s"]);
    assert_eq!(finished.code, 1, "{finished}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(finished.stderr.contains("did not answer 200 within 1s"), "{finished}");
    assert!(finished.stderr.contains("last: status 503"), "{finished}");
    assert!(down.request_count() >= 2, "it polled: {}", down.request_count());
}

/// Runs `notify.yaml` against `webhook` and checks the URL was printed and stored nowhere.
fn run_notify(webhook: &str, secret_part: &str) -> (Sandbox, Finished) {
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("notify.yaml");
    let mut command = sandbox.command(&["run", &plan, "--yes"]);
    command.env("DR_PLAN_TEST_WEBHOOK", webhook);
    let finished = finish(command);
    for text in [&finished.stdout, &finished.stderr] {
        assert!(!text.contains(secret_part), "the webhook URL was printed: {finished}");
    }
    for file in files_under(&sandbox.state_dir()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!contains_bytes(&bytes, secret_part), "{} has the webhook URL", file.display());
    }
    (sandbox, finished)
}

#[test]
fn notify_posts_slack_and_json_bodies_and_fails_only_when_required() {
    let secret_part = "whk-N0t1fy5ecret";

    let server = HttpServer::start([(200, "ok")]);
    let (sandbox, finished) = run_notify(&format!("{}/hooks/{secret_part}", server.url()), secret_part);
    assert_eq!(finished.code, 0, "{finished}");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|request| request.method == "POST" && request.path.ends_with(secret_part)));
    assert_eq!(requests[0].body_json(), json!({ "text": "failover of eu-west-1 started" }));
    let run_id = sandbox.only_run();
    assert_eq!(
        requests[1].body_json(),
        json!({ "plan": "notify", "run_id": run_id, "step": "confirm", "drill": false, "message": "failover of eu-west-1 done" })
    );

    // A refused best-effort notification does not fail the run.
    let server = HttpServer::start([(500, "no"), (200, "ok")]);
    let (sandbox, finished) = run_notify(&format!("{}/hooks/{secret_part}", server.url()), secret_part);
    assert_eq!(finished.code, 0, "{finished}");
    let state = sandbox.state(&sandbox.only_run());
    assert_eq!(outputs(&state, "announce")["delivered"], false);
    assert_eq!(outputs(&state, "confirm")["delivered"], true);
    // ...but the operator is told, on every output and in the journal.
    assert!(
        finished
            .stderr
            .contains("⚠ announce: the webhook answered 500 Internal Server Error; message not delivered"),
        "{finished}"
    );
    assert!(
        state
            .records
            .iter()
            .any(|record| matches!(&record.event, Event::StepWarning { step, .. } if step == "announce"))
    );
    let report = sandbox.dr_plan(&["report", &sandbox.only_run()]);
    assert!(
        report.stdout.contains("### Warnings") && report.stdout.contains("message not delivered"),
        "{report}"
    );

    // A refused required notification does.
    let server = HttpServer::start([(200, "ok"), (500, "no")]);
    let (_, finished) = run_notify(&format!("{}/hooks/{secret_part}", server.url()), secret_part);
    assert_eq!(finished.code, 1, "{finished}");
    assert!(finished.stderr.contains("notification not delivered: the webhook answered 500"), "{finished}");

    // Nobody listening: the connection error names no URL either.
    let closed_port = free_port();
    let (_, finished) =
        run_notify(&format!("http://127.0.0.1:{closed_port}/hooks/{secret_part}"), secret_part);
    assert_eq!(finished.code, 1, "{finished}");
    assert!(finished.stderr.contains("notification not delivered"), "{finished}");
}

/// `dr-plan ARGUMENTS` in `sandbox` with `DR_PLAN_TEST_TOKEN` set.
fn with_token(sandbox: &Sandbox, token: &str, arguments: &[&str]) -> Finished {
    let mut command = sandbox.command(arguments);
    command.env("DR_PLAN_TEST_TOKEN", token);
    finish(command)
}

#[test]
fn an_output_that_held_a_secret_is_used_in_the_run_but_never_fed_redacted_to_a_resumed_one() {
    let token = "tkn-W1thh3ld-0042";

    // In one run the later step gets the real value; the journal only `***`.
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("withheld.yaml");
    let copy = sandbox.var_path("copy", "copy");
    let finished =
        with_token(&sandbox, token, &["run", &plan, "--yes", "--approve", "go-ahead", "--var", &copy]);
    assert_eq!(finished.code, 0, "{finished}");
    assert_eq!(sandbox.text("copy"), token);
    let journal = std::fs::read_to_string(sandbox.journal_path(&sandbox.only_run())).unwrap();
    assert!(!journal.contains(token), "{journal}");
    assert!(journal.contains(r#""withheld":["stdout"]"#), "{journal}");

    // Blocked at the approval, then resumed: the value is not in the journal, and
    // `issue` is not idempotent, so resume refuses once, before anything runs, with the
    // choice; `use` never receives `***`.
    let sandbox = Sandbox::new(&["run"]);
    let plan = sandbox.plan("withheld.yaml");
    let copy = sandbox.var_path("copy", "copy");
    let blocked = with_token(&sandbox, token, &["run", &plan, "--yes", "--var", &copy]);
    assert_eq!(blocked.code, 3, "{blocked}");
    let run_id = sandbox.only_run();
    let refused = with_token(&sandbox, token, &["resume", &run_id, "--yes", "--approve", "go-ahead"]);
    assert_eq!(refused.code, 3, "{refused}");
    assert!(refused.stderr.contains("`use` reads an output of `issue` that held a secret"), "{refused}");
    assert!(refused.stderr.contains("--mark-done use"), "{refused}");
    assert!(!refused.stderr.contains("on_failure"), "not an on_failure: continue case: {refused}");
    assert!(!sandbox.path("copy").exists(), "`use` never ran with `***`");
    // The printed command, pasted as it is, runs `issue` again and finishes the run.
    let command = support::hints::printed_command(&refused.stderr).expect("a next: command");
    assert!(command.contains("--rerun issue") && command.contains("--approve go-ahead"), "{command}");
    let finished =
        support::hints::run_printed(&command, sandbox.root.path(), &[("DR_PLAN_TEST_TOKEN", token)]);
    assert_eq!(finished.status.code(), Some(0), "{}", String::from_utf8_lossy(&finished.stderr));
    assert_eq!(sandbox.text("copy"), token);
}
