//! `k8s.scale`: scale Deployments/StatefulSets through the scale subresource.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::clients::kubernetes::{self, Cluster, KubernetesError, Poll, Wait, WorkloadKind, WorkloadStatus};
use super::{KindInfo, Params, StepOutputs, step_outputs};
use crate::lang::duration::HumanDuration;

/// Parameters of `k8s.scale`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The namespace.
    pub namespace: String,
    /// `deployment/NAME` or `statefulset/NAME`.
    pub target: Option<String>,
    /// A label selector: every Deployment and StatefulSet it matches is scaled, each
    /// keeping its own previous count.
    pub selector: Option<String>,
    /// The new replica count, or (to scale back) a map workload → count as produced by
    /// `previous_replicas` of a selector step.
    pub replicas: Replicas,
    /// The kubeconfig file (default: `KUBECONFIG`, else `~/.kube/config`), e.g. the DR
    /// cluster's when it differs from the operator's usual one.
    pub kubeconfig: Option<String>,
    /// The kubeconfig context (default: the current context).
    pub context: Option<String>,
    /// Wait until the controller reports the new count ready.
    #[serde(default = "super::shared::default_true")]
    pub wait: bool,
    /// Give up waiting after this long.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
}

/// A replica count, or one count per workload.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Replicas {
    /// The same count for every target (Kubernetes keeps it in an int32).
    Count(#[schemars(range(max = MAX_REPLICAS))] u32),
    /// `kind/name` → count.
    PerWorkload(#[schemars(schema_with = "per_workload_schema")] BTreeMap<String, u32>),
}

/// The most replicas a workload can have: Kubernetes keeps the count in an int32.
const MAX_REPLICAS: u32 = 2_147_483_647;

fn per_workload_schema(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": { "type": "integer", "format": "uint32", "minimum": 0, "maximum": MAX_REPLICAS },
    })
}

fn default_deadline() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}

step_outputs! {
    /// Outputs of `k8s.scale`.
    pub struct K8sScaleOutputs {
        /// the count before scaling (a map `kind/name` → count when `selector` is used)
        pub previous_replicas: Json,
    }
}

/// What `k8s.scale` declares.
pub const INFO: KindInfo = KindInfo {
    name: "k8s.scale",
    argv_parameters: &[],
    summary: "Scale a Deployment or StatefulSet (or all matching a selector) and wait until ready.",
    destructive: true,
    idempotent: true,
    undo: Some("scales every workload back to its `previous_replicas`"),
    outputs: K8sScaleOutputs::DECLARED,
    preflight: "the workloads exist and are readable",
    notes: "Give exactly one of `target` and `selector`. Ready means the controller has seen the \
            change (`observedGeneration` caught up) and reports the new count ready (and, for \
            Deployments, available and up to date); `wait: false` skips the wait. The counts read before \
            scaling are kept in the run directory, so a resumed or retried step still reports (and \
            undoes to) the counts from before its first attempt. To scale back a selector step, pass \
            its `previous_replicas` map as `replicas`.",
    example: "- id: stop-writers\n  kind: k8s.scale\n  with: { namespace: festivals-production, target: deployment/prod-festivals-api, replicas: 0 }\n  undo: true\n",
    exclusive: &[("target", "selector")],
    describe_undo: Some(|_| "scale back to the previous replicas (read at run time)".to_owned()),
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<K8sScaleOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `k8s.scale` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(preflight(&super::parameters(with)?).await) }),
    undo: Some(|with, outputs, context| Box::pin(async move { undo(super::parameters(with)?, outputs, context).await })),
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let what = if with.has("selector") {
        format!("every deployment and statefulset matching `{}`", with.text("selector"))
    } else {
        with.text("target")
    };
    format!("scale {what} in {} to {} (was: read at run time)", with.text("namespace"), with.text("replicas"))
}

/// A Deployment or StatefulSet to scale.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Workload {
    kind: WorkloadKind,
    name: String,
}

impl Workload {
    /// Parses `deployment/NAME` or `statefulset/NAME` (and kubectl's spellings of them).
    fn parse(text: &str, parameter: &'static str) -> Result<Workload, KubernetesError> {
        let reference = kubernetes::parse_reference(text, parameter)?;
        let kind = WorkloadKind::of(&reference).ok_or_else(|| KubernetesError::Parameter {
            parameter,
            detail: format!(
                "`{text}` is not a Deployment or StatefulSet; write deployment/NAME or statefulset/NAME"
            ),
        })?;
        Ok(Workload { kind, name: reference.name })
    }

