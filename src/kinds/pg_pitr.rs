//! `pg.pitr`: recover a PostgreSQL cluster from a pgBackRest backup and its WAL archive
//! to a point in time, into a new data directory started as a side server that only this
//! run uses (no TCP: only its own private socket directory and port, archiving off), verified
//! at the target before it is promoted. It never listens on the network: with trust
//! authentication, any local user reaching a loopback port would read a copy of production.
//!
//! The order protects production: the repository is read (`pgbackrest info`) and the
//! target judged reachable before anything is restored; the side server is started with
//! `archive_mode=off` so it can never push a new timeline into the production archive;
//! recovery always pauses at the target (`recovery_target_action=pause`), the pause is
//! read through SQL, and only a server that reached its target is promoted.
//!
//! The side server outlives the step (later steps read from it) and is stopped, and its
//! directory removed, when dr-plan ends, however it ends: a small guardian (`sh`) waits
//! on a pipe that only this process holds, so it sees end-of-file at a normal exit and
//! after `kill -9` alike. `keep: true` tells it to leave the server running.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, Params, Preflight, StepContext, StepError, StepOutputs, step_outputs};
use crate::lang::duration::HumanDuration;

/// Where the base backup and the WAL come from.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A pgBackRest repository (`stanza`, `config`, `repo`, `set`). The other source of
    /// the design, `archive` (a `pg_basebackup -Ft` base backup and WAL segments in S3), is
    /// not in this build: validation refuses it, where a run would only have failed later.
    #[default]
    Pgbackrest,
}

/// Where recovery stops: exactly one of these.
#[derive(Clone, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum Target {
    /// `immediate` (the end of the backup) or `latest` (all the WAL there is).
    Word(TargetWord),
    /// `{time|lsn|xid|name: ...}`.
    Point(TargetPoint),
}

/// The targets written as a word.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TargetWord {
    /// Stop as soon as the backup is consistent.
    Immediate,
    /// Replay all the WAL in the archive (replays the damage too, unless it is not in the WAL).
    Latest,
}

/// A target point; exactly one field.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TargetPoint {
    /// RFC 3339 with an offset (`2026-12-07T10:29:00+01:00`).
    pub time: Option<String>,
    /// A WAL location (`0/3000110`).
    pub lsn: Option<String>,
    /// A transaction id.
    pub xid: Option<String>,
    /// A restore point made with `pg_create_restore_point`.
    pub name: Option<String>,
}

/// Parameters of `pg.pitr`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// `pgbackrest` (the default; the only source in this build).
    #[serde(default)]
    pub from: Source,
    /// The pgBackRest stanza.
    pub stanza: String,
    /// The pgBackRest configuration file (`--config`).
    pub config: Option<String>,
    /// The pgBackRest repository number (`--repo`).
    pub repo: Option<u32>,
    /// The backup set label to restore (default: the newest that ends before the target).
    pub set: Option<String>,
    /// Where recovery stops.
    pub target: Target,
    /// Stop just before the target instead of just after (time, lsn, xid only).
    #[serde(default)]
    pub exclusive: bool,
    /// When the damage happened (RFC 3339; default: the run's start), for `data_loss`.
    pub incident_at: Option<String>,
    /// The new data directory (default: under the run's work directory); it must not exist or be empty.
    pub data_dir: Option<String>,
    /// The side server's port (default: a free one).
    pub port: Option<u16>,
    /// Extra `postgresql.conf` settings for the side server.
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
    /// The directory of `postgres` and `pg_controldata` (default: the newest under /usr/lib/postgresql).
    pub postgres_bin: Option<String>,
    /// The OS user that owns the data directory and runs pgBackRest and the server (required as root).
    pub run_as: Option<String>,
    /// Leave the side server running after the run (the report names it and how to stop it).
    #[serde(default)]
    pub keep: bool,
    /// How long restore and recovery may take together.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
}

fn default_deadline() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

step_outputs! {
    /// Outputs of `pg.pitr`.
    pub struct PgPitrOutputs {
        /// commit time of the last replayed transaction (RFC 3339, UTC); the backup's end when none was replayed
        pub recovered_to: String,
        /// the WAL location replay stopped at
        pub lsn: String,
        /// the timeline the promoted side server writes on
        pub timeline: u32,
        /// the label of the base backup used
        pub backup: String,
        /// a libpq URL of the side server, through its private socket directory
        pub connection: String,
        /// the side server's port (the number of its socket in that directory)
        pub port: u16,
        /// the side server's data directory
        pub data_dir: String,
        /// seconds between `incident_at` and `recovered_to` (the data lost)
        pub data_loss: f64,
        /// seconds spent putting the base backup in place
        pub restore_seconds: f64,
        /// seconds spent replaying WAL up to the target
        pub recovery_seconds: f64,
    }
}

