//! Crash safety: a run is killed with SIGKILL at pseudo-random moments (runs and
//! resumes alike), then resumed, until it finishes. Whatever the moment, the journal
//! still reads, the run always finishes, and a step the journal had recorded as
//! succeeded is never run again.
//!
//! The plan (`tests/fixtures/run/crash.yaml`) has twelve `exec` steps, each appending
//! its id to a log as its last action. `exec` is not idempotent, so every resume says
//! `--rerun-interrupted`; and since a kill -9 leaves the lock behind with a dead pid,
//! every resume also says `--break-stale-lock` (the designed, audited way out).
//! The whole process group is killed, as a machine crash would: otherwise the step
//! processes of the killed run would live on until its watchdog kills them, and could
//! write to the log after the snapshot. Killing dr-plan alone is tested at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use dr_plan::engine::journal::{self, Event, RunState, RunStatus, StepState};
use dr_plan::sys::process_tree::left_running_by;
use dr_plan::sys::process_tree::process_alive;

use crate::support;

use support::process::{send_signal, wait_until};
use support::sandbox::{Sandbox, files_under};

const STEPS: usize = 12;
/// Kill points across the test (each round adds its kills until this is reached).
const KILLS_WANTED: usize = 150;
/// A round lets its attempt run to the end after this many kills, so it terminates.
const KILLS_PER_ROUND: usize = 8;
/// How many more steps an attempt may finish before its kill: 8 kills a round, 1.5 steps
/// each on average, cover the 12 steps.
const MOST_STEPS_PER_ATTEMPT: u64 = 3;
/// How far into a stage a kill may come: a step of the plan takes 10 to 50 ms.
const LONGEST_DELAY_MILLISECONDS: u64 = 30;
/// An attempt that is not killed must finish within this.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(30);

/// When an attempt is killed: once the run's journal counts `succeeded` succeeded steps
/// (at once when it already does), `then` later. Aimed at the journal rather than at a
/// time since the start, the kills fall on every stage of the plan, resumes included,
/// however slow the machine is today.
#[derive(Clone, Copy)]
struct Moment {
    succeeded: usize,
    then: Duration,
}

/// splitmix64: a fixed seed gives the same kill moments on every run of the test.
struct Moments(u64);

impl Moments {
    fn number(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// A moment of an attempt that starts with `already` steps succeeded: zero to
    /// [`MOST_STEPS_PER_ATTEMPT`] more steps later (zero: while it starts, or finishes
    /// the run), and a delay into that stage. A round's attempts thus walk through the
    /// plan a few steps at a time, as its eight kills cover it.
    fn next(&mut self, already: usize) -> Moment {
        let more = usize::try_from(self.number() % (MOST_STEPS_PER_ATTEMPT + 1)).expect("a small number");
        let then = Duration::from_millis(self.number() % (LONGEST_DELAY_MILLISECONDS + 1));
        Moment { succeeded: (already + more).min(STEPS), then }
    }
}

/// What the journal and the log said right after a kill.
struct Snapshot {
    succeeded: BTreeSet<String>,
    log_counts: BTreeMap<String, usize>,
}

/// A sandbox of plans from `tests/fixtures/run/`, where each attempt's output goes to
/// files of its own.
struct Round(Sandbox);

impl std::ops::Deref for Round {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.0
    }
}

impl Round {
    fn new() -> Round {
        Round::with_plan("crash.yaml")
    }

    fn with_plan(fixture: &str) -> Round {
        let sandbox = Sandbox::new(&["run"]);
        sandbox.plan(fixture);
        Round(sandbox)
    }

    /// `dr-plan` in its own process group, output to files, stdin closed.
    fn command(&self, arguments: &[&str], attempt: usize) -> Command {
        let output = |stream: &str| {
            std::fs::File::create(self.path(&format!("attempt-{attempt}.{stream}"))).expect("an output file")
        };
        let mut command = self.0.command(arguments);
        command.stdout(output("stdout")).stderr(output("stderr")).process_group(0);
        command
    }

    fn output(&self, attempt: usize) -> String {
        let read = |stream: &str| {
            std::fs::read_to_string(self.path(&format!("attempt-{attempt}.{stream}"))).unwrap_or_default()
        };
        format!("--- stdout\n{}--- stderr\n{}", read("stdout"), read("stderr"))
    }

