//! The incident path as a person at a terminal meets it: `dr-plan run` in a
//! pseudo-terminal, with its start prompt, its spinners, its approval questions and
//! Ctrl-C typed at the keyboard. The tests read the emulated screen (what a person
//! sees after carriage returns and redraws), the state directory and the journal.
//! Plans are in `tests/fixtures/terminal/`; each test has its own `--state-dir`.

use crate::support;

use std::process::Output;
use std::time::{Duration, Instant};

use dr_plan::sys::process_tree::left_running_by;
use support::hints::{printed_command, run_printed};
use support::process::{run_bounded, wait_until};
use support::sandbox::BINARY;
use support::terminal::{Exit, Terminal};

/// Time for a prompt or a line to show up (a debug binary on a loaded machine).
const APPEAR: Duration = Duration::from_secs(10);
/// What the operator is promised after Ctrl-C: the run stops within this.
const AFTER_CTRL_C: Duration = Duration::from_secs(2);
/// A short plan runs to its end within this.
const FINISH: Duration = Duration::from_secs(12);
/// The exit code of an interrupted run.
const INTERRUPTED: Exit = Exit::Code(130);

/// A sandbox of plans from `tests/fixtures/terminal/`, run at a terminal or, for the
/// commands an operator types in another shell, without one.
struct Sandbox(support::sandbox::Sandbox);

impl std::ops::Deref for Sandbox {
    type Target = support::sandbox::Sandbox;
    fn deref(&self) -> &support::sandbox::Sandbox {
        &self.0
    }
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox(support::sandbox::Sandbox::new(&["terminal"]))
    }

    /// `dr-plan ARGUMENTS --state-dir D` at a terminal.
    fn terminal(&self, arguments: &[&str]) -> Terminal {
        let state_dir = self.state_dir().display().to_string();
        let mut all = arguments.to_vec();
        all.extend(["--state-dir", &state_dir]);
        Terminal::spawn(BINARY, &all, self.root.path(), &[])
    }

    /// `dr-plan ARGUMENTS --state-dir D` without a terminal (stdin closed), within
    /// [`FINISH`].
    fn dr_plan(&self, arguments: &[&str]) -> Output {
        run_bounded(&mut self.command(arguments), None, FINISH, "dr-plan")
    }

    fn lock_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.state_dir().join("locks"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The one run of the state directory; panics with the screen otherwise.
    fn only_run(&self, terminal: &Terminal) -> String {
        match self.run_ids().as_slice() {
            [id] => id.clone(),
            ids => panic!("expected exactly one run under state/runs, found {ids:?}\n{}", terminal.report()),
        }
    }

    /// The events of the journal, by name (from the JSON: the events may gain fields).
    fn events(&self, run_id: &str) -> Vec<String> {
        self.journal(run_id).iter().filter_map(|record| record["event"].as_str().map(str::to_owned)).collect()
    }

    /// Waits until the journal of the only run says `step` started.
    fn wait_step_started(&self, terminal: &Terminal, step: &str) {
        let started = self.0.wait_step_started(step, APPEAR);
        assert!(started, "step `{step}` did not start\n{}", terminal.report());
    }
}

/// How many times `needle` is on the screen.
fn count(screen: &str, needle: &str) -> usize {
    screen.matches(needle).count()
}

/// Types `answer` at a question that shows `instruction`, and waits for the question
/// to be asked again: one more `instruction` on the screen.
fn answer_expecting_question_again(terminal: &mut Terminal, answer: &str, instruction: &str) -> String {
    let before = count(&terminal.screen(), instruction);
    terminal.type_line(answer);
    terminal
        .wait_for_screen(|screen| count(screen, instruction) > before, Duration::from_secs(5))
        .unwrap_or_else(|screen| {
            panic!(
                "after {answer:?} the question was not asked again ({instruction:?} still {before} times)\n{}",
                terminal.report_with(&screen)
            )
        })
}

fn describe(output: &Output) -> String {
    support::process::describe_output(output)
}

// --- a. the start prompt -------------------------------------------------------------

#[test]
fn yes_at_the_start_prompt_starts_the_run() {
    let sandbox = Sandbox::new();
    let plan = sandbox.plan("start.yaml");
    let mut terminal = sandbox.terminal(&["run", &plan]);
    terminal.expect_text("Type `yes` to start", APPEAR);
    terminal.type_line("yes");
    let screen = terminal.expect_exit(&Exit::Code(0), FINISH);
    let run_id = sandbox.only_run(&terminal);
    assert!(screen.contains(&format!("run {run_id} of plan start started")), "{}", terminal.report());
    assert!(sandbox.lock_files().is_empty(), "lock left: {:?}", sandbox.lock_files());
}