    /// `deployment/NAME`: the key of `previous_replicas` maps.
    fn key(&self) -> String {
        format!("{}/{}", self.kind.word(), self.name)
    }
}

/// What the parameters select.
enum Selection {
    Target(Workload),
    Selector(String),
}

fn selection(parameters: &Parameters) -> Result<Selection, KubernetesError> {
    match (&parameters.target, &parameters.selector) {
        (Some(target), None) => Ok(Selection::Target(Workload::parse(target, "target")?)),
        (None, Some(selector)) if !selector.trim().is_empty() => Ok(Selection::Selector(selector.clone())),
        (None, Some(_)) => Err(KubernetesError::Parameter {
            parameter: "selector",
            detail: "is empty; an empty selector would match every workload in the namespace".to_owned(),
        }),
        (Some(_), Some(_)) | (None, None) => Err(KubernetesError::Parameter {
            parameter: "target",
            detail: "give exactly one of `target` and `selector`".to_owned(),
        }),
    }
}

/// The workloads a selection names, sorted. A target is returned as is (its existence
/// is checked when its scale is read); a selector is listed and must match something.
async fn workloads(
    cluster: &Cluster,
    namespace: &str,
    selection: &Selection,
) -> Result<Vec<Workload>, KubernetesError> {
    let selector = match selection {
        Selection::Target(workload) => return Ok(vec![workload.clone()]),
        Selection::Selector(selector) => selector,
    };
    let parameters = ListParams::default().labels(selector);
    let listing = |kind: &str, error| {
        kubernetes::api_error(
            "list",
            &format!("{kind} matching `{selector}` in namespace {namespace}"),
            error,
        )
    };
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), namespace);
    let mut found: Vec<Workload> = deployments
        .list_metadata(&parameters)
        .await
        .map_err(|error| listing("deployments", error))?
        .items
        .into_iter()
        .filter_map(|item| item.metadata.name)
        .map(|name| Workload { kind: WorkloadKind::Deployment, name })
        .collect();
    found.extend(
        sets.list_metadata(&parameters)
            .await
            .map_err(|error| listing("statefulsets", error))?
            .items
            .into_iter()
            .filter_map(|item| item.metadata.name)
            .map(|name| Workload { kind: WorkloadKind::StatefulSet, name }),
    );
    if found.is_empty() {
        return Err(KubernetesError::Failed(format!(
            "selector `{selector}` matches no deployment or statefulset in namespace {namespace}; \
             check the labels (kubectl -n {namespace} get deploy,sts -l '{selector}')"
        )));
    }
    found.sort();
    Ok(found)
}

/// The count each workload is to get.
fn desired_counts(
    workloads: &[Workload],
    replicas: &Replicas,
    selection: &Selection,
) -> Result<Vec<(Workload, u32)>, KubernetesError> {
    let per_workload = match replicas {
        Replicas::Count(count) => {
            return Ok(workloads.iter().map(|workload| (workload.clone(), *count)).collect());
        }
        Replicas::PerWorkload(map) => map,
    };
    let mut counts = BTreeMap::new();
    for (key, count) in per_workload {
        counts.insert(Workload::parse(key, "replicas")?, *count);
    }
    let mut wanted = Vec::new();
    for workload in workloads {
        let count = counts.remove(workload).ok_or_else(|| KubernetesError::Parameter {
            parameter: "replicas",
            detail: format!("has no count for {}; add it to the map", workload.key()),
        })?;
        wanted.push((workload.clone(), count));
    }
    // With a target only its entry matters; with a selector every entry must be matched,
    // so a scale-back never silently skips a workload.
    if matches!(selection, Selection::Selector(_)) && !counts.is_empty() {
        let missing: Vec<String> = counts.keys().map(Workload::key).collect();
        return Err(KubernetesError::Failed(format!(
            "{} in `replicas` no longer match the selector (renamed, relabelled or deleted?); \
             scale them by hand or remove them from the map",
            missing.join(", ")
        )));
    }
    Ok(wanted)
}

