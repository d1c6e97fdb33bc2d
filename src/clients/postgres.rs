//! What the `pg.*` kinds share: the connection (a libpq URL or keyword string, or the
//! `PG*` environment), finding and running the libpq programs (`pg_dump`,
//! `pg_restore`, `psql`), and their error messages and logs.
//!
//! Passwords never reach a child's argv, where `ps` would show them: a password in the
//! `connection` text is taken out of the connection string and given to the child as
//! `PGPASSWORD` in its environment.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt as _;

use super::ClientError;

/// The database every server has, used for server-wide statements (terminating
/// sessions, creating and dropping databases).
pub(crate) const MAINTENANCE_DATABASE: &str = "postgres";

/// The connect timeout given to children when neither the environment nor the
/// connection sets one: libpq's default is to wait forever.
const DEFAULT_CONNECT_TIMEOUT_SECONDS: &str = "30";

/// What a dry-run renders a secret as.
const SECRET_PLACEHOLDER: &str = "***";

/// How long a preflight or reachability check may wait for the server.
const CHECK_CONNECT_TIMEOUT_SECONDS: &str = "5";

/// The whole reachability check, connection and query, is bounded by this.
const CHECK_DEADLINE: Duration = Duration::from_secs(15);

/// How much of a child's standard error is kept in memory for the error message (the
/// log keeps the same; a restore that fails on every object can print megabytes).
const STDERR_LIMIT: usize = 256 * 1024;

/// How a step reaches the server: the connection string (without its password, and
/// without a database, which each command adds) and the password taken out of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Connection {
    form: ConnectionForm,
    password: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ConnectionForm {
    /// No `connection:`: the `PG*` environment applies.
    Environment,
    /// `postgresql://[user@]hosts[?query]` with the password, the path (database) and
    /// the `password`/`dbname` query parameters removed.
    Url { prefix: String, query: Vec<String> },
    /// `keyword=value` pairs, without `password` and `dbname`.
    Keywords(Vec<(String, String)>),
}

impl Connection {
    /// Reads the `connection:` parameter (absent or blank: the `PG*` environment).
    ///
    /// # Errors
    /// A sentence saying what is malformed and what the accepted forms are (never the
    /// password).
    pub(crate) fn parse(text: Option<&str>) -> Result<Connection, String> {
        let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) else {
            return Ok(Connection { form: ConnectionForm::Environment, password: None });
        };
        if let Some(rest) = text.strip_prefix("postgresql://").or_else(|| text.strip_prefix("postgres://")) {
            let scheme = &text[..text.len() - rest.len()];
            return parse_url(scheme, rest);
        }
        if text.contains('=') {
            return parse_keywords(text);
        }
        Err("`connection` is neither a libpq URL (`postgresql://user@host:5432`) nor a keyword string \
             (`host=db.internal port=5432 user=restore`); write it in one of these forms, or leave it out \
             to use the PG* environment (PGHOST, PGPORT, PGUSER, PGPASSWORD)"
            .to_owned())
    }

    /// The password given in `connection`, which children get as `PGPASSWORD`.
    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The connection string for `database`, safe for argv: no password.
    pub(crate) fn for_database(&self, database: &str) -> String {
        match &self.form {
            ConnectionForm::Environment => keyword_pair("dbname", database),
            ConnectionForm::Url { prefix, query } => {
                let mut url = format!("{prefix}/{}", percent_encode(database));
                if !query.is_empty() {
                    url.push('?');
                    url.push_str(&query.join("&"));
                }
                url
            }
            ConnectionForm::Keywords(pairs) => {
                let mut parts: Vec<String> =
                    pairs.iter().map(|(key, value)| keyword_pair(key, value)).collect();
                parts.push(keyword_pair("dbname", database));
                parts.join(" ")
            }
        }
    }

    /// Where `database` is, for messages: `database tododb on postgresql://app@db:5432`
    /// or `database tododb (PGHOST=db PGPORT=5432)`; never the password.
    pub(crate) fn describe(&self, database: &str) -> String {
        match &self.form {
            ConnectionForm::Environment => {
                let variables: Vec<String> = ["PGHOST", "PGPORT", "PGUSER", "PGSERVICE"]
                    .into_iter()
                    .filter_map(|name| {
                        std::env::var(name)
                            .ok()
                            .filter(|value| !value.is_empty())
                            .map(|value| format!("{name}={value}"))
                    })
                    .collect();
                if variables.is_empty() {
                    format!("database {database} (libpq defaults: local socket, port 5432)")
                } else {
                    format!("database {database} ({})", variables.join(" "))
                }
            }
            ConnectionForm::Url { prefix, .. } => format!("database {database} on {prefix}"),
            ConnectionForm::Keywords(pairs) => {
                let shown: Vec<String> = pairs
                    .iter()
                    .filter(|(key, _)| {
                        matches!(key.as_str(), "host" | "hostaddr" | "port" | "user" | "service")
                    })
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect();
                if shown.is_empty() {
                    format!("database {database}")
                } else {
                    format!("database {database} on {}", shown.join(" "))
                }
            }
        }
    }
}