#[test]
fn anything_but_yes_at_the_start_prompt_asks_again() {
    let sandbox = Sandbox::new();
    let plan = sandbox.plan("start.yaml");
    let mut terminal = sandbox.terminal(&["run", &plan]);
    terminal.expect_text("Type `yes` to start", APPEAR);
    for answer in ["y", "", "ye"] {
        answer_expecting_question_again(&mut terminal, answer, "`yes`");
        assert_eq!(terminal.try_exit(), None, "{answer:?} ended the program\n{}", terminal.report());
        let journals: Vec<String> =
            sandbox.run_ids().into_iter().filter(|id| !sandbox.journal(id).is_empty()).collect();
        assert!(journals.is_empty(), "{answer:?} started a run: {journals:?}\n{}", terminal.report());
    }
    terminal.type_line("yes");
    terminal.expect_exit(&Exit::Code(0), FINISH);
    let run_id = sandbox.only_run(&terminal);
    assert!(sandbox.events(&run_id).contains(&"run_finished".to_owned()), "{}", terminal.report());
}

#[test]
fn no_at_the_start_prompt_starts_nothing() {
    let sandbox = Sandbox::new();
    let plan = sandbox.plan("start.yaml");
    let mut terminal = sandbox.terminal(&["run", &plan]);
    terminal.expect_text("Type `yes` to start", APPEAR);
    terminal.type_line("no");
    terminal.expect_exit(&Exit::Code(1), FINISH);
    assert_eq!(sandbox.run_ids(), Vec::<String>::new(), "a run directory was left\n{}", terminal.report());
    assert_eq!(sandbox.lock_files(), Vec::<String>::new(), "a lock was left\n{}", terminal.report());
}

// --- b. Ctrl-C at the start prompt -----------------------------------------------------

#[test]
fn ctrl_c_at_the_start_prompt_leaves_nothing_behind() {
    let sandbox = Sandbox::new();
    let plan = sandbox.plan("start.yaml");
    let mut terminal = sandbox.terminal(&["run", &plan]);
    terminal.expect_text("Type `yes` to start", APPEAR);
    terminal.ctrl_c();
    terminal.expect_exit(&INTERRUPTED, AFTER_CTRL_C);
    assert_eq!(sandbox.lock_files(), Vec::<String>::new(), "a lock was left\n{}", terminal.report());
    assert_eq!(sandbox.run_ids(), Vec::<String>::new(), "a run directory was left\n{}", terminal.report());
    let again = sandbox.dr_plan(&["run", &plan, "--yes"]);
    assert_eq!(again.status.code(), Some(0), "the next run was blocked: {}", describe(&again));
}

// --- c, d, e. the approval question ----------------------------------------------------

const QUESTION: &str = "Fail DNS over to eu-west-2?";

/// Starts the approval plan (past the start prompt) and waits for its question,
/// with the `settle` spinner running beside it; returns when the question appeared.
fn at_the_approval_question(sandbox: &Sandbox) -> (Terminal, Instant) {
    let plan = sandbox.plan("approval.yaml");
    let terminal = sandbox.terminal(&["run", &plan, "--yes"]);
    terminal
        .wait_for_screen(|screen| screen.contains(QUESTION) && screen.contains("Type `yes`"), APPEAR)
        .unwrap_or_else(|screen| {
            panic!("the approval question did not appear\n{}", terminal.report_with(&screen))
        });
    (terminal, Instant::now())
}

