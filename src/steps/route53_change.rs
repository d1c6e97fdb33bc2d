//! `route53.change`: change record sets (and failover health checks) in Route53.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, OutputInfo, Params};
use crate::duration::HumanDuration;

/// Parameters of `route53.change`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The hosted zone: its id (`Z0123...`) or its name (`example.com.`).
    pub zone: String,
    /// The changes, applied as one batch.
    #[serde(default)]
    pub changes: Vec<RecordChange>,
    /// Health checks to update (force a failover by inverting one).
    #[serde(default)]
    pub health_checks: Vec<HealthCheckUpdate>,
    /// Wait until the change is `INSYNC`.
    #[serde(default = "super::shared::default_true")]
    pub wait: bool,
    /// Give up waiting after this long.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
    /// A custom endpoint.
    pub endpoint: Option<String>,
    /// The region for the API (Route53 is global; default us-east-1).
    pub region: Option<String>,
}

/// One record set change.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordChange {
    /// What to do.
    pub action: ChangeAction,
    /// The record name, e.g. `api.example.com.`.
    pub name: String,
    /// The record type (`A`, `AAAA`, `CNAME`, `TXT`, ...).
    #[serde(rename = "type")]
    pub record_type: String,
    /// TTL in seconds.
    pub ttl: Option<u32>,
    /// The values.
    #[serde(default)]
    pub values: Vec<String>,
    /// For weighted/failover records.
    pub set_identifier: Option<String>,
    /// `PRIMARY` or `SECONDARY`.
    pub failover: Option<Failover>,
    /// The health check the record is tied to.
    pub health_check_id: Option<String>,
}

/// A Route53 change action.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
pub enum ChangeAction {
    /// Create or replace.
    #[serde(rename = "UPSERT")]
    Upsert,
    /// Create; fails if it exists.
    #[serde(rename = "CREATE")]
    Create,
    /// Delete; the values must match.
    #[serde(rename = "DELETE")]
    Delete,
}

/// A failover role.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
pub enum Failover {
    /// Serves while healthy.
    #[serde(rename = "PRIMARY")]
    Primary,
    /// Serves when the primary is unhealthy.
    #[serde(rename = "SECONDARY")]
    Secondary,
}

/// A health check update.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckUpdate {
    /// The health check id.
    pub id: String,
    /// Invert the check (a healthy endpoint reports unhealthy): this forces failover.
    pub inverted: Option<bool>,
    /// Disable the check. Route53 then considers it healthy: it does NOT force failover.
    pub disabled: Option<bool>,
}

fn default_deadline() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}

/// What `route53.change` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "UPSERT/CREATE/DELETE Route53 record sets or flip failover, and wait until INSYNC.",
    destructive: true,
    idempotent: true,
    undo: Some("restores the record sets (and health checks) recorded in `previous`"),
    outputs: &[
        OutputInfo { name: "change_id", description: "the Route53 change id" },
        OutputInfo { name: "previous", description: "the record sets replaced or deleted, as they were" },
    ],
    preflight: "the hosted zone and the records exist",
    notes: "Lint warns when no health check of the new target runs upstream.",
    example: "- id: fail-over-dns\n  kind: route53.change\n  with:\n    zone: example.com.\n    changes:\n      - { action: UPSERT, name: api.example.com., type: CNAME, ttl: 60, values: [api.eu-west-2.example.com.] }\n",
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let mut parts: Vec<String> = with
        .list("changes")
        .into_iter()
        .map(|change| {
            let field = |key: &str| change.get(key).map(super::display).unwrap_or_default();
            let mut text = format!("{} {} {}", field("action"), field("name"), field("type"));
            if change.get("values").is_some() {
                text.push_str(&format!(" → {}", field("values")));
            }
            if change.get("failover").is_some() {
                text.push_str(&format!(" ({} {})", field("failover"), field("set_identifier")));
            }
            text
        })
        .collect();
    for check in with.list("health_checks") {
        let id = check.get("id").map(super::display).unwrap_or_default();
        for flag in ["inverted", "disabled"] {
            if let Some(value) = check.get(flag) {
                parts.push(format!("set health check {id} {flag}={}", super::display(value)));
            }
        }
    }
    let mut sentence = format!("in zone {}: {}", with.text("zone"), parts.join("; "));
    if with.flag("wait", true) {
        sentence.push_str(&format!(", wait until INSYNC (deadline {})", with.text_or("deadline", "5m")));
    }
    sentence
}
