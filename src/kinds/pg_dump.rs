//! `pg.dump`: `pg_dump`, optionally compressed and encrypted in the same pass.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Encryption, KindInfo, Params, StepOutputs, step_outputs};

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
    /// gzip at level 6 (`gzip`'s default), like `| gzip`.
    Gzip,
    /// zstd at level 3 (`zstd`'s default).
    Zstd,
}

step_outputs! {
    /// Outputs of `pg.dump`.
    pub struct PgDumpOutputs {
        /// the file written
        pub path: String,
        /// the file name without directory
        pub name: String,
        /// bytes written
        pub bytes: u64,
        /// SHA-256 of the file written
        pub sha256: String,
    }
}

/// What `pg.dump` declares.
pub const INFO: KindInfo = KindInfo {
    name: "pg.dump",
    argv_parameters: &[],
    summary: "pg_dump a database (custom or plain), optionally gzip/zstd and encrypted in the same pass.",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: PgDumpOutputs::DECLARED,
    preflight: "the database is reachable",
    notes: "Used as the safety backup before a destructive restore: lint expects one upstream of a \
            `pg.restore` with `clean: true`. The password reaches pg_dump through the environment, never argv.\n\n\
            Custom and plain dumps stream from pg_dump through compression (gzip level 6 or zstd level 3), \
            encryption (what `openssl enc -aes-256-cbc -salt -pbkdf2 -pass file:KEY` writes and `openssl enc -d` \
            reads) and SHA-256 in one pass, into `<dest>.partial`, renamed to `dest` only once pg_dump succeeded \
            and the data is synced: a failed or interrupted dump never looks finished. When the stream is \
            compressed, the custom format's own compression is turned off (`-Z0`), so decompressing gives a file \
            `pg_restore` reads.\n\n\
            The default `dest` is `<run directory>/<database>-<UTC time>.<dump|sql|dir>[.gz|.zst][.enc]`; a `dest` \
            that is an existing directory (or ends in `/`) receives that name. A directory-format dump is many \
            files that pg_dump compresses itself: `compress` and `encrypt` are refused with it, and its `sha256` \
            is that of its `sha256sum` listing (`(cd DIR && sha256sum $(LC_ALL=C ls)) | sha256sum`).",
    example: "- id: safety-backup\n  kind: pg.dump\n  with: { database: tododb }\n",
    role: super::Role::Backup { target: &["database", "connection"] },
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<PgDumpOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `pg.dump` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(preflight(&super::parameters(with)?).await) }),
    undo: None,
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

/// gzip level: `gzip`'s own default, which costs a fraction of `-9`'s time for
/// nearly the same size on SQL text.
const GZIP_LEVEL: u32 = 6;
/// zstd level: the `zstd` CLI's default.
const ZSTD_LEVEL: i32 = 3;

/// Checks that the database answers (`dry-run --preflight`).
pub async fn preflight(parameters: &Parameters) -> super::Preflight {
    if let Err(error) = check_parameters(parameters) {
        return super::Preflight::Failed(error);
    }
    crate::clients::postgres::preflight(parameters.connection.as_deref(), &parameters.database).await.into()
}

/// Refuses combinations that cannot work, before anything runs.
fn check_parameters(parameters: &Parameters) -> Result<(), String> {
    if parameters.format == DumpFormat::Directory
        && (parameters.compress != DumpCompression::None || parameters.encrypt.is_some())
    {
        return Err(format!(
            "a directory-format dump of {} is many files written by pg_dump itself (each gzip-compressed by \
             pg_dump), so it cannot be compressed or encrypted as one stream: use `format: custom` (restorable \
             with pg_restore -j too) to compress or encrypt, or drop `compress` and `encrypt`",
            parameters.database
        ));
    }
    if let Some(encryption) = &parameters.encrypt {
        if encryption.key.is_empty() {
            return Err(
                "`encrypt.key` is empty: give the passphrase, usually `{{secrets.backup_key}}`".to_owned()
            );
        }
        if encryption.iterations == 0 {
            return Err("`encrypt.iterations` must be at least 1 (openssl's default is 10000)".to_owned());
        }
    }
    Ok(())
}

