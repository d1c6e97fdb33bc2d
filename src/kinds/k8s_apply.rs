//! `k8s.apply`: server-side apply of manifest files.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::{ApiResource, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{ApiCapabilities, Scope};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::clients::kubernetes::{self, Cluster, KubernetesError, Poll, Wait};
use super::{KindInfo, Params, StepOutputs, step_outputs};
use crate::lang::source::SourceFile;

/// Parameters of `k8s.apply`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// A manifest file (multi-document YAML allowed) or a directory of them.
    pub path: String,
    /// Namespace for namespaced objects that do not name one.
    pub namespace: Option<String>,
    /// The kubeconfig file (default: `KUBECONFIG`, else `~/.kube/config`), e.g. the DR
    /// cluster's when it differs from the operator's usual one.
    pub kubeconfig: Option<String>,
    /// The kubeconfig context.
    pub context: Option<String>,
    /// The field manager recorded by server-side apply.
    #[serde(default = "default_manager")]
    pub field_manager: String,
    /// Take ownership of fields another manager set (`--force-conflicts`).
    #[serde(default)]
    pub force_conflicts: bool,
}

fn default_manager() -> String {
    "dr-plan".to_owned()
}

step_outputs! {
    /// Outputs of `k8s.apply`.
    pub struct K8sApplyOutputs {
        /// the objects applied, as `kind/namespace/name`
        pub applied: Vec<String>,
    }
}

/// What `k8s.apply` declares.
pub const INFO: KindInfo = KindInfo {
    name: "k8s.apply",
    argv_parameters: &[],
    summary: "Server-side apply manifest files or a directory of them.",
    destructive: true,
    idempotent: true,
    undo: None,
    outputs: K8sApplyOutputs::DECLARED,
    preflight: "the files parse and the cluster is reachable",
    notes: "`path` is a file (multi-document YAML, or JSON) or a directory whose `.yaml`, `.yml` and \
            `.json` files are applied in name order (not recursively). `kind: List` documents apply \
            their items. Namespaced objects without a namespace go to `namespace`, else the kubeconfig \
            context's namespace. Kinds defined by a CustomResourceDefinition in the same apply are \
            waited for (up to a minute) until the server serves them.",
    example: "- id: apply-manifests\n  kind: k8s.apply\n  with: { path: k8s/production/ }\n",
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<K8sApplyOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `k8s.apply` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(preflight(&super::parameters(with)?).await) }),
    undo: None,
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let mut sentence = format!("server-side apply {}", with.text("path"));
    if with.has("namespace") {
        sentence.push_str(&format!(" in {}", with.text("namespace")));
    }
    sentence
}

/// How long an object waits for its kind to be served when the same apply just created
/// the CustomResourceDefinition that defines it.
const NEW_KIND_DEADLINE: Duration = Duration::from_secs(60);

/// One object read from a manifest file.
#[derive(Debug)]
struct Manifest {
    /// `FILE line N`, for messages.
    origin: String,
    /// The object.
    object: Json,
}