    /// The run whose journal has begun (a kill before `run_started` leaves none).
    fn started_run(&self) -> Option<String> {
        let mut started: Vec<String> = self
            .run_ids()
            .into_iter()
            .filter(|id| journal::read(&self.journal_path(id)).is_ok_and(|records| !records.is_empty()))
            .collect();
        assert!(started.len() <= 1, "more than one run began: {started:?}");
        started.pop()
    }

    /// How many `step_succeeded` records the journal holds now; zero before it begins.
    fn succeeded_steps(&self) -> usize {
        self.run_ids()
            .iter()
            .map(|id| std::fs::read_to_string(self.journal_path(id)).unwrap_or_default())
            .map(|journal| journal.matches(r#""event":"step_succeeded""#).count())
            .sum()
    }

    /// Reads and replays the journal; a journal that does not read is a failure.
    fn replay(&self, run_id: &str) -> RunState {
        journal::read(&self.journal_path(run_id))
            .and_then(RunState::replay)
            .unwrap_or_else(|error| panic!("the journal of {run_id} does not read after a kill: {error}"))
    }

    fn log_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for line in std::fs::read_to_string(self.path("log")).unwrap_or_default().lines() {
            *counts.entry(line.to_owned()).or_insert(0) += 1;
        }
        counts
    }
}

/// SIGKILL to the whole process group of `child`, as a machine crash would; reaps it.
fn kill_group(child: &mut Child) {
    send_signal("KILL", &format!("-{}", child.id()));
    child.wait().expect("reap the killed process");
}

/// Lets the process run until `moment` (the journal's count of succeeded steps is read
/// by `succeeded`), then kills it, unless it exits on its own first. Returns its exit
/// code, or `None` when it was killed. Without a moment it must finish within
/// [`ATTEMPT_LIMIT`].
fn run_or_kill(child: &mut Child, moment: Option<Moment>, succeeded: impl Fn() -> usize) -> Option<i32> {
    let started = Instant::now();
    let mut stage_reached: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status.code().unwrap_or(-1));
        }
        if let Some(moment) = moment {
            if stage_reached.is_none() && succeeded() >= moment.succeeded {
                stage_reached = Some(Instant::now());
            }
            if stage_reached.is_some_and(|reached| reached.elapsed() >= moment.then) {
                kill_group(child);
                return None;
            }
        }
        if started.elapsed() > ATTEMPT_LIMIT {
            kill_group(child);
            panic!(
                "an attempt did not finish within {ATTEMPT_LIMIT:?} (waiting for {:?} steps)",
                moment.map(|moment| moment.succeeded)
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What one round observed.
struct Outcome {
    kills: usize,
    resume_kills: usize,
    /// For each kill with a journal: how many steps had succeeded.
    progress_at_kills: Vec<usize>,
    stale_locks_broken: usize,
}

/// Runs the plan to the end, killing attempts at the given moments.
fn crash_until_finished(moments: &mut Moments) -> Outcome {
    let round = Round::new();
    let log = format!("log={}", round.path("log").display());
    let mut snapshots: Vec<Snapshot> = Vec::new();
    let mut run_id: Option<String> = None;
    let mut kills = 0;
    let mut resume_kills = 0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut command = match &run_id {
            // A kill before the journal began may still have left a lock behind.
            None => {
                round.command(&["run", "crash.yaml", "--yes", "--var", &log, "--break-stale-lock"], attempt)
            }
            Some(id) => round.command(&["resume", id, "--rerun-interrupted", "--break-stale-lock"], attempt),
        };
        let moment = (kills < KILLS_PER_ROUND).then(|| moments.next(round.succeeded_steps()));
        let mut child = command.spawn().expect("dr-plan starts");
        let code = run_or_kill(&mut child, moment, || round.succeeded_steps());
        if run_id.is_none() {
            run_id = round.started_run();
        }
        match code {
            Some(0) => break,
            Some(code) => panic!("attempt {attempt} exited with {code}:\n{}", round.output(attempt)),
            None => {
                kills += 1;
                if command.get_args().next().is_some_and(|argument| argument == "resume") {
                    resume_kills += 1;
                }
                if let Some(id) = &run_id {
                    let state = round.replay(id);
                    let succeeded = state
                        .steps
                        .iter()
                        .filter(|(_, step)| matches!(step, StepState::Succeeded { .. }))
                        .map(|(id, _)| id.clone())
                        .collect();
                    snapshots.push(Snapshot { succeeded, log_counts: round.log_counts() });
                }
            }
        }
    }

    let run_id = run_id.expect("the finished run has a journal");
    let state = round.replay(&run_id);
    assert_eq!(state.status, Some(RunStatus::Succeeded), "{run_id} finished");
    let succeeded = state.steps.values().filter(|step| matches!(step, StepState::Succeeded { .. })).count();
    assert_eq!(succeeded, STEPS, "every step succeeded in the end: {:?}", state.steps);
    let counts = round.log_counts();
    for (index, snapshot) in snapshots.iter().enumerate() {
        for step in &snapshot.succeeded {
            let before = snapshot.log_counts.get(step).copied().unwrap_or(0);
            assert!(
                before >= 1,
                "kill {}: {step} is journaled as succeeded but never wrote its line",
                index + 1
            );
            assert_eq!(
                counts.get(step).copied().unwrap_or(0),
                before,
                "{step} was journaled as succeeded at kill {} and ran again afterwards",
                index + 1
            );
        }
    }
    for (step, count) in &counts {
        let started = state
            .records
            .iter()
            .filter(
                |record| matches!(&record.event, Event::StepStarted { step: started, .. } if started == step),
            )
            .count();
        assert!(*count <= started, "{step} wrote {count} lines in {started} journaled attempts");
    }
    assert_eq!(counts.len(), STEPS, "every step wrote its line: {counts:?}");
    let stale_locks_broken =
        state.records.iter().filter(|record| matches!(record.event, Event::LockBroken { .. })).count();
    let progress_at_kills = snapshots.iter().map(|snapshot| snapshot.succeeded.len()).collect();
    Outcome { kills, resume_kills, progress_at_kills, stale_locks_broken }
}

#[test]
fn runs_killed_at_random_moments_resume_to_the_end_without_running_a_finished_step_twice() {
    let started = Instant::now();
    let mut moments = Moments(0x00D1_5A57_E125_0001);
    let mut kills = 0;
    let mut resume_kills = 0;
    let mut rounds = 0;
    let mut stale_locks_broken = 0;
    // How many kills found 0, 1, ... 12 steps succeeded.
    let mut progress = [0_usize; STEPS + 1];
    while kills < KILLS_WANTED {
        let outcome = crash_until_finished(&mut moments);
        kills += outcome.kills;
        resume_kills += outcome.resume_kills;
        stale_locks_broken += outcome.stale_locks_broken;
        for succeeded in outcome.progress_at_kills {
            progress[succeeded] += 1;
        }
        rounds += 1;
    }
    eprintln!(
        "{kills} kills ({resume_kills} of resumes) over {rounds} runs, {stale_locks_broken} stale locks broken, \
         steps succeeded at each kill {progress:?}, in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(resume_kills > 0, "no resume was ever killed");
    assert!(stale_locks_broken > 0, "no kill ever left a lock behind: the lock path went untested");
    assert!(
        progress[1..STEPS].iter().filter(|&&count| count > 0).count() >= STEPS / 2,
        "kills hit few stages"
    );
}

#[test]
fn a_torn_last_journal_line_is_cut_off_before_resume_appends() {
    let round = Round::new();
    let log = format!("log={}", round.path("log").display());
    let mut child =
        round.command(&["run", "crash.yaml", "--yes", "--var", &log], 1).spawn().expect("dr-plan starts");
    let mut run_id = None;
    let three_finished = wait_until(Duration::from_secs(20), || {
        run_id = round.started_run().filter(|id| {
            let records = journal::read(&round.journal_path(id)).unwrap_or_default();
            records.iter().filter(|record| matches!(record.event, Event::StepSucceeded { .. })).count() >= 3
        });
        run_id.is_some()
    });
    assert!(three_finished, "three steps never finished");
    let run_id = run_id.expect("found above");
    kill_group(&mut child);
    let before = round.replay(&run_id);
    assert_ne!(before.status, Some(RunStatus::Succeeded), "killed before the end");

    // As if the process had died in the middle of writing a record.
    let journal_path = round.journal_path(&run_id);
    let mut text = std::fs::read_to_string(&journal_path).unwrap();
    text.push_str(r#"{"at":"2026-01-01T00:00:00.000Z","event":"step_succ"#);
    std::fs::write(&journal_path, &text).unwrap();
    assert_eq!(round.replay(&run_id).records.len(), before.records.len(), "the torn line is ignored");

    // kill -9 left the lock: resume says so until told to break it.
    let blocked = round.command(&["resume", &run_id, "--rerun-interrupted"], 2).status().unwrap();
    assert_eq!(blocked.code(), Some(3), "{}", round.output(2));
    assert!(round.output(2).contains("stale"), "{}", round.output(2));

    let resumed =
        round.command(&["resume", &run_id, "--rerun-interrupted", "--break-stale-lock"], 3).status().unwrap();
    assert_eq!(resumed.code(), Some(0), "{}", round.output(3));
    let text = std::fs::read_to_string(&journal_path).unwrap();
    let after = round.replay(&run_id);
    assert_eq!(after.status, Some(RunStatus::Succeeded));
    for (number, line) in text.lines().enumerate() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "line {} is damaged: {line}",
            number + 1
        );
    }
    let status = round.command(&["status", "--format", "json"], 4).status().unwrap();
    assert!(status.success());
    assert!(round.output(4).contains(&run_id), "status still lists the run: {}", round.output(4));
}

/// How many `step_started` records the journals hold now.
fn started_steps(round: &Round) -> usize {
    round
        .run_ids()
        .iter()
        .map(|id| std::fs::read_to_string(round.journal_path(id)).unwrap_or_default())
        .map(|journal| journal.matches(r#""event":"step_started""#).count())
        .sum()
}

/// Group commit under kill -9: the wide plan (`first`, eight steps released together,
/// `last`) is killed when its journal counts 1 to 10 starts, so kills fall while a
/// stage's starts are being written, after they are written and before or while their
/// programs are spawned, and mid-stage. Whatever the moment, no program ran without its
/// start in the journal, a step journaled as succeeded had written its line, and one
/// resume finishes the run without running a succeeded step again.
#[test]
fn kills_while_a_stage_starts_together_resume_to_the_end_and_nothing_ran_unjournaled() {
    let mut moments = Moments(0x00D1_5A57_E125_0002);
    for starts in 1..=10 {
        let round = Round::with_plan("wide.yaml");
        let seen = round.path("seen");
        std::fs::create_dir(&seen).unwrap();
        let log = format!("log={}", round.path("log").display());
        let seen_var = format!("seen={}", seen.display());
        let arguments =
            ["run", "wide.yaml", "--yes", "--concurrency", "10", "--var", &log, "--var", &seen_var];
        let mut child = round.command(&arguments, 1).spawn().expect("dr-plan starts");
        let then = Duration::from_millis(moments.number() % 8);
        // The moment counts starts here, not successes.
        let moment = Moment { succeeded: starts, then };
        match run_or_kill(&mut child, Some(moment), || started_steps(&round)) {
            Some(0) => continue, // finished before the moment came: nothing to check
            Some(code) => panic!("the run exited with {code}:\n{}", round.output(1)),
            None => {}
        }
        let run_id = round.started_run().expect("a start was journaled, so the run began");
        let killed = round.replay(&run_id);
        let journaled_start = |step: &str| {
            killed.records.iter().any(
                |record| matches!(&record.event, Event::StepStarted { step: started, .. } if started == step),
            )
        };
        for path in files_under(&seen) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let step = name.split('.').next().unwrap().to_owned();
            assert!(journaled_start(&step), "kill at {starts} starts: {step}'s program ran unjournaled");
        }
        let at_kill = round.log_counts();
        for (step, state) in &killed.steps {
            if matches!(state, StepState::Succeeded { .. }) {
                assert_eq!(at_kill.get(step), Some(&1), "kill at {starts} starts: {step} succeeded unlogged");
            }
        }

        let resume = ["resume", &run_id, "--rerun-interrupted", "--break-stale-lock"];
        let code = round.command(&resume, 2).status().expect("resume runs").code();
        assert_eq!(code, Some(0), "kill at {starts} starts:\n{}", round.output(2));
        let state = round.replay(&run_id);
        assert_eq!(state.status, Some(RunStatus::Succeeded));
        let counts = round.log_counts();
        assert_eq!(counts.len(), 10, "every step wrote its line: {counts:?}");
        for (step, state) in &killed.steps {
            if matches!(state, StepState::Succeeded { .. }) {
                assert_eq!(counts.get(step), Some(&1), "kill at {starts} starts: {step} ran again");
            }
        }
        for (step, count) in &counts {
            let attempts = state
                .records
                .iter()
                .filter(|record| matches!(&record.event, Event::StepStarted { step: started, .. } if started == step))
                .count();
            assert!(*count <= attempts, "{step} wrote {count} lines in {attempts} journaled attempts");
        }
    }
}

/// Starts `interrupt.yaml` and returns once its step `long` runs.
fn start_until_long_runs(round: &Round) -> Child {
    let log = format!("log={}", round.path("log").display());
    let release = format!("release={}", round.path("release").display());
    let arguments = ["run", "interrupt.yaml", "--yes", "--var", &log, "--var", &release];
    let child = round.command(&arguments, 1).spawn().expect("dr-plan starts");
    let started = wait_until(Duration::from_secs(20), || round.text("log").contains("long started"));
    assert!(started, "`long` never started");
    child
}

#[test]
fn after_a_kill_resume_lists_every_decision_and_prints_one_command_that_finishes_the_run() {
    let round = Round::with_plan("interrupt.yaml");
    let mut child = start_until_long_runs(&round);
    kill_group(&mut child);
    let run_id = round.started_run().expect("the run began");

    let refused = round.command(&["resume", &run_id], 2).status().unwrap();
    assert_eq!(refused.code(), Some(3), "{}", round.output(2));
    let output = round.output(2);
    assert!(
        output.contains("stale") && output.contains("`long` was running"),
        "both decisions at once: {output}"
    );
    let command = support::hints::printed_command(&output).expect("a next: command");
    let state_dir = round.state_dir().display().to_string();
    assert_eq!(
        command,
        format!("dr-plan resume {run_id} --break-stale-lock --rerun-interrupted --state-dir {state_dir}"),
        "{output}"
    );
    // Deciding is the operator's: the refusal wrote nothing.
    let state = round.replay(&run_id);
    assert!(!state.records.iter().any(|record| matches!(record.event, Event::LockBroken { .. })));
    assert!(matches!(state.steps.get("long"), Some(StepState::Interrupted { .. })), "{:?}", state.steps);

    std::fs::write(round.path("release"), "").unwrap();
    let resumed = support::hints::run_printed(&command, round.root.path(), &[]);
    assert_eq!(resumed.status.code(), Some(0), "{}", String::from_utf8_lossy(&resumed.stderr));
    let state = round.replay(&run_id);
    assert!(state.records.iter().any(|record| matches!(record.event, Event::LockBroken { .. })));
    let log = std::fs::read_to_string(round.path("log")).unwrap();
    assert_eq!(log, "quick\nlong started\nlong started\nlong end\n");
}

#[test]
fn resume_waits_while_a_step_of_the_killed_run_is_still_running() {
    let round = Round::with_plan("interrupt.yaml");
    let mut child = start_until_long_runs(&round);
    // The safety net for a watchdog that was itself killed: SIGKILL of the watchdog,
    // then of dr-plan alone; `long`'s shell, in dr-plan's group, goes on.
    let watchdog = watchdog_of(child.id());
    send_signal("KILL", &watchdog.to_string());
    assert!(wait_until(Duration::from_secs(2), || !process_alive(watchdog)), "the watchdog survived kill -9");
    child.kill().expect("kill -9 dr-plan");
    let _ = child.wait();
    let run_id = round.started_run().expect("the run began");

    let resume = ["resume", &run_id, "--break-stale-lock", "--rerun-interrupted"];
    let refused = round.command(&resume, 2).status().unwrap();
    assert_eq!(refused.code(), Some(3), "{}", round.output(2));
    let output = round.output(2);
    assert!(output.contains("still running") && output.contains("(sh)"), "{output}");
    assert!(
        !round.replay(&run_id).records.iter().any(|record| matches!(record.event, Event::LockBroken { .. }))
    );

    // Once the orphan has finished, resume takes over.
    std::fs::write(round.path("release"), "").unwrap();
    let started = Instant::now();
    loop {
        let resumed = round.command(&resume, 3).status().unwrap();
        if resumed.code() == Some(0) {
            break;
        }
        assert!(round.output(3).contains("still running"), "{}", round.output(3));
        assert!(started.elapsed() < Duration::from_secs(20), "the orphan never ended: {}", round.output(3));
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(round.path("log")).unwrap();
    assert_eq!(log, "quick\nlong started\nlong end\nlong started\nlong end\n");
}

/// How soon the programs of a dr-plan killed alone must be gone.
const ORPHANS_GONE_WITHIN: Duration = Duration::from_secs(2);

/// Starts `orphans.yaml` and returns once both programs of its step `work` run.
fn start_until_orphans_run(round: &Round) -> Child {
    let log = format!("log={}", round.path("log").display());
    let release = format!("release={}", round.path("release").display());
    let arguments = ["run", "orphans.yaml", "--yes", "--var", &log, "--var", &release];
    let child = round.command(&arguments, 1).spawn().expect("dr-plan starts");
    let sleeping = || left_running_by(child.id()).iter().filter(|(_, name)| name == "sleep").count();
    assert!(wait_until(Duration::from_secs(20), || sleeping() == 2), "`work` never started its two programs");
    child
}

/// The pid of the watchdog of the dr-plan process `dr_plan`, found by its arguments.
fn watchdog_of(dr_plan: u32) -> u32 {
    let wanted = format!("__watchdog\0{dr_plan}\0");
    let find = || {
        std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let arguments = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            String::from_utf8_lossy(&arguments).contains(&wanted).then_some(pid)
        })
    };
    let mut found = None;
    assert!(
        wait_until(Duration::from_secs(5), || {
            found = find();
            found.is_some()
        }),
        "no watchdog for {dr_plan}"
    );
    found.expect("found above")
}

/// Asserts that nothing a step of the dead dr-plan `pid` started is left, soon.
fn assert_orphans_gone(pid: u32) {
    let gone = wait_until(ORPHANS_GONE_WITHIN, || left_running_by(pid).is_empty());
    assert!(gone, "still running {ORPHANS_GONE_WITHIN:?} after dr-plan died: {:?}", left_running_by(pid));
}

/// Resumes the only run, rerunning `work` (quick now), and asserts the lock was not
/// refused for programs left running.
fn assert_resume_takes_over(round: &Round, attempt: usize) {
    std::fs::write(round.path("release"), "").unwrap();
    let run_id = round.started_run().expect("the run began");
    let resume = ["resume", &run_id, "--break-stale-lock", "--rerun-interrupted"];
    let resumed = round.command(&resume, attempt).status().unwrap();
    assert_eq!(resumed.code(), Some(0), "{}", round.output(attempt));
    assert!(!round.output(attempt).contains("still running"), "{}", round.output(attempt));
    let log = std::fs::read_to_string(round.path("log")).unwrap();
    assert_eq!(log, "work rerun\n");
}

#[test]
fn the_programs_of_a_dr_plan_killed_alone_die_with_it_and_resume_is_not_blocked() {
    let round = Round::with_plan("orphans.yaml");
    let mut child = start_until_orphans_run(&round);
    let pid = child.id();
    // SIGKILL of dr-plan alone: its guards never run; the watchdog kills the programs.
    child.kill().expect("kill -9 dr-plan");
    let _ = child.wait();
    assert_orphans_gone(pid);
    assert_resume_takes_over(&round, 2);
}

#[test]
fn the_watchdog_outlives_a_ctrl_c_and_still_cleans_up_after_a_later_kill() {
    let round = Round::with_plan("orphans.yaml");
    let mut child = start_until_orphans_run(&round);
    let pid = child.id();
    let watchdog = watchdog_of(pid);
    // dr-plan stopped cannot end the run itself on SIGINT; the programs ignore SIGINT. So
    // after a Ctrl-C to dr-plan's group, only the watchdog can still clean up.
    send_signal("STOP", &pid.to_string());
    send_signal("INT", &format!("-{pid}"));
    // What did not die of a signal says nothing: give a wrong disposition time to show.
    std::thread::sleep(Duration::from_millis(300));
    assert!(process_alive(watchdog), "the watchdog died of the SIGINT to dr-plan's group");
    let sleeping = left_running_by(pid).iter().filter(|(_, name)| name == "sleep").count();
    assert_eq!(sleeping, 2, "the step's programs ignore SIGINT: {:?}", left_running_by(pid));
    child.kill().expect("kill -9 dr-plan");
    let _ = child.wait();
    assert_orphans_gone(pid);
    assert!(wait_until(ORPHANS_GONE_WITHIN, || !process_alive(watchdog)), "the watchdog did not exit");
    assert_resume_takes_over(&round, 2);
}
