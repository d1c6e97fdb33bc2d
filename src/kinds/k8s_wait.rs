//! `k8s.wait`: wait for a rollout, a Job, or a condition.

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::clients::kubernetes::{
    self, Cluster, KubernetesError, ObjectReference, Poll, Wait, WorkloadKind, WorkloadStatus,
};
use super::{KindInfo, Params, StepOutputs, step_outputs};
use crate::lang::duration::HumanDuration;

/// Parameters of `k8s.wait`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The namespace.
    pub namespace: String,
    /// `deployment/NAME`, `statefulset/NAME`, `job/NAME`, or `KIND/NAME` with `condition`.
    pub target: String,
    /// The condition type to wait for (`Ready`, `Available`, ...). Default: rollout
    /// complete for deployments and statefulsets, `Complete` for jobs.
    pub condition: Option<String>,
    /// The kubeconfig file (default: `KUBECONFIG`, else `~/.kube/config`), e.g. the DR
    /// cluster's when it differs from the operator's usual one.
    pub kubeconfig: Option<String>,
    /// The kubeconfig context.
    pub context: Option<String>,
    /// Give up after this long.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
}

fn default_deadline() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(600))
}

step_outputs! {
    /// Outputs of `k8s.wait`.
    pub struct K8sWaitOutputs {
        /// seconds waited
        pub waited: f64,
    }
}

/// What `k8s.wait` declares.
pub const INFO: KindInfo = KindInfo {
    name: "k8s.wait",
    argv_parameters: &[],
    summary: "Wait for a rollout to complete, a Job to finish, or a condition to become true.",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: K8sWaitOutputs::DECLARED,
    preflight: "the object exists",
    notes: "A Job that fails makes the step fail at once, without waiting for the deadline.",
    example: "- id: api-rolled-out\n  kind: k8s.wait\n  with: { namespace: festivals-production, target: deployment/prod-festivals-api }\n",
    role: super::Role::HealthCheck,
    verifies: super::Verifies::Always,
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<K8sWaitOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `k8s.wait` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(preflight(&super::parameters(with)?).await) }),
    undo: None,
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let what = if with.has("condition") {
        format!("condition {}", with.text("condition"))
    } else if with.text("target").starts_with("job/") {
        "completion".to_owned()
    } else {
        "rollout".to_owned()
    };
    format!(
        "wait for {what} of {} in {} (deadline {})",
        with.text("target"),
        with.text("namespace"),
        with.text_or("deadline", "10m")
    )
}

/// What the step waits for.
enum Goal {
    /// A Deployment's or StatefulSet's rollout to complete.
    Rollout(WorkloadKind),
    /// A Job to complete (failing at once when it fails).
    JobComplete,
    /// A condition of any object to be `True`.
    Condition(String),
}

fn goal(reference: &ObjectReference, condition: Option<&str>) -> Result<Goal, KubernetesError> {
    let is_job = matches!(reference.kind.as_str(), "job" | "jobs")
        && reference.group.as_deref().is_none_or(|group| group == "batch");
    match condition {
        Some("Complete") | None if is_job => Ok(Goal::JobComplete),
        Some(condition) => Ok(Goal::Condition(condition.to_owned())),
        None => WorkloadKind::of(reference).map(Goal::Rollout).ok_or_else(|| KubernetesError::Parameter {
            parameter: "condition",
            detail: format!(
                "is needed for a {}: only deployments, statefulsets and jobs have a default",
                reference.kind
            ),
        }),
    }
}

/// Why a rollout is not complete, `Ok(None)` when it is, or an error when it cannot
/// complete (the Deployment's progress deadline passed) — as `kubectl rollout status`.
fn rollout_state(
    kind: WorkloadKind,
    status: &WorkloadStatus,
    object: &str,
) -> Result<Option<String>, KubernetesError> {
    if let Some(stale) = status.stale() {
        return Ok(Some(stale));
    }
    match kind {
        WorkloadKind::Deployment => {
            if let Some(message) = &status.progress_deadline_exceeded {
                return Err(KubernetesError::Failed(format!(
                    "the rollout of {object} exceeded its progress deadline ({message}); \
                     check its pods and events, then roll back or fix the image/config"
                )));
            }
            if status.updated < status.desired {
                return Ok(Some(format!("{} of {} replicas updated", status.updated, status.desired)));
            }
            if status.replicas > status.updated {
                return Ok(Some(format!(
                    "{} old replicas are pending termination",
                    status.replicas - status.updated
                )));
            }
            if status.available < status.updated {
                return Ok(Some(format!(
                    "{} of {} updated replicas available",
                    status.available, status.updated
                )));
            }
            Ok(None)
        }
        WorkloadKind::StatefulSet => {
            if status.ready < status.desired {
                return Ok(Some(format!("{} of {} replicas ready", status.ready, status.desired)));
            }
            match (&status.current_revision, &status.update_revision) {
                (Some(current), Some(update)) if current != update => {
                    Ok(Some(format!("{} pods updated to revision {update}", status.updated)))
                }
                _ => Ok(None),
            }
        }
    }
}