fn parse_url(scheme: &str, rest: &str) -> Result<Connection, String> {
    // libpq ends the user information at the first `@` before the path.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, after_authority) = rest.split_at(authority_end);
    let (user, hosts) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let mut password = None;
    let user = user.map(|user| match user.split_once(':') {
        Some((name, secret)) => {
            password = Some(percent_decode(secret));
            name
        }
        None => user,
    });
    let query_text = after_authority.split_once('?').map_or("", |(_, query)| query);
    let mut query = Vec::new();
    for parameter in query_text.split('&').filter(|parameter| !parameter.is_empty()) {
        let (key, value) = parameter.split_once('=').ok_or_else(|| {
            format!(
                "`connection` URL has a query parameter without `=` (`{}`); write parameters as `?key=value&key=value`",
                if parameter.contains("password") { "password…" } else { parameter }
            )
        })?;
        match percent_decode(key).as_str() {
            "password" => password = Some(percent_decode(value)),
            // The step's `database` is the database; the URL's would override it.
            "dbname" => {}
            _ => query.push(parameter.to_owned()),
        }
    }
    let prefix = match user {
        Some(user) if !user.is_empty() => format!("{scheme}{user}@{hosts}"),
        Some(_) | None => format!("{scheme}{hosts}"),
    };
    Ok(Connection {
        form: ConnectionForm::Url { prefix, query },
        password: password.filter(|value| !value.is_empty()),
    })
}

fn parse_keywords(text: &str) -> Result<Connection, String> {
    let mut pairs = Vec::new();
    let mut password = None;
    let mut characters = text.chars().peekable();
    loop {
        while characters.next_if(|character| character.is_whitespace()).is_some() {}
        if characters.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(character) =
            characters.next_if(|character| *character != '=' && !character.is_whitespace())
        {
            key.push(character);
        }
        while characters.next_if(|character| character.is_whitespace()).is_some() {}
        if characters.next() != Some('=') {
            return Err(format!(
                "`connection` keyword `{key}` has no `=value`; write `key=value` pairs separated by spaces, \
                 quoting values that contain spaces: `password='a b'`"
            ));
        }
        while characters.next_if(|character| character.is_whitespace()).is_some() {}
        let mut value = String::new();
        if characters.next_if_eq(&'\'').is_some() {
            loop {
                match characters.next() {
                    Some('\\') => value.extend(characters.next()),
                    Some('\'') => break,
                    Some(character) => value.push(character),
                    None => {
                        return Err(format!(
                            "`connection` value of `{key}` opens a quote that never closes; end it with `'` \
                             (write `\\'` for a quote inside the value)"
                        ));
                    }
                }
            }
        } else {
            while let Some(character) = characters.next_if(|character| !character.is_whitespace()) {
                if character == '\\' {
                    value.extend(characters.next());
                } else {
                    value.push(character);
                }
            }
        }
        match key.as_str() {
            "password" => password = Some(value).filter(|value| !value.is_empty()),
            "dbname" => {}
            _ => pairs.push((key, value)),
        }
    }
    Ok(Connection { form: ConnectionForm::Keywords(pairs), password })
}

/// `key='value'`, quoted the way libpq reads it.
fn keyword_pair(key: &str, value: &str) -> String {
    format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(byte) =
                text.get(index + 1..index + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            decoded.push(byte);
            index += 3;
            continue;
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// One of the libpq programs the kinds run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Program {
    /// `pg_dump`
    Dump,
    /// `pg_restore`
    Restore,
    /// `psql`
    Psql,
}

impl Program {
    /// The program's file name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Program::Dump => "pg_dump",
            Program::Restore => "pg_restore",
            Program::Psql => "psql",
        }
    }

    /// The program on PATH, else in the newest `/usr/lib/postgresql/<version>/bin`
    /// (where Debian installs it without putting every program on PATH).
    pub(crate) fn locate(self) -> Result<PathBuf, ClientError> {
        let name = self.name();
        let on_path = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|directory| directory.join(name))
                .find(|candidate| candidate.is_file())
        });
        if let Some(found) = on_path {
            return Ok(found);
        }
        let newest = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version: u32 = entry.file_name().to_str()?.parse().ok()?;
                let candidate = entry.path().join("bin").join(name);
                candidate.is_file().then_some((version, candidate))
            })
            .max_by_key(|(version, _)| *version);
        newest.map(|(_, path)| path).ok_or_else(|| {
            ClientError(format!(
                "`{name}` is neither on PATH nor in /usr/lib/postgresql/<version>/bin; install the PostgreSQL \
                 client programs (Debian/Ubuntu: postgresql-client) or put their directory on PATH"
            ))
        })
    }
}

/// Runs libpq programs for one step: the connection, the step's context (for the
/// redactor and the stderr log), and the child processes' common settings.
pub(crate) struct Runner<'a> {
    /// The connection.
    pub(crate) connection: &'a Connection,
    redactor: &'a crate::lang::secret::Redactor,
    /// `application_name` of the sessions, so they can be told apart in `pg_stat_activity`.
    application_name: String,
    /// `<run_dir>/<step>.stderr.log`; none for a preflight, which has no run directory.
    log_path: Option<PathBuf>,
}

/// How a child ended.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

impl Finished {
    /// The last lines of standard error, redacted, for an error message. Redacted
    /// before the lines are picked and joined, which would split a multi-line secret.
    pub(crate) fn stderr_tail(&self, runner: &Runner<'_>, lines: usize) -> String {
        tail(&runner.redact(&String::from_utf8_lossy(&self.stderr)), lines)
    }
}

