//! `dr-plan completions SHELL` and `dr-plan man`: shell completion scripts and manual
//! pages, both generated from the clap definition of the command line
//! ([`crate::cli::Cli`]), so they cannot drift from `--help`.
//!
//! Subcommands, options and their fixed values are completed by clap_complete's static
//! scripts. Run ids and step ids exist only at TAB time, so the bash, zsh and fish
//! scripts first ask the binary itself through a hidden helper,
//! `dr-plan __complete --index N -- WORD...` (the words of the command line and the
//! index of the one being completed): it prints one candidate per line and exits 0 when
//! that word is a run id or a step id, and exits 1 otherwise, and the script then falls
//! back to the static completion. PowerShell gets the static script only.
//!
//! What the helper offers:
//! - the `RUN_ID` of `status` and `report`: every run under the state directory (as
//!   `dr-plan status --format json` lists them); of `resume`: the runs that did not
//!   succeed (resuming a finished run does nothing);
//! - `--approve STEP` of `run` and `drill`: the approval steps of the plan on the line;
//!   of `resume`: the approval steps of the run's plan that did not succeed yet;
//! - `--rerun STEP` of `resume`: every step of the run's plan; `--mark-done STEP`: the
//!   steps that were interrupted.
//!
//! The state directory is the line's `--state-dir`, else `DR_PLAN_STATE_DIR`, else
//! `.dr-plan` — the one the command being typed will use.

use crate::state::StateDir;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, ValueEnum};

use crate::engine::journal::{self, Event, RunState, RunStatus, StepState};
use crate::sys::exit_code;

/// The program name the scripts complete.
const BINARY: &str = "dr-plan";

/// The hidden subcommand of the completion helper (never in `--help`, the scripts or
/// the manual).
pub const SUBCOMMAND: &str = "__complete";

/// The helper's exit code when the word is not a run id or a step id: the script
/// completes it statically.
const NOT_DYNAMIC: i32 = 1;

/// The shells `dr-plan completions` writes a script for.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Shell {
    /// Bash 4.4 or later (bash-completion picks it up by name).
    Bash,
    /// Zsh (a `_dr-plan` file on `fpath`).
    Zsh,
    /// Fish.
    Fish,
    /// PowerShell (static: subcommands, options and their values).
    Powershell,
}

impl Shell {
    /// Every shell, in the order of the documentation.
    pub const ALL: [Shell; 4] = [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::Powershell];

    fn generator(self) -> clap_complete::Shell {
        match self {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
            Shell::Powershell => clap_complete::Shell::PowerShell,
        }
    }

    /// Whether the script asks `dr-plan __complete` for run ids and step ids.
    #[must_use]
    pub fn completes_ids(self) -> bool {
        match self {
            Shell::Bash | Shell::Zsh | Shell::Fish => true,
            // Not testable on the machines that build dr-plan (no pwsh in Debian): the
            // static script only, rather than glue nobody ever ran.
            Shell::Powershell => false,
        }
    }
}

/// `dr-plan completions SHELL`.
#[must_use]
pub fn print_script(shell: Shell) -> i32 {
    crate::out!("{}", script(shell));
    exit_code::SUCCESS
}

/// The completion script for `shell`.
#[must_use]
pub fn script(shell: Shell) -> String {
    let mut command = crate::cli::Cli::command();
    let mut generated = Vec::new();
    clap_complete::generate(shell.generator(), &mut command, BINARY, &mut generated);
    let generated = String::from_utf8_lossy(&generated).into_owned();
    match shell {
        Shell::Bash => bash_with_dynamic(&generated),
        Shell::Zsh => zsh_with_dynamic(&generated),
        Shell::Fish => {
            // fish completes an option's value only from rules naming the option, and
            // offers files unless one of them says `-x`.
            let option_rules: String = STEP_OPTIONS
                .iter()
                .map(|(option, subcommands)| {
                    format!(
                        "complete -c {BINARY} -n \"__fish_dr_plan_using_subcommand {}\" -l {option} -x -a '(__fish_dr_plan_ids)'\n",
                        subcommands.join(" ")
                    )
                })
                .collect();
            format!("{generated}\n{FISH_DYNAMIC}{option_rules}")
        }
        Shell::Powershell => generated,
    }
}

