//! `velero.restore`: create a velero.io/v1 Restore and wait for a terminal phase.

use std::collections::BTreeMap;

use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::clients::kubernetes::{self, Cluster, KubernetesError, Poll, Wait};
use super::{KindInfo, Params, StepOutputs, step_outputs};
use crate::lang::duration::HumanDuration;

/// Parameters of `velero.restore`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// Velero's namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The Backup to restore from.
    pub backup: Option<String>,
    /// Restore the newest backup of this Schedule.
    pub schedule: Option<String>,
    /// Namespaces to restore (default: all in the backup).
    #[serde(default)]
    pub included_namespaces: Vec<String>,
    /// Namespaces to leave out.
    #[serde(default)]
    pub excluded_namespaces: Vec<String>,
    /// Restore namespace A into namespace B.
    #[serde(default)]
    pub namespace_mapping: BTreeMap<String, String>,
    /// Restore persistent volumes.
    pub restore_pvs: Option<bool>,
    /// What to do with objects that already exist.
    pub existing_resource_policy: Option<ExistingResourcePolicy>,
    /// Only restore objects with these labels.
    #[serde(default)]
    pub label_selector: BTreeMap<String, String>,
    /// The Restore's name (default: derived from the run and step, so resume finds it).
    pub name: Option<String>,
    /// The kubeconfig file (default: `KUBECONFIG`, else `~/.kube/config`), e.g. the DR
    /// cluster's when it differs from the operator's usual one.
    pub kubeconfig: Option<String>,
    /// The kubeconfig context.
    pub context: Option<String>,
    /// Give up waiting after this long.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
}

/// Velero's `existingResourcePolicy`.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExistingResourcePolicy {
    /// Leave existing objects alone.
    None,
    /// Update existing objects.
    Update,
}

fn default_namespace() -> String {
    "velero".to_owned()
}

fn default_deadline() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3600))
}

step_outputs! {
    /// Outputs of `velero.restore`.
    pub struct VeleroRestoreOutputs {
        /// the Restore's name
        pub name: String,
        /// the final phase
        pub phase: String,
        /// warning count
        pub warnings: u64,
        /// error count
        pub errors: u64,
    }
}

/// What `velero.restore` declares.
pub const INFO: KindInfo = KindInfo {
    name: "velero.restore",
    argv_parameters: &[],
    summary: "Create a Velero Restore from a backup or schedule and wait for a terminal phase.",
    destructive: true,
    idempotent: true,
    undo: None,
    outputs: VeleroRestoreOutputs::DECLARED,
    preflight: "Velero's namespace exists and the backup or schedule is there",
    notes: "`Completed` is success; `PartiallyFailed`, `Failed`, `FailedValidation` (its \
            `validationErrors` are in the error) and the `*PartiallyFailed` phases Velero passes through \
            while finalizing are failures; `New`, `InProgress`, `WaitingForPluginOperations` and \
            `Finalizing` are waited through. Give exactly one of `backup` and `schedule`. \
            The Restore is named `<step id>-<run timestamp and suffix>` (at most 63 characters) unless \
            `name` is given, and is annotated with the run id: a resumed run finds the Restore it \
            created and waits for it instead of creating a second one. \
            In a drill (`dr-plan drill`) without `namespace_mapping`, every included namespace \
            `X` is restored into `X-drill`, so a drill never restores over live namespaces; a drill \
            therefore needs `included_namespaces` (or an explicit `namespace_mapping`).",
    example: "- id: restore-namespace\n  kind: velero.restore\n  with: { schedule: daily-backup, included_namespaces: [festivals-production] }\n",
    exclusive: &[("backup", "schedule")],
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<VeleroRestoreOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `velero.restore` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(preflight(&super::parameters(with)?).await) }),
    undo: None,
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let source = if with.has("schedule") {
        format!("the newest backup of schedule {}", with.text("schedule"))
    } else {
        format!("backup {}", with.text("backup"))
    };
    let mut sentence = format!("restore {source} with Velero");
    let namespaces = with.list("included_namespaces");
    if !namespaces.is_empty() {
        let names: Vec<String> = namespaces.into_iter().map(super::display).collect();
        sentence.push_str(&format!(" (namespaces {})", names.join(", ")));
    }
    if let Some(mapping) = with.get("namespace_mapping").and_then(serde_json::Value::as_object)
        && !mapping.is_empty()
    {
        let pairs: Vec<String> =
            mapping.iter().map(|(from, to)| format!("{from} → {}", super::display(to))).collect();
        sentence.push_str(&format!(", mapping {}", pairs.join(", ")));
    }
    sentence.push_str(&format!(" and wait for it (deadline {})", with.text_or("deadline", "1h")));
    sentence
}

