//! The `dr-plan` binary: parses the command line and hands each command to the library.

use clap::Parser;
use dr_plan::cli::{self, Cli, Command};

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
        Command::Lint { paths, format, deny, state_dir } => {
            cli::lint::run(&paths, format, deny.is_some(), state_dir.map(|state| state.display()).as_deref())
        }
        Command::DryRun { plan, values, format, drill, preflight, state_dir } => {
            cli::dry_run::run(&plan, &values, format, drill, preflight, &state_dir)
        }
        Command::Graph { plan, format } => cli::steps::graph(&plan, format),
        Command::Steps { kind, format } => cli::steps::steps(kind.as_deref(), format),
        Command::Run { plan, values, run } => cli::run::start(&plan, &values, &run, false),
        Command::Drill { plan, values, run } => cli::run::start(&plan, &values, &run, true),
        Command::Resume { run_id, rerun_interrupted, rerun, mark_done, reason, vars, vars_file, run } => {
            let request =
                cli::run::Resume { run_id, rerun_interrupted, rerun, mark_done, reason, vars, vars_file };
            cli::run::resume(request, &run)
        }
        Command::Status { run_id, format, state_dir } => {
            cli::commands::status(run_id.as_deref(), format, &state_dir)
        }
        Command::Report { run_id, format, out, metrics_file, state_dir } => {
            cli::commands::report(&run_id, format, out.as_deref(), metrics_file.as_deref(), &state_dir)
        }
        Command::Verify { run_id, state_dir } => cli::verify::run(&run_id, &state_dir),
        Command::Completions { shell } => cli::completions::print_script(shell),
        Command::Man { out } => cli::completions::man(out.as_deref()),
        Command::Schema => cli::steps::schema(),
    };
    std::process::exit(code);
}
