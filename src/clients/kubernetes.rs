//! What the Kubernetes and Velero steps share: a client built from the kubeconfig
//! (`KUBECONFIG` or `~/.kube/config`, optionally another context), `KIND/NAME` parsing,
//! deterministic object names for resume, API errors that say what to do, and bounded
//! waits that poll with backoff and report what they wait for.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{ApiCapabilities, Scope};
use kube::{Api, Client, Config};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use super::ClientError;
use crate::sys::progress::ProgressSink;

/// How long connecting to the API server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may wait for its answer (reads) or to be sent (writes).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The first pause between two polls of a wait; it grows to [`LONGEST_POLL_INTERVAL`].
const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The longest pause between two polls: a status change is seen within this.
const LONGEST_POLL_INTERVAL: Duration = Duration::from_secs(3);
/// The least time a wait's look at the cluster gets, even when the deadline is closer.
const LAST_LOOK_TIME: Duration = Duration::from_secs(2);
/// What a wait reports before its first answer.
const NOTHING_SEEN: &str = "nothing yet";
/// Kubernetes object names that end up in label values are at most this long.
pub(crate) const NAME_LIMIT: usize = 63;
/// The annotation recording which run created an object, so resume adopts only its own.
pub(crate) const RUN_ANNOTATION: &str = "dr-plan.io/run-id";
/// The annotation recording which step created an object.
pub(crate) const STEP_ANNOTATION: &str = "dr-plan.io/step";

/// What went wrong talking to a cluster.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KubernetesError {
    /// No kubeconfig file to read.
    #[error(
        "no kubeconfig: {0}; set KUBECONFIG to the target cluster's kubeconfig file \
         (or create ~/.kube/config)"
    )]
    NoKubeconfig(String),
    /// The kubeconfig could not be used.
    #[error("cannot use the kubeconfig{context}: {detail}; check the file and the step's `context`")]
    Kubeconfig {
        /// ` FILE (context NAME)`, either part, or empty.
        context: String,
        /// kube's explanation.
        detail: String,
    },
    /// A request failed.
    #[error("cannot {action} {object}: {detail}")]
    Api {
        /// What was tried ("read", "scale", "create").
        action: String,
        /// The object, as `kind/name in namespace`.
        object: String,
        /// The server's answer and what to try.
        detail: String,
        /// Whether trying again later may succeed (timeouts, 429, 5xx, connection errors).
        transient: bool,
    },
    /// A parameter says something that cannot be done.
    #[error("`{parameter}`: {detail}")]
    Parameter {
        /// The parameter's name.
        parameter: &'static str,
        /// What is wrong and how to write it.
        detail: String,
    },
    /// A wait reached its deadline.
    #[error("{what}: not done after {waited} (deadline {deadline}); last seen: {last}. {hint}")]
    Deadline {
        /// What was waited for.
        what: String,
        /// How long was waited.
        waited: String,
        /// The step's `deadline`.
        deadline: String,
        /// The last state seen.
        last: String,
        /// What to look at.
        hint: String,
    },
    /// The object reached a state that will not turn into success.
    #[error("{0}")]
    Failed(String),
    /// A file in the run directory could not be written.
    #[error("cannot write {path}: {detail}; check the state directory's free space and permissions")]
    RunFile {
        /// The file.
        path: PathBuf,
        /// The operating system's explanation.
        detail: String,
    },
}

impl KubernetesError {
    fn is_transient(&self) -> bool {
        matches!(self, KubernetesError::Api { transient: true, .. })
    }
}

impl From<KubernetesError> for ClientError {
    fn from(error: KubernetesError) -> ClientError {
        ClientError(error.to_string())
    }
}

/// A client for one kubeconfig context.
#[derive(Clone)]
pub(crate) struct Cluster {
    /// The client; every request is bounded by the connect and request timeouts.
    pub client: Client,
    /// The namespace the context names (`default` when it names none).
    pub default_namespace: String,
}

