//! The cluster and DNS plans, end to end: `plans/region-outage.yaml` and
//! `plans/cluster-loss.yaml` run by the `dr-plan` binary against real servers on
//! loopback: PostgreSQL, s3s-fs (SigV4), kube-apiserver 1.20 with etcd (the test plays
//! the Deployment controller and Velero by patching `status`), moto for Route53, Redis.
//! Each run is killed with SIGKILL at its most delicate moment and resumed:
//!
//! - region-outage: after Route53 applied the DNS switch but before dr-plan heard back
//!   (a proxy in front of moto holds the response). The resume must not send a second
//!   `ChangeResourceRecordSets`.
//! - cluster-loss: while the Velero Restore is in progress. The resume must wait for
//!   the Restore it made, not create a second one.
//!
//! Differences from production, all through the plans' own `vars` (a test vars file),
//! the environment (`KUBECONFIG`, `PG*`, `AWS_ENDPOINT_URL_*`, `SLACK_WEBHOOK`), and one
//! edit of the copy each test runs: the backup key file is the test's instead of
//! `/etc/backup/encryption.key`. cluster-loss calls `helm`, `velero` and `kubectl`
//! through `exec`; none of them can be installed on the test machines (not in Debian,
//! no download outside the package registries), so small stand-ins on `PATH` record how
//! they were called and do what the plan needs from them: `kubectl kustomize` joins the
//! overlay's manifests, `kubectl rollout restart deployment/redis` starts redis-server
//! on Redis's data directory, `helm` and `velero install` only record (the test installs
//! Velero's CRDs itself).

use crate::support;
use crate::support::kinds::{KindExt as _, kind};

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
use dr_plan::kinds::{ApprovalMode, StepContext, route53_change};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{DynamicObject, ListParams};
use serde_json::{Value as Json, json};
use support::cluster::{ClusterPlayer, velero_resource};
use support::festivals::{fingerprint, put_with_sidecar, runbook_backup, seed};
use support::process::{free_port, wait_bounded, wait_until};
use support::sandbox::shipped_plan;
use support::{HttpServer, KubeApiServer, Moto, Postgres, RecordingProxy, S3};

/// The passphrase of the test's backup key file.
const PASSPHRASE: &str = "end-to-end test key, not a real one";
/// The context the test kubeconfig names.
const KUBE_CONTEXT: &str = "test";
/// How long the test waits for a moment it arranges (a held response, a Restore).
const MOMENT: Duration = Duration::from_secs(180);
/// How long one `dr-plan` process may take.
const RUN_LIMIT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------
// Scaffolding

/// A directory with the key file, the plan copy, the vars file, stand-ins and state.
struct Sandbox(support::sandbox::Sandbox);

impl std::ops::Deref for Sandbox {
    type Target = support::sandbox::Sandbox;
    fn deref(&self) -> &support::sandbox::Sandbox {
        &self.0
    }
}

/// How a `dr-plan` process ended.
struct Finished {
    code: Option<i32>,
    output: String,
}

impl Sandbox {
    fn new() -> Sandbox {
        let sandbox = Sandbox(support::sandbox::Sandbox::new(&[]));
        std::fs::write(sandbox.key_file(), format!("{PASSPHRASE}\n")).unwrap();
        std::fs::create_dir(sandbox.path("bin")).unwrap();
        sandbox
    }

    fn key_file(&self) -> PathBuf {
        self.path("encryption.key")
    }

    /// Writes the copy of `plans/NAME` the test runs (its key file the test's) and
    /// the vars file; returns the plan's path.
    fn plan(&self, name: &str, vars: &Json) -> PathBuf {
        let copy = self.path(name);
        std::fs::write(&copy, shipped_plan(name, &self.key_file())).unwrap();
        // JSON is YAML: the vars file is written as JSON.
        std::fs::write(self.path("vars.yaml"), serde_json::to_string_pretty(vars).unwrap()).unwrap();
        copy
    }

