//! `redis.restore`: put an RDB file in place and restart and verify Redis.
//!
//! The order protects the running server: the RDB is checked (magic, end-of-file
//! opcode, CRC-64) and copied next to `dump.rdb` *before* Redis is stopped, so a bad
//! file or a full disk stops the step while Redis still serves. Then `SHUTDOWN NOSAVE`,
//! wait for the port to close, keep the old dump as `dump.rdb.before-restore`, rename
//! the copy into place, start Redis with the plan's command, wait for `PING` and count
//! the keys. Re-running it (resume after a crash) is safe: a dump already identical to
//! the backup is not moved aside again, so `.before-restore` keeps the original data.

mod rdb;
use crate::clients::redis as resp;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, Params, Preflight, StepContext, StepError, StepOutputs, step_outputs};
use crate::lang::duration::HumanDuration;
use resp::{Connection, ProtocolError, Reply};

/// Parameters of `redis.restore`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The RDB file to restore, usually `{{steps.fetch.outputs.path}}`.
    pub rdb: String,
    /// Redis's data directory (`CONFIG GET dir`), where `dump.rdb` goes.
    pub dir: String,
    /// The server, `redis://[:password@]host:port`.
    pub url: String,
    /// The command that starts Redis again after `SHUTDOWN NOSAVE`.
    pub start: Vec<String>,
    /// The restored server must hold at least this many keys.
    pub expect_keys: Option<u64>,
    /// Give up waiting for Redis after this long.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
}

fn default_deadline() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(120))
}

step_outputs! {
    /// Outputs of `redis.restore`.
    pub struct RedisRestoreOutputs {
        /// keys in the restored server, all databases (INFO keyspace)
        pub keys: u64,
        /// where the replaced dump was kept (`dump.rdb.before-restore`), or null when there was none
        pub previous_dump: Option<String>,
        /// the file the started server's output goes to
        pub log: String,
    }
}

/// What `redis.restore` declares.
pub const INFO: KindInfo = KindInfo {
    name: "redis.restore",
    argv_parameters: &["start"],
    summary: "Put an RDB file in place for Redis: SHUTDOWN NOSAVE, replace dump.rdb, start, verify keys.",
    destructive: true,
    idempotent: true,
    undo: None,
    outputs: RedisRestoreOutputs::DECLARED,
    preflight: "the server answers PING, its `dir` is `dir`, append-only is off, the start program exists",
    notes: "The RDB is verified (header and CRC-64) and copied before Redis is stopped. The password comes from \
            the URL and is sent with AUTH, never on a command line. The start command is left running when the \
            step ends (it is the server); its output goes to the run directory. Redis must not be under a \
            supervisor that restarts it by itself, and must run with `appendonly no` (an AOF would be loaded \
            instead of the RDB).",
    example: "- id: restore-redis\n  kind: redis.restore\n  with: { rdb: \"{{steps.fetch-rdb.outputs.path}}\", dir: /data, url: \"redis://127.0.0.1:6379\", start: [redis-server, /etc/redis.conf] }\n",
    role: super::Role::Restore { file: "rdb", target: &["url", "dir"], overwrite_flag: None, side: None },
    verifies: super::Verifies::WhenSet("expect_keys"),
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<RedisRestoreOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `redis.restore` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(preflight(&super::parameters(with)?).await) }),
    undo: None,
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let mut sentence = format!(
        "stop Redis at {} without saving, replace {}/dump.rdb with {}, start it with `{}`",
        with.text("url"),
        with.text("dir"),
        with.text("rdb"),
        with.text("start")
    );
    if with.has("expect_keys") {
        sentence.push_str(&format!(" and check it holds at least {} keys", with.text("expect_keys")));
    }
    sentence
}

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Progress is reported every this many bytes copied.
const PROGRESS_STEP: u64 = 16 * 1024 * 1024;