/// Connects with the kubeconfig file `kubeconfig` (default: `KUBECONFIG`, else
/// `~/.kube/config`) and `context` (default: its current context). Nothing is sent to
/// the server yet.
///
/// # Errors
/// No kubeconfig, an unknown context, or unusable credentials.
pub(crate) async fn connect(
    kubeconfig: Option<&str>,
    context: Option<&str>,
) -> Result<Cluster, KubernetesError> {
    // kube's TLS uses rustls with ring; the binary installs the provider at start, and
    // this covers library callers (tests). A provider already installed is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = KubeConfigOptions { context: context.map(str::to_owned), ..KubeConfigOptions::default() };
    let unusable = |detail: String| KubernetesError::Kubeconfig {
        context: match (kubeconfig, context) {
            (Some(file), Some(name)) => format!(" {file} (context {name})"),
            (Some(file), None) => format!(" {file}"),
            (None, Some(name)) => format!(" (context {name})"),
            (None, None) => String::new(),
        },
        detail,
    };
    let loaded = match kubeconfig {
        Some(file) => {
            if !Path::new(file).is_file() {
                return Err(KubernetesError::NoKubeconfig(format!(
                    "`kubeconfig` names {file}, which does not exist"
                )));
            }
            let parsed = Kubeconfig::read_from(file).map_err(|error| unusable(error.to_string()))?;
            Config::from_custom_kubeconfig(parsed, &options).await
        }
        None => {
            check_kubeconfig_exists()?;
            Config::from_kubeconfig(&options).await
        }
    };
    let mut config = loaded.map_err(|error| unusable(error.to_string()))?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    // The read timeout then counts from when a request is sent, not from when its pooled
    // connection went idle.
    config.reset_reader_on_write = true;
    let default_namespace = config.default_namespace.clone();
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config)
        .map_err(|error| unusable(format!("cannot build a client for {server}: {error}")))?;
    Ok(Cluster { client, default_namespace })
}

fn check_kubeconfig_exists() -> Result<(), KubernetesError> {
    if let Some(paths) = std::env::var_os("KUBECONFIG").filter(|paths| !paths.is_empty()) {
        let listed: Vec<PathBuf> = std::env::split_paths(&paths).collect();
        if listed.iter().any(|path| path.is_file()) {
            return Ok(());
        }
        let names: Vec<String> = listed.iter().map(|path| path.display().to_string()).collect();
        return Err(KubernetesError::NoKubeconfig(format!(
            "KUBECONFIG names {} but no such file exists",
            names.join(", ")
        )));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match home.map(|home| home.join(".kube/config")) {
        Some(path) if path.is_file() => Ok(()),
        Some(path) => Err(KubernetesError::NoKubeconfig(format!(
            "KUBECONFIG is not set and {} does not exist",
            path.display()
        ))),
        None => Err(KubernetesError::NoKubeconfig("KUBECONFIG and HOME are not set".to_owned())),
    }
}

/// Turns a kube error into one that says what was tried, on what, and what to do.
pub(crate) fn api_error(action: &str, object: &str, error: kube::Error) -> KubernetesError {
    let (detail, transient) = match &error {
        kube::Error::Api(status) => {
            let message =
                if status.message.is_empty() { status.reason.clone() } else { status.message.clone() };
            let hint = match status.code {
                401 => "the API server rejected the kubeconfig's credentials; refresh them (log in again)",
                403 => "the kubeconfig's user lacks RBAC permission for this; ask a cluster admin",
                404 => "check the name, the namespace and the kubeconfig context",
                409 => "the object changed meanwhile or is owned by another manager; run the step again",
                422 => "the server rejected the object as invalid; fix the manifest or parameters",
                429 => "the API server is overloaded; try again later",
                500..=599 => {
                    "the API server failed to handle the request; try again later, or check its logs"
                }
                _ => "check the API server's logs",
            };
            (
                format!("HTTP {} {}: {message}; {hint}", status.code, status.reason),
                status.code == 429 || status.code >= 500,
            )
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => (
            format!(
                "the API server did not answer ({error}); check the kubeconfig's server address, \
                 the network or VPN, and that the cluster is up"
            ),
            true,
        ),
        _ => (error.to_string(), false),
    };
    KubernetesError::Api { action: action.to_owned(), object: object.to_owned(), detail, transient }
}

/// Whether a kube error is the server's 404.
pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Whether a kube error is the server's 409 (already exists, or a conflict).
pub(crate) fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// `KIND[.GROUP]/NAME` as written in a step's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ObjectReference {
    /// The kind as written, lowercased (`deployment`, `deploy`, `jobs`).
    pub kind: String,
    /// The API group when written (`deployment.apps/x` → `apps`).
    pub group: Option<String>,
    /// The object's name.
    pub name: String,
}

/// Parses `KIND[.GROUP]/NAME`.
///
/// # Errors
/// The text has no `/`, or an empty kind or name.
pub(crate) fn parse_reference(
    text: &str,
    parameter: &'static str,
) -> Result<ObjectReference, KubernetesError> {
    let invalid = |why: &str| KubernetesError::Parameter {
        parameter,
        detail: format!("`{text}` {why}; write KIND/NAME, e.g. deployment/api or job/migrate"),
    };
    let (kind, name) = text.split_once('/').ok_or_else(|| invalid("has no `/`"))?;
    let (kind, group) = match kind.split_once('.') {
        Some((kind, group)) => (kind, Some(group.to_ascii_lowercase())),
        None => (kind, None),
    };
    if kind.is_empty() || name.is_empty() || name.contains('/') {
        return Err(invalid("is not KIND/NAME"));
    }
    Ok(ObjectReference { kind: kind.to_ascii_lowercase(), group, name: name.to_owned() })
}

/// The workload kinds that have a scale subresource and a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
}

