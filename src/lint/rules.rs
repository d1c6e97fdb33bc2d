//! The DR-safety rules. Each reads the [`Facts`] of a validated plan and pushes
//! warnings labelled on the exact text, with a help line saying what to do.

use std::collections::BTreeSet;

use super::Rule;
use super::facts::{Facts, Provenance};
use crate::lang::diagnostic::Diagnostic;
use crate::lang::duration::format_duration;
use crate::lang::kind::{Role, StepKind, Verifies};
use crate::lang::node::Value;
use crate::lang::plan::Plan;
use crate::preview::history::History;
use crate::preview::predict::Prediction;

/// Runs every rule.
pub(super) fn check(plan: &Plan) -> Vec<Diagnostic> {
    let facts = Facts::new(plan);
    let mut found = Vec::new();
    unverified_input(&facts, &mut found);
    restore_without_safety_backup(&facts, &mut found);
    objectives(&facts, &mut found);
    super::secrets::literal_secrets(&facts, &mut found);
    dns_without_health_check(&facts, &mut found);
    health_check_disabled(&facts, &mut found);
    unused(&facts, &mut found);
    no_verification(&facts, &mut found);
    checksum_disabled(&facts, &mut found);
    undo_command_ignored(&facts, &mut found);
    swap_without_check(&facts, &mut found);
    super::shell::template_in_shell_script(&facts, &mut found);
    found
}

/// DRP001: a destructive step reads data from an unverified download, or a restore
/// restores a file that no step of the plan verified.
fn unverified_input(facts: &Facts<'_>, found: &mut Vec<Diagnostic>) {
    for index in 0..facts.plan.steps.len() {
        if !facts.is_destructive(index) {
            continue;
        }
        let id = facts.id(index);
        let mut reported_origins = BTreeSet::new();
        for reference in facts.uses[index].iter().filter(|reference| reference.parameter.is_some()) {
            let Some(source) = facts.step_read(reference) else { continue };
            let Provenance::Unverified { origin } = facts.provenance[source] else { continue };
            if !reported_origins.insert(origin) {
                continue;
            }
            let origin_id = facts.id(origin);
            let label = if source == origin {
                format!("`{origin_id}` downloaded this without checking its checksum")
            } else {
                format!(
                    "`{}` made this from `{origin_id}`, downloaded without checking its checksum",
                    facts.id(source)
                )
            };
            let mut diagnostic = facts
                .warning(
                    Rule::UnverifiedInput,
                    reference.span,
                    format!("destructive step `{id}` uses data from `{origin_id}`, whose checksum is never verified"),
                )
                .with_label(label)
                .with_help(format!(
                    "set `checksum: sidecar` (or `meta`) on `{origin_id}`, so a truncated or corrupt backup fails the \
                     fetch instead of reaching `{id}`"
                ));
            if let Some(checksum) = facts.disabled_checksum(origin) {
                diagnostic = diagnostic.with_secondary(checksum.span, "verification turned off here");
            }
            found.push(diagnostic);
        }
        streamed_unverified(facts, index, found);
        let Some(parameter) = restored_file_parameter(facts.kind(index)) else { continue };
        let Some(file_node) = facts.parameter(index, parameter) else { continue };
        let sources: Vec<Provenance> = facts.uses[index]
            .iter()
            .filter(|reference| reference.parameter.as_deref() == Some(parameter))
            .filter_map(|reference| facts.step_read(reference))
            .map(|source| facts.provenance[source])
            .collect();
        let vouched = sources
            .iter()
            .any(|source| matches!(source, Provenance::Verified | Provenance::Unverified { .. }));
        if vouched {
            continue;
        }
        let kind = facts.kind(index).name();
        found.push(
            facts
                .warning(
                    Rule::UnverifiedInput,
                    file_node.span,
                    format!("{kind} step `{id}` restores a file that no step of this plan verified"),
                )
                .with_label("nothing checks this file before it is restored")
                .with_help(format!(
                    "fetch it with an `s3.fetch` step that checks its checksum and write \
                     `{parameter}: \"{{{{steps.FETCH.outputs.path}}}}\"`, or make it with `pg.dump` in this plan"
                )),
        );
    }
}

