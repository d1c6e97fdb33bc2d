//! The command line: argument types and the static commands (validate, lint, dry-run,
//! graph, steps, schema). Run-time commands live in [`commands`].

pub mod catalog;
pub mod commands;
pub mod completions;
pub mod dry_run;
pub mod exit;
pub mod lint;
pub mod run;
pub mod schema;
pub mod steps;
pub mod verify;

use std::path::{Path, PathBuf};

use crate::state::StateDir;

use clap::{Parser, Subcommand, ValueEnum};

use crate::lang::diagnostic::{Diagnostic, Severity};
use crate::sys::exit_code;

/// Declarative, resumable disaster-recovery plans.
#[derive(Debug, Parser)]
#[command(name = "dr-plan", version, about, after_help = exit_code::HELP)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and check plans (schema, graph, template references); exit 0 or 2.
    Validate {
        /// Plan files.
        #[arg(required = true)]
        plans: Vec<PathBuf>,
    },
    /// Validate plus the DR-safety rules (docs/lint.md), for CI.
    Lint {
        /// Plan files or directories (searched for .yaml, .yml, .toml).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = LintFormat::Human)]
        format: LintFormat,
        /// Make warnings fail (`--deny warnings`).
        #[arg(long, value_name = "warnings")]
        deny: Option<DenyLevel>,
        /// Where runs of these plans are kept (only read, for DRP014: a state bucket in
        /// the region a plan fails away from).
        #[arg(long, env = "DR_PLAN_STATE_DIR", value_name = "DIR|s3://BUCKET/PREFIX", value_parser = parse_state_dir)]
        state_dir: Option<StateDir>,
    },
    /// Show what a run would do, in order, without changing anything.
    DryRun {
        /// The plan file.
        plan: PathBuf,
        #[command(flatten)]
        values: ValueArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DryRunFormat::Human)]
        format: DryRunFormat,
        /// Preview a drill (`run.drill = true`).
        #[arg(long)]
        drill: bool,
        /// Also run read-only checks against the live systems.
        #[arg(long)]
        preflight: bool,
        /// Where runs and drill history are kept.
        #[arg(long, env = "DR_PLAN_STATE_DIR", default_value = crate::engine::decisions::DEFAULT_STATE_DIR, value_name = "DIR|s3://BUCKET/PREFIX", value_parser = parse_state_dir)]
        state_dir: StateDir,
    },
    /// Print the plan's dependency graph.
    Graph {
        /// The plan file.
        plan: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// The step catalog: parameters, outputs, idempotency, destructiveness.
    Steps {
        /// One kind to show in full (e.g. `s3.fetch`).
        kind: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = StepsFormat::Human)]
        format: StepsFormat,
    },
    /// Print the JSON Schema of the plan format.
    Schema,
    /// Execute a plan: checkpointed, resumable, one run per plan at a time.
    Run {
        /// The plan file.
        plan: PathBuf,
        #[command(flatten)]
        values: ValueArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Execute a plan as a drill (`run.drill = true`) and record its measured durations.
    Drill {
        /// The plan file.
        plan: PathBuf,
        #[command(flatten)]
        values: ValueArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Take up a stopped run where it stopped; finished steps never run again.
    ///
    /// When the run needs decisions (a stale lock, steps that were interrupted, an
    /// approval), resume lists them all and prints one command that makes them.
    Resume {
        /// The run id (`dr-plan status` lists them).
        run_id: String,
        /// Run again the steps that were running when the run stopped, even if their
        /// kind is not idempotent.
        #[arg(long)]
        rerun_interrupted: bool,
        /// Run this step again although it started or finished (e.g. to produce again
        /// an output the journal keeps redacted). Repeatable.
        #[arg(long, value_name = "STEP")]
        rerun: Vec<String>,
        /// Declare an interrupted step finished: you checked by hand that it did its
        /// work. Its outputs are empty; steps reading them are refused. Needs `--reason`.
        #[arg(long, value_name = "STEP")]
        mark_done: Vec<String>,
        /// Why you know the `--mark-done` steps finished (journaled, in the report).
        #[arg(long, value_name = "TEXT", requires = "mark_done")]
        reason: Option<String>,
        /// Correct an input or var that no finished step used yet: `--var backup=KEY`.
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// A YAML or TOML map of inputs and vars to correct.
        #[arg(long, value_name = "FILE")]
        vars_file: Option<PathBuf>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// List runs, or show one.
    Status {
        /// A run id.
        run_id: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = StatusFormat::Human)]
        format: StatusFormat,
        /// Where runs are kept.
        #[arg(long, env = "DR_PLAN_STATE_DIR", default_value = crate::engine::decisions::DEFAULT_STATE_DIR, value_name = "DIR|s3://BUCKET/PREFIX", value_parser = parse_state_dir)]
        state_dir: StateDir,
    },
    /// Check that a run's journal is intact: every event carries the hash of the one
    /// before it (the first, of the plan snapshot). Exit 0 when the chain holds, 1 naming
    /// the first event that does not match (changed, removed, inserted or reordered).
    Verify {
        /// The run id.
        run_id: String,
        /// Where runs are kept.
        #[arg(long, env = "DR_PLAN_STATE_DIR", default_value = crate::engine::decisions::DEFAULT_STATE_DIR, value_name = "DIR|s3://BUCKET/PREFIX", value_parser = parse_state_dir)]
        state_dir: StateDir,
    },
    /// A run's report: steps, measured RTO and RPO against the objectives, approvals.
    ///
    /// `--format markdown` (the default) includes the measured time line as a Mermaid
    /// gantt, which GitHub draws. `--format html` is one self-contained page (inline CSS
    /// and SVG, no script, nothing loaded from the network) to open in a browser or attach
    /// to the post-mortem: status, RTO and RPO verdicts, a time line of every attempt with
    /// the plan's estimates as ghost bars and approval waits hatched, the critical path,
    /// approvals, undo actions and, for a drill, the trend of the plan's measured RTO.
    /// Text from the plan and the journal is escaped; secrets were redacted in the journal.
    Report {
        /// The run id.
        run_id: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
        format: ReportFormat,
        /// Write the report to FILE (readable by its owner only) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Also write a Prometheus textfile here.
        #[arg(long, value_name = "FILE")]
        metrics_file: Option<PathBuf>,
        /// Where runs are kept.
        #[arg(long, env = "DR_PLAN_STATE_DIR", default_value = crate::engine::decisions::DEFAULT_STATE_DIR, value_name = "DIR|s3://BUCKET/PREFIX", value_parser = parse_state_dir)]
        state_dir: StateDir,
    },
    /// Print a shell completion script (bash, zsh and fish also complete run and step ids).
    Completions {
        /// The shell.
        shell: completions::Shell,
    },
    /// Print the manual page (roff), or write one page per command with `--out`.
    Man {
        /// Write dr-plan.1, dr-plan-run.1, ... into this directory instead.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// Options of `run`, `drill` and `resume`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Do not ask for confirmation before starting.
    #[arg(long)]
    pub yes: bool,
    /// Grant this approval step in advance (repeatable).
    #[arg(long, value_name = "STEP")]
    pub approve: Vec<String>,
    /// Your name, recorded with every approval you give (besides user@host).
    #[arg(long, value_name = "NAME", env = "DR_PLAN_APPROVER")]
    pub approver: Option<String>,
    /// Steps running at once at most (1 or more).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// `human` (progress bars on a terminal, plain lines otherwise) or `json` events.
    #[arg(long, value_enum, default_value_t = crate::engine::reporter::ProgressFormat::Human)]
    pub format: crate::engine::reporter::ProgressFormat,
    /// Where runs, locks and drill history are kept: a directory, or s3://BUCKET/PREFIX
    /// shared by the team (conditional writes, a lock with a lease; README "Teams").
    #[arg(long, env = "DR_PLAN_STATE_DIR", default_value = crate::engine::decisions::DEFAULT_STATE_DIR, value_name = "DIR|s3://BUCKET/PREFIX", value_parser = parse_state_dir)]
    pub state_dir: StateDir,
    /// Keep the journal objects of an `s3://` state for DAYS with S3 Object Lock
    /// (governance mode; the bucket must have Object Lock enabled).
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    pub state_object_lock: Option<u32>,
    /// Where steps keep their files (downloads, dumps, logs) when the state is in S3
    /// (default: a new temporary directory, named when the run starts). With a local
    /// state directory they stay in the run's directory.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Break a lock whose process is gone or whose lease expired (recorded in the journal).
    #[arg(long)]
    pub break_stale_lock: bool,
    /// Stop the whole run after this long (e.g. `2h`).
    #[arg(long, value_parser = parse_duration)]
    pub deadline: Option<crate::lang::duration::HumanDuration>,
    /// Write a Prometheus textfile when the run stops.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

impl RunArgs {
    /// The engine's options.
    #[must_use]
    pub fn options(&self) -> crate::engine::RunOptions {
        crate::engine::RunOptions {
            state_dir: self.state_dir.clone().with_object_lock(self.state_object_lock),
            work_dir: self.work_dir.clone(),
            state_object_lock: self.state_object_lock,
            yes: self.yes,
            approve: self.approve.clone(),
            approver: self.approver.clone().filter(|name| !name.trim().is_empty()),
            concurrency: usize::from(self.concurrency),
            format: self.format,
            break_stale_lock: self.break_stale_lock,
            deadline: self.deadline.map(crate::lang::duration::HumanDuration::get),
            metrics_file: self.metrics_file.clone(),
        }
    }
}

fn parse_duration(text: &str) -> Result<crate::lang::duration::HumanDuration, String> {
    crate::lang::duration::HumanDuration::parse(text)
}

/// Status formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum StatusFormat {
    /// One line per run (a run's report in markdown when RUN_ID is given).
    Human,
    /// JSON.
    Json,
}

/// Report formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    /// Markdown, with the time line as a Mermaid gantt.
    Markdown,
    /// JSON.
    Json,
    /// One self-contained HTML page with an SVG time line.
    Html,
}