impl WorkloadKind {
    /// The kind of a reference, when it is a Deployment or a StatefulSet.
    pub(crate) fn of(reference: &ObjectReference) -> Option<WorkloadKind> {
        if reference.group.as_deref().is_some_and(|group| group != "apps") {
            return None;
        }
        match reference.kind.as_str() {
            "deployment" | "deployments" | "deploy" => Some(WorkloadKind::Deployment),
            "statefulset" | "statefulsets" | "sts" => Some(WorkloadKind::StatefulSet),
            _ => None,
        }
    }

    /// `deployment` / `statefulset`: how outputs and messages name the kind.
    pub(crate) fn word(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
        }
    }
}

/// Short names `kubectl` accepts for common kinds, and the kind they stand for.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("deploy", "deployment"),
    ("sts", "statefulset"),
    ("ds", "daemonset"),
    ("rs", "replicaset"),
    ("po", "pod"),
    ("svc", "service"),
    ("cm", "configmap"),
    ("pvc", "persistentvolumeclaim"),
    ("pv", "persistentvolume"),
    ("ns", "namespace"),
    ("cj", "cronjob"),
    ("ing", "ingress"),
];

/// Finds the API resource a reference's kind names: by kind, plural, singular or short
/// name, in its group when one is written, in each group's preferred version. The core
/// group is searched first, then the others one by one; a group whose discovery fails
/// (a broken aggregated API such as an unavailable metrics server) is skipped, not fatal.
///
/// # Errors
/// The group list cannot be read, or no served resource has that kind.
pub(crate) async fn resolve_kind(
    cluster: &Cluster,
    reference: &ObjectReference,
) -> Result<(ApiResource, ApiCapabilities), KubernetesError> {
    let wanted = SHORT_NAMES
        .iter()
        .find(|(short, _)| *short == reference.kind)
        .map_or(reference.kind.as_str(), |(_, kind)| kind);
    let core_wanted = reference.group.as_deref().is_none_or(|group| group.is_empty() || group == "core");
    if core_wanted {
        let resources = cluster
            .client
            .list_core_api_resources("v1")
            .await
            .map_err(|error| api_error("discover", "the core API resources", error))?;
        if let Some(found) = find_in(&resources, "", "v1", wanted) {
            return Ok(found);
        }
    }
    let groups = cluster
        .client
        .list_api_groups()
        .await
        .map_err(|error| api_error("discover", "the API groups", error))?;
    let mut unreadable = Vec::new();
    for group in groups.groups {
        if reference.group.as_ref().is_some_and(|wanted_group| *wanted_group != group.name) {
            continue;
        }
        let Some(version) = group.preferred_version.clone().or_else(|| group.versions.first().cloned())
        else {
            continue;
        };
        match cluster.client.list_api_group_resources(&version.group_version).await {
            Ok(resources) => {
                if let Some(found) = find_in(&resources, &group.name, &version.version, wanted) {
                    return Ok(found);
                }
            }
            Err(_) => unreadable.push(group.name),
        }
    }
    let skipped = if unreadable.is_empty() {
        String::new()
    } else {
        format!(" (these API groups could not be read: {})", unreadable.join(", "))
    };
    Err(KubernetesError::Parameter {
        parameter: "target",
        detail: format!(
            "the cluster serves no resource of kind `{}`{}{skipped}; check the spelling \
             (kubectl api-resources), or write KIND.GROUP/NAME",
            reference.kind,
            reference.group.as_ref().map(|group| format!(" in group {group}")).unwrap_or_default()
        ),
    })
}