/// The manifest files of `path`: the file itself, or a directory's `*.yaml`, `*.yml` and
/// `*.json` files (not recursive), in name order — like `kubectl apply -f DIR`.
fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, KubernetesError> {
    let metadata = std::fs::metadata(path).map_err(|error| KubernetesError::Parameter {
        parameter: "path",
        detail: format!("cannot read {}: {error}", path.display()),
    })?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = std::fs::read_dir(path).map_err(|error| KubernetesError::Parameter {
        parameter: "path",
        detail: format!("cannot list {}: {error}", path.display()),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|file| file.is_file())
        .filter(|file| {
            file.extension()
                .and_then(|extension| extension.to_str())
                .is_some_and(|extension| matches!(extension, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(KubernetesError::Parameter {
            parameter: "path",
            detail: format!("{} holds no .yaml, .yml or .json files", path.display()),
        });
    }
    Ok(files)
}

/// The YAML documents of a file, each as the file's text with every line outside the
/// document blanked, so that line numbers in errors are the file's. A document starts
/// after a `---` line (which may carry content after a space) and ends at the next
/// `---` or `...` line: YAML forbids both at the start of a line inside a document.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    let mut has_content = false;
    for (index, line) in text.lines().enumerate() {
        let marker = ["---", "..."].into_iter().find(|marker| {
            line.strip_prefix(marker).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        });
        if let Some(marker) = marker {
            if has_content {
                documents.push((first_line, std::mem::take(&mut current)));
            }
            current = "\n".repeat(index);
            first_line = index + 1;
            has_content = false;
            if marker == "---" {
                let rest = &line[3..];
                has_content = !rest.trim().is_empty();
                current.push_str(rest);
            }
            current.push('\n');
            continue;
        }
        if current.is_empty() && index > 0 {
            current = "\n".repeat(index);
        }
        has_content |= !line.trim().is_empty() && !line.trim_start().starts_with('#');
        current.push_str(line);
        current.push('\n');
    }
    if has_content {
        documents.push((first_line, current));
    }
    documents
}

/// Reads every object of the manifest files; `kind: List` documents give their items.
fn read_manifests(path: &Path) -> Result<Vec<Manifest>, KubernetesError> {
    let mut manifests = Vec::new();
    for file in manifest_files(path)? {
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|error| KubernetesError::Parameter {
            parameter: "path",
            detail: format!("cannot read {shown}: {error}"),
        })?;
        let is_json = file.extension().is_some_and(|extension| extension == "json");
        let documents = if is_json {
            let object: Json = serde_json::from_str(&text).map_err(|error| KubernetesError::Parameter {
                parameter: "path",
                detail: format!("{shown} is not valid JSON: {error}"),
            })?;
            vec![(1, object)]
        } else {
            let mut objects = Vec::new();
            for (line, document) in split_documents(&text) {
                // Named as YAML whatever the extension, so the loader reads it as YAML.
                let source = SourceFile::new(format!("{shown}.yaml"), document);
                let node = crate::lang::load::load(&source).map_err(|problems| {
                    let described: Vec<String> = problems
                        .iter()
                        .map(|problem| {
                            let at = problem
                                .labels
                                .first()
                                .map_or(line, |label| source.line_column(label.span.start).0);
                            format!("line {at}: {}", problem.message)
                        })
                        .collect();
                    KubernetesError::Parameter {
                        parameter: "path",
                        detail: format!("{shown} is not valid YAML: {}", described.join("; ")),
                    }
                })?;
                objects.push((line, node.to_json()));
            }
            objects
        };
        for (line, object) in documents {
            let origin = format!("{shown} line {line}");
            match &object {
                Json::Null => {}
                Json::Object(map) if map.get("kind").and_then(Json::as_str) == Some("List") => {
                    for item in map.get("items").and_then(Json::as_array).into_iter().flatten() {
                        manifests.push(Manifest { origin: origin.clone(), object: item.clone() });
                    }
                }
                Json::Object(_) => manifests.push(Manifest { origin, object }),
                _ => {
                    return Err(KubernetesError::Parameter {
                        parameter: "path",
                        detail: format!(
                            "{origin}: a manifest must be a map with apiVersion, kind and metadata"
                        ),
                    });
                }
            }
        }
    }
    Ok(manifests)
}

/// An object's identity, read from its manifest.
struct Identity {
    gvk: GroupVersionKind,
    name: String,
}

fn identity(manifest: &Manifest) -> Result<Identity, KubernetesError> {
    let text = |pointer: &str| {
        manifest.object.pointer(pointer).and_then(Json::as_str).filter(|text| !text.is_empty())
    };
    let missing = |field: &str| KubernetesError::Parameter {
        parameter: "path",
        detail: format!("{}: the object has no {field}", manifest.origin),
    };
    let api_version = text("/apiVersion").ok_or_else(|| missing("apiVersion"))?;
    let kind = text("/kind").ok_or_else(|| missing("kind"))?;
    let name = text("/metadata/name").ok_or_else(|| missing("metadata.name"))?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Ok(Identity { gvk: GroupVersionKind::gvk(group, version, kind), name: name.to_owned() })
}

/// Finds the API resource of each kind once per apply.
struct Resolver<'a> {
    cluster: &'a Cluster,
    known: HashMap<(String, String), (ApiResource, ApiCapabilities)>,
    /// Kinds defined by CustomResourceDefinitions in the same apply (`group/Kind`).
    defined_here: HashSet<(String, String)>,
}

impl Resolver<'_> {
    async fn resolve(
        &mut self,
        gvk: &GroupVersionKind,
        origin: &str,
        progress: &super::ProgressSink,
    ) -> Result<(ApiResource, ApiCapabilities), KubernetesError> {
        let key = (gvk.api_version(), gvk.kind.clone());
        if let Some(found) = self.known.get(&key) {
            return Ok(found.clone());
        }
        let found = match kubernetes::pinned_resource(self.cluster, gvk).await? {
            Some(found) => found,
            None if self.defined_here.contains(&(gvk.group.clone(), gvk.kind.clone())) => {
                // The CRD was just applied: its kind is served once the CRD is established.
                let wait = Wait {
                    what: format!(
                        "the API server to serve {} {} (defined by a CRD in this apply)",
                        key.0, key.1
                    ),
                    deadline: NEW_KIND_DEADLINE,
                    progress,
                    hint: "Check the CustomResourceDefinition's conditions (kubectl get crd -o yaml)"
                        .to_owned(),
                };
                let cluster = self.cluster;
                kubernetes::wait_for(wait, move || async move {
                    Ok(match kubernetes::pinned_resource(cluster, gvk).await? {
                        Some(found) => Poll::Ready(found),
                        None => Poll::Waiting("not served yet".to_owned()),
                    })
                })
                .await?
            }
            None => {
                return Err(KubernetesError::Failed(format!(
                    "{origin}: the cluster does not serve {} in {}; install its CustomResourceDefinition \
                     or fix apiVersion (kubectl api-resources lists what is served)",
                    gvk.kind, key.0
                )));
            }
        };
        self.known.insert(key, found.clone());
        Ok(found)
    }

    /// Notes the kind a CustomResourceDefinition manifest defines.
    fn note_definition(&mut self, manifest: &Manifest) {
        if manifest.object.get("kind").and_then(Json::as_str) != Some("CustomResourceDefinition") {
            return;
        }
        let group = manifest.object.pointer("/spec/group").and_then(Json::as_str);
        let kind = manifest.object.pointer("/spec/names/kind").and_then(Json::as_str);
        if let (Some(group), Some(kind)) = (group, kind) {
            self.defined_here.insert((group.to_owned(), kind.to_owned()));
        }
    }
}