/// DRP001 for a restore that streams its data in: an object read with `checksum:
/// none`, or another server that no step of the plan made (a literal `connection`: the
/// plan says nothing of what that server holds).
fn streamed_unverified(facts: &Facts<'_>, index: usize, found: &mut Vec<Diagnostic>) {
    let id = facts.id(index);
    let kind = facts.kind(index).name();
    if let Some(parameter) = facts.kind(index).info().streamed_object
        && let Some(checksum) = facts.parameter(index, parameter).and_then(|source| source.get("checksum"))
        && facts.resolve(checksum) == Some(serde_json::Value::String("none".to_owned()))
    {
        found.push(
            facts
                .warning(
                    Rule::UnverifiedInput,
                    checksum.span,
                    format!("{kind} step `{id}` restores an object of `{parameter}` without checking its checksum"),
                )
                .with_label("verification turned off here")
                .with_help(format!(
                    "write `checksum: sidecar` (or `meta`) in `{parameter}`, so a truncated or corrupt backup fails \
                     the restore instead of being loaded"
                )),
        );
    }
    let Some(parameter) = facts.kind(index).info().streamed_server else { return };
    let Some(source) = facts.parameter(index, parameter) else { return };
    if source.value == Value::Null {
        return;
    }
    let made_by_the_plan = facts.uses[index]
        .iter()
        .filter(|reference| reference.parameter.as_deref() == Some(parameter))
        .any(|reference| facts.step_read(reference).is_some());
    if made_by_the_plan {
        return;
    }
    let span = source.get("connection").map_or(source.span, |connection| connection.span);
    found.push(
        facts
            .warning(
                Rule::UnverifiedInput,
                span,
                format!("{kind} step `{id}` restores from a server that no step of this plan made"),
            )
            .with_label("nothing in the plan vouches for what this server holds")
            .with_help(format!(
                "take `{parameter}.connection` from the step that recovers that server (e.g. \
                 `\"{{{{steps.PITR.outputs.connection}}}}\"`), so the plan knows what it holds"
            )),
    );
}

/// The parameter naming the file a restore kind puts in place.
fn restored_file_parameter(kind: StepKind) -> Option<&'static str> {
    match kind.info().role {
        Role::Restore { file, .. } => Some(file),
        Role::Backup { .. }
        | Role::Fetch { .. }
        | Role::HealthCheck
        | Role::DnsSwitch
        | Role::Approval
        | Role::Swap { .. }
        | Role::Other => None,
    }
}

/// DRP002: a restore that drops what its target holds (`pg.restore` with `clean`) and
/// no backup of that target (`pg.dump`) upstream.
fn restore_without_safety_backup(facts: &Facts<'_>, found: &mut Vec<Diagnostic>) {
    for index in 0..facts.plan.steps.len() {
        let kind = facts.kind(index);
        if let Role::Swap { target, keep_flag, .. } = kind.info().role {
            swap_without_safety_backup(facts, index, target, keep_flag, found);
            continue;
        }
        let Role::Restore { target: target_parameters, overwrite_flag: Some(flag), side, .. } =
            kind.info().role
        else {
            continue;
        };
        // A restore beside the target (`into: side`) overwrites nothing: the swap that
        // puts it in place is checked instead.
        if side.is_some_and(|(parameter, value)| {
            facts.parameter(index, parameter).and_then(|node| facts.resolve(node))
                == Some(serde_json::Value::String(value.to_owned()))
        }) {
            continue;
        }
        // `clean` drops what the target database holds (with `create`, the database
        // itself). `create` alone makes a new database and overwrites nothing.
        let Some(flag_node) = facts.parameter(index, flag).filter(|node| facts.resolves_true(Some(node)))
        else {
            continue;
        };
        let backs_up = |other: usize| matches!(facts.kind(other).info().role, Role::Backup { target } if target == target_parameters);
        let ancestors = facts.plan.ancestors(index);
        let dumps_of_target: Vec<usize> = (0..facts.plan.steps.len())
            .filter(|&other| backs_up(other) && same_target(facts, index, other, target_parameters))
            .collect();
        if dumps_of_target.iter().any(|dump| ancestors.contains(dump)) {
            continue;
        }
        let id = facts.id(index);
        let what = target_parameters.first().copied().unwrap_or("target");
        let value = facts.parameter(index, what).map_or_else(|| "?".to_owned(), |node| facts.display(node));
        let target = format!("{what} `{value}`");
        let label = "drops the existing objects first";
        let help = match dumps_of_target.first() {
            Some(&dump) => format!(
                "`{}` dumps {target} but does not run before `{id}`: add it to the `needs` of `{id}` (directly or \
                 through another step)",
                facts.id(dump)
            ),
            None => {
                let backup = facts.plan.spec.kinds.iter().find(|other| {
                    matches!(other.info().role, Role::Backup { target } if target == target_parameters)
                });
                format!(
                    "add a `{}` step of {target} and list it in the `needs` of `{id}`, so a bad restore can be \
                     undone",
                    backup.map_or("backup", |backup| backup.name())
                )
            }
        };
        found.push(
            facts
                .warning(
                    Rule::RestoreWithoutSafetyBackup,
                    flag_node.span,
                    format!("step `{id}` restores into {target} with `{flag}: true` and no safety backup before it"),
                )
                .with_label(label)
                .with_help(help),
        );
    }
}