/// The resource of a discovery list that `wanted` names, without subresources.
fn find_in(
    resources: &k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList,
    group: &str,
    version: &str,
    wanted: &str,
) -> Option<(ApiResource, ApiCapabilities)> {
    let resource =
        resources.resources.iter().filter(|resource| !resource.name.contains('/')).find(|resource| {
            resource.kind.eq_ignore_ascii_case(wanted)
                || resource.name == wanted
                || resource.singular_name == wanted
                || resource.short_names.iter().flatten().any(|short| short == wanted)
        })?;
    let api_resource = ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: resources.group_version.clone(),
        kind: resource.kind.clone(),
        plural: resource.name.clone(),
    };
    let capabilities = ApiCapabilities {
        scope: if resource.namespaced { Scope::Namespaced } else { Scope::Cluster },
        subresources: Vec::new(),
        operations: resource.verbs.clone(),
    };
    Some((api_resource, capabilities))
}

/// An API for a resource found by discovery, in `namespace` when it is namespaced.
pub(crate) fn dynamic_api(
    cluster: &Cluster,
    resource: &ApiResource,
    capabilities: &ApiCapabilities,
    namespace: &str,
) -> Api<DynamicObject> {
    match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(cluster.client.clone(), namespace, resource),
        Scope::Cluster => Api::all_with(cluster.client.clone(), resource),
    }
}

/// The API resource of a group, version and kind, with the plural the server uses.
///
/// # Errors
/// The server does not serve that group and version, or not that kind in it.
pub(crate) async fn pinned_resource(
    cluster: &Cluster,
    gvk: &GroupVersionKind,
) -> Result<Option<(ApiResource, ApiCapabilities)>, KubernetesError> {
    match kube::discovery::pinned_kind(&cluster.client, gvk).await {
        Ok(found) => Ok(Some(found)),
        Err(kube::Error::Discovery(_)) => Ok(None),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(api_error("discover", &format!("{} {}", gvk.api_version(), gvk.kind), error)),
    }
}

/// Checks that a namespace exists (a read-only preflight).
///
/// # Errors
/// It does not, or it cannot be read.
pub(crate) async fn require_namespace(cluster: &Cluster, namespace: &str) -> Result<(), KubernetesError> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client.clone());
    match api.get_opt(namespace).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(KubernetesError::Failed(format!(
            "namespace {namespace} does not exist; check `namespace` and the kubeconfig context"
        ))),
        Err(error) => Err(api_error("read", &format!("namespace {namespace}"), error)),
    }
}

