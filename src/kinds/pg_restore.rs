//! `pg.restore`: `pg_restore` (custom/directory, parallel) or `psql` (plain SQL).

use schemars::JsonSchema;
use serde::Deserialize;

use super::s3_object::{FetchError, ObjectSource};
use super::{KindInfo, Params, StepOutputs, step_outputs};
use crate::clients::postgres::Feed;

/// Parameters of `pg.restore`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The dump file or directory, usually `{{steps.fetch.outputs.path}}` (or `from_s3`).
    pub dump: Option<String>,
    /// Restore a backup object in S3 as it downloads, instead of a `dump` file: the
    /// parameters of `s3.fetch` but `dest` (`bucket`, `key` or `latest` with `prefix`,
    /// `checksum`, `decrypt`, `decompress`, `endpoint`, `region`, `parallel`). Needs
    /// `into: side`: the checksum is known only once the whole object has been read.
    pub from_s3: Option<ObjectSource>,
    /// Restore one database of another server as it is dumped, instead of a `dump`
    /// file: `pg_dump` of `database` on `connection` (e.g. the `connection` output of a
    /// point-in-time recovery's side server) streams into pg_restore, nothing written to
    /// disk. Needs `into: side`: the dump is whole only once pg_dump has ended well.
    pub from_server: Option<ServerSource>,
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

/// The server and database `from_server` dumps.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSource {
    /// A libpq URL or keyword string of the server to dump (its database, if any, is
    /// replaced by `database`).
    pub connection: String,
    /// The database to dump there.
    pub database: String,
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
        /// with `from_s3`: the object key restored (resolved when `latest`); else null
        pub key: Option<String>,
        /// with `from_s3`: bytes loaded, after decryption and decompression; else null
        pub bytes: Option<u64>,
        /// with `from_s3`: SHA-256 of the object as stored; else null
        pub sha256: Option<String>,
        /// with `from_s3`: the object's Last-Modified (RFC 3339); else null
        pub last_modified: Option<String>,
        /// with `from_s3`: seconds between Last-Modified and the restore, the data's RPO; else null
        pub age: Option<u64>,
    }
}