/// Dumps the database: custom and plain formats stream from `pg_dump` through
/// compression, encryption and SHA-256 into `<dest>.partial`, renamed to `dest` only
/// once pg_dump succeeded and the file is synced; directory format is written by
/// pg_dump into `<dest>.partial` and renamed likewise.
///
/// # Errors
/// Invalid parameters, an unreachable database, a pg_dump failure (its exit status
/// and the end of its stderr), or a file that cannot be written.
pub async fn run(
    parameters: Parameters,
    context: &super::StepContext,
) -> Result<PgDumpOutputs, super::StepError> {
    use crate::clients::postgres::{Connection, Runner};
    check_parameters(&parameters).map_err(super::StepError::Failed)?;
    let connection = Connection::parse(parameters.connection.as_deref()).map_err(super::StepError::Failed)?;
    let runner = Runner::new(&connection, &context.redactor, &context.step_id, &context.run_dir);
    runner.check_reachable(&parameters.database).await.map_err(super::StepError::Failed)?;
    let destination = destination(&parameters, context, chrono::Utc::now());
    if let Some(parent) = destination.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|error| {
            super::StepError::Failed(format!(
                "cannot create {} for the dump of {}: {error}",
                parent.display(),
                parameters.database
            ))
        })?;
    }
    let written = match parameters.format {
        DumpFormat::Custom | DumpFormat::Plain => {
            dump_stream(&parameters, &runner, context, &destination).await?
        }
        DumpFormat::Directory => dump_directory(&parameters, &runner, context, &destination).await?,
    };
    Ok(PgDumpOutputs {
        path: destination.display().to_string(),
        name: destination.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default(),
        bytes: written.bytes,
        sha256: written.sha256,
    })
}

/// What a dump wrote.
struct Written {
    bytes: u64,
    sha256: String,
}

/// `dest`, or a directory in which to put the default name, or the run directory.
fn destination(
    parameters: &Parameters,
    context: &super::StepContext,
    now: chrono::DateTime<chrono::Utc>,
) -> std::path::PathBuf {
    let default_name = default_file_name(parameters, now);
    match &parameters.dest {
        None => context.run_dir.join(default_name),
        // An existing directory (or a path written with a trailing slash) receives the
        // default name; a directory-format dump's `dest` is the dump itself.
        Some(dest)
            if parameters.format != DumpFormat::Directory
                && (dest.ends_with('/') || std::path::Path::new(dest).is_dir()) =>
        {
            std::path::Path::new(dest).join(default_name)
        }
        Some(dest) => std::path::PathBuf::from(dest),
    }
}

/// `<database>-<UTC timestamp>.<dump|sql|dir>[.gz|.zst][.enc]`.
fn default_file_name(parameters: &Parameters, now: chrono::DateTime<chrono::Utc>) -> String {
    let database: String = parameters
        .database
        .chars()
        .map(
            |character| {
                if character.is_ascii_alphanumeric() || "-_.".contains(character) { character } else { '_' }
            },
        )
        .collect();
    let mut name = format!("{database}-{}", now.format("%Y%m%dT%H%M%SZ"));
    name.push_str(match parameters.format {
        DumpFormat::Custom => ".dump",
        DumpFormat::Plain => ".sql",
        DumpFormat::Directory => ".dir",
    });
    name.push_str(match parameters.compress {
        DumpCompression::None => "",
        DumpCompression::Gzip => ".gz",
        DumpCompression::Zstd => ".zst",
    });
    if parameters.encrypt.is_some() {
        name.push_str(".enc");
    }
    name
}

/// The pg_dump arguments for the format (the connection comes first, from the runner).
fn dump_arguments(parameters: &Parameters) -> Vec<String> {
    let mut arguments = vec![match parameters.format {
        DumpFormat::Custom => "--format=custom".to_owned(),
        DumpFormat::Plain => "--format=plain".to_owned(),
        DumpFormat::Directory => "--format=directory".to_owned(),
    }];
    // Compressing twice costs time for nothing: when the stream is compressed here,
    // the custom format's own compression is turned off (the file is then what
    // `pg_dump -Fc -Z0 | gzip` writes, and pg_restore reads it once decompressed).
    if parameters.format == DumpFormat::Custom && parameters.compress != DumpCompression::None {
        arguments.push("--compress=0".to_owned());
    }
    arguments
}