impl<'a> Runner<'a> {
    /// A runner for step `step_id` of the run in `run_dir`, which appends the programs'
    /// redacted standard error to `<run_dir>/<step>.stderr.log`.
    pub(crate) fn new(
        connection: &'a Connection,
        redactor: &'a crate::lang::secret::Redactor,
        step_id: &str,
        run_dir: &std::path::Path,
    ) -> Runner<'a> {
        Runner {
            connection,
            redactor,
            application_name: format!("dr-plan {step_id}"),
            log_path: Some(run_dir.join(format!("{step_id}.stderr.log"))),
        }
    }

    /// The same runner, its sessions named `name` (cut to the 63 bytes PostgreSQL keeps),
    /// so that they can be found again in `pg_stat_activity` (see
    /// [`Runner::end_own_sessions`]).
    pub(crate) fn named(self, name: &str) -> Runner<'a> {
        let mut name = name.to_owned();
        while name.len() > 63 {
            name.pop();
        }
        Runner { application_name: name, ..self }
    }

    /// Ends the other sessions that carry this runner's name (a psql killed while its
    /// statement waited for a lock leaves its server session waiting), and waits up to
    /// `patience` until they are gone. Returns how many were ended.
    pub(crate) async fn end_own_sessions(&self, patience: Duration) -> Result<u32, String> {
        let variables = [("name", self.application_name.as_str())];
        let options = || PsqlOptions { variables: &variables, ..PsqlOptions::default() };
        let own = "application_name = :'name' and pid <> pg_backend_pid()";
        let ended = self
            .psql(
                MAINTENANCE_DATABASE,
                &format!("select count(pg_terminate_backend(pid)) from pg_stat_activity where {own}"),
                options(),
            )
            .await
            .map_err(|error| format!("cannot end the sessions named `{}`: {error}", self.application_name))?
            .single()
            .unwrap_or_default();
        let stop_at = tokio::time::Instant::now() + patience;
        loop {
            let left = self
                .psql(
                    MAINTENANCE_DATABASE,
                    &format!("select count(*) from pg_stat_activity where {own}"),
                    options(),
                )
                .await
                .map_err(|error| {
                    format!("cannot list the sessions named `{}`: {error}", self.application_name)
                })?
                .single()
                .unwrap_or_default();
            if left == "0" || tokio::time::Instant::now() >= stop_at {
                return Ok(ended.parse().unwrap_or(0));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A runner that keeps no log, for checks made outside a run.
    pub(crate) fn without_log(
        connection: &'a Connection,
        redactor: &'a crate::lang::secret::Redactor,
    ) -> Runner<'a> {
        Runner { connection, redactor, application_name: "dr-plan preflight".to_owned(), log_path: None }
    }

    /// `text` without secrets: the plan's (through the run's redactor) and the
    /// connection's password.
    pub(crate) fn redact(&self, text: &str) -> String {
        redact(self.connection, self.redactor, text)
    }

    /// A command for `program` against `database`: the connection string in `--dbname`,
    /// the password in the environment, a connect timeout, stdin closed, output piped,
    /// and killed when dropped (a timed-out or interrupted step leaves nothing running).
    pub(crate) fn command(
        &self,
        program: Program,
        database: &str,
    ) -> Result<tokio::process::Command, ClientError> {
        let mut command = base_command(program.locate()?, self.connection, database);
        command.env("PGAPPNAME", &self.application_name);
        Ok(command)
    }

    /// Runs `command` to the end, feeding it `input`, and appends its redacted
    /// standard error to the step's log. `on_stderr_line` sees each line of standard
    /// error as it comes (for progress).
    pub(crate) async fn finish(
        &self,
        mut command: tokio::process::Command,
        input: Input<'_>,
        on_stderr_line: Option<&(dyn Fn(&str) + Sync)>,
    ) -> Result<Finished, ClientError> {
        command.stdin(if matches!(input, Input::None) { Stdio::null() } else { Stdio::piped() });
        let shown = describe_command(&command);
        let (mut child, tree) = spawn(&mut command).map_err(|error| self.cannot_start(&shown, &error))?;
        let feed = feed(child.stdin.take(), input);
        let stdout = read_all(child.stdout.take(), usize::MAX);
        let stderr = read_lines(child.stderr.take(), STDERR_LIMIT, on_stderr_line);
        let (fed, stdout, stderr) = tokio::join!(feed, stdout, stderr);
        let status = child
            .wait()
            .await
            .map_err(|error| ClientError(self.redact(&format!("lost track of `{shown}`: {error}"))))?;
        tree.finished();
        self.log(&shown, Some(status), &stderr);
        fed?;
        Ok(Finished { status, stdout, stderr })
    }

    /// Runs `command` to the end with its standard input fed as it comes: `head`, then
    /// every [`Feed::Data`] of `feed`, then `epilogue` once `feed` says the input is
    /// complete ([`Feed::Complete`]). When `feed` ends without saying so (its sender was
    /// dropped: the data turned out bad), the program and its process tree are killed
    /// before its standard input is closed, so that it never reads an end of input and
    /// never finishes (commits) a load that was cut short. Returns how the child ended
    /// and whether its input was complete. A child that stops reading early (an error)
    /// closes `feed`, so its sender learns at once.
    pub(crate) async fn finish_fed(
        &self,
        mut command: tokio::process::Command,
        (head, epilogue): (Vec<u8>, &[u8]),
        mut feed: tokio::sync::mpsc::Receiver<Feed>,
        on_stderr_line: Option<&(dyn Fn(&str) + Sync)>,
    ) -> Result<(Finished, bool), ClientError> {
        use tokio::io::AsyncWriteExt as _;
        command.stdin(Stdio::piped());
        let shown = describe_command(&command);
        let (mut child, tree) = spawn(&mut command).map_err(|error| self.cannot_start(&shown, &error))?;
        let pipe = child.stdin.take();
        let feeding = async move {
            let Some(mut pipe) = pipe else { return (false, Some(tree)) };
            if pipe.write_all(&head).await.is_err() {
                return (false, Some(tree));
            }
            loop {
                match feed.recv().await {
                    Some(Feed::Data(data)) => {
                        if pipe.write_all(&data).await.is_err() {
                            // The child stopped reading; its exit status says why.
                            return (false, Some(tree));
                        }
                    }
                    Some(Feed::Complete) => {
                        let _ = pipe.write_all(epilogue).await;
                        return (true, Some(tree));
                    }
                    None => {
                        // Killed while its standard input is still open.
                        drop(tree);
                        return (false, None);
                    }
                }
            }
        };
        let stdout = read_all(child.stdout.take(), usize::MAX);
        let stderr = read_lines(child.stderr.take(), STDERR_LIMIT, on_stderr_line);
        let ((complete, tree), stdout, stderr) = tokio::join!(feeding, stdout, stderr);
        let status = child
            .wait()
            .await
            .map_err(|error| ClientError(self.redact(&format!("lost track of `{shown}`: {error}"))))?;
        if let Some(tree) = tree {
            tree.finished();
        }
        self.log(&shown, Some(status), &stderr);
        Ok((Finished { status, stdout, stderr }, complete))
    }

    /// Appends a child's redacted standard error to `<run_dir>/<step>.stderr.log`,
    /// after the command line and its exit status.
    pub(crate) fn log(&self, shown: &str, status: Option<ExitStatus>, stderr: &[u8]) {
        let outcome = match status {
            Some(status) => describe_status(status),
            None => "did not finish".to_owned(),
        };
        let text = format!(
            "$ {shown}\n{}[{outcome}]\n",
            String::from_utf8_lossy(stderr).trim_end_matches('\n').to_owned()
                + if stderr.is_empty() { "" } else { "\n" }
        );
        let Some(path) = &self.log_path else { return };
        // The log is for diagnosis; a step does not fail because it cannot be written.
        if let Some(directory) = path.parent() {
            let _ = std::fs::create_dir_all(directory);
        }
        if let Ok(mut file) = crate::sys::files::append_private(path) {
            let _ = file.write_all(self.redact(&text).as_bytes());
        }
    }

    /// The error for a program that could not be started.
    pub(crate) fn cannot_start(&self, shown: &str, error: &std::io::Error) -> ClientError {
        ClientError(self.redact(&format!(
            "cannot start `{shown}`: {error}; check that the PostgreSQL client programs are installed"
        )))
    }

    /// Runs SQL with `psql` (from standard input, so neither the SQL nor psql
    /// variables appear in argv) and returns what it printed as rows of fields.
    /// Statements stop at the first error (`ON_ERROR_STOP`).
    pub(crate) async fn psql(
        &self,
        database: &str,
        sql: &str,
        options: PsqlOptions<'_>,
    ) -> Result<Rows, PsqlError> {
        let mut command = self.command(Program::Psql, database).map_err(PsqlError::Start)?;
        command.args(PSQL_ARGUMENTS);
        if options.single_transaction {
            command.arg("--single-transaction");
        }
        for (name, value) in options.variables {
            command.arg("--set").arg(format!("{name}={value}"));
        }
        if let Some(seconds) = options.connect_timeout {
            command.env("PGCONNECT_TIMEOUT", seconds);
        }
        let finished =
            self.finish(command, Input::Bytes(sql.as_bytes()), None).await.map_err(PsqlError::Start)?;
        if finished.status.success() {
            Ok(Rows::parse(&finished.stdout))
        } else {
            Err(PsqlError::Failed { status: finished.status, stderr: finished.stderr_tail(self, 8) })
        }
    }

    /// Checks that the server answers and `database` exists, within a few seconds;
    /// returns the server version.
    pub(crate) async fn check_reachable(&self, database: &str) -> Result<String, String> {
        let query = self.psql(
            database,
            "select current_setting('server_version')",
            PsqlOptions { connect_timeout: Some(CHECK_CONNECT_TIMEOUT_SECONDS), ..PsqlOptions::default() },
        );
        let where_ = self.connection.describe(database);
        match tokio::time::timeout(CHECK_DEADLINE, query).await {
            Err(_) => Err(format!(
                "{where_} did not answer within {}s; check the host, port and firewall, and that the server is up",
                CHECK_DEADLINE.as_secs()
            )),
            Ok(Ok(rows)) => Ok(rows.single().unwrap_or_default()),
            Ok(Err(PsqlError::Start(error))) => Err(error.to_string()),
            Ok(Err(PsqlError::Failed { stderr, .. })) => {
                Err(explain_connection_failure(&where_, database, &stderr))
            }
        }
    }
}

/// Turns psql's connection error into what to do.
pub(crate) fn explain_connection_failure(where_: &str, database: &str, stderr: &str) -> String {
    let advice = if stderr.contains(&format!("database \"{database}\" does not exist")) {
        "the database does not exist: create it, or restore with `create: true`"
    } else if stderr.contains("password authentication failed") || stderr.contains("no password supplied") {
        "the server refused the credentials: check the user and the password (PGPASSWORD, the password in \
         `connection`, or ~/.pgpass)"
    } else if stderr.contains("Connection refused") || stderr.contains("could not connect") {
        "nothing accepts connections there: check the host and port, and that the server is running"
    } else if stderr.contains("timeout expired") {
        "the server did not answer in time: check the host, the port and the network path to it"
    } else {
        "check the connection settings"
    };
    format!("cannot reach {where_}: {advice}; psql said: {stderr}")
}

/// Options of [`Runner::psql`].
#[derive(Default)]
pub(crate) struct PsqlOptions<'a> {
    /// Run everything in one transaction (`--single-transaction`).
    pub(crate) single_transaction: bool,
    /// psql variables (`--set NAME=VALUE`), read in SQL as `:'NAME'` or `:"NAME"`.
    pub(crate) variables: &'a [(&'a str, &'a str)],
    /// `PGCONNECT_TIMEOUT` for this call.
    pub(crate) connect_timeout: Option<&'static str>,
}