    /// A `dr-plan` command in the sandbox with `env`, output to `log` in the sandbox.
    fn command(&self, arguments: &[&str], env: &[(String, String)], log: &str) -> Command {
        let output = std::fs::File::create(self.path(log)).unwrap();
        let mut command = self.0.command(arguments);
        command
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdout(output.try_clone().unwrap())
            .stderr(output);
        command
    }

    /// `dr-plan run PLAN --vars-file vars.yaml --yes EXTRA…`, left running.
    fn spawn_run(&self, plan: &Path, extra: &[&str], env: &[(String, String)]) -> Child {
        let plan = plan.display().to_string();
        let mut arguments = vec!["run", &plan, "--vars-file", "vars.yaml", "--yes"];
        arguments.extend_from_slice(extra);
        self.command(&arguments, env, "run.log").spawn().expect("dr-plan starts")
    }

    /// `dr-plan resume RUN --yes --break-stale-lock --rerun-interrupted`, to its end.
    fn resume(&self, env: &[(String, String)]) -> Finished {
        let run_id = self.only_run();
        let arguments = ["resume", &run_id, "--yes", "--break-stale-lock", "--rerun-interrupted"];
        let mut child = self.command(&arguments, env, "resume.log").spawn().expect("dr-plan resume starts");
        let status = wait_bounded(&mut child, RUN_LIMIT);
        Finished {
            code: status.and_then(|status| status.code()),
            output: format!("--- run\n{}--- resume\n{}", self.text("run.log"), self.text("resume.log")),
        }
    }

    /// The outputs `step` succeeded with (the last time it did).
    fn outputs(&self, step: &str) -> Json {
        let journal = self.journal(&self.only_run());
        journal
            .iter()
            .rev()
            .find(|event| event["event"] == "step_succeeded" && event["step"] == step)
            .map(|event| event["outputs"].clone())
            .unwrap_or_else(|| panic!("{step} did not succeed: {journal:#?}"))
    }