async fn read_replicas(
    cluster: &Cluster,
    namespace: &str,
    workload: &Workload,
) -> Result<u32, KubernetesError> {
    let object = format!("{} in namespace {namespace}", workload.key());
    let scale = match workload.kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(cluster.client.clone(), namespace).get_scale(&workload.name).await
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(cluster.client.clone(), namespace).get_scale(&workload.name).await
        }
    }
    .map_err(|error| kubernetes::api_error("read the scale of", &object, error))?;
    let replicas = scale.spec.and_then(|spec| spec.replicas).unwrap_or_default();
    Ok(u32::try_from(replicas).unwrap_or_default())
}

async fn set_replicas(
    cluster: &Cluster,
    namespace: &str,
    workload: &Workload,
    count: u32,
) -> Result<(), KubernetesError> {
    let object = format!("{} in namespace {namespace}", workload.key());
    let patch = Patch::Merge(serde_json::json!({ "spec": { "replicas": count } }));
    let parameters = PatchParams::default();
    match workload.kind {
        WorkloadKind::Deployment => Api::<Deployment>::namespaced(cluster.client.clone(), namespace)
            .patch_scale(&workload.name, &parameters, &patch)
            .await
            .map(drop),
        WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(cluster.client.clone(), namespace)
            .patch_scale(&workload.name, &parameters, &patch)
            .await
            .map(drop),
    }
    .map_err(|error| kubernetes::api_error(&format!("scale to {count}"), &object, error))
}

/// Why a workload is not yet running `count` ready replicas, or `None` when it is.
fn not_ready(status: &WorkloadStatus, kind: WorkloadKind, count: u32) -> Option<String> {
    if let Some(stale) = status.stale() {
        return Some(stale);
    }
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    if status.desired != count {
        return Some(format!(
            "spec.replicas is {} instead of {count}: something else scaled it (an autoscaler?)",
            status.desired
        ));
    }
    let updated_ok = kind == WorkloadKind::StatefulSet || count == 0 || status.updated == count;
    let available_ok = kind == WorkloadKind::StatefulSet || status.available == count;
    if status.replicas == count && status.ready == count && available_ok && updated_ok {
        return None;
    }
    let mut state = format!("{}/{count} ready, {} pods", status.ready, status.replicas);
    if kind == WorkloadKind::Deployment {
        state.push_str(&format!(", {} available, {} up to date", status.available, status.updated));
    }
    Some(state)
}

/// Waits until every workload runs its count ready, within the deadline.
async fn wait_until_ready(
    cluster: &Cluster,
    namespace: &str,
    wanted: &[(Workload, u32)],
    deadline: std::time::Duration,
    context: &super::StepContext,
) -> Result<(), KubernetesError> {
    let names: Vec<String> =
        wanted.iter().map(|(workload, count)| format!("{} → {count}", workload.key())).collect();
    let wait = Wait {
        what: format!("{} in namespace {namespace} to be ready", names.join(", ")),
        deadline,
        progress: &context.progress,
        hint: format!(
            "Check the pods and events (kubectl -n {namespace} get pods; kubectl -n {namespace} get events), \
             or raise `deadline`"
        ),
    };
    kubernetes::wait_for(wait, move || async move {
        let mut waiting = Vec::new();
        for (workload, count) in wanted {
            let status =
                kubernetes::workload_status(cluster, namespace, workload.kind, &workload.name).await?;
            if let Some(state) = not_ready(&status, workload.kind, *count) {
                waiting.push(format!("{}: {state}", workload.key()));
            }
        }
        Ok(if waiting.is_empty() { Poll::Ready(()) } else { Poll::Waiting(waiting.join("; ")) })
    })
    .await
}

/// The name under which the counts read before scaling are remembered, so a re-run of
/// an interrupted step (resume, retry, on this machine or another) reports the counts
/// from before the first attempt, not its own.
fn memory_name(context: &super::StepContext) -> String {
    format!("{}.previous-replicas.json", context.step_id)
}

fn remembered_counts(context: &super::StepContext) -> Result<BTreeMap<String, u32>, super::StepError> {
    let remembered = context.recall(&memory_name(context)).map_err(super::StepError::Failed)?;
    Ok(remembered.and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default())
}

