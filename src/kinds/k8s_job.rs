//! `k8s.job`: create a Job (inline, or from a CronJob's template), wait, keep its logs.

use std::fmt::Write as _;
use std::path::PathBuf;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DynamicObject, GroupVersionKind, ListParams, LogParams, PostParams};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::clients::kubernetes::{self, Cluster, KubernetesError, Wait};
use super::{KindInfo, Params, StepOutputs, step_outputs};
use crate::lang::duration::HumanDuration;

/// Parameters of `k8s.job`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The namespace.
    pub namespace: String,
    /// The Job's name (default: `<step id>-<run id>`, so a resumed run finds the Job
    /// it created instead of creating another).
    pub name: Option<String>,
    /// Create the Job from this CronJob's template, like `kubectl create job --from=cronjob/NAME`.
    pub from_cronjob: Option<String>,
    /// An inline Job `spec` (batch/v1).
    pub spec: Option<serde_json::Value>,
    /// The kubeconfig file (default: `KUBECONFIG`, else `~/.kube/config`), e.g. the DR
    /// cluster's when it differs from the operator's usual one.
    pub kubeconfig: Option<String>,
    /// The kubeconfig context.
    pub context: Option<String>,
    /// Keep the pods' logs in the run directory.
    #[serde(default = "super::shared::default_true")]
    pub keep_logs: bool,
    /// Give up waiting after this long.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
}

fn default_deadline() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3600))
}

step_outputs! {
    /// Outputs of `k8s.job`.
    pub struct K8sJobOutputs {
        /// the Job's name
        pub name: String,
        /// succeeded pod count
        pub succeeded: i32,
        /// path of the saved logs in the run directory
        pub logs: Option<String>,
    }
}

/// What `k8s.job` declares.
pub const INFO: KindInfo = KindInfo {
    name: "k8s.job",
    argv_parameters: &[],
    summary: "Create a Job (inline spec or from a CronJob), wait for it, keep its logs.",
    destructive: true,
    idempotent: true,
    undo: None,
    outputs: K8sJobOutputs::DECLARED,
    preflight: "the namespace and the CronJob exist",
    notes: "Give exactly one of `from_cronjob` and `spec`. From a CronJob the Job is what \
            `kubectl create job --from=cronjob/NAME` makes: the CronJob's `jobTemplate`, annotated \
            `cronjob.kubernetes.io/instantiate: manual` and owned by the CronJob (batch/v1 CronJobs, or \
            batch/v1beta1 on clusters older than 1.21). The Job is annotated with the run id: a resumed \
            run finds the Job it created and waits for it; a Job of the same name from elsewhere is an \
            error. The logs of the pods labelled `job-name=NAME` are saved to `<run dir>/<step>.logs`, \
            whether the Job succeeded or failed.",
    example: "- id: manual-backup\n  kind: k8s.job\n  with: { namespace: todo-app, from_cronjob: todo-database-backup }\n",
    exclusive: &[("from_cronjob", "spec")],
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<K8sJobOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `k8s.job` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(preflight(&super::parameters(with)?).await) }),
    undo: None,
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let source = if with.has("from_cronjob") {
        format!("from cronjob/{}", with.text("from_cronjob"))
    } else {
        "from an inline spec".to_owned()
    };
    format!(
        "create job {} in {} {source} and wait for it to complete (deadline {})",
        with.text_or("name", "(named after the step and the run)"),
        with.text("namespace"),
        with.text_or("deadline", "1h")
    )
}

/// The annotation `kubectl create job --from=cronjob/NAME` puts on the Job it makes.
const INSTANTIATE_ANNOTATION: &str = "cronjob.kubernetes.io/instantiate";

/// Where the Job's template comes from.
enum Source<'a> {
    CronJob(&'a str),
    Inline(&'a Json),
}

fn source(parameters: &Parameters) -> Result<Source<'_>, KubernetesError> {
    match (&parameters.from_cronjob, &parameters.spec) {
        (Some(cronjob), None) => Ok(Source::CronJob(cronjob)),
        (None, Some(spec)) => Ok(Source::Inline(spec)),
        (Some(_), Some(_)) | (None, None) => Err(KubernetesError::Parameter {
            parameter: "from_cronjob",
            detail: "give exactly one of `from_cronjob` and `spec`".to_owned(),
        }),
    }
}

/// The Job's name: as given, or derived from the step and run so resume finds it.
fn job_name(parameters: &Parameters, context: &super::StepContext) -> String {
    parameters
        .name
        .clone()
        .unwrap_or_else(|| kubernetes::deterministic_name(&context.step_id, &context.run_id, &context.plan))
}