    /// Writes an executable stand-in `bin/NAME` running `body` (sh), which first
    /// appends `NAME ARGS…` to `calls.log`.
    fn stand_in(&self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.path("bin").join(name);
        let script = format!(
            "#!/bin/sh\n# Stands in for {name}, which the test machines cannot install: see tests/it/dr_plans_e2e.rs.\n\
             printf '%s\\n' \"{name} $*\" >> '{calls}'\n{body}\n",
            calls = self.path("calls.log").display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `PATH` with the stand-ins first.
    fn path_with_stand_ins(&self) -> String {
        format!("{}:{}", self.path("bin").display(), std::env::var("PATH").unwrap_or_default())
    }
}

/// Waits until `moment` holds while `child` runs, then kills it with SIGKILL: no chance
/// to write anything more. Panics with the run's output if the moment never comes.
fn kill_at(sandbox: &Sandbox, child: &mut Child, what: &str, mut moment: impl FnMut() -> bool) {
    let started = Instant::now();
    loop {
        if moment() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before {what}:\n{}", sandbox.text("run.log"));
        }
        if started.elapsed() > MOMENT {
            let _ = child.kill();
            panic!("gave up after {MOMENT:?} waiting for {what}:\n{}", sandbox.text("run.log"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill -9 the run");
    let _ = child.wait();
}

fn env(pairs: &[Vec<(&'static str, String)>], more: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .flatten()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .chain(more.iter().map(|(name, value)| ((*name).to_owned(), value.clone())))
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

/// Applies the manifests in `path` with dr-plan's own `k8s.apply`, as set-up.
async fn apply(server: &KubeApiServer, path: &Path, run_directory: &Path) {
    let context = StepContext {
        run_id: "set-up".to_owned(),
        approval: ApprovalMode::PreApproved,
        ..support::steps::context("set-up", "set-up", run_directory)
    };
    let with = json!({ "path": path.display().to_string(), "kubeconfig": server.kubeconfig().display().to_string() });
    kind("k8s.apply")
        .execute(with, &context)
        .await
        .unwrap_or_else(|error| panic!("set-up: applying {} failed: {error}", path.display()));
}

/// A Deployment manifest with `replicas`.
fn deployment(namespace: &str, name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         spec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n\
         \x20   metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n\
         \x20       - name: {name}\n          image: registry.example/festivals/{name}:1.0\n"
    )
}

fn namespace_manifest(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

async fn replicas(client: &kube::Client, namespace: &str, name: &str) -> i32 {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment = deployments.get(name).await.unwrap_or_else(|error| panic!("{name}: {error}"));
    deployment.spec.and_then(|spec| spec.replicas).expect("replicas")
}

fn webhook_messages(webhook: &HttpServer) -> Vec<String> {
    webhook.requests().iter().map(support::RecordedRequest::body_text).collect()
}

// ---------------------------------------------------------------------------------------
// region-outage

/// Creates `festivals.app.` in moto with `api` pointing at the primary region's load
/// balancer; returns the zone id.
async fn festivals_zone(client: &aws_sdk_route53::Client) -> String {
    let zone = client
        .create_hosted_zone()
        .name("festivals.app.")
        .caller_reference("dr-plans-e2e")
        .send()
        .await
        .expect("moto creates the zone");
    let id = zone.hosted_zone().expect("a zone").id().trim_start_matches("/hostedzone/").to_owned();
    let record = ResourceRecordSet::builder()
        .name("api.festivals.app.")
        .r#type(RrType::Cname)
        .ttl(300)
        .resource_records(ResourceRecord::builder().value("api.eu-west-1.festivals.app.").build().unwrap())
        .build()
        .unwrap();
    let change = Change::builder().action(ChangeAction::Create).resource_record_set(record).build().unwrap();
    client
        .change_resource_record_sets()
        .hosted_zone_id(&id)
        .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
        .send()
        .await
        .expect("moto creates the record");
    id
}

/// Where `api.festivals.app.` points.
async fn api_record(client: &aws_sdk_route53::Client, zone: &str) -> Vec<String> {
    let listed = client.list_resource_record_sets().hosted_zone_id(zone).send().await.expect("list");
    listed
        .resource_record_sets()
        .iter()
        .filter(|record| record.name() == "api.festivals.app." && record.r#type() == &RrType::Cname)
        .flat_map(|record| record.resource_records().iter().map(|value| value.value().to_owned()))
        .collect()
}

#[test]
fn region_outage_killed_after_route53_applied_the_switch_resumes_without_a_second_change() {
    const NAMESPACE: &str = "region-outage-e2e";
    const BUCKET: &str = "festivals-backup-eu-west-2";
    let sandbox = Sandbox::new();
    let runtime = runtime();

    // The primary's data, as the replicated backups hold it; the standby database keeps
    // what an earlier drill left.
    let postgres = Postgres::start();
    seed(&postgres, "primary");
    seed(&postgres, "tododb");
    postgres.psql("tododb", "delete from tickets; delete from festivals where id > 3");
    let s3 = S3::start(&[BUCKET]);
    let older = runbook_backup(&postgres, "primary", &sandbox.key_file());
    put_with_sidecar(&s3, BUCKET, "postgres/tododb-20251116T000000Z.dump.gz.enc", &older);
    s3.set_last_modified(
        BUCKET,
        "postgres/tododb-20251116T000000Z.dump.gz.enc",
        SystemTime::now() - Duration::from_secs(5 * 3600),
    );
    postgres.psql("primary", "insert into festivals (name) values ('only in the newest backup')");
    let newest_key = "postgres/tododb-20251116T060000Z.dump.gz.enc";
    put_with_sidecar(&s3, BUCKET, newest_key, &runbook_backup(&postgres, "primary", &sandbox.key_file()));

    // DNS: moto behind a proxy that counts what dr-plan sends and can hold an answer.
    let moto = Moto::start();
    let route53 = route53_change::connect_with_credentials(&moto.endpoint(), None, "testing", "testing");
    let zone = runtime.block_on(festivals_zone(&route53));
    let proxy = RecordingProxy::start(moto.port());

    // The standby cluster: PostgreSQL kept running, API and worker at zero.
    let server = KubeApiServer::shared();
    let manifests = sandbox.path("standby.yaml");
    std::fs::write(
        &manifests,
        [
            namespace_manifest(NAMESPACE),
            deployment(NAMESPACE, "postgres", 1),
            deployment(NAMESPACE, "prod-festivals-api", 0),
            deployment(NAMESPACE, "prod-festivals-worker", 0),
        ]
        .join("---\n"),
    )
    .unwrap();
    runtime.block_on(apply(server, &manifests, sandbox.root.path()));
    let _player = ClusterPlayer::start(server, NAMESPACE, "velero", json!({ "phase": "Completed" }));

    // The primary answers 503 to the probe, then (once DNS points at the DR region)
    // 200; the DR ingress answers 200; the incident channel takes anything.
    let public = HttpServer::start([(503, "primary region unavailable"), (200, "ready")]);
    let dr = HttpServer::start([(200, "ready")]);
    let webhook = HttpServer::start([(200, "ok")]);

    let plan = sandbox.plan(
        "region-outage.yaml",
        &json!({
            "context": KUBE_CONTEXT,
            "namespace": NAMESPACE,
            "replica_bucket": BUCKET,
            "database": "tododb",
            "public_url": public.url(),
            "dr_url": dr.url(),
            "zone": zone,
        }),
    );
    let env = env(
        &[postgres.env(), s3.env()],
        &[
            ("KUBECONFIG", server.kubeconfig().display().to_string()),
            ("AWS_ENDPOINT_URL_ROUTE_53", proxy.url()),
            ("SLACK_WEBHOOK", webhook.url()),
        ],
    );

    proxy.hold_responses_to("POST", "/rrset");
    let mut run = sandbox.spawn_run(&plan, &["--approve", "declare-outage"], &env);
    kill_at(&sandbox, &mut run, "Route53 to accept the DNS switch", || proxy.holding() == 1);
    assert_eq!(
        runtime.block_on(api_record(&route53, &zone)),
        ["api.eu-west-2.festivals.app."],
        "Route53 applied the switch before the kill"
    );
    proxy.release();

    let resumed = sandbox.resume(&env);
    assert_eq!(resumed.code, Some(0), "{}", resumed.output);
    assert_eq!(
        proxy.count("POST", "/rrset"),
        1,
        "one ChangeResourceRecordSets over the run and its resume: {:#?}",
        proxy.forwarded()
    );
    let switch = sandbox.outputs("switch-dns");
    assert_eq!(
        switch["previous"][0]["record"]["values"],
        json!(["api.eu-west-1.festivals.app."]),
        "{switch}"
    );
    assert_eq!(runtime.block_on(api_record(&route53, &zone)), ["api.eu-west-2.festivals.app."]);

    assert_eq!(
        fingerprint(&postgres, "tododb"),
        fingerprint(&postgres, "primary"),
        "tododb is the newest backup"
    );
    assert_eq!(sandbox.outputs("fetch")["key"], json!(newest_key));
    let client = runtime.block_on(server.client());
    assert_eq!(runtime.block_on(replicas(&client, NAMESPACE, "prod-festivals-api")), 5);
    assert_eq!(runtime.block_on(replicas(&client, NAMESPACE, "prod-festivals-worker")), 3);
    assert!(sandbox.outputs("probe-primary")["stdout"].as_str().is_some_and(|code| code.contains("503")));
    let messages = webhook_messages(&webhook);
    assert!(
        messages.iter().any(|message| message.contains("DR activated") && message.contains(newest_key)),
        "{messages:?}"
    );
}

// ---------------------------------------------------------------------------------------
// cluster-loss

/// redis-server on `port` over `directory`, daemonized with a pid file: what the
/// `kubectl rollout restart deployment/redis` stand-in runs, and what the test starts
/// first. Stopped when dropped.
struct RedisInDirectory {
    port: u16,
    directory: PathBuf,
    script: PathBuf,
}

impl RedisInDirectory {
    fn start(sandbox: &Sandbox) -> RedisInDirectory {
        let directory = sandbox.path("redis-data");
        std::fs::create_dir(&directory).unwrap();
        let port = free_port();
        let script = sandbox.path("start-redis.sh");
        let dir = directory.display();
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec redis-server --port {port} --bind 127.0.0.1 --dir {dir} --dbfilename dump.rdb \
                 --save '' --appendonly no --daemonize yes --pidfile {dir}/redis.pid --logfile {dir}/redis.log\n"
            ),
        )
        .unwrap();
        let redis = RedisInDirectory { port, directory, script };
        let status = Command::new("sh").arg(&redis.script).status().expect("redis-server starts");
        assert!(status.success(), "redis-server did not start");
        assert!(
            wait_until(Duration::from_secs(20), || redis.cli(&["PING"]) == "PONG"),
            "redis-server on {port} did not answer PING"
        );
        redis.cli(&["SET", "stale:key", "from the empty cluster"]);
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn cli(&self, arguments: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(arguments)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).trim_end().to_owned()
    }
}

impl Drop for RedisInDirectory {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.directory.join("redis.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

#[test]
fn cluster_loss_killed_during_the_velero_restore_resumes_without_a_second_restore() {
    const NAMESPACE: &str = "cluster-loss-e2e";
    const VELERO: &str = "velero";
    const BUCKET: &str = "festivals-backups";
    let sandbox = Sandbox::new();
    let runtime = runtime();

    // Backups as the runbooks make them; the new cluster's database is empty.
    let postgres = Postgres::start();
    seed(&postgres, "production");
    postgres.create_database("tododb");
    let s3 = S3::start(&[BUCKET]);
    let database_key = "postgres/tododb-20251116T060000Z.dump.gz.enc";
    put_with_sidecar(
        &s3,
        BUCKET,
        database_key,
        &runbook_backup(&postgres, "production", &sandbox.key_file()),
    );
    let redis_key = "redis/dump-20251116T081500Z.rdb";
    put_with_sidecar(&s3, BUCKET, redis_key, &support::Redis::sample_rdb());
    let redis = RedisInDirectory::start(&sandbox);

    // The new cluster: Velero's CRDs and namespace (what `velero install` creates), and
    // the production overlay `kubectl kustomize` renders.
    let server = KubeApiServer::shared();
    let velero = sandbox.path("velero.yaml");
    let crds = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s/velero-crds.yaml"),
    )
    .unwrap();
    std::fs::write(&velero, format!("{}---\n{crds}", namespace_manifest(VELERO))).unwrap();
    runtime.block_on(apply(server, &velero, sandbox.root.path()));
    let overlay = sandbox.path("overlay");
    std::fs::create_dir(&overlay).unwrap();
    std::fs::write(overlay.join("kustomization.yaml"), "resources: [namespace.yaml, workloads.yaml]\n")
        .unwrap();
    std::fs::write(overlay.join("namespace.yaml"), namespace_manifest(NAMESPACE)).unwrap();
    std::fs::write(
        overlay.join("workloads.yaml"),
        [
            deployment(NAMESPACE, "postgres", 1),
            deployment(NAMESPACE, "redis", 1),
            deployment(NAMESPACE, "prod-festivals-api", 2),
            deployment(NAMESPACE, "prod-festivals-worker", 1),
        ]
        .join("---\n"),
    )
    .unwrap();
    let player =
        ClusterPlayer::start_holding_restores(server, NAMESPACE, VELERO, json!({ "phase": "Completed" }));

    sandbox.stand_in("helm", "exit 0");
    sandbox.stand_in("velero", "exit 0");
    sandbox.stand_in(
        "kubectl",
        &format!(
            "case \"$1 $3\" in\n\
             'kustomize --output')\n\
             \x20 for file in \"$2\"/*.yaml; do\n\
             \x20   [ \"$(basename \"$file\")\" = kustomization.yaml ] && continue\n\
             \x20   printf -- '---\\n'; cat \"$file\"\n\
             \x20 done > \"$4\" ;;\n\
             *)\n\
             \x20 if [ \"$*\" = \"--namespace {NAMESPACE} rollout restart deployment/redis\" ]; then exec sh '{script}'; fi\n\
             \x20 echo \"kubectl stand-in: not supported: $*\" >&2; exit 1 ;;\n\
             esac",
            script = redis.script.display()
        ),
    );

    let health = HttpServer::start([(200, "ready")]);
    let webhook = HttpServer::start([(200, "ok")]);
    let plan = sandbox.plan(
        "cluster-loss.yaml",
        &json!({
            "namespace": NAMESPACE,
            "manifests": overlay.display().to_string(),
            "bucket": BUCKET,
            "database": "tododb",
            "redis_url": redis.url(),
            "redis_data_dir": redis.directory.display().to_string(),
            "health_url": format!("{}/health/ready", health.url()),
        }),
    );
    let env = env(
        &[postgres.env(), s3.env()],
        &[
            ("KUBECONFIG", server.kubeconfig().display().to_string()),
            ("SLACK_WEBHOOK", webhook.url()),
            ("PATH", sandbox.path_with_stand_ins()),
        ],
    );

    let client = runtime.block_on(server.client());
    let restores: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), VELERO, &velero_resource("Restore", "restores"));
    let restore_in_progress = || {
        runtime.block_on(restores.list(&ListParams::default())).is_ok_and(|list| {
            list.items
                .iter()
                .any(|restore| restore.data.pointer("/status/phase") == Some(&json!("InProgress")))
        })
    };
    let mut run = sandbox.spawn_run(&plan, &[], &env);
    kill_at(&sandbox, &mut run, "the Velero Restore to be in progress", restore_in_progress);
    player.finish_restores();

    let resumed = sandbox.resume(&env);
    assert_eq!(resumed.code, Some(0), "{}", resumed.output);
    let made = runtime.block_on(restores.list(&ListParams::default())).expect("restores").items;
    assert_eq!(made.len(), 1, "one Velero Restore over the run and its resume: {made:#?}");
    assert_eq!(
        made[0].data["spec"],
        json!({ "scheduleName": "daily-backup", "includedNamespaces": [NAMESPACE], "restorePVs": false }),
    );
    assert_eq!(sandbox.outputs("restore-namespace")["phase"], json!("Completed"));

    assert_eq!(fingerprint(&postgres, "tododb"), fingerprint(&postgres, "production"));
    assert_eq!(redis.cli(&["GET", "user:2"]), "grace");
    assert_eq!(redis.cli(&["-n", "1", "GET", "queue:jobs"]), "3");
    assert_eq!(redis.cli(&["EXISTS", "stale:key"]), "0", "Redis serves the backup, not what it held");
    assert_eq!(runtime.block_on(replicas(&client, NAMESPACE, "prod-festivals-api")), 2);
    assert_eq!(runtime.block_on(replicas(&client, NAMESPACE, "prod-festivals-worker")), 1);

    let calls = sandbox.text("calls.log");
    for expected in [
        "helm upgrade --install ingress-nginx ingress-nginx --repo https://kubernetes.github.io/ingress-nginx",
        "helm upgrade --install cert-manager cert-manager --repo https://charts.jetstack.io",
        "velero install --provider aws --plugins velero/velero-plugin-for-aws:v1.8.0 --bucket festivals-velero-backups",
        &format!("kubectl kustomize {} --output", overlay.display()),
        &format!("kubectl --namespace {NAMESPACE} rollout restart deployment/redis"),
    ] {
        assert!(calls.contains(expected), "no call `{expected}…` in:\n{calls}");
    }
    let messages = webhook_messages(&webhook);
    assert!(
        messages
            .iter()
            .any(|message| message.contains("rebuilt on a new cluster") && message.contains(redis_key)),
        "{messages:?}"
    );
}
