//! `pg.swap`: put a database restored beside the live one in its place, within seconds.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, Params, StepOutputs, step_outputs};
use crate::lang::duration::HumanDuration;

/// Parameters of `pg.swap`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The live database, whose name the replacement takes.
    pub database: String,
    /// The database put in its place, usually `{{steps.restore.outputs.database}}`.
    pub replacement: String,
    /// Keep the replaced database as `<database>__before_<run>` (the default); `false`
    /// drops it once the swap is done.
    #[serde(default = "super::shared::default_true")]
    pub keep_previous: bool,
    /// A libpq URL or keyword string (default: the `PG*` environment). The swap runs
    /// from the `postgres` database; a database in the connection is not used.
    pub connection: Option<String>,
    /// How long the whole swap may take from the moment connections are refused: the
    /// terminated sessions ending and the renames waiting for locks. Past it, nothing is
    /// renamed and connections are allowed again.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
}

fn default_deadline() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

step_outputs! {
    /// Outputs of `pg.swap`.
    pub struct PgSwapOutputs {
        /// the name the replaced database is kept under (`<database>__before_<run>`), or
        /// null when `keep_previous` is false and it was dropped
        pub previous: Option<String>,
        /// how long the two databases refused connections, in seconds (measured)
        pub unavailable_for: f64,
    }
}

/// What `pg.swap` declares.
pub const INFO: KindInfo = KindInfo {
    name: "pg.swap",
    argv_parameters: &[],
    summary: "Swap a database restored beside the live one in for it within seconds, keeping the old one; undo \
              swaps back.",
    destructive: true,
    idempotent: false,
    undo: Some("swaps back: the kept previous database takes the live name again, the replacement its own name"),
    outputs: PgSwapOutputs::DECLARED,
    preflight: "the server is reachable and the live database exists",
    notes: "Made for `pg.restore` with `into: side`: restore beside the live database, check the copy with \
            `pg.query`, then swap it in. The live database is unavailable only during the swap itself, \
            usually well under a second.\n\n\
            What it does, in order, connected to the `postgres` database: checks that `database` and \
            `replacement` exist and that `<database>__before_<run>` does not (`<run>`: the last part of the run \
            id, e.g. `ab12`); refuses new connections to both (`ALTER DATABASE ... ALLOW_CONNECTIONS false`); \
            terminates their sessions (`pg_terminate_backend`) and waits until they are gone; then, in one \
            transaction, renames `database` to `<database>__before_<run>` and `replacement` to `database` and \
            allows connections to both again. `unavailable_for` is the time from refusing connections to that \
            commit. With `keep_previous: false` the previous database is dropped afterwards.\n\n\
            If anything fails before the commit, nothing is renamed (the renames are one transaction), \
            connections are allowed again, and the error says so with both names: \"`app` is still the live \
            database (unchanged), `app__restore_ab12` is still the replacement\". If the drop of the previous \
            database fails, the swap is done and the error names where each database is.\n\n\
            Interrupted (Ctrl-C, SIGTERM, SIGHUP, the step's `timeout`, the run's deadline), the swap is not \
            dropped halfway: it ends its own waiting sessions, allows connections to both databases again \
            and says where each is; a plain `dr-plan resume` runs it again. After `kill -9`, where no clean-up \
            can run, `dr-plan status RUN` and `dr-plan resume` allow the connections the dead run left \
            refused before anything else (`repaired: …`). The same holds for the swap back of `undo`.\n\n\
            `undo: true` swaps back on abort: the kept `<database>__before_<run>` takes the name `database` again \
            and the database swapped in gets back the name it had (`replacement`). With `keep_previous: false` \
            there is nothing to swap back and the undo fails saying so. Drop the kept copy later with \
            `pg.drop`. Terminating sessions needs a superuser or a member of `pg_signal_backend`; renaming \
            needs the owner of both databases (or a superuser) and the CREATEDB privilege.",
    example: "- id: swap\n  kind: pg.swap\n  needs: [check-restored]\n  with: { database: tododb, replacement: \"{{steps.restore.outputs.database}}\" }\n  undo: true\n",
    unavailability_output: Some("unavailable_for"),
    role: super::Role::Swap {
        target: &["database", "connection"],
        replacement: "replacement",
        keep_flag: "keep_previous",
    },
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<PgSwapOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `pg.swap` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(preflight(&super::parameters(with)?).await) }),
    undo: Some(|with, outputs, context| {
        Box::pin(async move { undo(super::parameters(with)?, outputs, context).await })
    }),
};

