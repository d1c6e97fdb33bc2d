//! `exec`: run a program with arguments and environment.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, Params, StepOutputs, step_outputs};

/// Parameters of `exec`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The program and its arguments (argv). No shell is involved unless you call one,
    /// e.g. `[sh, -c, "..."]`.
    pub command: Vec<String>,
    /// Extra environment variables for the program.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (default: the current directory).
    pub cwd: Option<String>,
    /// Exit codes that count as success.
    #[serde(default = "success_codes")]
    pub expect_exit: Vec<i32>,
    /// The command run as this step's compensation when the run is aborted and the
    /// step has `undo: true`.
    pub undo: Option<Vec<String>>,
    /// Declare that the command changes or removes data (lint and dry-run mark it).
    #[serde(default)]
    pub destructive: bool,
}

fn success_codes() -> Vec<i32> {
    vec![0]
}

step_outputs! {
    /// Outputs of `exec`.
    pub struct ExecOutputs {
        /// standard output, trimmed, capped at 64 KiB
        pub stdout: String,
        /// the exit code
        pub exit_code: i32,
    }
}

/// What `exec` declares.
pub const INFO: KindInfo = KindInfo {
    name: "exec",
    argv_parameters: &["command", "undo"],
    summary: "Run a program with arguments and environment (helm rollback, wal-g, kubectl, aws).",
    destructive: false,
    idempotent: false,
    undo: Some("runs the `undo` command given in the parameters"),
    outputs: ExecOutputs::DECLARED,
    preflight: "the program exists (on PATH or as a path)",
    notes: "Standard error is kept in the run directory. A command that may change data should \
            say `destructive: true` so that dry-runs mark it and lint checks what feeds it. At the step's \
            `timeout`, or when the run is interrupted, the program and everything it started (a shell's \
            pipeline and background jobs, found by the `DR_PLAN_PROCESS_TOKEN` variable they inherit) are \
            killed; what it leaves running after exiting by itself is left alone.",
    example: "- id: rollback\n  kind: exec\n  with:\n    command: [helm, rollback, todo-chatbot, \"{{inputs.release}}\"]\n",
    destructive_parameter: Some("destructive"),
    undo_parameter: Some("undo"),
    non_empty: &[("command", "give the program and its arguments, e.g. [helm, rollback, api]")],
    describe_undo: Some(describe_undo),
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<ExecOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `exec` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(preflight(&super::parameters(with)?)) }),
    undo: Some(|with, outputs, context| Box::pin(async move { undo(super::parameters(with)?, outputs, context).await })),
};

/// What `undo: true` runs, in the dry-run's words.
fn describe_undo(with: &Params<'_>) -> String {
    if with.has("undo") {
        format!("run `{}`", with.text("undo"))
    } else {
        "nothing: `with.undo` is not set".to_owned()
    }
}

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let command: Vec<String> =
        with.list("command").into_iter().map(|argument| shell_quote(&super::display(argument))).collect();
    let mut sentence = format!("run `{}`", command.join(" "));
    if with.has("cwd") {
        sentence.push_str(&format!(" in {}", with.text("cwd")));
    }
    sentence
}

/// An argument as a shell would need it written, so the reader sees where each one ends.
fn shell_quote(argument: &str) -> String {
    let plain = !argument.is_empty()
        && argument
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "-_./:=@%+,<>{}".contains(character));
    if plain { argument.to_owned() } else { format!("'{}'", argument.replace('\'', "'\\''")) }
}

/// Checks that the program can be found.
#[must_use]
pub fn preflight(parameters: &Parameters) -> super::Preflight {
    let Some(program) = parameters.command.first() else {
        return super::Preflight::Failed("`command` is empty".to_owned());
    };
    let found = if program.contains('/') {
        std::path::Path::new(program).is_file()
    } else {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|directory| directory.join(program).is_file())
        })
    };
    if found {
        super::Preflight::Passed(format!("`{program}` found"))
    } else {
        super::Preflight::Failed(format!("`{program}` is not on PATH; install it or give its full path"))
    }
}

/// Largest stdout kept as an output.
const STDOUT_LIMIT: usize = 64 * 1024;

