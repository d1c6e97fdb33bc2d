//! `dr-plan dry-run`: what the plan would do, in order, with every template rendered,
//! destructive steps marked, the critical path and the predicted RTO. It reads the
//! same [`Plan`] the run executes and changes nothing.

use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value as Json, json};

use crate::kinds::{Preflight, PreflightContext};
use crate::lang::duration::format_duration;
use crate::lang::plan::Plan;
use crate::lang::render::{Context, Mode};
use crate::preview::gantt::{Mark, Task};
use crate::preview::history::History;
use crate::preview::predict::{EstimateSource, Prediction};

/// The preview of one step.
#[derive(Clone, Debug, Serialize)]
pub struct StepPreview {
    /// Id.
    pub id: String,
    /// Kind name.
    pub kind: &'static str,
    /// Stage (1-based).
    pub stage: usize,
    /// Ids of the steps it needs.
    pub needs: Vec<String>,
    /// What it will do, in plain words.
    pub action: String,
    /// Whether it changes or removes something.
    pub destructive: bool,
    /// Whether it is compensated on abort.
    pub undo: bool,
    /// What its undo does, rendered, when it has `undo: true`.
    pub undo_action: Option<String>,
    /// The `when` condition as written, and what it evaluates to now (`None`: known at run time).
    pub when: Option<(String, Option<bool>)>,
    /// Expected duration.
    pub expected: Option<Duration>,
    /// Where the expected duration comes from.
    pub expected_from: EstimateSource,
    /// Per-attempt deadline.
    pub timeout: Option<Duration>,
    /// Attempts in all.
    pub attempts: u32,
    /// Rendered parameters (secrets as `***`, unknown outputs as placeholders).
    pub parameters: Json,
    /// Whether it is on the critical path.
    pub critical: bool,
    /// The plan's `description:` of the step.
    pub description: Option<String>,
    /// Whether a failure lets the run go on.
    pub continue_on_failure: bool,
    /// Whether it will not run (a `when` false now, or a need skipped).
    pub skipped: bool,
}

/// The whole preview.
#[derive(Clone, Debug)]
pub struct DryRun {
    /// Plan name.
    pub plan: String,
    /// Plan description.
    pub description: Option<String>,
    /// Drill mode.
    pub drill: bool,
    /// `objectives.rto`
    pub rto: Option<Duration>,
    /// `objectives.rpo`
    pub rpo: Option<Duration>,
    /// Steps in stage order.
    pub steps: Vec<StepPreview>,
    /// Predicted RTO, critical path.
    pub prediction: Prediction,
    /// Drills the prediction read.
    pub drills: usize,
    /// Rendering problems (a `when` that cannot be evaluated, ...).
    pub problems: Vec<String>,
    /// Results of `--preflight`, by step, when it was asked for.
    pub preflight: Option<Vec<(String, Preflight)>>,
    /// Which steps' parameters hold values known only at run time.
    unknown: Vec<bool>,
    /// The steps during which the live target cannot be used, and how.
    unavailable: Vec<(usize, Window)>,
}

/// How a step makes its target unavailable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    /// For a short window within the step (the renames of `pg.swap`).
    Swap,
    /// For the whole step: it restores over its target, named by this parameter.
    Throughout(&'static str),
}

/// The steps that make the live target unavailable, as their kinds declare it: a kind
/// that measures an unavailability window (`unavailability_output`), and a restore
/// into the target itself rather than beside it.
fn unavailable_steps(plan: &Plan, steps: &[StepPreview]) -> Vec<(usize, Window)> {
    use crate::lang::kind::Role;
    steps
        .iter()
        .enumerate()
        .filter(|(_, preview)| !preview.skipped)
        .filter_map(|(index, preview)| {
            let info = plan.steps[index].kind.info();
            if info.unavailability_output.is_some() {
                return Some((index, Window::Swap));
            }
            let Role::Restore { side, target, .. } = info.role else { return None };
            let beside = side.is_some_and(|(parameter, value)| {
                preview.parameters.get(parameter).and_then(Json::as_str) == Some(value)
            });
            (!beside).then_some((index, Window::Throughout(target.first().copied().unwrap_or_default())))
        })
        .collect()
}

