//! `pg.query`: run SQL and assert on the results.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, Params, StepOutputs, step_outputs};

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

step_outputs! {
    /// Outputs of `pg.query`.
    pub struct PgQueryOutputs {
        /// the value each assertion's query returned, in order
        pub results: Vec<Option<String>>,
    }
}

/// What `pg.query` declares.
pub const INFO: KindInfo = KindInfo {
    name: "pg.query",
    argv_parameters: &[],
    summary: "Run SQL and assert on the results (row counts, values).",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: PgQueryOutputs::DECLARED,
    preflight: "the database is reachable",
    notes: "The `sql` statements run first, in one transaction; then each assertion's query, whose result \
            must be a single value. `expect` is `= N`, `!= N`, `> N`, `>= N`, `< N` or `<= N` (compared as \
            numbers; integers exactly), or a text the value must equal once trimmed (`= text` and `!= text` \
            too); NULL reads as `NULL`. Every assertion is checked, and the failed ones are named with their \
            query, the expected and the actual value: `select count(*) from users returned 0, expected > 0 \
            (database tododb)`. The SQL reaches psql on its standard input, never argv.",
    example: "- id: check\n  kind: pg.query\n  with: { database: tododb, assert: [ { sql: \"select count(*) from users\", expect: \"> 0\" } ] }\n",
    verifies: super::Verifies::Always,
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<PgQueryOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `pg.query` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(preflight(&super::parameters(with)?).await) }),
    undo: None,
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

/// How an assertion compares the value its query returned.
#[derive(Clone, Debug, PartialEq)]
enum Expectation {
    /// `= N`, `> N`, …: both sides are numbers.
    Numeric { operator: Operator, expected: Number },
    /// Any other text: the value, trimmed, must be equal (`!= text`: must differ).
    Text { equal: bool, expected: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    Equal,
    NotEqual,
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

/// A number as written: an integer is compared exactly (counts beyond 2^53 stay
/// exact), anything else as a float.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Number {
    Integer(i128),
    Float(f64),
}

impl Number {
    fn parse(text: &str) -> Option<Number> {
        let text = text.trim();
        if let Ok(integer) = text.parse::<i128>() {
            return Some(Number::Integer(integer));
        }
        text.parse::<f64>().ok().filter(|value| value.is_finite()).map(Number::Float)
    }

    fn compare(self, other: Number) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Number::Integer(left), Number::Integer(right)) => Some(left.cmp(&right)),
            #[expect(
                clippy::cast_precision_loss,
                reason = "a float on one side makes the comparison a float one"
            )]
            (Number::Integer(left), Number::Float(right)) => (left as f64).partial_cmp(&right),
            #[expect(
                clippy::cast_precision_loss,
                reason = "a float on one side makes the comparison a float one"
            )]
            (Number::Float(left), Number::Integer(right)) => left.partial_cmp(&(right as f64)),
            (Number::Float(left), Number::Float(right)) => left.partial_cmp(&right),
        }
    }
}

impl Expectation {
    /// Reads `expect`.
    fn parse(text: &str) -> Result<Expectation, String> {
        let trimmed = text.trim();
        // Longest operators first, so `>=` is not read as `>` followed by `= N`.
        let operators = [
            (">=", Operator::GreaterOrEqual),
            ("<=", Operator::LessOrEqual),
            ("!=", Operator::NotEqual),
            ("<>", Operator::NotEqual),
            ("==", Operator::Equal),
            (">", Operator::Greater),
            ("<", Operator::Less),
            ("=", Operator::Equal),
        ];
        for (symbol, operator) in operators {
            let Some(rest) = trimmed.strip_prefix(symbol) else { continue };
            let rest = rest.trim();
            if let Some(expected) = Number::parse(rest) {
                return Ok(Expectation::Numeric { operator, expected });
            }
            return match operator {
                Operator::Equal => Ok(Expectation::Text { equal: true, expected: rest.to_owned() }),
                Operator::NotEqual => Ok(Expectation::Text { equal: false, expected: rest.to_owned() }),
                Operator::Greater | Operator::GreaterOrEqual | Operator::Less | Operator::LessOrEqual => {
                    Err(format!(
                        "`expect: \"{trimmed}\"` compares with `{rest}`, which is not a number; write `{symbol} N` with \
                     a number, or the exact value expected"
                    ))
                }
            };
        }
        Ok(Expectation::Text { equal: true, expected: trimmed.to_owned() })
    }