/// Scales the selected workloads and waits until they are ready.
///
/// # Errors
/// A workload is missing, the scale request fails, or the deadline passes.
pub async fn run(
    parameters: Parameters,
    context: &super::StepContext,
) -> Result<K8sScaleOutputs, super::StepError> {
    let selection = selection(&parameters)?;
    let cluster =
        kubernetes::connect(parameters.kubeconfig.as_deref(), parameters.context.as_deref()).await?;
    let namespace = parameters.namespace.as_str();
    let found = workloads(&cluster, namespace, &selection).await?;
    let wanted = desired_counts(&found, &parameters.replicas, &selection)?;

    // Previous counts: remembered from an earlier attempt of this step, else read now,
    // and written down before anything changes.
    let mut previous = remembered_counts(context)?;
    let mut changed = false;
    for (workload, _) in &wanted {
        if let std::collections::btree_map::Entry::Vacant(entry) = previous.entry(workload.key()) {
            entry.insert(read_replicas(&cluster, namespace, workload).await?);
            changed = true;
        }
    }
    if changed {
        let text = serde_json::to_vec_pretty(&previous).unwrap_or_default();
        context.remember(&memory_name(context), &text).map_err(super::StepError::Failed)?;
    }

    for (workload, count) in &wanted {
        context.progress.note(format!("scaling {} in {namespace} to {count}", workload.key()));
        set_replicas(&cluster, namespace, workload, *count).await?;
    }
    if parameters.wait {
        wait_until_ready(&cluster, namespace, &wanted, parameters.deadline.get(), context).await?;
    }

    let previous_replicas = match &selection {
        Selection::Target(workload) => Json::from(previous.get(&workload.key()).copied().unwrap_or_default()),
        Selection::Selector(_) => Json::Object(
            wanted
                .iter()
                .map(|(workload, _)| {
                    (workload.key(), Json::from(previous.get(&workload.key()).copied().unwrap_or_default()))
                })
                .collect(),
        ),
    };
    Ok(K8sScaleOutputs { previous_replicas })
}

/// Scales every workload back to its `previous_replicas` and waits (when `wait`).
///
/// # Errors
/// The outputs hold no previous counts, or scaling back fails.
pub async fn undo(
    parameters: Parameters,
    outputs: &super::Outputs,
    context: &super::StepContext,
) -> Result<(), super::StepError> {
    let namespace = parameters.namespace.as_str();
    let previous = outputs.get("previous_replicas");
    let wanted: Vec<(Workload, u32)> = match (previous, &parameters.target) {
        (Some(Json::Number(count)), Some(target)) => {
            let count = count.as_u64().and_then(|count| u32::try_from(count).ok()).unwrap_or_default();
            vec![(Workload::parse(target, "target")?, count)]
        }
        (Some(Json::Object(map)), _) => {
            let mut wanted = Vec::new();
            for (key, count) in map {
                let count = count.as_u64().and_then(|count| u32::try_from(count).ok()).ok_or_else(|| {
                    KubernetesError::Failed(format!("previous_replicas of {key} is not a count: {count}"))
                })?;
                wanted.push((Workload::parse(key, "previous_replicas")?, count));
            }
            wanted
        }
        _ => {
            return Err(KubernetesError::Failed(format!(
                "no previous replica counts in the outputs of step {}; scale back by hand",
                context.step_id
            ))
            .into());
        }
    };
    let cluster =
        kubernetes::connect(parameters.kubeconfig.as_deref(), parameters.context.as_deref()).await?;
    for (workload, count) in &wanted {
        context.progress.note(format!("scaling {} in {namespace} back to {count}", workload.key()));
        set_replicas(&cluster, namespace, workload, *count).await?;
    }
    if parameters.wait {
        wait_until_ready(&cluster, namespace, &wanted, parameters.deadline.get(), context).await?;
    }
    Ok(())
}

/// Checks that the kubeconfig works and the workloads exist and are readable.
pub async fn preflight(parameters: &Parameters) -> super::Preflight {
    preflight_check(parameters).await.into()
}

async fn preflight_check(parameters: &Parameters) -> Result<String, KubernetesError> {
    let selection = selection(parameters)?;
    let cluster =
        kubernetes::connect(parameters.kubeconfig.as_deref(), parameters.context.as_deref()).await?;
    let namespace = parameters.namespace.as_str();
    let found = workloads(&cluster, namespace, &selection).await?;
    let wanted = desired_counts(&found, &parameters.replicas, &selection)?;
    let mut seen = Vec::new();
    for (workload, _) in &wanted {
        let count = read_replicas(&cluster, namespace, workload).await?;
        seen.push(format!("{} ({count} replicas)", workload.key()));
    }
    Ok(format!("in namespace {namespace}: {}", seen.join(", ")))
}