/// A name for an object a step creates that is the same every time the same step of the
/// same run asks (so resume finds the object instead of making another), DNS-1123 safe
/// and at most [`NAME_LIMIT`] long: `<step>-<run id without the plan name>`, shortened
/// with a hash of the whole when too long.
#[must_use]
pub(crate) fn deterministic_name(step_id: &str, run_id: &str, plan: &str) -> String {
    let run_suffix = run_id
        .strip_prefix(plan)
        .and_then(|rest| rest.strip_prefix('-'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(run_id);
    let whole = sanitize_name(&format!("{step_id}-{run_suffix}"));
    if whole.len() <= NAME_LIMIT {
        return whole;
    }
    let digest = Sha256::digest(format!("{step_id}\n{run_id}").as_bytes());
    let hash: String = hex::encode(digest).chars().take(8).collect();
    let keep = NAME_LIMIT - hash.len() - 1;
    let head = whole[..keep].trim_end_matches('-');
    format!("{head}-{hash}")
}

/// Lowercase letters, digits and `-`, starting and ending with a letter or digit.
fn sanitize_name(text: &str) -> String {
    let mut name = String::with_capacity(text.len());
    for character in text.chars() {
        let mapped = match character {
            'a'..='z' | '0'..='9' => character,
            'A'..='Z' => character.to_ascii_lowercase(),
            _ => '-',
        };
        // Runs of separators collapse, so `a__b` gives `a-b`.
        if !(mapped == '-' && name.ends_with('-')) {
            name.push(mapped);
        }
    }
    let trimmed = name.trim_matches('-');
    if trimmed.is_empty() { "dr-plan".to_owned() } else { trimmed.to_owned() }
}

/// Annotations marking an object as made by this run and step.
pub(crate) fn ownership_annotations(run_id: &str, step_id: &str) -> Json {
    serde_json::json!({ RUN_ANNOTATION: run_id, STEP_ANNOTATION: step_id })
}

/// Which run made an object, from its annotations.
pub(crate) fn created_by_run(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) -> Option<&str> {
    annotations.and_then(|annotations| annotations.get(RUN_ANNOTATION)).map(String::as_str)
}

/// A Deployment or StatefulSet as its controller reports it.
#[derive(Clone, Debug, Default)]
pub(crate) struct WorkloadStatus {
    /// `metadata.generation`: bumped by every change of the spec.
    pub generation: i64,
    /// `status.observedGeneration`: the generation the controller has acted on.
    pub observed_generation: i64,
    /// `spec.replicas` (1 when unset, as the API defaults it).
    pub desired: i32,
    /// `status.replicas`: pods that exist, old and new.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// `status.updatedReplicas`: pods of the newest template.
    pub updated: i32,
    /// StatefulSet `status.currentRevision`.
    pub current_revision: Option<String>,
    /// StatefulSet `status.updateRevision`.
    pub update_revision: Option<String>,
    /// A Deployment's `Progressing` condition when it says `ProgressDeadlineExceeded`.
    pub progress_deadline_exceeded: Option<String>,
}

impl WorkloadStatus {
    /// Why the controller's report is not current yet, if it is not.
    pub(crate) fn stale(&self) -> Option<String> {
        (self.observed_generation < self.generation).then(|| {
            format!(
                "the controller has not seen the latest change yet (observedGeneration {} < generation {})",
                self.observed_generation, self.generation
            )
        })
    }
}

/// Reads a workload's spec and status.
///
/// # Errors
/// It does not exist or cannot be read.
pub(crate) async fn workload_status(
    cluster: &Cluster,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
) -> Result<WorkloadStatus, KubernetesError> {
    let object = format!("{}/{name} in namespace {namespace}", kind.word());
    let read = |error| api_error("read", &object, error);
    match kind {
        WorkloadKind::Deployment => {
            let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
            let deployment = api.get(name).await.map_err(read)?;
            let status = deployment.status.unwrap_or_default();
            let progress_deadline_exceeded = status
                .conditions
                .iter()
                .flatten()
                .find(|condition| {
                    condition.type_ == "Progressing"
                        && condition.reason.as_deref() == Some("ProgressDeadlineExceeded")
                })
                .map(|condition| condition.message.clone().unwrap_or_default());
            Ok(WorkloadStatus {
                generation: deployment.metadata.generation.unwrap_or_default(),
                observed_generation: status.observed_generation.unwrap_or_default(),
                desired: deployment.spec.and_then(|spec| spec.replicas).unwrap_or(1),
                replicas: status.replicas.unwrap_or_default(),
                ready: status.ready_replicas.unwrap_or_default(),
                available: status.available_replicas.unwrap_or_default(),
                updated: status.updated_replicas.unwrap_or_default(),
                current_revision: None,
                update_revision: None,
                progress_deadline_exceeded,
            })
        }
        WorkloadKind::StatefulSet => {
            let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), namespace);
            let set = api.get(name).await.map_err(read)?;
            let status = set.status.unwrap_or_default();
            Ok(WorkloadStatus {
                generation: set.metadata.generation.unwrap_or_default(),
                observed_generation: status.observed_generation.unwrap_or_default(),
                desired: set.spec.and_then(|spec| spec.replicas).unwrap_or(1),
                replicas: status.replicas,
                ready: status.ready_replicas.unwrap_or_default(),
                available: status.available_replicas.unwrap_or_default(),
                updated: status.updated_replicas.unwrap_or_default(),
                current_revision: status.current_revision,
                update_revision: status.update_revision,
                progress_deadline_exceeded: None,
            })
        }
    }
}

