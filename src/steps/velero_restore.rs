//! `velero.restore`: create a velero.io/v1 Restore and wait for a terminal phase.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, OutputInfo, Params};
use crate::duration::HumanDuration;

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

/// What `velero.restore` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "Create a Velero Restore from a backup or schedule and wait for a terminal phase.",
    destructive: true,
    idempotent: true,
    undo: None,
    outputs: &[
        OutputInfo { name: "name", description: "the Restore's name" },
        OutputInfo { name: "phase", description: "the final phase" },
        OutputInfo { name: "warnings", description: "warning count" },
        OutputInfo { name: "errors", description: "error count" },
    ],
    preflight: "Velero's namespace exists and the backup or schedule is there",
    notes: "`Completed` is success; `PartiallyFailed`, `Failed` and `FailedValidation` are failures. \
            Give exactly one of `backup` and `schedule`.",
    example: "- id: restore-namespace\n  kind: velero.restore\n  with: { schedule: daily-backup, included_namespaces: [festivals-production] }\n",
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
