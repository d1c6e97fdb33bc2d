//! `pg.dump`: `pg_dump`, optionally compressed and encrypted in the same pass.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Encryption, KindInfo, OutputInfo, Params};

/// Parameters of `pg.dump`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The database to dump.
    pub database: String,
    /// `custom` (for `pg_restore`), `plain` SQL, or `directory`.
    #[serde(default)]
    pub format: DumpFormat,
    /// The file (or directory) to write (default: in the run directory, named after
    /// the database and the time).
    pub dest: Option<String>,
    /// Compress the output: `gzip`, `zstd` or `none`.
    #[serde(default)]
    pub compress: DumpCompression,
    /// Encrypt the output like `openssl enc -aes-256-cbc -pbkdf2`.
    pub encrypt: Option<Encryption>,
    /// A libpq URL or keyword string (default: the `PG*` environment).
    pub connection: Option<String>,
}

/// `pg_dump --format`.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    /// `-Fc`, restorable with `pg_restore -j`.
    #[default]
    Custom,
    /// SQL text, restorable with `psql`.
    Plain,
    /// `-Fd`, a directory.
    Directory,
}

/// Compression applied to the dump stream.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DumpCompression {
    /// Leave as `pg_dump` wrote it.
    #[default]
    None,
    /// gzip, like `| gzip -9`.
    Gzip,
    /// zstd.
    Zstd,
}

/// What `pg.dump` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "pg_dump a database (custom or plain), optionally gzip/zstd and encrypted in the same pass.",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: &[
        OutputInfo { name: "path", description: "the file written" },
        OutputInfo { name: "name", description: "the file name without directory" },
        OutputInfo { name: "bytes", description: "bytes written" },
        OutputInfo { name: "sha256", description: "SHA-256 of the file written" },
    ],
    preflight: "the database is reachable",
    notes: "Used as the safety backup before a destructive restore: lint expects one upstream of a \
            `pg.restore` with `clean: true`. The password reaches pg_dump through the environment, never argv.",
    example: "- id: safety-backup\n  kind: pg.dump\n  with: { database: tododb }\n",
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let mut sentence =
        format!("pg_dump database {} ({} format)", with.text("database"), with.text_or("format", "custom"));
    match with.text_or("compress", "none").as_str() {
        "none" => {}
        other => sentence.push_str(&format!(", {other}")),
    }
    if with.has("encrypt") {
        sentence.push_str(", encrypted (openssl aes-256-cbc pbkdf2)");
    }
    sentence.push_str(&format!(" to {}", with.text_or("dest", "the run directory")));
    sentence
}