/// Why a restore stopped. Messages after Redis was stopped say how to go back.
#[derive(Debug, thiserror::Error)]
pub enum RedisRestoreError {
    /// The URL cannot be used.
    #[error("`url` {url}: {problem}")]
    Url {
        /// The URL without its password.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// A parameter is unusable.
    #[error("{0}")]
    Parameter(String),
    /// The RDB file was refused before anything changed.
    #[error("{0}; Redis was not touched")]
    Rdb(#[from] rdb::RdbError),
    /// Redis cannot be reached or refused the password.
    #[error("cannot talk to Redis at {server}: {detail}")]
    Connect {
        /// `host:port`.
        server: String,
        /// What failed.
        detail: String,
    },
    /// Redis's configuration does not fit the restore.
    #[error("Redis at {server}: {problem}; Redis was not touched")]
    Configuration {
        /// `host:port`.
        server: String,
        /// What does not fit, and what to change.
        problem: String,
    },
    /// `SHUTDOWN NOSAVE` did not stop the server.
    #[error("Redis at {server} did not shut down: {detail}; it still serves the old data")]
    Shutdown {
        /// `host:port`.
        server: String,
        /// Its answer, or how long it was waited for.
        detail: String,
    },
    /// Something failed after Redis was stopped.
    #[error("{problem}. Redis at {server} is stopped; {recovery}")]
    AfterStop {
        /// `host:port`.
        server: String,
        /// What failed.
        problem: String,
        /// How to go back.
        recovery: String,
    },
    /// The restored server holds fewer keys than expected.
    #[error(
        "Redis at {server} holds {found} keys after the restore, fewer than the {expected} expected: the backup \
         may be the wrong one or partial; {recovery}"
    )]
    TooFewKeys {
        /// `host:port`.
        server: String,
        /// Keys found.
        found: u64,
        /// `expect_keys`.
        expected: u64,
        /// How to go back.
        recovery: String,
    },
}

/// Where Redis listens and how to log in, from `redis://[[user]:password@]host[:port]`.
#[derive(Clone)]
pub struct ServerAddress {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
}

impl std::fmt::Debug for ServerAddress {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log or a message.
        write!(formatter, "ServerAddress({})", self)
    }
}

impl std::fmt::Display for ServerAddress {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}:{}", self.host, self.port)
    }
}

/// Why a connection failed.
enum ConnectFailure {
    /// Nothing listens on the port: Redis is not running.
    Refused,
    /// Anything else, said in words.
    Other(String),
}

impl ServerAddress {
    /// Parses `redis://[[user]:password@]host[:port][/db]`.
    ///
    /// # Errors
    /// Another scheme (TLS is not supported), no host, a bad port.
    pub fn parse(text: &str) -> Result<ServerAddress, RedisRestoreError> {
        let url = reqwest::Url::parse(text).map_err(|error| RedisRestoreError::Url {
            url: without_password(text),
            problem: format!("{error}; write it as redis://[:password@]host:port"),
        })?;
        let invalid = |problem: &str| RedisRestoreError::Url {
            url: without_password(text),
            problem: problem.to_owned(),
        };
        if url.scheme() != "redis" {
            return Err(invalid(
                "only `redis://` is supported (no TLS); put a TLS tunnel in front for `rediss://`",
            ));
        }
        let host =
            url.host_str().filter(|host| !host.is_empty()).ok_or_else(|| invalid("it names no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let username = Some(percent_decode(url.username())).filter(|name| !name.is_empty());
        let password = url.password().map(percent_decode);
        if username.is_some() && password.is_none() {
            return Err(invalid("it has a user but no password; write redis://user:password@host:port"));
        }
        Ok(ServerAddress { host, port: url.port().unwrap_or(6379), username, password })
    }

    async fn connect(&self) -> Result<Connection, ConnectFailure> {
        let connecting = tokio::net::TcpStream::connect((self.host.as_str(), self.port));
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(ConnectFailure::Refused);
            }
            Ok(Err(error)) => return Err(ConnectFailure::Other(error.to_string())),
            Err(_) => return Err(ConnectFailure::Other(format!("no connection within {CONNECT_TIMEOUT:?}"))),
        };
        let mut connection = Connection::new(stream, COMMAND_TIMEOUT);
        if let Some(password) = &self.password {
            let mut arguments: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(username) = &self.username {
                arguments.push(username.as_bytes());
            }
            arguments.push(password.as_bytes());
            match connection.command(&arguments).await {
                Ok(Reply::Status(_)) => {}
                Ok(Reply::Error(error)) => {
                    return Err(ConnectFailure::Other(format!(
                        "AUTH was refused ({error}); check the password in `url`"
                    )));
                }
                Ok(other) => return Err(ConnectFailure::Other(format!("AUTH answered {other:?}"))),
                Err(error) => return Err(ConnectFailure::Other(format!("AUTH failed: {error}"))),
            }
        }
        Ok(connection)
    }
}