/// Server-side applies every object of the manifests.
///
/// # Errors
/// A file does not parse, a kind is not served, or the server refuses an object.
pub async fn run(
    parameters: Parameters,
    context: &super::StepContext,
) -> Result<K8sApplyOutputs, super::StepError> {
    let manifests = read_manifests(Path::new(&parameters.path))?;
    let cluster =
        kubernetes::connect(parameters.kubeconfig.as_deref(), parameters.context.as_deref()).await?;
    let default_namespace = parameters.namespace.clone().unwrap_or_else(|| cluster.default_namespace.clone());
    let mut patch_parameters = PatchParams::apply(&parameters.field_manager);
    if parameters.force_conflicts {
        patch_parameters = patch_parameters.force();
    }
    let mut resolver = Resolver { cluster: &cluster, known: HashMap::new(), defined_here: HashSet::new() };
    for manifest in &manifests {
        resolver.note_definition(manifest);
    }
    let mut applied = Vec::new();
    for (index, manifest) in manifests.iter().enumerate() {
        let identity = identity(manifest)?;
        let (resource, capabilities) =
            resolver.resolve(&identity.gvk, &manifest.origin, &context.progress).await?;
        let mut object = manifest.object.clone();
        let namespace = match capabilities.scope {
            Scope::Namespaced => {
                let namespace = object
                    .pointer("/metadata/namespace")
                    .and_then(Json::as_str)
                    .map_or_else(|| default_namespace.clone(), str::to_owned);
                if let Some(metadata) = object.get_mut("metadata").and_then(Json::as_object_mut) {
                    metadata.insert("namespace".into(), Json::String(namespace.clone()));
                }
                Some(namespace)
            }
            Scope::Cluster => {
                // A cluster-scoped object has no namespace; the server refuses one.
                if let Some(metadata) = object.get_mut("metadata").and_then(Json::as_object_mut) {
                    metadata.remove("namespace");
                }
                None
            }
        };
        let described = match &namespace {
            Some(namespace) => format!("{}/{namespace}/{}", identity.gvk.kind, identity.name),
            None => format!("{}/{}", identity.gvk.kind, identity.name),
        };
        context
            .progress
            .objects(u64::try_from(index).unwrap_or_default(), u64::try_from(manifests.len()).ok());
        context.progress.note(format!("applying {described}"));
        let api = kubernetes::dynamic_api(
            &cluster,
            &resource,
            &capabilities,
            namespace.as_deref().unwrap_or_default(),
        );
        api.patch(&identity.name, &patch_parameters, &Patch::Apply(&object)).await.map_err(|error| {
            let conflict = kubernetes::is_conflict(&error) && !parameters.force_conflicts;
            let mut failure = kubernetes::api_error("apply", &format!("{described} ({})", manifest.origin), error);
            if conflict && let KubernetesError::Api { detail, .. } = &mut failure {
                detail.push_str(
                    "; another field manager owns these fields: set `force_conflicts: true` to take them over",
                );
            }
            failure
        })?;
        applied.push(described);
    }
    Ok(K8sApplyOutputs { applied })
}

