//! `pg.restore`: `pg_restore` (custom/directory, parallel) or `psql` (plain SQL).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, Params, StepOutputs, step_outputs};

/// Parameters of `pg.restore`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The dump file or directory, usually `{{steps.fetch.outputs.path}}`.
    pub dump: String,
    /// The target database (with `into: side`, the live database the side copy is
    /// named after and takes its owner from).
    pub database: String,
    /// `target` restores into `database`; `side` restores into a new database
    /// `<database>__restore_<run>` and leaves `database` untouched (swap it in afterwards).
    #[serde(default)]
    pub into: RestoreInto,
    /// `auto` reads the file's header (`PGDMP` = custom, a directory = directory, a tar
    /// archive = tar, read by pg_restore; else plain SQL).
    #[serde(default)]
    pub format: RestoreFormat,
    /// Drop objects before recreating them (`pg_restore --clean --if-exists`).
    #[serde(default)]
    pub clean: bool,
    /// Create `database` first when it does not exist (with `clean`: drop it and
    /// create it empty). The dump is restored into `database`, whatever name it was
    /// taken from.
    #[serde(default)]
    pub create: bool,
    /// Restore only these tables (`pg_restore -t`, custom/directory formats): their
    /// definition and data, without their indexes, constraints or triggers.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Parallel jobs (`pg_restore -j`; custom and directory formats), at least 1.
    #[serde(default = "default_jobs")]
    #[schemars(range(min = 1))]
    pub jobs: u32,
    /// Terminate other sessions on the target database first.
    #[serde(default = "super::shared::default_true")]
    pub terminate_connections: bool,
    /// Do not restore the objects' owners (`pg_restore --no-owner`): they then
    /// belong to the user that restores. For a server where the dump's roles do not exist.
    #[serde(default)]
    pub no_owner: bool,
    /// Do not restore grants (`pg_restore --no-privileges`). For a server where the
    /// dump's roles do not exist.
    #[serde(default)]
    pub no_privileges: bool,
    /// A libpq URL or keyword string (default: the `PG*` environment). Its database,
    /// if any, is replaced by `database`.
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

/// Where the dump goes.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RestoreInto {
    /// Into `database` itself.
    #[default]
    Target,
    /// Into a new database `<database>__restore_<run>`, created empty for this run.
    Side,
}

fn default_jobs() -> u32 {
    1
}

step_outputs! {
    /// Outputs of `pg.restore`.
    pub struct PgRestoreOutputs {
        /// the database restored into: `database`, or with `into: side` the side
        /// database's name (`<database>__restore_<run>`)
        pub database: String,
        /// the format detected
        pub format: String,
    }
}