/// Velero's API group and version.
const VELERO_GROUP: &str = "velero.io";
const VELERO_VERSION: &str = "v1";

/// How a Restore's `status.phase` is to be read.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// `Completed`.
    Succeeded,
    /// `Failed`, `FailedValidation`, `PartiallyFailed` and the `*PartiallyFailed`
    /// phases Velero passes through while finalizing: the result is already a failure.
    Failed,
    /// `New`, `InProgress`, `WaitingForPluginOperations`, `Finalizing`, or no phase yet.
    Running,
}

fn outcome(phase: &str) -> Outcome {
    match phase {
        "Completed" => Outcome::Succeeded,
        "Failed" | "FailedValidation" => Outcome::Failed,
        phase if phase.ends_with("PartiallyFailed") => Outcome::Failed,
        _ => Outcome::Running,
    }
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(VELERO_GROUP, VELERO_VERSION, kind), plural)
}

/// The namespace mapping to use: the given one, or in a drill (when none is given)
/// every included namespace `X` restored into `X-drill`, so a drill never restores over
/// the live namespaces.
fn namespace_mapping(
    parameters: &Parameters,
    drill: bool,
) -> Result<BTreeMap<String, String>, KubernetesError> {
    if !drill || !parameters.namespace_mapping.is_empty() {
        return Ok(parameters.namespace_mapping.clone());
    }
    if parameters.included_namespaces.is_empty()
        || parameters.included_namespaces.iter().any(|name| name == "*")
    {
        return Err(KubernetesError::Parameter {
            parameter: "included_namespaces",
            detail:
                "a drill restores into isolated `<namespace>-drill` namespaces, so it needs the namespaces \
                     listed (or an explicit `namespace_mapping`)"
                    .to_owned(),
        });
    }
    Ok(parameters.included_namespaces.iter().map(|name| (name.clone(), format!("{name}-drill"))).collect())
}

/// The Restore's `spec`, in Velero's field names.
fn restore_spec(parameters: &Parameters, drill: bool) -> Result<Json, KubernetesError> {
    let mut spec = serde_json::Map::new();
    match (&parameters.backup, &parameters.schedule) {
        (Some(backup), None) => {
            spec.insert("backupName".into(), Json::String(backup.clone()));
        }
        (None, Some(schedule)) => {
            spec.insert("scheduleName".into(), Json::String(schedule.clone()));
        }
        (Some(_), Some(_)) | (None, None) => {
            return Err(KubernetesError::Parameter {
                parameter: "backup",
                detail: "give exactly one of `backup` and `schedule`".to_owned(),
            });
        }
    }
    if !parameters.included_namespaces.is_empty() {
        spec.insert("includedNamespaces".into(), json!(parameters.included_namespaces));
    }
    if !parameters.excluded_namespaces.is_empty() {
        spec.insert("excludedNamespaces".into(), json!(parameters.excluded_namespaces));
    }
    let mapping = namespace_mapping(parameters, drill)?;
    if !mapping.is_empty() {
        spec.insert("namespaceMapping".into(), json!(mapping));
    }
    if let Some(restore_pvs) = parameters.restore_pvs {
        spec.insert("restorePVs".into(), Json::Bool(restore_pvs));
    }
    if let Some(policy) = parameters.existing_resource_policy {
        let policy = match policy {
            ExistingResourcePolicy::None => "none",
            ExistingResourcePolicy::Update => "update",
        };
        spec.insert("existingResourcePolicy".into(), Json::String(policy.to_owned()));
    }
    if !parameters.label_selector.is_empty() {
        spec.insert("labelSelector".into(), json!({ "matchLabels": parameters.label_selector }));
    }
    Ok(Json::Object(spec))
}