/// Restores the RDB file.
///
/// # Errors
/// See [`RedisRestoreError`]; the message says what failed and, once Redis was
/// stopped, how to go back.
pub async fn run(parameters: Parameters, context: &StepContext) -> Result<RedisRestoreOutputs, StepError> {
    restore(&parameters, context)
        .await
        .map_err(|error| StepError::Failed(context.redactor.redact(&error.to_string())))
}

/// Checks, without changing anything, that Redis answers and fits the restore.
pub async fn preflight(parameters: &Parameters) -> Preflight {
    match check(parameters).await {
        Ok(summary) => Preflight::Passed(summary),
        Err(error) => Preflight::Failed(error.to_string()),
    }
}

async fn check(parameters: &Parameters) -> Result<String, RedisRestoreError> {
    let server = ServerAddress::parse(&parameters.url)?;
    let directory = Path::new(&parameters.dir);
    check_parameters(parameters, directory)?;
    let mut connection = match server.connect().await {
        Ok(connection) => connection,
        Err(ConnectFailure::Refused) => {
            return Err(connect_error(&server, "connection refused: is Redis running?".to_owned()));
        }
        Err(ConnectFailure::Other(detail)) => return Err(connect_error(&server, detail)),
    };
    match connection.command(&[b"PING"]).await {
        Ok(Reply::Status(pong)) if pong == "PONG" => {}
        Ok(other) => return Err(connect_error(&server, format!("PING answered {other:?}"))),
        Err(error) => return Err(connect_error(&server, format!("PING failed: {error}"))),
    }
    let file_name = check_configuration(&mut connection, &server, directory, None).await?;
    Ok(format!(
        "Redis at {server} answers PING; it keeps `{file_name}` in {}; `{}` found",
        directory.display(),
        parameters.start.first().map_or("", String::as_str)
    ))
}

fn check_parameters(parameters: &Parameters, directory: &Path) -> Result<(), RedisRestoreError> {
    if !directory.is_dir() {
        return Err(RedisRestoreError::Parameter(format!(
            "`dir` {} is not a directory; give Redis's data directory (`CONFIG GET dir`)",
            directory.display()
        )));
    }
    let Some(program) = parameters.start.first() else {
        return Err(RedisRestoreError::Parameter(
            "`start` is empty; give the command that starts Redis, e.g. [redis-server, /etc/redis/redis.conf]"
                .to_owned(),
        ));
    };
    let found = if program.contains('/') {
        Path::new(program).is_file()
    } else {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|directory| directory.join(program).is_file())
        })
    };
    if found {
        Ok(())
    } else {
        Err(RedisRestoreError::Parameter(format!(
            "`start` runs `{program}`, which is not on PATH; install it or give its full path"
        )))
    }
}