    /// Whether `actual` (as psql printed it) meets the expectation; `Err` when a
    /// number was expected and `actual` is not one.
    fn accepts(&self, actual: &str) -> Result<bool, String> {
        let actual = actual.trim();
        match self {
            Expectation::Text { equal, expected } => Ok((actual == expected) == *equal),
            Expectation::Numeric { operator, expected } => {
                let Some(value) = Number::parse(actual) else {
                    return Err("which is not a number".to_owned());
                };
                let Some(ordering) = value.compare(*expected) else {
                    return Err("which cannot be compared".to_owned());
                };
                Ok(match operator {
                    Operator::Equal => ordering.is_eq(),
                    Operator::NotEqual => ordering.is_ne(),
                    Operator::Greater => ordering.is_gt(),
                    Operator::GreaterOrEqual => ordering.is_ge(),
                    Operator::Less => ordering.is_lt(),
                    Operator::LessOrEqual => ordering.is_le(),
                })
            }
        }
    }
}

/// Checks that the database answers (`dry-run --preflight`).
pub async fn preflight(parameters: &Parameters) -> super::Preflight {
    crate::clients::postgres::preflight(parameters.connection.as_deref(), &parameters.database).await.into()
}

/// Runs the `sql` statements (in one transaction), then every assertion.
///
/// # Errors
/// A malformed `expect` (before anything runs), an unreachable database, a statement
/// or query that fails, or assertions that do not hold: each failed one named with its
/// query, the expected and the actual value.
pub async fn run(
    parameters: Parameters,
    context: &super::StepContext,
) -> Result<PgQueryOutputs, super::StepError> {
    use crate::clients::postgres::{Connection, Runner};
    let failed = super::StepError::Failed;
    let expectations = parameters
        .assert
        .iter()
        .map(|assertion| Expectation::parse(&assertion.expect))
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    let connection = Connection::parse(parameters.connection.as_deref()).map_err(failed)?;
    let runner = Runner::new(&connection, &context.redactor, &context.step_id, &context.run_dir);
    let where_ = connection.describe(&parameters.database);
    runner.check_reachable(&parameters.database).await.map_err(failed)?;

    run_statements(&runner, &parameters, &where_, context).await?;
    let results = check_assertions(&runner, &parameters, &expectations, &where_, context).await?;
    Ok(PgQueryOutputs { results })
}

/// Runs the `sql` statements, if any, in one transaction.
async fn run_statements(
    runner: &crate::clients::postgres::Runner<'_>,
    parameters: &Parameters,
    where_: &str,
    context: &super::StepContext,
) -> Result<(), super::StepError> {
    use crate::clients::postgres::{PsqlError, PsqlOptions};
    let failed = super::StepError::Failed;
    if !parameters.sql.is_empty() {
        context.progress.note(format!("running {} statement(s)", parameters.sql.len()));
        let script = statements_script(&parameters.sql);
        runner
            .psql(&parameters.database, &script, PsqlOptions { single_transaction: true, ..PsqlOptions::default() })
            .await
            .map_err(|error| match error {
                PsqlError::Start(error) => error.into(),
                PsqlError::Failed { stderr, .. } => failed(runner.redact(&format!(
                    "the `sql` statements failed in {where_} and were rolled back (they run in one transaction): \
                     {stderr}"
                ))),
            })?;
    }
    Ok(())
}