/// DRP002 for a swap: the live database is replaced and, with its keep flag known to be
/// false, dropped, with no backup of it upstream. Kept (the default), the previous
/// database is the safety copy.
fn swap_without_safety_backup(
    facts: &Facts<'_>,
    index: usize,
    target_parameters: &'static [&'static str],
    keep_flag: &str,
    found: &mut Vec<Diagnostic>,
) {
    let Some(flag_node) = facts.parameter(index, keep_flag) else { return };
    if facts.resolve(flag_node) != Some(serde_json::Value::Bool(false)) {
        return;
    }
    let ancestors = facts.plan.ancestors(index);
    let backed_up = ancestors.iter().any(|&other| {
        matches!(facts.kind(other).info().role, Role::Backup { target } if target == target_parameters)
            && same_target(facts, index, other, target_parameters)
    });
    if backed_up {
        return;
    }
    let id = facts.id(index);
    let what = target_parameters.first().copied().unwrap_or("target");
    let value = facts.parameter(index, what).map_or_else(|| "?".to_owned(), |node| facts.display(node));
    found.push(
        facts
            .warning(
                Rule::RestoreWithoutSafetyBackup,
                flag_node.span,
                format!(
                    "step `{id}` replaces {what} `{value}` and drops it (`{keep_flag}: false`) with no safety backup \
                     before it"
                ),
            )
            .with_label("drops the replaced database")
            .with_help(format!(
                "remove `{keep_flag}: false` (the replaced database is then kept, and undo can swap it back), or \
                 back up {what} `{value}` in a step listed in the `needs` of `{id}`"
            )),
    );
}

/// DRP013: a swap puts a database in place that no verification step upstream read.
/// A verifier counts when it reads the same database (its parameter named like the
/// swap's target parameter has the replacement's value; unknown values are given the
/// benefit of the doubt, except a verifier known to read the live database).
fn swap_without_check(facts: &Facts<'_>, found: &mut Vec<Diagnostic>) {
    for index in 0..facts.plan.steps.len() {
        let Role::Swap { target, replacement, .. } = facts.kind(index).info().role else { continue };
        let Some(&parameter) = target.first() else { continue };
        let Some(replacement_node) = facts.parameter(index, replacement) else { continue };
        let wanted = facts.resolve(replacement_node);
        let live = facts.parameter(index, parameter).and_then(|node| facts.resolve(node));
        let reads_replacement = |other: usize| {
            if facts.kind(other).info().verifies != Verifies::Always {
                return false;
            }
            let Some(node) = facts.parameter(other, parameter) else { return false };
            let read = facts.resolve(node);
            match (&wanted, &read) {
                (Some(wanted), Some(read)) => wanted == read,
                (None, Some(read)) => Some(read) != live.as_ref(),
                (Some(_) | None, None) => true,
            }
        };
        if facts.plan.ancestors(index).iter().any(|&ancestor| reads_replacement(ancestor)) {
            continue;
        }
        let id = facts.id(index);
        let shown = match &wanted {
            Some(serde_json::Value::String(text)) => text.clone(),
            Some(_) | None => {
                replacement_node.as_str().map_or_else(|| facts.display(replacement_node), str::to_owned)
            }
        };
        let checker = facts.plan.spec.kinds.iter().find(|kind| {
            kind.info().verifies == Verifies::Always
                && kind.parameters_schema()["properties"].get(parameter).is_some()
        });
        found.push(
            facts
                .warning(
                    Rule::SwapWithoutCheck,
                    replacement_node.span,
                    format!("step `{id}` swaps in `{shown}` and no step before it checks that database"),
                )
                .with_label("put in place unchecked")
                .with_help(format!(
                    "add a `{}` step with `assert` on `{parameter}: {}` (row counts, a recent row) and list it in the \
                     `needs` of `{id}`, so a bad restore never takes the live name",
                    checker.map_or("verification", |kind| kind.name()),
                    facts.file.slice(replacement_node.span)
                )),
        );
    }
}

