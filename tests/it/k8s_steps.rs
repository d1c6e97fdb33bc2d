//! `k8s.scale`, `k8s.wait`, `k8s.job`, `k8s.apply` and `velero.restore` against a real
//! kube-apiserver 1.20 (with etcd, no controllers). The tests play the controllers by
//! patching `status`: the Deployment and StatefulSet controllers, the Job controller and
//! Velero. These tests and `dr_plans_e2e` share one API server, each test in namespaces
//! of its own.

use crate::support;
use crate::support::kinds::{KindExt as _, kind};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dr_plan::kinds::{ApprovalMode, Outputs, Preflight, PreflightContext, StepContext, StepError, StepKind};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value as Json, json};
use support::KubeApiServer;
use support::cluster::{ClusterPlayer, settle_workloads, velero_resource};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/k8s");

/// How long a test waits for something the test itself arranges.
const TEST_WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Test scaffolding

/// A test's namespace on the shared server, its client and its run directory.
struct Fixture {
    server: &'static KubeApiServer,
    client: kube::Client,
    namespace: String,
    run_directory: tempfile::TempDir,
}

impl Fixture {
    async fn new(namespace: &str) -> Fixture {
        let server = KubeApiServer::shared();
        let client = server.client().await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let object: Namespace =
            serde_json::from_value(json!({ "metadata": { "name": namespace } })).expect("namespace");
        namespaces.create(&PostParams::default(), &object).await.unwrap_or_else(|error| {
            panic!("cannot create namespace {namespace}: {error}\n{}", server.log_tail())
        });
        let run_directory = tempfile::tempdir().expect("run directory");
        Fixture { server, client, namespace: namespace.to_owned(), run_directory }
    }

    fn kubeconfig(&self) -> String {
        self.server.kubeconfig().display().to_string()
    }

    fn context(&self, step: &str, run_id: &str) -> StepContext {
        StepContext {
            run_id: run_id.to_owned(),
            approval: ApprovalMode::PreApproved,
            ..support::steps::context("k8s-test", step, self.run_directory.path())
        }
    }

    /// `with` plus this fixture's kubeconfig (and namespace unless `with` names one).
    fn with(&self, with: Json) -> Json {
        let mut with = with;
        let map = with.as_object_mut().expect("with is a map");
        map.insert("kubeconfig".into(), Json::String(self.kubeconfig()));
        map.entry("namespace").or_insert_with(|| Json::String(self.namespace.clone()));
        with
    }

    async fn execute(&self, kind: StepKind, with: Json, context: &StepContext) -> Result<Outputs, StepError> {
        kind.execute(self.with(with), context).await
    }

    /// Applies a fixture file or directory into this namespace with `k8s.apply`.
    async fn apply(&self, fixture: &str) -> Outputs {
        let path = Path::new(FIXTURES).join(fixture);
        let with = json!({ "path": path.display().to_string() });
        self.execute(kind("k8s.apply"), with, &self.context("fixtures", "fixtures"))
            .await
            .unwrap_or_else(|error| panic!("applying {fixture} failed: {error}"))
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn stateful_sets(&self) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn restores(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &velero_resource("Restore", "restores"))
    }

    async fn deployment_replicas(&self, name: &str) -> i32 {
        let deployment = self.deployments().get(name).await.expect("deployment");
        deployment.spec.and_then(|spec| spec.replicas).expect("replicas")
    }

    async fn stateful_set_replicas(&self, name: &str) -> i32 {
        let set = self.stateful_sets().get(name).await.expect("statefulset");
        set.spec.and_then(|spec| spec.replicas).expect("replicas")
    }
}

/// The message of a step error, failing the test on success.
fn failure(result: Result<Outputs, StepError>, what: &str) -> String {
    match result {
        Ok(outputs) => panic!("{what} should have failed, but gave {outputs:?}"),
        Err(error) => error.to_string(),
    }
}

fn succeeded(result: Result<Outputs, StepError>, what: &str) -> Outputs {
    result.unwrap_or_else(|error| panic!("{what} failed: {error}"))
}

/// Polls `ready` every 50 ms for [`TEST_WAIT`]; panics naming `what` when it never holds.
async fn eventually<T, Check, Checked>(what: &str, mut check: Check) -> T
where
    Check: FnMut() -> Checked,
    Checked: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < TEST_WAIT, "gave up after {TEST_WAIT:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Applies Velero's CRDs (idempotent, so every test may) and waits until they are served.