/// What `pg.restore` declares.
pub const INFO: KindInfo = KindInfo {
    name: "pg.restore",
    argv_parameters: &[],
    summary: "Restore a dump with pg_restore -j N (custom/directory) or psql (plain SQL).",
    destructive: true,
    idempotent: false,
    undo: None,
    outputs: PgRestoreOutputs::DECLARED,
    preflight: "the database server is reachable",
    notes: "Never starts before its dump is verified: lint requires a checksum on the `s3.fetch` \
            that produced it, and a safety `pg.dump` upstream when `clean: true`.\n\n\
            What it does, in order: reads the dump's first bytes (`format: auto` picks custom, directory, \
            tar or plain SQL; a file still gzip/zstd-compressed or openssl-encrypted is refused before anything \
            changes: decompress and decrypt it first, e.g. with `s3.fetch` and `decompress: auto`); checks the \
            server answers and the database exists; terminates the other sessions on the database \
            (`terminate_connections`, default true) and waits until they are gone; with `create`, creates the \
            database (with `clean` too, drops and recreates it); then restores.\n\n\
            Custom, directory and tar dumps go through `pg_restore --exit-on-error` (`-j jobs` for custom and \
            directory; `--clean --if-exists` for `clean`; `-t` per table). A failure there can leave the \
            database partly restored: run the step again with `clean: true`, or restore the safety backup. \
            Plain SQL goes through `psql -v ON_ERROR_STOP=1 --single-transaction`: a failed restore is rolled \
            back and leaves the database as it was (empty, if this step created it). A plain dump carries its \
            own statements, so `clean` (without `create`), `tables`, `no_owner` and `no_privileges` are refused \
            for it and `jobs` is ignored.\n\n\
            Ownership and grants are restored as in the dump (pg_restore's default), which is right for the \
            server the dump came from; `no_owner` and `no_privileges` are for a server without its roles. \
            `create` creates `database` itself (not `pg_restore --create`, which would restore into the \
            database named inside the dump): database-level settings (`ALTER DATABASE ... SET`, its comment \
            and grants) are not restored.\n\n\
            `into: side` restores into a new database `<database>__restore_<run>` (`<run>`: the last part \
            of the run id, e.g. `ab12`) and never touches `database`: the side database is created empty, owned \
            by the owner of `database` when that exists (dropped first if an earlier attempt of the same run left \
            it), and a failed restore drops it again. `clean`, `create` and `terminate_connections` do not apply \
            to it. The output `database` is the side name, for a `pg.query` to check and a `pg.swap` to put in \
            place of the live database within seconds. A name longer than PostgreSQL's 63 bytes is refused \
            before anything changes.\n\n\
            The password reaches the programs through `PGPASSWORD` in their environment, never argv; their \
            stderr is kept, redacted, in `<step>.stderr.log` in the run directory.",
    example: "- id: restore\n  kind: pg.restore\n  needs: [fetch, safety-backup]\n  with: { dump: \"{{steps.fetch.outputs.path}}\", database: tododb, clean: true, jobs: 4 }\n",
    role: super::Role::Restore {
        file: "dump",
        target: &["database", "connection"],
        overwrite_flag: Some("clean"),
        side: Some(("into", "side")),
    },
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<PgRestoreOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `pg.restore` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(preflight(&super::parameters(with)?).await) }),
    undo: None,
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let side = with.text_or("into", "target") == "side";
    let mut sentence = if side {
        format!(
            "restore {} into a new side database {}__restore_<run> (database {} is not touched)",
            with.text("dump"),
            with.text("database"),
            with.text("database")
        )
    } else {
        format!("restore {} into database {}", with.text("dump"), with.text("database"))
    };
    let mut options = Vec::new();
    if with.flag("clean", false) && !side {
        options.push("dropping existing objects first".to_owned());
    }
    if with.flag("create", false) && !side {
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
    // The run refuses `clean` without `create` on a plain SQL dump (see `check_options`), before it touches the database, and
    // with `format: auto` the format is known only once the file exists: say so now, so a
    // reviewer learns it before the incident rather than at the restore.
    let dump = with.text("dump");
    let known_at_run_time = dump.starts_with('<') && dump.ends_with('>');
    if with.flag("clean", false)
        && !side
        && !with.flag("create", false)
        && with.text_or("format", "auto") == "auto"
        && known_at_run_time
    {
        sentence.push_str(
            "; its format is known only at run time: a plain SQL dump would be refused (before the database is \
             touched), since `clean` applies to custom, directory and tar dumps and plain SQL needs `create: true` \
             to drop and recreate the database",
        );
    }
    sentence
}

/// How long the sessions terminated before a restore may take to end.
const TERMINATION_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

/// The format a dump turned out to have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DumpFormat {
    Custom,
    Directory,
    /// `pg_dump -Ft`, read by `pg_restore` (not in parallel).
    Tar,
    Plain,
}

impl DumpFormat {
    fn name(self) -> &'static str {
        match self {
            DumpFormat::Custom => "custom",
            DumpFormat::Directory => "directory",
            DumpFormat::Tar => "tar",
            DumpFormat::Plain => "plain",
        }
    }
}