/// Wraps clap's function (`STATIC_FUNCTION`): ids first, the static completion
/// otherwise. `-o default` (file names when nothing matched) is turned off where an id
/// is expected, so an empty state directory offers nothing rather than file names.
const BASH_DYNAMIC: &str = r#"# dr-plan: run ids and step ids come from `dr-plan __complete` (the state directory,
# the plan); everything else from the static completion above.
_dr__plan_ids() {
    local values current="${COMP_WORDS[COMP_CWORD]}"
    # `--approve=` splits into `--approve` and `=` (COMP_WORDBREAKS); the value is empty.
    [[ "$current" == "=" ]] && current=""
    if values="$(command dr-plan __complete --index "$COMP_CWORD" -- "${COMP_WORDS[@]}" 2>/dev/null)"; then
        compopt +o default +o bashdefault 2>/dev/null
        COMPREPLY=($(compgen -W "$values" -- "$current"))
        return 0
    fi
    STATIC_FUNCTION "$@"
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _dr__plan_ids -o nosort -o bashdefault -o default dr-plan
else
    complete -F _dr__plan_ids -o bashdefault -o default dr-plan
fi
"#;

/// clap's bash script followed by [`BASH_DYNAMIC`] calling clap's function (named
/// after the program, `_dr__plan` today); without the glue if its first line does not
/// define a function (a unit test catches that).
///
/// clap_complete 4.6 spells the state of a subcommand of a program with a `-` in its
/// name two ways, `dr__plan__subcmd__run` in the loop that finds it and
/// `dr__subcmd__plan__subcmd__run` in the `case` that completes it, so nothing after
/// a subcommand completes (clap-rs/clap#6421): the labels are spelled like the loop.
fn bash_with_dynamic(generated: &str) -> String {
    let generated = generated.replace(
        &format!("{}__subcmd__", BINARY.replace('-', "__subcmd__")),
        &format!("{}__subcmd__", BINARY.replace('-', "__")),
    );
    let static_function = generated.lines().next().and_then(|first| first.strip_suffix("() {"));
    match static_function {
        Some(name) if name.starts_with('_') && !name.contains(' ') => {
            format!("{generated}\n{}", BASH_DYNAMIC.replace("STATIC_FUNCTION", name))
        }
        _ => generated.to_owned(),
    }
}

/// Rules for fish: asked on every word, the helper says whether it applies (the
/// options' rules follow, made from [`STEP_OPTIONS`]).
const FISH_DYNAMIC: &str = r#"# dr-plan: run ids and step ids come from `dr-plan __complete` (the state directory,
# the plan); everything else from the static completion above.
function __fish_dr_plan_ids
    set -l words (commandline -opc) (commandline -ct)
    command dr-plan __complete --index (math (count $words) - 1) -- $words 2>/dev/null
end
function __fish_dr_plan_wants_ids
    __fish_dr_plan_ids >/dev/null
end
complete -c dr-plan -n __fish_dr_plan_wants_ids -f -a '(__fish_dr_plan_ids)'
"#;

/// The zsh script's entry point, `_dr-plan` (the name compinit gives the file's
/// function), asks for ids and falls back to clap's function, renamed.
const ZSH_DYNAMIC: &str = r#"# dr-plan: run ids and step ids come from `dr-plan __complete` (the state directory,
# the plan); everything else from the static completion above.
_dr-plan() {
    local output
    local -a values
    if output="$(command dr-plan __complete --index $((CURRENT - 1)) -- "${words[@]}" 2>/dev/null)"; then
        values=(${(f)output})
        # `--approve=go`: the ids complete what follows the `=`.
        [[ "$PREFIX" == --*=* ]] && compset -P '*='
        compadd -a values
        return
    fi
    _dr-plan_static "$@"
}

if [ "$funcstack[1]" = "_dr-plan" ]; then
    _dr-plan "$@"
else
    compdef _dr-plan dr-plan
fi
"#;

/// clap's zsh script with its `_dr-plan` renamed `_dr-plan_static` and its closing
/// dispatch replaced by [`ZSH_DYNAMIC`]; the static script unchanged if clap's output
/// ever stops having that shape (a unit test catches that).
fn zsh_with_dynamic(generated: &str) -> String {
    const ENTRY: &str = "\n_dr-plan() {\n";
    let Some(dispatch) = generated.rfind("\nif [ \"$funcstack[1]\" = \"_dr-plan\" ]; then") else {
        return generated.to_owned();
    };
    if !generated[..dispatch].contains(ENTRY) {
        return generated.to_owned();
    }
    let functions = generated[..dispatch].replacen(ENTRY, "\n_dr-plan_static() {\n", 1);
    format!("{functions}\n{ZSH_DYNAMIC}")
}

/// `dr-plan man [--out DIR]`: the main page on standard output, or one page per
/// command (`dr-plan.1`, `dr-plan-run.1`, ...) written into `out`.
#[must_use]
pub fn man(out: Option<&Path>) -> i32 {
    // `help` has no page of its own: the main page would name a page that is not there.
    let command = crate::cli::Cli::command().disable_help_subcommand(true);
    let Some(directory) = out else {
        let mut page = Vec::new();
        return match clap_mangen::Man::new(command).render(&mut page) {
            Ok(()) => {
                crate::out!("{}", String::from_utf8_lossy(&page));
                exit_code::SUCCESS
            }
            Err(error) => {
                crate::errln!("error: cannot render the manual page: {error}");
                exit_code::FAILED
            }
        };
    };
    let written =
        std::fs::create_dir_all(directory).and_then(|()| clap_mangen::generate_to(command, directory));
    match written {
        Ok(()) => {
            let mut pages = man_page_names();
            pages.sort();
            crate::outln!("wrote {} pages to {}: {}", pages.len(), directory.display(), pages.join(" "));
            exit_code::SUCCESS
        }
        Err(error) => {
            crate::errln!("error: cannot write manual pages to {}: {error}", directory.display());
            exit_code::FAILED
        }
    }
}

/// The file names `dr-plan man --out` writes: the main page and one per visible command.
#[must_use]
pub fn man_page_names() -> Vec<String> {
    let command = crate::cli::Cli::command();
    let mut names = vec![format!("{BINARY}.1")];
    names.extend(
        command
            .get_subcommands()
            .filter(|subcommand| !subcommand.is_hide_set())
            .map(|subcommand| format!("{BINARY}-{}.1", subcommand.get_name())),
    );
    names
}

/// What the completion scripts ask: the words of the command line (the program
/// first) and the index of the word being completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Index into `words` of the word under the cursor.
    pub index: usize,
    /// The command line's words as the shell split them.
    pub words: Vec<String>,
}

