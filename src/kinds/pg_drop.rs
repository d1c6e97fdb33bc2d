//! `pg.drop`: drop a database kept by a swap or restored beside the live one.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, Params, StepOutputs, step_outputs};

/// Parameters of `pg.drop`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The database to drop, usually `{{steps.swap.outputs.previous}}`: a name of the
    /// form `<database>__before_<run>` or `<database>__restore_<run>` unless `force`.
    pub database: String,
    /// Drop a database whose name is not that of such a copy.
    #[serde(default)]
    pub force: bool,
    /// A libpq URL or keyword string (default: the `PG*` environment). The drop runs
    /// from the `postgres` database; a database in the connection is not used.
    pub connection: Option<String>,
}

step_outputs! {
    /// Outputs of `pg.drop`.
    pub struct PgDropOutputs {
        /// whether a database was dropped (false: it did not exist)
        pub dropped: bool,
    }
}

/// What `pg.drop` declares.
pub const INFO: KindInfo = KindInfo {
    name: "pg.drop",
    argv_parameters: &[],
    summary: "Drop a kept `__before_` copy or a `__restore_` side database, terminating its sessions.",
    destructive: true,
    idempotent: true,
    undo: None,
    outputs: PgDropOutputs::DECLARED,
    preflight: "the database server is reachable",
    notes: "For the copies the swap workflow leaves: the live database kept as `<database>__before_<run>` by \
            `pg.swap`, or a side database `<database>__restore_<run>` made by `pg.restore` with `into: side`. \
            Any other name is refused before anything changes, since it may be a live database: set \
            `force: true` to drop it anyway. The `postgres` database is always refused.\n\n\
            The database's sessions are terminated and it is dropped (`DROP DATABASE ... WITH (FORCE)`, \
            PostgreSQL 13 or newer). A database that does not exist is success, with `dropped: false`: the \
            step can run again after a crash. Needs the owner of the database (or a superuser).",
    example: "- id: drop-previous\n  kind: pg.drop\n  needs: [swap]\n  with: { database: \"{{steps.swap.outputs.previous}}\" }\n",
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<PgDropOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `pg.drop` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(preflight(&super::parameters(with)?).await) }),
    undo: None,
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let force = if with.flag("force", false) { " (forced: any name)" } else { "" };
    format!("drop database {} if it exists, terminating its sessions{force}", with.text("database"))
}

/// Checks that the server answers (`dry-run --preflight`).
pub async fn preflight(parameters: &Parameters) -> super::Preflight {
    crate::clients::postgres::preflight(
        parameters.connection.as_deref(),
        crate::clients::postgres::MAINTENANCE_DATABASE,
    )
    .await
    .into()
}

/// Refuses a name that is not a copy's (unless `force`), before anything changes.
fn check_name(parameters: &Parameters) -> Result<(), String> {
    use crate::clients::postgres::{MAINTENANCE_DATABASE, is_copy_name};
    let database = &parameters.database;
    if database == MAINTENANCE_DATABASE {
        return Err(format!("refusing to drop `{database}`: it is the server's maintenance database"));
    }
    if parameters.force || is_copy_name(database) {
        return Ok(());
    }
    Err(format!(
        "refusing to drop database `{database}`: its name is not that of a copy (`<database>__before_<run>`, kept by a \
         swap, or `<database>__restore_<run>`, restored beside the live database), so it may be a live database; \
         nothing was changed. Set `force: true` to drop it anyway"
    ))
}

/// Drops the database when it exists.
///
/// # Errors
/// A name that is not a copy's without `force`, an unreachable server, a refused drop.
pub async fn run(parameters: Parameters, context: &super::StepContext) -> Result<PgDropOutputs, super::StepError> {
    use crate::clients::postgres::{Connection, MAINTENANCE_DATABASE, Runner};
    let failed = super::StepError::Failed;
    check_name(&parameters).map_err(failed)?;
    let connection = Connection::parse(parameters.connection.as_deref()).map_err(failed)?;
    let runner = Runner::new(&connection, &context.redactor, &context.step_id, &context.run_dir);
    runner.check_reachable(MAINTENANCE_DATABASE).await.map_err(failed)?;
    let dropped = runner.drop_database(&parameters.database).await.map_err(failed)?;
    context.progress.note(if dropped {
        format!("dropped database `{}`", parameters.database)
    } else {
        format!("database `{}` does not exist: nothing to drop", parameters.database)
    });
    Ok(PgDropOutputs { dropped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(database: &str, force: bool) -> Parameters {
        Parameters { database: database.to_owned(), force, connection: None }
    }

    #[test]
    fn drops_only_copies_unless_forced() {
        assert_eq!(check_name(&parameters("tododb__before_ab12", false)), Ok(()));
        assert_eq!(check_name(&parameters("tododb__restore_ab12", false)), Ok(()));
        assert!(check_name(&parameters("tododb", false)).unwrap_err().contains("force: true"));
        assert!(check_name(&parameters("__before_ab12", false)).is_err());
        assert!(check_name(&parameters("tododb__before_", false)).is_err());
        assert_eq!(check_name(&parameters("tododb", true)), Ok(()));
        assert!(check_name(&parameters("postgres", true)).is_err());
    }
}