/// What `pg.pitr` declares.
pub const INFO: KindInfo = KindInfo {
    name: "pg.pitr",
    summary: "Recover a PostgreSQL cluster from pgBackRest to a time/LSN/xid/name into a side server (archiving \
              off), verified at the target, then promoted; outputs recovered_to and data_loss.",
    destructive: false,
    idempotent: true,
    outputs: PgPitrOutputs::DECLARED,
    preflight: "`pgbackrest info`: a backup that ends before the target, the newest archived commit after a time \
                target",
    notes: "Restores into a *new* data directory with `pgbackrest restore --pg1-path=NEW --type=... \
            --target-action=pause`, starts it with its own port and private socket directory (no TCP: nobody else can reach it) and \
            `archive_mode=off` (so it never pushes a new timeline into the production archive), \
            `max_connections` and the other settings recovery needs raised to the source's \
            (`pg_controldata`), waits until replay pauses at the target (`pg_get_wal_replay_pause_state()`), \
            checks that the last replayed commit is not after a time target, promotes, and checks that the \
            server writes on a new timeline. A recovery that runs out of WAL before the target fails with \
            \"reached only <time/LSN>, target <target>\" and nothing is promoted.\n\n\
            A time target must carry an offset. It is reachable only when a commit after it is in the archive \
            (recovery stops at the first commit past it): a target at or after the newest archived commit is \
            refused before anything is restored, naming that commit; use `latest` to replay everything.\n\n\
            The side server lives until dr-plan ends, then it is stopped and its directory removed, after a \
            `kill -9` too; `keep: true` leaves it running. Running the step again (resume) recovers again into \
            a fresh directory. PostgreSQL refuses to run as root: as root, `run_as` names the OS user \
            (usually `postgres`) that owns the data directory and runs pgBackRest and the server; the run's \
            directory and its parents are made traversable (not listable) for that user.",
    example: "- id: pitr\n  kind: pg.pitr\n  with:\n    from: pgbackrest\n    stanza: main\n    target: { time: \"{{inputs.target_time}}\" }\n    run_as: postgres\n",
    verifies: super::Verifies::Always,
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<PgPitrOutputs>,
    describe,
    checked_text: &[
        super::CheckedText { path: "target.time", check: checked_time },
        super::CheckedText { path: "incident_at", check: checked_time },
    ],
    ..KindInfo::COMMON
};

/// Validation's check of a time written in the plan (a template is checked once rendered,
/// by the step): the offset is required.
fn checked_time(text: &str) -> Result<(), (String, String)> {
    match chrono::DateTime::parse_from_rfc3339(text.trim()) {
        Ok(_) => Ok(()),
        Err(_) => Err((
            format!("`{text}` is not an RFC 3339 time with an offset"),
            "write it with its offset, like `2026-12-07T10:29:00Z` or `2026-12-07T10:29:00+01:00`: without one it \
             would be read in the server's time zone"
                .to_owned(),
        )),
    }
}

/// `pg.pitr` in the kind table.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(preflight(&super::parameters(with)?).await) }),
    undo: None,
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let target = match with.get("target") {
        Some(serde_json::Value::Object(point)) => {
            point.iter().map(|(key, value)| format!("{key} {}", super::display(value))).collect::<Vec<_>>().join(" ")
        }
        Some(other) => super::display(other),
        None => "?".to_owned(),
    };
    format!(
        "recover stanza {} from pgBackRest to {target} into a new side server on a private socket (archiving off), \
         verify it reached the target, promote it{}",
        with.text("stanza"),
        if with.flag("keep", false) { "; keep it running after the run" } else { "" }
    )
}

/// A target checked: the pgBackRest options and how to judge it.
#[derive(Clone, Debug, PartialEq)]
enum Checked {
    Time(chrono::DateTime<chrono::FixedOffset>),
    Lsn(u64, String),
    Xid(String),
    Name(String),
    Immediate,
    Latest,
}

impl Checked {
    fn parse(target: &Target, exclusive: bool) -> Result<Checked, String> {
        let checked = match target {
            Target::Word(TargetWord::Immediate) => Checked::Immediate,
            Target::Word(TargetWord::Latest) => Checked::Latest,
            Target::Point(point) => {
                let given: Vec<&str> = [
                    point.time.as_ref().map(|_| "time"),
                    point.lsn.as_ref().map(|_| "lsn"),
                    point.xid.as_ref().map(|_| "xid"),
                    point.name.as_ref().map(|_| "name"),
                ]
                .into_iter()
                .flatten()
                .collect();
                if given.len() != 1 {
                    return Err(format!(
                        "`target` needs exactly one of `time`, `lsn`, `xid`, `name` (or the word `immediate` or \
                         `latest`); it has {}",
                        if given.is_empty() { "none".to_owned() } else { given.join(", ") }
                    ));
                }
                if let Some(time) = &point.time {
                    Checked::Time(parse_time(time, "target.time")?)
                } else if let Some(lsn) = &point.lsn {
                    Checked::Lsn(parse_lsn(lsn)?, lsn.clone())
                } else if let Some(xid) = &point.xid {
                    if xid.parse::<u64>().is_err() {
                        return Err(format!("`target.xid` `{xid}` is not a transaction id (a number)"));
                    }
                    Checked::Xid(xid.clone())
                } else {
                    Checked::Name(point.name.clone().unwrap_or_default())
                }
            }
        };
        if exclusive && matches!(checked, Checked::Name(_) | Checked::Immediate | Checked::Latest) {
            return Err("`exclusive` applies to time, lsn and xid targets only".to_owned());
        }
        Ok(checked)
    }

    fn arguments(&self) -> Vec<String> {
        match self {
            Checked::Time(time) => vec!["--type=time".into(), format!("--target={}", time.to_rfc3339())],
            Checked::Lsn(_, text) => vec!["--type=lsn".into(), format!("--target={text}")],
            Checked::Xid(xid) => vec!["--type=xid".into(), format!("--target={xid}")],
            Checked::Name(name) => vec!["--type=name".into(), format!("--target={name}")],
            Checked::Immediate => vec!["--type=immediate".into()],
            Checked::Latest => vec!["--type=default".into()],
        }
    }

    fn describe(&self) -> String {
        match self {
            Checked::Time(time) => format!("time {}", time.to_rfc3339()),
            Checked::Lsn(_, text) => format!("LSN {text}"),
            Checked::Xid(xid) => format!("xid {xid}"),
            Checked::Name(name) => format!("restore point `{name}`"),
            Checked::Immediate => "immediate (the end of the backup)".into(),
            Checked::Latest => "latest (all the WAL in the archive)".into(),
        }
    }
}