/// One look at what a wait waits for.
pub(crate) enum Poll<T> {
    /// Done, with the result.
    Ready(T),
    /// Not yet; the text says what was seen ("1/3 ready").
    Waiting(String),
}

/// What a bounded wait is about.
pub(crate) struct Wait<'a> {
    /// What is waited for, for notes and errors ("deployment/api in shop to have 3 ready replicas").
    pub what: String,
    /// Give up after this long.
    pub deadline: Duration,
    /// Where notes go.
    pub progress: &'a ProgressSink,
    /// What to look at when the deadline passes.
    pub hint: String,
}

/// Calls `check` until it is ready, with pauses growing from 100 ms to 3 s, and gives up
/// at the deadline with the last state seen. Transient API errors (timeouts, 5xx) are
/// retried; any other error ends the wait at once. Each change of state is reported
/// through the progress sink.
///
/// # Errors
/// The deadline passed, or `check` failed for good.
pub(crate) async fn wait_for<T, Check, Checked>(
    wait: Wait<'_>,
    mut check: Check,
) -> Result<T, KubernetesError>
where
    // A closure returning a future (not an async closure): futures of async closures that
    // borrow their captures are not provably `Send`, and steps run on spawned tasks.
    Check: FnMut() -> Checked,
    Checked: Future<Output = Result<Poll<T>, KubernetesError>>,
{
    let started = Instant::now();
    let mut interval = FIRST_POLL_INTERVAL;
    let mut last = NOTHING_SEEN.to_owned();
    wait.progress.note(format!("waiting for {}", wait.what));
    loop {
        let remaining = wait.deadline.saturating_sub(started.elapsed());
        // The request timeouts bound each call; this bounds it by the deadline too, while
        // giving the look that ends at the deadline a fair chance to get an answer.
        let seen = match tokio::time::timeout(remaining.max(LAST_LOOK_TIME), check()).await {
            Ok(Ok(Poll::Ready(value))) => return Ok(value),
            Ok(Ok(Poll::Waiting(state))) => state,
            Ok(Err(error)) if error.is_transient() => format!("a request failed, retrying: {error}"),
            Ok(Err(error)) => return Err(error),
            // What was seen before is still the best account of the state.
            Err(_) if last != NOTHING_SEEN => last.clone(),
            Err(_) => format!(
                "the API server did not answer within {}",
                crate::lang::duration::format_duration(remaining.max(LAST_LOOK_TIME))
            ),
        };
        if seen != last {
            wait.progress.note(format!("waiting for {}: {seen}", wait.what));
            last = seen;
        }
        let elapsed = started.elapsed();
        if elapsed >= wait.deadline {
            return Err(KubernetesError::Deadline {
                what: wait.what,
                waited: crate::lang::duration::format_duration(round_to_tenths(elapsed)),
                deadline: crate::lang::duration::format_duration(wait.deadline),
                last,
                hint: wait.hint,
            });
        }
        tokio::time::sleep(interval.min(wait.deadline - elapsed)).await;
        interval = (interval * 3 / 2).min(LONGEST_POLL_INTERVAL);
    }
}

