//! `redis.restore` against real `redis-server`s: an RDB made by one server (with data in
//! two databases) is restored into another, which the step stops and starts again with
//! the test's command; bad files and bad configurations are refused while the server
//! keeps serving; and the binary runs a plan with the step.

use crate::support;
use crate::support::kinds::{KindExt as _, kind};

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dr_plan::kinds::{Outputs, Preflight, PreflightContext, StepContext, StepError};
use serde_json::{Value as Json, json};
use support::process::wait_until;
use support::sandbox::only_journal;
use support::{Redis, TargetRedis};

/// An RDB made by a real server ([`Redis::sample_rdb`]): three keys in database 0, one
/// in database 1.
fn make_backup(into: &Path) -> PathBuf {
    let backup = into.join("redis-20240115-100000.rdb");
    std::fs::write(&backup, Redis::sample_rdb()).expect("write the RDB");
    backup
}

fn context(run_dir: &Path) -> StepContext {
    support::steps::context("redis", "restore-redis", run_dir)
}

fn with(target: &TargetRedis, rdb: &Path, expect_keys: Option<u64>) -> Json {
    json!({
        "rdb": rdb.display().to_string(),
        "dir": target.dir().display().to_string(),
        "url": target.url(),
        "start": target.start_argv(),
        "expect_keys": expect_keys,
        "deadline": "30s",
    })
}

async fn run(with: Json, run_dir: &Path) -> Result<Outputs, StepError> {
    kind("redis.restore").execute(with, &context(run_dir)).await
}

#[tokio::test]
async fn the_rdb_replaces_the_data_and_the_old_dump_is_kept() {
    let work = tempfile::tempdir().expect("a directory");
    let backup = make_backup(work.path());
    let target = TargetRedis::start(None);
    target.cli(&["SET", "stale", "from-before"]);
    target.cli(&["SAVE"]);
    let old_dump = std::fs::read(target.dir().join("dump.rdb")).expect("the old dump");

    let preflight =
        kind("redis.restore").preflight(with(&target, &backup, Some(4)), &PreflightContext::default()).await;
    assert!(matches!(&preflight, Preflight::Passed(text) if text.contains("answers PING")), "{preflight:?}");
    let outputs = run(with(&target, &backup, Some(4)), work.path()).await.expect("the restore succeeds");

    assert_eq!(outputs["keys"], json!(4));
    let kept = target.dir().join("dump.rdb.before-restore");
    assert_eq!(outputs["previous_dump"], json!(kept.display().to_string()));
    assert_eq!(std::fs::read(&kept).expect("the kept dump"), old_dump);
    assert_eq!(
        std::fs::read(target.dir().join("dump.rdb")).expect("the new dump"),
        std::fs::read(&backup).expect("the backup")
    );
    assert!(!target.dir().join("dump.rdb.partial").exists());
    assert_eq!(target.cli(&["GET", "user:2"]), "grace");
    assert_eq!(target.cli(&["-n", "1", "GET", "queue:jobs"]), "3");
    assert_eq!(target.cli(&["EXISTS", "stale"]), "0");
    let log = PathBuf::from(outputs["log"].as_str().expect("a log path"));
    assert!(std::fs::read_to_string(&log).expect("the server log").contains("Ready to accept connections"));

    // Again, as a resume would: the restored dump is not moved aside a second time.
    let again = run(with(&target, &backup, Some(4)), work.path()).await.expect("the second restore succeeds");
    assert_eq!(again["keys"], json!(4));
    assert_eq!(std::fs::read(&kept).expect("the kept dump"), old_dump, "the original data stays kept");
}

#[tokio::test]
async fn a_bad_rdb_is_refused_while_redis_keeps_serving() {
    let work = tempfile::tempdir().expect("a directory");
    let backup = make_backup(work.path());
    let target = TargetRedis::start(None);
    target.cli(&["SET", "live", "keep-me"]);

    let mut corrupt = std::fs::read(&backup).expect("the backup");
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x40;
    let corrupt_path = work.path().join("corrupt.rdb");
    std::fs::write(&corrupt_path, &corrupt).expect("write");
    let message =
        run(with(&target, &corrupt_path, None), work.path()).await.expect_err("refused").to_string();
    assert!(message.contains("is corrupt or truncated"), "{message}");
    assert!(message.contains("Redis was not touched"), "{message}");

    let truncated_path = work.path().join("truncated.rdb");
    std::fs::write(&truncated_path, &corrupt[..corrupt.len() - 20]).expect("write");
    let message =
        run(with(&target, &truncated_path, None), work.path()).await.expect_err("refused").to_string();
    assert!(message.contains("is corrupt or truncated"), "{message}");

    let not_rdb = work.path().join("backup.sql.gz");
    std::fs::write(&not_rdb, b"\x1f\x8b\x08\x00 not an rdb").expect("write");
    let message = run(with(&target, &not_rdb, None), work.path()).await.expect_err("refused").to_string();
    assert!(message.contains("is not an RDB file"), "{message}");

    let missing = work.path().join("missing.rdb");
    let message = run(with(&target, &missing, None), work.path()).await.expect_err("refused").to_string();
    assert!(message.contains("cannot read"), "{message}");

    assert_eq!(target.cli(&["GET", "live"]), "keep-me", "the server still serves its data");
    assert!(!target.dir().join("dump.rdb.partial").exists(), "no half-written dump is left");
}