/// An RFC 3339 time that carries an offset.
fn parse_time(text: &str, parameter: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim()).map_err(|_| {
        format!(
            "`{parameter}` `{text}` is not an RFC 3339 time with an offset; write it like \
             `2026-12-07T10:29:00Z` or `2026-12-07T10:29:00+01:00` (a time without an offset would be read in the \
             server's time zone)"
        )
    })
}

/// `X/Y` as a number.
fn parse_lsn(text: &str) -> Result<u64, String> {
    let (high, low) = text.trim().split_once('/').ok_or_else(|| format!("`{text}` is not an LSN like `0/3000110`"))?;
    let high = u64::from_str_radix(high, 16).map_err(|_| format!("`{text}` is not an LSN like `0/3000110`"))?;
    let low = u64::from_str_radix(low, 16).map_err(|_| format!("`{text}` is not an LSN like `0/3000110`"))?;
    Ok((high << 32) | low)
}

/// A backup of `pgbackrest info --output=json`.
#[derive(Clone, Debug, Deserialize)]
struct Backup {
    label: String,
    timestamp: BackupTimes,
    lsn: Option<BackupLsn>,
}

#[derive(Clone, Debug, Deserialize)]
struct BackupTimes {
    start: i64,
    stop: i64,
}

#[derive(Clone, Debug, Deserialize)]
struct BackupLsn {
    stop: String,
}

#[derive(Clone, Debug, Deserialize)]
struct Archive {
    max: Option<String>,
    min: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
struct StanzaInfo {
    #[serde(default)]
    backup: Vec<Backup>,
    #[serde(default)]
    archive: Vec<Archive>,
}

fn time_of(epoch: i64) -> String {
    chrono::DateTime::from_timestamp(epoch, 0).map_or_else(|| epoch.to_string(), |time| time.to_rfc3339())
}

/// How pgBackRest, `pg_waldump` and the server are run: as `run_as` through runuser when
/// that is another user.
#[derive(Clone, Debug)]
struct Tools {
    run_as: Option<String>,
    bin: PathBuf,
    config: Option<String>,
    stanza: String,
    repo: Option<u32>,
}

impl Tools {
    fn new(parameters: &Parameters) -> Result<Tools, String> {
        let stanza = parameters.stanza.clone();
        let root = is_root();
        let run_as = match (&parameters.run_as, root) {
            (None, true) => {
                return Err("dr-plan runs as root and PostgreSQL refuses to: give `run_as` (the OS user that \
                            owns PostgreSQL's files, usually `postgres`)"
                    .to_owned());
            }
            (Some(user), true) => Some(user.clone()),
            (Some(user), false) if *user != current_user() => {
                return Err(format!(
                    "`run_as: {user}` needs dr-plan to run as root; leave it out to run everything as the current \
                     user"
                ));
            }
            (_, false) => None,
        };
        let bin = match &parameters.postgres_bin {
            Some(directory) => PathBuf::from(directory),
            None => newest_postgres_bin()?,
        };
        Ok(Tools { run_as, bin, config: parameters.config.clone(), stanza, repo: parameters.repo })
    }

    fn command(&self, program: &Path) -> tokio::process::Command {
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = tokio::process::Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => tokio::process::Command::new(program),
        };
        command
            .current_dir("/")
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        command
    }

    fn pgbackrest(&self, command_name: &str) -> tokio::process::Command {
        let mut command = self.command(Path::new("pgbackrest"));
        if let Some(config) = &self.config {
            command.arg(format!("--config={config}"));
        }
        command.arg(format!("--stanza={}", self.stanza));
        if let Some(repo) = self.repo {
            command.arg(format!("--repo={repo}"));
        }
        command.arg(command_name);
        command
    }

    async fn output(&self, mut command: tokio::process::Command, what: &str) -> Result<String, String> {
        let shown = crate::clients::postgres::describe_command(&command);
        let (child, tree) = crate::sys::process_tree::spawn(&mut command)
            .map_err(|error| format!("cannot run `{shown}` ({what}): {error}"))?;
        let output = child.wait_with_output().await.map_err(|error| format!("lost `{shown}`: {error}"))?;
        tree.finished();
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "`{shown}` ({what}) {}: {}",
                crate::clients::postgres::describe_status(output.status),
                crate::clients::postgres::tail(
                    &(String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout)),
                    6
                )
            ))
        }
    }

    async fn info(&self) -> Result<StanzaInfo, String> {
        let mut command = self.pgbackrest("info");
        command.arg("--output=json");
        let text = self.output(command, "reading the repository").await?;
        let stanzas: Vec<StanzaInfo> =
            serde_json::from_str(&text).map_err(|error| format!("`pgbackrest info` printed no JSON: {error}"))?;
        stanzas.into_iter().next().ok_or_else(|| format!("pgBackRest knows no stanza `{}`", self.stanza))
    }

    /// The newest commit time in the archive: the newest segments fetched and read with
    /// `pg_waldump`, newest first.
    async fn newest_commit(&self, info: &StanzaInfo, scratch: &Path) -> Result<Option<chrono::DateTime<chrono::Utc>>, String> {
        let Some((newest, oldest)) = info.archive.last().and_then(|archive| Some((archive.max.clone()?, archive.min.clone()?))) else {
            return Ok(None);
        };
        let (timeline, mut number) = split_segment(&newest)?;
        let (_, first) = split_segment(&oldest)?;
        for _ in 0..16 {
            let name = join_segment(&timeline, number);
            let path = scratch.join(&name);
            let _ = std::fs::remove_file(&path);
            let mut get = self.pgbackrest("archive-get");
            get.arg(&name).arg(&path);
            self.output(get, "fetching a WAL segment to find the newest commit").await?;
            let mut dump = self.command(&self.bin.join("pg_waldump"));
            dump.arg(&path);
            // pg_waldump ends with an error at the end of valid WAL in a switched segment.
            let (child, tree) = crate::sys::process_tree::spawn(&mut dump)
                .map_err(|error| format!("cannot run pg_waldump: {error}"))?;
            let output = child.wait_with_output().await.map_err(|error| format!("lost pg_waldump: {error}"))?;
            tree.finished();
            let _ = std::fs::remove_file(&path);
            let text = String::from_utf8_lossy(&output.stdout);
            if let Some(time) = text.lines().rev().find_map(commit_time) {
                return Ok(Some(time));
            }
            if number <= first {
                break;
            }
            number -= 1;
        }
        Ok(None)
    }
}