/// Why the other sessions on some databases could not be ended.
#[derive(Debug)]
pub(crate) enum SessionsLeft {
    /// `pg_terminate_backend` was refused (the role may not signal them).
    CannotTerminate(String),
    /// The sessions could not be listed while waiting.
    CannotList(String),
    /// This many were still there at the deadline (something reconnects at once).
    StillThere(String),
}

impl Runner<'_> {
    /// Terminates every other session on `databases` and waits, polling every `poll`,
    /// until they are gone or `stop_at` passes. `terminated` hears how many were
    /// signalled before the wait (nothing to wait for when none).
    pub(crate) async fn end_sessions(
        &self,
        databases: &[&str],
        stop_at: tokio::time::Instant,
        poll: Duration,
        terminated: impl FnOnce(&str),
    ) -> Result<(), SessionsLeft> {
        let names: Vec<String> = (0..databases.len()).map(|index| format!("database{index}")).collect();
        let variables: Vec<(&str, &str)> =
            names.iter().map(String::as_str).zip(databases.iter().copied()).collect();
        let listed: Vec<String> = names.iter().map(|name| format!(":'{name}'")).collect();
        let sessions = format!("datname in ({}) and pid <> pg_backend_pid()", listed.join(", "));
        let options = || PsqlOptions { variables: &variables, ..PsqlOptions::default() };
        let count = self
            .psql(
                MAINTENANCE_DATABASE,
                &format!("select count(pg_terminate_backend(pid)) from pg_stat_activity where {sessions}"),
                options(),
            )
            .await
            .map_err(|error| SessionsLeft::CannotTerminate(error.to_string()))?
            .single()
            .unwrap_or_default();
        if count == "0" {
            return Ok(());
        }
        terminated(&count);
        loop {
            let remaining = self
                .psql(
                    MAINTENANCE_DATABASE,
                    &format!("select count(*) from pg_stat_activity where {sessions}"),
                    options(),
                )
                .await
                .map_err(|error| SessionsLeft::CannotList(error.to_string()))?
                .single()
                .unwrap_or_default();
            if remaining == "0" {
                return Ok(());
            }
            if tokio::time::Instant::now() >= stop_at {
                return Err(SessionsLeft::StillThere(remaining));
            }
            tokio::time::sleep(poll).await;
        }
    }
}