#[tokio::test]
async fn a_configuration_that_would_lose_the_restore_is_refused_before_the_shutdown() {
    let work = tempfile::tempdir().expect("a directory");
    let backup = make_backup(work.path());
    let target = TargetRedis::start(None);
    target.cli(&["SET", "live", "keep-me"]);

    let mut elsewhere = with(&target, &backup, None);
    elsewhere["dir"] = json!(work.path().display().to_string());
    let message = run(elsewhere.clone(), work.path()).await.expect_err("refused").to_string();
    assert!(message.contains(&format!("it keeps its data in {}", target.dir().display())), "{message}");
    let preflight = kind("redis.restore").preflight(elsewhere, &PreflightContext::default()).await;
    assert!(matches!(&preflight, Preflight::Failed(text) if text.contains("set `dir` to")), "{preflight:?}");

    target.cli(&["CONFIG", "SET", "appendonly", "yes"]);
    let message = run(with(&target, &backup, None), work.path()).await.expect_err("refused").to_string();
    assert!(message.contains("`appendonly` is on"), "{message}");
    target.cli(&["CONFIG", "SET", "appendonly", "no"]);

    let mut no_start = with(&target, &backup, None);
    no_start["start"] = json!(["redis-server-that-does-not-exist"]);
    let message = run(no_start, work.path()).await.expect_err("refused").to_string();
    assert!(message.contains("not on PATH"), "{message}");

    assert_eq!(target.cli(&["GET", "live"]), "keep-me", "the server still serves its data");
}

#[tokio::test]
async fn a_password_is_sent_with_auth_and_never_shown() {
    let work = tempfile::tempdir().expect("a directory");
    let backup = make_backup(work.path());
    let target = TargetRedis::start(Some("s3cret-pass"));

    let mut wrong = with(&target, &backup, None);
    wrong["url"] = json!(format!("redis://:not-the-pass@127.0.0.1:{}", target.port));
    let message = run(wrong, work.path()).await.expect_err("refused").to_string();
    assert!(message.contains("AUTH was refused"), "{message}");
    assert!(!message.contains("not-the-pass"), "{message}");

    let outputs = run(with(&target, &backup, Some(3)), work.path()).await.expect("the restore succeeds");
    assert_eq!(outputs["keys"], json!(4));
    assert_eq!(target.cli(&["GET", "user:1"]), "ada");
}

#[tokio::test]
async fn too_few_keys_fail_the_step_and_say_how_to_go_back() {
    let work = tempfile::tempdir().expect("a directory");
    let backup = make_backup(work.path());
    let target = TargetRedis::start(None);
    target.cli(&["SET", "stale", "from-before"]);
    target.cli(&["SAVE"]);

    let message =
        run(with(&target, &backup, Some(1000)), work.path()).await.expect_err("too few").to_string();
    assert!(message.contains("holds 4 keys after the restore, fewer than the 1000 expected"), "{message}");
    assert!(message.contains("dump.rdb.before-restore"), "{message}");
}

#[tokio::test]
async fn a_stopped_server_is_restored_and_started() {
    let work = tempfile::tempdir().expect("a directory");
    let backup = make_backup(work.path());
    let target = TargetRedis::start(None);
    // As after an attempt that stopped Redis and was killed before starting it again.
    let _ = target.try_cli(&["SHUTDOWN", "NOSAVE"]);
    assert!(wait_until(Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", target.port)).is_err()));

    let outputs = run(with(&target, &backup, Some(4)), work.path()).await.expect("the restore succeeds");
    assert_eq!(outputs["keys"], json!(4));
    assert_eq!(outputs["previous_dump"], Json::Null, "there was no dump before");
    assert_eq!(target.cli(&["GET", "session:9"]), "active");
}

#[test]
fn the_binary_restores_redis_from_a_plan() {
    let work = tempfile::tempdir().expect("a directory");
    let backup = make_backup(work.path());
    let target = TargetRedis::start(None);
    target.cli(&["SET", "stale", "from-before"]);
    let plan = work.path().join("restore-redis.yaml");
    std::fs::write(
        &plan,
        r#"version: 1
name: restore-redis
vars:
  rdb: /nonexistent.rdb
  dir: /var/lib/redis
  url: redis://127.0.0.1:6379
  port: "6379"
steps:
  - id: restore-redis
    kind: redis.restore
    with:
      rdb: "{{vars.rdb}}"
      dir: "{{vars.dir}}"
      url: "{{vars.url}}"
      start: [redis-server, --port, "{{vars.port}}", --bind, 127.0.0.1, --dir, "{{vars.dir}}", --dbfilename, dump.rdb, --save, "", --appendonly, "no"]
      expect_keys: 4
      deadline: 30s
"#,
    )
    .expect("write the plan");
    let vars = work.path().join("vars.yaml");
    std::fs::write(
        &vars,
        format!(
            "rdb: {}\ndir: {}\nurl: {}\nport: \"{}\"\n",
            backup.display(),
            target.dir().display(),
            target.url(),
            target.port
        ),
    )
    .expect("write the vars");
    let state = work.path().join("state");

    let output = assert_cmd::Command::cargo_bin("dr-plan")
        .expect("the binary")
        .args(["run", "--yes", "--format", "json", "--state-dir"])
        .arg(&state)
        .arg("--vars-file")
        .arg(&vars)
        .arg(&plan)
        .timeout(Duration::from_secs(120))
        .output()
        .expect("the run finishes");
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let succeeded: Json = only_journal(&state)
        .into_iter()
        .find(|record| record["event"] == "step_succeeded")
        .expect("the step succeeded");
    assert_eq!(succeeded["outputs"]["keys"], json!(4));
    assert_eq!(target.cli(&["GET", "user:2"]), "grace");
    assert_eq!(target.cli(&["EXISTS", "stale"]), "0");
}