fn split_segment(name: &str) -> Result<(String, u64), String> {
    if name.len() != 24 {
        return Err(format!("`{name}` is not a WAL segment name"));
    }
    let number = u64::from_str_radix(&name[8..], 16).map_err(|_| format!("`{name}` is not a WAL segment name"))?;
    Ok((name[..8].to_owned(), number))
}

fn join_segment(timeline: &str, number: u64) -> String {
    format!("{timeline}{number:016X}")
}

/// The time of a `pg_waldump` line describing a commit (printed in UTC with TZ=UTC).
fn commit_time(line: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let description = line.split("desc: ").nth(1)?;
    let rest = description.strip_prefix("COMMIT ")?;
    let text = rest.get(..26)?;
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok().map(|time| time.and_utc())
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn current_user() -> String {
    std::process::Command::new("id")
        .arg("-un")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn user_ids(user: &str) -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let output = std::process::Command::new("id")
            .args([flag, user])
            .output()
            .map_err(|error| format!("cannot run `id`: {error}"))?;
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .map_err(|_| format!("`run_as: {user}`: there is no such user on this machine"))
    };
    Ok((id("-u")?, id("-g")?))
}

fn newest_postgres_bin() -> Result<PathBuf, String> {
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no PostgreSQL server under /usr/lib/postgresql/<version>/bin; give `postgres_bin`".to_owned())
}

/// What the repository says of this recovery, before anything is restored.
struct Survey {
    backup: Backup,
    newest_commit: Option<chrono::DateTime<chrono::Utc>>,
}

async fn survey(tools: &Tools, parameters: &Parameters, target: &Checked, scratch: &Path) -> Result<Survey, String> {
    let info = tools.info().await?;
    let Some(oldest) = info.backup.first() else {
        return Err(format!("the pgBackRest stanza `{}` has no backup", tools.stanza));
    };
    let usable = |backup: &&Backup| match target {
        Checked::Time(time) => backup.timestamp.stop < time.timestamp(),
        Checked::Lsn(lsn, _) => backup.lsn.as_ref().and_then(|found| parse_lsn(&found.stop).ok()).is_some_and(|stop| stop <= *lsn),
        Checked::Xid(_) | Checked::Name(_) | Checked::Immediate | Checked::Latest => true,
    };
    let backup = match &parameters.set {
        Some(label) => {
            let backup = info
                .backup
                .iter()
                .find(|backup| backup.label == *label)
                .ok_or_else(|| format!("the stanza `{}` has no backup set `{label}`", tools.stanza))?;
            if !usable(&backup) {
                return Err(format!(
                    "backup set `{label}` ended at {}, after the target {}: recovery cannot go back before a \
                     backup's end; choose an older set or leave `set` out",
                    time_of(backup.timestamp.stop),
                    target.describe()
                ));
            }
            backup.clone()
        }
        None => info.backup.iter().rev().find(usable).cloned().ok_or_else(|| {
            format!(
                "the target {} is before the oldest backup of stanza `{}` ({}, which ended at {}): no backup can \
                 be recovered to it; nothing was restored",
                target.describe(),
                tools.stanza,
                oldest.label,
                time_of(oldest.timestamp.stop)
            )
        })?,
    };
    let mut newest_commit = None;
    if let Checked::Time(time) = target {
        newest_commit = tools.newest_commit(&info, scratch).await?;
        let reachable = newest_commit.is_some_and(|commit| {
            if parameters.exclusive { commit >= time.to_utc() } else { commit > time.to_utc() }
        });
        if !reachable {
            let newest = newest_commit.map_or_else(|| "none found".to_owned(), |commit| commit.to_rfc3339());
            return Err(format!(
                "the target {} is not reachable: recovery stops at the first commit after it, and the newest \
                 commit in the archive is {newest}; recover to that point with `target: latest` (it replays all \
                 the WAL there is), or choose an earlier time; nothing was restored",
                target.describe()
            ));
        }
    }
    let _ = backup.timestamp.start;
    Ok(Survey { backup, newest_commit })
}

/// Checks the repository and the target (`dry-run --preflight`).
pub async fn preflight(parameters: &Parameters) -> Preflight {
    let checked = async {
        let target = Checked::parse(&parameters.target, parameters.exclusive)?;
        let tools = Tools::new(parameters)?;
        let scratch = scratch_dir(&tools)?;
        let surveyed = survey(&tools, parameters, &target, scratch.path()).await;
        let survey = surveyed?;
        let mut detail = format!(
            "backup {} (ended {}) would be restored and WAL replayed to {}",
            survey.backup.label,
            time_of(survey.backup.timestamp.stop),
            target.describe()
        );
        if let Some(commit) = survey.newest_commit {
            detail.push_str(&format!("; newest archived commit {}", commit.to_rfc3339()));
        }
        if let (Checked::Time(time), Ok(incident)) = (&target, incident_time(parameters, None)) {
            detail.push_str(&format!(
                "; intended data loss {}s",
                (incident - time.to_utc()).num_milliseconds().max(0) as f64 / 1000.0
            ));
        }
        Ok::<String, String>(detail)
    };
    checked.await.into()
}