/// Reads the dump's first bytes and decides (or checks) its format. A dump that is
/// still compressed or encrypted is refused with what to do.
fn detect_format(dump: &std::path::Path, declared: RestoreFormat) -> Result<DumpFormat, String> {
    use std::io::Read as _;
    let shown = dump.display();
    let metadata = std::fs::metadata(dump).map_err(|error| {
        format!("cannot read the dump {shown}: {error}; check the path (usually `{{{{steps.fetch.outputs.path}}}}`)")
    })?;
    if metadata.is_dir() {
        if !dump.join("toc.dat").is_file() {
            return Err(format!(
                "{shown} is a directory without toc.dat: not a pg_dump directory-format dump (pg_dump -Fd)"
            ));
        }
        return match declared {
            RestoreFormat::Auto | RestoreFormat::Directory => Ok(DumpFormat::Directory),
            RestoreFormat::Custom | RestoreFormat::Plain => Err(format!(
                "{shown} is a directory-format dump, not {}: set `format: directory` or `auto`",
                if declared == RestoreFormat::Custom { "a custom-format file" } else { "plain SQL" }
            )),
        };
    }
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(dump)
        .and_then(|file| file.take(512).read_to_end(&mut head))
        .map_err(|error| format!("cannot read the dump {shown}: {error}"))?;
    if head.is_empty() {
        return Err(format!(
            "the dump {shown} is empty: the backup or its download failed; pick another backup"
        ));
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return Err(format!(
            "the dump {shown} is still gzip-compressed: decompress it first, e.g. s3.fetch with `decompress: auto`, \
             or `gunzip` it"
        ));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(format!(
            "the dump {shown} is still zstd-compressed: decompress it first, e.g. s3.fetch with `decompress: auto`, \
             or `zstd -d` it"
        ));
    }
    if head.starts_with(crate::artifact::OPENSSL_MAGIC) {
        return Err(format!(
            "the dump {shown} is still openssl-encrypted (it starts with `Salted__`): decrypt it first, e.g. \
             s3.fetch with `decrypt: {{ format: openssl-pbkdf2, key: ... }}`"
        ));
    }
    let found = if head.starts_with(b"PGDMP") {
        DumpFormat::Custom
    } else if head.get(257..262) == Some(b"ustar") {
        DumpFormat::Tar
    } else {
        DumpFormat::Plain
    };
    match (declared, found) {
        (RestoreFormat::Auto, found) | (RestoreFormat::Custom, found @ DumpFormat::Custom) => Ok(found),
        (RestoreFormat::Plain, DumpFormat::Plain) => Ok(DumpFormat::Plain),
        (RestoreFormat::Directory, _) => Err(format!(
            "{shown} is a file, not a directory-format dump: set `format: auto` to read its header"
        )),
        (RestoreFormat::Custom, _) => Err(format!(
            "{shown} is not a custom-format dump (it does not start with PGDMP; it looks like {}): set `format: auto`",
            if found == DumpFormat::Tar { "a tar-format dump" } else { "plain SQL" }
        )),
        (RestoreFormat::Plain, found) => Err(format!(
            "{shown} is a {}-format dump, not plain SQL: set `format: auto` (pg_restore reads it)",
            found.name()
        )),
    }
}

/// Refuses options the format cannot honour, before anything changes.
fn check_options(parameters: &Parameters, format: DumpFormat) -> Result<(), String> {
    if parameters.jobs == 0 {
        return Err("`jobs` must be at least 1".to_owned());
    }
    if format != DumpFormat::Plain {
        return Ok(());
    }
    let dump = &parameters.dump;
    // A side database is new and empty: `clean` has nothing to drop there.
    if parameters.clean && !parameters.create && parameters.into == RestoreInto::Target {
        return Err(format!(
            "{dump} is plain SQL: `clean` applies to pg_restore's formats; a plain dump drops objects only if it \
             was made with `pg_dump --clean --if-exists`. Remove `clean`, or also set `create: true` to drop and \
             recreate database {} before loading it",
            parameters.database
        ));
    }
    if !parameters.tables.is_empty() {
        return Err(format!(
            "{dump} is plain SQL, which psql loads whole: `tables` needs a custom or directory dump (pg_dump -Fc)"
        ));
    }
    if parameters.no_owner || parameters.no_privileges {
        return Err(format!(
            "{dump} is plain SQL, whose owners and grants are statements in the file: drop `no_owner` and \
             `no_privileges`, or dump with `pg_dump --no-owner --no-privileges`"
        ));
    }
    Ok(())
}

/// Checks the server (and, unless the step creates it, the database) for
/// `dry-run --preflight`.
pub async fn preflight(parameters: &Parameters) -> super::Preflight {
    let database =
        if parameters.create || parameters.into == RestoreInto::Side { crate::clients::postgres::MAINTENANCE_DATABASE } else { parameters.database.as_str() };
    crate::clients::postgres::preflight(parameters.connection.as_deref(), database).await.into()
}