/// `pg.swap` after its process died: see [`repair`].
pub const REPAIR: super::RepairFn = |with, context| {
    Box::pin(async move { repair(super::parameters(with).map_err(|error| error.to_string())?, context).await })
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let database = with.text("database");
    let previous = if with.flag("keep_previous", true) {
        format!("keep the previous one as {database}__before_<run>")
    } else {
        "drop the previous one".to_owned()
    };
    format!(
        "swap database {} in for database {database} (connections to both refused during the swap only), \
         {previous}",
        with.text("replacement")
    )
}

/// Checks that the server answers and the live database exists (`dry-run --preflight`).
pub async fn preflight(parameters: &Parameters) -> super::Preflight {
    crate::clients::postgres::preflight(parameters.connection.as_deref(), &parameters.database).await.into()
}

/// The three names of a swap.
struct Names<'a> {
    /// The live database, which `incoming` replaces.
    live: &'a str,
    /// The database that takes the live name.
    incoming: &'a str,
    /// The name the live database moves to.
    outgoing: &'a str,
}

impl Names<'_> {
    /// Where the databases are when the swap stopped before renaming anything.
    fn unchanged(&self, reenabled: Result<(), String>) -> String {
        let Names { live, incoming, .. } = self;
        let names = format!(
            "nothing was renamed: `{live}` is still the live database (unchanged), `{incoming}` is still the \
             replacement"
        );
        match reenabled {
            Ok(()) => format!("{names}; connections to both are allowed again"),
            Err(error) => format!(
                "{names}; connections could NOT be allowed again ({error}): run `ALTER DATABASE \"{live}\" \
                 ALLOW_CONNECTIONS true` and `ALTER DATABASE \"{incoming}\" ALLOW_CONNECTIONS true`"
            ),
        }
    }
}

/// What the step keeps in its memory while it refuses connections, written before the
/// first `ALLOW_CONNECTIONS false` and emptied once they are allowed again: after a
/// `kill -9` in between, `status` and `resume` find here which databases this run left
/// refusing every client, and allow them again ([`repair`]).
#[derive(Debug, Default, Deserialize, serde::Serialize)]
struct Refused {
    /// The databases refused; empty once allowed again.
    databases: Vec<String>,
    /// `the swap` or `the swap back`.
    during: String,
    /// The live name, the incoming database and the name the live one moves to.
    names: [String; 3],
    /// Since when (RFC 3339).
    since: String,
}

fn memory_name(context: &super::StepContext) -> String {
    format!("{}.pg-swap-connections.json", context.step_id)
}

fn remember(context: &super::StepContext, refused: &Refused) -> Result<(), String> {
    let text = serde_json::to_vec(refused).unwrap_or_default();
    context.remember(&memory_name(context), &text)
}

/// The name of the swap's sessions: the step and the run, so that the sessions a
/// stopped swap left waiting are found and ended, and nobody else's.
fn session_name(context: &super::StepContext) -> String {
    format!("dr-plan {} {}", context.step_id, context.run_id)
}

/// What the step is doing when it swaps: the swap, or the swap back of its undo.
#[derive(Clone, Copy)]
enum During {
    Swap,
    SwapBack,
}

impl During {
    fn words(self) -> &'static str {
        match self {
            During::Swap => "the swap",
            During::SwapBack => "the swap back",
        }
    }
}

