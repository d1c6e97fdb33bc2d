//! Hostile input: files meant to exhaust memory, the stack or time, and thousands of
//! damaged variants of the shipped plans. Whatever a plan or vars file holds, dr-plan
//! answers with exit 2 and located diagnostics: never a panic, an abort or a hang.
//!
//! The fuzz test is deterministic (a fixed seed, its own small generator) so a failure
//! reproduces; `HOSTILE_SEED` and `HOSTILE_CASES` explore further. The input of a failing
//! case is written under the target directory and its path printed; the case being run
//! is always on disk there first, so even an abort (stack overflow) leaves it behind.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use dr_plan::lang::diagnostic::Diagnostic;

const BILLION_LAUGHS: &str = "tests/fixtures/invalid/billion-laughs.yaml";
const DEEP_NESTING: &str = "tests/fixtures/invalid/deep-nesting.yaml";

/// What one command may take, far above what it needs, far below "hangs".
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `dr-plan ARGUMENTS...` from the crate root; returns (exit code, stdout and
/// stderr: `lint` reports on stdout, the others on stderr).
fn dr_plan(arguments: &[&str]) -> (Option<i32>, String) {
    let output = Command::cargo_bin("dr-plan")
        .expect("the dr-plan binary is built")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .args(arguments)
        .timeout(COMMAND_TIMEOUT)
        .output()
        .expect("dr-plan runs");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

fn assert_refused(arguments: &[&str], expected: &str) {
    let (code, stderr) = dr_plan(arguments);
    assert_eq!(code, Some(2), "dr-plan {arguments:?} (a timeout or a signal gives no code):\n{stderr}");
    assert!(!stderr.contains("panicked"), "dr-plan {arguments:?} panicked:\n{stderr}");
    assert!(stderr.contains(expected), "dr-plan {arguments:?}: expected `{expected}` in:\n{stderr}");
}

#[test]
fn a_device_is_refused_by_its_name_before_anything_is_read() {
    assert_refused(&["validate", "/dev/zero"], "/dev/zero: is not a YAML or TOML file");
    assert_refused(&["lint", "/dev/zero"], "/dev/zero: is not a YAML or TOML file");
}

#[test]
fn a_file_over_the_size_limit_is_refused() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let big = directory.path().join("big.yaml");
    std::fs::write(&big, "# x\n".repeat(5 << 20)).expect("a 20 MiB file");
    let big = big.to_str().expect("UTF-8 path");
    assert_refused(&["validate", big], "is larger than 16 MiB");
    assert_refused(&["dry-run", "plans/db-corruption.yaml", "--vars-file", big], "is larger than 16 MiB");
}

#[test]
fn links_and_pipes_with_a_plan_name_are_never_read() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let endless = directory.path().join("zero.yaml");
    std::os::unix::fs::symlink("/dev/zero", &endless).expect("symlink");
    let endless = endless.to_str().expect("UTF-8 path");
    assert_refused(&["validate", endless], "is a symbolic link (to /dev/zero)");
    assert_refused(&["dry-run", "plans/db-corruption.yaml", "--vars-file", endless], "is a symbolic link");
    // A plan in a pull request that links to a file of the CI runner: lint of the
    // directory must not quote that file into a public log.
    let secrets = directory.path().join("credentials");
    std::fs::write(&secrets, "aws_secret_access_key = SuperSecretValue123\n").expect("a file");
    let plans = directory.path().join("plans");
    std::fs::create_dir(&plans).expect("a directory");
    std::os::unix::fs::symlink(&secrets, plans.join("creds.toml")).expect("symlink");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dr-plan"))
        .args(["lint", plans.to_str().expect("UTF-8")])
        .output()
        .expect("dr-plan runs");
    let printed =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{printed}");
    assert!(!printed.contains("SuperSecretValue123"), "{printed}");
    assert!(printed.contains("is a symbolic link"), "{printed}");
    let fifo = directory.path().join("pipe.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    assert_refused(&["validate", fifo.to_str().expect("UTF-8 path")], "is not a regular file");
}

#[test]
fn billion_laughs_is_refused_by_every_command_and_as_a_vars_file() {
    let state = tempfile::tempdir().expect("temporary directory");
    let state = state.path().to_str().expect("UTF-8 path");
    let expected = "YAML anchors and aliases copy more than 100000 values";
    assert_refused(&["validate", BILLION_LAUGHS], expected);
    assert_refused(&["lint", BILLION_LAUGHS], expected);
    assert_refused(&["dry-run", BILLION_LAUGHS, "--state-dir", state], expected);
    assert_refused(&["graph", BILLION_LAUGHS], expected);
    for file in [BILLION_LAUGHS, DEEP_NESTING] {
        assert_refused(
            &["dry-run", "plans/db-corruption.yaml", "--vars-file", file, "--state-dir", state],
            "error: ",
        );
    }
}

#[test]
fn a_damaged_drill_history_does_not_break_a_dry_run() {
    let state = tempfile::tempdir().expect("temporary directory");
    let plan = dr_plan::kinds::load_plan(Path::new("plans/db-corruption.yaml")).expect("a valid plan");
    let steps = plan.steps.iter().map(|step| (step.id.clone(), 1e300)).collect();
    let record =
        dr_plan::preview::history::DrillRecord { run_id: "r".into(), finished_at: String::new(), steps };
    dr_plan::preview::history::History::append(
        &dr_plan::state::StateDir::Local(state.path().to_path_buf()),
        plan.name(),
        &record,
    )
    .expect("history written");
    let state = state.path().to_str().expect("UTF-8 path");
    for format in ["human", "json", "markdown"] {
        let (code, stderr) =
            dr_plan(&["dry-run", "plans/db-corruption.yaml", "--state-dir", state, "--format", format]);
        assert_eq!(code, Some(0), "{format}:\n{stderr}");
    }
}

// ---------------------------------------------------------------------------------------
// Fuzzing

/// Cases per run unless `HOSTILE_CASES` says otherwise.
const CASES: usize = 2_000;

/// What one case may take (validate, lint, dry-run and rendering, in a debug build).
const CASE_TIME: Duration = Duration::from_secs(2);

/// The most memory the whole test process may have used at any point.
const PEAK_MEMORY: u64 = 1 << 30;

/// The same stack as the binary's main thread, so a case that overflows here would
/// abort the real command too.
const STACK: usize = 8 << 20;

/// splitmix64: tiny, fast, and the same sequence on every machine.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut value = self.0;
        value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        value ^ (value >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % bound as u64).expect("below a usize")
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Numbers and durations that have broken parsers and arithmetic.
const ODD_NUMBERS: &[&str] = &[
    "10000000000000000000s",
    "99999999999999999999999ms",
    "3651d",
    "1e300",
    "-1e300",
    ".nan",
    "-.inf",
    "-0",
    "0x7fffffffffffffff",
    "0x8000000000000000",
    "9223372036854775808",
    "-9223372036854775809",
    "0o777777777777777777777777",
    "1_000",
    "18446744073709551615ms",
    "0s",
    "0",
    "4294967296",
];

/// Text that has broken terminals, line counting and UTF-8 handling.
const ODD_TEXT: &[&[u8]] = &[
    "é".as_bytes(),
    "🦀".as_bytes(),
    "\u{202e}".as_bytes(),
    "\u{feff}".as_bytes(),
    "\u{200b}".as_bytes(),
    "e\u{301}".as_bytes(),
    b"\x1b[2J\x1b[31m",
    b"\x00",
    b"\r",
    b"\r\n",
    b"\t",
    b"\x7f",
    "\u{9b}".as_bytes(),
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"{{",
    b"}}",
    b"{{ steps.",
    b"&a ",
    b"*a",
    b"<<: *a",
    b"!!binary ",
    b"? ",
    b"---\n",
    b"...\n",
    b"%YAML 1.2\n",
];

/// One hostile variant of `seed`: one to four mutations, each of a kind the issue lists.
fn mutate(random: &mut Random, seed: &[u8], seeds: &[Vec<u8>], toml: bool) -> Vec<u8> {
    let mut text = seed.to_vec();
    for _ in 0..=random.below(4) {
        let at = random.below(text.len() + 1);
        match random.below(10) {
            0 => {
                if let Some(byte) = text.get_mut(at) {
                    *byte ^= 1 << random.below(8);
                }
            }
            1 => {
                let end = (at + random.below(64)).min(text.len());
                text.drain(at..end);
            }
            2 => {
                let end = (at + random.below(400)).min(text.len());
                let copy = text[at..end].to_vec();
                let to = random.below(text.len() + 1);
                for _ in 0..=random.below(3) {
                    text.splice(to..to, copy.iter().copied());
                }
            }
            3 => {
                let depth = 200 + random.below(6_000);
                let opener = *if toml {
                    random.pick(&["[", "{ a = "])
                } else {
                    random.pick(&["- ", "[", "{a: ", "- a:\n  "])
                };
                let line = line_start(&text, at);
                let nest = opener.repeat(depth);
                text.splice(line..line, nest.bytes());
            }
            4 => aliases(random, &mut text, at),
            5 => {
                let length = 60_000 + random.below(20_000);
                let filler = *random.pick(b"x \"#\\-");
                text.splice(at..at, std::iter::repeat_n(filler, length));
            }
            6 => replace_number(random, &mut text, at),
            7 => {
                let odd = random.pick(ODD_TEXT);
                text.splice(at..at, odd.iter().copied());
            }
            8 => {
                let other = random.pick(seeds);
                let from = random.below(other.len());
                let end = (from + random.below(600)).min(other.len());
                text.splice(at..at, other[from..end].iter().copied());
            }
            _ => {
                let key = random.pick(&[
                    "key.key.key.key.key.key.key.key.key.key.key.key.key.key.key.key.key.key.key.key",
                    "needs: [",
                    "estimate: ",
                    "timeout: ",
                ]);
                let line = line_start(&text, at);
                let repeat = 1 + random.below(20);
                text.splice(line..line, key.repeat(repeat).bytes());
            }
        }
    }
    text
}

fn line_start(text: &[u8], at: usize) -> usize {
    text[..at].iter().rposition(|&byte| byte == b'\n').map_or(0, |newline| newline + 1)
}

/// Adds anchors and aliases: a billion-laughs ladder, or an anchor on a value and
/// aliases to it elsewhere.
fn aliases(random: &mut Random, text: &mut Vec<u8>, at: usize) {
    if random.below(2) == 0 {
        let width = 2 + random.below(12);
        let mut ladder = "\nlaughs:\n  l0: &l0 [lol, lol]\n".to_owned();
        for level in 1..=(3 + random.below(8)) {
            let previous = format!("*l{}", level - 1);
            ladder.push_str(&format!("  l{level}: &l{level} [{}]\n", vec![previous; width].join(", ")));
        }
        text.extend_from_slice(ladder.as_bytes());
    } else {
        let Some(colon) = text[at..].iter().position(|&byte| byte == b':').map(|offset| at + offset) else {
            return;
        };
        text.splice(colon + 1..colon + 1, b" &a".iter().copied());
        for _ in 0..=random.below(5) {
            let to = line_start(text, random.below(text.len() + 1));
            let alias = random.pick(&["- *a\n", "x: *a\n", "*a: 1\n", "  <<: *a\n", "y: [*a, *a, *a]\n"]);
            text.splice(to..to, alias.bytes());
        }
    }
}

/// Replaces the number (or duration) after `at` with an odd one.
fn replace_number(random: &mut Random, text: &mut Vec<u8>, at: usize) {
    let Some(start) = text[at..].iter().position(u8::is_ascii_digit).map(|offset| at + offset) else {
        return;
    };
    let end = text[start..]
        .iter()
        .position(|byte| !byte.is_ascii_alphanumeric())
        .map_or(text.len(), |offset| start + offset);
    let odd = random.pick(ODD_NUMBERS);
    text.splice(start..end, odd.bytes());
}

/// How one case ended.
enum Outcome {
    Done,
    Panicked(String),
    /// A diagnostic printed a raw control character.
    Unescaped(String),
}

/// Validates, lints and dry-runs the file at `path` in-process, renders every
/// diagnostic, and reads it as a vars file too: what `dr-plan` does with it.
fn exercise(path: &Path, state: &Path) -> Outcome {
    let run = std::panic::catch_unwind(|| {
        let mut diagnostics = Vec::new();
        match dr_plan::kinds::load_plan(path) {
            Ok(plan) => {
                diagnostics.extend(dr_plan::lint::lint(&plan));
                let steps = plan.steps.iter().map(|step| (step.id.clone(), 1e300)).collect();
                let record = dr_plan::preview::history::DrillRecord {
                    run_id: "r".into(),
                    finished_at: String::new(),
                    steps,
                };
                let state_dir = dr_plan::state::StateDir::Local(state.to_path_buf());
                let history =
                    match dr_plan::preview::history::History::append(&state_dir, plan.name(), &record) {
                        Ok(()) => dr_plan::preview::history::History::load(&state_dir, plan.name()),
                        Err(_) => dr_plan::preview::history::History::default(),
                    };
                let overrides = dr_plan::lang::render::Overrides::default();
                if let Ok((inputs, vars)) = dr_plan::lang::render::resolve_values(&plan, &overrides) {
                    for drill in [false, true] {
                        let preview = dr_plan::preview::dry_run::DryRun::new(
                            &plan,
                            vars.clone(),
                            inputs.clone(),
                            drill,
                            &history,
                        );
                        let _ = preview.human();
                        let _ = preview.json();
                        let _ = preview.markdown(&dr_plan::preview::graph::mermaid(&plan));
                    }
                }
            }
            Err(problems) => diagnostics.extend(problems),
        }
        let vars_file = dr_plan::lang::render::Overrides::parse(&[], Some(path)).err();
        let rendered: Vec<String> = diagnostics
            .iter()
            .flat_map(|diagnostic: &Diagnostic| [diagnostic.render(false), diagnostic.to_string()])
            .chain(vars_file)
            .collect();
        rendered
    });
    match run {
        Ok(rendered) => match rendered.iter().find(|text| text.chars().any(is_raw_control)) {
            Some(text) => Outcome::Unescaped(text.clone()),
            None => Outcome::Done,
        },
        Err(panic) => Outcome::Panicked(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                .unwrap_or_default(),
        ),
    }
}

fn is_raw_control(character: char) -> bool {
    character.is_control() && !matches!(character, '\n' | '\t')
}

/// Peak resident memory of this process (`VmHWM`), in bytes.
fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("VmHWM in /proc/self/status");
    let kilobytes: u64 =
        line.split_whitespace().nth(1).and_then(|value| value.parse().ok()).expect("VmHWM in kB");
    kilobytes * 1024
}