/// Restores the dump; see the kind's notes for the order of what it does.
///
/// # Errors
/// A dump that is missing, still compressed or encrypted, or of the wrong format;
/// options the format cannot honour; an unreachable server or a missing database;
/// sessions that cannot be terminated; and a failed restore, with the program's exit
/// status and the end of its stderr.
pub async fn run(
    parameters: Parameters,
    context: &super::StepContext,
) -> Result<PgRestoreOutputs, super::StepError> {
    use crate::clients::postgres::{Connection, MAINTENANCE_DATABASE, Runner};
    let failed = super::StepError::Failed;
    let dump = std::path::PathBuf::from(&parameters.dump);
    let declared = parameters.format;
    let probe = dump.clone();
    let format = tokio::task::spawn_blocking(move || detect_format(&probe, declared))
        .await
        .map_err(|error| failed(format!("reading the dump's header stopped unexpectedly: {error}")))?
        .map_err(failed)?;
    check_options(&parameters, format).map_err(failed)?;
    let connection = Connection::parse(parameters.connection.as_deref()).map_err(failed)?;
    let runner = Runner::new(&connection, &context.redactor, &context.step_id, &context.run_dir);
    if parameters.into == RestoreInto::Side {
        return restore_beside(parameters, &runner, context, &dump, format).await;
    }
    let database = parameters.database.as_str();
    let where_ = connection.describe(database);
    if parameters.create {
        runner.check_reachable(MAINTENANCE_DATABASE).await.map_err(failed)?;
    } else {
        runner.check_reachable(database).await.map_err(failed)?;
    }
    if parameters.terminate_connections {
        terminate_sessions(&runner, database, &context.progress).await.map_err(failed)?;
    }
    let created = if parameters.create {
        create_database(&runner, database, parameters.clean, &context.progress).await.map_err(failed)?
    } else {
        false
    };
    match format {
        DumpFormat::Plain => restore_plain(&parameters, &runner, context, &dump, created).await?,
        DumpFormat::Custom | DumpFormat::Directory | DumpFormat::Tar => {
            restore_archive(&parameters, &runner, context, &dump, format, created).await?;
        }
    }
    context.progress.note(format!("restored {} into {where_}", dump.display()));
    Ok(PgRestoreOutputs { database: database.to_owned(), format: format.name().to_owned() })
}

/// `into: side`: creates `<database>__restore_<run>` empty (dropping what an earlier
/// attempt of this run left under that name), restores into it, and drops it again
/// when the restore fails. `database` itself is only read (its owner).
async fn restore_beside(
    mut parameters: Parameters,
    runner: &crate::clients::postgres::Runner<'_>,
    context: &super::StepContext,
    dump: &std::path::Path,
    format: DumpFormat,
) -> Result<PgRestoreOutputs, super::StepError> {
    use crate::clients::postgres::{MAINTENANCE_DATABASE, PsqlOptions, RESTORE_MARK, copy_name};
    let failed = super::StepError::Failed;
    let live = parameters.database.clone();
    let side = copy_name(&live, RESTORE_MARK, &context.run_id).map_err(failed)?;
    runner.check_reachable(MAINTENANCE_DATABASE).await.map_err(failed)?;
    let owner = runner.database_owner(&live).await.map_err(failed)?;
    if runner.drop_database(&side).await.map_err(failed)? {
        context.progress.note(format!("dropped database {side}, left by an earlier attempt of this run"));
    }
    let where_ = runner.connection.describe(&side);
    let variables = [("database", side.as_str()), ("owner", owner.as_deref().unwrap_or_default())];
    let create = if owner.is_some() {
        "create database :\"database\" owner :\"owner\""
    } else {
        "create database :\"database\""
    };
    context.progress.note(format!(
        "creating database {side}{}",
        owner.as_deref().map(|owner| format!(" owned by {owner}")).unwrap_or_default()
    ));
    runner
        .psql(MAINTENANCE_DATABASE, create, PsqlOptions { variables: &variables, ..PsqlOptions::default() })
        .await
        .map_err(|error| {
            failed(format!(
                "cannot create {where_}: {error}; the user needs the CREATEDB privilege{}",
                if owner.is_some() { " and membership in the role that owns the live database" } else { "" }
            ))
        })?;
    parameters.database.clone_from(&side);
    let restored = match format {
        DumpFormat::Plain => restore_plain(&parameters, runner, context, dump, true).await,
        DumpFormat::Custom | DumpFormat::Directory | DumpFormat::Tar => {
            restore_archive(&parameters, runner, context, dump, format, true).await
        }
    };
    if let Err(error) = restored {
        let cleanup = match runner.drop_database(&side).await {
            Ok(_) => format!("database {side} was dropped; database {live} was not touched"),
            Err(drop_error) => format!(
                "database {side} could not be dropped ({drop_error}): drop it by hand; database {live} was not touched"
            ),
        };
        return Err(failed(format!("{error}; {cleanup}")));
    }
    context.progress.note(format!("restored {} into {where_}", dump.display()));
    Ok(PgRestoreOutputs { database: side, format: format.name().to_owned() })
}