/// Swaps `replacement` in for `database`; see the kind's notes.
///
/// # Errors
/// A missing database, a name already taken, sessions that do not end before the
/// deadline, a refused statement, a stop (Ctrl-C); each says where both databases are.
pub async fn run(parameters: Parameters, context: &super::StepContext) -> Result<PgSwapOutputs, super::StepError> {
    use crate::clients::postgres::{BEFORE_MARK, Connection, MAINTENANCE_DATABASE, Runner, copy_name};
    let failed = super::StepError::Failed;
    let outgoing = copy_name(&parameters.database, BEFORE_MARK, &context.run_id).map_err(failed)?;
    let connection = Connection::parse(parameters.connection.as_deref()).map_err(failed)?;
    let runner =
        Runner::new(&connection, &context.redactor, &context.step_id, &context.run_dir).named(&session_name(context));
    runner.check_reachable(MAINTENANCE_DATABASE).await.map_err(failed)?;
    let names = Names { live: &parameters.database, incoming: &parameters.replacement, outgoing: &outgoing };
    let unavailable =
        exchange(&runner, &names, parameters.deadline.get(), context, During::Swap).await.map_err(failed)?;
    let live = &parameters.database;
    let replacement = &parameters.replacement;
    context.progress.note(format!(
        "`{live}` is now the former `{replacement}`, `{outgoing}` the former `{live}`; unavailable for {:.3}s",
        unavailable.as_secs_f64()
    ));
    let previous = if parameters.keep_previous {
        Some(outgoing)
    } else {
        runner.drop_database(&outgoing).await.map_err(|error| {
            failed(format!(
                "the swap is done (`{live}` is now the former `{replacement}`), but the previous database, \
                 `{outgoing}`, could not be dropped (`keep_previous: false`): {error}; it is still there: drop it \
                 once the new `{live}` is confirmed"
            ))
        })?;
        context.progress.note(format!("dropped the previous database `{outgoing}`"));
        None
    };
    Ok(PgSwapOutputs { previous, unavailable_for: (unavailable.as_secs_f64() * 1000.0).round() / 1000.0 })
}

/// Swaps back: the kept previous database takes the live name again, and the database
/// swapped in gets back the name it had.
///
/// # Errors
/// The previous database was dropped (`keep_previous: false`), or the swap back failed.
pub async fn undo(
    parameters: Parameters,
    outputs: &super::Outputs,
    context: &super::StepContext,
) -> Result<(), super::StepError> {
    use crate::clients::postgres::{Connection, MAINTENANCE_DATABASE, Runner};
    let failed = super::StepError::Failed;
    let live = &parameters.database;
    let Some(previous) = outputs.get("previous").and_then(serde_json::Value::as_str) else {
        return Err(failed(format!(
            "cannot swap back: the previous `{live}` was dropped (`keep_previous: false`); `{live}` stays the \
             former `{}`; restore the safety backup to go back",
            parameters.replacement
        )));
    };
    let connection = Connection::parse(parameters.connection.as_deref()).map_err(failed)?;
    let runner =
        Runner::new(&connection, &context.redactor, &context.step_id, &context.run_dir).named(&session_name(context));
    runner.check_reachable(MAINTENANCE_DATABASE).await.map_err(failed)?;
    let names = Names { live, incoming: previous, outgoing: &parameters.replacement };
    let unavailable =
        exchange(&runner, &names, parameters.deadline.get(), context, During::SwapBack).await.map_err(failed)?;
    context.progress.note(format!(
        "swapped back: `{live}` is the former `{previous}` again, `{}` the database swapped in; unavailable for \
         {:.3}s",
        parameters.replacement,
        unavailable.as_secs_f64()
    ));
    Ok(())
}