/// Every step rendered with placeholders, in plan order.
struct RenderedSteps {
    steps: Vec<RenderedStep>,
    /// Whether each step is skipped: its `when` is false, or a step it needs is skipped.
    skipped: Vec<bool>,
    /// What could not be evaluated or rendered, each naming its step.
    problems: Vec<String>,
}

/// One step's `when` and parameters, as far as a dry run can know them.
struct RenderedStep {
    when: Option<bool>,
    parameters: Json,
    /// Whether the parameters hold values known only at run time.
    unknown: bool,
}

/// Evaluates every step's `when` and renders its parameters; a step that cannot be
/// rendered keeps its parameters as written, and its problem is collected.
fn render_steps(plan: &Plan, context: &Context) -> RenderedSteps {
    let mut problems = Vec::new();
    let mut skipped = vec![false; plan.steps.len()];
    let mut rendered = Vec::with_capacity(plan.steps.len());
    for (index, step) in plan.steps.iter().enumerate() {
        let when = match context.evaluate_when(step) {
            Ok(value) => value,
            Err(error) => {
                problems.push(error.0);
                None
            }
        };
        skipped[index] = when == Some(false) || step.needs.iter().any(|&need| skipped[need]);
        let (parameters, unknown) = match context.render_with(step) {
            Ok(rendered) => rendered,
            Err(error) => {
                problems.push(format!("step `{}`: {}", step.id, error.0));
                (step.with.to_json(), true)
            }
        };
        rendered.push(RenderedStep { when, parameters, unknown });
    }
    RenderedSteps { steps: rendered, skipped, problems }
}

/// The preview of the step at `index`: what it will do, and when and how long.
fn step_preview(
    plan: &Plan,
    step: &crate::lang::plan::Step,
    index: usize,
    rendered: RenderedStep,
    skipped: bool,
    prediction: &Prediction,
) -> StepPreview {
    let RenderedStep { when, parameters, .. } = rendered;
    let spec = plan.spec_of(step);
    let mut action = step.kind.describe(&parameters);
    // Which cluster a Kubernetes step acts on matters as much as what it does.
    if let Some(context) = parameters.get("context").and_then(Json::as_str) {
        action.push_str(&format!(" (kube context {context})"));
    }
    if skipped && when != Some(false) {
        action = format!("skipped (a step it needs is skipped): {action}");
    } else if when == Some(false) {
        action = format!("skipped (`when` is false): {action}");
    }
    let (expected, expected_from) = prediction.durations[index];
    StepPreview {
        id: step.id.clone(),
        kind: step.kind.name(),
        stage: step.stage + 1,
        needs: step.needs.iter().map(|&need| plan.steps[need].id.clone()).collect(),
        destructive: step.kind.is_destructive(&parameters),
        undo: step.undo,
        undo_action: if step.undo { step.kind.describe_undo(&parameters) } else { None },
        when: spec.when.as_ref().map(|text| (text.value.clone(), when)),
        expected: matches!(expected_from, EstimateSource::Estimate | EstimateSource::DrillHistory(_))
            .then_some(expected),
        expected_from,
        timeout: step.timeout,
        attempts: step.attempts,
        critical: prediction.critical_path.contains(&index),
        description: step.description.clone(),
        continue_on_failure: step.on_failure == crate::lang::spec::OnFailure::Continue,
        skipped,
        action,
        parameters,
    }
}