/// Terminates every other session on `database` and waits until they are gone, so
/// that dropping and replacing its objects is not blocked by their locks (and nobody
/// writes into a half-restored database).
async fn terminate_sessions(
    runner: &crate::clients::postgres::Runner<'_>,
    database: &str,
    progress: &super::ProgressSink,
) -> Result<(), String> {
    use crate::clients::postgres::SessionsLeft;
    let where_ = runner.connection.describe(database);
    let stop_at = tokio::time::Instant::now() + TERMINATION_DEADLINE;
    let noted = |count: &str| {
        progress.note(format!("terminated {count} session(s) on database {database}; waiting until they end"));
    };
    runner.end_sessions(&[database], stop_at, std::time::Duration::from_millis(200), noted).await.map_err(
        |left| match left {
            SessionsLeft::CannotTerminate(error) => format!(
                "cannot terminate the other sessions on {where_}: {error}; connect as a superuser or a member of \
                 pg_signal_backend, or set `terminate_connections: false`"
            ),
            SessionsLeft::CannotList(error) => format!("cannot list the sessions on {where_}: {error}"),
            SessionsLeft::StillThere(remaining) => format!(
                "{remaining} session(s) on {where_} were still there {}s after pg_terminate_backend; something \
                 reconnects at once (stop the writers first, e.g. with k8s.scale), then run the step again",
                TERMINATION_DEADLINE.as_secs()
            ),
        },
    )
}

/// `create`: creates `database` when it does not exist; with `clean`, drops an
/// existing one first. Returns whether the database is new (and so empty).
async fn create_database(
    runner: &crate::clients::postgres::Runner<'_>,
    database: &str,
    clean: bool,
    progress: &super::ProgressSink,
) -> Result<bool, String> {
    use crate::clients::postgres::{MAINTENANCE_DATABASE, PsqlOptions};
    let variables = [("database", database)];
    let options = || PsqlOptions { variables: &variables, ..PsqlOptions::default() };
    let where_ = runner.connection.describe(database);
    let answer = runner
        .psql(
            MAINTENANCE_DATABASE,
            "select exists (select from pg_database where datname = :'database'), \
             current_setting('server_version_num')::int >= 130000",
            options(),
        )
        .await
        .map_err(|error| format!("cannot look up {where_}: {error}"))?;
    let (exists, can_force) = match answer.0.as_slice() {
        [row] if row.len() == 2 => (row[0] == "t", row[1] == "t"),
        _ => return Err(format!("unexpected answer looking up {where_}: {:?}", answer.0)),
    };
    if exists && !clean {
        progress.note(format!("database {database} exists; restoring into it"));
        return Ok(false);
    }
    if exists {
        progress.note(format!("dropping database {database} to recreate it"));
        // Sessions that reconnected since they were terminated would block the drop.
        let drop = if can_force {
            "drop database :\"database\" with (force)"
        } else {
            "drop database :\"database\""
        };
        runner.psql(MAINTENANCE_DATABASE, drop, options()).await.map_err(|error| {
            format!("cannot drop {where_} to recreate it (`create` with `clean`): {error}")
        })?;
    }
    progress.note(format!("creating database {database}"));
    runner.psql(MAINTENANCE_DATABASE, "create database :\"database\"", options()).await.map_err(|error| {
        format!(
            "cannot create {where_}: {error}; the user needs the CREATEDB privilege, or create it beforehand"
        )
    })?;
    Ok(true)
}