/// After this run's process died during a swap (`kill -9`, a crash): allows connections
/// again to the databases it left refusing every client, and says where each database
/// is. `Ok(None)` when it left none.
///
/// # Errors
/// The server cannot be reached, or connections could not be allowed again.
pub async fn repair(parameters: Parameters, context: &super::StepContext) -> Result<Option<String>, String> {
    use crate::clients::postgres::{Connection, MAINTENANCE_DATABASE, Runner};
    let remembered = context.recall(&memory_name(context))?;
    let Some(refused) = remembered.and_then(|bytes| serde_json::from_slice::<Refused>(&bytes).ok()) else {
        return Ok(None);
    };
    if refused.databases.is_empty() {
        return Ok(None);
    }
    let connection = Connection::parse(parameters.connection.as_deref())?;
    let runner = Runner::without_log(&connection, &context.redactor).named(&session_name(context));
    runner.check_reachable(MAINTENANCE_DATABASE).await?;
    let [live, incoming, outgoing] = &refused.names;
    let names = Names { live, incoming, outgoing };
    let found = |refused_list: &[String]| {
        let listed = refused_list.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(" and ");
        format!(
            "step `{}` of run {} was stopped during {}, its process gone, with connections to {listed} refused since \
             {}",
            context.step_id, context.run_id, refused.during, refused.since
        )
    };
    let found_all = found(&refused.databases);
    let where_ = match put_back(&runner, &names, context).await {
        // Nothing refused (it died before the refusal committed, or someone allowed them).
        PutBack::Unchanged(Ok(allowed)) if allowed.is_empty() => return Ok(None),
        PutBack::Unchanged(Ok(allowed)) => return Ok(Some(format!("{}: {}", found(&allowed), names.unchanged(Ok(()))))),
        PutBack::Swapped => format!(
            "the renames were done: `{live}` is the former `{incoming}`, `{outgoing}` the former `{live}`; \
             connections are allowed"
        ),
        PutBack::Unclear { sentence, allowed: true } => sentence,
        PutBack::Unchanged(Err(sentence)) | PutBack::Unclear { sentence, allowed: false } => {
            return Err(format!("{found_all}: {sentence}"));
        }
    };
    Ok(Some(format!("{found_all}: {where_}")))
}

/// Where a stopped swap left the databases, once connections are allowed again.
enum PutBack {
    /// Nothing was renamed; connections to both were allowed again, or the error why not
    /// (the whole sentence, with the statements to run by hand). The databases listed
    /// were refusing connections until now.
    Unchanged(Result<Vec<String>, String>),
    /// The renames were committed (the stop came just after the commit): the swap is
    /// done, and its commit allowed connections again.
    Swapped,
    /// Neither (a database is missing); the sentence says which exist, and whether
    /// connections to them were allowed again.
    Unclear { sentence: String, allowed: bool },
}

/// Puts back what a swap stopped or failed before its commit changed: ends the step's
/// own sessions left waiting (a killed psql's statement still waits for its lock on the
/// server), looks where the databases are, and allows connections to them again. The
/// step's memory is emptied once nothing is refused any more.
async fn put_back(runner: &crate::clients::postgres::Runner<'_>, names: &Names<'_>, context: &super::StepContext) -> PutBack {
    let Names { live, incoming, outgoing } = *names;
    let ended = runner.end_own_sessions(Duration::from_secs(5)).await;
    let existing = match ended {
        Ok(_) => runner.existing_databases(&[live, incoming, outgoing]).await,
        Err(error) => Err(error),
    };
    let existing = match existing {
        Ok(existing) => existing,
        Err(error) => {
            let reenabled = allow_connections(runner, &[live, incoming]).await.and(Err::<Vec<String>, _>(error));
            return PutBack::Unchanged(reenabled.map_err(|error| names.unchanged(Err(error))));
        }
    };
    let exists = |name: &str| existing.iter().any(|found| found == name);
    let put_back = match (exists(live), exists(incoming), exists(outgoing)) {
        (true, true, false) => match allow_connections(runner, &[live, incoming]).await {
            Ok(allowed) => PutBack::Unchanged(Ok(allowed)),
            Err(error) => PutBack::Unchanged(Err(names.unchanged(Err(error)))),
        },
        (true, false, true) => PutBack::Swapped,
        _ => {
            let present: Vec<&str> = [live, incoming, outgoing].into_iter().filter(|name| exists(name)).collect();
            let reenabled = allow_connections(runner, &present).await;
            let listed = present.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ");
            let found = format!("of `{live}`, `{incoming}` and `{outgoing}`, only {listed} exist");
            match reenabled {
                Ok(_) => PutBack::Unclear {
                    sentence: format!("{found}; connections to them are allowed"),
                    allowed: true,
                },
                Err(error) => PutBack::Unclear {
                    sentence: format!(
                        "{found}; connections could NOT be allowed again ({error}): run `ALTER DATABASE … \
                         ALLOW_CONNECTIONS true` for each"
                    ),
                    allowed: false,
                },
            }
        }
    };
    if matches!(put_back, PutBack::Unchanged(Ok(_)) | PutBack::Swapped | PutBack::Unclear { allowed: true, .. }) {
        let _ = remember(context, &Refused::default());
    }
    put_back
}