/// The request when `arguments` (the program's, its name first) are
/// `__complete --index N -- WORD...`.
#[must_use]
pub fn requested(arguments: impl IntoIterator<Item = OsString>) -> Option<Request> {
    let mut arguments = arguments.into_iter().skip(1);
    if arguments.next()? != SUBCOMMAND {
        return None;
    }
    let mut index = None;
    while let Some(argument) = arguments.next() {
        match argument.to_str() {
            Some("--index") => index = arguments.next()?.to_str()?.parse().ok(),
            Some("--") => break,
            _ => return Some(Request { index: usize::MAX, words: Vec::new() }),
        }
    }
    let words = arguments.map(|word| word.to_string_lossy().into_owned()).collect();
    Some(Request { index: index?, words })
}

/// The helper's whole life: prints the candidates and exits 0, or exits 1 when the
/// word is not one it completes (a malformed request included).
#[must_use]
pub fn serve(request: &Request) -> i32 {
    let state_dir_from_environment = std::env::var_os("DR_PLAN_STATE_DIR").filter(|value| !value.is_empty());
    match candidates(request, state_dir_from_environment.map(PathBuf::from)) {
        Some(values) => {
            for value in values {
                crate::outln!("{value}");
            }
            exit_code::SUCCESS
        }
        None => NOT_DYNAMIC,
    }
}

/// The run ids or step ids that fit the word under the cursor, or `None` when it is
/// not a run id or a step id. Not filtered by what is typed: the shells do that.
#[must_use]
pub fn candidates(request: &Request, state_dir_from_environment: Option<PathBuf>) -> Option<Vec<String>> {
    let line = Line::parse(request)?;
    let state_dir = line
        .option_value("state-dir")
        .map(expand_home)
        .or(state_dir_from_environment)
        .unwrap_or_else(|| PathBuf::from(crate::engine::decisions::DEFAULT_STATE_DIR));
    let subcommand = line.subcommand.as_str();
    match (&line.cursor, subcommand) {
        (Cursor::Positional(0), "status" | "report" | "verify") => Some(run_ids(&state_dir, false)),
        (Cursor::Positional(0), "resume") => Some(run_ids(&state_dir, true)),
        (Cursor::OptionValue(option), _) if !takes_step_ids(subcommand, option) => None,
        (Cursor::OptionValue(_), "run" | "drill") => {
            let plan =
                line.positionals.first().and_then(|path| crate::kinds::load_plan(&expand_home(path)).ok());
            Some(plan.map(|plan| approval_steps(&plan, None)).unwrap_or_default())
        }
        (Cursor::OptionValue(option), _) => {
            let run = line.positionals.first().and_then(|run_id| load_run(&state_dir, run_id));
            Some(run.map(|(plan, state)| run_steps(option, &plan, &state)).unwrap_or_default())
        }
        _ => None,
    }
}