/// Runs the command.
///
/// # Errors
/// The program could not start, or exited with a code not in `expect_exit`.
pub async fn run(
    parameters: Parameters,
    context: &super::StepContext,
) -> Result<ExecOutputs, super::StepError> {
    let output = spawn(&parameters.command, &parameters, context, "").await?;
    let code = output.status.code();
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The output stays raw (a later step of this run may need the secret it holds; the
    // journal gets it redacted), so the cap must not cut a secret in two: the redactor
    // picks the cut. Trimming is safe, the redactor also looks for trimmed secrets.
    let stdout = truncate(stdout.trim_end(), STDOUT_LIMIT, &context.redactor);
    let accepted = code.is_some_and(|code| parameters.expect_exit.contains(&code));
    if !accepted {
        // Redacted before its lines are split and joined: a multi-line secret joined
        // with ` / ` would no longer match.
        let stderr = context.redactor.redact(&String::from_utf8_lossy(&output.stderr));
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
        let how =
            code.map_or_else(|| "was killed by a signal".to_owned(), |code| format!("exited with {code}"));
        return Err(super::StepError::Failed(format!(
            "`{}` {how} (expected {:?}){}",
            parameters.command.join(" "),
            parameters.expect_exit,
            if tail.is_empty() { String::new() } else { format!("; stderr: {}", tail.join(" / ")) }
        )));
    }
    Ok(ExecOutputs { stdout, exit_code: code.unwrap_or_default() })
}

/// Runs the `undo` command.
///
/// # Errors
/// It could not start or did not exit with 0.
pub async fn undo(
    parameters: Parameters,
    _outputs: &super::Outputs,
    context: &super::StepContext,
) -> Result<(), super::StepError> {
    let Some(command) = &parameters.undo else { return Ok(()) };
    let output = spawn(command, &parameters, context, ".undo").await?;
    if output.status.success() {
        Ok(())
    } else {
        Err(super::StepError::Failed(format!(
            "undo command `{}` {}; compensate by hand",
            command.join(" "),
            output
                .status
                .code()
                .map_or_else(|| "was killed by a signal".to_owned(), |code| format!("exited with {code}"))
        )))
    }
}

async fn spawn(
    command: &[String],
    parameters: &Parameters,
    context: &super::StepContext,
    suffix: &str,
) -> Result<std::process::Output, super::StepError> {
    let Some((program, arguments)) = command.split_first() else {
        return Err(super::StepError::Failed("`command` is empty".to_owned()));
    };
    let mut process = tokio::process::Command::new(program);
    process
        .args(arguments)
        .envs(&parameters.env)
        .env("DR_PLAN_RUN_ID", &context.run_id)
        .env("DR_PLAN_STEP", &context.step_id)
        .env("DR_PLAN_RUN_DIR", &context.run_dir)
        .env("DR_PLAN_DRILL", context.drill.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // A cancelled or timed-out step must not leave its program running, nor what it
        // started (`sh -c "a | b"`): `spawn`'s guard kills the whole tree.
        .kill_on_drop(true);
    if let Some(directory) = &parameters.cwd {
        // A missing working directory makes the spawn fail with ENOENT, which would
        // otherwise read as a missing program.
        if !std::path::Path::new(directory).is_dir() {
            return Err(super::StepError::Failed(format!(
                "working directory `{directory}` does not exist (or is not a directory); cannot run `{program}`"
            )));
        }
        process.current_dir(directory);
    }
    let cannot_start = |error: std::io::Error| {
        super::StepError::Failed(format!(
            "cannot start `{program}`: {error}; check it is installed and on PATH"
        ))
    };
    let (child, tree) = crate::sys::process_tree::spawn(&mut process).map_err(cannot_start)?;
    let output = child.wait_with_output().await.map_err(|error| {
        super::StepError::Failed(format!("cannot read the output of `{program}`: {error}"))
    })?;
    tree.finished();
    let log = context.run_dir.join(format!("{}{suffix}.stderr.log", context.step_id));
    let _ = crate::sys::files::write_private(
        &log,
        context.redactor.redact(&String::from_utf8_lossy(&output.stderr)).as_bytes(),
    );
    Ok(output)
}

/// At most `limit` bytes of `text`, cut where no secret is split.
fn truncate(text: &str, limit: usize, redactor: &crate::lang::secret::Redactor) -> String {
    let end = redactor.cut_point(text, limit);
    if end == text.len() { text.to_owned() } else { format!("{}… [truncated]", &text[..end]) }
}