/// Reads a CronJob from batch/v1 where the server has it (1.21 and later), else from
/// batch/v1beta1 (1.20 and before).
async fn read_cronjob(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
) -> Result<DynamicObject, KubernetesError> {
    let object = format!("cronjob/{name} in namespace {namespace}");
    let mut resource = None;
    for version in ["v1", "v1beta1"] {
        let gvk = GroupVersionKind::gvk("batch", version, "CronJob");
        if let Some((found, _)) = kubernetes::pinned_resource(cluster, &gvk).await? {
            resource = Some(found);
            break;
        }
    }
    let resource = resource.ok_or_else(|| {
        KubernetesError::Failed(format!(
            "the cluster serves CronJobs neither as batch/v1 nor as batch/v1beta1, so {object} cannot be read"
        ))
    })?;
    let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), namespace, &resource);
    match api.get_opt(name).await {
        Ok(Some(cronjob)) => Ok(cronjob),
        Ok(None) => Err(KubernetesError::Failed(format!(
            "{object} does not exist; check `from_cronjob` and `namespace` (kubectl -n {namespace} get cronjobs)"
        ))),
        Err(error) => Err(kubernetes::api_error("read", &object, error)),
    }
}

/// The Job `kubectl create job NAME --from=cronjob/CRONJOB` would create: the CronJob's
/// `jobTemplate` with the `instantiate: manual` annotation and the CronJob as its
/// controlling owner.
fn job_from_cronjob(
    cronjob: &DynamicObject,
    name: &str,
    annotations: &Json,
) -> Result<Json, KubernetesError> {
    let cronjob_name = cronjob.metadata.name.clone().unwrap_or_default();
    let template = cronjob.data.pointer("/spec/jobTemplate").cloned().unwrap_or_default();
    let Some(spec) = template.get("spec").cloned() else {
        return Err(KubernetesError::Failed(format!("cronjob/{cronjob_name} has no spec.jobTemplate.spec")));
    };
    let template_metadata = template.get("metadata").cloned().unwrap_or_default();
    let mut all_annotations = template_metadata.get("annotations").cloned().unwrap_or_else(|| json!({}));
    merge_object(&mut all_annotations, annotations);
    merge_object(&mut all_annotations, &json!({ INSTANTIATE_ANNOTATION: "manual" }));
    let api_version = cronjob.types.as_ref().map_or("batch/v1", |types| types.api_version.as_str());
    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "labels": template_metadata.get("labels").cloned().unwrap_or_else(|| json!({})),
            "annotations": all_annotations,
            "ownerReferences": [{
                "apiVersion": api_version,
                "kind": "CronJob",
                "name": cronjob_name,
                "uid": cronjob.metadata.uid.clone().unwrap_or_default(),
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": spec,
    }))
}

fn merge_object(into: &mut Json, from: &Json) {
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        for (key, value) in from {
            into.insert(key.clone(), value.clone());
        }
    }
}

fn parse_job(json: Json, what: &str) -> Result<Job, KubernetesError> {
    serde_json::from_value(json).map_err(|error| KubernetesError::Parameter {
        parameter: "spec",
        detail: format!("{what} is not a valid Job: {error}"),
    })
}

/// Finds the Job this step made earlier in this run, or creates it.
async fn create_or_adopt(
    cluster: &Cluster,
    parameters: &Parameters,
    context: &super::StepContext,
    name: &str,
) -> Result<(), KubernetesError> {
    let namespace = parameters.namespace.as_str();
    let object = format!("job/{name} in namespace {namespace}");
    let api: Api<Job> = Api::namespaced(cluster.client.clone(), namespace);
    if let Some(existing) =
        api.get_opt(name).await.map_err(|error| kubernetes::api_error("read", &object, error))?
    {
        return adopt(&existing, &object, context);
    }
    let annotations = kubernetes::ownership_annotations(&context.run_id, &context.step_id);
    let job = match source(parameters)? {
        Source::CronJob(cronjob) => {
            let cronjob = read_cronjob(cluster, namespace, cronjob).await?;
            parse_job(job_from_cronjob(&cronjob, name, &annotations)?, "the CronJob's jobTemplate")?
        }
        Source::Inline(spec) => parse_job(
            json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": { "name": name, "annotations": annotations },
                "spec": spec,
            }),
            "`spec`",
        )?,
    };
    context.progress.note(format!("creating {object}"));
    match api.create(&PostParams::default(), &job).await {
        Ok(_) => Ok(()),
        // Another attempt of this step created it in between: adopt that one.
        Err(error) if kubernetes::is_conflict(&error) => {
            let existing =
                api.get(name).await.map_err(|error| kubernetes::api_error("read", &object, error))?;
            adopt(&existing, &object, context)
        }
        Err(error) => Err(kubernetes::api_error("create", &object, error)),
    }
}

