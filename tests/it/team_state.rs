//! Runs that belong to the team: `--state-dir s3://BUCKET/PREFIX` against moto's S3
//! (which honours `If-None-Match: *` and `If-Match` on PutObject). Each operator is a
//! `dr-plan` process in a directory of its own with a `HOME` of its own: nothing of a
//! run is on their disks but what the steps write.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

use crate::support::Moto;
use crate::support::process::{send_signal, temporary_directory, wait_bounded, wait_until};
use crate::support::sandbox::{BINARY, Finished, finish};

const BUCKET: &str = "team-dr";

/// moto with a state bucket, and an S3 client of the test's own to look at (and
/// tamper with) what dr-plan wrote.
struct TeamBucket {
    moto: Moto,
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
    /// `s3://team-dr/<prefix>`: one prefix per test.
    url: String,
    prefix: String,
}

impl TeamBucket {
    fn start(prefix: &str) -> TeamBucket {
        let moto = Moto::start();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .endpoint_url(moto.endpoint())
            .force_path_style(true)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        let client = aws_sdk_s3::Client::from_conf(config);
        runtime.block_on(client.create_bucket().bucket(BUCKET).send()).expect("bucket created");
        TeamBucket {
            moto,
            runtime,
            client,
            url: format!("s3://{BUCKET}/{prefix}"),
            prefix: prefix.to_owned(),
        }
    }

