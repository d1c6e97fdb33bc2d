//! `route53.change`: change record sets (and failover health checks) in Route53.
//!
//! A run reads the record sets and health checks it is about to change, records them
//! (in the run directory first, then as the `previous` outputs), submits one batch
//! with only the changes the zone does not hold yet, updates health checks, and waits
//! for `INSYNC`. Re-running it, after a crash or on resume, finds the zone already in
//! the asked state and submits nothing: it reports the first attempt's change id and
//! the record sets from before the first attempt. Undo puts `previous` back.

mod checkpoint;
use crate::clients::route53 as api;
use crate::clients::route53::records;
pub use crate::clients::route53::{ChangeAction, Failover, RecordChange, Route53Error};

use std::time::Instant;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use super::{KindInfo, Params, Preflight, ProgressSink, StepContext, StepError, StepOutputs, step_outputs};
use crate::lang::duration::HumanDuration;
pub use api::{DEFAULT_REGION, connect, connect_with_credentials};
use api::{Session, Zone};
pub use records::{AliasSnapshot, PreviousHealthCheck, PreviousRecord, RecordSnapshot};
use records::{RecordKey, change_key, describe_change, in_zone};

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

step_outputs! {
    /// Outputs of `route53.change`: what undo needs to put the zone back.
    pub struct Route53ChangeOutputs {
        /// the Route53 change id, or null when the zone already held every change (nothing submitted)
        pub change_id: Option<String>,
        /// one entry per record set changed: `name`, `type`, `set_identifier` and `record`, the set as it
        /// was (`ttl`, `values`, `failover`, `health_check_id`, `alias`, ...) or null when it did not exist
        pub previous: Vec<PreviousRecord>,
        /// the health checks updated, with their `inverted` and `disabled` flags as they were
        pub previous_health_checks: Vec<PreviousHealthCheck>,
        /// the hosted zone's id
        pub zone_id: String,
    }
}

/// What `route53.change` declares.
pub const INFO: KindInfo = KindInfo {
    name: "route53.change",
    argv_parameters: &[],
    summary: "UPSERT/CREATE/DELETE Route53 record sets or flip failover, and wait until INSYNC.",
    destructive: true,
    idempotent: true,
    undo: Some("restores the record sets (and health checks) recorded in `previous`"),
    outputs: Route53ChangeOutputs::DECLARED,
    preflight: "the hosted zone and the records exist",
    notes: "Lint warns when no health check of the new target runs upstream. Credentials come from the AWS \
            default chain (environment, profile, SSO, instance role); `endpoint` or `AWS_ENDPOINT_URL_ROUTE_53` \
            points the API elsewhere. Changes the zone already holds are left out of the batch, so a re-run \
            (resume after a crash) submits nothing twice; a CREATE of a record set that exists with exactly these \
            values counts as done. A DELETE needs only name, type and set identifier: the live record set is \
            deleted as listed (given `values` must match it). Throttling and `PriorRequestNotComplete` are \
            retried with backoff.",
    example: "- id: fail-over-dns\n  kind: route53.change\n  with:\n    zone: example.com.\n    changes:\n      - { action: UPSERT, name: api.example.com., type: CNAME, ttl: 60, values: [api.eu-west-2.example.com.] }\n",
    role: super::Role::DnsSwitch,
    describe_undo: Some(|_| "restore the previous DNS records (and health checks)".to_owned()),
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<Route53ChangeOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `route53.change` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(preflight(&super::parameters(with)?).await) }),
    undo: Some(|with, outputs, context| Box::pin(async move { undo(super::parameters(with)?, outputs, context).await })),
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

/// How many times a batch is re-read and re-submitted after its answer was lost.
const UNCONFIRMED_ROUNDS: u32 = 3;
/// Preflight gives the API this long, retries included.
const PREFLIGHT_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// Changes the record sets and health checks, with credentials from the default chain.
///
/// # Errors
/// See [`Route53Error`]; the message says which record set or call and what to do.
pub async fn run(parameters: Parameters, context: &StepContext) -> Result<Route53ChangeOutputs, StepError> {
    let client = connect(parameters.endpoint.as_deref(), parameters.region.as_deref()).await;
    run_with(&client, parameters, context).await
}

/// [`run`] with a client of the caller's.
///
/// # Errors
/// See [`run`].
pub async fn run_with(
    client: &aws_sdk_route53::Client,
    parameters: Parameters,
    context: &StepContext,
) -> Result<Route53ChangeOutputs, StepError> {
    change(client, &parameters, context).await.map_err(|error| failed(&error, context))
}