/// Renames `live` to `outgoing` and `incoming` to `live`, with connections to both
/// refused and their sessions ended for that moment only. Returns how long they were
/// unavailable. On failure, and when the run is stopped meanwhile (Ctrl-C, SIGTERM,
/// SIGHUP, a deadline), nothing is renamed and connections are allowed again; the error
/// says so.
async fn exchange(
    runner: &crate::clients::postgres::Runner<'_>,
    names: &Names<'_>,
    deadline: Duration,
    context: &super::StepContext,
    during: During,
) -> Result<Duration, String> {
    let Names { live, incoming, outgoing } = *names;
    if live == incoming {
        return Err(format!("`database` and `replacement` are both `{live}`: there is nothing to swap"));
    }
    let existing = runner.existing_databases(&[live, incoming, outgoing]).await?;
    let exists = |name: &str| existing.iter().any(|found| found == name);
    let nothing_changed = format!("nothing was changed: `{live}` and `{incoming}` keep their names");
    match (exists(live), exists(incoming), exists(outgoing)) {
        (_, false, true) => {
            return Err(format!(
                "database `{incoming}` does not exist and `{outgoing}` does: an earlier attempt of this run looks \
                 to have swapped them already (`{live}` would then be the former `{incoming}`); check, and if so \
                 mark this step done when resuming; {nothing_changed}"
            ));
        }
        (_, false, false) => {
            return Err(format!(
                "database `{incoming}` (the replacement) does not exist; {nothing_changed}: `{live}` is still the \
                 live database (unchanged)"
            ));
        }
        (false, true, _) => {
            return Err(format!(
                "database `{live}` (the live database) does not exist; {nothing_changed}: `{incoming}` is still \
                 the replacement"
            ));
        }
        (true, true, true) => {
            return Err(format!(
                "database `{outgoing}`, the name the live database would be kept under, already exists; \
                 {nothing_changed}: `{live}` is still the live database (unchanged); drop or rename `{outgoing}` \
                 first"
            ));
        }
        (true, true, false) => {}
    }
    // From the first refused connection to the last allowed one, a stop is not a drop:
    // the dispatcher tells this section and waits for it to put things back.
    let shield = super::stop::shield();
    if shield.requested() {
        return Err(format!("the run is stopping; {nothing_changed}"));
    }
    let refused = Refused {
        databases: vec![live.to_owned(), incoming.to_owned()],
        during: during.words().to_owned(),
        names: [live.to_owned(), incoming.to_owned(), outgoing.to_owned()],
        since: crate::sys::clock::now(),
    };
    remember(context, &refused)
        .map_err(|error| format!("cannot record the swap before refusing connections: {error}; {nothing_changed}"))?;
    let started = tokio::time::Instant::now();
    let phases = swap_phases(runner, names, started + deadline, deadline, &context.progress);
    let outcome = tokio::select! {
        outcome = phases => Some(outcome),
        () = shield.stopped() => None,
    };
    let cause = match outcome {
        Some(Ok(())) => {
            let _ = remember(context, &Refused::default());
            return Ok(started.elapsed());
        }
        Some(Err(cause)) => cause,
        None => format!("stopped during {} (the run is stopping)", during.words()),
    };
    match put_back(runner, names, context).await {
        PutBack::Unchanged(Ok(_)) => Err(format!("{cause}; {}", names.unchanged(Ok(())))),
        PutBack::Unchanged(Err(sentence)) | PutBack::Unclear { sentence, .. } => Err(format!("{cause}; {sentence}")),
        // The commit went through just as psql was stopped: the swap is done.
        PutBack::Swapped => Ok(started.elapsed()),
    }
}