async fn restore(
    parameters: &Parameters,
    context: &StepContext,
) -> Result<RedisRestoreOutputs, RedisRestoreError> {
    let deadline = Instant::now() + parameters.deadline.get();
    let server = ServerAddress::parse(&parameters.url)?;
    let directory = Path::new(&parameters.dir);
    check_parameters(parameters, directory)?;
    let source = Path::new(&parameters.rdb);
    // A file that is not an RDB stops the step before anything else happens.
    let header = rdb::header(source)?;

    let mut running = connect_if_running(&server, context).await?;
    let file_name = match &mut running {
        Some(connection) => check_configuration(connection, &server, directory, Some(context)).await?,
        None => "dump.rdb".to_owned(),
    };
    let paths = DumpPaths::in_directory(directory, &file_name);

    context.progress.note(format!("checking and copying {} to {}", source.display(), paths.partial.display()));
    let bytes = copy_in_place(source, &paths.partial, header, context).await?;

    if let Some(connection) = running {
        shut_down(connection, &server, context).await?;
        wait_until_closed(&server, deadline).await?;
    }

    let previous_dump = put_restored_dump_in_place(&paths, &server)?;
    let recovery = match &previous_dump {
        Some(kept) => format!("to go back, move {} to {} and start Redis", kept.display(), paths.target.display()),
        None => format!("there was no previous {} to go back to", paths.target.display()),
    };

    let log = context.run_dir.join(format!("{}.redis-server.log", context.step_id));
    let keys = start_and_count_keys(parameters, &server, deadline, &log, &recovery, context).await?;
    if let Some(expected) = parameters.expect_keys
        && keys < expected
    {
        return Err(RedisRestoreError::TooFewKeys {
            server: server.to_string(),
            found: keys,
            expected,
            recovery,
        });
    }
    context.progress.note(format!("Redis at {server} serves {keys} keys from a {bytes}-byte RDB"));

    Ok(RedisRestoreOutputs {
        keys,
        previous_dump: previous_dump.map(|path| path.display().to_string()),
        log: log.display().to_string(),
    })
}

/// A connection to the server, or `None` when nothing listens (Redis is not running).
async fn connect_if_running(
    server: &ServerAddress,
    context: &StepContext,
) -> Result<Option<Connection>, RedisRestoreError> {
    match server.connect().await {
        Ok(connection) => Ok(Some(connection)),
        Err(ConnectFailure::Refused) => {
            context.progress.note(format!(
                "nothing listens at {server}: Redis is not running (an earlier attempt may have stopped it); \
                 restoring without a shutdown"
            ));
            Ok(None)
        }
        Err(ConnectFailure::Other(detail)) => Err(connect_error(server, detail)),
    }
}

/// The files of a restore in the server's directory.
struct DumpPaths {
    /// The dump the server loads.
    target: PathBuf,
    /// The restored dump, copied and checked before the server is stopped.
    partial: PathBuf,
    /// Where the dump the server held is kept.
    kept: PathBuf,
}

impl DumpPaths {
    fn in_directory(directory: &Path, file_name: &str) -> DumpPaths {
        DumpPaths {
            target: directory.join(file_name),
            partial: directory.join(format!("{file_name}.partial")),
            kept: directory.join(format!("{file_name}.before-restore")),
        }
    }
}

/// With the server stopped: swaps the restored dump in, keeping the one it held (its
/// path is returned, if there was one).
fn put_restored_dump_in_place(paths: &DumpPaths, server: &ServerAddress) -> Result<Option<PathBuf>, RedisRestoreError> {
    let recovery_before_swap =
        format!("{} is unchanged: start Redis as before to serve the old data", paths.target.display());
    swap(&paths.target, &paths.partial, &paths.kept).map_err(|detail| RedisRestoreError::AfterStop {
        server: server.to_string(),
        problem: format!("cannot put the restored dump in place: {detail}"),
        recovery: recovery_before_swap,
    })
}

/// Starts the server on the restored dump, waits until it serves, and counts its keys;
/// a failure says how to go back (`recovery`).
async fn start_and_count_keys(
    parameters: &Parameters,
    server: &ServerAddress,
    deadline: Instant,
    log: &Path,
    recovery: &str,
    context: &StepContext,
) -> Result<u64, RedisRestoreError> {
    context.progress.note(format!("starting Redis: {}", parameters.start.join(" ")));
    let mut child = start(&parameters.start, log).map_err(|problem| RedisRestoreError::AfterStop {
        server: server.to_string(),
        problem,
        recovery: recovery.to_owned(),
    })?;
    let mut connection =
        wait_until_ready(server, &mut child, deadline, log, context).await.map_err(|problem| {
            RedisRestoreError::AfterStop { server: server.to_string(), problem, recovery: recovery.to_owned() }
        })?;
    count_keys(&mut connection).await.map_err(|problem| RedisRestoreError::AfterStop {
        server: server.to_string(),
        problem,
        recovery: recovery.to_owned(),
    })
}

