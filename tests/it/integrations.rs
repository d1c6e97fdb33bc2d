//! dr-plan where it plugs into other tools: the shell completion scripts (sourced in
//! real bash, zsh and fish), the manual pages, the pre-commit hook
//! (`.pre-commit-hooks.yaml`) and the GitHub Action (`action.yml`), each run the way
//! its host runs it, against the shipped plans and the built binary. Nothing here
//! touches the network: the action's install and upload steps are GitHub's part, and
//! `gh` is a stand-in that records what it was asked.
//!
//! bash, zsh, fish and python3 (for pre-commit's `files` regex) come from
//! `scripts/install-test-deps.sh`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::CommandFactory;
use serde_json::Value as Json;

const BINARY: &str = env!("CARGO_BIN_EXE_dr-plan");
const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");

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
    for subcommand in ["status", "report", "verify"] {
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

// ---- the pre-commit hook ------------------------------------------------------------

/// A YAML file of the repository as JSON, read with dr-plan's own loader.
fn yaml(name: &str) -> Json {
    let text = std::fs::read_to_string(Path::new(REPOSITORY).join(name)).expect("the file");
    let file = dr_plan::lang::source::SourceFile::new(name, text);
    dr_plan::lang::load::load(&file).unwrap_or_else(|problems| panic!("{name}: {problems:?}")).to_json()
}

/// Files under `root` (relative, `/`-separated) that pre-commit would pass to a hook
/// with this `files` pattern (a Python `re.search`, applied here by python3).
fn matching_files(pattern: &str, root: &Path) -> Vec<String> {
    fn walk(directory: &Path, root: &Path, files: &mut Vec<String>) {
        for entry in std::fs::read_dir(directory).expect("a directory") {
            let path = entry.expect("an entry").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path.is_dir() {
                if name != "target" && name != ".git" {
                    walk(&path, root, files);
                }
            } else {
                files.push(path.strip_prefix(root).expect("under root").to_string_lossy().into_owned());
            }
        }
    }
    let mut files = Vec::new();
    walk(root, root, &mut files);
    let mut python = tool("python3")
        .args(["-c", "import re, sys\nfor line in sys.stdin.read().splitlines():\n    if re.search(sys.argv[1], line): print(line)", pattern])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    std::io::Write::write_all(&mut python.stdin.take().expect("stdin"), files.join("\n").as_bytes())
        .expect("the list");
    let output = python.wait_with_output().expect("python3 ends");
    assert!(output.status.success(), "{}", describe(&output));
    let mut matched: Vec<String> = text(&output.stdout).lines().map(str::to_owned).collect();
    matched.sort();
    matched
}

fn pre_commit_hook() -> Json {
    let hooks = yaml(".pre-commit-hooks.yaml");
    let hook = hooks.as_array().expect("a list of hooks").iter().find(|hook| hook["id"] == "dr-plan-lint");
    hook.expect("the dr-plan-lint hook").clone()
}

/// Runs the hook's entry as pre-commit does: the entry's words, the hook's `args`,
/// then the files, from the repository's root, with `dr-plan` on `PATH`.
fn run_hook(hook: &Json, files: &[String], root: &Path) -> Output {
    let entry: Vec<&str> = hook["entry"].as_str().expect("an entry").split_whitespace().collect();
    let mut command = Command::new(entry[0]);
    command
        .args(&entry[1..])
        .args(files)
        .current_dir(root)
        .env("PATH", path_with_binary(None))
        .env("NO_COLOR", "1");
    command.stdin(Stdio::null()).output().expect("the hook's entry runs")
}

#[test]
fn the_pre_commit_hook_lints_the_shipped_plans_and_fails_on_a_broken_one() {
    let hook = pre_commit_hook();
    assert_eq!(hook["language"], "rust", "pre-commit builds dr-plan with cargo");
    assert_eq!(hook["entry"], "dr-plan lint");
    assert_eq!(hook["pass_filenames"], true);
    let pattern = hook["files"].as_str().expect("a files pattern");

    // What pre-commit passes in this repository: the shipped plans, nothing else (no
    // workflow, no fixture, not this file, not plans/README.md).
    let files = matching_files(pattern, Path::new(REPOSITORY));
    let mut shipped: Vec<String> = std::fs::read_dir(Path::new(REPOSITORY).join("plans"))
        .expect("plans/")
        .map(|entry| format!("plans/{}", entry.expect("an entry").file_name().to_string_lossy()))
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".toml"))
        .collect();
    shipped.sort();
    assert_eq!(files, shipped);
    let clean = run_hook(&hook, &files, Path::new(REPOSITORY));
    assert_eq!(clean.status.code(), Some(0), "{}", describe(&clean));

    // A repository whose plans include a broken one: the hook fails with lint's code.
    let repository = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir_all(repository.path().join("plans")).expect("plans/");
    std::fs::create_dir_all(repository.path().join(".github/workflows")).expect("workflows/");
    for plan in &shipped {
        std::fs::copy(Path::new(REPOSITORY).join(plan), repository.path().join(plan)).expect("a copy");
    }
    std::fs::write(repository.path().join(".github/workflows/ci.yml"), "on: push\njobs: {}\n")
        .expect("a workflow");
    std::fs::write(
        repository.path().join("plans/broken.yml"),
        "version: 1\nname: broken\nsteps:\n  - id: a\n    kind: sleep\n    needs: [nowhere]\n    with: { duration: 1s }\n",
    )
    .expect("a broken plan");
    let files = matching_files(pattern, repository.path());
    assert!(
        files.contains(&"plans/broken.yml".to_owned())
            && !files.iter().any(|file| file.contains("workflows"))
    );
    let broken = run_hook(&hook, &files, repository.path());
    assert_eq!(broken.status.code(), Some(2), "{}", describe(&broken));
    assert!(text(&broken.stdout).contains("plans/broken.yml"), "{}", describe(&broken));
}