fn environment_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn seeds() -> Vec<(PathBuf, Vec<u8>)> {
    let mut seeds: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir("plans")
        .expect("the shipped plans")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| dr_plan::lang::source::syntax_of(&path.to_string_lossy()).is_some())
        .map(|path| {
            let text = std::fs::read(&path).expect("a shipped plan");
            (path, text)
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 5, "expected the shipped plans under plans/");
    seeds
}

#[test]
fn thousands_of_hostile_variants_of_the_shipped_plans_end_in_diagnostics() {
    let seed = environment_number("HOSTILE_SEED", 0x00d1_5a57_e5ca_fe00);
    let cases = usize::try_from(environment_number("HOSTILE_CASES", CASES as u64)).expect("a case count");
    let seeds = seeds();
    let texts: Vec<Vec<u8>> = seeds.iter().map(|(_, text)| text.clone()).collect();
    let output = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile-inputs");
    std::fs::create_dir_all(&output).expect("output directory");
    let state = tempfile::tempdir().expect("state directory");
    let state_path = state.path().to_owned();

    // One worker runs the cases; this thread times them, since a hang cannot be unwound.
    let (to_worker, cases_in) = mpsc::channel::<PathBuf>();
    let (outcomes_out, outcomes) = mpsc::channel::<Outcome>();
    std::thread::Builder::new()
        .name("hostile-case".into())
        .stack_size(STACK)
        .spawn(move || {
            for path in cases_in {
                if outcomes_out.send(exercise(&path, &state_path)).is_err() {
                    break;
                }
            }
        })
        .expect("worker thread");
    // A case's panic is caught and reported with its input; the default hook's output
    // would drown the report in backtraces. Other tests' panics print as usual.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() != Some("hostile-case") {
            default_hook(info);
        }
    }));

    let mut random = Random(seed);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for case in 0..cases {
        let (seed_path, seed_text) = random.pick(&seeds);
        let toml = seed_path.extension().is_some_and(|extension| extension == "toml");
        let text = mutate(&mut random, seed_text, &texts, toml);
        let extension = if toml { "toml" } else { "yaml" };
        // Written before it runs: an abort leaves the case that caused it on disk.
        let current = output.join(format!("current.{extension}"));
        std::fs::File::create(&current).and_then(|mut file| file.write_all(&text)).expect("case written");
        let keep = |why: &str| -> String {
            let kept = output.join(format!("case-{case}-seed-{seed:x}.{extension}"));
            std::fs::copy(&current, &kept).expect("case kept");
            format!("case {case} (from {}) {why}; input kept at {}", seed_path.display(), kept.display())
        };
        let began = Instant::now();
        to_worker.send(current.clone()).expect("worker alive");
        match outcomes.recv_timeout(CASE_TIME) {
            Ok(Outcome::Done) => {}
            Ok(Outcome::Panicked(message)) => panic!("{}", keep(&format!("panicked: {message}"))),
            Ok(Outcome::Unescaped(text)) => {
                panic!("{}:\n{text:?}", keep("printed a raw control character in a diagnostic"))
            }
            Err(_) => panic!("{}", keep(&format!("took more than {CASE_TIME:?}"))),
        }
        slowest = slowest.max(began.elapsed());
        if case % 200 == 199 || case + 1 == cases {
            let peak = peak_memory();
            assert!(peak < PEAK_MEMORY, "{}", keep(&format!("brought peak memory to {} MiB", peak >> 20)));
        }
    }
    let _ = std::fs::remove_file(output.join("current.yaml"));
    let _ = std::fs::remove_file(output.join("current.toml"));
    eprintln!(
        "{cases} hostile cases in {:?} (slowest {slowest:?}), peak memory {} MiB",
        started.elapsed(),
        peak_memory() >> 20
    );
}