/// Reads `dir`, `dbfilename` and `appendonly`; returns the dump's file name.
async fn check_configuration(
    connection: &mut Connection,
    server: &ServerAddress,
    directory: &Path,
    context: Option<&StepContext>,
) -> Result<String, RedisRestoreError> {
    let configuration_error =
        |problem: String| RedisRestoreError::Configuration { server: server.to_string(), problem };
    let Some(configured) = config_get(connection, server, "dir").await? else {
        // Managed Redis often renames CONFIG away; the plan's `dir` is then trusted.
        if let Some(context) = context {
            context.progress.note(format!(
                "Redis at {server} does not answer CONFIG GET: trusting `dir` {}",
                directory.display()
            ));
        }
        return Ok("dump.rdb".to_owned());
    };
    let same_directory = match (std::fs::canonicalize(&configured), std::fs::canonicalize(directory)) {
        (Ok(configured), Ok(given)) => configured == given,
        _ => Path::new(&configured) == directory,
    };
    if !same_directory {
        return Err(configuration_error(format!(
            "it keeps its data in {configured}, not in `dir` {}; set `dir` to {configured} (or restore into the \
             server that uses {})",
            directory.display(),
            directory.display()
        )));
    }
    if config_get(connection, server, "appendonly").await?.as_deref() == Some("yes") {
        return Err(configuration_error(
            "`appendonly` is on, so Redis would load its AOF at start and ignore the restored RDB; start it with \
             `--appendonly no` for the restore (CONFIG SET appendonly yes afterwards rewrites the AOF from the \
             restored data)"
                .to_owned(),
        ));
    }
    Ok(config_get(connection, server, "dbfilename").await?.unwrap_or_else(|| "dump.rdb".to_owned()))
}

/// `CONFIG GET name`, or `None` when CONFIG is refused.
async fn config_get(
    connection: &mut Connection,
    server: &ServerAddress,
    name: &str,
) -> Result<Option<String>, RedisRestoreError> {
    let reply = connection
        .command(&[b"CONFIG", b"GET", name.as_bytes()])
        .await
        .map_err(|error| connect_error(server, format!("CONFIG GET {name} failed: {error}")))?;
    match reply {
        Reply::Array(Some(items)) if items.len() == 2 => Ok(items[1].text()),
        Reply::Array(_) | Reply::Error(_) => Ok(None),
        other => Err(connect_error(server, format!("CONFIG GET {name} answered {other:?}"))),
    }
}

async fn copy_in_place(
    source: &Path,
    partial: &Path,
    header: rdb::Header,
    context: &StepContext,
) -> Result<u64, RedisRestoreError> {
    let (source, partial) = (source.to_path_buf(), partial.to_path_buf());
    let progress = context.progress.clone();
    tokio::task::spawn_blocking(move || {
        let mut reported = 0;
        rdb::copy_verified(&source, &partial, header, |done, total| {
            if done == total || done >= reported + PROGRESS_STEP {
                reported = done;
                progress.bytes(done, Some(total));
            }
        })
    })
    .await
    .map_err(|error| RedisRestoreError::Parameter(format!("the copy of the RDB file stopped: {error}")))?
    .map_err(RedisRestoreError::from)
}

async fn shut_down(
    mut connection: Connection,
    server: &ServerAddress,
    context: &StepContext,
) -> Result<(), RedisRestoreError> {
    context.progress.note(format!("stopping Redis at {server} (SHUTDOWN NOSAVE)"));
    match connection.command(&[b"SHUTDOWN", b"NOSAVE"]).await {
        // A server that shuts down closes the connection without answering.
        Err(error) if error.is_closed() => Ok(()),
        // A slow shutdown: whether it happened is decided by the port closing.
        Err(ProtocolError::Timeout(_)) => Ok(()),
        Err(error) => {
            Err(RedisRestoreError::Shutdown { server: server.to_string(), detail: error.to_string() })
        }
        Ok(Reply::Error(error)) => Err(RedisRestoreError::Shutdown {
            server: server.to_string(),
            detail: format!("it answered `{error}`; see its log"),
        }),
        Ok(other) => Err(RedisRestoreError::Shutdown {
            server: server.to_string(),
            detail: format!("it answered {other:?} instead of closing the connection"),
        }),
    }
}