impl PgRestoreOutputs {
    /// The outputs of a restore of a file.
    fn of_file(database: String, format: DumpFormat) -> PgRestoreOutputs {
        PgRestoreOutputs {
            database,
            format: format.name().to_owned(),
            key: None,
            bytes: None,
            sha256: None,
            last_modified: None,
            age: None,
        }
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
    notes: "Never starts before its dump is verified: lint (DRP001) requires a checksum on the `s3.fetch` \
            that produced it (and on `from_s3`: `checksum: none` there is a warning; a `from_server` is vouched for \
            only when its `connection` comes from a step of the plan, the one that recovered that server), and a \
            safety `pg.dump` upstream when `clean: true`.\n\n\
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
            `from_s3` restores a backup object straight from S3 instead of a `dump` file. It takes the parameters \
            of `s3.fetch` but `dest`, and downloads, hashes, decrypts and decompresses the object as it streams \
            into psql (plain SQL) or pg_restore (custom or tar, read from standard input): download, decoding and \
            load overlap, and nothing is written to disk. The format is read from the first decoded bytes. The \
            object, its age against `objectives.rpo` and its checksum sidecar (or `.meta`) are checked before \
            anything changes. The checksum is known only once the whole object has been read, so `from_s3` needs \
            `into: side`, and the end of the data reaches the program only after the checksum matched: psql runs \
            the dump in one transaction whose `COMMIT` is sent only then, pg_restore runs with \
            `--single-transaction` and does not get the last chunk before. On a checksum mismatch, a decryption or \
            decompression failure or a failed load, the program is killed before its input ends (nothing is \
            committed) and the side database is dropped; after a crash, the step run again drops and recreates \
            it. A custom-format dump with `jobs` over 1 is staged in the run directory first \
            (`<step>.staged.dump`, readable by the operator only, deleted afterwards): pg_restore -j needs a file \
            it can seek in. The outputs `key`, `bytes`, `sha256`, `last_modified` and `age` are those of \
            `s3.fetch`; `age` is the data's measured RPO.\n\n\
            `from_server: { connection, database }` restores one database of another server (e.g. the side \
            server of a point-in-time recovery, through its `connection` output) instead of a `dump` file: \
            `pg_dump -Fc -Z0` of that database streams into pg_restore `--single-transaction` (one job: nothing is \
            staged on disk, so `jobs` does not apply), by the same load as `from_s3`. Before anything changes, the \
            source must answer and have the database (the preflight checks both servers). It needs `into: side`: \
            the last chunk of the dump reaches pg_restore only once pg_dump has exited successfully; when pg_dump \
            fails (the source stopped, a lost connection) or the load fails, pg_restore is killed before its input \
            ends, nothing is committed, and the side database is dropped. No checksum exists for a live server: check the \
            side database with a `pg.query` before it is swapped in; lint (DRP001) warns when the source's \
            `connection` is not an output of a step of the plan. The outputs `key`, `bytes`, `sha256`, `last_modified` and `age` are null: the data's age is the source's \
            (a point-in-time recovery's `data_loss`).\n\n\
            The password reaches the programs through `PGPASSWORD` in their environment, never argv; their \
            stderr is kept, redacted, in `<step>.stderr.log` in the run directory.",
    example: "- id: restore\n  kind: pg.restore\n  needs: [fetch, safety-backup]\n  with: { dump: \"{{steps.fetch.outputs.path}}\", database: tododb, clean: true, jobs: 4 }\n",
    guide: r#"## Restoring straight from S3, beside the live database

`from_s3` takes the object where `s3.fetch` would have written a file: no download
step, no copy on disk, and the restore runs while the object downloads. The live
database answers all along; it is unavailable only while `pg.swap` renames (see the
dry-run's "Unavailable" line).

```yaml
# plan
version: 1
name: restore-tododb-from-s3
description: Restore tododb beside itself from its newest backup in S3, check it, swap it in.
objectives: { rto: 30m, rpo: 6h }
secrets:
  backup_key: { file: /etc/backup/encryption.key }
steps:
  - id: restore
    kind: pg.restore
    with:
      database: tododb
      into: side
      from_s3:
        bucket: festivals-backups
        key: latest
        prefix: postgres/
        checksum: sidecar
        decrypt: { format: openssl-pbkdf2, key: "{{secrets.backup_key}}" }
        decompress: auto
  - id: check
    kind: pg.query
    needs: [restore]
    with:
      database: "{{steps.restore.outputs.database}}"
      assert:
        - { sql: "select count(*) from users", expect: "> 0" }
  - id: approve
    kind: approval
    needs: [check]
    with: { prompt: "tododb__restore_<run> is checked: swap it in for tododb?" }
  - id: swap
    kind: pg.swap
    needs: [approve]
    with: { database: tododb, replacement: "{{steps.restore.outputs.database}}" }
    undo: true
```

`from_s3` without `into: side` is refused when the plan is validated. A corrupt,
truncated or wrongly keyed object, or a wrong `.sha256`, fails the step with the reason
(as `s3.fetch` explains it), nothing of the load is committed, the side database is
dropped, and `tododb` is as it was.

## In-place variant

A server without room for two copies of the database cannot restore beside it. Then
take a safety backup of what is there, and restore over the live database with `create`
and `clean` (drop and recreate it: right for custom and plain SQL dumps alike). The database is
unavailable for the whole restore, and a failure in the middle leaves it partly
restored: the safety backup is the way back. `from_s3` does not apply here (its
checksum would be known only after the live database had been overwritten): fetch the
backup with `s3.fetch` first, which verifies it before anything is touched.

```yaml
# plan
version: 1
name: restore-tododb-in-place
description: Restore tododb over itself, after a safety backup, on a server without room for two copies.
objectives: { rto: 45m, rpo: 6h }
secrets:
  backup_key: { file: /etc/backup/encryption.key }
steps:
  - id: fetch
    kind: s3.fetch
    with:
      bucket: festivals-backups
      key: latest
      prefix: postgres/
      checksum: sidecar
      decrypt: { format: openssl-pbkdf2, key: "{{secrets.backup_key}}" }
  - id: safety-backup
    kind: pg.dump
    with: { database: tododb, format: custom }
  - id: restore
    kind: pg.restore
    needs: [fetch, safety-backup]
    with: { dump: "{{steps.fetch.outputs.path}}", database: tododb, clean: true, create: true, jobs: 4 }
  - id: check
    kind: pg.query
    needs: [restore]
    with:
      database: tododb
      assert:
        - { sql: "select count(*) from users", expect: "> 0" }
```
"#,
    one_of: &[&["dump", "from_s3", "from_server"]],
    streamed_object: Some("from_s3"),
    streamed_server: Some("from_server"),
    object_keys: &["from_s3.key"],
    requires_value: &[
        super::RequiredValue {
            parameter: "from_s3",
            other: "into",
            value: "side",
            why: "the object's checksum is known only once all of it has been read, and by then it has been loaded; \
                  a side database is dropped when the checksum, decryption or decompression fails, and the live \
                  database is never touched",
        },
        super::RequiredValue {
            parameter: "from_server",
            other: "into",
            value: "side",
            why: "the dump is whole only once pg_dump has ended, and by then it has been loaded; a side database \
                  is dropped when pg_dump or the load fails, and the live database is never touched",
        },
    ],
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
    preflight: |with, context| Box::pin(async move { Ok(preflight(&super::parameters(with)?, context).await) }),
    undo: None,
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let side = with.text_or("into", "target") == "side";
    let database = with.text("database");
    let streamed = with.get("from_s3").filter(|source| source.is_object());
    let server = with.get("from_server").filter(|source| source.is_object());
    let mut sentence = match (streamed, server) {
        (None, Some(source)) => {
            let source = Params(source);
            let into = if side {
                format!(
                    "a new side database {database}__restore_<run>, nothing written to disk (database {database} is \
                     not touched; the side database is dropped if pg_dump or the load fails)"
                )
            } else {
                format!("database {database} (refused: `from_server` needs `into: side`)")
            };
            format!(
                "restore {} as pg_dump streams it, into {into}",
                describe_source(&source.text("connection"), &source.text("database"))
            )
        }
        (Some(source), _) => {
            let source = Params(source);
            let into = if side {
                format!(
                    "a new side database {database}__restore_<run>, nothing written to disk (database {database} is \
                     not touched; the side database is dropped if the checksum, decryption or decompression fails)"
                )
            } else {
                format!("database {database} (refused: `from_s3` needs `into: side`)")
            };
            format!(
                "restore {}{} as it downloads, into {into}",
                super::s3_object::describe_object(&source),
                super::s3_object::describe_decoding(&source),
            )
        }
        (None, None) if side => format!(
            "restore {} into a new side database {database}__restore_<run> (database {database} is not touched)",
            with.text("dump")
        ),
        (None, None) => format!("restore {} into database {database}", with.text("dump")),
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
    if streamed.is_some() && jobs != "1" && matches!(with.text_or("format", "auto").as_str(), "auto" | "custom") {
        sentence.push_str(&format!(
            "; a custom-format dump is first staged in the run directory (pg_restore -j {jobs} needs a file it can \
             seek in), then restored from there and deleted"
        ));
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

/// The database `from_server` dumps, for a sentence: where it is, never the password
/// (a connection known only at run time, `<pitr.connection>`, as it is).
fn describe_source(connection: &str, database: &str) -> String {
    if connection.starts_with('<') {
        return format!("database {database} on the server at {connection}");
    }
    match crate::clients::postgres::Connection::parse(Some(connection)) {
        Ok(parsed) => parsed.describe(database),
        Err(_) => format!("database {database} (on a server whose `connection` cannot be read)"),
    }
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
    let mut head = Vec::with_capacity(HEAD_LENGTH);
    std::fs::File::open(dump)
        .and_then(|file| file.take(HEAD_LENGTH as u64).read_to_end(&mut head))
        .map_err(|error| format!("cannot read the dump {shown}: {error}"))?;
    format_of_head(&head, declared, &format!("the dump {shown}"), Decoder::FetchFirst)
}

/// How many first bytes of a dump tell its format (a tar header is 512 bytes).
const HEAD_LENGTH: usize = 512;

/// What to say about a dump that is still compressed or encrypted.
#[derive(Clone, Copy)]
enum Decoder {
    /// A file: decode it first, e.g. with `s3.fetch`.
    FetchFirst,
    /// A stream from `from_s3`: its own `decompress` and `decrypt` do it.
    FromS3,
}

impl Decoder {
    fn decompress(self, program: &str) -> String {
        match self {
            Decoder::FetchFirst => format!(
                "decompress it first, e.g. s3.fetch with `decompress: auto`, or `{program}` it"
            ),
            Decoder::FromS3 => "set `decompress: auto` in `from_s3`".to_owned(),
        }
    }

    fn decrypt(self) -> &'static str {
        match self {
            Decoder::FetchFirst => {
                "decrypt it first, e.g. s3.fetch with `decrypt: { format: openssl-pbkdf2, key: ... }`"
            }
            Decoder::FromS3 => "set `decrypt: { format: openssl-pbkdf2, key: ... }` in `from_s3`",
        }
    }
}

/// Decides (or checks) the format of a dump, a file, from its first bytes `head`;
/// `shown` names it. A dump that is still compressed or encrypted is refused with what
/// to do.
fn format_of_head(
    head: &[u8],
    declared: RestoreFormat,
    shown: &str,
    decoder: Decoder,
) -> Result<DumpFormat, String> {
    if head.is_empty() {
        return Err(format!("{shown} is empty: the backup or its download failed; pick another backup"));
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return Err(format!("{shown} is still gzip-compressed: {}", decoder.decompress("gunzip")));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(format!("{shown} is still zstd-compressed: {}", decoder.decompress("zstd -d")));
    }
    if head.starts_with(crate::artifact::OPENSSL_MAGIC) {
        return Err(format!(
            "{shown} is still openssl-encrypted (it starts with `Salted__`): {}",
            decoder.decrypt()
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
/// `dump` names the dump in messages.
fn check_options(parameters: &Parameters, format: DumpFormat, dump: &str) -> Result<(), String> {
    if parameters.jobs == 0 {
        return Err("`jobs` must be at least 1".to_owned());
    }
    if format != DumpFormat::Plain {
        return Ok(());
    }
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
/// `dry-run --preflight`; with `from_s3`, also that the object and its checksum are
/// there and that it is younger than the RPO.
pub async fn preflight(parameters: &Parameters, context: &super::PreflightContext) -> super::Preflight {
    use super::Preflight;
    use crate::clients::postgres::MAINTENANCE_DATABASE;
    let database = if parameters.create || parameters.into == RestoreInto::Side {
        MAINTENANCE_DATABASE
    } else {
        parameters.database.as_str()
    };
    let server: Preflight =
        crate::clients::postgres::preflight(parameters.connection.as_deref(), database).await.into();
    if let Some(source) = &parameters.from_server {
        let dumped: Preflight =
            crate::clients::postgres::preflight(Some(&source.connection), &source.database).await.into();
        return match (server, dumped) {
            (Preflight::Passed(server), Preflight::Passed(source)) => {
                Preflight::Passed(format!("{server}; the source {source}"))
            }
            (Preflight::Passed(_), Preflight::Failed(error)) => {
                Preflight::Failed(format!("the source of `from_server` cannot be dumped: {error}"))
            }
            (other, _) => other,
        };
    }
    let Some(source) = &parameters.from_s3 else { return server };
    let client = crate::clients::s3::connect(source.endpoint.as_deref(), source.region.as_deref()).await;
    match (server, super::s3_object::check_before_download(source, context.rpo, &client).await) {
        (Preflight::Passed(server), Ok((object, age))) => Preflight::Passed(format!(
            "{server}; {} exists ({} bytes, {} old)",
            object.uri(),
            object.size,
            crate::lang::duration::format_duration(age)
        )),
        (Preflight::Passed(_), Err(error)) => Preflight::Failed(error.to_string()),
        (other, _) => other,
    }
}

/// Restores the dump; see the kind's notes for the order of what it does.
///
/// # Errors
/// A dump that is missing, still compressed or encrypted, or of the wrong format;
/// options the format cannot honour; an unreachable server or a missing database;
/// sessions that cannot be terminated; and a failed restore, with the program's exit
/// status and the end of its stderr.
pub async fn run(
    mut parameters: Parameters,
    context: &super::StepContext,
) -> Result<PgRestoreOutputs, super::StepError> {
    use crate::clients::postgres::{Connection, MAINTENANCE_DATABASE, Runner};
    let failed = super::StepError::Failed;
    let dump = match (parameters.dump.take(), parameters.from_s3.take(), parameters.from_server.take()) {
        (Some(dump), None, None) => std::path::PathBuf::from(dump),
        (None, Some(source), None) => return restore_from_s3(parameters, source, context).await,
        (None, None, Some(source)) => return restore_from_server(parameters, source, context).await,
        _ => {
            return Err(failed(
                "give exactly one of `dump` (a file), `from_s3` (an object in S3) and `from_server` (a database of \
                 another server)"
                    .to_owned(),
            ));
        }
    };
    let declared = parameters.format;
    let probe = dump.clone();
    let format = tokio::task::spawn_blocking(move || detect_format(&probe, declared))
        .await
        .map_err(|error| failed(format!("reading the dump's header stopped unexpectedly: {error}")))?
        .map_err(failed)?;
    check_options(&parameters, format, &dump.display().to_string()).map_err(failed)?;
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
    Ok(PgRestoreOutputs::of_file(database.to_owned(), format))
}

/// `into: side`: creates `<database>__restore_<run>` empty (see [`create_side`]),
/// restores into it, and drops it again when the restore fails.
async fn restore_beside(
    mut parameters: Parameters,
    runner: &crate::clients::postgres::Runner<'_>,
    context: &super::StepContext,
    dump: &std::path::Path,
    format: DumpFormat,
) -> Result<PgRestoreOutputs, super::StepError> {
    let live = parameters.database.clone();
    let side = create_side(&live, runner, context).await?;
    parameters.database.clone_from(&side);
    let restored = match format {
        DumpFormat::Plain => restore_plain(&parameters, runner, context, dump, true).await,
        DumpFormat::Custom | DumpFormat::Directory | DumpFormat::Tar => {
            restore_archive(&parameters, runner, context, dump, format, true).await
        }
    };
    if let Err(error) = restored {
        return Err(drop_side(runner, &side, &live, &error.to_string()).await);
    }
    context.progress.note(format!("restored {} into {}", dump.display(), runner.connection.describe(&side)));
    Ok(PgRestoreOutputs::of_file(side, format))
}

/// Creates the side database `<live>__restore_<run>` empty, owned by the owner of
/// `live` when that exists, dropping first what an earlier attempt of this run left
/// under that name. `live` itself is only read (its owner). Returns the side name.
async fn create_side(
    live: &str,
    runner: &crate::clients::postgres::Runner<'_>,
    context: &super::StepContext,
) -> Result<String, super::StepError> {
    use crate::clients::postgres::{MAINTENANCE_DATABASE, PsqlOptions, RESTORE_MARK, copy_name};
    let failed = super::StepError::Failed;
    let side = copy_name(live, RESTORE_MARK, &context.run_id).map_err(failed)?;
    runner.check_reachable(MAINTENANCE_DATABASE).await.map_err(failed)?;
    let owner = runner.database_owner(live).await.map_err(failed)?;
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
    Ok(side)
}

/// Drops the side database after a failed restore; the error says what failed and
/// where both databases are.
async fn drop_side(
    runner: &crate::clients::postgres::Runner<'_>,
    side: &str,
    live: &str,
    error: &str,
) -> super::StepError {
    let cleanup = match runner.drop_database(side).await {
        Ok(_) => format!("database {side} was dropped; database {live} was not touched"),
        Err(drop_error) => format!(
            "database {side} could not be dropped ({drop_error}): drop it by hand; database {live} was not touched"
        ),
    };
    super::StepError::Failed(format!("{error}; {cleanup}"))
}

/// Chunks in flight from the decoding to the loading program.
const FEED_CAPACITY: usize = 2;

/// `from_s3`: chooses and checks the object (nothing changes when that fails), creates
/// the side database, then downloads, verifies, decrypts and decompresses the object
/// straight into psql or pg_restore, all at once. The last chunk reaches the program
/// only once the checksum matched; on any failure the program is killed before its
/// input ends (nothing is committed) and the side database is dropped.
async fn restore_from_s3(
    mut parameters: Parameters,
    source: ObjectSource,
    context: &super::StepContext,
) -> Result<PgRestoreOutputs, super::StepError> {
    use crate::clients::postgres::{Connection, Runner};
    let failed = super::StepError::Failed;
    if parameters.into != RestoreInto::Side {
        return Err(failed(
            "`from_s3` needs `into: side`: the object's checksum is known only once all of it has been read, and by \
             then it has been loaded; restore beside the live database (`into: side`) and swap it in with pg.swap"
                .to_owned(),
        ));
    }
    if parameters.jobs == 0 {
        return Err(failed("`jobs` must be at least 1".to_owned()));
    }
    let connection = Connection::parse(parameters.connection.as_deref()).map_err(failed)?;
    let runner = Runner::new(&connection, &context.redactor, &context.step_id, &context.run_dir);
    let client = crate::clients::s3::connect(source.endpoint.as_deref(), source.region.as_deref()).await;
    let fetch_failed = |error: FetchError| context.redactor.redact(&error.to_string());
    let chosen =
        super::s3_object::choose(&source, context.rpo, &client).await.map_err(|error| failed(fetch_failed(error)))?;
    let live = parameters.database.clone();
    let side = create_side(&live, &runner, context).await?;
    parameters.database.clone_from(&side);
    let location = chosen.object.uri();
    context.progress.note(format!("streaming {location} into database {side}"));
    let (sender, receiver) = tokio::sync::mpsc::channel(FEED_CAPACITY);
    let loading = format!("the load into database {side}");
    let transfer = chosen.transfer(&client, context, move |decoding| {
        let mut output = HeldBack { sender, held: None };
        let summary = decoding.decode_into(&mut output, &loading)?;
        output.complete();
        Ok(summary)
    });
    let load = load_stream(&parameters, &runner, context, receiver, &location);
    let (transferred, loaded) = tokio::join!(transfer, load);
    let (summary, format) = match (transferred, loaded) {
        (Ok(summary), Ok(format)) => (summary, format),
        // The program stopped reading: its error is the cause.
        (Err(FetchError::Write { .. }) | Ok(_), Err(error)) => {
            return Err(drop_side(&runner, &side, &live, &error.to_string()).await);
        }
        (Err(error), _) => {
            let bad_object = error.is_final();
            let error = format!("{}; the load was stopped before its end, nothing of it committed", fetch_failed(error));
            let failed = drop_side(&runner, &side, &live, &error).await;
            return Err(if bad_object { super::StepError::Final(failed.to_string()) } else { failed });
        }
    };
    context.progress.note(format!("restored {location} into {}", runner.connection.describe(&side)));
    Ok(PgRestoreOutputs {
        database: side,
        format: format.name().to_owned(),
        key: Some(chosen.object.key.clone()),
        bytes: Some(summary.output_bytes),
        sha256: Some(summary.sha256.to_hex()),
        last_modified: Some(chosen.object.last_modified.to_rfc3339()),
        age: Some(chosen.age.as_secs()),
    })
}

/// Bytes read from pg_dump's output at a time for `from_server`.
const DUMP_CHUNK: usize = 256 * 1024;

/// `from_server`: checks that the source server answers and has the database (nothing
/// changes when it does not), creates the side database, then streams `pg_dump -Fc` of
/// the source into pg_restore (`--single-transaction`) through the same load as
/// `from_s3`. The last chunk of the dump reaches pg_restore only once pg_dump has
/// exited successfully; when pg_dump fails (the source stopped, a lost connection), or
/// the load does, pg_restore is killed before its input ends (nothing is committed) and
/// the side database is dropped.
async fn restore_from_server(
    mut parameters: Parameters,
    source: ServerSource,
    context: &super::StepContext,
) -> Result<PgRestoreOutputs, super::StepError> {
    use crate::clients::postgres::{Connection, Runner};
    let failed = super::StepError::Failed;
    if parameters.into != RestoreInto::Side {
        return Err(failed(
            "`from_server` needs `into: side`: the dump is whole only once pg_dump has ended, and by then it has \
             been loaded; restore beside the live database (`into: side`) and swap it in with pg.swap"
                .to_owned(),
        ));
    }
    if parameters.jobs == 0 {
        return Err(failed("`jobs` must be at least 1".to_owned()));
    }
    if parameters.jobs > 1 {
        context.progress.note(
            "`jobs` does not apply to `from_server`: the dump streams into one pg_restore session, nothing staged on disk",
        );
        parameters.jobs = 1;
    }
    let source_connection = Connection::parse(Some(&source.connection)).map_err(failed)?;
    let source_runner = Runner::new(&source_connection, &context.redactor, &context.step_id, &context.run_dir);
    let location = source_connection.describe(&source.database);
    source_runner
        .check_reachable(&source.database)
        .await
        .map_err(|error| failed(format!("the source of `from_server` cannot be dumped: {error}")))?;
    let connection = Connection::parse(parameters.connection.as_deref()).map_err(failed)?;
    let runner = Runner::new(&connection, &context.redactor, &context.step_id, &context.run_dir);
    let live = parameters.database.clone();
    let side = create_side(&live, &runner, context).await?;
    parameters.database.clone_from(&side);
    context.progress.note(format!("streaming pg_dump of {location} into database {side}"));
    let (sender, receiver) = tokio::sync::mpsc::channel(FEED_CAPACITY);
    let dump = dump_into(&source_runner, &source.database, sender, context);
    let load = load_stream(&parameters, &runner, context, receiver, &location);
    let (dumped, loaded) = tokio::join!(dump, load);
    let format = match (dumped, loaded) {
        (Ok(()), Ok(format)) => format,
        // pg_dump failed: its error is the cause, the load only saw its input stop.
        (Err(error), _) => {
            let error = format!("{error}; the load was stopped before its end, nothing of it committed");
            return Err(drop_side(&runner, &side, &live, &error).await);
        }
        (Ok(()), Err(error)) => return Err(drop_side(&runner, &side, &live, &error.to_string()).await),
    };
    context.progress.note(format!("restored {location} into {}", runner.connection.describe(&side)));
    Ok(PgRestoreOutputs::of_file(side, format))
}

/// Runs `pg_dump -Fc -Z0` of `database` and passes its output to `sender` as it comes,
/// holding the last chunk back until pg_dump has exited successfully: only then may
/// the load see the end of its input ([`Feed::Complete`]). A load that stops reading
/// ends pg_dump (it is killed when dropped).
async fn dump_into(
    runner: &crate::clients::postgres::Runner<'_>,
    database: &str,
    sender: tokio::sync::mpsc::Sender<Feed>,
    context: &super::StepContext,
) -> Result<(), String> {
    use crate::clients::postgres::{Program, describe_command, describe_status, read_all, tail};
    use tokio::io::AsyncReadExt as _;
    let where_ = runner.connection.describe(database);
    let mut command = runner.command(Program::Dump, database).map_err(|error| error.to_string())?;
    // Compressing what goes through a local pipe costs time for nothing.
    command.args(["--format=custom", "--compress=0"]);
    let shown = describe_command(&command);
    let (mut child, tree) = crate::clients::postgres::spawn(&mut command)
        .map_err(|error| runner.cannot_start(&shown, &error).to_string())?;
    let (Some(mut stdout), stderr) = (child.stdout.take(), child.stderr.take()) else {
        return Err("pg_dump started without an output pipe".to_owned());
    };
    let progress = context.progress.clone();
    // `Ok(Some(last))`: pg_dump's output ended, its last chunk held back; `Ok(None)`:
    // the load stopped reading.
    let pass_on = async {
        let mut held: Option<Vec<u8>> = None;
        let mut total = 0_u64;
        loop {
            let mut chunk = vec![0; DUMP_CHUNK];
            let read =
                stdout.read(&mut chunk).await.map_err(|error| format!("cannot read pg_dump's output: {error}"))?;
            if read == 0 {
                return Ok(Some(held.unwrap_or_default()));
            }
            chunk.truncate(read);
            total += read as u64;
            progress.bytes(total, None);
            if let Some(previous) = held.replace(chunk)
                && sender.send(Feed::Data(previous)).await.is_err()
            {
                return Ok(None);
            }
        }
    };
    let (passed, stderr) = tokio::join!(pass_on, read_all(stderr, 256 * 1024));
    let last = match passed {
        Ok(Some(last)) => last,
        stopped => {
            // pg_dump must not wait on a pipe nobody reads.
            let _ = child.start_kill();
            let _ = child.wait().await;
            runner.log(&shown, None, &stderr);
            return stopped.map(|_| ());
        }
    };
    let status = child.wait().await.map_err(|error| format!("lost track of pg_dump: {error}"))?;
    tree.finished();
    runner.log(&shown, Some(status), &stderr);
    if !status.success() {
        return Err(runner.redact(&format!(
            "pg_dump of {where_} {}: {} (see {}.stderr.log in the run directory)",
            describe_status(status),
            tail(&runner.redact(&String::from_utf8_lossy(&stderr)), 6),
            context.step_id
        )));
    }
    if !last.is_empty() {
        let _ = sender.send(Feed::Data(last)).await;
    }
    let _ = sender.send(Feed::Complete).await;
    Ok(())
}

/// The decoded object on its way to the loading program: every chunk is passed on as
/// it comes but the last, which is held back until the object's checksum has been
/// checked ([`HeldBack::complete`]), so that the program cannot reach the end of a
/// dump that turns out bad.
struct HeldBack {
    sender: tokio::sync::mpsc::Sender<Feed>,
    held: Option<Vec<u8>>,
}

impl std::io::Write for HeldBack {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if let Some(previous) = self.held.replace(data.to_vec()) {
            self.sender.blocking_send(Feed::Data(previous)).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the loading program stopped reading")
            })?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl HeldBack {
    /// The object is verified: the last chunk goes, and the input may end.
    fn complete(mut self) {
        // A program that stopped reading reports why itself.
        if let Some(last) = self.held.take() {
            let _ = self.sender.blocking_send(Feed::Data(last));
        }
        let _ = self.sender.blocking_send(Feed::Complete);
    }
}

/// Loads what `feed` brings into the side database (`parameters.database` by now):
/// reads the first bytes for the format, then feeds psql (plain SQL, in one
/// transaction committed only once the object is verified) or pg_restore (custom or
/// tar, `--single-transaction`), or stages a custom dump to a file first when `jobs`
/// is more than 1. Returns the format loaded.
async fn load_stream(
    parameters: &Parameters,
    runner: &crate::clients::postgres::Runner<'_>,
    context: &super::StepContext,
    mut feed: tokio::sync::mpsc::Receiver<Feed>,
    location: &str,
) -> Result<DumpFormat, super::StepError> {
    let failed = super::StepError::Failed;
    let stopped = || failed(format!("the download of {location} stopped before its end"));
    let mut head = Vec::with_capacity(HEAD_LENGTH);
    let mut complete = false;
    while head.len() < HEAD_LENGTH && !complete {
        match feed.recv().await {
            Some(Feed::Data(data)) => head.extend_from_slice(&data),
            Some(Feed::Complete) => complete = true,
            None => return Err(stopped()),
        }
    }
    if complete {
        // Everything came with the first bytes: a feed that says so at once.
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        let _ = sender.try_send(Feed::Complete);
        feed = receiver;
    }
    let shown = format!("the object {location}, once decoded,");
    let format = format_of_head(&head, parameters.format, &shown, Decoder::FromS3).map_err(failed)?;
    check_options(parameters, format, location).map_err(failed)?;
    let where_ = runner.connection.describe(&parameters.database);
    match format {
        DumpFormat::Custom if parameters.jobs > 1 => {
            stage_then_restore(parameters, runner, context, head, feed, location).await?;
        }
        DumpFormat::Plain => {
            use crate::clients::postgres::{Program, describe_status};
            if parameters.jobs > 1 {
                context.progress.note("plain SQL is loaded by one psql session: `jobs` does not apply");
            }
            let mut command = runner.command(Program::Psql, &parameters.database)?;
            command
                .args(["--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--file=-"])
                .stdout(std::process::Stdio::null());
            context.progress.note(format!("loading {location} into {where_} with psql, in one transaction"));
            // One transaction, whose COMMIT is sent only once the object is verified: an
            // input that ends without it (a bad object, a killed dr-plan) commits nothing.
            let head = [b"BEGIN;\n".as_slice(), &head].concat();
            let (finished, complete) =
                runner.finish_fed(command, (head, b"\nCOMMIT;\n"), feed, None).await?;
            if !complete {
                return Err(stopped());
            }
            if !finished.status.success() {
                return Err(failed(format!(
                    "psql stopped at the first error loading {location} into {where_} ({}): {}; the load ran in one \
                     transaction, which was rolled back",
                    describe_status(finished.status),
                    finished.stderr_tail(runner, 4).replace("psql:<stdin>:", "line ")
                )));
            }
        }
        DumpFormat::Custom | DumpFormat::Tar => {
            use crate::clients::postgres::{Program, describe_status};
            let mut command = runner.command(Program::Restore, &parameters.database)?;
            command
                .args(archive_arguments(parameters, format, true))
                .arg("--single-transaction")
                .stdout(std::process::Stdio::null());
            if parameters.jobs > 1 {
                context
                    .progress
                    .note("a tar-format dump is restored with one job (pg_restore cannot read it in parallel)");
            }
            context.progress.note(format!("pg_restore of {location} into {where_}, in one transaction"));
            let progress = context.progress.clone();
            let on_line = move |line: &str| {
                if let Some(activity) = line.strip_prefix("pg_restore: ") {
                    progress.note(activity.to_owned());
                }
            };
            let (finished, complete) =
                runner.finish_fed(command, (head, b""), feed, Some(&on_line)).await?;
            if !complete {
                return Err(stopped());
            }
            if !finished.status.success() {
                return Err(failed(format!(
                    "pg_restore of {location} into {where_} {}: {}; it ran in one transaction, which was rolled back \
                     (see {}.stderr.log in the run directory)",
                    describe_status(finished.status),
                    errors_tail(&finished.stderr_tail(runner, 40)),
                    context.step_id
                )));
            }
        }
        DumpFormat::Directory => {
            return Err(failed(format!("{shown} is a directory-format dump, which cannot come as one object")));
        }
    }
    Ok(format)
}

/// A custom-format dump restored with `jobs` > 1: pg_restore -j needs a file it can
/// seek in, so the verified stream is written to `<step>.staged.dump` in the run
/// directory (readable by the operator only), restored from there, and deleted.
async fn stage_then_restore(
    parameters: &Parameters,
    runner: &crate::clients::postgres::Runner<'_>,
    context: &super::StepContext,
    head: Vec<u8>,
    mut feed: tokio::sync::mpsc::Receiver<Feed>,
    location: &str,
) -> Result<(), super::StepError> {
    use tokio::io::AsyncWriteExt as _;
    let failed = super::StepError::Failed;
    let path = context.run_dir.join(format!("{}.staged.dump", context.step_id));
    context.progress.note(format!(
        "staging {location} in {} for pg_restore -j {} (a custom-format dump needs a file to be restored in parallel)",
        path.display(),
        parameters.jobs
    ));
    let cannot_write = |error: std::io::Error| failed(format!("cannot write {}: {error}; check the free space of the run directory", path.display()));
    let staged = async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .await
            .map_err(cannot_write)?;
        file.write_all(&head).await.map_err(cannot_write)?;
        loop {
            match feed.recv().await {
                Some(Feed::Data(data)) => file.write_all(&data).await.map_err(cannot_write)?,
                Some(Feed::Complete) => break,
                None => return Err(failed(format!("the download of {location} stopped before its end"))),
            }
        }
        file.flush().await.map_err(cannot_write)
    };
    let restored = match staged.await {
        Ok(()) => restore_archive(parameters, runner, context, &path, DumpFormat::Custom, true).await,
        Err(error) => Err(error),
    };
    let _ = tokio::fs::remove_file(&path).await;
    restored
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
        assert!(check_options(&parameters, DumpFormat::Plain, "a.dump").unwrap_err().contains("Remove `clean`"));
        assert_eq!(check_options(&parameters, DumpFormat::Custom, "a.dump"), Ok(()));
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
