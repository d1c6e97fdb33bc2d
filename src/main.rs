//! The `dr-plan` binary: parses the command line and hands each command to the library.

use std::io::IsTerminal;

use clap::Parser;
use dr_plan::cli::catalog;
use dr_plan::cli::{self, Cli, Command, DryRunFormat, GraphFormat, StepsFormat};
use dr_plan::sys::exit_code;

fn main() {
    // The hidden helper that every run starts to kill its steps' programs if it dies.
    if let Some(dr_plan_pid) = dr_plan::sys::orphan_watchdog::requested(std::env::args_os()) {
        std::process::exit(dr_plan::sys::orphan_watchdog::serve(dr_plan_pid));
    }
    // The hidden helper through which the completion scripts ask for run and step ids.
    if let Some(request) = dr_plan::cli::completions::requested(std::env::args_os()) {
        std::process::exit(dr_plan::cli::completions::serve(&request));
    }
    // One TLS crypto provider for every HTTP client in the process (see DEPENDENCIES.md).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Validate { plans } => cli::validate(&plans),
        Command::Lint { paths, format, deny } => dr_plan::cli::lint::run(&paths, format, deny.is_some()),
        Command::DryRun { plan, values, format, drill, preflight, state_dir } => {
            dry_run(&plan, &values, format, drill, preflight, &state_dir)
        }
        Command::Graph { plan, format } => match dr_plan::kinds::load_plan(&plan) {
            Ok(plan) => {
                let graph = match format {
                    GraphFormat::Mermaid => dr_plan::preview::graph::mermaid(&plan),
                    GraphFormat::Dot => dr_plan::preview::graph::dot(&plan),
                };
                // Plan text (descriptions, `when` templates) never reaches a terminal raw.
                dr_plan::out!("{}", dr_plan::lang::diagnostic::escape_controls(&graph));
                exit_code::SUCCESS
            }
            Err(problems) => {
                dr_plan::sys::output::print_diagnostics(&problems);
                exit_code::INVALID
            }
        },
        Command::Steps { kind, format } => steps(kind.as_deref(), format),
        Command::Run { plan, values, run } => start(&plan, &values, &run, false),
        Command::Drill { plan, values, run } => start(&plan, &values, &run, true),
        Command::Resume { run_id, rerun_interrupted, rerun, mark_done, reason, vars, vars_file, run } => {
            match dr_plan::lang::render::Overrides::parse(&vars, vars_file.as_deref()) {
                Ok(overrides) => {
                    let arguments = dr_plan::engine::ResumeArguments {
                        rerun_interrupted,
                        rerun,
                        mark_done,
                        reason,
                        overrides,
                    };
                    cli::exit::of_run(dr_plan::engine::resume(&run_id, &arguments, &run.options()))
                }
                Err(problem) => {
                    dr_plan::errln!("error: {problem}");
                    exit_code::INVALID
                }
            }
        }
        Command::Status { run_id, format, state_dir } => {
            dr_plan::cli::commands::status(run_id.as_deref(), format, &state_dir)
        }
        Command::Report { run_id, format, out, metrics_file, state_dir } => dr_plan::cli::commands::report(
            &run_id,
            format,
            out.as_deref(),
            metrics_file.as_deref(),
            &state_dir,
        ),
        Command::Completions { shell } => dr_plan::cli::completions::print_script(shell),
        Command::Man { out } => dr_plan::cli::completions::man(out.as_deref()),
        Command::Schema => {
            dr_plan::outln!(
                "{}",
                serde_json::to_string_pretty(&dr_plan::cli::schema::plan_schema()).unwrap_or_default()
            );
            exit_code::SUCCESS
        }
    };
    std::process::exit(code);
}

fn start(path: &std::path::Path, values: &cli::ValueArgs, run: &cli::RunArgs, drill: bool) -> i32 {
    match dr_plan::lang::render::Overrides::parse(&values.vars, values.vars_file.as_deref()) {
        Ok(overrides) => cli::exit::of_run(dr_plan::engine::start(path, &overrides, drill, &run.options())),
        Err(problem) => {
            dr_plan::errln!("error: {problem}");
            exit_code::INVALID
        }
    }
}

fn dry_run(
    path: &std::path::Path,
    values: &cli::ValueArgs,
    format: DryRunFormat,
    drill: bool,
    preflight: bool,
    state_dir: &std::path::Path,
) -> i32 {
    let plan = match dr_plan::kinds::load_plan(path) {
        Ok(plan) => plan,
        Err(problems) => {
            dr_plan::sys::output::print_diagnostics(&problems);
            return exit_code::INVALID;
        }
    };
    let overrides = match dr_plan::lang::render::Overrides::parse(&values.vars, values.vars_file.as_deref()) {
        Ok(overrides) => overrides,
        Err(problem) => {
            dr_plan::errln!("error: {problem}");
            return exit_code::INVALID;
        }
    };
    let (inputs, vars) = match dr_plan::lang::render::resolve_values(&plan, &overrides) {
        Ok(values) => values,
        Err(problems) => {
            for problem in problems {
                dr_plan::errln!("error: {problem}");
            }
            return exit_code::INVALID;
        }
    };
    let history = dr_plan::preview::history::History::load(state_dir, plan.name());
    let mut preview = dr_plan::preview::dry_run::DryRun::new(&plan, vars, inputs, drill, &history);
    if preflight {
        preview.run_preflight(&plan);
    }
    match format {
        DryRunFormat::Human => dr_plan::out!("{}", preview.human()),
        DryRunFormat::Markdown => {
            dr_plan::out!("{}", preview.markdown(&dr_plan::preview::graph::mermaid(&plan)))
        }
        DryRunFormat::Json => {
            dr_plan::outln!("{}", serde_json::to_string_pretty(&preview.json()).unwrap_or_default())
        }
    }
    if preview.preflight_failed() {
        dr_plan::errln!("preflight: a live check failed (see above); fix it before running the plan");
        return exit_code::FAILED;
    }
    exit_code::SUCCESS
}

fn steps(kind: Option<&str>, format: StepsFormat) -> i32 {
    let kinds: Vec<dr_plan::kinds::StepKind> = match kind {
        None => dr_plan::kinds::CATALOG.to_vec(),
        Some(name) => match dr_plan::kinds::find(name) {
            Some(kind) => vec![kind],
            None => {
                let names = dr_plan::kinds::CATALOG.iter().map(|kind| kind.name());
                dr_plan::errln!(
                    "error: unknown step kind `{name}`; {}",
                    dr_plan::lang::diagnostic::suggestion(name, names)
                );
                return exit_code::INVALID;
            }
        },
    };
    let _ = std::io::stdout().is_terminal();
    match (format, kind) {
        (StepsFormat::Json, _) => {
            dr_plan::outln!("{}", serde_json::to_string_pretty(&catalog::json(&kinds)).unwrap_or_default())
        }
        (StepsFormat::Human, None) => dr_plan::out!("{}", catalog::overview()),
        (StepsFormat::Human, Some(_)) => dr_plan::out!("{}", catalog::human(kinds[0])),
        (StepsFormat::Markdown, _) => {
            let pages: Vec<String> = kinds.iter().map(|kind| catalog::markdown(*kind)).collect();
            dr_plan::out!("{}", pages.join("\n"));
        }
    }
    exit_code::SUCCESS
}