async fn install_velero_crds(fixture: &Fixture) {
    fixture.apply("velero-crds.yaml").await;
    let client = fixture.client.clone();
    eventually("the Velero CRDs to be served", || {
        let client = client.clone();
        async move {
            let mut served = true;
            for kind in ["Restore", "Backup", "Schedule"] {
                let gvk = GroupVersionKind::gvk("velero.io", "v1", kind);
                served &= kube::discovery::pinned_kind(&client, &gvk).await.is_ok();
            }
            served.then_some(())
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// The controllers the test cluster lacks

/// Reports every Deployment and StatefulSet of a namespace as fully rolled out at its
/// `spec.replicas`, as their controllers would once the pods run. Stops when dropped.
struct WorkloadController {
    task: tokio::task::JoinHandle<()>,
}

impl WorkloadController {
    fn start(client: &kube::Client, namespace: &str) -> WorkloadController {
        let client = client.clone();
        let namespace = namespace.to_owned();
        let task = tokio::spawn(async move {
            loop {
                settle_workloads(&client, &namespace).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        WorkloadController { task }
    }
}

impl Drop for WorkloadController {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Marks every Job of a namespace that has no conditions yet as `Complete`, as the Job
/// controller would once its pod succeeded. Stops when dropped.
struct JobController {
    task: tokio::task::JoinHandle<()>,
}

impl JobController {
    fn start(client: &kube::Client, namespace: &str) -> JobController {
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        let task = tokio::spawn(async move {
            loop {
                if let Ok(list) = jobs.list(&ListParams::default()).await {
                    for job in list.items {
                        let finished =
                            job.status.as_ref().and_then(|status| status.conditions.as_ref()).is_some();
                        if !finished {
                            let name = job.metadata.name.clone().unwrap_or_default();
                            let _ = set_job_condition(&jobs, &name, "Complete", "", "").await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        JobController { task }
    }
}

impl Drop for JobController {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn set_job_condition(
    jobs: &Api<Job>,
    name: &str,
    kind: &str,
    reason: &str,
    message: &str,
) -> kube::Result<Job> {
    let (succeeded, failed) = if kind == "Complete" { (1, 0) } else { (0, 2) };
    let patch = json!({ "status": {
        "conditions": [{ "type": kind, "status": "True", "reason": reason, "message": message }],
        "succeeded": succeeded, "failed": failed,
    }});
    jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await
}

/// Sets a Restore's status as Velero would.
async fn set_restore_status(restores: &Api<DynamicObject>, name: &str, status: Json) {
    restores
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({ "status": status })))
        .await
        .unwrap_or_else(|error| panic!("cannot set the status of Restore {name}: {error}"));
}

async fn wait_for_restore(restores: &Api<DynamicObject>, name: &str) -> DynamicObject {
    eventually(&format!("Restore {name} to be created"), || async move {
        restores.get_opt(name).await.ok().flatten()
    })
    .await
}

// ---------------------------------------------------------------------------------------
// k8s.scale

#[tokio::test]
async fn scale_target_reports_the_previous_count_waits_for_the_controller_and_undoes() {
    let fixture = Fixture::new("scale-target").await;
    fixture.apply("workloads.yaml").await;
    let _controller = WorkloadController::start(&fixture.client, &fixture.namespace);

    let context = fixture.context("stop-web", "scale-20250101-000000-0001");
    let with = json!({ "target": "deployment/web", "replicas": 0, "deadline": "20s" });
    let outputs =
        succeeded(fixture.execute(kind("k8s.scale"), with.clone(), &context).await, "scale web to 0");
    assert_eq!(outputs["previous_replicas"], json!(2));
    assert_eq!(fixture.deployment_replicas("web").await, 0);
    // The step returned only once the controller had caught up.
    let status = fixture.deployments().get("web").await.expect("web").status.expect("status");
    assert_eq!(status.replicas.unwrap_or_default(), 0);

    let sts_context = fixture.context("grow-db", "scale-20250101-000000-0001");
    let with_sts = json!({ "target": "sts/db", "replicas": 3, "deadline": "20s" });
    let outputs =
        succeeded(fixture.execute(kind("k8s.scale"), with_sts, &sts_context).await, "scale db to 3");
    assert_eq!(outputs["previous_replicas"], json!(1));
    assert_eq!(fixture.stateful_set_replicas("db").await, 3);
    let status = fixture.stateful_sets().get("db").await.expect("db").status.expect("status");
    assert_eq!(status.ready_replicas, Some(3));

    // undo puts web back to its previous count and waits for it.
    kind("k8s.scale")
        .undo(fixture.with(with), &outputs_of(&[("previous_replicas", json!(2))]), &context)
        .await
        .unwrap_or_else(|error| panic!("undo failed: {error}"));
    assert_eq!(fixture.deployment_replicas("web").await, 2);
    let status = fixture.deployments().get("web").await.expect("web").status.expect("status");
    assert_eq!(status.ready_replicas, Some(2));
}

fn outputs_of(pairs: &[(&str, Json)]) -> Outputs {
    pairs.iter().map(|(key, value)| ((*key).to_owned(), value.clone())).collect()
}

#[tokio::test]
async fn scale_by_selector_keeps_each_workloads_count_across_retries_and_scales_back() {
    let fixture = Fixture::new("scale-selector").await;
    fixture.apply("workloads.yaml").await;
    let _controller = WorkloadController::start(&fixture.client, &fixture.namespace);

    let context = fixture.context("stop-app", "selector-20250101-000000-0002");
    let with = json!({ "selector": "tier=app", "replicas": 0, "deadline": "20s" });
    let outputs =
        succeeded(fixture.execute(kind("k8s.scale"), with.clone(), &context).await, "scale tier=app to 0");
    let expected = json!({ "deployment/web": 2, "statefulset/db": 1 });
    assert_eq!(outputs["previous_replicas"], expected);
    assert_eq!(fixture.deployment_replicas("web").await, 0);
    assert_eq!(fixture.stateful_set_replicas("db").await, 0);
    assert_eq!(fixture.deployment_replicas("batch-worker").await, 4, "not matched: untouched");

    // A retry or resume of the same step reports the counts from before its first attempt.
    let again = succeeded(fixture.execute(kind("k8s.scale"), with.clone(), &context).await, "re-run");
    assert_eq!(again["previous_replicas"], expected);

    // Scaling back with the map gives each workload its own count.
    let back = json!({ "selector": "tier=app", "replicas": expected, "deadline": "20s" });
    let back_context = fixture.context("start-app", "selector-20250101-000000-0002");
    succeeded(fixture.execute(kind("k8s.scale"), back, &back_context).await, "scale back by map");
    assert_eq!(fixture.deployment_replicas("web").await, 2);
    assert_eq!(fixture.stateful_set_replicas("db").await, 1);

    // undo of a selector step does the same from its outputs.
    let undo_context = fixture.context("stop-again", "selector-20250101-000000-0003");
    let outputs =
        succeeded(fixture.execute(kind("k8s.scale"), with.clone(), &undo_context).await, "scale again");
    kind("k8s.scale")
        .undo(fixture.with(with), &outputs, &undo_context)
        .await
        .unwrap_or_else(|error| panic!("undo failed: {error}"));
    assert_eq!(fixture.deployment_replicas("web").await, 2);
    assert_eq!(fixture.stateful_set_replicas("db").await, 1);

    // A map that lacks a matched workload is refused before anything is scaled.
    let partial = json!({ "selector": "tier=app", "replicas": { "deployment/web": 5 } });
    let message = failure(fixture.execute(kind("k8s.scale"), partial, &back_context).await, "partial map");
    assert!(message.contains("statefulset/db"), "{message}");
    assert_eq!(fixture.deployment_replicas("web").await, 2);
}

#[tokio::test]
async fn scale_gives_up_at_the_deadline_saying_what_it_saw() {
    let fixture = Fixture::new("scale-deadline").await;
    fixture.apply("workloads.yaml").await;
    // No controller: nothing ever reports the new count.
    let (context, mut progress) =
        support::steps::with_notes(fixture.context("stop-web", "deadline-20250101-000000-0004"));
    let started = Instant::now();
    let with = json!({ "target": "deployment/web", "replicas": 1, "deadline": "1s" });
    let message =
        failure(fixture.execute(kind("k8s.scale"), with, &context).await, "scale without a controller");
    let notes = progress.take();
    assert!(
        notes
            .iter()
            .any(|note| note.starts_with("waiting for deployment/web → 1 in namespace scale-deadline")),
        "{notes:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(message.contains("deployment/web"), "{message}");
    assert!(message.contains("deadline 1s"), "{message}");
    assert!(message.contains("observedGeneration"), "{message}");
    assert_eq!(fixture.deployment_replicas("web").await, 1, "the scale itself happened");

    // `wait: false` returns at once.
    let with = json!({ "target": "deployment/web", "replicas": 0, "wait": false });
    let outputs = succeeded(
        fixture.execute(kind("k8s.scale"), with, &fixture.context("no-wait", "deadline-1")).await,
        "scale without waiting",
    );
    assert_eq!(outputs["previous_replicas"], json!(1));

    // A missing workload names itself.
    let with = json!({ "target": "deployment/missing", "replicas": 0 });
    let message =
        failure(fixture.execute(kind("k8s.scale"), with, &context).await, "scale a missing deployment");
    assert!(message.contains("deployment/missing") && message.contains("404"), "{message}");

    // So does a missing kubeconfig.
    let with = json!({ "target": "deployment/web", "replicas": 0, "kubeconfig": "/nonexistent/kubeconfig",
                       "namespace": fixture.namespace });
    let message = failure(kind("k8s.scale").execute(with, &context).await, "scale with no kubeconfig");
    assert!(message.contains("no kubeconfig") && message.contains("/nonexistent/kubeconfig"), "{message}");
}

#[tokio::test]
async fn preflights_read_the_live_objects() {
    let fixture = Fixture::new("preflight").await;
    fixture.apply("workloads.yaml").await;
    fixture.apply("cronjob-v1beta1.yaml").await;
    install_velero_crds(&fixture).await;

    let scale = kind("k8s.scale")
        .preflight(
            fixture.with(json!({ "target": "deployment/web", "replicas": 0 })),
            &PreflightContext::default(),
        )
        .await;
    assert!(
        matches!(&scale, Preflight::Passed(detail) if detail.contains("deployment/web (2 replicas)")),
        "{scale:?}"
    );
    let missing = kind("k8s.scale")
        .preflight(
            fixture.with(json!({ "target": "deployment/gone", "replicas": 0 })),
            &PreflightContext::default(),
        )
        .await;
    assert!(
        matches!(&missing, Preflight::Failed(detail) if detail.contains("deployment/gone")),
        "{missing:?}"
    );

    let job = kind("k8s.job")
        .preflight(fixture.with(json!({ "from_cronjob": "database-backup" })), &PreflightContext::default())
        .await;
    assert!(matches!(&job, Preflight::Passed(detail) if detail.contains("batch/v1beta1")), "{job:?}");
    let no_cronjob = kind("k8s.job")
        .preflight(fixture.with(json!({ "from_cronjob": "nightly" })), &PreflightContext::default())
        .await;
    assert!(
        matches!(&no_cronjob, Preflight::Failed(detail) if detail.contains("cronjob/nightly")),
        "{no_cronjob:?}"
    );

    let wait = kind("k8s.wait")
        .preflight(fixture.with(json!({ "target": "statefulset/db" })), &PreflightContext::default())
        .await;
    assert!(matches!(&wait, Preflight::Passed(_)), "{wait:?}");

    let apply = kind("k8s.apply")
        .preflight(fixture.with(json!({ "path": format!("{FIXTURES}/apply") })), &PreflightContext::default())
        .await;
    assert!(matches!(&apply, Preflight::Passed(detail) if detail.contains("4 objects")), "{apply:?}");

    let backups: Api<DynamicObject> = Api::namespaced_with(
        fixture.client.clone(),
        &fixture.namespace,
        &velero_resource("Backup", "backups"),
    );
    let backup =
        DynamicObject::new("nightly", &velero_resource("Backup", "backups")).data(json!({ "spec": {} }));
    backups.create(&PostParams::default(), &backup).await.expect("create Backup");
    let restore = kind("velero.restore")
        .preflight(fixture.with(json!({ "backup": "nightly" })), &PreflightContext::default())
        .await;
    assert!(
        matches!(&restore, Preflight::Passed(detail) if detail.contains("Backup preflight/nightly")),
        "{restore:?}"
    );
    let no_backup = kind("velero.restore")
        .preflight(fixture.with(json!({ "backup": "weekly" })), &PreflightContext::default())
        .await;
    assert!(matches!(&no_backup, Preflight::Failed(detail) if detail.contains("weekly")), "{no_backup:?}");
}

// ---------------------------------------------------------------------------------------
// k8s.wait

#[tokio::test]
async fn wait_follows_a_rollout_a_condition_and_a_stuck_deployment() {
    let fixture = Fixture::new("wait-rollout").await;
    fixture.apply("workloads.yaml").await;
    let deployments = fixture.deployments();

    // The controller reports the rollout done 300 ms after the step saw it unfinished.
    let later = deployments.clone();
    let (context, mut notes) = support::steps::with_notes(fixture.context("web-rolled-out", "wait-1"));
    let player = tokio::spawn(async move {
        notes.wait_for("the rollout of deployment/web in namespace wait-rollout: ", TEST_WAIT).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = json!({ "status": {
            "observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 2,
            "conditions": [{ "type": "Available", "status": "True", "reason": "MinimumReplicasAvailable" }],
        }});
        later
            .patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("patch status");
    });
    let outputs = succeeded(
        fixture
            .execute(kind("k8s.wait"), json!({ "target": "deployment/web", "deadline": "20s" }), &context)
            .await,
        "wait for the rollout",
    );
    player.await.expect("player");
    let waited = outputs["waited"].as_f64().expect("waited is a number");
    assert!(waited >= 0.25, "waited {waited}");

    let with = json!({ "target": "deployment/web", "condition": "Available", "deadline": "5s" });
    succeeded(fixture.execute(kind("k8s.wait"), with, &context).await, "wait for Available");

    let with = json!({ "target": "deployment.apps/web", "condition": "Progressing", "deadline": "1s" });
    let message =
        failure(fixture.execute(kind("k8s.wait"), with, &context).await, "wait for a missing condition");
    assert!(
        message.contains("condition Progressing") && message.contains("no Progressing condition"),
        "{message}"
    );

    // A rollout past its progress deadline fails at once, not at the step's deadline.
    let stuck = json!({ "status": {
        "observedGeneration": 1, "replicas": 2, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
        "conditions": [{ "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                         "message": "ReplicaSet \"web-5d9c\" has timed out progressing." }],
    }});
    deployments
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&stuck))
        .await
        .expect("patch status");
    let started = Instant::now();
    let with = json!({ "target": "deployment/web", "deadline": "60s" });
    let message =
        failure(fixture.execute(kind("k8s.wait"), with, &context).await, "wait for a stuck rollout");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(message.contains("progress deadline") && message.contains("timed out progressing"), "{message}");

    // StatefulSet rollouts need the controller's report too.
    let _controller = WorkloadController::start(&fixture.client, &fixture.namespace);
    let with = json!({ "target": "statefulset/db", "deadline": "20s" });
    succeeded(fixture.execute(kind("k8s.wait"), with, &context).await, "wait for the statefulset");
}

fn inline_job_spec() -> Json {
    json!({
        "backoffLimit": 0,
        "template": { "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "migrate", "image": "registry.example/migrate:3", "args": ["up"] }],
        }},
    })
}

async fn create_job(fixture: &Fixture, name: &str) {
    let job: Job = serde_json::from_value(json!({ "metadata": { "name": name }, "spec": inline_job_spec() }))
        .expect("job");
    fixture.jobs().create(&PostParams::default(), &job).await.expect("create job");
}

#[tokio::test]
async fn wait_for_jobs_succeeds_on_complete_and_fails_at_once_on_failed() {
    let fixture = Fixture::new("wait-job").await;
    create_job(&fixture, "migrate").await;
    create_job(&fixture, "broken").await;

    // The Job completes once the step has seen it still running.
    let jobs = fixture.jobs();
    let (context, mut notes) = support::steps::with_notes(fixture.context("migrated", "wait-job-1"));
    let player = tokio::spawn(async move {
        notes.wait_for("job/migrate in namespace wait-job to complete: ", TEST_WAIT).await;
        set_job_condition(&jobs, "migrate", "Complete", "", "").await.expect("complete migrate");
    });
    succeeded(
        fixture
            .execute(kind("k8s.wait"), json!({ "target": "job/migrate", "deadline": "20s" }), &context)
            .await,
        "wait for job/migrate",
    );
    player.await.expect("player");

    set_job_condition(
        &fixture.jobs(),
        "broken",
        "Failed",
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    )
    .await
    .expect("fail broken");
    let started = Instant::now();
    let message = failure(
        fixture
            .execute(kind("k8s.wait"), json!({ "target": "job/broken", "deadline": "60s" }), &context)
            .await,
        "wait for a failed job",
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(message.contains("job/broken") && message.contains("BackoffLimitExceeded"), "{message}");
    assert!(message.contains("2 failed"), "{message}");
}

// ---------------------------------------------------------------------------------------
// k8s.job

#[tokio::test]
async fn job_from_a_cronjob_is_what_kubectl_create_job_makes() {
    let fixture = Fixture::new("job-cronjob").await;
    fixture.apply("cronjob-v1beta1.yaml").await;
    let _controller = JobController::start(&fixture.client, &fixture.namespace);

    let context = fixture.context("manual-backup", "k8s-test-20250101-120000-ab12");
    let with = json!({ "from_cronjob": "database-backup", "deadline": "20s" });
    let outputs = succeeded(fixture.execute(kind("k8s.job"), with, &context).await, "job from cronjob");
    let name = "manual-backup-20250101-120000-ab12";
    assert_eq!(outputs["name"], json!(name));
    assert_eq!(outputs["succeeded"], json!(1));
    let logs = PathBuf::from(outputs["logs"].as_str().expect("logs path"));
    assert_eq!(logs, fixture.run_directory.path().join("manual-backup.logs"));
    let text = std::fs::read_to_string(&logs).expect("logs file");
    assert!(text.contains("no pods with label job-name=manual-backup-20250101-120000-ab12"), "{text}");

    let job = fixture.jobs().get(name).await.expect("the job");
    let annotations = job.metadata.annotations.clone().expect("annotations");
    assert_eq!(annotations["cronjob.kubernetes.io/instantiate"], "manual");
    assert_eq!(annotations["team"], "storage", "the template's annotations are kept");
    assert_eq!(job.metadata.labels.clone().expect("labels")["app"], "database-backup");
    let owner = &job.metadata.owner_references.clone().expect("owner")[0];
    assert_eq!((owner.api_version.as_str(), owner.kind.as_str()), ("batch/v1beta1", "CronJob"));
    assert_eq!(owner.name, "database-backup");
    assert_eq!(owner.controller, Some(true));
    let container = &job.spec.expect("spec").template.spec.expect("pod spec").containers[0];
    assert_eq!(container.image.as_deref(), Some("registry.example/pg-backup:15"));
    assert_eq!(container.args.clone().unwrap_or_default(), vec!["--full".to_owned()]);
}

#[tokio::test]
async fn inline_job_is_adopted_on_resume_and_a_foreign_job_is_refused() {
    let fixture = Fixture::new("job-inline").await;
    let context = fixture.context("migrate", "k8s-test-20250101-120000-cd34");
    let with = json!({ "spec": inline_job_spec(), "deadline": "1s" });

    // No Job controller yet: the first attempt creates the Job and gives up waiting.
    let message =
        failure(fixture.execute(kind("k8s.job"), with.clone(), &context).await, "job without a controller");
    assert!(
        message.contains("job/migrate-20250101-120000-cd34") && message.contains("deadline 1s"),
        "{message}"
    );
    assert!(context.run_dir.join("migrate.logs").is_file(), "logs are kept on failure too");

    // The resumed step finds its Job instead of creating a second one.
    let _controller = JobController::start(&fixture.client, &fixture.namespace);
    let with = json!({ "spec": inline_job_spec(), "deadline": "20s" });
    let outputs = succeeded(fixture.execute(kind("k8s.job"), with.clone(), &context).await, "resumed job");
    assert_eq!(outputs["name"], json!("migrate-20250101-120000-cd34"));
    let jobs = fixture.jobs().list(&ListParams::default()).await.expect("jobs");
    assert_eq!(jobs.items.len(), 1, "one Job, adopted");

    // Another run does not adopt a Job it did not create.
    let mut named = with;
    named["name"] = json!("migrate-20250101-120000-cd34");
    let other_run = fixture.context("migrate", "k8s-test-20250102-120000-ef56");
    let message = failure(fixture.execute(kind("k8s.job"), named, &other_run).await, "foreign job");
    assert!(message.contains("created by run k8s-test-20250101-120000-cd34"), "{message}");

    // `keep_logs: false` keeps none.
    let with = json!({ "spec": inline_job_spec(), "keep_logs": false, "name": "quiet" });
    let outputs =
        succeeded(fixture.execute(kind("k8s.job"), with, &fixture.context("quiet", "r")).await, "quiet job");
    assert_eq!(outputs["logs"], Json::Null);
}

// ---------------------------------------------------------------------------------------
// k8s.apply

#[tokio::test]
async fn apply_of_a_directory_is_idempotent_and_records_the_field_manager() {
    let fixture = Fixture::new("apply-dir").await;
    let context = fixture.context("apply", "apply-1");
    let with = json!({ "path": format!("{FIXTURES}/apply") });
    let outputs = succeeded(fixture.execute(kind("k8s.apply"), with.clone(), &context).await, "apply");
    assert_eq!(
        outputs["applied"],
        json!([
            "ConfigMap/apply-dir/app-settings",
            "Service/apply-dir/app",
            "Deployment/apply-dir/app",
            "ConfigMap/apply-dir/app-feature-flags",
        ])
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(fixture.client.clone(), &fixture.namespace);
    let settings = config_maps.get("app-settings").await.expect("app-settings");
    assert_eq!(settings.data.clone().expect("data")["mode"], "restore");
    let managers: Vec<(String, String)> = settings
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|entry| (entry.manager.unwrap_or_default(), entry.operation.unwrap_or_default()))
        .collect();
    assert!(managers.contains(&("dr-plan".to_owned(), "Apply".to_owned())), "{managers:?}");
    let flags = config_maps.get("app-feature-flags").await.expect("feature flags");
    assert_eq!(flags.data.expect("data")["dark-mode"], "on");

    // Applying again changes nothing.
    let before = settings.metadata.resource_version.clone();
    let again = succeeded(fixture.execute(kind("k8s.apply"), with.clone(), &context).await, "apply again");
    assert_eq!(again["applied"], outputs["applied"]);
    let after = config_maps.get("app-settings").await.expect("app-settings").metadata.resource_version;
    assert_eq!(before, after, "an unchanged apply does not write");

    // A field another manager owns is a conflict, unless force_conflicts takes it over.
    let edit = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "app-settings" },
                       "data": { "mode": "live" } });
    config_maps
        .patch("app-settings", &PatchParams::apply("operator").force(), &Patch::Apply(&edit))
        .await
        .expect("operator's apply");
    let message =
        failure(fixture.execute(kind("k8s.apply"), with.clone(), &context).await, "conflicting apply");
    assert!(message.contains("409") && message.contains("force_conflicts"), "{message}");
    let mut forced = with;
    forced["force_conflicts"] = json!(true);
    succeeded(fixture.execute(kind("k8s.apply"), forced, &context).await, "forced apply");
    let settings = config_maps.get("app-settings").await.expect("app-settings");
    assert_eq!(settings.data.expect("data")["mode"], "restore");

    // JSON files work too, and a `kind: List` applies its items.
    let list = fixture.run_directory.path().join("list.json");
    let items = json!({ "apiVersion": "v1", "kind": "List", "items": [
        { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "from-json" }, "data": { "a": "1" } },
    ]});
    std::fs::write(&list, items.to_string()).expect("write list");
    let outputs = succeeded(
        fixture.execute(kind("k8s.apply"), json!({ "path": list.display().to_string() }), &context).await,
        "apply a JSON list",
    );
    assert_eq!(outputs["applied"], json!(["ConfigMap/apply-dir/from-json"]));

    // A kind the cluster does not serve is named with its file and line.
    let broken = fixture.run_directory.path().join("unknown.yaml");
    std::fs::write(&broken, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n")
        .expect("write manifest");
    let with = json!({ "path": broken.display().to_string() });
    let message = failure(fixture.execute(kind("k8s.apply"), with, &context).await, "unknown kind");
    assert!(message.contains("unknown.yaml line 4") && message.contains("Widget"), "{message}");
}

// ---------------------------------------------------------------------------------------
// velero.restore

/// Runs a `velero.restore` step on a task, so the test can play Velero meanwhile.
fn spawn_restore(
    fixture: &Fixture,
    with: Json,
    context: StepContext,
) -> tokio::task::JoinHandle<Result<Outputs, StepError>> {
    let with = fixture.with(with);
    tokio::spawn(async move { kind("velero.restore").execute(with, &context).await })
}

#[tokio::test]
async fn velero_restore_completes_through_the_non_terminal_phases() {
    let fixture = Fixture::new("velero-complete").await;
    install_velero_crds(&fixture).await;
    let restores = fixture.restores();
    let with = json!({
        "backup": "nightly-20250101", "included_namespaces": ["shop"], "excluded_namespaces": ["kube-system"],
        "namespace_mapping": { "shop": "shop-restored" }, "restore_pvs": true,
        "existing_resource_policy": "update", "label_selector": { "app": "shop" }, "deadline": "30s",
    });
    let (context, mut notes) =
        support::steps::with_notes(fixture.context("restore", "k8s-test-20250101-120000-aa01"));
    let step = spawn_restore(&fixture, with, context);
    let name = "restore-20250101-120000-aa01";
    let restore = wait_for_restore(&restores, name).await;
    assert_eq!(
        restore.data["spec"],
        json!({
            "backupName": "nightly-20250101", "includedNamespaces": ["shop"], "excludedNamespaces": ["kube-system"],
            "namespaceMapping": { "shop": "shop-restored" }, "restorePVs": true,
            "existingResourcePolicy": "update", "labelSelector": { "matchLabels": { "app": "shop" } },
        })
    );
    for phase in ["InProgress", "WaitingForPluginOperations", "Finalizing"] {
        set_restore_status(&restores, name, json!({ "phase": phase })).await;
        // The step has read the phase, and waits on.
        notes.wait_for(&format!("to finish: {phase}"), TEST_WAIT).await;
        assert!(!step.is_finished(), "{phase} is not terminal");
    }
    set_restore_status(&restores, name, json!({ "phase": "Completed", "warnings": 2 })).await;
    let outputs = succeeded(step.await.expect("step task"), "restore");
    assert_eq!(outputs["name"], json!(name));
    assert_eq!(outputs["phase"], json!("Completed"));
    assert_eq!(outputs["warnings"], json!(2));
    assert_eq!(outputs["errors"], json!(0));
}

#[tokio::test]
async fn velero_restore_failures_say_what_failed() {
    let fixture = Fixture::new("velero-failures").await;
    install_velero_crds(&fixture).await;
    let restores = fixture.restores();
    let cases = [
        (
            "partial",
            json!({ "phase": "PartiallyFailed", "errors": 2, "warnings": 3 }),
            vec!["PartiallyFailed", "2 errors, 3 warnings", "velero restore describe"],
        ),
        (
            "invalid",
            json!({ "phase": "FailedValidation", "validationErrors": ["backup \"nightly\" not found", "namespace mapping is invalid"] }),
            vec!["failed validation", "backup \"nightly\" not found; namespace mapping is invalid"],
        ),
        (
            "failed",
            json!({ "phase": "Failed", "failureReason": "error getting backup storage location" }),
            vec!["failed (error getting backup storage location"],
        ),
        (
            "finalizing",
            json!({ "phase": "FinalizingPartiallyFailed", "errors": 1 }),
            vec!["FinalizingPartiallyFailed", "1 errors"],
        ),
    ];
    for (step, status, expected) in cases {
        let context = fixture.context(step, "k8s-test-20250101-120000-bb02");
        let task = spawn_restore(&fixture, json!({ "backup": "nightly", "deadline": "60s" }), context);
        let name = format!("{step}-20250101-120000-bb02");
        wait_for_restore(&restores, &name).await;
        set_restore_status(&restores, &name, status).await;
        let started = Instant::now();
        let message = failure(task.await.expect("step task"), step);
        assert!(started.elapsed() < Duration::from_secs(10), "{step} failed at once");
        for part in expected {
            assert!(message.contains(part), "{step}: {part:?} not in {message}");
        }
    }
}

#[tokio::test]
async fn velero_restore_is_adopted_on_resume_and_drills_restore_into_isolated_namespaces() {
    let fixture = Fixture::new("velero-resume").await;
    install_velero_crds(&fixture).await;
    let restores = fixture.restores();
    let context = fixture.context("restore", "k8s-test-20250101-120000-cc03");

    // The first attempt creates the Restore and runs out of time (Velero is slow).
    let with = json!({ "schedule": "daily", "deadline": "1s" });
    let message = failure(fixture.execute(kind("velero.restore"), with, &context).await, "first attempt");
    assert!(
        message.contains("Restore velero-resume/restore-20250101-120000-cc03")
            && message.contains("deadline 1s"),
        "{message}"
    );
    set_restore_status(&restores, "restore-20250101-120000-cc03", json!({ "phase": "Completed" })).await;

    // The resumed step waits for that Restore rather than making another.
    let with = json!({ "schedule": "daily", "deadline": "10s" });
    let outputs = succeeded(fixture.execute(kind("velero.restore"), with.clone(), &context).await, "resumed");
    assert_eq!(outputs["phase"], json!("Completed"));
    let all = restores.list(&ListParams::default()).await.expect("restores");
    assert_eq!(all.items.len(), 1, "no second Restore");
    assert_eq!(all.items[0].data["spec"]["scheduleName"], json!("daily"));

    // A drill without a mapping restores every included namespace into `<name>-drill`.
    let mut drill = fixture.context("drill-restore", "k8s-test-20250101-120000-cc03");
    drill.drill = true;
    let with = json!({ "backup": "nightly", "included_namespaces": ["shop", "payments"], "deadline": "10s" });
    let task = spawn_restore(&fixture, with, drill.clone());
    let created = wait_for_restore(&restores, "drill-restore-20250101-120000-cc03").await;
    assert_eq!(
        created.data["spec"]["namespaceMapping"],
        json!({ "payments": "payments-drill", "shop": "shop-drill" })
    );
    set_restore_status(&restores, "drill-restore-20250101-120000-cc03", json!({ "phase": "Completed" }))
        .await;
    succeeded(task.await.expect("drill task"), "drill restore");

    // ... and refuses to restore everything in place.
    let with = json!({ "backup": "nightly" });
    let message =
        failure(fixture.execute(kind("velero.restore"), with, &drill).await, "drill of all namespaces");
    assert!(message.contains("included_namespaces") && message.contains("-drill"), "{message}");
}

// ---------------------------------------------------------------------------------------
// End to end: the real binary

const E2E_PLAN: &str = r#"version: 1
name: k8s-failover
description: Stop the writers, restore the namespace with Velero, start the writers again.
vars:
  namespace: shop
  velero_namespace: velero
steps:
  - id: stop-writers
    kind: k8s.scale
    with: { namespace: "{{vars.namespace}}", target: deployment/web, replicas: 0, deadline: 30s }
    undo: true
  - id: restore
    kind: velero.restore
    needs: [stop-writers]
    with:
      namespace: "{{vars.velero_namespace}}"
      backup: nightly
      included_namespaces: ["{{vars.namespace}}"]
      deadline: 60s
  - id: start-writers
    kind: k8s.scale
    needs: [restore]
    with:
      namespace: "{{vars.namespace}}"
      target: deployment/web
      replicas: "{{steps.stop-writers.outputs.previous_replicas}}"
      deadline: 30s
"#;

/// Runs the plan with `dr-plan run --yes` and `KUBECONFIG` set; returns (exit code, output).
fn run_plan(server: &KubeApiServer, namespace: &str, velero_namespace: &str) -> (Option<i32>, String) {
    let state = tempfile::tempdir().expect("state dir");
    let plan = state.path().join("plan.yaml");
    std::fs::write(&plan, E2E_PLAN).expect("plan");
    let vars = state.path().join("vars.yaml");
    std::fs::write(&vars, format!("namespace: {namespace}\nvelero_namespace: {velero_namespace}\n"))
        .expect("vars");
    let output = assert_cmd::Command::cargo_bin("dr-plan")
        .expect("dr-plan binary")
        .arg("run")
        .arg(&plan)
        .arg("--yes")
        .arg("--state-dir")
        .arg(state.path())
        .arg("--vars-file")
        .arg(&vars)
        .env("KUBECONFIG", server.kubeconfig())
        .timeout(Duration::from_secs(120))
        .output()
        .expect("dr-plan runs");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

#[tokio::test]
async fn the_binary_runs_a_failover_plan_with_kubeconfig_from_the_environment() {
    let fixture = Fixture::new("e2e-shop").await;
    let velero = Fixture::new("e2e-velero").await;
    install_velero_crds(&fixture).await;
    fixture.apply("workloads.yaml").await;
    let player = ClusterPlayer::start(
        fixture.server,
        &fixture.namespace,
        &velero.namespace,
        json!({ "phase": "Completed" }),
    );
    let (server, namespace) = (fixture.server, fixture.namespace.clone());
    let run = tokio::task::spawn_blocking(move || run_plan(server, &namespace, "e2e-velero"));
    let (code, output) = run.await.expect("binary task");
    drop(player);
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(fixture.deployment_replicas("web").await, 2, "scaled back to its previous count");
    let restores = velero.restores().list(&ListParams::default()).await.expect("restores");
    assert_eq!(restores.items.len(), 1);
    assert_eq!(restores.items[0].data["spec"]["includedNamespaces"], json!(["e2e-shop"]));
}

#[tokio::test]
async fn a_partially_failed_restore_leaves_the_scale_for_the_operator() {
    let fixture = Fixture::new("e2e-undo").await;
    let velero = Fixture::new("e2e-undo-velero").await;
    install_velero_crds(&fixture).await;
    fixture.apply("workloads.yaml").await;
    let final_phase = json!({ "phase": "PartiallyFailed", "errors": 4, "warnings": 1 });
    let player = ClusterPlayer::start(fixture.server, &fixture.namespace, &velero.namespace, final_phase);
    let (server, namespace) = (fixture.server, fixture.namespace.clone());
    let run = tokio::task::spawn_blocking(move || run_plan(server, &namespace, "e2e-undo-velero"));
    let (code, output) = run.await.expect("binary task");
    drop(player);
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("PartiallyFailed"), "{output}");
    // The restore (destructive) needed the scale and had started: scaling the writers back
    // up onto a half-restored namespace is for a person to decide, not for undo.
    assert!(output.contains("not compensated"), "{output}");
    assert_eq!(fixture.deployment_replicas("web").await, 0, "web stays scaled down");
}