/// A temporary directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch_dir(tools: &Tools) -> Result<Scratch, String> {
    let scratch = Scratch(std::env::temp_dir().join(format!("dr-plan-pitr-scan-{:016x}", rand::random::<u64>())));
    std::fs::create_dir(scratch.path())
        .map_err(|error| format!("cannot create {}: {error}", scratch.path().display()))?;
    set_mode(scratch.path(), 0o700)?;
    if let Some(user) = &tools.run_as {
        let (uid, gid) = user_ids(user)?;
        std::os::unix::fs::chown(scratch.path(), Some(uid), Some(gid))
            .map_err(|error| format!("cannot give {} to {user}: {error}", scratch.path().display()))?;
    }
    Ok(scratch)
}

/// `incident_at`, else the run's start (from its id), else now.
fn incident_time(parameters: &Parameters, run_id: Option<&str>) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Some(text) = &parameters.incident_at {
        return parse_time(text, "incident_at").map(|time| time.to_utc());
    }
    let from_id = run_id.and_then(|id| {
        let parts: Vec<&str> = id.rsplitn(4, '-').collect();
        let text = format!("{}-{}", parts.get(2)?, parts.get(1)?);
        chrono::NaiveDateTime::parse_from_str(&text, "%Y%m%d-%H%M%S").ok().map(|time| time.and_utc())
    });
    Ok(from_id.unwrap_or_else(chrono::Utc::now))
}

/// Recovers, verifies and promotes; see the kind's notes.
///
/// # Errors
/// A target that cannot be reached (refused before the restore, or found at the end of
/// replay), a failed restore or start, a verification that does not hold.
pub async fn run(parameters: Parameters, context: &StepContext) -> Result<PgPitrOutputs, StepError> {
    let failed = StepError::Failed;
    let target = Checked::parse(&parameters.target, parameters.exclusive).map_err(StepError::Final)?;
    if let Some(problem) = archiving_setting(&parameters.settings) {
        return Err(StepError::Final(problem));
    }
    let incident = incident_time(&parameters, Some(&context.run_id)).map_err(StepError::Final)?;
    let tools = Tools::new(&parameters).map_err(StepError::Final)?;
    let stop_at = Instant::now() + parameters.deadline.get();
    let scratch = scratch_dir(&tools).map_err(failed)?;
    context.progress.note("reading the pgBackRest repository (pgbackrest info)".to_owned());
    let survey = survey(&tools, &parameters, &target, scratch.path()).await.map_err(StepError::Final)?;
    drop(scratch);
    let side = SideServer::prepare(&parameters, &tools, context).map_err(failed)?;
    context.progress.note(format!(
        "restoring backup {} into {} (pgbackrest restore, target {})",
        survey.backup.label,
        side.data_dir.display(),
        target.describe()
    ));
    let restore_started = Instant::now();
    let mut restore = tools.pgbackrest("restore");
    restore
        .arg(format!("--pg1-path={}", side.data_dir.display()))
        .arg(format!("--set={}", survey.backup.label))
        .args(target.arguments())
        .arg("--archive-mode=off");
    if !matches!(target, Checked::Latest | Checked::Immediate) {
        restore.arg("--target-action=pause");
    }
    if matches!(target, Checked::Immediate) {
        restore.arg("--target-action=pause");
    }
    if parameters.exclusive {
        restore.arg("--target-exclusive");
    }
    tools.output(restore, "restoring the base backup").await.map_err(failed)?;
    let restore_seconds = restore_started.elapsed().as_secs_f64();
    let recovery_started = Instant::now();
    let started = side.start(&parameters, &tools).await.map_err(failed)?;
    context.progress.note(format!("side server started on {} (port {}); replaying WAL", side.socket_dir.display(), side.port));
    let reached = side.wait_for_target(&target, &started, stop_at, context).await.map_err(StepError::Final)?;
    let recovery_seconds = recovery_started.elapsed().as_secs_f64();
    if let (Checked::Time(time), Some(replayed)) = (&target, reached.replayed_at) {
        let limit = time.to_utc();
        let past = if parameters.exclusive { replayed >= limit } else { replayed > limit };
        if past {
            return Err(StepError::Final(format!(
                "the last replayed commit is at {}, after the target {}; nothing was promoted",
                replayed.to_rfc3339(),
                target.describe()
            )));
        }
    }
    let timeline = side.promote(&reached, stop_at).await.map_err(StepError::Final)?;
    let recovered_to = reached.replayed_at.unwrap_or_else(|| {
        chrono::DateTime::from_timestamp(survey.backup.timestamp.stop, 0).unwrap_or_else(chrono::Utc::now)
    });
    let data_loss = ((incident - recovered_to).num_milliseconds().max(0) as f64) / 1000.0;
    context.progress.note(format!(
        "recovered to {} on timeline {timeline}; {data_loss}s of data lost",
        recovered_to.to_rfc3339()
    ));
    if parameters.keep {
        side.keep();
        context.progress.note(format!(
            "the side server stays running (keep: true): stop it with `{}`",
            side.stop_command()
        ));
    }
    Ok(PgPitrOutputs {
        recovered_to: recovered_to.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        lsn: reached.lsn,
        timeline,
        backup: survey.backup.label,
        connection: side.connection(),
        port: side.port,
        data_dir: side.data_dir.display().to_string(),
        data_loss,
        restore_seconds: (restore_seconds * 1000.0).round() / 1000.0,
        recovery_seconds: (recovery_seconds * 1000.0).round() / 1000.0,
    })
}

