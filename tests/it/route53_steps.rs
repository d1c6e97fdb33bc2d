//! `route53.change` against moto's Route53 (record sets, failover, health checks,
//! undo, zones by name) and against the tests' own stub for what moto cannot show
//! (`PriorRequestNotComplete`, `PENDING` → `INSYNC`, a re-run after a crash), plus the
//! real binary running and undoing a plan.

use crate::support;

use std::path::Path;
use std::time::Duration;

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HealthCheckConfig, HealthCheckType, HostedZoneConfig, ResourceRecord,
    ResourceRecordSet, RrType, Vpc, VpcRegion,
};
use dr_plan::kinds::{Outputs, Preflight, StepContext, StepError, StepOutputs, route53_change};
use serde_json::{Value as Json, json};
use support::process::wait_until;
use support::sandbox::{only_journal, run_ids};
use support::{HttpServer, Moto, Route53Stub, StubRecord};

struct Harness {
    context: StepContext,
    notes: support::steps::Notes,
}

impl Harness {
    fn new(run_dir: &Path) -> Self {
        let (context, notes) =
            support::steps::with_notes(support::steps::context("dns", "switch-dns", run_dir));
        Self { context, notes }
    }

    fn notes(&mut self) -> Vec<String> {
        self.notes.take()
    }
}

fn parameters(with: &Json) -> route53_change::Parameters {
    dr_plan::kinds::parameters(with.clone()).expect("parameters deserialize")
}

async fn run(client: &aws_sdk_route53::Client, with: &Json, harness: &Harness) -> Result<Outputs, StepError> {
    route53_change::run_with(client, parameters(with), &harness.context).await.and_then(StepOutputs::into_map)
}

fn stub_client(stub: &Route53Stub) -> aws_sdk_route53::Client {
    route53_change::connect_with_credentials(&stub.endpoint(), None, "testing", "testing")
}

fn moto_client(moto: &Moto) -> aws_sdk_route53::Client {
    route53_change::connect_with_credentials(&moto.endpoint(), None, "testing", "testing")
}

fn upsert_api(values: &[&str]) -> Json {
    json!({
        "zone": "example.com.",
        "changes": [{ "action": "UPSERT", "name": "api.example.com.", "type": "CNAME", "ttl": 60, "values": values }],
        "deadline": "30s",
    })
}

#[tokio::test]
async fn busy_route53_is_retried_and_the_change_is_waited_for_until_insync() {
    let stub = Route53Stub::start(
        vec![StubRecord::simple("api.example.com.", "CNAME", 300, &["api.eu-west-1.example.com."])],
        1,
        2,
    );
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut harness = Harness::new(directory.path());
    let client = stub_client(&stub);

    let outputs = run(&client, &upsert_api(&["api.eu-west-2.example.com."]), &harness)
        .await
        .expect("the change succeeds");

    assert_eq!(outputs["change_id"], json!("/change/C0000000000001"));
    assert_eq!(outputs["zone_id"], json!(stub.zone_id()));
    assert_eq!(
        outputs["previous"],
        json!([{
            "name": "api.example.com.", "type": "CNAME", "set_identifier": null,
            "record": {
                "name": "api.example.com.", "type": "CNAME", "ttl": 300, "values": ["api.eu-west-1.example.com."],
                "set_identifier": null, "failover": null, "health_check_id": null,
            },
        }])
    );
    assert_eq!(
        stub.records(),
        [StubRecord::simple("api.example.com.", "CNAME", 60, &["api.eu-west-2.example.com."])]
    );
    // One refusal (PriorRequestNotComplete), then the accepted batch.
    assert_eq!(stub.count("POST /2013-04-01/hostedzone/"), 2, "{:#?}", stub.requests());
    // PENDING twice, then INSYNC.
    assert_eq!(stub.count("GET /2013-04-01/change/"), 3, "{:#?}", stub.requests());
    let notes = harness.notes();
    assert!(
        notes.iter().any(|note| note.contains("PriorRequestNotComplete") && note.contains("retrying")),
        "{notes:#?}"
    );
    assert_eq!(notes.iter().filter(|note| note.starts_with("waiting for INSYNC")).count(), 2, "{notes:#?}");
}