/// Whether a backup (at `backup`) covers what a restore (at `restore`) overwrites: the
/// same value for every target parameter. Values only known at run time are given the
/// benefit of the doubt.
fn same_target(facts: &Facts<'_>, restore: usize, backup: usize, target: &[&str]) -> bool {
    target.iter().all(|name| {
        let restore_value = facts.parameter(restore, name).and_then(|node| facts.resolve(node));
        let backup_value = facts.parameter(backup, name).and_then(|node| facts.resolve(node));
        match (restore_value, backup_value) {
            (Some(restore_value), Some(backup_value)) => restore_value == backup_value,
            (Some(_) | None, None) | (None, Some(_)) => true,
        }
    })
}

/// DRP003 and DRP004: the RTO is missing, or the critical path is longer.
fn objectives(facts: &Facts<'_>, found: &mut Vec<Diagnostic>) {
    let spec = &facts.plan.spec;
    let Some(rto) = &spec.objectives.rto else {
        let mut diagnostic = facts
            .warning(Rule::NoRto, spec.name.span, format!("plan `{}` has no recovery time objective", spec.name.value))
            .with_label("no `objectives.rto` for this plan")
            .with_help(
                "add `objectives: { rto: 30m }` (how long the service may be down): dry-runs predict against it and \
                 drills measure it",
            );
        if let Some(span) = spec.objectives.span {
            diagnostic = diagnostic.with_secondary(span, "no `rto` here");
        }
        found.push(diagnostic);
        return;
    };
    let prediction = Prediction::new(facts.plan, &History::default(), &[]);
    if prediction.total <= rto.value.get() {
        return;
    }
    let path: Vec<String> = prediction
        .critical_path
        .iter()
        .map(|&index| format!("{} ({})", facts.id(index), format_duration(prediction.durations[index].0)))
        .collect();
    let mut help = format!(
        "critical path: {}; shorten these steps, let more of them run in parallel (fewer `needs`), or revisit the \
         objective",
        path.join(" → ")
    );
    let unestimated = prediction.unestimated();
    if unestimated > 0 {
        help.push_str(&format!(
            "; {unestimated} step{} without `estimate:` counted as 0",
            if unestimated == 1 { "" } else { "s" }
        ));
    }
    found.push(
        facts
            .warning(
                Rule::RtoExceeded,
                rto.span,
                format!(
                    "the predicted recovery time {} exceeds the RTO of {}",
                    format_duration(prediction.total),
                    rto.value
                ),
            )
            .with_label(format!("the critical path takes {}", format_duration(prediction.total)))
            .with_help(help),
    );
}

/// DRP006: a DNS change with no health check of the new target upstream.
fn dns_without_health_check(facts: &Facts<'_>, found: &mut Vec<Diagnostic>) {
    let is_check = |index: usize| facts.kind(index).info().role == Role::HealthCheck;
    for index in 0..facts.plan.steps.len() {
        if facts.kind(index).info().role != Role::DnsSwitch {
            continue;
        }
        let ancestors = facts.plan.ancestors(index);
        if ancestors.iter().any(|&ancestor| is_check(ancestor)) {
            continue;
        }
        let id = facts.id(index);
        let help = match (0..facts.plan.steps.len()).find(|&other| is_check(other)) {
            Some(check) => format!(
                "`{}` checks a target but does not run before `{id}`: add it to the `needs` of `{id}`",
                facts.id(check)
            ),
            None => format!(
                "add an `http.check` of the new target (or a `k8s.wait` for its rollout) and list it in the \
                 `needs` of `{id}`, so traffic moves only to a target that answers"
            ),
        };
        found.push(
            facts
                .warning(
                    Rule::DnsWithoutHealthCheck,
                    facts.id_span(index),
                    format!("step `{id}` switches DNS with no health check of the new target before it"),
                )
                .with_label("moves traffic without knowing the target is up")
                .with_help(help),
        );
    }
}