impl DryRun {
    /// Builds the preview.
    #[must_use]
    pub fn new(
        plan: &Plan,
        vars: Map<String, Json>,
        inputs: Map<String, Json>,
        drill: bool,
        history: &History,
    ) -> DryRun {
        let context = Context {
            mode: Mode::DryRun,
            vars,
            inputs,
            secrets: std::collections::BTreeMap::new(),
            run: crate::lang::render::placeholder_run_fields(plan, drill),
            outputs: std::collections::BTreeMap::new(),
            withheld: std::collections::BTreeMap::new(),
        };
        let RenderedSteps { steps: rendered, skipped, problems } = render_steps(plan, &context);
        let prediction = Prediction::new(plan, history, &skipped);
        let unknown: Vec<bool> = rendered.iter().map(|rendered| rendered.unknown).collect();
        let steps: Vec<StepPreview> = plan
            .steps
            .iter()
            .zip(rendered)
            .enumerate()
            .map(|(index, (step, rendered))| {
                step_preview(plan, step, index, rendered, skipped[index], &prediction)
            })
            .collect();
        let unavailable = unavailable_steps(plan, &steps);
        DryRun {
            plan: plan.name().to_owned(),
            description: plan.spec.description.as_ref().map(|description| description.value.clone()),
            drill,
            rto: plan.spec.objectives.rto.as_ref().map(|rto| rto.value.get()),
            rpo: plan.spec.objectives.rpo.as_ref().map(|rpo| rpo.value.get()),
            steps,
            prediction,
            drills: history.len(),
            problems,
            preflight: None,
            unknown,
            unavailable,
        }
    }