/// Puts back the record sets and health checks recorded in the outputs.
///
/// # Errors
/// The outputs lack `previous`, or Route53 refused the restore.
pub async fn undo(
    parameters: Parameters,
    outputs: &super::Outputs,
    context: &StepContext,
) -> Result<(), StepError> {
    let client = connect(parameters.endpoint.as_deref(), parameters.region.as_deref()).await;
    undo_with(&client, parameters, outputs, context).await
}

/// [`undo`] with a client of the caller's.
///
/// # Errors
/// See [`undo`].
pub async fn undo_with(
    client: &aws_sdk_route53::Client,
    parameters: Parameters,
    outputs: &super::Outputs,
    context: &StepContext,
) -> Result<(), StepError> {
    restore(client, &parameters, outputs, context).await.map_err(|error| failed(&error, context))
}

/// Checks, without changing anything, that the zone, the record sets to delete and the
/// health checks exist, and that no CREATE collides with a different record set.
pub async fn preflight(parameters: &Parameters) -> Preflight {
    let client = connect(parameters.endpoint.as_deref(), parameters.region.as_deref()).await;
    preflight_with(&client, parameters).await
}

/// [`preflight`] with a client of the caller's.
pub async fn preflight_with(client: &aws_sdk_route53::Client, parameters: &Parameters) -> Preflight {
    check(client, parameters).await.into()
}

fn failed(error: &Route53Error, context: &StepContext) -> StepError {
    StepError::Failed(context.redactor.redact(&error.to_string()))
}

async fn change(
    client: &aws_sdk_route53::Client,
    parameters: &Parameters,
    context: &StepContext,
) -> Result<Route53ChangeOutputs, Route53Error> {
    let session =
        Session { client, deadline: Instant::now() + parameters.deadline.get(), progress: &context.progress };
    validate(parameters)?;
    let mut live = read_live_state(&session, parameters).await?;
    let mut checkpoint = load_or_record_checkpoint(parameters, &live, context)?;
    submit_missing_changes(&session, parameters, &mut live, &mut checkpoint, context).await?;
    update_health_checks(&session, parameters, &live.health_checks).await?;

    if parameters.wait
        && let Some(change_id) = &checkpoint.change_id
    {
        session.wait_insync(change_id, parameters.deadline.get()).await?;
    }

    Ok(Route53ChangeOutputs {
        change_id: checkpoint.change_id,
        previous: checkpoint.previous,
        previous_health_checks: checkpoint.previous_health_checks,
        zone_id: live.zone.id,
    })
}

/// What the zone holds, for the record sets and health checks a change touches.
struct LiveState {
    zone: Zone,
    /// The record sets the changes touch, each once, in the order of the plan.
    keys: Vec<RecordKey>,
    /// What the zone holds for each of `keys` (`None`: no such record set).
    records: Vec<Option<RecordSnapshot>>,
    /// The health checks to update, as they are, in the order of the plan.
    health_checks: Vec<PreviousHealthCheck>,
}

/// Finds the zone, checks every name belongs to it, and reads the record sets and
/// health checks the change touches.
async fn read_live_state(session: &Session<'_>, parameters: &Parameters) -> Result<LiveState, Route53Error> {
    let zone = session.zone(&parameters.zone).await?;
    check_names_in_zone(parameters, &zone)?;
    let keys = distinct_keys(parameters);
    let records = read_records(session, &zone, &keys).await?;
    let mut health_checks = Vec::new();
    for update in &parameters.health_checks {
        health_checks.push(session.health_check(&update.id).await?);
    }
    Ok(LiveState { zone, keys, records, health_checks })
}

/// The checkpoint of an earlier attempt of the same request, or a new one recording the
/// live state, saved before anything changes.
fn load_or_record_checkpoint(
    parameters: &Parameters,
    live: &LiveState,
    context: &StepContext,
) -> Result<checkpoint::Checkpoint, Route53Error> {
    let fingerprint = checkpoint::fingerprint(&request_of(parameters, &live.zone));
    if let Some(saved) = checkpoint::load(context, &fingerprint)? {
        context.progress.note("an earlier attempt recorded the record sets before its change: using those");
        return Ok(saved);
    }
    let fresh = checkpoint::Checkpoint {
        fingerprint,
        zone_id: live.zone.id.clone(),
        previous: live
            .keys
            .iter()
            .zip(&live.records)
            .map(|(key, record)| PreviousRecord {
                name: key.name.clone(),
                record_type: key.record_type.clone(),
                set_identifier: key.set_identifier.clone(),
                record: record.clone(),
            })
            .collect(),
        previous_health_checks: live.health_checks.clone(),
        change_id: None,
    };
    // Recorded before anything changes: whatever happens next, undo knows the old state.
    checkpoint::save(context, &fresh)?;
    Ok(fresh)
}

