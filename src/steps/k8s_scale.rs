//! `k8s.scale`: scale Deployments/StatefulSets through the scale subresource.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, OutputInfo, Params};
use crate::duration::HumanDuration;

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
    /// The same count for every target.
    Count(u32),
    /// `kind/name` → count.
    PerWorkload(BTreeMap<String, u32>),
}

fn default_deadline() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}

/// What `k8s.scale` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "Scale a Deployment or StatefulSet (or all matching a selector) and wait until ready.",
    destructive: true,
    idempotent: true,
    undo: Some("scales every workload back to its `previous_replicas`"),
    outputs: &[OutputInfo {
        name: "previous_replicas",
        description: "the count before scaling (a map `kind/name` → count when `selector` is used)",
    }],
    preflight: "the workloads exist and are readable",
    notes: "Give exactly one of `target` and `selector`.",
    example: "- id: stop-writers\n  kind: k8s.scale\n  with: { namespace: festivals-production, target: deployment/prod-festivals-api, replicas: 0 }\n  undo: true\n",
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