/// Why [`Runner::psql`] failed.
#[derive(Debug)]
pub(crate) enum PsqlError {
    /// psql could not be found or started.
    Start(ClientError),
    /// It ran and exited with an error; `stderr` is its redacted tail.
    Failed { status: ExitStatus, stderr: String },
}

impl std::fmt::Display for PsqlError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PsqlError::Start(error) => write!(formatter, "{error}"),
            PsqlError::Failed { status, stderr } => {
                write!(formatter, "psql {}: {stderr}", describe_status(*status))
            }
        }
    }
}

/// psql without `.psqlrc`, quiet, unaligned rows without headers, fields separated by
/// NUL and rows by the ASCII record separator (so `|` and newlines inside values are
/// not mistaken for separators), NULL shown as `NULL`, stopping at the first error,
/// reading the SQL from standard input.
const PSQL_ARGUMENTS: &[&str] = &[
    "--no-psqlrc",
    "--quiet",
    "--no-align",
    "--tuples-only",
    "--field-separator-zero",
    "--record-separator=\u{1e}",
    "--pset=null=NULL",
    "--set=ON_ERROR_STOP=1",
    "--file=-",
];

/// What psql printed with [`PSQL_ARGUMENTS`]: rows of fields.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Rows(pub(crate) Vec<Vec<String>>);

impl Rows {
    fn parse(stdout: &[u8]) -> Rows {
        let text = String::from_utf8_lossy(stdout);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        if text.is_empty() && stdout.is_empty() {
            return Rows(Vec::new());
        }
        Rows(text.split('\u{1e}').map(|row| row.split('\0').map(str::to_owned).collect()).collect())
    }

    /// The one value of a one-row, one-column result.
    pub(crate) fn single(&self) -> Option<String> {
        match self.0.as_slice() {
            [row] if row.len() == 1 => Some(row[0].clone()),
            _ => None,
        }
    }
}

