//! What a resume must decide before it may go on, worked out from the journal and the
//! plan before anything is written, so the operator hears every decision at once and
//! gets one command that makes them all; and the commands printed as `next:` hints,
//! complete enough to be pasted as they are.

use crate::state::StateDir;
use std::collections::{BTreeMap, BTreeSet};

use super::journal::{RunState, StepState};
use crate::lang::plan::{Plan, Step};

pub use crate::state::DEFAULT_STATE_DIR;

/// `dr-plan ARGS... [--state-dir DIR]`, quoted for a POSIX shell: pasted as printed, it
/// works. The state directory is named whenever it is not the default.
#[must_use]
pub fn command(arguments: &[String], state_dir: &StateDir) -> String {
    let mut words = vec!["dr-plan".to_owned()];
    words.extend(arguments.iter().map(|argument| shell_quote(argument)));
    if !state_dir.is_default() {
        // Absolute, so the command works from any directory (a second operator's shell).
        words.push("--state-dir".to_owned());
        words.push(shell_quote(&state_dir.argument()));
    }
    words.join(" ")
}

/// `dr-plan resume RUN FLAGS... [--state-dir DIR]`.
#[must_use]
pub fn resume_command(run_id: &str, flags: &[String], state_dir: &StateDir) -> String {
    let mut arguments = vec!["resume".to_owned(), run_id.to_owned()];
    arguments.extend(flags.iter().cloned());
    command(&arguments, state_dir)
}

/// A word as a POSIX shell reads it back: bare when it is plainly safe, else in single
/// quotes.
#[must_use]
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "-_./=:@,+%".contains(character));
    if plain { word.to_owned() } else { format!("'{}'", word.replace('\'', "'\\''")) }
}

/// One decision the operator must make, and the flag that makes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What is the matter, and what the flag will do.
    pub why: String,
    /// The flag (and its value) that decides it.
    pub flags: Vec<String>,
}

/// How a resume takes the run up, or what it needs first.
#[derive(Debug, Default)]
pub struct ResumePlan {
    /// The state each step resumes in, by plan index.
    pub states: Vec<StepState>,
    /// Steps that will run again although they had started or finished.
    pub rerun: Vec<String>,
    /// Decisions still to make.
    pub decisions: Vec<Decision>,
    /// Requests that cannot be honoured (exit 2).
    pub refusals: Vec<String>,
    /// What this resume does by itself that the operator should hear.
    pub notes: Vec<String>,
}

/// What the operator asked of this resume.
#[derive(Clone, Debug, Default)]
pub struct ResumeRequest {
    /// `--rerun-interrupted`
    pub rerun_interrupted: bool,
    /// `--rerun STEP`
    pub rerun: Vec<String>,
    /// `--mark-done STEP`
    pub mark_done: Vec<String>,
    /// Names given with `--var`/`--vars-file`.
    pub overridden: Vec<String>,
}

/// Every `inputs.*`, `vars.*` and `steps.*` path a step's templates read.
#[must_use]
pub fn references(step: &Step) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    collect_references(&step.with, &mut paths);
    if let Some(when) = &step.when {
        paths.extend(when.references().iter().map(|reference| reference.path.clone()));
    }
    paths
}

fn collect_references(node: &crate::lang::node::Node, out: &mut Vec<Vec<String>>) {
    match &node.value {
        crate::lang::node::Value::String(text) => {
            if let Ok(template) = crate::lang::template::Template::parse(text) {
                out.extend(template.references().iter().map(|reference| reference.path.clone()));
            }
        }
        crate::lang::node::Value::List(items) => items.iter().for_each(|item| collect_references(item, out)),
        crate::lang::node::Value::Map(entries) => {
            entries.iter().for_each(|entry| collect_references(&entry.value, out));
        }
        crate::lang::node::Value::Null
        | crate::lang::node::Value::Bool(_)
        | crate::lang::node::Value::Integer(_)
        | crate::lang::node::Value::Float(_) => {}
    }
}