/// `--var` and `--vars-file`.
#[derive(Debug, Clone, clap::Args)]
pub struct ValueArgs {
    /// Set an input or override a var: `--var backup=latest`.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// A YAML or TOML map of inputs and vars (drill targets, test servers).
    #[arg(long, value_name = "FILE")]
    pub vars_file: Option<PathBuf>,
}

/// Lint output formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LintFormat {
    /// Rendered diagnostics.
    Human,
    /// A JSON document.
    Json,
    /// SARIF 2.1.0.
    Sarif,
    /// GitHub workflow annotations.
    Github,
}

/// What `--deny` makes fail.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DenyLevel {
    /// Warnings fail like errors.
    Warnings,
}

/// Dry-run output formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DryRunFormat {
    /// Plain text.
    Human,
    /// Markdown for PR comments.
    Markdown,
    /// JSON.
    Json,
}

/// Graph output formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum GraphFormat {
    /// Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

/// Step catalog formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum StepsFormat {
    /// Plain text.
    Human,
    /// Markdown (the docs pages).
    Markdown,
    /// JSON.
    Json,
}

/// Summary line: "2 errors, 1 warning".
#[must_use]
pub fn summary(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|diagnostic| diagnostic.severity == Severity::Error).count();
    let warnings = diagnostics.len() - errors;
    let plural =
        |count: usize, word: &str| if count == 1 { format!("1 {word}") } else { format!("{count} {word}s") };
    format!("{}, {}", plural(errors, "error"), plural(warnings, "warning"))
}