/// The parts of a child command every `pg.*` kind shares, given the program's path.
fn base_command(program: PathBuf, connection: &Connection, database: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .arg(format!("--dbname={}", connection.for_database(database)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A cancelled or timed-out step must not leave its program running; `spawn`'s
        // guard stops the workers `pg_restore -j` forks too.
        .kill_on_drop(true);
    if let Some(password) = connection.password() {
        command.env("PGPASSWORD", password);
    }
    if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
        command.env("PGCONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT_SECONDS);
    }
    command
}

/// Starts `command` (built by [`base_command`]) with the guard that kills its whole
/// process tree if it is dropped unfinished.
pub(crate) use crate::sys::process_tree::spawn;

/// The command line as text, for logs and errors (argv never holds a password).
pub(crate) fn describe_command(command: &tokio::process::Command) -> String {
    let command = command.as_std();
    let program = Path::new(command.get_program())
        .file_name()
        .map_or_else(|| command.get_program().to_string_lossy(), |name| name.to_string_lossy())
        .into_owned();
    std::iter::once(program)
        .chain(command.get_args().map(|argument| argument.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `exited with 3` or `was killed by signal 9`.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended abnormally".to_owned(),
    }
}

/// The last `lines` non-empty lines of `text`, joined with ` / `.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let kept: Vec<&str> = text.lines().map(str::trim_end).filter(|line| !line.is_empty()).collect();
    kept[kept.len().saturating_sub(lines)..].join(" / ")
}

/// `text` with the plan's secrets and the connection's password replaced by `***`.
pub(crate) fn redact(
    connection: &Connection,
    redactor: &crate::lang::secret::Redactor,
    text: &str,
) -> String {
    let text = redactor.redact(text);
    match connection.password() {
        Some(password) => text.replace(password, "***"),
        None => text,
    }
}

/// What [`Runner::finish_fed`] feeds a child, as it comes.
#[derive(Debug)]
pub(crate) enum Feed {
    /// The next bytes.
    Data(Vec<u8>),
    /// Everything was sent and checked: the input may end.
    Complete,
}

/// What a child reads on standard input.
pub(crate) enum Input<'a> {
    /// Nothing: standard input is closed.
    None,
    /// These bytes.
    Bytes(&'a [u8]),
    /// This file, streamed, with its progress (bytes sent of its size) reported.
    File { path: &'a Path, progress: &'a crate::sys::progress::ProgressSink },
}

/// Writes `input` into the child's standard input, then closes it. A child that stops
/// reading (an error with `ON_ERROR_STOP`) closes the pipe; its exit status says why,
/// so a broken pipe is not an error here. A file that cannot be read is.
async fn feed(pipe: Option<tokio::process::ChildStdin>, input: Input<'_>) -> Result<(), ClientError> {
    use tokio::io::AsyncWriteExt as _;
    let Some(mut pipe) = pipe else { return Ok(()) };
    match input {
        Input::None => Ok(()),
        Input::Bytes(bytes) => {
            let _ = pipe.write_all(bytes).await;
            Ok(())
        }
        Input::File { path, progress } => {
            let cannot_read =
                |error: std::io::Error| ClientError(format!("cannot read {}: {error}", path.display()));
            let mut file = tokio::fs::File::open(path).await.map_err(cannot_read)?;
            let total = file.metadata().await.map_err(cannot_read)?.len();
            let mut buffer = vec![0_u8; 1 << 20];
            let mut sent = 0_u64;
            loop {
                let read = file.read(&mut buffer).await.map_err(cannot_read)?;
                if read == 0 || pipe.write_all(&buffer[..read]).await.is_err() {
                    return Ok(());
                }
                sent += read as u64;
                progress.bytes(sent, Some(total));
            }
        }
    }
}

/// Reads a child's standard error line by line, showing each to `on_line`, keeping at
/// most the last `limit` bytes.
async fn read_lines(
    pipe: Option<tokio::process::ChildStderr>,
    limit: usize,
    on_line: Option<&(dyn Fn(&str) + Sync)>,
) -> Vec<u8> {
    use tokio::io::AsyncBufReadExt as _;
    let Some(on_line) = on_line else { return read_all(pipe, limit).await };
    let Some(pipe) = pipe else { return Vec::new() };
    let mut reader = tokio::io::BufReader::new(pipe);
    let mut kept = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return kept,
            Ok(_) => {
                on_line(String::from_utf8_lossy(&line).trim_end());
                kept.extend_from_slice(&line);
                keep_last(&mut kept, limit);
            }
        }
    }
}

/// Reads a child's pipe to the end, keeping at most `limit` bytes (the last ones).
pub(crate) async fn read_all<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>, limit: usize) -> Vec<u8> {
    let Some(mut pipe) = pipe else { return Vec::new() };
    let mut kept = Vec::new();
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return kept,
            Ok(read) => {
                kept.extend_from_slice(&buffer[..read]);
                keep_last(&mut kept, limit);
            }
        }
    }
}

/// Drops the beginning of `kept` so that at most `limit` bytes stay, starting with a
/// line when one starts in them. Cut inside a line, the kept part could begin with the
/// end of a secret, which the redactor would not recognise; lines of a multi-line
/// secret it recognises on their own. (A single line longer than `limit` is still cut.)
fn keep_last(kept: &mut Vec<u8>, limit: usize) {
    if kept.len() <= limit {
        return;
    }
    let excess = kept.len() - limit;
    let start =
        kept[excess..].iter().position(|&byte| byte == b'\n').map_or(excess, |newline| excess + newline + 1);
    kept.drain(..start);
}

/// PostgreSQL's longest identifier, in bytes: a longer database name is cut short.
pub(crate) const IDENTIFIER_LIMIT: usize = 63;

/// The mark in the name of a database restored beside the live one:
/// `<database>__restore_<run>`.
pub(crate) const RESTORE_MARK: &str = "__restore_";

/// The mark in the name of a live database kept after a swap: `<database>__before_<run>`.
pub(crate) const BEFORE_MARK: &str = "__before_";

/// The part of a run id that tells runs of a plan apart: its last `-`-separated part
/// when that is hex (`<plan>-<yyyymmdd>-<hhmmss>-<4 hex>` gives `ab12`), else the
/// first hex digits of the id's SHA-256, so the same run always gets the same name.
pub(crate) fn short_run_id(run_id: &str) -> String {
    use sha2::Digest as _;
    match run_id.rsplit('-').next() {
        Some(last)
            if !last.is_empty() && last.len() <= 8 && last.bytes().all(|byte| byte.is_ascii_hexdigit()) =>
        {
            last.to_ascii_lowercase()
        }
        Some(_) | None => {
            let digest = sha2::Sha256::digest(run_id.as_bytes());
            digest.iter().take(2).map(|byte| format!("{byte:02x}")).collect()
        }
    }
}