/// The options whose values are step ids, each with the subcommands that have it.
const STEP_OPTIONS: [(&str, &[&str]); 3] =
    [("approve", &["run", "drill", "resume"]), ("rerun", &["resume"]), ("mark-done", &["resume"])];

fn takes_step_ids(subcommand: &str, option: &str) -> bool {
    STEP_OPTIONS.iter().any(|(name, subcommands)| *name == option && subcommands.contains(&subcommand))
}

/// Where the cursor is on the line.
#[derive(Debug, PartialEq, Eq)]
enum Cursor {
    /// The value of this long option (without `--`).
    OptionValue(String),
    /// The n-th positional argument of the subcommand (0-based).
    Positional(usize),
    /// An option name, or anything else.
    Other,
}

/// The command line up to the cursor, read with the clap definition: which
/// subcommand, its positionals, the values of its options (the whole line), and what
/// the word under the cursor is.
#[derive(Debug)]
struct Line {
    subcommand: String,
    positionals: Vec<String>,
    options: Vec<(String, String)>,
    cursor: Cursor,
}

impl Line {
    fn parse(request: &Request) -> Option<Line> {
        let (words, index, value_after_equals) = join_bash_equals(request);
        let root = crate::cli::Cli::command();
        // dr-plan takes no options before the subcommand but --help and --version.
        let subcommand_at = (1..index).find(|&at| !words[at].starts_with('-'))?;
        let subcommand = root.find_subcommand(&words[subcommand_at])?;
        let takes_value = |name: &str| {
            subcommand
                .get_arguments()
                .any(|argument| argument.get_long() == Some(name) && argument.get_action().takes_values())
        };
        let mut line = Line {
            subcommand: subcommand.get_name().to_owned(),
            positionals: Vec::new(),
            options: Vec::new(),
            cursor: Cursor::Other,
        };
        let mut only_positionals = false;
        let mut at = subcommand_at + 1;
        while at < words.len() {
            let word = &words[at];
            if at == index {
                line.cursor = match &value_after_equals {
                    Some(name) if takes_value(name) => Cursor::OptionValue(name.clone()),
                    Some(_) => Cursor::Other,
                    None if only_positionals || !word.starts_with('-') => {
                        Cursor::Positional(line.positionals.len())
                    }
                    // zsh and fish keep `--approve=go` whole; the ids are for after the `=`.
                    None => match word.strip_prefix("--").and_then(|long| long.split_once('=')) {
                        Some((name, _)) if takes_value(name) => Cursor::OptionValue(name.to_owned()),
                        _ => Cursor::Other,
                    },
                };
            } else if only_positionals || !word.starts_with('-') || word == "-" {
                line.positionals.push(word.clone());
            } else if word == "--" {
                only_positionals = true;
            } else if let Some(long) = word.strip_prefix("--") {
                match long.split_once('=') {
                    Some((name, value)) => line.options.push((name.to_owned(), value.to_owned())),
                    None if takes_value(long) => {
                        if at + 1 == index {
                            line.cursor = Cursor::OptionValue(long.to_owned());
                        } else if let Some(value) = words.get(at + 1) {
                            line.options.push((long.to_owned(), value.clone()));
                        }
                        at += 1;
                    }
                    None => {}
                }
            }
            at += 1;
        }
        Some(line)
    }

    /// The last value given to `--name` anywhere on the line.
    fn option_value(&self, name: &str) -> Option<&str> {
        self.options.iter().rev().find(|(option, _)| option == name).map(|(_, value)| value.as_str())
    }
}