/// Refuses connections to both databases, ends their sessions, then renames them in
/// one transaction that allows connections again. An error is its cause only: the
/// caller puts things back.
async fn swap_phases(
    runner: &crate::clients::postgres::Runner<'_>,
    names: &Names<'_>,
    stop_at: tokio::time::Instant,
    deadline: Duration,
    progress: &super::ProgressSink,
) -> Result<(), String> {
    use crate::clients::postgres::{MAINTENANCE_DATABASE, PsqlOptions};
    let Names { live, incoming, outgoing } = *names;
    let variables = [("live", live), ("incoming", incoming), ("outgoing", outgoing)];
    let options =
        |single_transaction| PsqlOptions { variables: &variables, single_transaction, ..PsqlOptions::default() };
    progress.note(format!("refusing new connections to `{live}` and `{incoming}`"));
    runner
        .psql(
            MAINTENANCE_DATABASE,
            "alter database :\"live\" allow_connections false;\nalter database :\"incoming\" allow_connections false;",
            options(true),
        )
        .await
        .map_err(|error| format!("cannot refuse new connections to `{live}` and `{incoming}`: {error}"))?;
    end_sessions(runner, names, stop_at, deadline).await?;
    let remaining =
        stop_at.saturating_duration_since(tokio::time::Instant::now()).max(Duration::from_millis(100));
    let renames = format!(
        "set local lock_timeout = '{}ms';\n\
         alter database :\"live\" rename to :\"outgoing\";\n\
         alter database :\"incoming\" rename to :\"live\";\n\
         alter database :\"live\" allow_connections true;\n\
         alter database :\"outgoing\" allow_connections true;",
        remaining.as_millis()
    );
    runner.psql(MAINTENANCE_DATABASE, &renames, options(true)).await.map_err(|error| {
        format!("renaming failed and was rolled back (the renames are one transaction): {error}")
    })?;
    Ok(())
}

/// Terminates the sessions on both databases and waits until they are gone.
async fn end_sessions(
    runner: &crate::clients::postgres::Runner<'_>,
    names: &Names<'_>,
    stop_at: tokio::time::Instant,
    deadline: Duration,
) -> Result<(), String> {
    use crate::clients::postgres::SessionsLeft;
    let (live, incoming) = (names.live, names.incoming);
    runner.end_sessions(&[live, incoming], stop_at, Duration::from_millis(50), |_| {}).await.map_err(|left| {
        match left {
            SessionsLeft::CannotTerminate(error) => format!(
                "cannot terminate the sessions on `{live}` and `{incoming}`: {error}; connect as a superuser or a \
                 member of pg_signal_backend"
            ),
            SessionsLeft::CannotList(error) => format!("cannot list the sessions on `{live}` and `{incoming}`: {error}"),
            SessionsLeft::StillThere(remaining) => format!(
                "{remaining} session(s) on `{live}` or `{incoming}` were still there {}s after pg_terminate_backend \
                 (the `deadline`)",
                deadline.as_secs()
            ),
        }
    })
}

/// Allows connections to `databases` again where they are refused, each on its own so
/// one failure does not keep the other closed. A database that already allows them is
/// left alone: a session holding its catalog row (an `ALTER DATABASE` not yet
/// committed) must not hold up the clean-up of a swap stopped while waiting for it. A
/// statement waits at most [`ALLOW_LOCK_TIMEOUT`] for a lock, then the error says what
/// to run by hand.
async fn allow_connections(
    runner: &crate::clients::postgres::Runner<'_>,
    databases: &[&str],
) -> Result<Vec<String>, String> {
    use crate::clients::postgres::{MAINTENANCE_DATABASE, PsqlOptions};
    let refused = runner.databases_refusing_connections(databases).await;
    // Not listed: try them all; a database that allows connections takes no harm.
    let refused: Vec<String> = match refused {
        Ok(refused) => refused,
        Err(_) => databases.iter().map(|name| (*name).to_owned()).collect(),
    };
    let mut errors = Vec::new();
    let mut allowed = Vec::new();
    for database in refused {
        let variables = [("database", database.as_str())];
        if let Err(error) = runner
            .psql(
                MAINTENANCE_DATABASE,
                &format!(
                    "set lock_timeout = '{}ms';\nalter database :\"database\" allow_connections true",
                    ALLOW_LOCK_TIMEOUT.as_millis()
                ),
                PsqlOptions { variables: &variables, ..PsqlOptions::default() },
            )
            .await
        {
            errors.push(format!("`{database}`: {error}"));
        } else {
            allowed.push(database);
        }
    }
    if errors.is_empty() { Ok(allowed) } else { Err(errors.join("; ")) }
}

/// How long allowing connections again waits for a lock on a database's catalog row.
const ALLOW_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