/// The name of a copy of `database` made by run `run_id`: `<database><mark><run>`.
///
/// # Errors
/// The name would be longer than PostgreSQL's 63 bytes (it would be cut short, and two
/// copies could end up with the same name).
pub(crate) fn copy_name(database: &str, mark: &str, run_id: &str) -> Result<String, String> {
    let name = format!("{database}{mark}{}", short_run_id(run_id));
    if name.len() > IDENTIFIER_LIMIT {
        return Err(format!(
            "the copy of database {database} would be named `{name}`, {} bytes, longer than PostgreSQL's limit of \
             {IDENTIFIER_LIMIT} bytes for a database name; the name of database {database} may be at most {} bytes \
             for this",
            name.len(),
            IDENTIFIER_LIMIT - (name.len() - database.len())
        ));
    }
    Ok(name)
}

/// Whether `name` is a copy made by a restore beside the live database or kept by a
/// swap: `<x>__restore_<run>` or `<x>__before_<run>`, with `x` and `run` not empty.
pub(crate) fn is_copy_name(name: &str) -> bool {
    [RESTORE_MARK, BEFORE_MARK]
        .iter()
        .any(|mark| name.rfind(mark).is_some_and(|at| at > 0 && at + mark.len() < name.len()))
}

impl Runner<'_> {
    /// The databases among `names` that exist on the server.
    pub(crate) async fn existing_databases(&self, names: &[&str]) -> Result<Vec<String>, String> {
        self.databases_among(names, "true").await
    }

    /// The databases among `names` that exist and refuse new connections
    /// (`datallowconn = false`).
    pub(crate) async fn databases_refusing_connections(&self, names: &[&str]) -> Result<Vec<String>, String> {
        self.databases_among(names, "not datallowconn").await
    }

    /// The databases among `names` for which `condition` (a fixed SQL expression over
    /// `pg_database`, never user text) holds, by name.
    async fn databases_among(&self, names: &[&str], condition: &'static str) -> Result<Vec<String>, String> {
        let list = serde_json::to_string(names).unwrap_or_default();
        let variables = [("names", list.as_str())];
        let rows = self
            .psql(
                MAINTENANCE_DATABASE,
                &format!(
                    "select datname from pg_database \
                     where datname in (select json_array_elements_text(:'names'::json)) and {condition} \
                     order by datname"
                ),
                PsqlOptions { variables: &variables, ..PsqlOptions::default() },
            )
            .await
            .map_err(|error| format!("cannot list the databases on the server: {error}"))?;
        Ok(rows
            .0
            .into_iter()
            .filter_map(|row| row.into_iter().next())
            .filter(|name| !name.is_empty())
            .collect())
    }

    /// The owner of `database`, or `None` when it does not exist.
    pub(crate) async fn database_owner(&self, database: &str) -> Result<Option<String>, String> {
        let variables = [("database", database)];
        let rows = self
            .psql(
                MAINTENANCE_DATABASE,
                "select pg_get_userbyid(datdba) from pg_database where datname = :'database'",
                PsqlOptions { variables: &variables, ..PsqlOptions::default() },
            )
            .await
            .map_err(|error| format!("cannot look up {}: {error}", self.connection.describe(database)))?;
        Ok(rows.single())
    }

    /// Drops `database` if it exists, terminating its sessions (`WITH (FORCE)`).
    /// Returns whether it existed.
    pub(crate) async fn drop_database(&self, database: &str) -> Result<bool, String> {
        let where_ = self.connection.describe(database);
        if self.existing_databases(&[database]).await?.is_empty() {
            return Ok(false);
        }
        let variables = [("database", database)];
        self.psql(
            MAINTENANCE_DATABASE,
            "drop database if exists :\"database\" with (force)",
            PsqlOptions { variables: &variables, ..PsqlOptions::default() },
        )
        .await
        .map_err(|error| {
            format!(
                "cannot drop {where_}: {error}; the user must own the database (or be a superuser) and the server \
                 must be PostgreSQL 13 or newer"
            )
        })?;
        Ok(true)
    }
}