/// Checks that the manifests parse, the cluster answers, and every kind is served (or
/// defined by a CRD among the manifests).
pub async fn preflight(parameters: &Parameters) -> super::Preflight {
    preflight_check(parameters).await.into()
}

async fn preflight_check(parameters: &Parameters) -> Result<String, KubernetesError> {
    let manifests = read_manifests(Path::new(&parameters.path))?;
    let cluster =
        kubernetes::connect(parameters.kubeconfig.as_deref(), parameters.context.as_deref()).await?;
    let version = cluster
        .client
        .apiserver_version()
        .await
        .map_err(|error| kubernetes::api_error("read", "the API server's version", error))?;
    let mut resolver = Resolver { cluster: &cluster, known: HashMap::new(), defined_here: HashSet::new() };
    for manifest in &manifests {
        resolver.note_definition(manifest);
    }
    for manifest in &manifests {
        let identity = identity(manifest)?;
        let defined_here =
            resolver.defined_here.contains(&(identity.gvk.group.clone(), identity.gvk.kind.clone()));
        if !defined_here {
            resolver.resolve(&identity.gvk, &manifest.origin, &super::ProgressSink::default()).await?;
        }
    }
    Ok(format!(
        "{} objects parse; the API server ({}) serves their kinds",
        manifests.len(),
        version.git_version
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_markers_and_keep_line_numbers() {
        let text = "# header\na: 1\n---\nb: 2\n--- {c: 3}\n...\n---\n# only a comment\n---\n\nd: 4\n";
        let documents = split_documents(text);
        let firsts: Vec<usize> = documents.iter().map(|(line, _)| *line).collect();
        assert_eq!(firsts, vec![1, 3, 5, 9]);
        assert_eq!(documents[1].1.lines().nth(3), Some("b: 2"));
        assert_eq!(documents[2].1.lines().nth(4), Some(" {c: 3}"));
        assert_eq!(documents[3].1.lines().nth(10), Some("d: 4"));
        // A `---` inside a line or followed by text without a space is content.
        assert_eq!(split_documents("a: ---\nb: ---x\n").len(), 1);
    }
}