    /// Runs every step's read-only preflight check against the live systems. Steps
    /// whose parameters depend on outputs of earlier steps cannot be checked yet.
    pub fn run_preflight(&mut self, plan: &Plan) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                self.problems.push(format!("preflight could not start: {error}"));
                return;
            }
        };
        let preflight_context =
            PreflightContext { rpo: plan.spec.objectives.rpo.as_ref().map(|rpo| rpo.value.0) };
        let mut results = Vec::with_capacity(self.steps.len());
        for (index, preview) in self.steps.iter().enumerate() {
            let result = if self.unknown[index] {
                Preflight::NotChecked("its parameters depend on outputs known only at run time".to_owned())
            } else if preview.skipped {
                Preflight::NotChecked("skipped".to_owned())
            } else {
                let check = crate::kinds::preflight(
                    plan.steps[index].kind,
                    preview.parameters.clone(),
                    &preflight_context,
                );
                runtime
                    .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(30), check).await })
                    .unwrap_or_else(|_| Preflight::Failed("no answer within 30s".to_owned()))
            };
            results.push((preview.id.clone(), result));
        }
        self.preflight = Some(results);
    }

    /// Whether a preflight check failed.
    #[must_use]
    pub fn preflight_failed(&self) -> bool {
        self.preflight.iter().flatten().any(|(_, result)| matches!(result, Preflight::Failed(_)))
    }

    fn preflight_lines(&self, wrap: &str) -> Vec<String> {
        self.preflight
            .iter()
            .flatten()
            .map(|(id, result)| match result {
                Preflight::Passed(detail) => format!("ok      {wrap}{id}{wrap}: {detail}"),
                Preflight::Failed(detail) => format!("FAILED  {wrap}{id}{wrap}: {detail}"),
                Preflight::NotChecked(detail) => format!("—       {wrap}{id}{wrap}: not checked: {detail}"),
            })
            .collect()
    }

    fn stages(&self) -> Vec<Vec<&StepPreview>> {
        let count = self.steps.iter().map(|step| step.stage).max().unwrap_or(0);
        (1..=count).map(|stage| self.steps.iter().filter(|step| step.stage == stage).collect()).collect()
    }

    fn critical_path_text(&self, wrap: &str) -> String {
        self.prediction
            .critical_path
            .iter()
            .map(|&index| {
                let step = &self.steps_by_plan_index(index);
                match step.expected {
                    Some(expected) => format!("{wrap}{}{wrap} ({})", step.id, format_duration(expected)),
                    None => format!("{wrap}{}{wrap}", step.id),
                }
            })
            .collect::<Vec<_>>()
            .join(" → ")
    }

    fn steps_by_plan_index(&self, index: usize) -> &StepPreview {
        &self.steps[index]
    }

    fn rto_verdict(&self) -> String {
        let missing = self.prediction.unestimated();
        // Steps without an estimate count as 0: the sum is a lower bound then, which can
        // say an objective is exceeded but never that it is met.
        let predicted = format!(
            "{}{}",
            if missing > 0 { "at least " } else { "" },
            format_duration(self.prediction.total)
        );
        let source = if self.drills > 0 { "from drill history and estimates" } else { "from estimates" };
        let mut text = format!("{predicted} ({source})");
        match self.rto {
            Some(rto) if missing > 0 && self.prediction.total <= rto => {
                let _ = write!(text, ", not known to be within the {} objective", format_duration(rto));
            }
            Some(rto) if self.prediction.total > rto => {
                let _ = write!(
                    text,
                    ", EXCEEDS the {} objective by {}",
                    format_duration(rto),
                    format_duration(self.prediction.total - rto)
                );
            }
            Some(rto) => {
                let _ = write!(text, ", within the {} objective", format_duration(rto));
            }
            None => text.push_str(", no RTO objective set"),
        }
        if missing > 0 {
            let _ = write!(
                text,
                "; {} no estimate",
                crate::lang::diagnostic::counted(missing, "step has", "steps have")
            );
        }
        text
    }

    /// How long the live target is predicted to be unavailable, apart from the RTO: the
    /// swap window only, or the whole of a restore over it; `None` when no step makes
    /// it unavailable.
    fn unavailability_text(&self, wrap: &str) -> Option<String> {
        if self.unavailable.is_empty() {
            return None;
        }
        let predicted = |index: usize| match self.steps[index].expected {
            Some(expected) => format!("predicted {}", format_duration(expected)),
            None => "no estimate".to_owned(),
        };
        let named = |index: usize| format!("{} {wrap}{}{wrap}", self.steps[index].kind, self.steps[index].id);
        let only_swaps = self.unavailable.iter().all(|&(_, window)| window == Window::Swap);
        if only_swaps {
            let named: Vec<String> = self.unavailable.iter().map(|&(index, _)| named(index)).collect();
            let total = self.unavailable.iter().filter_map(|&(index, _)| self.steps[index].expected).sum();
            let predicted = if self.unavailable.iter().all(|&(index, _)| self.steps[index].expected.is_some())
            {
                format!("predicted {} at most", format_duration(total))
            } else {
                "no estimate".to_owned()
            };
            return Some(format!(
                "{} only ({predicted}), apart from the RTO: the rest of the recovery runs while the live database \
                 answers",
                named.join(", ")
            ));
        }
        let windows: Vec<String> = self
            .unavailable
            .iter()
            .map(|&(index, window)| match window {
                Window::Swap => format!("{} ({})", named(index), predicted(index)),
                Window::Throughout(target) => {
                    let over = self.steps[index]
                        .parameters
                        .get(target)
                        .map_or_else(|| "its target".to_owned(), crate::lang::kind::display);
                    format!(
                        "throughout {} ({}): it restores over {over} in place",
                        named(index),
                        predicted(index)
                    )
                }
            })
            .collect();
        Some(windows.join("; "))
    }

    fn objectives_text(&self) -> String {
        let rto = self.rto.map_or_else(|| "not set".to_owned(), format_duration);
        let rpo = self.rpo.map_or_else(|| "not set".to_owned(), format_duration);
        format!("RTO {rto} · RPO {rpo}")
    }

    fn destructive_count(&self) -> usize {
        self.steps.iter().filter(|step| step.destructive && !step.skipped).count()
    }

    /// Plain text for a terminal.
    #[must_use]
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Dry-run of plan {}{}", self.plan, if self.drill { " (drill)" } else { "" });
        if let Some(description) = &self.description {
            let _ = writeln!(out, "  {}", description.replace('\n', "\n  "));
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "Objectives     {}", self.objectives_text());
        let _ = writeln!(out, "Predicted RTO  {}", self.rto_verdict());
        if let Some(unavailable) = self.unavailability_text("`") {
            let _ = writeln!(out, "Unavailable    {unavailable}");
        }
        let _ = writeln!(out, "Critical path  {}", self.critical_path_text(""));
        let _ = writeln!(
            out,
            "Steps          {} in {}, {} destructive",
            self.steps.len(),
            crate::lang::diagnostic::counted(self.stages().len(), "stage", "stages"),
            self.destructive_count()
        );
        for (number, stage) in self.stages().iter().enumerate() {
            let _ = writeln!(out);
            let together = if stage.len() > 1 { " (these run concurrently)" } else { "" };
            let _ = writeln!(out, "Stage {}{together}", number + 1);
            for step in stage {
                let mut tags = vec![step.kind.to_owned()];
                if step.destructive {
                    tags.push("DESTRUCTIVE".to_owned());
                }
                if step.undo {
                    tags.push("undo on abort".to_owned());
                }
                if let Some(expected) = step.expected {
                    tags.push(format!("~{}", format_duration(expected)));
                }
                if step.critical {
                    tags.push("critical path".to_owned());
                }
                let _ = writeln!(out, "  {} [{}]", step.id, tags.join(", "));
                if let Some(description) = &step.description {
                    let _ = writeln!(out, "      {}", description.replace('\n', "\n      "));
                }
                let _ = writeln!(out, "      → {}", step.action);
                if let Some(undo) = &step.undo_action {
                    let _ = writeln!(out, "      ↩ on abort: {undo}");
                }
                if step.continue_on_failure {
                    let _ = writeln!(out, "      a failure does not stop the run (on_failure: continue)");
                }
                if let Some((condition, value)) = &step.when {
                    let verdict = match value {
                        Some(true) => "true now",
                        Some(false) => "false now",
                        None => "decided at run time",
                    };
                    let _ = writeln!(out, "      when {condition} ({verdict})");
                }
                if !step.needs.is_empty() {
                    let _ = writeln!(out, "      after {}", step.needs.join(", "));
                }
            }
        }
        for problem in &self.problems {
            let _ = writeln!(out, "\nwarning: {problem}");
        }
        if self.preflight.is_some() {
            let _ = writeln!(out, "\nPreflight (read-only checks against the live systems)");
            for line in self.preflight_lines("") {
                let _ = writeln!(out, "  {line}");
            }
        }
        let _ = writeln!(out, "\nNothing was changed: this was a dry-run.");
        crate::lang::diagnostic::escape_controls(&out)
    }

    /// Markdown for a PR comment: summary first, details collapsed, < 60,000 characters.
    #[must_use]
    pub fn markdown(&self, graph: &str) -> String {
        const LIMIT: usize = 60_000;
        let mut out = String::new();
        let drill = if self.drill { " (drill)" } else { "" };
        let _ = writeln!(out, "## dr-plan dry-run: `{}`{drill}\n", self.plan);
        if let Some(description) = &self.description {
            let _ = writeln!(out, "{}\n", escape_markdown(description));
        }
        self.markdown_summary(&mut out);
        let _ = writeln!(out, "### What would happen\n");
        for (number, stage) in self.stages().iter().enumerate() {
            let together = if stage.len() > 1 { " — concurrently" } else { "" };
            let _ = writeln!(out, "**Stage {}**{together}\n", number + 1);
            for step in stage {
                markdown_step(&mut out, step);
            }
            out.push('\n');
        }
        for problem in &self.problems {
            let _ = writeln!(out, "> ⚠️ {}\n", escape_markdown(problem));
        }
        let _ = writeln!(
            out,
            "<details><summary>Predicted timeline</summary>\n\n{}\n</details>\n",
            self.predicted_gantt()
        );
        let _ = writeln!(
            out,
            "<details><summary>Dependency graph</summary>\n\n```mermaid\n{graph}```\n\n</details>\n"
        );
        let details = self.markdown_parameters();
        let footer = "\n_Nothing was changed: this was a dry-run._\n";
        if out.len() + details.len() + footer.len() <= LIMIT {
            out.push_str(&details);
        } else {
            out.push_str("<details><summary>Rendered parameters</summary>\n\nOmitted: the comment would exceed 60,000 characters. Run `dr-plan dry-run --format json` to see them.\n\n</details>\n");
        }
        out.push_str(footer);
        out
    }

    /// The table at the top of the comment: objectives, predicted RTO, critical path, counts.
    fn markdown_summary(&self, out: &mut String) {
        let exceeded = matches!(self.rto, Some(rto) if self.prediction.total > rto);
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| Objectives | {} |", self.objectives_text());
        let _ =
            writeln!(out, "| Predicted RTO | {}{} |", if exceeded { "⚠️ " } else { "" }, self.rto_verdict());
        if let Some(unavailable) = self.unavailability_text("`") {
            let _ = writeln!(out, "| Unavailable | {} |", escape_markdown(&unavailable));
        }
        let _ = writeln!(out, "| Critical path | {} |", self.critical_path_text("`"));
        let _ = writeln!(
            out,
            "| Steps | {} in {}, **{} destructive** |\n",
            self.steps.len(),
            crate::lang::diagnostic::counted(self.stages().len(), "stage", "stages"),
            self.destructive_count()
        );
    }

    /// Every step's rendered parameters, collapsed.
    fn markdown_parameters(&self) -> String {
        let mut details = String::from("<details><summary>Rendered parameters</summary>\n\n");
        for step in &self.steps {
            let parameters = serde_json::to_string_pretty(&step.parameters).unwrap_or_default();
            let _ = writeln!(details, "`{}` ({})\n\n```json\n{parameters}\n```\n", step.id, step.kind);
        }
        details.push_str("</details>\n");
        details
    }

    /// The predicted timeline as a Mermaid gantt: each step from when its needs are
    /// expected to end, for its expected duration (drill history, else `estimate:`, as
    /// the predicted RTO counts them); the critical path in red. Steps that will not run
    /// are left out.
    fn predicted_gantt(&self) -> String {
        let tasks: Vec<Task> = self
            .steps
            .iter()
            .enumerate()
            .filter(|(_, step)| !step.skipped)
            .map(|(index, step)| {
                // The preview's steps are in the plan's order, as the prediction's.
                let start = self.prediction.starts.get(index).copied().unwrap_or(Duration::ZERO);
                let expected = step.expected.unwrap_or(Duration::ZERO);
                let name = match step.expected_from {
                    EstimateSource::Unknown => format!("{} (no estimate)", step.id),
                    EstimateSource::DrillHistory(_) | EstimateSource::Estimate | EstimateSource::Skipped => {
                        format!("{} ~{}", step.id, format_duration(expected))
                    }
                };
                Task {
                    section: format!("stage {}", step.stage),
                    name,
                    mark: if step.critical { Mark::Critical } else { Mark::Plain },
                    start: start.as_secs_f64(),
                    end: start.saturating_add(expected).as_secs_f64(),
                }
            })
            .collect();
        crate::preview::gantt::mermaid(&format!("Predicted timeline of {}", self.plan), &tasks)
    }

    /// A JSON document.
    #[must_use]
    pub fn json(&self) -> Json {
        let steps: Vec<Json> = self
            .steps
            .iter()
            .map(|step| {
                json!({
                    "id": step.id,
                    "kind": step.kind,
                    "stage": step.stage,
                    "needs": step.needs,
                    "action": step.action,
                    "description": step.description,
                    "on_failure": if step.continue_on_failure { "continue" } else { "abort" },
                    "skipped": step.skipped,
                    "destructive": step.destructive,
                    "undo": step.undo,
                    "undo_action": step.undo_action,
                    "when": step.when.as_ref().map(|(condition, value)| json!({"condition": condition, "value": value})),
                    "expected_seconds": step.expected.map(|expected| expected.as_secs_f64()),
                    "expected_from": step.expected_from,
                    "timeout_seconds": step.timeout.map(|timeout| timeout.as_secs_f64()),
                    "attempts": step.attempts,
                    "critical": step.critical,
                    "parameters": step.parameters,
                })
            })
            .collect();
        json!({
            "version": 1,
            "plan": self.plan,
            "description": self.description,
            "drill": self.drill,
            "objectives": {
                "rto_seconds": self.rto.map(|rto| rto.as_secs_f64()),
                "rpo_seconds": self.rpo.map(|rpo| rpo.as_secs_f64()),
            },
            "predicted_rto_seconds": self.prediction.total.as_secs_f64(),
            "rto_exceeded": self.rto.map(|rto| self.prediction.total > rto),
            "critical_path": self.prediction.critical_path.iter().map(|&index| self.steps[index].id.clone()).collect::<Vec<_>>(),
            "drills_in_history": self.drills,
            "unavailable": self.unavailable.iter().map(|&(index, window)| json!({
                "step": self.steps[index].id,
                "window": match window { Window::Swap => "swap", Window::Throughout(_) => "throughout" },
                "predicted_seconds": self.steps[index].expected.map(|expected| expected.as_secs_f64()),
            })).collect::<Vec<_>>(),
            "unavailability": self.unavailability_text("`"),
            "stages": self.stages().iter().map(|stage| stage.iter().map(|step| step.id.clone()).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "steps": steps,
            "problems": self.problems,
            "preflight": self.preflight.as_ref().map(|results| results.iter().map(|(id, result)| json!({"step": id, "check": result})).collect::<Vec<_>>()),
        })
    }
}