/// Checks the server and database for a `dry-run --preflight`.
/// The answer says what was found, or why the server cannot be used.
pub(crate) async fn preflight(connection: Option<&str>, database: &str) -> Result<String, String> {
    let mut connection = match Connection::parse(connection) {
        Ok(connection) => connection,
        Err(error) => return Err(error),
    };
    // A dry-run shows secrets as `***` and never reads them: a password from a secret
    // is not known here, so the check connects as libpq would without it (PGPASSWORD,
    // ~/.pgpass) and says so.
    let secret_password = connection.password() == Some(SECRET_PLACEHOLDER);
    if secret_password {
        connection.password = None;
    }
    let redactor = crate::lang::secret::Redactor::default();
    let runner = Runner::without_log(&connection, &redactor);
    let note = if secret_password {
        " (the password in `connection` is a secret, which a dry-run does not read: checked with PGPASSWORD or \
         ~/.pgpass instead)"
    } else {
        ""
    };
    match runner.check_reachable(database).await {
        Ok(version) => Ok(format!("{} answers (PostgreSQL {version}){note}", connection.describe(database))),
        Err(error) => Err(format!("{error}{note}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_tail_starts_with_a_line_and_its_multi_line_secret_is_redacted_before_the_join() {
        let mut kept = b"...my-secret-one\nline two\nline three\n".to_vec();
        keep_last(&mut kept, 30);
        assert_eq!(kept, b"line two\nline three\n");
        let mut long_line = b"0123456789".to_vec();
        keep_last(&mut long_line, 4);
        assert_eq!(long_line, b"6789");
        let connection = Connection::parse(Some("postgres://app@db.internal")).unwrap();
        let secrets = [crate::lang::secret::SecretValue::new("first-half\nsecond-half")];
        let redactor = crate::lang::secret::Redactor::new(&secrets);
        let runner = Runner::without_log(&connection, &redactor);
        let finished = Finished {
            status: std::os::unix::process::ExitStatusExt::from_raw(256),
            stdout: Vec::new(),
            stderr: b"FATAL: first-half\nsecond-half\n".to_vec(),
        };
        assert_eq!(finished.stderr_tail(&runner, 5), "FATAL: ***");
    }

    #[test]
    fn takes_the_password_out_of_a_url_and_replaces_the_database() {
        let connection = Connection::parse(Some(
            "postgresql://app:s%40cret@db.internal:6432/other?sslmode=require&password=q&dbname=x",
        ))
        .unwrap();
        // The query's password comes after the user information and wins, as in libpq.
        assert_eq!(connection.password(), Some("q"));
        assert_eq!(
            connection.for_database("todo db"),
            "postgresql://app@db.internal:6432/todo%20db?sslmode=require"
        );
        let connection = Connection::parse(Some("postgres://app:s%40cret@[::1]:5432")).unwrap();
        assert_eq!(connection.password(), Some("s@cret"));
        assert_eq!(connection.for_database("tododb"), "postgres://app@[::1]:5432/tododb");
        assert_eq!(connection.describe("tododb"), "database tododb on postgres://app@[::1]:5432");
        let connection = Connection::parse(Some("postgresql:///tododb?host=/var/run/postgresql")).unwrap();
        assert_eq!(connection.password(), None);
        assert_eq!(connection.for_database("x"), "postgresql:///x?host=/var/run/postgresql");
    }

    #[test]
    fn takes_the_password_out_of_a_keyword_string() {
        let connection =
            Connection::parse(Some("host=db port = 5432 password='it\\'s a \\\\ x' dbname=old user=restore"))
                .unwrap();
        assert_eq!(connection.password(), Some("it's a \\ x"));
        assert_eq!(connection.for_database("new"), "host='db' port='5432' user='restore' dbname='new'");
        assert_eq!(connection.describe("new"), "database new on host=db port=5432 user=restore");
        assert!(Connection::parse(Some("host=db password='open")).unwrap_err().contains("never closes"));
        assert!(Connection::parse(Some("just-a-name")).unwrap_err().contains("neither a libpq URL"));
        assert_eq!(Connection::parse(Some("  ")).unwrap().for_database("d"), "dbname='d'");
    }

    #[test]
    fn children_get_the_password_in_their_environment_and_never_in_argv() {
        let connection = Connection::parse(Some("postgresql://app:hunter2-secret@127.0.0.1:5432/x")).unwrap();
        let command = base_command(PathBuf::from("/usr/bin/psql"), &connection, "tododb");
        let arguments: Vec<String> =
            command.as_std().get_args().map(|argument| argument.to_string_lossy().into_owned()).collect();
        assert_eq!(arguments, ["--dbname=postgresql://app@127.0.0.1:5432/tododb"]);
        assert!(!describe_command(&command).contains("hunter2"));
        let environment: Vec<(String, String)> = command
            .as_std()
            .get_envs()
            .filter_map(|(name, value)| {
                Some((name.to_string_lossy().into_owned(), value?.to_string_lossy().into_owned()))
            })
            .collect();
        assert!(
            environment.contains(&("PGPASSWORD".to_owned(), "hunter2-secret".to_owned())),
            "{environment:?}"
        );
        assert_eq!(
            redact(&connection, &crate::lang::secret::Redactor::default(), "FATAL: hunter2-secret"),
            "FATAL: ***"
        );
    }

    #[tokio::test]
    async fn dropping_an_unfinished_child_kills_the_processes_it_forked() {
        use tokio::io::AsyncBufReadExt as _;
        // A shell that forks a worker and waits for it, like pg_restore -j, set up as
        // base_command sets up the PostgreSQL programs.
        let mut command = tokio::process::Command::new("sh");
        command.args(["-c", "sleep 30 & echo $!; wait"]).stdout(Stdio::piped()).kill_on_drop(true);
        let (mut child, tree) = spawn(&mut command).unwrap();
        let mut line = String::new();
        tokio::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).await.unwrap();
        let worker: u32 = line.trim().parse().unwrap();
        let alive = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| !stat.rsplit(')').next().unwrap_or_default().trim_start().starts_with('Z'))
        };
        assert!(alive(worker));
        // The shell goes first, as when a cancelled future drops it before the guard:
        // its worker, handed to init, is still found.
        drop(child);
        drop(tree);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(worker) {
            assert!(std::time::Instant::now() < deadline, "the forked worker {worker} outlived its tree");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn parses_rows_with_separators_inside_values() {
        assert_eq!(Rows::parse(b""), Rows(Vec::new()));
        assert_eq!(Rows::parse(b"\n").single(), Some(String::new()));
        let rows = Rows::parse(b"a|b\0NULL\x1ec\nd\x001\n");
        assert_eq!(
            rows.0,
            [vec!["a|b".to_owned(), "NULL".to_owned()], vec!["c\nd".to_owned(), "1".to_owned()]]
        );
        assert_eq!(rows.single(), None);
        assert_eq!(Rows::parse(b"42\n").single(), Some("42".to_owned()));
    }
}
