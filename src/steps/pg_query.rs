//! `pg.query`: run SQL and assert on the results.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, OutputInfo, Params};

/// Parameters of `pg.query`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The database.
    pub database: String,
    /// Queries whose single value must match: `expect` is `= N`, `> N`, `>= N`,
    /// `< N`, `<= N`, `!= N`, or a value that must be equal.
    #[serde(default)]
    pub assert: Vec<Assertion>,
    /// Statements to run before the assertions (results ignored).
    #[serde(default)]
    pub sql: Vec<String>,
    /// A libpq URL or keyword string (default: the `PG*` environment).
    pub connection: Option<String>,
}

/// One query and what its value must be.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Assertion {
    /// A query returning one value.
    pub sql: String,
    /// `> 0`, `= 42`, `>= 100`, or an exact value.
    pub expect: String,
}

/// What `pg.query` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "Run SQL and assert on the results (row counts, values).",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: &[OutputInfo {
        name: "results",
        description: "the value each assertion's query returned, in order",
    }],
    preflight: "the database is reachable",
    notes: "A failed assertion names the query, the expected and the actual value.",
    example: "- id: check\n  kind: pg.query\n  with: { database: tododb, assert: [ { sql: \"select count(*) from users\", expect: \"> 0\" } ] }\n",
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let checks: Vec<String> = with
        .list("assert")
        .into_iter()
        .map(|assertion| {
            format!(
                "`{}` {}",
                assertion.get("sql").map(super::display).unwrap_or_default(),
                assertion.get("expect").map(super::display).unwrap_or_default()
            )
        })
        .collect();
    let mut sentence = format!("in database {}", with.text("database"));
    let statements = with.list("sql");
    if !statements.is_empty() {
        sentence.push_str(&format!(", run {} statement(s)", statements.len()));
    }
    if checks.is_empty() { sentence } else { format!("{sentence}, check {}", checks.join("; ")) }
}