/// The problem when `settings` turn archiving on for the side server (lint DRP refuses it too).
#[must_use]
pub fn archiving_setting(settings: &std::collections::BTreeMap<String, String>) -> Option<String> {
    settings.iter().find_map(|(name, value)| {
        let value = value.trim().trim_matches('\'').to_ascii_lowercase();
        let on = match name.to_ascii_lowercase().as_str() {
            "archive_mode" => value == "on" || value == "always",
            "archive_command" | "archive_library" => !value.is_empty(),
            _ => false,
        };
        on.then(|| {
            format!(
                "`settings` turns archiving on (`{name}`) for the side server: it would push its new timeline into \
                 the production archive; remove that setting"
            )
        })
    })
}

/// The side server: its directories, port and guardian.
struct SideServer {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    port: u16,
    user: String,
    run_as: Option<String>,
    guardian_input: std::sync::Arc<std::sync::Mutex<Option<tokio::process::ChildStdin>>>,
}

/// What the server had replayed when it paused at the target.
struct Reached {
    replayed_at: Option<chrono::DateTime<chrono::Utc>>,
    lsn: String,
    timeline_before: u32,
}

/// The guardians' pipes, held until dr-plan exits.
static GUARDIANS: std::sync::Mutex<Vec<std::sync::Arc<std::sync::Mutex<Option<tokio::process::ChildStdin>>>>> =
    std::sync::Mutex::new(Vec::new());

/// The guardian: waits for end-of-file (dr-plan gone) or `keep`, then stops the server
/// (fast, then immediate) and removes its directories.
const GUARDIAN: &str = r#"read -r word
[ "$word" = keep ] && exit 0
pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; then
  n=0
  while kill -0 "$pid" 2>/dev/null; do
    n=$((n + 1)); [ "$n" = 300 ] && kill -QUIT "$pid" 2>/dev/null
    sleep 0.1
  done
fi
rm -rf -- "$1" "$2"
"#;