#[tokio::test]
async fn a_rerun_after_the_change_submits_nothing_and_reports_the_first_change() {
    let stub = Route53Stub::start(
        vec![StubRecord::simple("api.example.com.", "CNAME", 300, &["api.eu-west-1.example.com."])],
        0,
        0,
    );
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut harness = Harness::new(directory.path());
    let client = stub_client(&stub);
    let with = upsert_api(&["api.eu-west-2.example.com."]);

    let first = run(&client, &with, &harness).await.expect("the change succeeds");
    // The same step again in the same run directory: what a resume does after a crash
    // that came after Route53 accepted the change but before the journal recorded it.
    let second = run(&client, &with, &harness).await.expect("the re-run succeeds");

    assert_eq!(stub.count("POST /2013-04-01/hostedzone/"), 1, "{:#?}", stub.requests());
    assert_eq!(second["change_id"], first["change_id"]);
    assert_eq!(
        second["previous"], first["previous"],
        "previous is still the record set before the first attempt"
    );
    assert_eq!(second["previous"][0]["record"]["values"], json!(["api.eu-west-1.example.com."]));
    assert!(harness.notes().iter().any(|note| note.contains("an earlier attempt recorded")));

    // A new run (another run directory) sees the zone already switched: no change, and
    // `previous` is what it found.
    let other_directory = tempfile::tempdir().expect("temporary directory");
    let other = Harness::new(other_directory.path());
    let third = run(&client, &with, &other).await.expect("the change succeeds");
    assert_eq!(third["change_id"], Json::Null);
    assert_eq!(third["previous"][0]["record"]["values"], json!(["api.eu-west-2.example.com."]));
    assert_eq!(stub.count("POST /2013-04-01/hostedzone/"), 1);
}

#[tokio::test]
async fn a_change_still_pending_at_the_deadline_fails_and_a_resume_waits_for_the_same_change() {
    let stub = Route53Stub::start(
        vec![StubRecord::simple("api.example.com.", "CNAME", 300, &["api.eu-west-1.example.com."])],
        0,
        usize::MAX,
    );
    let directory = tempfile::tempdir().expect("temporary directory");
    let harness = Harness::new(directory.path());
    let client = stub_client(&stub);
    let mut with = upsert_api(&["api.eu-west-2.example.com."]);
    with["deadline"] = json!("2s");

    let started = std::time::Instant::now();
    let error = run(&client, &with, &harness).await.expect_err("the change stays PENDING");
    let message = error.to_string();
    assert!(message.contains("change /change/C0000000000001 is still PENDING"), "{message}");
    assert!(message.contains("raise `deadline`"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10), "the wait stopped near its deadline");

    stub.set_pending_polls(0);
    let outputs = run(&client, &with, &harness).await.expect("the second attempt finds the change INSYNC");
    assert_eq!(outputs["change_id"], json!("/change/C0000000000001"));
    assert_eq!(stub.count("POST /2013-04-01/hostedzone/"), 1, "no second change: {:#?}", stub.requests());
}

#[tokio::test]
async fn changes_route53_refuses_fail_with_its_reason() {
    let stub =
        Route53Stub::start(vec![StubRecord::simple("www.example.com.", "A", 300, &["192.0.2.1"])], 0, 0);
    let directory = tempfile::tempdir().expect("temporary directory");
    let harness = Harness::new(directory.path());
    let client = stub_client(&stub);

    let not_in_zone = json!({
        "zone": "example.com.",
        "changes": [{ "action": "UPSERT", "name": "api.example.org.", "type": "A", "ttl": 60, "values": ["192.0.2.9"] }],
    });
    let message = run(&client, &not_in_zone, &harness).await.expect_err("refused").to_string();
    assert!(message.contains("api.example.org. is not in zone example.com."), "{message}");

    let collision = json!({
        "zone": "example.com.",
        "changes": [{ "action": "CREATE", "name": "www.example.com.", "type": "A", "ttl": 60, "values": ["192.0.2.9"] }],
    });
    let message = run(&client, &collision, &harness).await.expect_err("refused").to_string();
    assert!(message.contains("CREATE www.example.com. A: a record set already exists"), "{message}");
    assert!(message.contains("use UPSERT"), "{message}");

    let wrong_zone = json!({ "zone": "Z0NOSUCHZONE", "changes": collision["changes"] });
    let message = run(&client, &wrong_zone, &harness).await.expect_err("refused").to_string();
    assert!(message.contains("hosted zone `Z0NOSUCHZONE` not found"), "{message}");
    assert_eq!(stub.count("POST"), 0, "nothing was submitted");
}