#[test]
fn the_approval_question_stays_on_screen_and_asks_again_until_yes() {
    let sandbox = Sandbox::new();
    let (mut terminal, asked) = at_the_approval_question(&sandbox);
    assert!(terminal.screen().contains("settle"), "no spinner for `settle` is drawn\n{}", terminal.report());
    // `settle` runs on (its spinner ticking, hidden) and ends while the question waits:
    // its line is printed under a question that must stay (once the line and the
    // prompt after it are both written).
    terminal.expect_text("✔ settle (", APPEAR);
    let stayed = terminal.wait_for_screen(
        |screen| screen.contains("✔ settle (") && screen.contains(QUESTION) && screen.contains("Type `yes`"),
        APPEAR,
    );
    assert!(stayed.is_ok(), "the question left the screen while the spinner ran\n{}", terminal.report());

    let screen = answer_expecting_question_again(&mut terminal, "y", "`yes`");
    assert!(screen.contains("`no`"), "the question again does not say `no` refuses\n{}", terminal.report());
    assert_eq!(terminal.try_exit(), None, "`y` ended the run\n{}", terminal.report());
    let run_id = sandbox.only_run(&terminal);
    let events = sandbox.events(&run_id);
    for event in ["step_failed", "undo_started", "run_finished"] {
        assert!(!events.contains(&event.to_owned()), "`y` led to {event}: {events:?}\n{}", terminal.report());
    }

    let waited = asked.elapsed().as_secs_f64();
    terminal.type_line("yes");
    terminal.expect_exit(&Exit::Code(0), FINISH);
    let journal = sandbox.journal(&run_id);
    let granted = journal
        .iter()
        .find(|record| record["event"] == "approval_granted" && record["step"] == "go-ahead")
        .unwrap_or_else(|| panic!("no approval_granted for go-ahead in {journal:#?}\n{}", terminal.report()));
    assert_eq!(granted["via"], "terminal", "{granted}");
    let waited_seconds = granted["waited_seconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("approval_granted has no numeric waited_seconds: {granted}"));
    // The question was on the screen a little after the engine asked it.
    assert!(
        waited_seconds >= waited - 0.5,
        "waited_seconds {waited_seconds} but the question was on the screen {waited:.1}s: {granted}"
    );
}

#[test]
fn status_from_another_shell_shows_the_question_waiting_at_the_terminal() {
    let sandbox = Sandbox::new();
    let (mut terminal, _) = at_the_approval_question(&sandbox);
    let run_id = sandbox.only_run(&terminal);
    let status = sandbox.dr_plan(&["status", &run_id]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("waiting for an answer at that terminal") && text.contains(QUESTION), "{text}");
    terminal.type_line("yes");
    terminal.expect_exit(&Exit::Code(0), FINISH);
}

#[test]
fn no_at_the_approval_question_fails_the_run() {
    let sandbox = Sandbox::new();
    let (mut terminal, _) = at_the_approval_question(&sandbox);
    terminal.type_line("no");
    let screen = terminal.expect_exit(&Exit::Code(1), FINISH);
    assert!(
        screen.contains("refused"),
        "the screen does not say the approval was refused\n{}",
        terminal.report()
    );
}

#[test]
fn ctrl_c_at_the_approval_question_interrupts_and_the_next_command_finishes_the_run() {
    let sandbox = Sandbox::new();
    let (mut terminal, _) = at_the_approval_question(&sandbox);
    terminal.ctrl_c();
    terminal.expect_exit(&INTERRUPTED, AFTER_CTRL_C);
    assert_eq!(sandbox.lock_files(), Vec::<String>::new(), "a lock was left\n{}", terminal.report());
    let run_id = sandbox.only_run(&terminal);

    let status = sandbox.dr_plan(&["status", &run_id]);
    let text =
        format!("{}{}", String::from_utf8_lossy(&status.stdout), String::from_utf8_lossy(&status.stderr));
    assert!(text.contains("interrupted"), "status does not say interrupted: {}", describe(&status));
    let next = next_command(&status)
        .unwrap_or_else(|| panic!("status does not end with `next:`: {}", describe(&status)));
    let command =
        if next.contains("--approve go-ahead") { next } else { format!("{next} --approve go-ahead") };

    // Pasted as printed: `dr-plan` is wherever cargo built it, first on PATH.
    let resumed = run_printed(&command, sandbox.root.path(), &[]);
    assert_eq!(resumed.status.code(), Some(0), "`{command}` did not finish the run: {}", describe(&resumed));
    assert!(
        sandbox.events(&run_id).iter().filter(|event| *event == "approval_granted").count() == 1,
        "{:?}",
        sandbox.events(&run_id)
    );
}

/// The command of the `next:` line that ends `dr-plan status` (stdout, else stderr).
fn next_command(output: &Output) -> Option<String> {
    [&output.stdout, &output.stderr].into_iter().find_map(|stream| {
        let text = String::from_utf8_lossy(stream);
        printed_command(text.lines().rev().find(|line| !line.trim().is_empty())?)
    })
}

// --- f, g. Ctrl-C while steps run ------------------------------------------------------

#[test]
fn ctrl_c_during_a_sleep_interrupts_and_resume_finishes_it() {
    let sandbox = Sandbox::new();
    let plan = sandbox.plan("sleep.yaml");
    let mut terminal = sandbox.terminal(&["run", &plan, "--yes"]);
    sandbox.wait_step_started(&terminal, "pause");
    terminal.expect_text("pause", APPEAR);
    terminal.ctrl_c();
    terminal.expect_exit(&INTERRUPTED, AFTER_CTRL_C);
    assert_eq!(sandbox.lock_files(), Vec::<String>::new(), "a lock was left\n{}", terminal.report());
    let run_id = sandbox.only_run(&terminal);
    let resumed = sandbox.dr_plan(&["resume", &run_id, "--yes"]);
    assert_eq!(resumed.status.code(), Some(0), "resume did not finish the run: {}", describe(&resumed));
}

#[test]
fn resume_at_a_terminal_says_what_it_will_run_and_waits_for_yes() {
    let sandbox = Sandbox::new();
    let plan = sandbox.plan("sleep.yaml");
    let mut terminal = sandbox.terminal(&["run", &plan, "--yes"]);
    sandbox.wait_step_started(&terminal, "pause");
    terminal.ctrl_c();
    terminal.expect_exit(&INTERRUPTED, AFTER_CTRL_C);
    let run_id = sandbox.only_run(&terminal);
    let mut resume = sandbox.terminal(&["resume", &run_id]);
    resume.expect_text("running again: `pause`", APPEAR);
    resume.type_line("y");
    resume.expect_text("Got `y`", APPEAR);
    assert_eq!(resume.try_exit(), None, "`y` must not resume nor cancel\n{}", resume.report());
    resume.type_line("yes");
    resume.expect_exit(&Exit::Code(0), FINISH);
}

/// Runs `fixture` (a plan whose step `c` fails, so `b` is compensated) and presses
/// Ctrl-C once b's compensation runs `sleep`: the terminal, its last screen, dr-plan's pid.
fn ctrl_c_while_b_is_undone(sandbox: &Sandbox, fixture: &str) -> (Terminal, String, u32) {
    let plan = sandbox.plan(fixture);
    let mut terminal = sandbox.terminal(&["run", &plan, "--yes"]);
    terminal.expect_text("undoing b", APPEAR);
    let dr_plan = terminal.process_id().expect("dr-plan runs");
    let undoing = wait_until(APPEAR, || left_running_by(dr_plan).iter().any(|(_, name)| name == "sleep"));
    assert!(undoing, "the compensation of b did not start `sleep`\n{}", terminal.report());
    terminal.ctrl_c();
    let screen = terminal.expect_exit(&INTERRUPTED, AFTER_CTRL_C);
    (terminal, screen, dr_plan)
}

#[test]
fn ctrl_c_during_the_undo_stops_it_and_the_report_says_what_was_not_compensated() {
    let sandbox = Sandbox::new();
    // Ctrl-C comes while b's compensation runs its `sleep 20`.
    let (terminal, screen, _) = ctrl_c_while_b_is_undone(&sandbox, "undo.yaml");
    assert!(screen.contains("undo of b FAILED"), "{}", terminal.report());
    assert!(screen.contains("a not compensated: the operator interrupted the undo"), "{}", terminal.report());
    let run_id = sandbox.only_run(&terminal);
    let report = sandbox.dr_plan(&["report", &run_id]);
    let report = String::from_utf8_lossy(&report.stdout);
    assert!(report.contains("| `b` | exec | undo FAILED |"), "{report}");
}

#[test]
fn ctrl_c_stops_an_undo_that_ignores_the_signal() {
    let sandbox = Sandbox::new();
    // One Ctrl-C: the compensation is stopped, not waited out (its `sleep 30`).
    let (terminal, screen, dr_plan) = ctrl_c_while_b_is_undone(&sandbox, "undo-stubborn.yaml");
    assert!(screen.contains("undo of b FAILED"), "{}", terminal.report());
    assert!(screen.contains("interrupted by the operator"), "{}", terminal.report());
    assert!(screen.contains("a not compensated: the operator interrupted the undo"), "{}", terminal.report());
    assert!(
        !left_running_by(dr_plan).iter().any(|(_, name)| name == "sleep"),
        "the compensation's program outlived the run\n{}",
        terminal.report()
    );
}

#[test]
fn a_second_ctrl_c_ends_the_process_even_when_a_step_ignores_signals() {
    let sandbox = Sandbox::new();
    let plan = sandbox.plan("stubborn.yaml");
    let ready = sandbox.path("ready");
    let ready_var = format!("ready={}", ready.display());
    let mut terminal = sandbox.terminal(&["run", &plan, "--yes", "--var", &ready_var]);
    let trapped = wait_until(APPEAR, || ready.exists());
    assert!(trapped, "the stubborn program did not start\n{}", terminal.report());
    terminal.ctrl_c();
    // The first Ctrl-C may end it (the step's shell is killed); if it has not after a
    // moment, the second must.
    if terminal.wait_exit(Duration::from_millis(500)).is_none() {
        terminal.ctrl_c();
    }
    terminal.expect_exit(&INTERRUPTED, AFTER_CTRL_C);
}