/// Waits for the target's rollout, completion or condition.
///
/// # Errors
/// The deadline passes, the Job fails, the rollout cannot progress, or the cluster
/// cannot be reached.
pub async fn run(
    parameters: Parameters,
    context: &super::StepContext,
) -> Result<K8sWaitOutputs, super::StepError> {
    let started = std::time::Instant::now();
    let reference = kubernetes::parse_reference(&parameters.target, "target")?;
    let goal = goal(&reference, parameters.condition.as_deref())?;
    let cluster =
        kubernetes::connect(parameters.kubeconfig.as_deref(), parameters.context.as_deref()).await?;
    let namespace = parameters.namespace.as_str();
    let object = format!("{} in namespace {namespace}", parameters.target);
    let deadline = parameters.deadline.get();
    let hint = format!(
        "Check it with kubectl -n {namespace} describe {} and its events, or raise `deadline`",
        parameters.target
    );
    let (cluster, reference, object) = (&cluster, &reference, &object);
    let wait = |what: String| Wait { what, deadline, progress: &context.progress, hint };
    match goal {
        Goal::Rollout(kind) => {
            let wait = wait(format!("the rollout of {object}"));
            kubernetes::wait_for(wait, move || async move {
                let status = kubernetes::workload_status(cluster, namespace, kind, &reference.name).await?;
                Ok(match rollout_state(kind, &status, object)? {
                    None => Poll::Ready(()),
                    Some(state) => Poll::Waiting(state),
                })
            })
            .await?;
        }
        Goal::JobComplete => {
            let wait = wait(format!("{object} to complete"));
            wait_for_job(cluster, namespace, &reference.name, wait).await?;
        }
        Goal::Condition(condition) => {
            let (resource, capabilities) = kubernetes::resolve_kind(cluster, reference).await?;
            let api = &kubernetes::dynamic_api(cluster, &resource, &capabilities, namespace);
            let condition = &condition;
            let wait = wait(format!("condition {condition} of {object} to be True"));
            kubernetes::wait_for(wait, move || async move {
                let found = api
                    .get_opt(&reference.name)
                    .await
                    .map_err(|error| kubernetes::api_error("read", object, error))?;
                let Some(found) = found else {
                    return Ok(Poll::Waiting("it does not exist (yet)".to_owned()));
                };
                let json = serde_json::to_value(&found).unwrap_or_default();
                Ok(match kubernetes::find_condition(&json, condition) {
                    Some(seen) if seen.status == "True" => Poll::Ready(()),
                    Some(seen) => Poll::Waiting(format!(
                        "{condition} is {} ({})",
                        seen.status,
                        kubernetes::condition_text(&seen)
                    )),
                    None => Poll::Waiting(format!("it has no {condition} condition yet")),
                })
            })
            .await?;
        }
    }
    Ok(K8sWaitOutputs { waited: kubernetes::seconds(started.elapsed()) })
}

/// Waits until a Job has the `Complete` condition; fails at once on `Failed`. Returns
/// the Job as last read.
///
/// # Errors
/// The Job failed, does not exist, or the deadline passed.
pub(crate) async fn wait_for_job(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    wait: Wait<'_>,
) -> Result<Job, KubernetesError> {
    let api = &Api::<Job>::namespaced(cluster.client.clone(), namespace);
    let object = &format!("job/{name} in namespace {namespace}");
    kubernetes::wait_for(wait, move || async move {
        let job = api.get(name).await.map_err(|error| kubernetes::api_error("read", object, error))?;
        let json = serde_json::to_value(&job).unwrap_or_default();
        let status = job.status.clone().unwrap_or_default();
        let counts = format!(
            "{} active, {} succeeded, {} failed",
            status.active.unwrap_or_default(),
            status.succeeded.unwrap_or_default(),
            status.failed.unwrap_or_default()
        );
        if let Some(failed) = kubernetes::find_condition(&json, "Failed").filter(|seen| seen.status == "True")
        {
            return Err(KubernetesError::Failed(format!(
                "{object} failed ({}; {counts}); see its pods' logs (kubectl -n {namespace} logs job/{name})",
                kubernetes::condition_text(&failed)
            )));
        }
        if kubernetes::find_condition(&json, "Complete").is_some_and(|seen| seen.status == "True") {
            return Ok(Poll::Ready(job));
        }
        Ok(Poll::Waiting(counts))
    })
    .await
}

/// Checks that the kubeconfig works and the object exists.
pub async fn preflight(parameters: &Parameters) -> super::Preflight {
    preflight_check(parameters).await.into()
}

async fn preflight_check(parameters: &Parameters) -> Result<String, KubernetesError> {
    let reference = kubernetes::parse_reference(&parameters.target, "target")?;
    goal(&reference, parameters.condition.as_deref())?;
    let cluster =
        kubernetes::connect(parameters.kubeconfig.as_deref(), parameters.context.as_deref()).await?;
    let (resource, capabilities) = kubernetes::resolve_kind(&cluster, &reference).await?;
    let api = kubernetes::dynamic_api(&cluster, &resource, &capabilities, &parameters.namespace);
    let object = format!("{} in namespace {}", parameters.target, parameters.namespace);
    match api.get_opt(&reference.name).await {
        Ok(Some(_)) => Ok(format!("{object} exists")),
        Ok(None) => Err(KubernetesError::Failed(format!(
            "{object} does not exist; check the name, the namespace and the context"
        ))),
        Err(error) => Err(kubernetes::api_error("read", &object, error)),
    }
}