/// Creates `example.com.` in moto with an A record and a CNAME; returns the zone id.
async fn seed_zone(client: &aws_sdk_route53::Client, name: &str) -> String {
    let zone = client
        .create_hosted_zone()
        .name(name)
        .caller_reference(format!("test-{name}"))
        .send()
        .await
        .expect("moto creates the zone");
    let id = zone.hosted_zone().expect("a zone").id().trim_start_matches("/hostedzone/").to_owned();
    let records = [
        record(&format!("api.{name}"), RrType::Cname, &["api.eu-west-1.example.net."]),
        record(&format!("old.{name}"), RrType::A, &["192.0.2.10"]),
    ];
    let mut batch = ChangeBatch::builder();
    for record in records {
        batch = batch.changes(
            Change::builder()
                .action(ChangeAction::Create)
                .resource_record_set(record)
                .build()
                .expect("a change"),
        );
    }
    client
        .change_resource_record_sets()
        .hosted_zone_id(&id)
        .change_batch(batch.build().expect("a batch"))
        .send()
        .await
        .expect("moto creates the records");
    id
}

fn record(name: &str, record_type: RrType, values: &[&str]) -> ResourceRecordSet {
    let mut builder = ResourceRecordSet::builder().name(name).r#type(record_type).ttl(300);
    for value in values {
        builder = builder.resource_records(ResourceRecord::builder().value(*value).build().expect("a value"));
    }
    builder.build().expect("a record set")
}