/// Custom, directory or tar: `pg_restore --exit-on-error`, in parallel where the
/// format allows it.
async fn restore_archive(
    parameters: &Parameters,
    runner: &crate::clients::postgres::Runner<'_>,
    context: &super::StepContext,
    dump: &std::path::Path,
    format: DumpFormat,
    created: bool,
) -> Result<(), super::StepError> {
    use crate::clients::postgres::{Input, Program, describe_status};
    let mut command = runner.command(Program::Restore, &parameters.database)?;
    command
        .args(archive_arguments(parameters, format, created))
        .arg(dump)
        .stdout(std::process::Stdio::null());
    if parameters.jobs > 1 && format == DumpFormat::Tar {
        context
            .progress
            .note("a tar-format dump is restored with one job (pg_restore cannot read it in parallel)");
    }
    let where_ = runner.connection.describe(&parameters.database);
    context.progress.note(format!("pg_restore into {where_}"));
    let progress = context.progress.clone();
    // `--verbose` names each object as it is restored: the current one is the progress.
    let on_line = move |line: &str| {
        if let Some(activity) = line.strip_prefix("pg_restore: ") {
            progress.note(activity.to_owned());
        }
    };
    let finished = runner.finish(command, Input::None, Some(&on_line)).await?;
    if finished.status.success() {
        return Ok(());
    }
    Err(super::StepError::Failed(format!(
        "pg_restore of {} into {where_} {}: {}; the database may be partly restored: fix the cause and run the \
         step again (with `clean: true` it drops what was restored), or restore the safety backup (see {}.stderr.log \
         in the run directory)",
        dump.display(),
        describe_status(finished.status),
        errors_tail(&finished.stderr_tail(runner, 40)),
        context.step_id
    )))
}

/// pg_restore's arguments for the step's options.
fn archive_arguments(parameters: &Parameters, format: DumpFormat, created: bool) -> Vec<String> {
    let mut arguments = vec!["--exit-on-error".to_owned(), "--verbose".to_owned()];
    // A database this step just created is empty: nothing to drop.
    if parameters.clean && !created {
        arguments.extend(["--clean".to_owned(), "--if-exists".to_owned()]);
    }
    if parameters.jobs > 1 && format != DumpFormat::Tar {
        arguments.push(format!("--jobs={}", parameters.jobs));
    }
    for table in &parameters.tables {
        arguments.push(format!("--table={table}"));
    }
    if parameters.no_owner {
        arguments.push("--no-owner".to_owned());
    }
    if parameters.no_privileges {
        arguments.push("--no-privileges".to_owned());
    }
    arguments
}

/// The lines of a `--verbose` stderr tail that say what went wrong (the progress
/// lines before an error are noise in a message).
fn errors_tail(tail: &str) -> String {
    let errors: Vec<&str> = tail
        .split(" / ")
        .filter(|line| {
            let activity = line.strip_prefix("pg_restore: ").unwrap_or(line);
            !(activity.starts_with("creating ")
                || activity.starts_with("processing ")
                || activity.starts_with("launching ")
                || activity.starts_with("finished ")
                || activity.starts_with("connecting ")
                || activity.starts_with("executing ")
                || activity.starts_with("dropping "))
        })
        .collect();
    let errors = &errors[errors.len().saturating_sub(6)..];
    if errors.is_empty() { tail.to_owned() } else { errors.join(" / ") }
}