// ---- the GitHub Action ----------------------------------------------------------------

/// A step of the composite action, run as GitHub runs a `shell: bash` step.
struct ActionRun {
    workspace: tempfile::TempDir,
    temp: tempfile::TempDir,
    inputs: serde_json::Map<String, Json>,
    outputs: serde_json::Map<String, Json>,
}

impl ActionRun {
    /// A workspace holding a copy of the shipped plans, the action's inputs at their
    /// defaults overridden by `inputs`, a stand-in `gh` on `PATH`.
    fn new(inputs: &[(&str, &str)]) -> ActionRun {
        let workspace = tempfile::tempdir().expect("a workspace");
        let temp = tempfile::tempdir().expect("a runner temp");
        let plans = workspace.path().join("plans");
        std::fs::create_dir_all(&plans).expect("plans/");
        for entry in std::fs::read_dir(Path::new(REPOSITORY).join("plans")).expect("plans/") {
            let path = entry.expect("an entry").path();
            std::fs::copy(&path, plans.join(path.file_name().expect("a name"))).expect("a copy");
        }
        let bin = temp.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin/");
        // `gh pr comment`: records its arguments and the body; `--edit-last` fails the
        // first time, as when the pull request has no comment of this user yet.
        let gh = bin.join("gh");
        std::fs::write(
            &gh,
            "#!/usr/bin/env bash\nlog=\"$RUNNER_TEMP/gh.calls\"\necho \"$*\" >> \"$log\"\n\
             while [ $# -gt 0 ]; do case \"$1\" in --body-file) cp \"$2\" \"$RUNNER_TEMP/gh.body\"; shift;; \
             --edit-last) if [ ! -e \"$RUNNER_TEMP/gh.commented\" ]; then echo 'no comment to edit' >&2; exit 1; fi;; \
             esac; shift; done\ntouch \"$RUNNER_TEMP/gh.commented\"\n",
        )
        .expect("a stand-in gh");
        std::fs::set_permissions(&gh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let mut defaults = serde_json::Map::new();
        for (name, input) in action()["inputs"].as_object().expect("inputs") {
            defaults
                .insert(name.clone(), input.get("default").cloned().unwrap_or(Json::String(String::new())));
        }
        for (name, value) in inputs {
            assert!(defaults.contains_key(*name), "action.yml has no input `{name}`");
            defaults.insert((*name).to_owned(), Json::String((*value).to_owned()));
        }
        ActionRun { workspace, temp, inputs: defaults, outputs: serde_json::Map::new() }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.temp.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap_or_default()
    }

    /// The value of an expression of a step's `env:`.
    fn evaluate(&self, value: &str) -> String {
        let Some(expression) = value.strip_prefix("${{").and_then(|rest| rest.strip_suffix("}}")) else {
            return value.to_owned();
        };
        let expression = expression.trim();
        if let Some(input) = expression.strip_prefix("inputs.") {
            return match &self.inputs[input] {
                Json::String(text) if text == "${{ github.token }}" => "a-token".to_owned(),
                Json::String(text) => text.clone(),
                other => other.to_string(),
            };
        }
        if let Some(output) = expression.strip_prefix("steps.lint.outputs.") {
            return self.outputs.get(output).and_then(Json::as_str).unwrap_or_default().to_owned();
        }
        match expression {
            "github.event.pull_request.number" => "42".to_owned(),
            other => panic!("the test does not know the expression `{other}`"),
        }
    }

    /// Runs step `id`: `bash --noprofile --norc -eo pipefail` on its script, with its
    /// `env:`, the runner's variables pointing at files, and `dr-plan` and `gh` on
    /// `PATH`; what it wrote to `GITHUB_OUTPUT` becomes `steps.<id>.outputs`.
    fn step(&mut self, id: &str) -> Output {
        let step = action_step(id);
        assert_eq!(step["shell"], "bash", "{id}");
        let script = step["run"].as_str().expect("a run script");
        let script_file = self.file(&format!("{id}.sh"));
        std::fs::write(&script_file, script).expect("the script");
        let output_file = self.file(&format!("{id}.output"));
        let mut command = tool("bash");
        command
            .args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&script_file)
            .current_dir(self.workspace.path())
            .env("PATH", path_with_binary(Some(&self.temp.path().join("bin"))))
            .env("NO_COLOR", "1")
            .env("RUNNER_TEMP", self.temp.path())
            .env("GITHUB_OUTPUT", &output_file)
            .env("GITHUB_STEP_SUMMARY", self.file("summary.md"))
            .env("GITHUB_PATH", self.file("path"))
            .env("GITHUB_ENV", self.file("env"))
            .env("GITHUB_REPOSITORY", "festivals/runbooks")
            .env("GITHUB_WORKSPACE", self.workspace.path());
        if let Some(environment) = step["env"].as_object() {
            for (name, value) in environment {
                command.env(name, self.evaluate(value.as_str().expect("a string")));
            }
        }
        let output = command.output().expect("bash runs");
        if id == "lint" {
            for line in std::fs::read_to_string(&output_file).unwrap_or_default().lines() {
                if let Some((name, value)) = line.split_once('=') {
                    self.outputs.insert(name.to_owned(), Json::String(value.to_owned()));
                }
            }
        }
        output
    }