/// The words with bash's `--option`, `=`, `value` (it splits at `=`, a
/// `COMP_WORDBREAKS` character) joined back into `--option=value`, the index of the
/// word under the cursor among them, and — when the cursor is on such a value (or right
/// after the `=`) — the option's name: bash completes the part after the `=`. An empty
/// word is added when the cursor is after the last one.
fn join_bash_equals(request: &Request) -> (Vec<String>, usize, Option<String>) {
    let mut words: Vec<String> = Vec::with_capacity(request.words.len() + 1);
    let mut index = None;
    let mut value_after_equals = None;
    let mut at = 0;
    while at < request.words.len() {
        let word = &request.words[at];
        let after_option = words.last().filter(|last| last.starts_with("--") && !last.contains('='));
        if at > 0 && word == "=" && after_option.is_some() {
            let name = after_option.map(|last| last[2..].to_owned()).unwrap_or_default();
            let value = request.words.get(at + 1).cloned().unwrap_or_default();
            if request.index == at || request.index == at + 1 {
                index = Some(words.len() - 1);
                value_after_equals = Some(name);
            }
            if let Some(last) = words.last_mut() {
                last.push('=');
                last.push_str(&value);
            }
            at += 2;
            continue;
        }
        if request.index == at {
            index = Some(words.len());
        }
        words.push(word.clone());
        at += 1;
    }
    let index = index.unwrap_or_else(|| {
        words.push(String::new());
        words.len() - 1
    });
    (words, index, value_after_equals)
}

/// `~/x` as the shell would expand it once the line runs.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// The runs under `state_dir`, oldest first; with `resumable_only`, those that did not
/// succeed.
fn run_ids(state_dir: &Path, resumable_only: bool) -> Vec<String> {
    // Only a local state is listed: a key press must not wait for the network.
    if state_dir.to_string_lossy().starts_with("s3://") {
        return Vec::new();
    }
    crate::engine::report::list_runs(&StateDir::Local(state_dir.to_path_buf()))
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, state)| !resumable_only || state.status != Some(RunStatus::Succeeded))
        .map(|(id, _)| id)
        .collect()
}

/// The approval steps of `plan`, less those that succeeded in `state`.
fn approval_steps(plan: &crate::lang::plan::Plan, state: Option<&RunState>) -> Vec<String> {
    plan.steps
        .iter()
        .filter(|step| step.kind.asks_approval())
        .filter(|step| {
            !state.is_some_and(|state| matches!(state.steps.get(&step.id), Some(StepState::Succeeded { .. })))
        })
        .map(|step| step.id.clone())
        .collect()
}

/// The steps of a run that `resume --OPTION` takes.
fn run_steps(option: &str, plan: &crate::lang::plan::Plan, state: &RunState) -> Vec<String> {
    match option {
        "approve" => approval_steps(plan, Some(state)),
        "mark-done" => plan
            .steps
            .iter()
            .filter(|step| matches!(state.steps.get(&step.id), Some(StepState::Interrupted { .. })))
            .map(|step| step.id.clone())
            .collect(),
        _ => plan.steps.iter().map(|step| step.id.clone()).collect(),
    }
}