/// `(name, type, set identifier) → (ttl, values, failover, health check)` of the zone.
async fn zone_records(client: &aws_sdk_route53::Client, zone: &str) -> Vec<Json> {
    let listed = client.list_resource_record_sets().hosted_zone_id(zone).send().await.expect("list");
    listed
        .resource_record_sets()
        .iter()
        .filter(|record| !matches!(record.r#type(), RrType::Ns | RrType::Soa))
        .map(|record| {
            json!([
                record.name(),
                record.r#type().as_str(),
                record.set_identifier(),
                record.ttl(),
                record.resource_records().iter().map(|value| value.value()).collect::<Vec<_>>(),
                record.failover().map(|failover| failover.as_str().to_owned()),
                record.health_check_id(),
            ])
        })
        .collect()
}

#[tokio::test]
async fn record_sets_are_changed_recorded_and_put_back_by_undo() {
    let moto = Moto::start();
    let client = moto_client(&moto);
    let zone = seed_zone(&client, "example.com.").await;
    let directory = tempfile::tempdir().expect("temporary directory");
    let harness = Harness::new(directory.path());
    let with = json!({
        "zone": "example.com",
        "changes": [
            { "action": "UPSERT", "name": "api.example.com.", "type": "CNAME", "ttl": 60, "values": ["api.eu-west-2.example.net."] },
            { "action": "CREATE", "name": "status.example.com.", "type": "TXT", "ttl": 120, "values": ["\"failover in progress\""] },
            { "action": "DELETE", "name": "old.example.com.", "type": "A" },
        ],
    });
    let before = zone_records(&client, &zone).await;

    let outputs = run(&client, &with, &harness).await.expect("the change succeeds");

    assert_eq!(outputs["zone_id"], json!(zone));
    assert!(outputs["change_id"].is_string(), "{outputs:#?}");
    let previous = &outputs["previous"];
    assert_eq!(previous[0]["record"]["values"], json!(["api.eu-west-1.example.net."]));
    assert_eq!(previous[0]["record"]["ttl"], json!(300));
    assert_eq!(
        previous[1],
        json!({ "name": "status.example.com.", "type": "TXT", "set_identifier": null, "record": null })
    );
    assert_eq!(previous[2]["record"]["values"], json!(["192.0.2.10"]));
    let after = zone_records(&client, &zone).await;
    assert!(
        after.contains(&json!([
            "api.example.com.",
            "CNAME",
            null,
            60,
            ["api.eu-west-2.example.net."],
            null,
            null
        ])),
        "{after:#?}"
    );
    assert!(
        after.contains(&json!([
            "status.example.com.",
            "TXT",
            null,
            120,
            ["\"failover in progress\""],
            null,
            null
        ])),
        "{after:#?}"
    );
    assert!(!after.iter().any(|record| record[0] == "old.example.com."), "{after:#?}");

    route53_change::undo_with(&client, parameters(&with), &outputs, &harness.context)
        .await
        .expect("undo succeeds");

    let restored = zone_records(&client, &zone).await;
    let sorted = |mut records: Vec<Json>| {
        records.sort_by_key(ToString::to_string);
        records
    };
    assert_eq!(sorted(restored), sorted(before));
}

#[tokio::test]
async fn failover_records_are_created_and_a_health_check_inverted_to_force_failover() {
    let moto = Moto::start();
    let client = moto_client(&moto);
    let zone = seed_zone(&client, "shop.example.").await;
    let mut health_checks = Vec::new();
    for (reference, host) in
        [("primary", "eu-west-1.shop.example."), ("secondary", "eu-west-2.shop.example.")]
    {
        let config = HealthCheckConfig::builder()
            .r#type(HealthCheckType::Https)
            .fully_qualified_domain_name(host)
            .port(443)
            .resource_path("/healthz")
            .build()
            .expect("a health check config");
        let created = client
            .create_health_check()
            .caller_reference(reference)
            .health_check_config(config)
            .send()
            .await
            .expect("moto creates the health check");
        health_checks.push(created.health_check().expect("a health check").id().to_owned());
    }
    let directory = tempfile::tempdir().expect("temporary directory");
    let harness = Harness::new(directory.path());
    let with = json!({
        "zone": format!("/hostedzone/{zone}"),
        "changes": [
            { "action": "UPSERT", "name": "www.shop.example.", "type": "A", "ttl": 60, "values": ["198.51.100.1"],
              "set_identifier": "eu-west-1", "failover": "PRIMARY", "health_check_id": health_checks[0] },
            { "action": "UPSERT", "name": "www.shop.example.", "type": "A", "ttl": 60, "values": ["198.51.100.2"],
              "set_identifier": "eu-west-2", "failover": "SECONDARY", "health_check_id": health_checks[1] },
        ],
        "health_checks": [{ "id": health_checks[0], "inverted": true }],
    });

    let preflight = route53_change::preflight_with(&client, &parameters(&with)).await;
    assert!(
        matches!(&preflight, Preflight::Passed(text) if text.contains("1 health check(s) found")),
        "{preflight:?}"
    );
    let outputs = run(&client, &with, &harness).await.expect("the change succeeds");

    let records = zone_records(&client, &zone).await;
    assert!(
        records.contains(&json!([
            "www.shop.example.",
            "A",
            "eu-west-1",
            60,
            ["198.51.100.1"],
            "PRIMARY",
            health_checks[0]
        ])),
        "{records:#?}"
    );
    assert!(
        records.contains(&json!([
            "www.shop.example.",
            "A",
            "eu-west-2",
            60,
            ["198.51.100.2"],
            "SECONDARY",
            health_checks[1]
        ])),
        "{records:#?}"
    );
    assert_eq!(outputs["previous"][0]["record"], Json::Null);
    assert_eq!(outputs["previous"][1]["set_identifier"], json!("eu-west-2"));
    assert_eq!(
        outputs["previous_health_checks"],
        json!([{ "id": health_checks[0], "inverted": false, "disabled": false }])
    );
    assert!(inverted(&client, &health_checks[0]).await, "the primary's check is inverted");

    route53_change::undo_with(&client, parameters(&with), &outputs, &harness.context)
        .await
        .expect("undo succeeds");

    assert!(!inverted(&client, &health_checks[0]).await, "undo put the flag back");
    let records = zone_records(&client, &zone).await;
    assert!(!records.iter().any(|record| record[0] == "www.shop.example."), "{records:#?}");
}

async fn inverted(client: &aws_sdk_route53::Client, id: &str) -> bool {
    let answer = client.get_health_check().health_check_id(id).send().await.expect("get health check");
    answer
        .health_check()
        .and_then(|check| check.health_check_config())
        .and_then(|config| config.inverted())
        .unwrap_or(false)
}

#[tokio::test]
async fn zones_are_found_by_name_and_a_duplicate_name_is_refused() {
    let moto = Moto::start();
    let client = moto_client(&moto);
    seed_zone(&client, "example.com.").await;
    let with = |zone: &str| json!({ "zone": zone, "changes": [{ "action": "DELETE", "name": "old.example.com.", "type": "A" }] });

    let found = route53_change::preflight_with(&client, &parameters(&with("Example.COM"))).await;
    assert!(
        matches!(&found, Preflight::Passed(text) if text.starts_with("zone example.com. (")),
        "{found:?}"
    );

    let missing = route53_change::preflight_with(&client, &parameters(&with("example.org."))).await;
    assert!(
        matches!(&missing, Preflight::Failed(text) if text.contains("hosted zone `example.org.` not found")),
        "{missing:?}"
    );

    let absent_record = json!({ "zone": "example.com.", "changes": [{ "action": "DELETE", "name": "gone.example.com.", "type": "A" }] });
    let failed = route53_change::preflight_with(&client, &parameters(&absent_record)).await;
    assert!(
        matches!(&failed, Preflight::Failed(text) if text.contains("DELETE gone.example.com. A: zone example.com. has no such record set")),
        "{failed:?}"
    );

    // A private zone of the same name (split-horizon DNS).
    client
        .create_hosted_zone()
        .name("example.com.")
        .caller_reference("private-example")
        .hosted_zone_config(HostedZoneConfig::builder().private_zone(true).build())
        .vpc(Vpc::builder().vpc_id("vpc-12345678").vpc_region(VpcRegion::UsEast1).build())
        .send()
        .await
        .expect("moto creates the private zone");
    let ambiguous = route53_change::preflight_with(&client, &parameters(&with("example.com."))).await;
    let Preflight::Failed(text) = &ambiguous else { panic!("two zones share the name: {ambiguous:?}") };
    assert!(text.contains("several hosted zones are named `example.com.`"), "{text}");
    assert!(text.contains("(private)") && text.contains("(public)"), "{text}");
}

#[test]
fn the_binary_runs_the_change_and_undoes_it_when_a_later_step_fails() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let moto = Moto::start();
    let client = moto_client(&moto);
    let zone = runtime.block_on(seed_zone(&client, "example.com."));
    let before = runtime.block_on(zone_records(&client, &zone));
    let standby = HttpServer::start([(200, "ok")]);
    let directory = tempfile::tempdir().expect("temporary directory");
    let plan = fixture("fail-over.yaml");
    let vars = directory.path().join("vars.yaml");
    std::fs::write(&vars, format!("standby: {}/healthz\nendpoint: {}\n", standby.url(), moto.endpoint()))
        .expect("write the vars");
    let state = directory.path().join("state");

    let lint = assert_cmd::Command::cargo_bin("dr-plan")
        .expect("the binary")
        .args(["lint"])
        .arg(&plan)
        .output()
        .expect("lint runs");
    let lint_output = String::from_utf8_lossy(&lint.stdout);
    assert!(
        lint.status.success() && lint_output.contains("0 errors, 0 warnings"),
        "a health check runs upstream of the DNS switch, so lint is happy: {lint_output}"
    );

    let output = assert_cmd::Command::cargo_bin("dr-plan")
        .expect("the binary")
        .args(["run", "--yes", "--format", "json", "--state-dir"])
        .arg(&state)
        .arg("--vars-file")
        .arg(&vars)
        .arg(&plan)
        .envs(moto.env().into_iter().filter(|(name, _)| *name != "AWS_ENDPOINT_URL_ROUTE_53"))
        .timeout(Duration::from_secs(120))
        .output()
        .expect("the run finishes");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the smoke test fails the run\nstdout:\n{stdout}\nstderr:\n{stderr}");

    let journal = only_journal(&state);
    let succeeded = journal
        .iter()
        .find(|record| record["event"] == "step_succeeded" && record["step"] == "switch-dns")
        .unwrap_or_else(|| panic!("the DNS step succeeded: {journal:#?}\n{stderr}"));
    assert_eq!(
        succeeded["outputs"]["previous"][0]["record"]["values"],
        json!(["api.eu-west-1.example.net."])
    );
    let undone = journal
        .iter()
        .find(|record| record["event"] == "undo_finished" && record["step"] == "switch-dns")
        .unwrap_or_else(|| panic!("the DNS step was undone: {journal:#?}"));
    assert_eq!(undone["error"], Json::Null, "{undone}");

    let after = runtime.block_on(zone_records(&client, &zone));
    let sorted = |mut records: Vec<Json>| {
        records.sort_by_key(ToString::to_string);
        records
    };
    assert_eq!(sorted(after), sorted(before), "the records are as before the run");
}

#[test]
fn a_run_killed_while_waiting_for_insync_resumes_without_a_second_change() {
    let stub = Route53Stub::start(
        vec![StubRecord::simple("api.example.com.", "CNAME", 300, &["api.eu-west-1.example.com."])],
        0,
        usize::MAX,
    );
    let directory = tempfile::tempdir().expect("temporary directory");
    let plan = fixture("switch.yaml");
    let vars = directory.path().join("vars.yaml");
    std::fs::write(&vars, format!("endpoint: {}\n", stub.endpoint())).expect("write the vars");
    let state = directory.path().join("state");
    let credentials = [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")];

    let binary = assert_cmd::cargo::cargo_bin("dr-plan");
    let mut child = std::process::Command::new(&binary)
        .args(["run", "--yes", "--format", "json", "--state-dir"])
        .arg(&state)
        .arg("--vars-file")
        .arg(&vars)
        .arg(&plan)
        .envs(credentials)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the run starts");
    let polled = wait_until(Duration::from_secs(60), || stub.count("GET /2013-04-01/change/") >= 1);
    // kill -9: no chance to journal anything more.
    child.kill().expect("kill the run");
    let _ = child.wait();
    assert!(polled, "the run submitted the change and polled it: {:#?}", stub.requests());
    assert_eq!(stub.count("POST /2013-04-01/hostedzone/"), 1);

    stub.set_pending_polls(0);
    let run_id = run_ids(&state).pop().expect("one run");
    let resumed = assert_cmd::Command::cargo_bin("dr-plan")
        .expect("the binary")
        .args(["resume", &run_id, "--yes", "--break-stale-lock", "--format", "json", "--state-dir"])
        .arg(&state)
        .envs(credentials)
        .timeout(Duration::from_secs(120))
        .output()
        .expect("the resume finishes");
    assert!(
        resumed.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&resumed.stdout),
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(
        stub.count("POST /2013-04-01/hostedzone/"),
        1,
        "a resume that does not create a second DNS change"
    );
    let journal = only_journal(&state);
    let succeeded = journal
        .iter()
        .find(|record| record["event"] == "step_succeeded" && record["step"] == "switch-dns")
        .unwrap_or_else(|| panic!("the DNS step succeeded on resume: {journal:#?}"));
    assert_eq!(succeeded["outputs"]["change_id"], json!("/change/C0000000000001"));
    assert_eq!(
        succeeded["outputs"]["previous"][0]["record"]["values"],
        json!(["api.eu-west-1.example.com."])
    );
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/route53").join(name)
}
