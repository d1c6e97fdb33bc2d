//! What a run whose process died (`kill -9`, a crash, a second Ctrl-C) left half-done
//! on a live system, put back before anything else: a `pg.swap` stopped between
//! refusing connections to the live database and allowing them again leaves every
//! client refused until someone notices. `status` and `resume` call this first; each
//! kind that can leave such a state says how to put it back (`kinds::REPAIRS`), from
//! what the step wrote in its memory before it started changing anything.
//!
//! Nothing is touched while the run is live: a process that still holds the run's lock
//! is in the middle of the swap, and the refused connections are its to allow again.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value as Json;

use super::journal::StepState;
use super::lock::LockError;
use super::{RecordedRun, ResumeArguments, SharedMemory, journal, lock, run_fields};
use crate::lang::render::{Context, Mode};
use crate::lang::secret::Redactor;
use crate::state::StateDir;

/// What was put back (each a sentence), or why a step's leftovers could not be checked
/// or put back (each a sentence with what to do by hand). Empty when the run left
/// nothing, is still live, or its records cannot be read (the caller says so itself).
#[must_use]
pub fn left_behind(run_id: &str, state_dir: &StateDir) -> Vec<Result<String, String>> {
    let Ok(recorded) = RecordedRun::read(run_id, state_dir) else { return Vec::new() };
    // The copy of the plan taken at the start: exactly what the steps ran, wherever
    // the plan file is now.
    let Some(text) = recorded.snapshot_text.clone() else { return Vec::new() };
    let source = crate::lang::source::SourceFile::new(recorded.plan_path.clone(), text);
    let Ok(plan) = crate::kinds::plan_from_source(&source) else { return Vec::new() };
    let started = |id: &str| recorded.state.attempts.get(id).copied().unwrap_or(0) > 0;
    let candidates: Vec<usize> = (0..plan.steps.len())
        .filter(|&index| {
            let step = &plan.steps[index];
            crate::kinds::can_repair(step.kind) && started(&step.id)
        })
        .collect();
    if candidates.is_empty() {
        return Vec::new();
    }
    match lock::obstacle(state_dir, plan.name()) {
        // Its process is alive: what it refused is its own to allow again.
        Some(LockError::Held(holder) | LockError::LeftRunning(holder, _)) if holder.run_id == run_id => {
            return Vec::new();
        }
        _ => {}
    }
    let values = match recorded.values(&plan, &ResumeArguments::default()) {
        Ok(values) => values,
        Err(error) => {
            let steps: Vec<String> = candidates.iter().map(|&index| plan.steps[index].id.clone()).collect();
            return vec![Err(format!(
                "cannot check what {} left on the live system: {}",
                super::decisions::quoted_list(&steps),
                error.to_string().trim_end()
            ))];
        }
    };
    let redactor = Arc::new(Redactor::new(values.secrets.values()));
    let outputs: BTreeMap<String, Json> = recorded
        .state
        .steps
        .iter()
        .filter_map(|(id, state)| match state {
            StepState::Succeeded { outputs } => Some((id.clone(), Json::Object(outputs.clone()))),
            _ => None,
        })
        .collect();
    let run_dir = match state_dir {
        StateDir::Local(path) => journal::run_dir(path, run_id),
        // The memories are objects of the run; no file is read or written here.
        StateDir::S3(_) => std::env::temp_dir(),
    };
    let context = Context {
        mode: Mode::Run,
        vars: values.vars,
        inputs: values.inputs,
        secrets: values.secrets,
        run: run_fields(&plan, run_id, values.drill, &recorded.state.started_at, &run_dir),
        outputs,
        withheld: recorded.state.withheld.clone(),
    };
    let memory: Option<Arc<dyn crate::kinds::MemoryStore>> = match state_dir {
        StateDir::S3(_) => {
            Some(Arc::new(SharedMemory { state: state_dir.clone(), run_id: run_id.to_owned() }))
        }
        StateDir::Local(_) => None,
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return vec![Err("cannot start the async runtime to check the steps' leftovers".to_owned())];
    };
    let (progress, _) = tokio::sync::mpsc::unbounded_channel();
    let operator = lock::operator();
    candidates
        .into_iter()
        .filter_map(|index| {
            let step = &plan.steps[index];
            let with = match context.render_with(step) {
                Ok((with, _)) => with,
                Err(error) => {
                    return Some(Err(format!(
                        "cannot check what step `{}` left on the live system: its parameters do not render ({})",
                        step.id, error.0
                    )));
                }
            };
            let step_context = crate::kinds::StepContext {
                run_id: run_id.to_owned(),
                plan: plan.name().to_owned(),
                step_id: step.id.clone(),
                run_dir: run_dir.clone(),
                drill: values.drill,
                approval: crate::kinds::ApprovalMode::Unavailable,
                operator: operator.clone(),
                redactor: Arc::clone(&redactor),
                progress: crate::kinds::ProgressSink::new(progress.clone(), &step.id),
                rpo: None,
                memory: memory.clone(),
            };
            runtime.block_on(crate::kinds::repair(step.kind, with, &step_context)).transpose()
        })
        .collect()
}

/// Prints what [`left_behind`] did, for a person, on standard error.
pub fn say_left_behind(run_id: &str, state_dir: &StateDir) {
    for outcome in left_behind(run_id, state_dir) {
        match outcome {
            Ok(done) => crate::errln!("repaired: {done}"),
            Err(problem) => crate::errln!("warning: {problem}"),
        }
    }
}