fn adopt(existing: &Job, object: &str, context: &super::StepContext) -> Result<(), KubernetesError> {
    match kubernetes::created_by_run(existing.metadata.annotations.as_ref()) {
        Some(run) if run == context.run_id => {
            context.progress.note(format!("{object} was created earlier by this run: waiting for it"));
            Ok(())
        }
        Some(run) => Err(KubernetesError::Failed(format!(
            "{object} already exists, created by run {run}; delete it or give this step another `name`"
        ))),
        None => Err(KubernetesError::Failed(format!(
            "{object} already exists and was not created by dr-plan; delete it or give this step another `name`"
        ))),
    }
}

/// Saves the logs of the Job's pods (label `job-name=NAME`) to `<run dir>/<step>.logs`.
async fn save_logs(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    context: &super::StepContext,
) -> Result<PathBuf, KubernetesError> {
    let path = context.run_dir.join(format!("{}.logs", context.step_id));
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let selector = format!("job-name={name}");
    let listed = pods.list(&ListParams::default().labels(&selector)).await.map_err(|error| {
        kubernetes::api_error("list", &format!("the pods of job/{name} in {namespace}"), error)
    })?;
    let mut text = String::new();
    if listed.items.is_empty() {
        let _ = writeln!(text, "no pods with label {selector} in namespace {namespace}");
    }
    for pod in &listed.items {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let containers = spec.init_containers.iter().flatten().chain(&spec.containers);
        for container in containers {
            let _ = writeln!(text, "=== pod/{pod_name} container {} ===", container.name);
            let parameters = LogParams { container: Some(container.name.clone()), ..LogParams::default() };
            match pods.logs(&pod_name, &parameters).await {
                Ok(logs) => text.push_str(&logs),
                Err(error) => {
                    let _ = writeln!(text, "(cannot read these logs: {error})");
                }
            }
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
    }
    kubernetes::write_run_file(&path, context.redactor.redact(&text).as_bytes())?;
    Ok(path)
}

/// Creates (or, on resume, adopts) the Job, waits for it, and keeps its pods' logs.
///
/// # Errors
/// The CronJob is missing, the Job cannot be created, fails, or misses the deadline.
pub async fn run(
    parameters: Parameters,
    context: &super::StepContext,
) -> Result<K8sJobOutputs, super::StepError> {
    source(&parameters)?;
    let name = job_name(&parameters, context);
    let cluster =
        kubernetes::connect(parameters.kubeconfig.as_deref(), parameters.context.as_deref()).await?;
    let namespace = parameters.namespace.as_str();
    create_or_adopt(&cluster, &parameters, context, &name).await?;
    let wait = Wait {
        what: format!("job/{name} in namespace {namespace} to complete"),
        deadline: parameters.deadline.get(),
        progress: &context.progress,
        hint: format!(
            "Check its pods (kubectl -n {namespace} get pods -l job-name={name}) or raise `deadline`"
        ),
    };
    let finished = super::k8s_wait::wait_for_job(&cluster, namespace, &name, wait).await;
    // Logs are kept whether the Job succeeded or not: a failure is when they matter most.
    let logs = if parameters.keep_logs {
        match save_logs(&cluster, namespace, &name, context).await {
            Ok(path) => Some(path.display().to_string()),
            Err(error) if finished.is_ok() => return Err(error.into()),
            Err(_) => None,
        }
    } else {
        None
    };
    let job = finished?;
    let succeeded = job.status.and_then(|status| status.succeeded).unwrap_or_default();
    Ok(K8sJobOutputs { name, succeeded, logs })
}

/// Checks the kubeconfig, the namespace, and the CronJob or the inline spec.
pub async fn preflight(parameters: &Parameters) -> super::Preflight {
    preflight_check(parameters).await.into()
}

async fn preflight_check(parameters: &Parameters) -> Result<String, KubernetesError> {
    let source = source(parameters)?;
    if let Source::Inline(spec) = source {
        parse_job(
            json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": {}, "spec": spec }),
            "`spec`",
        )?;
    }
    let cluster =
        kubernetes::connect(parameters.kubeconfig.as_deref(), parameters.context.as_deref()).await?;
    let namespace = parameters.namespace.as_str();
    kubernetes::require_namespace(&cluster, namespace).await?;
    match source {
        Source::CronJob(name) => {
            let cronjob = read_cronjob(&cluster, namespace, name).await?;
            let version = cronjob.types.map(|types| types.api_version).unwrap_or_default();
            Ok(format!("cronjob/{name} ({version}) exists in namespace {namespace}"))
        }
        Source::Inline(_) => {
            Ok(format!("namespace {namespace} exists and the inline spec is a valid Job spec"))
        }
    }
}