/// Custom or plain: pg_dump's stdout through the artifact pipeline into the file.
async fn dump_stream(
    parameters: &Parameters,
    runner: &crate::clients::postgres::Runner<'_>,
    context: &super::StepContext,
    destination: &std::path::Path,
) -> Result<Written, super::StepError> {
    let options = backup_options(parameters)?;
    let running = start_pg_dump(parameters, runner, context)?;
    let where_ = running.where_.clone();
    let ended = pipe_into_partial_file(running, options, runner, context, destination).await;
    let (partial, summary) = checked_dump(ended, runner, context, destination, &where_)?;
    tokio::task::spawn_blocking(move || partial.commit())
        .await
        .map_err(|error| super::StepError::Failed(format!("saving the dump stopped unexpectedly: {error}")))?
        .map_err(|error| super::StepError::Failed(format!("saving the dump of {where_} failed: {error}")))?;
    context.progress.bytes(summary.bytes_in, Some(summary.bytes_in));
    Ok(Written { bytes: summary.bytes_out, sha256: summary.sha256.to_hex() })
}

/// The compression and encryption of the stream, as the parameters ask.
fn backup_options(parameters: &Parameters) -> Result<crate::artifact::BackupOptions, super::StepError> {
    use crate::artifact::{BackupOptions, Compression, EncryptionKey, Password};

    let encrypt = match &parameters.encrypt {
        Some(encryption) => Some(
            EncryptionKey::new(Password::new(encryption.key.as_bytes().to_vec()), encryption.iterations)
                .map_err(|error| super::StepError::Failed(error.to_string()))?,
        ),
        None => None,
    };
    Ok(BackupOptions {
        compress: match parameters.compress {
            DumpCompression::None => Compression::None,
            DumpCompression::Gzip => Compression::Gzip { level: GZIP_LEVEL },
            DumpCompression::Zstd => Compression::Zstd { level: ZSTD_LEVEL },
        },
        encrypt,
    })
}

/// A started pg_dump whose stdout is the dump.
struct RunningDump {
    child: tokio::process::Child,
    tree: crate::sys::process_tree::ProcessTree,
    stdout: std::fs::File,
    /// The command line, for the log.
    shown: String,
    /// The database, as messages name it.
    where_: String,
}

/// Starts pg_dump with its stdout as a pipe.
fn start_pg_dump(
    parameters: &Parameters,
    runner: &crate::clients::postgres::Runner<'_>,
    context: &super::StepContext,
) -> Result<RunningDump, super::StepError> {
    use crate::clients::postgres::{Program, describe_command};

    let mut command = runner.command(Program::Dump, &parameters.database)?;
    command.args(dump_arguments(parameters));
    let shown = describe_command(&command);
    let where_ = runner.connection.describe(&parameters.database);
    context.progress.note(format!("pg_dump of {where_}"));
    let (mut child, tree) =
        crate::clients::postgres::spawn(&mut command).map_err(|error| runner.cannot_start(&shown, &error))?;
    let stdout = child
        .stdout
        .take()
        .map(tokio::process::ChildStdout::into_owned_fd)
        .transpose()
        .map_err(|error| super::StepError::Failed(format!("cannot read pg_dump's output: {error}")))?
        .map(std::fs::File::from);
    let Some(stdout) = stdout else {
        return Err(super::StepError::Failed("pg_dump started without an output pipe".to_owned()));
    };
    Ok(RunningDump { child, tree, stdout, shown, where_ })
}

/// How pg_dump and the pipeline that wrote its output ended, each as it was reported.
struct EndedDump {
    status: std::io::Result<std::process::ExitStatus>,
    pipeline: Result<
        Result<(crate::artifact::PartialFile, crate::artifact::BackupSummary), crate::artifact::ArtifactError>,
        tokio::task::JoinError,
    >,
    stderr: Vec<u8>,
}