/// `dr-plan validate`.
#[must_use]
pub fn validate(plans: &[PathBuf]) -> i32 {
    let mut failed = false;
    for path in plans {
        match crate::kinds::load_plan(path) {
            Ok(plan) => crate::outln!(
                "ok: {} ({})",
                path.display(),
                crate::lang::diagnostic::counted(plan.steps.len(), "step", "steps")
            ),
            Err(problems) => {
                failed = true;
                crate::sys::output::print_diagnostics(&problems);
                crate::errln!("{}: {}", path.display(), summary(&problems));
            }
        }
    }
    if failed { exit_code::INVALID } else { exit_code::SUCCESS }
}

/// Plan files under `paths` (files as given, directories searched), sorted.
///
/// # Errors
/// A path that does not exist.
pub fn plan_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            collect_plan_files(path, &mut files).map_err(|error| format!("{}: {error}", path.display()))?;
        } else if path.exists() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn collect_plan_files(directory: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(directory)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_plan_files(&path, files)?;
        } else if crate::lang::source::syntax_of(&path.to_string_lossy()).is_some() {
            files.push(path);
        }
    }
    Ok(())
}

/// `--state-dir`: a directory, or `s3://BUCKET/PREFIX`.
fn parse_state_dir(text: &str) -> Result<StateDir, String> {
    StateDir::parse(text)
}