fn round_to_tenths(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis().div_ceil(100).try_into().unwrap_or(u64::MAX) * 100)
}

/// Seconds, rounded to milliseconds.
pub(crate) fn seconds(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Writes a run-directory file whole: to a temporary name first, then renamed, so a
/// crash never leaves a half-written file that looks complete.
///
/// # Errors
/// The file could not be written.
pub(crate) fn write_run_file(path: &Path, contents: &[u8]) -> Result<(), KubernetesError> {
    let error =
        |error: std::io::Error| KubernetesError::RunFile { path: path.to_owned(), detail: error.to_string() };
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    crate::sys::files::write_private(&partial, contents).map_err(error)?;
    std::fs::rename(&partial, path).map_err(error)
}

/// A condition of an object's `status.conditions`, by type.
pub(crate) struct Condition {
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// The machine-readable reason.
    pub reason: String,
    /// The human-readable message.
    pub message: String,
}

/// Finds `status.conditions[type == kind]` in an object's JSON.
pub(crate) fn find_condition(object: &Json, kind: &str) -> Option<Condition> {
    let conditions = object.pointer("/status/conditions")?.as_array()?;
    let condition =
        conditions.iter().find(|condition| condition.get("type").and_then(Json::as_str) == Some(kind))?;
    let text = |key: &str| condition.get(key).and_then(Json::as_str).unwrap_or_default().to_owned();
    Some(Condition { status: text("status"), reason: text("reason"), message: text("message") })
}

/// `reason: message` of a condition, for error texts.
pub(crate) fn condition_text(condition: &Condition) -> String {
    match (condition.reason.is_empty(), condition.message.is_empty()) {
        (true, true) => "no reason given".to_owned(),
        (false, true) => condition.reason.clone(),
        (true, false) => condition.message.clone(),
        (false, false) => format!("{}: {}", condition.reason, condition.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_kind_group_and_name() {
        let reference = parse_reference("Deployment.apps/api", "target").expect("valid");
        assert_eq!(reference.kind, "deployment");
        assert_eq!(reference.group.as_deref(), Some("apps"));
        assert_eq!(reference.name, "api");
        assert_eq!(WorkloadKind::of(&reference), Some(WorkloadKind::Deployment));
        assert_eq!(
            WorkloadKind::of(&parse_reference("sts/db", "target").expect("valid")),
            Some(WorkloadKind::StatefulSet)
        );
        assert_eq!(
            WorkloadKind::of(&parse_reference("deployment.example.com/x", "target").expect("valid")),
            None
        );
        for bad in ["api", "/api", "deployment/", "a/b/c"] {
            assert!(parse_reference(bad, "target").is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn deterministic_names_are_dns_safe_stable_and_short() {
        let name = deterministic_name("restore_DB", "festivals-20250101-120000-ab12", "festivals");
        assert_eq!(name, "restore-db-20250101-120000-ab12");
        let long_step = "a".repeat(80);
        let first = deterministic_name(&long_step, "plan-20250101-120000-ab12", "plan");
        let second = deterministic_name(&long_step, "plan-20250101-120000-ab12", "plan");
        let other_run = deterministic_name(&long_step, "plan-20250101-120000-ab13", "plan");
        assert_eq!(first, second);
        assert_ne!(first, other_run);
        assert!(first.len() <= NAME_LIMIT, "{first}");
        assert!(first.chars().all(|character| character.is_ascii_lowercase()
            || character.is_ascii_digit()
            || character == '-'));
        assert_eq!(deterministic_name("step", "run", "other-plan"), "step-run");
    }
}
