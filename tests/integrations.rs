//! dr-plan where it plugs into other tools: the shell completion scripts (sourced in
//! real bash, zsh and fish) and the manual pages, against the built binary.
//!
//! bash, zsh and fish come from `scripts/install-test-deps.sh`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::CommandFactory;
use serde_json::Value as Json;

const BINARY: &str = env!("CARGO_BIN_EXE_dr-plan");

/// `PATH` with the built `dr-plan` first (and `extra` before it).
fn path_with_binary(extra: Option<&Path>) -> String {
    let binary_dir = Path::new(BINARY).parent().expect("the binary's directory");
    let mut parts: Vec<String> = Vec::new();
    if let Some(extra) = extra {
        parts.push(extra.display().to_string());
    }
    parts.push(binary_dir.display().to_string());
    parts.push(std::env::var("PATH").unwrap_or_default());
    parts.join(":")
}

fn dr_plan(arguments: &[&str], directory: &Path) -> Output {
    Command::new(BINARY)
        .args(arguments)
        .current_dir(directory)
        .stdin(Stdio::null())
        .env("NO_COLOR", "1")
        .env_remove("DR_PLAN_STATE_DIR")
        .output()
        .expect("dr-plan runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!("{}\n--- stdout\n{}--- stderr\n{}", output.status, text(&output.stdout), text(&output.stderr))
}

/// Runs `program` with `arguments`, panicking with what to install when it is missing.
fn tool(program: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "`{program}` is not installed: run scripts/install-test-deps.sh (or apt-get install {program})"
    );
    let mut command = Command::new(program);
    command.stdin(Stdio::null()).env("PATH", path_with_binary(None)).env_remove("DR_PLAN_STATE_DIR");
    command
}

/// The subcommands a person sees in `dr-plan --help`.
fn visible_subcommands() -> Vec<String> {
    dr_plan::cli::Cli::command()
        .get_subcommands()
        .filter(|subcommand| !subcommand.is_hide_set())
        .map(|subcommand| subcommand.get_name().to_owned())
        .collect()
}

fn completion_script(shell: &str, directory: &Path) -> PathBuf {
    let output = dr_plan(&["completions", shell], directory);
    assert!(output.status.success(), "{}", describe(&output));
    let file = directory.join(format!("dr-plan.{shell}"));
    std::fs::write(&file, &output.stdout).expect("the script is written");
    file
}

// ---- completions ------------------------------------------------------------------

#[test]
fn every_shell_gets_a_script_naming_every_subcommand() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let subcommands = visible_subcommands();
    assert!(subcommands.contains(&"completions".to_owned()) && subcommands.contains(&"man".to_owned()));
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let script = std::fs::read_to_string(completion_script(shell, directory.path())).expect("a script");
        assert!(script.len() > 1000, "{shell}: a script of {} bytes", script.len());
        for subcommand in &subcommands {
            assert!(script.contains(subcommand.as_str()), "{shell}: `{subcommand}` is not in the script");
        }
        assert!(!script.contains("__watchdog"), "{shell}: the hidden watchdog is offered");
    }
    let unknown = dr_plan(&["completions", "tcsh"], directory.path());
    assert_eq!(unknown.status.code(), Some(2), "{}", describe(&unknown));
    assert!(text(&unknown.stderr).contains("powershell"), "{}", describe(&unknown));
}

#[test]
fn the_scripts_parse_in_their_shells() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    for (shell, program, check) in
        [("bash", "bash", "-n"), ("zsh", "zsh", "-n"), ("fish", "fish", "--no-execute")]
    {
        let script = completion_script(shell, directory.path());
        let output = tool(program).arg(check).arg(&script).output().expect("the shell runs");
        assert!(output.status.success(), "{shell}: {}", describe(&output));
    }
}