/// One step of "What would happen": its line, then what else a reviewer should know.
fn markdown_step(out: &mut String, step: &StepPreview) {
    let mut marks = String::new();
    if step.destructive {
        marks.push_str(" ⚠️ **destructive**");
    }
    if step.undo {
        marks.push_str(" ↩️ undo on abort");
    }
    if let Some(expected) = step.expected {
        let _ = write!(marks, " · ~{}", format_duration(expected));
    }
    let _ = writeln!(out, "- `{}` ({}){marks}: {}", step.id, step.kind, escape_markdown(&step.action));
    if let Some(description) = &step.description {
        let _ = writeln!(out, "  - _{}_", escape_markdown(description));
    }
    if let Some(undo) = &step.undo_action {
        let _ = writeln!(out, "  - ↩️ on abort: {}", escape_markdown(undo));
    }
    if !step.needs.is_empty() {
        let needs: Vec<String> = step.needs.iter().map(|need| format!("`{need}`")).collect();
        let _ = writeln!(out, "  - after {}", needs.join(", "));
    }
    if step.continue_on_failure {
        let _ = writeln!(out, "  - a failure does not stop the run (`on_failure: continue`)");
    }
    if let Some((condition, value)) = &step.when {
        let verdict = match value {
            Some(true) => "true now",
            Some(false) => "false now",
            None => "decided at run time",
        };
        let _ = writeln!(out, "  - when `{condition}` ({verdict})");
    }
}