/// `(producer, output)` pairs a step reads through `steps.<producer>.outputs.<output>`.
fn outputs_read(step: &Step) -> Vec<(String, String)> {
    references(step)
        .into_iter()
        .filter_map(|path| match path.as_slice() {
            [root, producer, outputs, output, ..] if root == "steps" && outputs == "outputs" => {
                Some((producer.clone(), output.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Checks that the journal tells the steps in an order the plan allows: a step started
/// only after every step it needs had finished. A journal that says otherwise was
/// damaged or written by hand, and resuming from it could run a step next to its
/// dependents.
///
/// # Errors
/// `LINE: what is wrong`, the line numbered in the journal file.
pub fn check_order(plan: &Plan, state: &RunState) -> Result<(), String> {
    let mut finished: BTreeSet<&str> = BTreeSet::new();
    for (line, record) in state.records.iter().enumerate() {
        match &record.event {
            super::journal::Event::StepStarted { step, .. } => {
                let Some(index) = plan.index_of(step) else {
                    return Err(format!("{}: step `{step}` is not in the plan", line + 1));
                };
                if let Some(&need) = plan.steps[index]
                    .needs
                    .iter()
                    .find(|&&need| !finished.contains(plan.steps[need].id.as_str()))
                {
                    return Err(format!(
                        "{}: step `{step}` started before `{}`, which it needs, had finished",
                        line + 1,
                        plan.steps[need].id
                    ));
                }
            }
            super::journal::Event::StepSucceeded { step, .. }
            | super::journal::Event::StepMarkedDone { step, .. } => {
                finished.insert(step);
            }
            _ => {}
        }
    }
    Ok(())
}

/// `` `--mark-done a --mark-done b --reason "..."` ``: one reason covers every step marked.
fn mark_done_flags(ids: &[String]) -> String {
    let marks: Vec<String> = ids.iter().map(|id| format!("--mark-done {id}")).collect();
    format!("`{} --reason \"...\"`", marks.join(" "))
}

/// Works out how to resume `state` of `plan` as `request` asks.
#[must_use]
pub fn plan_resume(plan: &Plan, state: &RunState, request: &ResumeRequest) -> ResumePlan {
    let mut resume = ResumePlan::default();
    let marking: BTreeSet<&str> = request.mark_done.iter().map(String::as_str).collect();
    let rerun_asked: BTreeSet<&str> = request.rerun.iter().map(String::as_str).collect();
    let mut refused_interrupted = Vec::new();
    for step in &plan.steps {
        let recorded = state.steps.get(&step.id).cloned().unwrap_or(StepState::Pending);
        let resumed = match recorded {
            StepState::Succeeded { .. } if marking.contains(step.id.as_str()) => recorded,
            _ if marking.contains(step.id.as_str()) => {
                StepState::Succeeded { outputs: serde_json::Map::new() }
            }
            StepState::Interrupted { .. } => {
                if step.kind.info().idempotent
                    || request.rerun_interrupted
                    || rerun_asked.contains(step.id.as_str())
                {
                    resume.rerun.push(step.id.clone());
                } else {
                    refused_interrupted.push(step.id.clone());
                }
                StepState::Pending
            }
            // An undone step's effect was reversed: the steps after it need it again.
            StepState::Failed { .. } | StepState::Undone => StepState::Pending,
            StepState::Skipped { cause: super::journal::SkipCause::NeedNotDone, .. } => StepState::Pending,
            StepState::Succeeded { .. } if rerun_asked.contains(step.id.as_str()) => {
                resume.rerun.push(step.id.clone());
                StepState::Pending
            }
            other @ (StepState::Pending | StepState::Succeeded { .. } | StepState::Skipped { .. }) => other,
        };
        resume.states.push(resumed);
    }
    let readers_of_withheld = readers_of_withheld(plan, state);
    for id in &request.mark_done {
        let is_approval = plan.step(id).is_some_and(|step| step.kind.asks_approval());
        let refusal = match state.steps.get(id) {
            _ if is_approval => Some(format!(
                "`--mark-done {id}`: `{id}` is an approval; it is granted with `--approve {id}` (recorded as an \
                 approval), never marked done"
            )),
            Some(StepState::Succeeded { .. }) => {
                Some(format!("`--mark-done {id}`: step `{id}` finished already"))
            }
            Some(StepState::Interrupted { .. } | StepState::Failed { .. }) => None,
            _ if readers_of_withheld.contains(id.as_str()) => None,
            _ => Some(format!(
                "`--mark-done {id}`: step `{id}` never started; only a step that was running when the run stopped \
                 (or that failed) can be marked done by hand, after you checked what it did"
            )),
        };
        resume.refusals.extend(refusal);
    }
    if !refused_interrupted.is_empty() {
        let listed = quoted_list(&refused_interrupted);
        // A step marked done by hand has no outputs: one whose outputs later steps read
        // can only run again (offering --mark-done would lead to a refusal).
        let (needed, markable): (Vec<String>, Vec<String>) =
            refused_interrupted.iter().cloned().partition(|id| {
                plan.steps.iter().any(|step| outputs_read(step).iter().any(|(producer, _)| producer == id))
            });
        let one = refused_interrupted.len() == 1;
        let mut why = format!(
            "{listed} {} running when the run stopped and may have half-finished; {} not idempotent. \
             `--rerun-interrupted` runs {} again",
            if one { "was" } else { "were" },
            if one { "its kind is" } else { "their kinds are" },
            if one { "it" } else { "them" },
        );
        if !markable.is_empty() {
            why.push_str(&format!(
                "; if you checked by hand that {} finished, use {} instead",
                if one { "it".to_owned() } else { quoted_list(&markable) },
                mark_done_flags(&markable)
            ));
        }
        if !needed.is_empty() {
            why.push_str(&format!(
                "; {} cannot be marked done by hand: later steps read {} outputs",
                quoted_list(&needed),
                if needed.len() == 1 { "its" } else { "their" }
            ));
        }
        resume.decisions.push(Decision { why, flags: vec!["--rerun-interrupted".to_owned()] });
    }
    withheld_inputs(plan, state, &mut resume, &rerun_asked, &marking);
    marked_outputs(plan, state, &mut resume, &marking);
    overridden_values(plan, &resume.states.clone(), request, &mut resume);
    resume
}

/// Steps that read an output the journal keeps redacted: the ones a resume may need
/// the operator to do by hand.
fn readers_of_withheld<'p>(plan: &'p Plan, state: &RunState) -> BTreeSet<&'p str> {
    plan.steps
        .iter()
        .filter(|step| {
            outputs_read(step).iter().any(|(producer, output)| {
                state.withheld.get(producer).is_some_and(|names| names.contains(output))
            })
        })
        .map(|step| step.id.as_str())
        .collect()
}

/// Steps that will run and read an output this resume does not have: one the journal
/// keeps redacted (it held a secret), or a file that is not on this machine (the run
/// started on another, or the file was removed). Its producer runs again when that is
/// safe (`s3.fetch` is idempotent), else the operator decides.
fn withheld_inputs(
    plan: &Plan,
    state: &RunState,
    resume: &mut ResumePlan,
    rerun_asked: &BTreeSet<&str>,
    marking: &BTreeSet<&str>,
) {
    let mut rerun_now: BTreeSet<usize> = BTreeSet::new();
    let mut undecided: BTreeMap<String, (Vec<String>, String)> = BTreeMap::new();
    for (index, step) in plan.steps.iter().enumerate() {
        if resume.states[index] != StepState::Pending || marking.contains(step.id.as_str()) {
            continue;
        }
        for (producer, output) in outputs_read(step) {
            let Some(producer_index) = plan.index_of(&producer) else { continue };
            if resume.states[producer_index] == StepState::Pending {
                continue;
            }
            let withheld = state.withheld.get(&producer).is_some_and(|names| names.contains(&output));
            let missing = missing_file(&resume.states[producer_index], &output);
            let why = match (withheld, &missing) {
                (true, _) => {
                    "that held a secret, which the journal keeps redacted, so this resume does not have it"
                        .to_owned()
                }
                (false, Some(path)) => format!(
                    "(`{output}`: {path}) that is not on this machine: the run started on another one, or the \
                     file was removed"
                ),
                (false, None) => continue,
            };
            if plan.steps[producer_index].kind.info().idempotent || rerun_asked.contains(producer.as_str()) {
                rerun_now.insert(producer_index);
                if let Some(path) = missing {
                    resume
                        .notes
                        .push(format!("`{producer}` runs again: its file {path} is not on this machine"));
                }
            } else {
                undecided.entry(producer).or_insert_with(|| (Vec::new(), why)).0.push(step.id.clone());
            }
        }
    }
    for index in rerun_now {
        resume.states[index] = StepState::Pending;
        if !resume.rerun.contains(&plan.steps[index].id) {
            resume.rerun.push(plan.steps[index].id.clone());
        }
    }
    for (producer, (readers, why)) in undecided {
        resume.decisions.push(Decision {
            why: format!(
                "{} {} an output of `{producer}` {why}; `{producer}` is not idempotent. `--rerun {producer}` runs \
                 it again; if you did what {} do by hand, use {} instead",
                quoted_list(&readers),
                if readers.len() == 1 { "reads" } else { "read" },
                quoted_list(&readers),
                mark_done_flags(&readers)
            ),
            flags: vec!["--rerun".to_owned(), producer],
        });
    }
}

/// The file an output names, when it is a local file output (`path`, `*_path`) that
/// does not exist here.
fn missing_file(producer: &StepState, output: &str) -> Option<String> {
    let StepState::Succeeded { outputs } = producer else { return None };
    if output != "path" && !output.ends_with("_path") {
        return None;
    }
    let path = outputs.get(output)?.as_str()?;
    (path.starts_with('/') && !std::path::Path::new(path).exists()).then(|| path.to_owned())
}

/// A step marked done by hand has no outputs: a step that will run and reads one of
/// them cannot get it.
fn marked_outputs(plan: &Plan, state: &RunState, resume: &mut ResumePlan, marking: &BTreeSet<&str>) {
    for (index, step) in plan.steps.iter().enumerate() {
        if resume.states[index] != StepState::Pending {
            continue;
        }
        for (producer, output) in outputs_read(step) {
            let Some(producer_index) = plan.index_of(&producer) else { continue };
            let marked = marking.contains(producer.as_str()) || state.marked_done.contains_key(&producer);
            if marked && resume.states[producer_index] != StepState::Pending {
                resume.refusals.push(format!(
                    "step `{}` reads `steps.{producer}.outputs.{output}`, but `{producer}` was marked done by hand \
                     and has no outputs; run it again instead (`--rerun {producer}`, or `--rerun-interrupted` if it \
                     was interrupted)",
                    step.id
                ));
            }
        }
    }
}

/// `resume --var NAME=VALUE`: allowed only while no finished step used the old value.
fn overridden_values(plan: &Plan, states: &[StepState], request: &ResumeRequest, resume: &mut ResumePlan) {
    for name in &request.overridden {
        let users: Vec<String> = plan
            .steps
            .iter()
            .zip(states)
            .filter(|(_, state)| matches!(state, StepState::Succeeded { .. }))
            .filter(|(step, _)| {
                references(step).iter().any(|path| {
                    matches!(path.as_slice(), [root, used, ..] if (root == "inputs" || root == "vars") && used == name)
                })
            })
            .map(|(step, _)| step.id.clone())
            .collect();
        if !users.is_empty() {
            resume.refusals.push(format!(
                "`--var {name}`: {} already ran with the old value of `{name}`; a resumed run cannot change what \
                 finished steps did. Start a new run with the right value (`dr-plan run {}`)",
                quoted_list(&users),
                plan.file.name()
            ));
        }
    }
}

/// For each failed step, the inputs and vars it read, with the values it got (as
/// journaled, secrets redacted): a wrong value is the likeliest cause an operator
/// can fix with `resume --var`.
#[must_use]
pub fn value_hints(plan: &Plan, state: &RunState) -> Vec<String> {
    let super::journal::Event::RunStarted { inputs, vars, .. } = &state.started else { return Vec::new() };
    let mut values: BTreeMap<String, serde_json::Value> =
        inputs.iter().chain(vars.iter()).map(|(name, value)| (name.clone(), value.clone())).collect();
    values.extend(state.overridden.iter().cloned());
    let mut hints = Vec::new();
    for step in &plan.steps {
        if !matches!(state.steps.get(&step.id), Some(StepState::Failed { .. })) {
            continue;
        }
        let mut used: Vec<String> = references(step)
            .into_iter()
            .filter_map(|path| match path.as_slice() {
                [root, name, ..] if root == "inputs" || root == "vars" => Some(name.clone()),
                _ => None,
            })
            .collect();
        used.sort();
        used.dedup();
        if used.is_empty() {
            continue;
        }
        let shown: Vec<String> = used
            .iter()
            .map(|name| {
                let value = values.get(name).map_or_else(String::new, |value| {
                    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
                });
                format!("{name}={value}")
            })
            .collect();
        hints.push(format!(
            "`{}` used {}; if a value was wrong, add `--var NAME=VALUE` to the command below",
            step.id,
            shown.join(", ")
        ));
    }
    hints
}

/// `` `a` `` / `` `a` and `b` `` / `` `a`, `b` and `c` ``.
#[must_use]
pub fn quoted_list(ids: &[String]) -> String {
    let quoted: Vec<String> = ids.iter().map(|id| format!("`{id}`")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_a_state_directory_that_is_not_the_default() {
        let flags = vec!["--rerun-interrupted".to_owned()];
        assert_eq!(
            resume_command("r-1", &flags, &StateDir::parse(".dr-plan").unwrap()),
            "dr-plan resume r-1 --rerun-interrupted"
        );
        assert_eq!(
            resume_command("r-1", &flags, &StateDir::parse("/srv/dr state").unwrap()),
            "dr-plan resume r-1 --rerun-interrupted --state-dir '/srv/dr state'"
        );
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn lists_read_like_sentences() {
        let ids = |list: &[&str]| list.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>();
        assert_eq!(quoted_list(&ids(&["a"])), "`a`");
        assert_eq!(quoted_list(&ids(&["a", "b", "c"])), "`a`, `b` and `c`");
    }
}