/// Plain SQL: streamed into `psql -v ON_ERROR_STOP=1 --single-transaction`.
async fn restore_plain(
    parameters: &Parameters,
    runner: &crate::clients::postgres::Runner<'_>,
    context: &super::StepContext,
    dump: &std::path::Path,
    created: bool,
) -> Result<(), super::StepError> {
    use crate::clients::postgres::{Input, Program, describe_status};
    if parameters.jobs > 1 {
        context.progress.note("plain SQL is loaded by one psql session: `jobs` does not apply");
    }
    let mut command = runner.command(Program::Psql, &parameters.database)?;
    command
        .args(["--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--single-transaction", "--file=-"])
        .stdout(std::process::Stdio::null());
    let where_ = runner.connection.describe(&parameters.database);
    context.progress.note(format!("loading {} into {where_} with psql", dump.display()));
    let finished =
        runner.finish(command, Input::File { path: dump, progress: &context.progress }, None).await?;
    if finished.status.success() {
        return Ok(());
    }
    let state = if created {
        format!("database {} is empty (this step created it)", parameters.database)
    } else {
        format!("database {} is as it was before the step", parameters.database)
    };
    Err(super::StepError::Failed(format!(
        "psql stopped at the first error loading {} into {where_} ({}): {}; the restore ran in one transaction, \
         which was rolled back: {state}",
        dump.display(),
        describe_status(finished.status),
        finished.stderr_tail(runner, 4).replace("psql:<stdin>:", "line ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(directory: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = directory.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn detects_the_format_and_refuses_compressed_or_encrypted_dumps() {
        let directory = tempfile::tempdir().unwrap();
        let custom = write(directory.path(), "a.dump", b"PGDMP\x01\x0e\x00");
        let plain = write(directory.path(), "a.sql", b"--\n-- PostgreSQL database dump\n");
        assert_eq!(detect_format(&custom, RestoreFormat::Auto), Ok(DumpFormat::Custom));
        assert_eq!(detect_format(&plain, RestoreFormat::Auto), Ok(DumpFormat::Plain));
        assert!(
            detect_format(&plain, RestoreFormat::Custom).unwrap_err().contains("does not start with PGDMP")
        );
        assert!(detect_format(&custom, RestoreFormat::Plain).unwrap_err().contains("custom-format dump"));
        let gzip = write(directory.path(), "a.sql.gz", &[0x1f, 0x8b, 8, 0]);
        assert!(detect_format(&gzip, RestoreFormat::Auto).unwrap_err().contains("decompress it first"));
        let zstd = write(directory.path(), "a.zst", &[0x28, 0xb5, 0x2f, 0xfd, 0]);
        assert!(detect_format(&zstd, RestoreFormat::Plain).unwrap_err().contains("zstd-compressed"));
        let encrypted = write(directory.path(), "a.enc", b"Salted__12345678");
        assert!(detect_format(&encrypted, RestoreFormat::Auto).unwrap_err().contains("decrypt it first"));
        let empty = write(directory.path(), "empty.sql", b"");
        assert!(detect_format(&empty, RestoreFormat::Auto).unwrap_err().contains("is empty"));
        assert!(
            detect_format(directory.path(), RestoreFormat::Auto).unwrap_err().contains("without toc.dat")
        );
        write(directory.path(), "toc.dat", b"PGDMP");
        assert_eq!(detect_format(directory.path(), RestoreFormat::Auto), Ok(DumpFormat::Directory));
        let missing = directory.path().join("missing.dump");
        assert!(detect_format(&missing, RestoreFormat::Auto).unwrap_err().contains("cannot read the dump"));
    }

    #[test]
    fn maps_options_to_pg_restore_arguments_and_refuses_what_plain_sql_cannot_do() {
        let parameters: Parameters = serde_json::from_value(serde_json::json!({
            "dump": "a.dump", "database": "tododb", "clean": true, "jobs": 4, "tables": ["users"], "no_owner": true
        }))
        .unwrap();
        assert_eq!(
            archive_arguments(&parameters, DumpFormat::Custom, false),
            [
                "--exit-on-error",
                "--verbose",
                "--clean",
                "--if-exists",
                "--jobs=4",
                "--table=users",
                "--no-owner"
            ]
        );
        assert_eq!(
            archive_arguments(&parameters, DumpFormat::Tar, true),
            ["--exit-on-error", "--verbose", "--table=users", "--no-owner"]
        );
        assert!(check_options(&parameters, DumpFormat::Plain).unwrap_err().contains("Remove `clean`"));
        assert_eq!(check_options(&parameters, DumpFormat::Custom), Ok(()));
    }

    #[test]
    fn keeps_the_error_lines_of_a_verbose_tail() {
        let tail = "pg_restore: creating TABLE \"public.a\" / pg_restore: error: could not execute query: ERROR:  x / \
                    Command was: CREATE TABLE a ();";
        assert_eq!(
            errors_tail(tail),
            "pg_restore: error: could not execute query: ERROR:  x / Command was: CREATE TABLE a ();"
        );
    }

    #[test]
    fn a_clean_restore_of_a_dump_known_only_at_run_time_warns_about_plain_sql() {
        let sentence = |with: serde_json::Value| describe(&Params(&with));
        let warned =
            sentence(serde_json::json!({ "dump": "<fetch.path>", "database": "tododb", "clean": true }));
        assert!(
            warned.contains("plain SQL dump would be refused") && warned.contains("`create: true`"),
            "{warned}"
        );
        for quiet in [
            serde_json::json!({ "dump": "<fetch.path>", "database": "tododb", "clean": true, "create": true }),
            serde_json::json!({ "dump": "<fetch.path>", "database": "tododb", "clean": true, "format": "custom" }),
            serde_json::json!({ "dump": "<fetch.path>", "database": "tododb" }),
        ] {
            assert!(!sentence(quiet.clone()).contains("plain SQL"), "{quiet}");
        }
    }
}