    fn sarif(&self) -> Json {
        let path = self.outputs["sarif-file"].as_str().expect("the sarif-file output");
        let path = self.workspace.path().join(path);
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the SARIF log")).expect("SARIF is JSON")
    }
}

fn action() -> Json {
    yaml("action.yml")
}

fn action_step(id: &str) -> Json {
    let action = action();
    let steps = action["runs"]["steps"].as_array().expect("steps");
    steps.iter().find(|step| step["id"] == id).unwrap_or_else(|| panic!("no step `{id}`")).clone()
}

#[test]
fn the_action_is_a_composite_that_never_interpolates_into_scripts() {
    let action = action();
    assert_eq!(action["runs"]["using"], "composite");
    for step in action["runs"]["steps"].as_array().expect("steps") {
        if let Some(script) = step["run"].as_str() {
            assert!(!script.contains("${{"), "step {}: an expression inside `run:`", step["id"]);
            assert_eq!(step["shell"], "bash", "step {}", step["id"]);
        }
    }
    let install = action_step("install")["run"].as_str().expect("a script").to_owned();
    assert!(
        install.contains("cargo install --locked") && install.contains("--git") && install.contains("--rev")
    );
    let upload = action_step("upload");
    assert!(upload["uses"].as_str().expect("uses").starts_with("github/codeql-action/upload-sarif@"));
    assert!(
        upload["if"].as_str().expect("if").contains("!cancelled()"),
        "uploaded even when lint found errors"
    );
    assert_eq!(upload["with"]["sarif_file"], "${{ steps.lint.outputs.sarif-file }}");
    let verdict = action_step("verdict");
    assert!(verdict["if"].as_str().expect("if").contains("steps.lint.outputs.exit-code != '0'"));
    assert!(action_step("dry-run")["if"].as_str().expect("if").contains("inputs.comment-dry-run != ''"));
}

