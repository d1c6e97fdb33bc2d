//! `pg.restore`: `pg_restore` (custom/directory, parallel) or `psql` (plain SQL).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, OutputInfo, Params};

/// Parameters of `pg.restore`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The dump file or directory, usually `{{steps.fetch.outputs.path}}`.
    pub dump: String,
    /// The target database.
    pub database: String,
    /// `auto` reads the file's header (`PGDMP` = custom, a directory = directory, else plain SQL).
    #[serde(default)]
    pub format: RestoreFormat,
    /// Drop objects before recreating them (`pg_restore --clean --if-exists`).
    #[serde(default)]
    pub clean: bool,
    /// Create the database first (`pg_restore --create`).
    #[serde(default)]
    pub create: bool,
    /// Restore only these tables.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Parallel jobs (`pg_restore -j`; custom and directory formats).
    #[serde(default = "default_jobs")]
    pub jobs: u32,
    /// Terminate other sessions on the target database first.
    #[serde(default = "super::shared::default_true")]
    pub terminate_connections: bool,
    /// A libpq URL or keyword string (default: the `PG*` environment).
    pub connection: Option<String>,
}

/// The dump's format.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RestoreFormat {
    /// Read the file header.
    #[default]
    Auto,
    /// `pg_dump -Fc`.
    Custom,
    /// `pg_dump -Fd`.
    Directory,
    /// SQL text, through `psql -v ON_ERROR_STOP=1`.
    Plain,
}

fn default_jobs() -> u32 {
    1
}

/// What `pg.restore` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "Restore a dump with pg_restore -j N (custom/directory) or psql (plain SQL).",
    destructive: true,
    idempotent: false,
    undo: None,
    outputs: &[
        OutputInfo { name: "database", description: "the database restored" },
        OutputInfo { name: "format", description: "the format detected" },
    ],
    preflight: "the database server is reachable",
    notes: "Never starts before its dump is verified: lint requires a checksum on the `s3.fetch` \
            that produced it, and a safety `pg.dump` upstream when `clean: true`.",
    example: "- id: restore\n  kind: pg.restore\n  needs: [fetch, safety-backup]\n  with: { dump: \"{{steps.fetch.outputs.path}}\", database: tododb, clean: true, jobs: 4 }\n",
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let mut sentence = format!("restore {} into database {}", with.text("dump"), with.text("database"));
    let mut options = Vec::new();
    if with.flag("clean", false) {
        options.push("dropping existing objects first".to_owned());
    }
    if with.flag("create", false) {
        options.push("creating the database".to_owned());
    }
    let tables = with.list("tables");
    if !tables.is_empty() {
        let names: Vec<String> = tables.into_iter().map(super::display).collect();
        options.push(format!("tables {}", names.join(", ")));
    }
    let jobs = with.text_or("jobs", "1");
    if jobs != "1" {
        options.push(format!("{jobs} parallel jobs"));
    }
    if !options.is_empty() {
        sentence.push_str(&format!(" ({})", options.join(", ")));
    }
    sentence
}