/// Sources the bash script, sets the words as bash would for a TAB after the last one,
/// calls the function that `complete -p dr-plan` names, prints `COMPREPLY` a line each.
fn bash_complete(script: &Path, words: &[&str], environment: &[(&str, &str)]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|word| format!("'{word}'")).collect();
    let program = format!(
        r#"source '{script}'
function=$(complete -p dr-plan | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
[ -n "$function" ] || {{ echo "no completion function for dr-plan" >&2; exit 9; }}
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
COMPREPLY=()
"$function" dr-plan "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        script = script.display(),
        words = quoted.join(" "),
    );
    let mut command = tool("bash");
    command.args(["--norc", "--noprofile", "-c", &program]);
    for (name, value) in environment {
        command.env(name, value);
    }
    let output = command.output().expect("bash runs");
    assert!(output.status.success(), "{words:?}: {}", describe(&output));
    text(&output.stdout).lines().filter(|line| !line.is_empty()).map(str::to_owned).collect()
}

#[test]
fn bash_completes_subcommands_options_and_their_values() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let script = completion_script("bash", directory.path());
    assert_eq!(bash_complete(&script, &["dr-plan", "res"], &[]), ["resume"]);
    assert_eq!(bash_complete(&script, &["dr-plan", "dry-run", "--for"], &[]), ["--format"]);
    // After a subcommand of a program with a `-` in its name (clap-rs/clap#6421).
    assert_eq!(
        bash_complete(&script, &["dr-plan", "lint", "--format", ""], &[]),
        ["human", "json", "sarif", "github"]
    );
    assert_eq!(bash_complete(&script, &["dr-plan", "completions", "p"], &[]), ["powershell"]);
}

/// A state directory holding real runs: `dr-plan run` of a tiny plan with a `sleep`
/// step and an approval (blocked: exit 3, resumable) and of one that succeeds.
struct Runs {
    directory: tempfile::TempDir,
    blocked: String,
    succeeded: String,
}

impl Runs {
    fn new() -> Runs {
        let directory = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(
            directory.path().join("gated.yaml"),
            "version: 1\nname: gated\nsteps:\n  - id: settle\n    kind: sleep\n    with: { duration: 1s }\n  \
             - id: go-ahead\n    kind: approval\n    needs: [settle]\n    with: { prompt: \"Fail over?\" }\n  \
             - id: switch\n    kind: sleep\n    needs: [go-ahead]\n    with: { duration: 1s }\n",
        )
        .expect("a plan");
        std::fs::write(
            directory.path().join("short.yaml"),
            "version: 1\nname: short\nsteps:\n  - id: settle\n    kind: sleep\n    with: { duration: 1s }\n",
        )
        .expect("a plan");
        let mut runs = Runs { directory, blocked: String::new(), succeeded: String::new() };
        let state = runs.state_dir();
        let state = state.to_str().expect("a UTF-8 path");
        let blocked = dr_plan(&["run", "gated.yaml", "--yes", "--state-dir", state], runs.directory.path());
        assert_eq!(blocked.status.code(), Some(3), "{}", describe(&blocked));
        let succeeded = dr_plan(&["run", "short.yaml", "--yes", "--state-dir", state], runs.directory.path());
        assert_eq!(succeeded.status.code(), Some(0), "{}", describe(&succeeded));
        let listed = dr_plan(&["status", "--format", "json", "--state-dir", state], runs.directory.path());
        let listed: Json = serde_json::from_slice(&listed.stdout).expect("status --format json");
        for run in listed.as_array().expect("a list") {
            let id = run["run_id"].as_str().expect("a run id").to_owned();
            match run["plan"].as_str() {
                Some("gated") => runs.blocked = id,
                Some("short") => runs.succeeded = id,
                other => panic!("a run of {other:?}"),
            }
        }
        assert!(!runs.blocked.is_empty() && !runs.succeeded.is_empty(), "{listed}");
        runs
    }

    fn path(&self) -> &Path {
        self.directory.path()
    }

    fn state_dir(&self) -> PathBuf {
        self.directory.path().join("state")
    }

    fn state(&self) -> String {
        self.state_dir().display().to_string()
    }