/// DRP007: a health check `disabled` (healthy to Route53) where `inverted` is meant.
fn health_check_disabled(facts: &Facts<'_>, found: &mut Vec<Diagnostic>) {
    for index in 0..facts.plan.steps.len() {
        if facts.kind(index).info().role != Role::DnsSwitch {
            continue;
        }
        let Some(Value::List(checks)) = facts.parameter(index, "health_checks").map(|node| &node.value)
        else {
            continue;
        };
        for check in checks {
            let Some(disabled) = check.get("disabled") else { continue };
            if !facts.resolves_true(Some(disabled)) || facts.resolves_true(check.get("inverted")) {
                continue;
            }
            let check_id = check.get("id").map_or_else(|| "?".to_owned(), |node| facts.display(node));
            found.push(
                facts
                    .warning(
                        Rule::HealthCheckDisabled,
                        disabled.span,
                        format!(
                            "step `{}` disables health check `{check_id}`, which Route53 then treats as healthy: \
                             this does not fail over",
                            facts.id(index)
                        ),
                    )
                    .with_label("a disabled check counts as healthy")
                    .with_help(
                        "to force a failover write `inverted: true` (Route53 then reports the check unhealthy); \
                         `disabled: true` alone keeps traffic on the failing target",
                    ),
            );
        }
    }
}

/// DRP008: vars, inputs and secrets that no template reads.
fn unused(facts: &Facts<'_>, found: &mut Vec<Diagnostic>) {
    let used: BTreeSet<(&str, &str)> = facts
        .uses
        .iter()
        .flatten()
        .filter_map(|reference| match reference.path.as_slice() {
            [root, name, ..] => Some((root.as_str(), name.as_str())),
            _ => None,
        })
        .collect();
    let spec = &facts.plan.spec;
    let sections = [
        (
            "vars",
            "var",
            "it only makes readers wonder where it is used",
            spec.vars.entries.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        ),
        (
            "inputs",
            "input",
            "operators would be asked for a value that changes nothing",
            spec.inputs.entries.iter().map(|(name, _)| name).collect(),
        ),
        (
            "secrets",
            "secret",
            "a run would still have to read it from its source",
            spec.secrets.entries.iter().map(|(name, _)| name).collect(),
        ),
    ];
    for (section, singular, why, names) in sections {
        for name in names {
            if used.contains(&(section, name.value.as_str())) {
                continue;
            }
            found.push(
                facts
                    .warning(Rule::Unused, name.span, format!("{singular} `{}` is never used", name.value))
                    .with_label("no template reads this")
                    .with_help(format!(
                        "remove it ({why}), or use it in a step as `{{{{{section}.{}}}}}`",
                        name.value
                    )),
            );
        }
    }
}

/// DRP009: destructive steps, and nothing that checks the recovery worked.
fn no_verification(facts: &Facts<'_>, found: &mut Vec<Diagnostic>) {
    let count = facts.plan.steps.len();
    let verifies = |index: usize| match facts.kind(index).info().verifies {
        Verifies::Always => true,
        Verifies::WhenSet(parameter) => {
            facts.parameter(index, parameter).is_some_and(|node| node.value != Value::Null)
        }
        Verifies::Never => false,
    };
    let destructive: Vec<usize> = (0..count).filter(|&index| facts.is_destructive(index)).collect();
    if destructive.is_empty() || (0..count).any(verifies) {
        return;
    }
    let spec = &facts.plan.spec;
    let mut diagnostic = facts
        .warning(
            Rule::NoVerification,
            spec.name.span,
            format!(
                "plan `{}` has {} destructive step{} but never checks that the recovery worked",
                spec.name.value,
                destructive.len(),
                if destructive.len() == 1 { "" } else { "s" }
            ),
        )
        .with_label("no step verifies the result")
        .with_help(
            "add a verification step after the destructive ones: `pg.query` with `assert`, `http.check` of the \
             service, `k8s.wait` for a rollout, or `expect_keys` on `redis.restore`",
        );
    for index in destructive {
        diagnostic = diagnostic.with_secondary(facts.id_span(index), "destructive");
    }
    found.push(diagnostic);
}