impl SideServer {
    fn prepare(parameters: &Parameters, tools: &Tools, context: &StepContext) -> Result<SideServer, String> {
        let attempt = format!("{:08x}", rand::random::<u32>());
        let data_dir = match &parameters.data_dir {
            Some(directory) => {
                let directory = PathBuf::from(directory);
                if directory.read_dir().is_ok_and(|mut entries| entries.next().is_some()) {
                    return Err(format!(
                        "`data_dir` {} is not empty: recovery needs a new directory; remove it or choose another",
                        directory.display()
                    ));
                }
                directory
            }
            None => context.run_dir.join(format!("{}.pitr", context.step_id)).join(format!("data-{attempt}")),
        };
        let port = match parameters.port {
            Some(port) => port,
            None => std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map(|address| address.port())
                .map_err(|error| format!("cannot find a free port: {error}"))?,
        };
        let socket_dir = std::env::temp_dir().join(format!("dr-plan-pitr-{attempt}"));
        let owner = match &tools.run_as {
            Some(user) => Some(user_ids(user)?),
            None => None,
        };
        // The socket directory is created, never taken over: an existing path of that name (a
        // directory or link another user planted in the shared temporary directory) is refused.
        std::fs::create_dir(&socket_dir).map_err(|error| format!("cannot create {}: {error}", socket_dir.display()))?;
        for directory in [&data_dir, &socket_dir] {
            std::fs::create_dir_all(directory)
                .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
            set_mode(directory, 0o700)?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(directory, Some(uid), Some(gid))
                    .map_err(|error| format!("cannot give {} to the `run_as` user: {error}", directory.display()))?;
            }
        }
        if owner.is_some() {
            traversable(&data_dir)?;
        }
        let log = context.run_dir.join(format!("{}.pitr-{attempt}.log", context.step_id));
        let user = tools.run_as.clone().unwrap_or_else(current_user);
        let server = SideServer {
            data_dir,
            socket_dir,
            log,
            port,
            user,
            run_as: tools.run_as.clone(),
            guardian_input: std::sync::Arc::default(),
        };
        server.guard()?;
        Ok(server)
    }

    /// Starts the guardian before the server exists, so no moment leaves it unwatched.
    fn guard(&self) -> Result<(), String> {
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(GUARDIAN)
            .arg("dr-plan-pitr-guardian")
            .arg(&self.data_dir)
            .arg(&self.socket_dir)
            .env_remove(crate::sys::process_tree::TOKEN_VARIABLE)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command.spawn().map_err(|error| format!("cannot start the side server's guardian: {error}"))?;
        *self.guardian_input.lock().map_err(|_| "poisoned")? = child.stdin.take();
        GUARDIANS.lock().map_err(|_| "poisoned")?.push(self.guardian_input.clone());
        Ok(())
    }

    fn keep(&self) {
        use std::io::Write as _;
        if let Ok(mut input) = self.guardian_input.lock()
            && let Some(pipe) = input.take()
            && let Ok(fd) = pipe.into_owned_fd()
        {
            let mut file = std::fs::File::from(fd);
            let _ = file.write_all(b"keep\n");
        }
    }

    fn stop_command(&self) -> String {
        let pg_ctl = format!("pg_ctl stop -D {} -m fast", self.data_dir.display());
        match &self.run_as {
            Some(user) => format!("runuser -u {user} -- {pg_ctl}"),
            None => pg_ctl,
        }
    }

    /// A libpq URL through the private socket directory (`host` as a query parameter,
    /// percent-encoded, since a path cannot stand where a host name does).
    fn connection(&self) -> String {
        let host: String = self
            .socket_dir
            .display()
            .to_string()
            .bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(byte).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect();
        format!("postgresql://{}@/postgres?host={host}&port={}", self.user, self.port)
    }

    /// The server's settings: the plan's, then what the side server must have.
    async fn start(&self, parameters: &Parameters, tools: &Tools) -> Result<tokio::process::Child, String> {
        let control = tools
            .output(
                {
                    let mut command = tools.command(&tools.bin.join("pg_controldata"));
                    command.arg(&self.data_dir);
                    command
                },
                "reading the restored cluster's control file",
            )
            .await?;
        let mut settings = parameters.settings.clone();
        for (setting, label) in [
            ("max_connections", "max_connections setting:"),
            ("max_worker_processes", "max_worker_processes setting:"),
            ("max_wal_senders", "max_wal_senders setting:"),
            ("max_prepared_transactions", "max_prepared_xacts setting:"),
            ("max_locks_per_transaction", "max_locks_per_xact setting:"),
        ] {
            let source: Option<u64> = control
                .lines()
                .find_map(|line| line.strip_prefix(label).map(|value| value.trim().parse().ok()))
                .flatten();
            let given: Option<u64> = settings.get(setting).and_then(|value| value.trim().parse().ok());
            if let Some(source) = source
                && given.is_none_or(|given| given < source)
            {
                settings.insert(setting.to_owned(), source.to_string());
            }
        }
        // Only the side server's own socket lets anyone in: its directory is 0700, owned by
        // the server's user, so only that user and root reach it. No TCP (see the module doc).
        let hba = self.data_dir.join("dr-plan-pitr-hba.conf");
        std::fs::write(&hba, "local all all trust\n")
            .map_err(|error| format!("cannot write {}: {error}", hba.display()))?;
        if let Some(user) = &self.run_as {
            let (uid, gid) = user_ids(user)?;
            let _ = std::os::unix::fs::chown(&hba, Some(uid), Some(gid));
        }
        if !self.data_dir.join("postgresql.conf").exists() {
            std::fs::write(self.data_dir.join("postgresql.conf"), "")
                .map_err(|error| format!("cannot write postgresql.conf: {error}"))?;
            if let Some(user) = &self.run_as {
                let (uid, gid) = user_ids(user)?;
                let _ = std::os::unix::fs::chown(self.data_dir.join("postgresql.conf"), Some(uid), Some(gid));
            }
        }
        for (name, value) in [
            ("listen_addresses", String::new()),
            ("port", self.port.to_string()),
            ("unix_socket_directories", self.socket_dir.display().to_string()),
            ("archive_mode", "off".to_owned()),
            ("hot_standby", "on".to_owned()),
            ("primary_conninfo", String::new()),
            ("hba_file", hba.display().to_string()),
            ("ssl", "off".to_owned()),
            ("logging_collector", "off".to_owned()),
            ("lc_messages", "C".to_owned()),
        ] {
            settings.insert(name.to_owned(), value);
        }
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|error| format!("cannot open {}: {error}", self.log.display()))?;
        let errors = output.try_clone().map_err(|error| format!("cannot share the log: {error}"))?;
        let mut command = tools.command(&tools.bin.join("postgres"));
        command.arg("-D").arg(&self.data_dir);
        for (name, value) in &settings {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        command
            .env_remove(crate::sys::process_tree::TOKEN_VARIABLE)
            .stdout(output)
            .stderr(errors)
            .process_group(0)
            .kill_on_drop(false);
        command.spawn().map_err(|error| format!("cannot start the side server: {error}"))
    }

    async fn sql(&self, sql: &str) -> Result<String, String> {
        let mut command = tokio::process::Command::new(
            crate::clients::postgres::Program::Psql.locate().map_err(|error| error.0)?,
        );
        command
            .args(["--no-psqlrc", "--quiet", "--no-align", "--tuples-only", "--set=ON_ERROR_STOP=1"])
            .arg(format!("--host={}", self.socket_dir.display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--username={}", self.user))
            .args(["--dbname=postgres", "--command", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .env_remove("PGPASSWORD")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = command.output().await.map_err(|error| format!("cannot run psql: {error}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }

    /// Waits until replay pauses at the target (or, for `latest`, recovery ends).
    async fn wait_for_target(
        &self,
        target: &Checked,
        server: &tokio::process::Child,
        stop_at: Instant,
        context: &StepContext,
    ) -> Result<Reached, String> {
        let _ = server;
        let mut last_note = Instant::now();
        loop {
            let state = self
                .sql(
                    "select pg_is_in_recovery(), case when pg_is_in_recovery() then pg_get_wal_replay_pause_state() \
                     else 'done' end, coalesce(to_char(pg_last_xact_replay_timestamp() at time zone 'UTC', \
                     'YYYY-MM-DD\"T\"HH24:MI:SS.US'), ''), coalesce(pg_last_wal_replay_lsn()::text, ''), \
                     (select timeline_id from pg_control_checkpoint())",
                )
                .await;
            if let Ok(row) = &state {
                let fields: Vec<&str> = row.split('|').collect();
                if let [_, pause, replayed, lsn, timeline] = fields.as_slice() {
                    let replayed_at = chrono::NaiveDateTime::parse_from_str(replayed, "%Y-%m-%dT%H:%M:%S%.f")
                        .ok()
                        .map(|time| time.and_utc());
                    let done = match target {
                        Checked::Latest => *pause == "done",
                        _ => *pause == "paused",
                    };
                    if done {
                        return Ok(Reached {
                            replayed_at,
                            lsn: (*lsn).to_owned(),
                            timeline_before: timeline.parse().unwrap_or(0),
                        });
                    }
                    if *pause == "done" {
                        return Err(format!(
                            "the side server ended recovery without pausing at the target {}; it is not used",
                            target.describe()
                        ));
                    }
                    if last_note.elapsed() > Duration::from_secs(10) {
                        last_note = Instant::now();
                        context.progress.note(format!("replayed up to {lsn} ({replayed})"));
                    }
                }
            }
            if !self.data_dir.join("postmaster.pid").exists() && self.log_has("database system is shut down")
                || self.log_has("recovery ended before configured recovery target was reached")
            {
                return Err(self.ended_early(target));
            }
            if self.log_has("FATAL") && !self.data_dir.join("postmaster.pid").exists() {
                return Err(format!(
                    "the side server stopped during recovery: {}; nothing was promoted",
                    self.log_tail(6)
                ));
            }
            if Instant::now() >= stop_at {
                return Err(format!(
                    "recovery did not reach the target {} before the `deadline`; nothing was promoted; log: {}",
                    target.describe(),
                    self.log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_has(&self, text: &str) -> bool {
        self.log_text().contains(text)
    }

    fn log_tail(&self, lines: usize) -> String {
        crate::clients::postgres::tail(&self.log_text(), lines)
    }

    /// "reached only <time/LSN>, target <target>", from the server's log (C messages).
    fn ended_early(&self, target: &Checked) -> String {
        let log = self.log_text();
        let redo = log.lines().rev().find_map(|line| line.split("redo done at ").nth(1)).map(|rest| {
            rest.split_whitespace().next().unwrap_or_default().to_owned()
        });
        let last = log
            .lines()
            .rev()
            .find_map(|line| line.split("last completed transaction was at log time ").nth(1))
            .map(str::to_owned);
        let reached = match (last, redo) {
            (Some(time), Some(lsn)) => format!("{time} (LSN {lsn})"),
            (Some(time), None) => time,
            (None, Some(lsn)) => format!("LSN {lsn}"),
            (None, None) => "an unknown point".to_owned(),
        };
        format!(
            "recovery ran out of WAL before the target: reached only {reached}, target {}; a segment may be \
             missing from the archive; nothing was promoted (log: {})",
            target.describe(),
            self.log.display()
        )
    }

    /// Promotes and checks that the server writes on a new timeline.
    async fn promote(&self, reached: &Reached, stop_at: Instant) -> Result<u32, String> {
        let in_recovery = self.sql("select pg_is_in_recovery()").await?;
        if in_recovery == "t" {
            let promoted = self.sql("select pg_promote(true, 60)").await?;
            if promoted != "t" {
                return Err("pg_promote() did not finish within 60s".to_owned());
            }
        }
        loop {
            let row = self
                .sql("select pg_is_in_recovery(), substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")
                .await;
            if let Ok(row) = row
                && let Some(("f", timeline)) = row.split_once('|')
            {
                let timeline = u32::from_str_radix(timeline, 16).map_err(|_| format!("odd timeline `{timeline}`"))?;
                if timeline <= reached.timeline_before {
                    return Err(format!(
                        "the promoted server writes on timeline {timeline}, not a new one after {}",
                        reached.timeline_before
                    ));
                }
                return Ok(timeline);
            }
            if Instant::now() >= stop_at {
                return Err("the side server did not leave recovery after pg_promote()".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|error| format!("cannot set the mode of {}: {error}", path.display()))
}

/// Lets another user traverse (not list) every parent of `path` that this process owns.
fn traversable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    for parent in path.ancestors().skip(1) {
        let Ok(metadata) = std::fs::metadata(parent) else { continue };
        let mode = metadata.permissions().mode();
        if mode & 0o001 == 0 && metadata.uid() == 0 {
            set_mode(parent, (mode & 0o7777) | 0o011)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_without_an_offset_is_refused_and_one_with_an_offset_is_taken() {
        let point = |time: &str| Target::Point(TargetPoint { time: Some(time.to_owned()), ..TargetPoint::default() });
        assert!(Checked::parse(&point("2026-12-07 10:29:00"), false).unwrap_err().contains("with an offset"));
        assert!(Checked::parse(&point("2026-12-07T10:29:00"), false).is_err());
        assert!(matches!(Checked::parse(&point("2026-12-07T10:29:00+01:00"), false), Ok(Checked::Time(_))));
        assert!(Checked::parse(&Target::Point(TargetPoint::default()), false).unwrap_err().contains("exactly one"));
    }

    #[test]
    fn reads_commit_times_from_pg_waldump() {
        let line = "rmgr: Transaction len (rec/tot):     34/    34, tx:        725, lsn: 0/04000118, prev \
                    0/040000E0, desc: COMMIT 2026-12-07 22:35:47.125806 UTC";
        assert_eq!(commit_time(line).unwrap().to_rfc3339(), "2026-12-07T22:35:47.125806+00:00");
        assert_eq!(commit_time("rmgr: XLOG desc: SWITCH"), None);
    }

    #[test]
    fn archiving_through_settings_is_refused() {
        let settings = |name: &str, value: &str| [(name.to_owned(), value.to_owned())].into_iter().collect();
        assert!(archiving_setting(&settings("archive_mode", "on")).is_some());
        assert!(archiving_setting(&settings("archive_command", "cp %p /x")).is_some());
        assert!(archiving_setting(&settings("archive_mode", "off")).is_none());
        assert!(archiving_setting(&settings("work_mem", "64MB")).is_none());
    }

    #[test]
    fn the_run_start_comes_from_the_run_id() {
        let parameters: Parameters =
            serde_json::from_value(serde_json::json!({"stanza": "main", "target": "latest"})).unwrap();
        let start = incident_time(&parameters, Some("point-in-time-20261207-103000-ab12")).unwrap();
        assert_eq!(start.to_rfc3339(), "2026-12-07T10:30:00+00:00");
    }
}
