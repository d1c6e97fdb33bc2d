//! `exec`: run a program with arguments and environment.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, OutputInfo, Params};

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

/// What `exec` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "Run a program with arguments and environment (helm rollback, wal-g, kubectl, aws).",
    destructive: false,
    idempotent: false,
    undo: Some("runs the `undo` command given in the parameters"),
    outputs: &[
        OutputInfo { name: "stdout", description: "standard output, trimmed, capped at 64 KiB" },
        OutputInfo { name: "exit_code", description: "the exit code" },
    ],
    preflight: "the program exists (on PATH or as a path)",
    notes: "Standard error is kept in the run directory. A command that may change data should \
            say `destructive: true` so that dry-runs mark it and lint checks what feeds it.",
    example: "- id: rollback\n  kind: exec\n  with:\n    command: [helm, rollback, todo-chatbot, \"{{inputs.release}}\"]\n",
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let mut sentence = format!("run `{}`", with.text("command"));
    if with.has("cwd") {
        sentence.push_str(&format!(" in {}", with.text("cwd")));
    }
    sentence
}