/// Submits the batch the zone still needs to reach what the plan asks from the recorded
/// state, and records its change id. A lost answer is followed by reading the zone again,
/// so a batch that was applied is not sent twice.
async fn submit_missing_changes(
    session: &Session<'_>,
    parameters: &Parameters,
    live: &mut LiveState,
    checkpoint: &mut checkpoint::Checkpoint,
    context: &StepContext,
) -> Result<(), Route53Error> {
    let before: Vec<Option<RecordSnapshot>> = live
        .keys
        .iter()
        .map(|key| {
            checkpoint
                .previous
                .iter()
                .find(|previous| previous.key().same_as(key))
                .and_then(|found| found.record.clone())
        })
        .collect();
    let wanted = final_state(parameters, &live.keys, &before)?;
    let comment = format!("dr-plan run {} step {}", context.run_id, context.step_id);
    let mut rounds = 0;
    loop {
        if holds(&live.records, &wanted) {
            if rounds > 0 {
                context.progress.note(
                    "the zone holds every change now: the batch whose answer was lost was applied (its change \
                     id is unknown, so there is no INSYNC to wait for)",
                );
            } else if checkpoint.change_id.is_none() {
                context.progress.note("the zone already holds every change: nothing submitted");
            }
            return Ok(());
        }
        let batch = batch_from(parameters, &live.keys, &live.records)?;
        match session.submit(&live.zone, batch, &comment).await {
            Ok(change_id) => {
                checkpoint.change_id = Some(change_id);
                checkpoint::save(context, checkpoint)?;
                return Ok(());
            }
            Err(Route53Error::Unconfirmed { detail, .. }) if rounds < UNCONFIRMED_ROUNDS => {
                // The batch may have been applied: read the zone again rather than
                // sending a CREATE or DELETE twice.
                rounds += 1;
                context
                    .progress
                    .note(format!("the answer to the change was lost ({detail}); reading the zone again"));
                live.records = read_records(session, &live.zone, &live.keys).await?;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Updates the health checks whose `inverted` or `disabled` differs from what is asked.
async fn update_health_checks(
    session: &Session<'_>,
    parameters: &Parameters,
    live_checks: &[PreviousHealthCheck],
) -> Result<(), Route53Error> {
    for (update, current) in parameters.health_checks.iter().zip(live_checks) {
        let inverted = update.inverted.filter(|&inverted| inverted != current.inverted);
        let disabled = update.disabled.filter(|&disabled| disabled != current.disabled);
        if inverted.is_some() || disabled.is_some() {
            session.update_health_check(&update.id, inverted, disabled).await?;
        }
    }
    Ok(())
}

async fn restore(
    client: &aws_sdk_route53::Client,
    parameters: &Parameters,
    outputs: &super::Outputs,
    context: &StepContext,
) -> Result<(), Route53Error> {
    let session =
        Session { client, deadline: Instant::now() + parameters.deadline.get(), progress: &context.progress };
    let previous: Vec<PreviousRecord> = from_output(outputs, "previous")?;
    let previous_checks: Vec<PreviousHealthCheck> =
        from_output(outputs, "previous_health_checks").unwrap_or_default();
    let zone = match outputs.get("zone_id").and_then(Json::as_str) {
        Some(id) => session.zone(id).await?,
        None => session.zone(&parameters.zone).await?,
    };

    // The reverse of the run's order: health checks first, then the record sets.
    for check in &previous_checks {
        let current = session.health_check(&check.id).await?;
        let inverted = (current.inverted != check.inverted).then_some(check.inverted);
        let disabled = (current.disabled != check.disabled).then_some(check.disabled);
        if inverted.is_some() || disabled.is_some() {
            session.update_health_check(&check.id, inverted, disabled).await?;
        }
    }

    let keys: Vec<RecordKey> = previous.iter().map(PreviousRecord::key).collect();
    let wanted: Vec<Option<RecordSnapshot>> = previous.iter().map(|entry| entry.record.clone()).collect();
    let comment = format!("dr-plan run {} undo of step {}", context.run_id, context.step_id);
    let mut rounds = 0;
    loop {
        let live = read_records(&session, &zone, &keys).await?;
        if holds(&live, &wanted) {
            context.progress.note("the zone holds the previous record sets already");
            return Ok(());
        }
        let mut batch = Vec::new();
        for ((current, before), key) in live.iter().zip(&wanted).zip(&keys) {
            match (before, current) {
                (None, None) => {}
                (None, Some(created)) => batch.push(created.to_change(ChangeAction::Delete)?),
                (Some(before), Some(current)) if before.same_content(current) => {}
                (Some(before), _) => {
                    if !before.key().same_as(key) {
                        return Err(Route53Error::Undo(format!(
                            "`previous` holds {} under {key}",
                            before.key()
                        )));
                    }
                    batch.push(before.to_change(ChangeAction::Upsert)?);
                }
            }
        }
        match session.submit(&zone, batch, &comment).await {
            Ok(change_id) => {
                if parameters.wait {
                    session.wait_insync(&change_id, parameters.deadline.get()).await?;
                }
                return Ok(());
            }
            Err(Route53Error::Unconfirmed { .. }) if rounds < UNCONFIRMED_ROUNDS => rounds += 1,
            Err(error) => return Err(error),
        }
    }
}

async fn check(client: &aws_sdk_route53::Client, parameters: &Parameters) -> Result<String, Route53Error> {
    let progress = ProgressSink::default();
    let session = Session { client, deadline: Instant::now() + PREFLIGHT_BUDGET, progress: &progress };
    validate(parameters)?;
    let zone = session.zone(&parameters.zone).await?;
    check_names_in_zone(parameters, &zone)?;
    let keys = distinct_keys(parameters);
    let live = read_records(&session, &zone, &keys).await?;
    for change in &parameters.changes {
        if change.action == ChangeAction::Delete {
            let key = change_key(change);
            let index = keys.iter().position(|candidate| candidate.same_as(&key)).unwrap_or_default();
            if live.get(index).is_none_or(Option::is_none) {
                return Err(Route53Error::InvalidChange {
                    change: describe_change(change),
                    problem: format!(
                        "zone {} has no such record set; check the name, type and set identifier",
                        zone.name
                    ),
                });
            }
        }
    }
    // The same checks the run makes before submitting (CREATE collisions, DELETE values).
    batch_from(parameters, &keys, &live)?;
    for update in &parameters.health_checks {
        session.health_check(&update.id).await?;
    }
    Ok(format!(
        "zone {} ({}) found; {} record set(s) read, those to delete exist; {} health check(s) found",
        zone.name,
        zone.id,
        keys.len(),
        parameters.health_checks.len()
    ))
}

/// Refuses, before any call, what Route53 would refuse or what could not be undone.
fn validate(parameters: &Parameters) -> Result<(), Route53Error> {
    if parameters.changes.is_empty() && parameters.health_checks.is_empty() {
        return Err(Route53Error::InvalidChange {
            change: format!("zone {}", parameters.zone),
            problem: "no `changes` and no `health_checks`: there is nothing to do".to_owned(),
        });
    }
    for change in &parameters.changes {
        if change.action != ChangeAction::Delete {
            RecordSnapshot::desired(change)?;
        }
    }
    for update in &parameters.health_checks {
        if update.inverted.is_none() && update.disabled.is_none() {
            return Err(Route53Error::InvalidChange {
                change: format!("health check {}", update.id),
                problem: "set `inverted` or `disabled`".to_owned(),
            });
        }
    }
    Ok(())
}

fn check_names_in_zone(parameters: &Parameters, zone: &Zone) -> Result<(), Route53Error> {
    for change in &parameters.changes {
        if !zone.name.is_empty() && !in_zone(&change.name, &zone.name) {
            return Err(Route53Error::InvalidChange {
                change: describe_change(change),
                problem: format!("{} is not in zone {} ({})", change.name, zone.name, zone.id),
            });
        }
    }
    Ok(())
}

/// The record sets the changes touch, each once, in the order of the plan.
fn distinct_keys(parameters: &Parameters) -> Vec<RecordKey> {
    let mut keys: Vec<RecordKey> = Vec::new();
    for key in parameters.changes.iter().map(change_key) {
        if !keys.iter().any(|known| known.same_as(&key)) {
            keys.push(key);
        }
    }
    keys
}

async fn read_records(
    session: &Session<'_>,
    zone: &Zone,
    keys: &[RecordKey],
) -> Result<Vec<Option<RecordSnapshot>>, Route53Error> {
    let mut records = Vec::with_capacity(keys.len());
    for key in keys {
        records.push(session.record(zone, key).await?);
    }
    Ok(records)
}

fn index_of(keys: &[RecordKey], change: &RecordChange) -> usize {
    let key = change_key(change);
    keys.iter().position(|candidate| candidate.same_as(&key)).unwrap_or_default()
}

/// The record sets as they will be once the batch applied to `before`.
fn final_state(
    parameters: &Parameters,
    keys: &[RecordKey],
    before: &[Option<RecordSnapshot>],
) -> Result<Vec<Option<RecordSnapshot>>, Route53Error> {
    let mut state = before.to_vec();
    for change in &parameters.changes {
        let index = index_of(keys, change);
        state[index] = match change.action {
            ChangeAction::Upsert | ChangeAction::Create => Some(RecordSnapshot::desired(change)?),
            ChangeAction::Delete => None,
        };
    }
    Ok(state)
}

/// Whether the zone holds exactly `wanted` for every key.
fn holds(live: &[Option<RecordSnapshot>], wanted: &[Option<RecordSnapshot>]) -> bool {
    live.iter().zip(wanted).all(|(live, wanted)| match (live, wanted) {
        (None, None) => true,
        (Some(live), Some(wanted)) => live.same_content(wanted),
        _ => false,
    })
}

/// The batch that takes the zone from `live` to what the plan asks, leaving out what it
/// holds already. DELETEs send the record set as listed (Route53 wants it exact).
fn batch_from(
    parameters: &Parameters,
    keys: &[RecordKey],
    live: &[Option<RecordSnapshot>],
) -> Result<Vec<aws_sdk_route53::types::Change>, Route53Error> {
    let mut state = live.to_vec();
    let mut batch = Vec::new();
    for change in &parameters.changes {
        let index = index_of(keys, change);
        let invalid =
            |problem: String| Route53Error::InvalidChange { change: describe_change(change), problem };
        match change.action {
            ChangeAction::Upsert => {
                let desired = RecordSnapshot::desired(change)?;
                batch.push(desired.to_change(ChangeAction::Upsert)?);
                state[index] = Some(desired);
            }
            ChangeAction::Create => {
                let desired = RecordSnapshot::desired(change)?;
                match &state[index] {
                    Some(existing) if existing.same_content(&desired) => {}
                    Some(existing) => {
                        return Err(invalid(format!(
                            "a record set already exists with other content ({}); use UPSERT to replace it",
                            summary(existing)
                        )));
                    }
                    None => batch.push(desired.to_change(ChangeAction::Create)?),
                }
                state[index] = Some(desired);
            }
            ChangeAction::Delete => {
                if let Some(existing) = &state[index] {
                    let values_differ = !change.values.is_empty() && {
                        let mut given = change.values.clone();
                        let mut listed = existing.values.clone();
                        given.sort();
                        listed.sort();
                        given != listed
                    };
                    let ttl_differs = change.ttl.is_some_and(|ttl| existing.ttl != Some(i64::from(ttl)));
                    if values_differ || ttl_differs {
                        return Err(invalid(format!(
                            "the live record set differs from the one given ({}); fix `values`/`ttl` or leave them \
                             out to delete whatever it holds",
                            summary(existing)
                        )));
                    }
                    batch.push(existing.to_change(ChangeAction::Delete)?);
                }
                state[index] = None;
            }
        }
    }
    Ok(batch)
}

fn summary(record: &RecordSnapshot) -> String {
    match &record.alias {
        Some(alias) => format!("alias to {}", alias.dns_name),
        None => format!(
            "ttl {}, values [{}]",
            record.ttl.map_or_else(|| "none".to_owned(), |ttl| ttl.to_string()),
            record.values.join(", ")
        ),
    }
}

/// What identifies the request for the checkpoint: the zone and everything asked.
fn request_of(parameters: &Parameters, zone: &Zone) -> Json {
    let changes: Vec<Json> = parameters
        .changes
        .iter()
        .map(|change| {
            serde_json::json!({
                "change": describe_change(change),
                "ttl": change.ttl,
                "values": change.values,
                "failover": change.failover.map(|failover| format!("{failover:?}")),
                "health_check_id": change.health_check_id,
            })
        })
        .collect();
    let health_checks: Vec<Json> = parameters
        .health_checks
        .iter()
        .map(|update| serde_json::json!([update.id, update.inverted, update.disabled]))
        .collect();
    serde_json::json!({ "zone": zone.id, "changes": changes, "health_checks": health_checks })
}

fn from_output<Value: serde::de::DeserializeOwned>(
    outputs: &super::Outputs,
    name: &str,
) -> Result<Value, Route53Error> {
    let value =
        outputs.get(name).ok_or_else(|| Route53Error::Undo(format!("the step has no `{name}` output")))?;
    serde_json::from_value(value.clone()).map_err(|error| {
        Route53Error::Undo(format!("the `{name}` output is not what route53.change records: {error}"))
    })
}