/// Runs pg_dump's stdout through the pipeline into a partial file until both end.
async fn pipe_into_partial_file(
    running: RunningDump,
    options: crate::artifact::BackupOptions,
    runner: &crate::clients::postgres::Runner<'_>,
    context: &super::StepContext,
    destination: &std::path::Path,
) -> EndedDump {
    use crate::artifact::{PartialFile, backup_stream};
    use crate::clients::postgres::read_all;

    let RunningDump { mut child, tree, stdout, shown, .. } = running;
    let progress = context.progress.clone();
    let file = destination.to_path_buf();
    // The pipeline blocks, so it runs on a blocking thread. If this step is cancelled,
    // dropping `child` kills pg_dump, the pipeline sees the end of its input, and the
    // partial file it returns is dropped with the task's result: removed, never renamed.
    let pipeline = tokio::task::spawn_blocking(move || {
        let mut partial = PartialFile::create(&file)?;
        let summary =
            backup_stream(stdout, &options, &mut partial, &|update| progress.bytes(update.bytes_read, None))?;
        Ok::<_, crate::artifact::ArtifactError>((partial, summary))
    });
    let (pipeline, stderr) = tokio::join!(pipeline, read_all(child.stderr.take(), 256 * 1024));
    if pipeline.as_ref().is_ok_and(Result::is_err) {
        // The pipeline stopped early (disk full, …): pg_dump must not wait on a full pipe.
        let _ = child.start_kill();
    }
    let status = child.wait().await;
    if status.is_ok() {
        tree.finished();
    }
    runner.log(&shown, status.as_ref().ok().copied(), &stderr);
    EndedDump { status, pipeline, stderr }
}

/// The partial file and its summary when both pg_dump and the pipeline succeeded, or
/// the error that explains why not.
fn checked_dump(
    ended: EndedDump,
    runner: &crate::clients::postgres::Runner<'_>,
    context: &super::StepContext,
    destination: &std::path::Path,
    where_: &str,
) -> Result<(crate::artifact::PartialFile, crate::artifact::BackupSummary), super::StepError> {
    use crate::clients::postgres::{describe_status, tail};

    let EndedDump { status, pipeline, stderr } = ended;
    let status =
        status.map_err(|error| super::StepError::Failed(format!("lost track of pg_dump: {error}")))?;
    let pipeline = pipeline.map_err(|error| {
        super::StepError::Failed(format!("the dump pipeline stopped unexpectedly: {error}"))
    })?;
    // A pipeline that failed (disk full, …) is why pg_dump was stopped, so it is
    // reported first; a pg_dump that failed only ends the pipeline's input early.
    let (partial, summary) = match pipeline {
        Ok(written) => written,
        Err(error) => {
            return Err(super::StepError::Failed(runner.redact(&format!(
                "writing the dump of {where_} to {} failed: {error}",
                destination.display()
            ))));
        }
    };
    if !status.success() {
        return Err(super::StepError::Failed(runner.redact(&format!(
            "pg_dump of {where_} {}: {}; nothing was written to {} (see {}.stderr.log in the run directory)",
            describe_status(status),
            tail(&runner.redact(&String::from_utf8_lossy(&stderr)), 6),
            destination.display(),
            context.step_id
        ))));
    }
    Ok((partial, summary))
}

/// Directory format: pg_dump writes `<dest>.partial/`, renamed to `dest` on success.
async fn dump_directory(
    parameters: &Parameters,
    runner: &crate::clients::postgres::Runner<'_>,
    context: &super::StepContext,
    destination: &std::path::Path,
) -> Result<Written, super::StepError> {
    use crate::clients::postgres::{Program, describe_status};
    let mut partial = destination.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let failed = |action: &str, path: &std::path::Path, error: std::io::Error| {
        super::StepError::Failed(format!("cannot {action} {}: {error}", path.display()))
    };
    // What an interrupted earlier attempt left behind is incomplete by definition.
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .map_err(|error| failed("remove the incomplete dump", &partial, error))?;
    }
    let mut command = runner.command(Program::Dump, &parameters.database)?;
    command.args(dump_arguments(parameters)).arg("--file").arg(&partial).stdout(std::process::Stdio::null());
    let where_ = runner.connection.describe(&parameters.database);
    context.progress.note(format!("pg_dump of {where_} into a directory"));
    let finished = runner.finish(command, crate::clients::postgres::Input::None, None).await;
    let finished = match finished {
        Ok(finished) if finished.status.success() => finished,
        Ok(finished) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(super::StepError::Failed(format!(
                "pg_dump of {where_} {}: {}; nothing was written to {}",
                describe_status(finished.status),
                finished.stderr_tail(runner, 6),
                destination.display()
            )));
        }
        Err(error) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(error.into());
        }
    };
    drop(finished);
    let (partial_for_digest, destination_owned) = (partial.clone(), destination.to_path_buf());
    let summary =
        tokio::task::spawn_blocking(move || finish_directory(&partial_for_digest, &destination_owned))
            .await
            .map_err(|error| {
                super::StepError::Failed(format!("saving the dump stopped unexpectedly: {error}"))
            })?;
    summary.map_err(|error| {
        let _ = std::fs::remove_dir_all(&partial);
        super::StepError::Failed(format!("saving the directory dump of {where_} failed: {error}"))
    })
}