/// Fails with a clear message when the cluster does not serve Velero's `kind`.
async fn require_velero(cluster: &Cluster, kind: &str) -> Result<(), KubernetesError> {
    let gvk = GroupVersionKind::gvk(VELERO_GROUP, VELERO_VERSION, kind);
    match kubernetes::pinned_resource(cluster, &gvk).await? {
        Some(_) => Ok(()),
        None => Err(KubernetesError::Failed(format!(
            "the cluster does not serve {VELERO_GROUP}/{VELERO_VERSION} {kind}: is Velero installed \
             (its CRDs) in the cluster of this kubeconfig context?"
        ))),
    }
}

/// Creates the Restore, or finds the one this step made earlier in this run.
async fn create_or_adopt(
    api: &Api<DynamicObject>,
    name: &str,
    spec: Json,
    object: &str,
    context: &super::StepContext,
) -> Result<(), KubernetesError> {
    let adopt =
        |existing: &DynamicObject| match kubernetes::created_by_run(existing.metadata.annotations.as_ref()) {
            Some(run) if run == context.run_id => {
                context.progress.note(format!("{object} was created earlier by this run: waiting for it"));
                Ok(())
            }
            Some(run) => Err(KubernetesError::Failed(format!(
                "{object} already exists, created by run {run}; give this step another `name`"
            ))),
            None => Err(KubernetesError::Failed(format!(
                "{object} already exists and was not created by dr-plan; give this step another `name`"
            ))),
        };
    if let Some(existing) =
        api.get_opt(name).await.map_err(|error| kubernetes::api_error("read", object, error))?
    {
        return adopt(&existing);
    }
    let mut restore =
        DynamicObject::new(name, &resource("Restore", "restores")).data(json!({ "spec": spec }));
    restore.metadata.annotations =
        serde_json::from_value(kubernetes::ownership_annotations(&context.run_id, &context.step_id)).ok();
    context.progress.note(format!("creating {object}"));
    match api.create(&PostParams::default(), &restore).await {
        Ok(_) => Ok(()),
        Err(error) if kubernetes::is_conflict(&error) => {
            let existing =
                api.get(name).await.map_err(|error| kubernetes::api_error("read", object, error))?;
            adopt(&existing)
        }
        Err(error) => Err(kubernetes::api_error("create", object, error)),
    }
}

/// What a Restore's status says.
struct Status {
    phase: String,
    warnings: u64,
    errors: u64,
    failure_reason: String,
    validation_errors: Vec<String>,
    progress: Option<(u64, u64)>,
}

fn read_status(restore: &DynamicObject) -> Status {
    let status = restore.data.get("status").cloned().unwrap_or_default();
    let number = |key: &str| status.get(key).and_then(Json::as_u64).unwrap_or_default();
    let progress = status.get("progress").map(|progress| {
        let count = |key: &str| progress.get(key).and_then(Json::as_u64).unwrap_or_default();
        (count("itemsRestored"), count("totalItems"))
    });
    Status {
        phase: status.get("phase").and_then(Json::as_str).unwrap_or_default().to_owned(),
        warnings: number("warnings"),
        errors: number("errors"),
        failure_reason: status.get("failureReason").and_then(Json::as_str).unwrap_or_default().to_owned(),
        validation_errors: status
            .get("validationErrors")
            .and_then(Json::as_array)
            .map(|errors| errors.iter().filter_map(Json::as_str).map(str::to_owned).collect())
            .unwrap_or_default(),
        progress,
    }
}

fn failure(status: &Status, object: &str, name: &str) -> KubernetesError {
    let counts = format!("{} errors, {} warnings", status.errors, status.warnings);
    let look = format!("see `velero restore describe {name} --details` and `velero restore logs {name}`");
    let message = match status.phase.as_str() {
        "FailedValidation" => {
            let errors = if status.validation_errors.is_empty() {
                "none listed".to_owned()
            } else {
                status.validation_errors.join("; ")
            };
            format!(
                "{object} failed validation: {errors}; fix the step's parameters (backup or schedule name, \
                 namespaces) and run it again"
            )
        }
        "Failed" => {
            let reason =
                if status.failure_reason.is_empty() { "no reason given" } else { &status.failure_reason };
            format!("{object} failed ({reason}; {counts}); {look}")
        }
        phase => format!("{object} ended {phase} ({counts}): part of the restore did not happen; {look}"),
    };
    KubernetesError::Failed(message)
}