    fn plan(&self) -> String {
        self.directory.path().join("gated.yaml").display().to_string()
    }

    fn helper(&self, index: usize, words: &[&str]) -> Output {
        let mut arguments = vec!["__complete", "--index"];
        let index = index.to_string();
        arguments.push(&index);
        arguments.push("--");
        arguments.extend_from_slice(words);
        dr_plan(&arguments, self.path())
    }
}

fn sorted(values: &[&str]) -> Vec<String> {
    let mut values: Vec<String> = values.iter().map(ToString::to_string).collect();
    values.sort();
    values
}

fn lines_sorted(bytes: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = text(bytes).lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[test]
fn the_helper_reads_run_ids_and_step_ids_from_a_real_state_directory() {
    let runs = Runs::new();
    let state = runs.state();
    let all = sorted(&[&runs.blocked, &runs.succeeded]);
    for subcommand in ["status", "report"] {
        let output = runs.helper(2, &["dr-plan", subcommand, "", "--state-dir", &state]);
        assert!(output.status.success(), "{}", describe(&output));
        assert_eq!(lines_sorted(&output.stdout), all, "{subcommand}");
    }
    // A run that succeeded has nothing to resume.
    let resume = runs.helper(2, &["dr-plan", "resume", "", "--state-dir", &state]);
    assert_eq!(lines_sorted(&resume.stdout), [runs.blocked.as_str()], "{}", describe(&resume));
    // The state directory from the environment, as the command would read it.
    let from_environment = Command::new(BINARY)
        .args(["__complete", "--index", "2", "--", "dr-plan", "status", ""])
        .env("DR_PLAN_STATE_DIR", &state)
        .current_dir(runs.path())
        .output()
        .expect("dr-plan runs");
    assert_eq!(lines_sorted(&from_environment.stdout), all);
    // Step ids: the approvals of the run's plan, of the plan on the line; `--rerun` any.
    let approve =
        runs.helper(4, &["dr-plan", "resume", &runs.blocked, "--approve", "", "--state-dir", &state]);
    assert_eq!(text(&approve.stdout), "go-ahead\n", "{}", describe(&approve));
    let approve = runs.helper(4, &["dr-plan", "run", &runs.plan(), "--approve", ""]);
    assert_eq!(text(&approve.stdout), "go-ahead\n", "{}", describe(&approve));
    let rerun = runs.helper(4, &["dr-plan", "resume", &runs.blocked, "--rerun", "", "--state-dir", &state]);
    assert_eq!(lines_sorted(&rerun.stdout), sorted(&["go-ahead", "settle", "switch"]));
    // Anything else: exit 1, the script completes it statically.
    let other = runs.helper(3, &["dr-plan", "status", "--format", ""]);
    assert_eq!(other.status.code(), Some(1), "{}", describe(&other));
    assert!(other.stdout.is_empty());
}

#[test]
fn bash_zsh_and_fish_complete_run_ids_and_step_ids() {
    let runs = Runs::new();
    let state = runs.state();
    let plan = runs.plan();

    let bash = completion_script("bash", runs.path());
    assert_eq!(
        bash_complete(&bash, &["dr-plan", "resume", "--state-dir", &state, ""], &[]),
        [runs.blocked.as_str()]
    );
    assert_eq!(
        sorted(
            &bash_complete(&bash, &["dr-plan", "status", ""], &[("DR_PLAN_STATE_DIR", &state)])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        ),
        sorted(&[&runs.blocked, &runs.succeeded])
    );
    assert_eq!(bash_complete(&bash, &["dr-plan", "run", &plan, "--approve", "go"], &[]), ["go-ahead"]);
    // bash splits `--approve=` at the `=`.
    assert_eq!(bash_complete(&bash, &["dr-plan", "run", &plan, "--approve", "="], &[]), ["go-ahead"]);

    // fish: `complete -C` answers what a TAB would offer.
    let fish = completion_script("fish", runs.path());
    let fish_complete = |line: &str| -> Vec<String> {
        let program = format!("source '{}'; complete -C '{line}'", fish.display());
        let output = tool("fish")
            .args(["--no-config", "-c", &program])
            .current_dir(runs.path())
            .output()
            .expect("fish runs");
        assert!(output.status.success(), "{line}: {}", describe(&output));
        lines_sorted(&output.stdout)
            .into_iter()
            .map(|line| line.split('\t').next().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        fish_complete(&format!("dr-plan status --state-dir {state} ")),
        sorted(&[&runs.blocked, &runs.succeeded])
    );
    assert_eq!(fish_complete(&format!("dr-plan resume --state-dir {state} ")), [runs.blocked.as_str()]);
    assert_eq!(fish_complete(&format!("dr-plan run {plan} --approve ")), ["go-ahead"]);
    assert_eq!(fish_complete(&format!("dr-plan run {plan} --approve=")), ["--approve=go-ahead"]);
    assert_eq!(fish_complete("dr-plan res"), ["resume"]);

    // zsh: completion functions run only inside the line editor; `compadd` and
    // `compdef` are stood in for, and the entry point is called as compinit would.
    let zsh = completion_script("zsh", runs.path());
    let program = format!(
        r#"compdef() {{ : }}
compadd() {{ [ "$1" = "-a" ] && print -l -- "${{(@P)2}}" }}
source '{script}'
words=(dr-plan resume --state-dir '{state}' '')
CURRENT=5
_dr-plan
words=(dr-plan run '{plan}' --approve '')
CURRENT=5
_dr-plan"#,
        script = zsh.display(),
    );
    let output =
        tool("zsh").args(["-f", "-c", &program]).current_dir(runs.path()).output().expect("zsh runs");
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(text(&output.stdout), format!("{}\ngo-ahead\n", runs.blocked), "{}", describe(&output));
}

// ---- manual pages -----------------------------------------------------------------

/// The first request of a page that is not a string definition (`.ie`, `.el`, `.ds`:
/// clap_mangen defines `\*(Aq` for the apostrophe before the title).
fn first_request(page: &str) -> &str {
    page.lines()
        .find(|line| !line.starts_with(".ie ") && !line.starts_with(".el ") && !line.starts_with(".ds "))
        .unwrap_or_default()
}

#[test]
fn man_prints_the_main_page_and_writes_one_page_per_command() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let main_page = dr_plan(&["man"], directory.path());
    assert!(main_page.status.success(), "{}", describe(&main_page));
    let main_page = text(&main_page.stdout);
    assert!(first_request(&main_page).starts_with(".TH dr-plan 1"), "{main_page}");
    for subcommand in visible_subcommands() {
        assert!(main_page.contains(&subcommand.replace('-', "\\-")), "the main page names `{subcommand}`");
    }

    let pages = directory.path().join("man1");
    let written = dr_plan(&["man", "--out", pages.to_str().expect("a UTF-8 path")], directory.path());
    assert!(written.status.success(), "{}", describe(&written));
    let found: BTreeSet<String> = std::fs::read_dir(&pages)
        .expect("the pages' directory")
        .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    let mut expected: BTreeSet<String> =
        visible_subcommands().iter().map(|subcommand| format!("dr-plan-{subcommand}.1")).collect();
    expected.insert("dr-plan.1".to_owned());
    expected.remove("dr-plan-help.1");
    assert_eq!(found, expected);
    for page in &found {
        let roff = std::fs::read_to_string(pages.join(page)).expect("a page");
        let title = page.trim_end_matches(".1");
        assert!(
            first_request(&roff).starts_with(&format!(".TH {title} 1")),
            "{page}: {}",
            first_request(&roff)
        );
    }
    let run_page = std::fs::read_to_string(pages.join("dr-plan-run.1")).expect("the run page");
    assert!(run_page.contains("\\-\\-approve") && run_page.contains("DR_PLAN_STATE_DIR"), "{run_page}");
}