/// Syncs and digests the finished directory dump, then puts it in place of any older
/// one at `destination`.
fn finish_directory(partial: &std::path::Path, destination: &std::path::Path) -> Result<Written, String> {
    let (bytes, sha256) = directory_digest(partial)?;
    if destination.exists() {
        let mut replaced = destination.as_os_str().to_owned();
        replaced.push(".replaced");
        let replaced = std::path::PathBuf::from(replaced);
        let _ = std::fs::remove_dir_all(&replaced);
        std::fs::rename(destination, &replaced)
            .map_err(|error| format!("cannot move the older {} aside: {error}", destination.display()))?;
        std::fs::rename(partial, destination).map_err(|error| {
            format!("cannot rename {} to {}: {error}", partial.display(), destination.display())
        })?;
        let _ = std::fs::remove_dir_all(&replaced);
    } else {
        std::fs::rename(partial, destination).map_err(|error| {
            format!("cannot rename {} to {}: {error}", partial.display(), destination.display())
        })?;
    }
    if let Some(parent) = destination.parent().filter(|parent| !parent.as_os_str().is_empty())
        && let Ok(directory) = std::fs::File::open(parent)
    {
        let _ = directory.sync_all();
    }
    Ok(Written { bytes, sha256 })
}

/// The total size of a directory dump's files, and the SHA-256 of its `sha256sum`
/// listing (`<hex>  <name>` per file, sorted by name): the same as
/// `(cd DIR && sha256sum $(LC_ALL=C ls)) | sha256sum`. Every file is synced on the way.
fn directory_digest(directory: &std::path::Path) -> Result<(u64, String), String> {
    use sha2::Digest as _;
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(directory)
        .map_err(|error| format!("cannot list {}: {error}", directory.display()))?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|error| format!("cannot list {}: {error}", directory.display()))?;
    names.sort();
    let mut listing = String::new();
    let mut bytes = 0_u64;
    for name in names {
        let path = directory.join(&name);
        let file =
            std::fs::File::open(&path).map_err(|error| format!("cannot open {}: {error}", path.display()))?;
        file.sync_all().map_err(|error| format!("cannot sync {}: {error}", path.display()))?;
        let (digest, size) = crate::artifact::sha256_of_reader(std::io::BufReader::new(file))
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        bytes += size;
        listing.push_str(&format!("{}  {}\n", digest.to_hex(), name.to_string_lossy()));
    }
    Ok((bytes, hex::encode(sha2::Sha256::digest(listing.as_bytes()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(yaml: serde_json::Value) -> Parameters {
        serde_json::from_value(yaml).unwrap()
    }

    #[test]
    fn names_the_default_file_after_the_database_time_and_pipeline() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-15T10:30:00Z").unwrap().to_utc();
        let plain = parameters(serde_json::json!({
            "database": "todo/db", "format": "plain", "compress": "gzip",
            "encrypt": { "format": "openssl-pbkdf2", "key": "k" }
        }));
        assert_eq!(default_file_name(&plain, now), "todo_db-20240115T103000Z.sql.gz.enc");
        let custom = parameters(serde_json::json!({ "database": "tododb", "compress": "zstd" }));
        assert_eq!(default_file_name(&custom, now), "tododb-20240115T103000Z.dump.zst");
        assert_eq!(dump_arguments(&custom), ["--format=custom", "--compress=0"]);
        let directory = parameters(serde_json::json!({ "database": "tododb", "format": "directory" }));
        assert_eq!(default_file_name(&directory, now), "tododb-20240115T103000Z.dir");
    }

    #[test]
    fn refuses_to_compress_or_encrypt_a_directory_dump() {
        let directory = parameters(
            serde_json::json!({ "database": "tododb", "format": "directory", "compress": "gzip" }),
        );
        assert!(check_parameters(&directory).unwrap_err().contains("use `format: custom`"));
    }
}