/// A run's plan (the copy taken when it started, else its file) and its journal;
/// `None` for anything that is not a readable run — completion says nothing then.
fn load_run(state_dir: &Path, run_id: &str) -> Option<(crate::lang::plan::Plan, RunState)> {
    journal::check_run_id(run_id).ok()?;
    if state_dir.to_string_lossy().starts_with("s3://") {
        return None;
    }
    let state = journal::read(&journal::journal_path(state_dir, run_id)).and_then(RunState::replay).ok()?;
    let Event::RunStarted { plan_path, .. } = &state.started else { return None };
    let text = std::fs::read_to_string(journal::run_dir(state_dir, run_id).join("plan.snapshot"))
        .or_else(|_| std::fs::read_to_string(plan_path))
        .ok()?;
    let plan = crate::kinds::plan_from_source(&crate::lang::source::SourceFile::new(plan_path.clone(), text))
        .ok()?;
    Some((plan, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(words: &[&str], index: usize) -> Option<Line> {
        Line::parse(&Request { index, words: words.iter().map(ToString::to_string).collect() })
    }

    fn cursor(words: &[&str], index: usize) -> Option<Cursor> {
        line(words, index).map(|line| line.cursor)
    }

    #[test]
    fn the_cursor_is_read_with_the_clap_definition() {
        assert_eq!(cursor(&["dr-plan", "resume", ""], 2), Some(Cursor::Positional(0)));
        assert_eq!(cursor(&["dr-plan", "resume"], 2), Some(Cursor::Positional(0)));
        // `--format` takes a value, `--yes` does not.
        assert_eq!(cursor(&["dr-plan", "resume", "--format", "json", "x"], 4), Some(Cursor::Positional(0)));
        assert_eq!(cursor(&["dr-plan", "resume", "--yes", "x"], 3), Some(Cursor::Positional(0)));
        assert_eq!(cursor(&["dr-plan", "resume", "r1", "x"], 3), Some(Cursor::Positional(1)));
        assert_eq!(cursor(&["dr-plan", "resume", "--st"], 2), Some(Cursor::Other));
        assert_eq!(
            cursor(&["dr-plan", "run", "p.yaml", "--approve", "g"], 4),
            Some(Cursor::OptionValue("approve".into()))
        );
        assert_eq!(
            cursor(&["dr-plan", "run", "--approve=g"], 2),
            Some(Cursor::OptionValue("approve".into()))
        );
        assert_eq!(cursor(&["dr-plan", "run", "--yes=g"], 2), Some(Cursor::Other));
        // The subcommand itself, or none yet: clap's static completion.
        assert!(cursor(&["dr-plan", "res"], 1).is_none());
        assert!(cursor(&["dr-plan", "nonsense", ""], 2).is_none());
    }

    #[test]
    fn bash_words_split_at_equals_are_joined() {
        let split = line(&["dr-plan", "run", "p.yaml", "--state-dir", "=", "/s", "--approve", "=", "g"], 8)
            .expect("a line");
        assert_eq!(split.cursor, Cursor::OptionValue("approve".into()));
        assert_eq!(split.option_value("state-dir"), Some("/s"));
        assert_eq!(split.positionals, ["p.yaml"]);
        // The cursor right after the `=`.
        assert_eq!(
            cursor(&["dr-plan", "run", "p.yaml", "--approve", "="], 4),
            Some(Cursor::OptionValue("approve".into()))
        );
    }

    #[test]
    fn values_are_offered_only_where_ids_go() {
        let request =
            |words: &[&str], index| Request { index, words: words.iter().map(ToString::to_string).collect() };
        let empty = std::env::temp_dir().join("dr-plan-completions-no-such-state-dir");
        assert_eq!(candidates(&request(&["dr-plan", "status", ""], 2), Some(empty.clone())), Some(vec![]));
        assert_eq!(candidates(&request(&["dr-plan", "run", ""], 2), Some(empty.clone())), None);
        assert_eq!(
            candidates(&request(&["dr-plan", "status", "--format", ""], 3), Some(empty.clone())),
            None
        );
        assert_eq!(candidates(&request(&["dr-plan", "run", "p", "--rerun", ""], 4), Some(empty)), None);
    }

    #[test]
    fn the_option_table_names_options_of_those_subcommands() {
        let command = crate::cli::Cli::command();
        for (option, subcommands) in STEP_OPTIONS {
            for subcommand in subcommands {
                let subcommand = command.find_subcommand(subcommand).expect("a subcommand");
                assert!(subcommand.get_arguments().any(|argument| argument.get_long() == Some(option)));
            }
        }
        for subcommand in ["status", "report", "resume"] {
            let subcommand = command.find_subcommand(subcommand).expect("a subcommand");
            assert!(subcommand.get_arguments().any(|argument| argument.get_long() == Some("state-dir")));
        }
    }

    #[test]
    fn the_scripts_have_their_glue() {
        // If clap_complete changes the shape the glue relies on, this says so.
        let bash = script(Shell::Bash);
        assert!(bash.contains("\n    _dr__plan \"$@\"\n"), "bash calls clap's function");
        assert!(!bash.contains("dr__subcmd__plan"), "clap-rs/clap#6421 is worked around");
        let zsh = script(Shell::Zsh);
        assert!(zsh.contains("\n_dr-plan_static() {\n") && zsh.contains("_dr-plan_static \"$@\""));
        assert_eq!(zsh.matches("\n_dr-plan() {\n").count(), 1);
        let fish = script(Shell::Fish);
        assert!(fish.contains("function __fish_dr_plan_using_subcommand"), "the option rules' condition");
        assert!(fish.contains("-l mark-done -x -a '(__fish_dr_plan_ids)'"));
        assert!(!script(Shell::Powershell).contains(SUBCOMMAND));
    }

    #[test]
    fn the_helper_is_recognised() {
        let arguments = |words: &[&str]| words.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            requested(arguments(&["dr-plan", "__complete", "--index", "1", "--", "dr-plan", "x"])),
            Some(Request { index: 1, words: vec!["dr-plan".into(), "x".into()] })
        );
        assert_eq!(requested(arguments(&["dr-plan", "status"])), None);
        assert_eq!(requested(arguments(&["dr-plan", "__complete", "--", "dr-plan"])), None);
    }
}