/// Creates (or, on resume, adopts) the Restore and waits for a terminal phase.
///
/// # Errors
/// Velero is missing, the Restore cannot be created, ends in a failed phase, or the
/// deadline passes.
pub async fn run(
    parameters: Parameters,
    context: &super::StepContext,
) -> Result<VeleroRestoreOutputs, super::StepError> {
    let spec = restore_spec(&parameters, context.drill)?;
    let name = parameters
        .name
        .clone()
        .unwrap_or_else(|| kubernetes::deterministic_name(&context.step_id, &context.run_id, &context.plan));
    let namespace = parameters.namespace.as_str();
    let object = format!("Restore {namespace}/{name}");
    let cluster =
        kubernetes::connect(parameters.kubeconfig.as_deref(), parameters.context.as_deref()).await?;
    require_velero(&cluster, "Restore").await?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), namespace, &resource("Restore", "restores"));
    create_or_adopt(&api, &name, spec, &object, context).await?;

    let wait = Wait {
        what: format!("{object} to finish"),
        deadline: parameters.deadline.get(),
        progress: &context.progress,
        hint: format!(
            "Velero may still be working: check `velero restore describe {name}`, and raise `deadline` if it \
             legitimately takes longer"
        ),
    };
    let (api, name_ref, object_ref) = (&api, &name, &object);
    let status = kubernetes::wait_for(wait, move || async move {
        let restore =
            api.get(name_ref).await.map_err(|error| kubernetes::api_error("read", object_ref, error))?;
        let status = read_status(&restore);
        match outcome(&status.phase) {
            Outcome::Succeeded => Ok(Poll::Ready(status)),
            Outcome::Failed => Err(failure(&status, object_ref, name_ref)),
            Outcome::Running => {
                let phase =
                    if status.phase.is_empty() { "no phase yet (is Velero running?)" } else { &status.phase };
                Ok(Poll::Waiting(match status.progress {
                    Some((done, total)) => format!("{phase}, {done}/{total} items restored"),
                    None => phase.to_owned(),
                }))
            }
        }
    })
    .await?;
    Ok(VeleroRestoreOutputs { name, phase: status.phase, warnings: status.warnings, errors: status.errors })
}

/// Checks that Velero's namespace exists and the backup or schedule is there.
pub async fn preflight(parameters: &Parameters) -> super::Preflight {
    preflight_check(parameters).await.into()
}

async fn preflight_check(parameters: &Parameters) -> Result<String, KubernetesError> {
    restore_spec(parameters, false)?;
    let cluster =
        kubernetes::connect(parameters.kubeconfig.as_deref(), parameters.context.as_deref()).await?;
    let namespace = parameters.namespace.as_str();
    kubernetes::require_namespace(&cluster, namespace).await?;
    require_velero(&cluster, "Restore").await?;
    let (kind, plural, name, command) = match (&parameters.backup, &parameters.schedule) {
        (Some(backup), _) => ("Backup", "backups", backup, "backup"),
        (None, Some(schedule)) => ("Schedule", "schedules", schedule, "schedule"),
        (None, None) => {
            return Err(KubernetesError::Failed("give exactly one of `backup` and `schedule`".to_owned()));
        }
    };
    require_velero(&cluster, kind).await?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), namespace, &resource(kind, plural));
    let object = format!("{kind} {namespace}/{name}");
    match api.get_opt(name).await {
        Ok(Some(found)) => {
            let phase = found.data.pointer("/status/phase").and_then(Json::as_str).unwrap_or("no phase");
            Ok(format!("{object} exists ({phase})"))
        }
        Ok(None) => Err(KubernetesError::Failed(format!(
            "{object} does not exist; check `{command}` (velero {command} get)"
        ))),
        Err(error) => Err(kubernetes::api_error("read", &object, error)),
    }
}