    /// Keys under the test's prefix (without it), sorted.
    fn keys(&self) -> Vec<String> {
        let listed = self
            .runtime
            .block_on(self.client.list_objects_v2().bucket(BUCKET).prefix(format!("{}/", self.prefix)).send())
            .expect("list");
        let mut keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|object| object.key())
            .map(|key| key[self.prefix.len() + 1..].to_owned())
            .collect();
        keys.sort();
        keys
    }

    fn journal_keys(&self, run_id: &str) -> Vec<String> {
        let directory = format!("runs/{run_id}/journal/");
        self.keys().into_iter().filter(|key| key.starts_with(&directory)).collect()
    }

    fn get(&self, key: &str) -> Vec<u8> {
        let answer = self
            .runtime
            .block_on(self.client.get_object().bucket(BUCKET).key(format!("{}/{key}", self.prefix)).send())
            .expect("get");
        self.runtime.block_on(answer.body.collect()).expect("body").into_bytes().to_vec()
    }

    fn put(&self, key: &str, bytes: Vec<u8>) {
        self.runtime
            .block_on(
                self.client
                    .put_object()
                    .bucket(BUCKET)
                    .key(format!("{}/{key}", self.prefix))
                    .body(bytes.into())
                    .send(),
            )
            .expect("put");
    }

    fn delete(&self, key: &str) {
        self.runtime
            .block_on(self.client.delete_object().bucket(BUCKET).key(format!("{}/{key}", self.prefix)).send())
            .expect("delete");
    }

    /// Every event of the run's journal, in order.
    fn events(&self, run_id: &str) -> Vec<Json> {
        self.journal_keys(run_id)
            .iter()
            .flat_map(|key| {
                String::from_utf8(self.get(key))
                    .expect("utf-8")
                    .lines()
                    .map(|line| serde_json::from_str::<Json>(line).expect("an event"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// An operator: a directory and a `HOME` of their own.
struct Operator {
    home: tempfile::TempDir,
}

impl Operator {
    fn new(name: &str) -> Operator {
        Operator { home: temporary_directory(name) }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    fn write_plan(&self, name: &str, text: &str) -> String {
        std::fs::write(self.path(name), text).expect("plan written");
        name.to_owned()
    }

    fn command(&self, bucket: &TeamBucket, arguments: &[&str]) -> Command {
        let mut command = self.command_in(&bucket.url, arguments);
        command.env("AWS_ENDPOINT_URL_S3", bucket.moto.endpoint());
        command
    }

    /// `dr-plan ARGUMENTS` with the state at `state` (a directory or a URL).
    fn command_in(&self, state: &str, arguments: &[&str]) -> Command {
        let mut command = Command::new(BINARY);
        command
            .current_dir(self.home.path())
            .args(arguments)
            .env("HOME", self.home.path())
            .env("NO_COLOR", "1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("DR_PLAN_STATE_DIR", state)
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null());
        command
    }

    fn dr_plan(&self, bucket: &TeamBucket, arguments: &[&str]) -> Finished {
        finish(self.command(bucket, arguments))
    }

    fn spawn(&self, bucket: &TeamBucket, arguments: &[&str], lease_seconds: u32) -> Child {
        let log = std::fs::File::create(self.path("dr-plan.log")).expect("log");
        self.command(bucket, arguments)
            .env("DR_PLAN_LOCK_LEASE", lease_seconds.to_string())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("dr-plan starts")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("dr-plan.log")).unwrap_or_default()
    }

    /// Nothing of a run under the operator's directory: no `.dr-plan`, no state.
    fn assert_no_local_state(&self) {
        assert!(
            !self.path(".dr-plan").exists(),
            "a local .dr-plan appeared in {}",
            self.home.path().display()
        );
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// Runs the `kill PIDS` that a refusal names (programs a paused holder's steps left
/// running), as the operator would, and waits for them to be gone.
fn stop_as_told(refusal: &Finished) {
    let pids: Vec<String> = refusal
        .stderr
        .split("stop them (`kill ")
        .nth(1)
        .and_then(|rest| rest.split("`)").next())
        .unwrap_or_else(|| panic!("no kill command: {refusal}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let _ = Command::new("kill").args(&pids).status();
    let gone = |pid: &String| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| stat.contains(") Z "))
    };
    assert!(wait_until(Duration::from_secs(10), || pids.iter().all(gone)), "{pids:?} still running");
}

/// The ids of the runs `status --format json` lists.
fn listed_runs(operator: &Operator, bucket: &TeamBucket) -> Vec<Json> {
    let status = operator.dr_plan(bucket, &["status", "--format", "json"]);
    assert_eq!(status.code, 0, "{status}");
    serde_json::from_str::<Vec<Json>>(&status.stdout).expect("status JSON")
}

/// A plan whose steps append to files under `directory`: `once` (not idempotent: it
/// must run exactly once), `slow` (waits for `release` to exist, after saying it
/// started), then `after`.
fn counting_plan(name: &str, directory: &Path) -> String {
    let at = |file: &str| directory.join(file).display().to_string();
    format!(
        r#"version: 1
name: {name}
description: team state test
steps:
  - id: once
    kind: exec
    with:
      command: ["sh", "-c", "echo ran >> {once}"]
  - id: slow
    kind: exec
    needs: [once]
    with:
      command: ["sh", "-c", "echo started >> {slow}; while [ ! -e {release} ]; do sleep 0.05; done"]
  - id: after
    kind: exec
    needs: [slow]
    with:
      command: ["sh", "-c", "echo ran >> {after}"]
"#,
        once = at("once.count"),
        slow = at("slow.count"),
        release = at("release"),
        after = at("after.count"),
    )
}

#[test]
fn a_run_kept_in_s3_is_listed_reported_and_verified_from_anywhere() {
    let bucket = TeamBucket::start("prod");
    let shared = temporary_directory("team-files");
    std::fs::write(shared.path().join("release"), "").unwrap();
    let alice = Operator::new("alice");
    let plan = alice.write_plan("plan.yaml", &counting_plan("team-run", shared.path()));
    let run = alice.dr_plan(&bucket, &["run", &plan, "--yes"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stderr.contains(&format!("state: {}", bucket.url)), "{run}");
    alice.assert_no_local_state();

    let keys = bucket.keys();
    let run_id = keys[0].split('/').nth(1).expect("runs/<id>/").to_owned();
    assert!(keys.contains(&format!("runs/{run_id}/plan.snapshot")), "{keys:?}");
    let journal = bucket.journal_keys(&run_id);
    assert!(journal.len() >= 3, "{keys:?}");
    // Group commit: fewer objects than events (a success shares the starts it releases).
    assert!(journal.len() < bucket.events(&run_id).len(), "{journal:?}");

    // Bob, elsewhere, with nothing on his disk, sees it all.
    let bob = Operator::new("bob");
    let listed = listed_runs(&bob, &bucket);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["run_id"], run_id.as_str());
    assert_eq!(listed[0]["status"], "succeeded");
    let report = bob.dr_plan(&bucket, &["report", &run_id]);
    assert_eq!(report.code, 0, "{report}");
    assert!(report.stdout.contains("| Journal | intact"), "{report}");
    let verify = bob.dr_plan(&bucket, &["verify", &run_id]);
    assert_eq!(verify.code, 0, "{verify}");
    assert!(verify.stdout.contains("journal intact"), "{verify}");
    // The head printed when the run ended is the one verify finds: kept elsewhere, it
    // shows a journal cut short later.
    let head = verify.stdout.lines().next().and_then(|line| line.split("head ").nth(1)).expect("a head");
    assert!(run.stderr.contains(&format!("journal head {head} (")), "{run}\n{verify}");
    bob.assert_no_local_state();
    // The hint of the run names the bucket, so it works pasted anywhere.
    assert!(run.stderr.contains(&format!("--state-dir {}", bucket.url)), "{run}");
}

#[test]
fn verify_finds_a_changed_a_deleted_and_swapped_journal_object() {
    let bucket = TeamBucket::start("audit");
    let shared = temporary_directory("team-files");
    std::fs::write(shared.path().join("release"), "").unwrap();
    let alice = Operator::new("alice");
    let plan = alice.write_plan("plan.yaml", &counting_plan("audited", shared.path()));
    let run = alice.dr_plan(&bucket, &["run", &plan, "--yes"]);
    assert_eq!(run.code, 0, "{run}");
    let run_id = listed_runs(&alice, &bucket)[0]["run_id"].as_str().unwrap().to_owned();
    let keys = bucket.journal_keys(&run_id);
    let originals: Vec<Vec<u8>> = keys.iter().map(|key| bucket.get(key)).collect();
    let restore = || {
        for (key, bytes) in keys.iter().zip(&originals) {
            bucket.put(key, bytes.clone());
        }
        let verify = alice.dr_plan(&bucket, &["verify", &run_id]);
        assert_eq!(verify.code, 0, "restored: {verify}");
    };

    // One byte changed in the second object.
    let mut changed = originals[1].clone();
    let position = changed.iter().position(|&byte| byte == b'"').unwrap() + 1;
    changed[position] ^= 0x01;
    bucket.put(&keys[1], changed);
    let verify = alice.dr_plan(&bucket, &["verify", &run_id]);
    assert_eq!(verify.code, 1, "{verify}");
    assert!(verify.stderr.contains(&keys[1]) || verify.stderr.contains(&keys[2]), "{verify}");
    restore();

    // One object deleted.
    bucket.delete(&keys[1]);
    let verify = alice.dr_plan(&bucket, &["verify", &run_id]);
    assert_eq!(verify.code, 1, "{verify}");
    assert!(verify.stderr.contains(&keys[2]), "the first event after the hole is named: {verify}");
    restore();

    // Two objects swapped.
    bucket.put(&keys[1], originals[2].clone());
    bucket.put(&keys[2], originals[1].clone());
    let verify = alice.dr_plan(&bucket, &["verify", &run_id]);
    assert_eq!(verify.code, 1, "{verify}");
    assert!(verify.stderr.contains(&keys[1]), "{verify}");
    // The report names the object too.
    let report = alice.dr_plan(&bucket, &["report", &run_id]);
    assert!(
        report
            .stdout
            .contains(&format!("**does not match its hash chain** at s3://{BUCKET}/audit/{}", keys[1])),
        "{report}"
    );
    // resume refuses to act on it.
    let resume = alice.dr_plan(&bucket, &["resume", &run_id, "--yes"]);
    assert_ne!(resume.code, 0, "{resume}");
    restore();
}

#[test]
fn a_run_killed_on_one_machine_is_finished_exactly_from_another() {
    let bucket = TeamBucket::start("handover");
    let shared = temporary_directory("team-files");
    let alice = Operator::new("alice");
    let plan = alice.write_plan("plan.yaml", &counting_plan("handover", shared.path()));
    let mut process = alice.spawn(&bucket, &["run", &plan, "--yes"], 60);
    assert!(
        wait_until(Duration::from_secs(30), || lines(&shared.path().join("slow.count")).len() == 1),
        "slow never started: {}",
        alice.log()
    );
    send_signal("KILL", &process.id().to_string());
    let _ = wait_bounded(&mut process, Duration::from_secs(10));
    std::fs::write(shared.path().join("release"), "").unwrap();

    // Bob: another directory, another HOME, no local state; he finds the run.
    let bob = Operator::new("bob");
    let listed = listed_runs(&bob, &bucket);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let run_id = listed[0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(listed[0]["status"], "not finished");
    // Its status says what to type; he types it.
    let status = bob.dr_plan(&bucket, &["status", &run_id]);
    let next = status
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("next: `").and_then(|rest| rest.strip_suffix('`')))
        .unwrap_or_else(|| panic!("no next command: {status}"))
        .to_owned();
    assert!(next.contains("resume") && next.contains(&bucket.url), "{next}");
    let words: Vec<String> =
        next.split_whitespace().skip(1).map(|word| word.trim_matches('\'').to_owned()).collect();
    let mut arguments: Vec<&str> = words.iter().map(String::as_str).collect();
    arguments.push("--yes");
    let resumed = bob.dr_plan(&bucket, &arguments);
    assert_eq!(resumed.code, 0, "{status}\n{resumed}");
    assert_eq!(lines(&shared.path().join("once.count")).len(), 1, "`once` ran exactly once");
    assert_eq!(lines(&shared.path().join("after.count")).len(), 1);
    bob.assert_no_local_state();
    let events = bucket.events(&run_id);
    assert!(events.iter().any(|event| event["event"] == "lock_broken"), "the broken lock is journaled");
    assert_eq!(events.last().unwrap()["event"], "run_finished");
    assert_eq!(bob.dr_plan(&bucket, &["verify", &run_id]).code, 0);
}

#[test]
fn two_operators_at_once_exactly_one_runs() {
    let bucket = TeamBucket::start("race");
    let shared = temporary_directory("team-files");
    std::fs::write(shared.path().join("release"), "").unwrap();
    let alice = Operator::new("alice");
    let bob = Operator::new("bob");
    let text = counting_plan("raced", shared.path()).replace("while [ ! -e", "sleep 1; while [ ! -e");
    let plan = alice.write_plan("plan.yaml", &text);
    bob.write_plan("plan.yaml", &text);
    for trial in 0..20 {
        let first = alice
            .command(&bucket, &["run", &plan, "--yes"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let second = bob
            .command(&bucket, &["run", &plan, "--yes"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let outputs = [first.wait_with_output().unwrap(), second.wait_with_output().unwrap()];
        let codes: Vec<i32> = outputs.iter().map(|output| output.status.code().unwrap_or(-1)).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        let shown: Vec<String> =
            outputs.iter().map(|output| String::from_utf8_lossy(&output.stderr).into_owned()).collect();
        assert_eq!(sorted, vec![0, 3], "trial {trial}: {codes:?}\n{}", shown.join("\n---\n"));
        let refused = &shown[codes.iter().position(|&code| code == 3).unwrap()];
        assert!(refused.contains("is already being run by") && refused.contains("lease until"), "{refused}");
    }
    assert_eq!(lines(&shared.path().join("once.count")).len(), 20, "one run per trial");
}

#[test]
fn a_paused_holder_whose_lease_expired_stops_before_its_next_step() {
    let bucket = TeamBucket::start("paused");
    let shared = temporary_directory("team-files");
    let alice = Operator::new("alice");
    let plan = alice.write_plan("plan.yaml", &counting_plan("paused", shared.path()));
    let mut process = alice.spawn(&bucket, &["run", &plan, "--yes"], 2);
    assert!(
        wait_until(Duration::from_secs(30), || lines(&shared.path().join("slow.count")).len() == 1),
        "slow never started: {}",
        alice.log()
    );
    send_signal("STOP", &process.id().to_string());
    std::thread::sleep(Duration::from_secs(3));
    let bob = Operator::new("bob");
    let run_id = listed_runs(&bob, &bucket)[0]["run_id"].as_str().unwrap().to_owned();
    // Without --break-stale-lock Bob is told who holds it and how.
    let refused = bob.dr_plan(&bucket, &["resume", &run_id, "--rerun-interrupted", "--yes"]);
    assert_eq!(refused.code, 3, "{refused}");
    assert!(refused.stderr.contains("lease"), "{refused}");
    // `status` says the same as a resume would, and offers to look again, not a resume.
    let status = bob.dr_plan(&bucket, &["status", &run_id]);
    assert!(
        status.stdout.contains("stopped renewing it") && status.stdout.contains("still running"),
        "{status}"
    );
    assert!(
        status.stdout.contains(&format!("next: `dr-plan status {run_id} --state-dir {}`", bucket.url)),
        "{status}"
    );
    // Alice's `slow` still runs (its program is not paused): breaking the lock now would
    // run it twice at once. Bob is told, with the command that stops it.
    let arguments = ["resume", run_id.as_str(), "--rerun-interrupted", "--break-stale-lock", "--yes"];
    let left_running = bob.dr_plan(&bucket, &arguments);
    assert_eq!(left_running.code, 3, "{left_running}");
    assert!(left_running.stderr.contains("stopped renewing it"), "{left_running}");
    stop_as_told(&left_running);
    std::fs::write(shared.path().join("release"), "").unwrap();
    let resumed = bob.dr_plan(&bucket, &arguments);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert_eq!(lines(&shared.path().join("after.count")).len(), 1);
    // Alice wakes up: her `slow` ends (release exists), and she must not start `after`.
    send_signal("CONT", &process.id().to_string());
    let status = wait_bounded(&mut process, Duration::from_secs(30)).expect("alice stops");
    assert_eq!(status.code(), Some(3), "{}", alice.log());
    assert!(alice.log().contains("this process stopped before starting another step"), "{}", alice.log());
    assert_eq!(lines(&shared.path().join("after.count")).len(), 1, "alice did not start `after`");
    assert_eq!(
        bob.dr_plan(&bucket, &["verify", &run_id]).code,
        0,
        "alice wrote nothing after losing the lock"
    );
}

#[test]
fn an_unreachable_state_bucket_stops_the_run_at_start_and_midway() {
    let shared = temporary_directory("team-files");
    let alice = Operator::new("alice");
    let plan = alice.write_plan("plan.yaml", &counting_plan("unreachable", shared.path()));
    // Nothing listens on the port: exit 3 naming the bucket, nothing ran.
    let closed = crate::support::process::free_port();
    let bucket = TeamBucket::start("down");
    let mut command = alice.command(&bucket, &["run", &plan, "--yes"]);
    command.env("AWS_ENDPOINT_URL_S3", format!("http://127.0.0.1:{closed}"));
    let refused = finish(command);
    assert_eq!(refused.code, 3, "{refused}");
    assert!(refused.stderr.contains("s3://team-dr/down"), "{refused}");
    assert!(refused.stderr.contains("--state-dir DIR"), "the local fallback is named: {refused}");
    assert!(!shared.path().join("once.count").exists());

    // The bucket goes away mid-run: the journal write is retried, then the run stops
    // before starting another step.
    let mut process = alice
        .command(&bucket, &["run", &plan, "--yes"])
        .env("DR_PLAN_STATE_WRITE_DEADLINE", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(30), || lines(&shared.path().join("slow.count")).len() == 1));
    drop(bucket);
    std::fs::write(shared.path().join("release"), "").unwrap();
    let status = wait_bounded(&mut process, Duration::from_secs(120)).expect("the run stops");
    assert_ne!(status.code(), Some(0));
    assert!(!shared.path().join("after.count").exists(), "nothing started after an unrecorded event");
}

#[test]
fn a_download_left_on_the_first_machine_is_fetched_again_by_the_second() {
    let bucket = TeamBucket::start("artifacts");
    bucket.runtime.block_on(bucket.client.create_bucket().bucket("backups").send()).expect("backups bucket");
    bucket
        .runtime
        .block_on(
            bucket
                .client
                .put_object()
                .bucket("backups")
                .key("db/latest.sql")
                .body(b"select 1;\n".to_vec().into())
                .send(),
        )
        .expect("backup uploaded");
    let shared = temporary_directory("team-files");
    let gate = shared.path().join("release").display().to_string();
    let out = shared.path().join("out").display().to_string();
    let plan = format!(
        r#"version: 1
name: artifacts
description: a download read after a pause
steps:
  - id: fetch
    kind: s3.fetch
    with:
      bucket: backups
      key: db/latest.sql
      checksum: none
  - id: gate
    kind: exec
    needs: [fetch]
    with:
      command: ["sh", "-c", "while [ ! -e {gate} ]; do sleep 0.05; done"]
  - id: use
    kind: exec
    needs: [gate]
    with:
      command: ["sh", "-c", "cat {{{{steps.fetch.outputs.path}}}} >> {out}"]
"#
    );
    let alice = Operator::new("alice");
    let plan = alice.write_plan("plan.yaml", &plan);
    let alice_work = alice.path("work");
    let mut process =
        alice.spawn(&bucket, &["run", &plan, "--yes", "--work-dir", &alice_work.display().to_string()], 60);
    assert!(
        wait_until(Duration::from_secs(30), || alice.log().contains("▶ gate")
            || alice.log().contains("gate started")),
        "gate never started: {}",
        alice.log()
    );
    send_signal("KILL", &process.id().to_string());
    let _ = wait_bounded(&mut process, Duration::from_secs(10));
    // Alice's laptop is gone, and her download with it.
    std::fs::remove_dir_all(&alice_work).unwrap();
    std::fs::write(&gate, "").unwrap();

    let bob = Operator::new("bob");
    let run_id = listed_runs(&bob, &bucket)[0]["run_id"].as_str().unwrap().to_owned();
    let resumed =
        bob.dr_plan(&bucket, &["resume", &run_id, "--rerun-interrupted", "--break-stale-lock", "--yes"]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert!(resumed.stderr.contains("`fetch` runs again: its file"), "{resumed}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "select 1;\n");
}

#[test]
fn journal_objects_can_be_kept_with_object_lock_and_a_state_in_the_failing_region_is_named() {
    // The prefix names eu-west-1, the region the plan fails away from (DRP014).
    let bucket = TeamBucket::start("eu-west-1");
    bucket
        .runtime
        .block_on(
            bucket.client.create_bucket().bucket("locked-dr").object_lock_enabled_for_bucket(true).send(),
        )
        .expect("bucket with Object Lock");
    let shared = temporary_directory("team-files");
    std::fs::write(shared.path().join("release"), "").unwrap();
    let alice = Operator::new("alice");
    let text = counting_plan("locked", shared.path())
        .replace(
            "description: team state test\n",
            "description: team state test\nvars:\n  primary_region: eu-west-1\n",
        )
        .replace("echo ran >> ", "echo {{vars.primary_region}} >> ");
    let plan = alice.write_plan("plan.yaml", &text);

    let warned = alice.dr_plan(&bucket, &["run", &plan, "--yes"]);
    assert_eq!(warned.code, 0, "{warned}");
    assert!(
        warned.stderr.contains(
            "warning: plan.yaml:5:19: the state of this plan's runs is kept in s3://team-dr/eu-west-1, in eu-west-1"
        ),
        "{warned}"
    );

    let mut command = alice.command(&bucket, &["run", &plan, "--yes", "--state-object-lock", "7"]);
    command.env("DR_PLAN_STATE_DIR", "s3://locked-dr/audit");
    let locked = finish(command);
    assert_eq!(locked.code, 0, "{locked}");
    let listed = bucket.runtime.block_on(bucket.client.list_objects_v2().bucket("locked-dr").send()).unwrap();
    let journal: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|object| object.key())
        .filter(|key| key.contains("/journal/") || key.ends_with("plan.snapshot"))
        .map(str::to_owned)
        .collect();
    assert!(journal.len() >= 3, "{journal:?}");
    for key in &journal {
        // (moto answers GetObjectRetention with the object itself: HEAD shows the same.)
        let head = bucket
            .runtime
            .block_on(bucket.client.head_object().bucket("locked-dr").key(key).send())
            .unwrap_or_else(|error| panic!("{key}: {error:?}"));
        assert_eq!(head.object_lock_mode(), Some(&aws_sdk_s3::types::ObjectLockMode::Governance), "{key}");
        let until = head.object_lock_retain_until_date().expect("a retention date").secs();
        let days = (until - chrono::Utc::now().timestamp() + 3_600) / 86_400;
        assert!((6..=7).contains(&days), "{key}: kept {days} days");
    }
}

#[test]
fn a_local_lock_has_a_lease_too() {
    // Two operators on one machine sharing a state directory: the holder is paused
    // (alive, so the pid check alone would call its lock held forever).
    let shared = temporary_directory("team-files");
    let state = shared.path().join("state").display().to_string();
    let alice = Operator::new("alice");
    let plan = alice.write_plan("plan.yaml", &counting_plan("local-lease", shared.path()));
    let log = std::fs::File::create(alice.path("dr-plan.log")).unwrap();
    let mut process = alice
        .command_in(&state, &["run", &plan, "--yes"])
        .env("DR_PLAN_LOCK_LEASE", "2")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || lines(&shared.path().join("slow.count")).len() == 1),
        "{}",
        alice.log()
    );
    send_signal("STOP", &process.id().to_string());
    std::thread::sleep(Duration::from_secs(3));
    let bob = Operator::new("bob");
    let status = finish(bob.command_in(&state, &["status", "--format", "json"]));
    let runs: Vec<Json> = serde_json::from_str(&status.stdout).expect("status JSON");
    let run_id = runs[0]["run_id"].as_str().unwrap().to_owned();
    let arguments = ["resume", run_id.as_str(), "--rerun-interrupted", "--break-stale-lock", "--yes"];
    let left_running = finish(bob.command_in(&state, &arguments));
    assert_eq!(left_running.code, 3, "{left_running}");
    stop_as_told(&left_running);
    std::fs::write(shared.path().join("release"), "").unwrap();
    let resumed = finish(bob.command_in(&state, &arguments));
    assert_eq!(resumed.code, 0, "{resumed}");
    send_signal("CONT", &process.id().to_string());
    let ended = wait_bounded(&mut process, Duration::from_secs(30)).expect("alice stops");
    assert_eq!(ended.code(), Some(3), "{}", alice.log());
    assert_eq!(lines(&shared.path().join("after.count")).len(), 1, "alice did not start `after`");
    let verify = finish(bob.command_in(&state, &["verify", &run_id]));
    assert_eq!(verify.code, 0, "alice wrote nothing after losing the lock: {verify}");
}

#[test]
fn drill_history_in_s3_feeds_the_dry_run() {
    let bucket = TeamBucket::start("drills");
    let shared = temporary_directory("team-files");
    std::fs::write(shared.path().join("release"), "").unwrap();
    let alice = Operator::new("alice");
    let plan = alice.write_plan("plan.yaml", &counting_plan("drilled", shared.path()));
    let drill = alice.dr_plan(&bucket, &["drill", &plan, "--yes"]);
    assert_eq!(drill.code, 0, "{drill}");
    assert!(bucket.keys().iter().any(|key| key.starts_with("history/drilled/")), "{:?}", bucket.keys());
    let bob = Operator::new("bob");
    bob.write_plan("plan.yaml", &counting_plan("drilled", shared.path()));
    let preview = bob.dr_plan(&bucket, &["dry-run", "plan.yaml", "--format", "json"]);
    assert_eq!(preview.code, 0, "{preview}");
    let json: Json = serde_json::from_str(&preview.stdout).expect("dry-run JSON");
    assert_eq!(json["drills_in_history"], 1, "the prediction reads the drill kept in S3: {preview}");
}

#[test]
fn state_arguments_that_would_lose_the_run_are_refused_or_kept_whole() {
    let bucket = TeamBucket::start("arguments");
    let shared = temporary_directory("team-files");
    let alice = Operator::new("alice");
    let plan = alice.write_plan("plan.yaml", &counting_plan("arguments", shared.path()));
    // Without a terminal and --yes: the command to paste keeps the URL as it is.
    let unconfirmed = finish(alice.command(&bucket, &["run", &plan, "--state-dir", &bucket.url]));
    assert_eq!(unconfirmed.code, 3, "{unconfirmed}");
    assert!(unconfirmed.stderr.contains(&format!("--state-dir {} --yes", bucket.url)), "{unconfirmed}");
    // A URL with one slash, or in capitals, or nothing at all, is not a directory.
    for typo in ["s3:/team-dr/arguments", "S3://team-dr/arguments", ""] {
        let refused = alice.dr_plan(&bucket, &["run", &plan, "--yes", "--state-dir", typo]);
        assert_eq!(refused.code, 2, "{typo}: {refused}");
        assert!(refused.stderr.contains("s3://BUCKET/PREFIX"), "{refused}");
    }
    // Object Lock asked for a local state is refused, not ignored.
    let local = shared.path().join("state").display().to_string();
    let refused =
        alice.dr_plan(&bucket, &["run", &plan, "--yes", "--state-dir", &local, "--state-object-lock", "7"]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(refused.stderr.contains("--state-object-lock"), "{refused}");
    // A work directory that is a file: said before anything is written to the bucket.
    std::fs::write(alice.path("afile"), "").unwrap();
    let refused = alice.dr_plan(&bucket, &["run", &plan, "--yes", "--work-dir", "afile"]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(refused.stderr.contains("--work-dir afile: not a directory"), "{refused}");
    assert!(bucket.keys().is_empty(), "{:?}", bucket.keys());
    assert!(!shared.path().join("once.count").exists());
}

#[test]
fn a_steps_memory_is_kept_with_the_state_in_s3_not_on_the_machine() {
    // route53.change keeps what the zone held before its change as its memory: with the
    // state in S3 it is an object of the run (so an attempt after a crash on another
    // machine finds it), and nothing of it is in the work directory.
    let bucket = TeamBucket::start("memory");
    let config = aws_sdk_route53::config::Builder::new()
        .behavior_version(aws_sdk_route53::config::BehaviorVersion::latest())
        .region(aws_sdk_route53::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_route53::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(bucket.moto.endpoint())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let route53 = aws_sdk_route53::Client::from_conf(config);
    bucket
        .runtime
        .block_on(route53.create_hosted_zone().name("example.com.").caller_reference("team-memory").send())
        .expect("moto creates the zone");
    let alice = Operator::new("alice");
    let plan = alice.write_plan(
        "plan.yaml",
        &format!(
            r#"version: 1
name: memory
description: a DNS change whose checkpoint is the step's memory
steps:
  - id: switch-dns
    kind: route53.change
    with:
      zone: example.com.
      endpoint: {endpoint}
      wait: false
      changes:
        - {{ action: UPSERT, name: api.example.com., type: CNAME, ttl: 60, values: [api.dr.example.net.] }}
"#,
            endpoint = bucket.moto.endpoint()
        ),
    );
    let work = alice.path("work");
    let run = alice.dr_plan(&bucket, &["run", &plan, "--yes", "--work-dir", &work.display().to_string()]);
    assert_eq!(run.code, 0, "{run}");
    let keys = bucket.keys();
    assert!(
        keys.iter().any(|key| key.ends_with("/memory/switch-dns.route53-checkpoint.json")),
        "the checkpoint is kept with the run: {keys:?}"
    );
    let left_here: Vec<String> = std::fs::read_dir(&work)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|run| std::fs::read_dir(run.path()).into_iter().flatten().flatten())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("checkpoint"))
        .collect();
    assert!(left_here.is_empty(), "nothing of it on this machine: {left_here:?}");
}