async fn wait_until_closed(server: &ServerAddress, deadline: Instant) -> Result<(), RedisRestoreError> {
    let started = Instant::now();
    loop {
        let connecting = tokio::net::TcpStream::connect((server.host.as_str(), server.port));
        match tokio::time::timeout(Duration::from_secs(1), connecting).await {
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(()),
            Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(RedisRestoreError::Shutdown {
                server: server.to_string(),
                detail: format!(
                    "its port still accepts connections {} after SHUTDOWN NOSAVE (is a supervisor restarting it?)",
                    crate::lang::duration::format_duration(started.elapsed())
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Keeps the old dump as `.before-restore` and renames the verified copy into place.
/// A dump identical to the copy is the restored one from an earlier attempt: it is not
/// moved aside, so `.before-restore` keeps the data from before the first attempt.
fn swap(target: &Path, partial: &Path, kept: &Path) -> Result<Option<PathBuf>, String> {
    let describe = |what: &str, error: std::io::Error| format!("{what}: {error}");
    if target.exists() {
        let identical = rdb::same_content(target, partial)
            .map_err(|error| describe(&format!("cannot compare {}", target.display()), error))?;
        if identical {
            std::fs::remove_file(partial)
                .map_err(|error| describe(&format!("cannot remove {}", partial.display()), error))?;
            return Ok(kept.exists().then(|| kept.to_path_buf()));
        }
        std::fs::rename(target, kept).map_err(|error| {
            describe(&format!("cannot move {} to {}", target.display(), kept.display()), error)
        })?;
    }
    std::fs::rename(partial, target).map_err(|error| {
        describe(&format!("cannot move {} to {}", partial.display(), target.display()), error)
    })?;
    if let Some(directory) = target.parent() {
        std::fs::File::open(directory)
            .and_then(|directory| directory.sync_all())
            .map_err(|error| describe(&format!("cannot sync {}", directory.display()), error))?;
    }
    Ok(kept.exists().then(|| kept.to_path_buf()))
}

/// Starts the server in its own process group, detached from the step: it must outlive
/// the step and dr-plan, and an operator's Ctrl-C to dr-plan must not stop it.
fn start(command: &[String], log: &Path) -> Result<tokio::process::Child, String> {
    let Some((program, arguments)) = command.split_first() else {
        return Err("`start` is empty".to_owned());
    };
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|error| format!("cannot open the server log {}: {error}", log.display()))?;
    let errors = output.try_clone().map_err(|error| format!("cannot share {}: {error}", log.display()))?;
    tokio::process::Command::new(program)
        .args(arguments)
        .stdin(std::process::Stdio::null())
        .stdout(output)
        .stderr(errors)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(|error| format!("cannot run `{}`: {error}", command.join(" ")))
}

async fn wait_until_ready(
    server: &ServerAddress,
    child: &mut tokio::process::Child,
    deadline: Instant,
    log: &Path,
    context: &StepContext,
) -> Result<Connection, String> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    let mut last = String::from("nothing listens yet");
    loop {
        if let Ok(Some(status)) = child.try_wait()
            && !status.success()
        {
            return Err(format!("the start command exited with {status}; {}", log_tail(log)));
        }
        match server.connect().await {
            Ok(mut connection) => match connection.command(&[b"PING"]).await {
                Ok(Reply::Status(pong)) if pong == "PONG" => {
                    // A start command that failed while something else took the port
                    // (a supervisor's restart) means the server answering is not ours.
                    if let Ok(Some(status)) = child.try_wait()
                        && !status.success()
                    {
                        return Err(format!(
                            "the start command exited with {status} and another server answers at {server}; \
                             {}",
                            log_tail(log)
                        ));
                    }
                    return Ok(connection);
                }
                Ok(Reply::Error(error)) if error.starts_with("LOADING") => {
                    context.progress.note(format!("Redis at {server} is loading the RDB"));
                    last = error;
                }
                Ok(other) => last = format!("PING answered {other:?}"),
                Err(error) => last = format!("PING failed: {error}"),
            },
            Err(ConnectFailure::Refused) => {}
            Err(ConnectFailure::Other(detail)) => last = detail,
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "Redis did not answer PING within {} of starting ({last}); {}",
                crate::lang::duration::format_duration(Duration::from_secs(started.elapsed().as_secs())),
                log_tail(log)
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// The keys of every database, from `INFO keyspace` (`db0:keys=3,expires=0,...`).
async fn count_keys(connection: &mut Connection) -> Result<u64, String> {
    let reply = connection
        .command(&[b"INFO", b"keyspace"])
        .await
        .map_err(|error| format!("INFO keyspace failed: {error}"))?;
    let text = reply.text().ok_or_else(|| format!("INFO keyspace answered {reply:?}"))?;
    let mut keys = 0_u64;
    for line in text.lines().filter(|line| line.starts_with("db")) {
        let count = line
            .split_once(':')
            .and_then(|(_, fields)| fields.split(',').find_map(|field| field.strip_prefix("keys=")))
            .and_then(|count| count.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("cannot read the key count in `{line}`"))?;
        keys += count;
    }
    Ok(keys)
}

fn connect_error(server: &ServerAddress, detail: String) -> RedisRestoreError {
    RedisRestoreError::Connect { server: server.to_string(), detail }
}

/// The last lines of the server log, for error messages.
fn log_tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
            let tail = &lines[lines.len().saturating_sub(5)..];
            format!("last lines of {}: {}", log.display(), tail.join(" / "))
        }
        Err(error) => format!("no server log at {} ({error})", log.display()),
    }
}

/// The URL with any password replaced by `***`, for messages.
fn without_password(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((credentials, host)) => {
                let user = credentials.split_once(':').map_or("", |(user, _)| user);
                format!("{scheme}://{user}:***@{host}")
            }
            None => text.to_owned(),
        },
        None => text.to_owned(),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 16).ok());
        match hex {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_credentials() {
        let plain = ServerAddress::parse("redis://127.0.0.1:6380").expect("valid");
        assert_eq!((plain.host.as_str(), plain.port, plain.password.as_deref()), ("127.0.0.1", 6380, None));
        let with_password = ServerAddress::parse("redis://:s%40cret@cache.internal/0").expect("valid");
        assert_eq!(with_password.port, 6379);
        assert_eq!(with_password.password.as_deref(), Some("s@cret"));
        assert_eq!(with_password.username, None);
        let with_user = ServerAddress::parse("redis://restore:pw@[::1]:7000").expect("valid");
        assert_eq!((with_user.host.as_str(), with_user.username.as_deref()), ("::1", Some("restore")));
        assert_eq!(format!("{with_user:?}"), "ServerAddress(::1:7000)");
    }

    #[test]
    fn bad_urls_are_refused_without_showing_the_password() {
        let error = ServerAddress::parse("rediss://:hunter2@cache:6379").expect_err("TLS");
        let message = error.to_string();
        assert!(message.contains("only `redis://`"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(ServerAddress::parse("redis://user@cache").is_err());
    }

    #[test]
    fn a_restored_dump_is_not_moved_aside_twice() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let target = directory.path().join("dump.rdb");
        let partial = directory.path().join("dump.rdb.partial");
        let kept = directory.path().join("dump.rdb.before-restore");
        std::fs::write(&target, b"old").expect("write");
        std::fs::write(&partial, b"new").expect("write");
        assert_eq!(swap(&target, &partial, &kept).expect("swapped"), Some(kept.clone()));
        assert_eq!(std::fs::read(&target).expect("read"), b"new");
        assert_eq!(std::fs::read(&kept).expect("read"), b"old");
        // A second attempt with the same backup keeps the original data aside.
        std::fs::write(&partial, b"new").expect("write");
        assert_eq!(swap(&target, &partial, &kept).expect("swapped"), Some(kept.clone()));
        assert_eq!(std::fs::read(&kept).expect("read"), b"old");
        assert!(!partial.exists());
    }
}