/// Runs every assertion's query and returns their values (`None` where a query did not
/// return one value), or every assertion that does not hold, in one error.
async fn check_assertions(
    runner: &crate::clients::postgres::Runner<'_>,
    parameters: &Parameters,
    expectations: &[Expectation],
    where_: &str,
    context: &super::StepContext,
) -> Result<Vec<Option<String>>, super::StepError> {
    use crate::clients::postgres::{PsqlError, PsqlOptions};
    let failed = super::StepError::Failed;
    let database = &parameters.database;
    let mut results = Vec::with_capacity(parameters.assert.len());
    let mut failures = Vec::new();
    for (assertion, expectation) in parameters.assert.iter().zip(expectations) {
        let query = assertion.sql.trim().trim_end_matches(';').trim();
        context.progress.note(format!("checking `{query}`"));
        let rows =
            runner.psql(database, &assertion.sql, PsqlOptions::default()).await.map_err(
                |error| match error {
                    PsqlError::Start(error) => error.into(),
                    PsqlError::Failed { stderr, .. } => {
                        failed(runner.redact(&format!("`{query}` failed in {where_}: {stderr}")))
                    }
                },
            )?;
        let (result, failure) = judge(query, assertion, expectation, &rows, database);
        failures.extend(failure);
        results.push(result);
    }
    if !failures.is_empty() {
        return Err(failed(runner.redact(&failures.join("; "))));
    }
    Ok(results)
}

/// What one assertion's rows say: the value, if they are one, and why the assertion
/// does not hold, if it does not.
fn judge(
    query: &str,
    assertion: &Assertion,
    expectation: &Expectation,
    rows: &crate::clients::postgres::Rows,
    database: &str,
) -> (Option<String>, Option<String>) {
    let Some(value) = rows.single() else {
        let shape = match rows.0.as_slice() {
            [] => "no rows".to_owned(),
            [row] => format!("one row of {} columns", row.len()),
            more => format!("{} rows", more.len()),
        };
        let failure = format!(
            "{query} returned {shape}, expected one value {} (database {database}); make the query return \
             a single value, e.g. with count(*) or limit 1",
            assertion.expect.trim()
        );
        return (None, Some(failure));
    };
    let failure = match expectation.accepts(&value) {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "{query} returned {}, expected {} (database {database})",
            value.trim(),
            assertion.expect.trim()
        )),
        Err(why) => Some(format!(
            "{query} returned {}, {why}, expected {} (database {database})",
            value.trim(),
            assertion.expect.trim()
        )),
    };
    (Some(value.trim().to_owned()), failure)
}

/// The statements as one psql script: each ends on its own line with `;`, so a
/// statement that ends in a `--` comment or without a semicolon is still complete.
fn statements_script(statements: &[String]) -> String {
    statements.iter().map(|statement| format!("{}\n;\n", statement.trim_end())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numeric_and_text_expectations() {
        let accepts = |expect: &str, actual: &str| Expectation::parse(expect).unwrap().accepts(actual);
        assert_eq!(accepts("> 0", "3"), Ok(true));
        assert_eq!(accepts("> 0", "0"), Ok(false));
        assert_eq!(accepts(">=100", "100"), Ok(true));
        assert_eq!(accepts("= 42", " 42 "), Ok(true));
        assert_eq!(accepts("!= 0", "0"), Ok(false));
        assert_eq!(accepts("< 1.5", "1.25"), Ok(true));
        assert_eq!(accepts("<= 9007199254740993", "9007199254740993"), Ok(true));
        assert_eq!(accepts("< 9007199254740993", "9007199254740993"), Ok(false));
        assert_eq!(accepts("> 0", "NULL"), Err("which is not a number".to_owned()));
        assert_eq!(accepts("active", "active"), Ok(true));
        assert_eq!(accepts("= active", "active"), Ok(true));
        assert_eq!(accepts("!= active", "active"), Ok(false));
        assert_eq!(accepts("t", "f"), Ok(false));
        assert!(Expectation::parse("> many").unwrap_err().contains("not a number"));
    }

    #[test]
    fn ends_every_statement() {
        assert_eq!(
            statements_script(&["select 1 -- one".to_owned(), "select 2;".to_owned()]),
            "select 1 -- one\n;\nselect 2;\n;\n"
        );
    }
}