#[test]
fn the_action_lints_into_sarif_and_comments_the_dry_run() {
    let mut run = ActionRun::new(&[("plans", "plans"), ("comment-dry-run", "plans/db-corruption.yaml")]);
    let lint = run.step("lint");
    assert!(lint.status.success(), "{}", describe(&lint));
    assert_eq!(run.outputs["exit-code"], "0");
    let sarif = run.sarif();
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(sarif["runs"][0]["tool"]["driver"]["name"], "dr-plan");
    assert_eq!(sarif["runs"][0]["results"].as_array().map(Vec::len), Some(0), "{sarif}");

    let dry_run = run.step("dry-run");
    assert!(dry_run.status.success(), "{}", describe(&dry_run));
    let expected =
        dr_plan(&["dry-run", "--format", "markdown", "plans/db-corruption.yaml"], run.workspace.path());
    let expected = text(&expected.stdout);
    assert!(expected.starts_with("## dr-plan dry-run: `db-corruption`"), "{expected}");
    assert_eq!(run.read("gh.body"), expected, "the comment's body is the dry-run");
    assert_eq!(run.read("summary.md"), expected, "and so is the job summary");
    // `--edit-last` found no comment, so one was created.
    let calls: Vec<String> = run.read("gh.calls").lines().map(str::to_owned).collect();
    let body = run.file("dr-plan-dry-run.md").display().to_string();
    assert_eq!(
        calls,
        [
            format!("pr comment 42 --repo festivals/runbooks --edit-last --body-file {body}"),
            format!("pr comment 42 --repo festivals/runbooks --body-file {body}"),
        ]
    );
    // On the next push the comment is edited in place.
    let again = run.step("dry-run");
    assert!(again.status.success(), "{}", describe(&again));
    assert_eq!(run.read("gh.calls").lines().count(), 3);
}

#[test]
fn the_action_uploads_before_it_fails_on_a_broken_plan() {
    let mut run = ActionRun::new(&[("plans", "plans"), ("deny-warnings", "true")]);
    std::fs::write(
        run.workspace.path().join("plans/broken.yaml"),
        "version: 1\nname: broken\nsteps:\n  - id: a\n    kind: sleep\n    needs: [nowhere]\n    with: { duration: 1s }\n",
    )
    .expect("a broken plan");
    // The lint step succeeds, so the upload runs; it records lint's exit code.
    let lint = run.step("lint");
    assert!(lint.status.success(), "{}", describe(&lint));
    assert_eq!(run.outputs["exit-code"], "2");
    assert!(
        text(&lint.stdout).contains("::error file=plans/broken.yaml"),
        "annotations: {}",
        describe(&lint)
    );
    let sarif = run.sarif();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    assert!(
        results.iter().any(|result| result["level"] == "error"
            && result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .is_some_and(|uri| uri.ends_with("broken.yaml"))),
        "{sarif}"
    );
    // Then the last step fails the job with lint's code.
    let verdict = run.step("verdict");
    assert_eq!(verdict.status.code(), Some(2), "{}", describe(&verdict));
    assert!(text(&verdict.stdout).contains("::error::dr-plan lint exited 2"), "{}", describe(&verdict));

    // A path that does not exist is an error in the log too, not a green job.
    let mut missing = ActionRun::new(&[("plans", "plans nowhere")]);
    let lint = missing.step("lint");
    assert!(lint.status.success(), "{}", describe(&lint));
    assert_eq!(missing.outputs["exit-code"], "2");
}