/// Escapes text for a markdown table or list, leaving `code spans` as written (markdown
/// does not decode entities inside them).
///
/// Plan text must not take over a PR comment: a newline could start a heading or a
/// `<details>` of its own, an odd backtick could open a code span that swallows the
/// rest, and control characters are written as escapes.
fn escape_markdown(text: &str) -> String {
    let text = crate::lang::diagnostic::escape_controls(&text.replace(['\n', '\r'], " "));
    if text.matches('`').count() % 2 == 1 {
        return text.replace('`', "\\`").replace('<', "&lt;").replace('>', "&gt;").replace('|', "\\|");
    }
    text.split('`')
        .enumerate()
        .map(|(index, part)| {
            if index % 2 == 1 {
                part.to_owned()
            } else {
                part.replace('<', "&lt;").replace('>', "&gt;").replace('|', "\\|")
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::source::SourceFile;

    #[test]
    fn a_sum_with_steps_unestimated_never_says_the_objective_is_met() {
        let text = "version: 1\nname: t\nobjectives: { rto: 30m }\nsteps:\n  - { id: nap, kind: sleep, with: { duration: 1s } }\n  - { id: known, kind: sleep, with: { duration: 1s }, estimate: 2m }\n";
        let plan = crate::kinds::plan_from_source(&SourceFile::new("p.yaml", text)).expect("valid");
        let human = DryRun::new(&plan, Map::new(), Map::new(), false, &History::default()).human();
        assert!(
            human.contains("at least 2m (from estimates), not known to be within the 30m objective; 1 step has no estimate"),
            "{human}"
        );
    }

    #[test]
    fn counts_are_spelled_in_the_singular_for_one() {
        let text = "version: 1\nname: t\nsteps:\n  - { id: nap, kind: sleep, with: { duration: 1s } }\n";
        let plan = crate::kinds::plan_from_source(&SourceFile::new("p.yaml", text)).expect("valid");
        let preview = DryRun::new(&plan, Map::new(), Map::new(), false, &History::default());
        let human = preview.human();
        assert!(human.contains("1 in 1 stage,"), "{human}");
        assert!(human.contains("; 1 step has no estimate"), "{human}");
        assert!(
            human.contains("Predicted RTO  at least 0s (from estimates), no RTO objective set"),
            "{human}"
        );
        assert!(preview.markdown("").contains("| Steps | 1 in 1 stage,"));
    }
}