/// DRP010: `s3.fetch` with `checksum: none`.
fn checksum_disabled(facts: &Facts<'_>, found: &mut Vec<Diagnostic>) {
    for index in 0..facts.plan.steps.len() {
        let Some(checksum) = facts.disabled_checksum(index) else { continue };
        found.push(
            facts
                .warning(
                    Rule::ChecksumDisabled,
                    checksum.span,
                    format!("step `{}` downloads without checking the object's SHA-256", facts.id(index)),
                )
                .with_label("checksum verification turned off")
                .with_help(
                    "write `checksum: sidecar` (the `<key>.sha256` that `s3.put` and the backup scripts write) or \
                     `checksum: meta` (the sha256 in `<key>.meta`)",
                ),
        );
    }
}

/// DRP011: an `exec` step with a `with.undo` command and no `undo: true`. The author
/// wrote a compensation, and the run will never call it: an abort leaves this step's
/// change in place while the operator believes it was reverted.
fn undo_command_ignored(facts: &Facts<'_>, found: &mut Vec<Diagnostic>) {
    for (index, step) in facts.plan.steps.iter().enumerate() {
        let Some(parameter) = step.kind.info().undo_parameter.filter(|_| !step.undo) else {
            continue;
        };
        let Some(command) = facts.parameter(index, parameter).filter(|node| node.value != Value::Null) else {
            continue;
        };
        let id = facts.id(index);
        let mut diagnostic = facts
            .warning(
                Rule::UndoCommandIgnored,
                command.span,
                format!("step `{id}` has an undo command that never runs: the step has no `undo: true`"),
            )
            .with_label("never run")
            .with_help(format!(
                "add `undo: true` to `{id}` so an aborted run compensates it, or delete `with.undo`"
            ));
        if let Some(flag) = &facts.plan.spec_of(step).undo {
            diagnostic = diagnostic.with_secondary(flag.span, "undo turned off here");
        }
        found.push(diagnostic);
    }
}

/// DRP014: the state bucket names the region the plan fails away from — a var named
/// like `primary_region` (`primary`, `source`, `failed`, `from`, `active` in its name)
/// whose value is an AWS region that appears in the bucket or prefix of `state_dir`.
/// When that region is down, so is the record of the run that recovers from it.
pub(super) fn state_in_failure_domain(plan: &Plan, state_dir: &str) -> Vec<Diagnostic> {
    let Some(location) = state_dir.strip_prefix("s3://") else { return Vec::new() };
    let facts = Facts::new(plan);
    let mut found = Vec::new();
    for (name, value) in &plan.spec.vars.entries {
        let lowered = name.value.to_ascii_lowercase();
        if !["primary", "source", "failed", "from", "active"].iter().any(|word| lowered.contains(word)) {
            continue;
        }
        let Some(region) = value.0.to_json().as_str().map(str::to_owned) else { continue };
        if !is_region(&region) || !location.contains(&region) {
            continue;
        }
        found.push(
            facts
                .warning(
                    Rule::StateInFailureDomain,
                    value.0.span,
                    format!(
                        "the state of this plan's runs is kept in {state_dir}, in {region}: the region it fails \
                         away from (`vars.{}`)",
                        name.value
                    ),
                )
                .with_label("the region being recovered from")
                .with_help(
                    "keep the state in a bucket of another region (e.g. the recovery region's), or run this plan \
                     with a local `--state-dir DIR` while the region is down",
                ),
        );
    }
    found
}

/// `eu-west-1`, `us-gov-west-1`, `ap-southeast-2`: letters, dash-separated words, a number.
fn is_region(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|byte| byte.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}
