//! `k8s.apply`: server-side apply of manifest files.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, OutputInfo, Params};

/// Parameters of `k8s.apply`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// A manifest file (multi-document YAML allowed) or a directory of them.
    pub path: String,
    /// Namespace for namespaced objects that do not name one.
    pub namespace: Option<String>,
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

/// What `k8s.apply` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "Server-side apply manifest files or a directory of them.",
    destructive: true,
    idempotent: true,
    undo: None,
    outputs: &[OutputInfo { name: "applied", description: "the objects applied, as `kind/namespace/name`" }],
    preflight: "the files parse and the cluster is reachable",
    notes: "",
    example: "- id: apply-manifests\n  kind: k8s.apply\n  with: { path: k8s/production/ }\n",
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