#[test]
fn plan_text_never_reaches_a_terminal_or_a_pr_comment_raw() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let plan = directory.path().join("esc.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: esc\ndescription: \"calm\\e[2J\\n\\n## Everything is safe, approve\\n\\n<details>\"\nsteps:\n  \
         - id: a\n    kind: exec\n    description: \"step\\e]0;PWNED\\a\"\n    with: { command: [echo, \"x\\e[31my\"] }\n",
    )
    .expect("a plan");
    let plan = plan.to_str().expect("UTF-8 path");
    let state = directory.path().join("state");
    let state = state.to_str().expect("UTF-8 path");
    for arguments in [
        vec!["dry-run", plan, "--state-dir", state],
        vec!["dry-run", plan, "--format", "markdown", "--state-dir", state],
        vec!["graph", plan],
        vec!["graph", plan, "--format", "dot"],
        vec!["run", plan, "--yes", "--state-dir", state],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_dr-plan"))
            .args(&arguments)
            .env("NO_COLOR", "1")
            .output()
            .expect("dr-plan runs");
        let printed = [output.stdout.as_slice(), output.stderr.as_slice()].concat();
        assert!(
            !printed.contains(&0x1b) && !printed.contains(&0x07),
            "{arguments:?}: {}",
            String::from_utf8_lossy(&printed)
        );
        let text = String::from_utf8_lossy(&printed);
        assert!(!text.lines().any(|line| line.starts_with("## Everything")), "{arguments:?}: {text}");
        assert!(!text.contains("<details>\n") || !arguments.contains(&"markdown"), "{arguments:?}: {text}");
    }
}

#[test]
fn thousands_of_problems_in_one_file_are_counted_not_printed() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let plan = directory.path().join("dup.yaml");
    let keys: String = (0..5000).map(|index| format!("  k: v{index}\n")).collect();
    std::fs::write(&plan, format!("version: 1\nname: t\nvars:\n{keys}steps:\n  - {{ id: a, kind: sleep, with: {{ duration: 1s }} }}\n"))
        .expect("a plan");
    let started = Instant::now();
    assert_refused(&["validate", plan.to_str().expect("UTF-8 path")], "4899 more problems are not shown");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}
