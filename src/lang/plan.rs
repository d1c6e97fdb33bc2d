//! The validated plan: a DAG of steps whose parameters, templates and references were
//! all checked. A [`Plan`] can only be built from a spec with no errors, so the
//! dry-run and the run (which both read it) never meet an unchecked plan.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use petgraph::Direction::Incoming;
use petgraph::algo::{DfsSpace, has_path_connecting, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Visitable};
use serde_json::Value as Json;
use sha2::Digest;

use crate::lang::code::Code;
use crate::lang::diagnostic::{Diagnostic, Severity, suggestion};
use crate::lang::kind::{Catalog, CheckedText, RequiredValue, StepKind};
use crate::lang::node::{Node, Value};
use crate::lang::schema_check;
use crate::lang::source::{SourceFile, Span};
use crate::lang::spec::{Located, OnFailure, PlanSpec, StepSpec};
use crate::lang::template::{Template, contains_expression};

/// Fields of `run.` a template may read.
pub const RUN_FIELDS: &[&str] = &["id", "drill", "started_at", "dir", "plan"];
/// The roots of template paths.
pub const TEMPLATE_ROOTS: &[&str] = &["vars", "inputs", "secrets", "run", "steps"];

/// A validated plan.
#[derive(Debug)]
pub struct Plan {
    /// The file it came from.
    pub file: Arc<SourceFile>,
    /// The spec as written (kept for lint rules and spans).
    pub spec: PlanSpec,
    /// Steps in a topological order (source order among steps ready together).
    pub steps: Vec<Step>,
    /// SHA-256 (hex) of the file's bytes: resume refuses a changed plan.
    pub content_hash: String,
    /// The steps' needs as a graph (node `i` is `steps[i]`), for [`Plan::ancestors`].
    needs: NeedsGraph,
}

/// A graph of needs: node `i` is step `i`, with an edge from each step to each step it
/// needs.
type NeedsGraph = DiGraph<(), ()>;

/// Builds the graph of `needs` (the needs of each step, as indices). petgraph lists a
/// node's edges newest first, so they are added last-first: walks then follow each
/// step's `needs` in the order written (the cycle reported depends on it).
fn needs_graph<'n>(needs: impl ExactSizeIterator<Item = &'n [usize]>) -> NeedsGraph {
    let mut graph = NeedsGraph::with_capacity(needs.len(), needs.len());
    for _ in 0..needs.len() {
        graph.add_node(());
    }
    for (step, needed) in needs.enumerate() {
        for &need in needed.iter().rev() {
            graph.add_edge(NodeIndex::new(step), NodeIndex::new(need), ());
        }
    }
    graph
}

/// A step of a validated plan.
#[derive(Debug)]
pub struct Step {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: StepKind,
    /// Indices (into [`Plan::steps`]) of the steps it needs directly.
    pub needs: Vec<usize>,
    /// Its parameters as written (templates unrendered).
    pub with: Node,
    /// The `when` condition.
    pub when: Option<Template>,
    /// Deadline of each attempt.
    pub timeout: Option<Duration>,
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Wait before the first retry (doubled each time).
    pub backoff: Duration,
    /// Compensate on abort.
    pub undo: bool,
    /// Expected duration.
    pub estimate: Option<Duration>,
    /// What it is for.
    pub description: Option<String>,
    /// What a failure does to the run.
    pub on_failure: OnFailure,
    /// Index of the step in [`PlanSpec::steps`].
    pub spec_index: usize,
    /// Stage: 0 for steps with no needs, else one more than the deepest need.
    pub stage: usize,
}

impl Plan {
    /// Validates a decoded spec. `problems` already holds what decoding found; the
    /// plan is built only when no error remains.
    ///
    /// # Errors
    /// Every problem found (decode problems included), sorted by position.
    pub fn build(spec: PlanSpec, mut problems: Vec<Diagnostic>) -> Result<Plan, Vec<Diagnostic>> {
        let file = spec.file.clone().expect("decoded specs carry their file");
        let mut checker = Checker::new(&file, &spec, &mut problems);
        let order = checker.graph();
        checker.parameters();
        checker.undo();
        // Templates are checked even when the graph is broken: every problem at once.
        checker.templates();
        problems.sort_by_key(Diagnostic::sort_key);
        if problems.iter().any(|problem| problem.severity == Severity::Error) {
            return Err(problems);
        }
        let order = order.expect("no graph errors means an order exists");
        let steps = assemble(&spec, &order);
        let needs = needs_graph(steps.iter().map(|step| step.needs.as_slice()));
        let content_hash = hex::encode(sha2::Sha256::digest(file.text().as_bytes()));
        Ok(Plan { file, spec, steps, content_hash, needs })
    }

    /// The plan's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.spec.name.value
    }

    /// The step with this id.
    #[must_use]
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|step| step.id == id)
    }

    /// Index of the step with this id.
    #[must_use]
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|step| step.id == id)
    }

    /// The spec of a step.
    #[must_use]
    pub fn spec_of(&self, step: &Step) -> &StepSpec {
        &self.spec.steps[step.spec_index]
    }

    /// Indices of every step `index` needs, directly or not.
    #[must_use]
    pub fn ancestors(&self, index: usize) -> BTreeSet<usize> {
        let mut walk = Dfs::new(&self.needs, NodeIndex::new(index));
        // The walk starts with the step itself, which a DAG never reaches again.
        std::iter::from_fn(|| walk.next(&self.needs)).skip(1).map(NodeIndex::index).collect()
    }

    /// Steps grouped by stage: each stage can run once the previous ones finished.
    #[must_use]
    pub fn stages(&self) -> Vec<Vec<usize>> {
        let count = self.steps.iter().map(|step| step.stage + 1).max().unwrap_or(0);
        let mut stages = vec![Vec::new(); count];
        for (index, step) in self.steps.iter().enumerate() {
            stages[step.stage].push(index);
        }
        stages
    }
}

/// Every check looks names up through maps built once, so a plan of many steps or
/// many vars validates in time linear in its size.
struct Checker<'a> {
    file: &'a Arc<SourceFile>,
    spec: &'a PlanSpec,
    problems: &'a mut Vec<Diagnostic>,
    /// Step id → index of the first step with it.
    ids: HashMap<&'a str, usize>,
    /// Declared names of `vars`, `inputs` and `secrets`.
    vars: HashSet<&'a str>,
    inputs: HashSet<&'a str>,
    secrets: HashSet<&'a str>,
}

impl<'a> Checker<'a> {
    fn new(file: &'a Arc<SourceFile>, spec: &'a PlanSpec, problems: &'a mut Vec<Diagnostic>) -> Checker<'a> {
        let mut ids = HashMap::with_capacity(spec.steps.len());
        for (index, step) in spec.steps.iter().enumerate() {
            ids.entry(step.id.value.as_str()).or_insert(index);
        }
        Checker {
            file,
            spec,
            problems,
            ids,
            vars: spec.vars.names().collect(),
            inputs: spec.inputs.names().collect(),
            secrets: spec.secrets.names().collect(),
        }
    }

    /// Indices of the steps each step needs directly (unknown ids left out).
    fn direct_needs(&self) -> Vec<Vec<usize>> {
        self.spec
            .steps
            .iter()
            .map(|step| {
                step.needs.iter().filter_map(|need| self.ids.get(need.value.as_str()).copied()).collect()
            })
            .collect()
    }

    fn push(&mut self, diagnostic: Diagnostic) {
        self.problems.push(diagnostic);
    }

    /// Duplicate ids, unknown needs, cycles. Returns spec indices in topological order
    /// when the graph is sound.
    fn graph(&mut self) -> Option<Vec<usize>> {
        let steps = &self.spec.steps;
        let mut sound = true;
        for (index, step) in steps.iter().enumerate() {
            let first_index = self.ids[step.id.value.as_str()];
            if first_index != index {
                let first = &steps[first_index];
                sound = false;
                self.push(
                    Diagnostic::error(
                        Code::DuplicateId,
                        self.file,
                        step.id.span,
                        format!("duplicate step id `{}`", step.id.value),
                    )
                    .with_label("used again here")
                    .with_secondary(first.id.span, "first used here")
                    .with_help("give each step its own id"),
                );
            }
        }
        let ids: Vec<&str> = steps.iter().map(|step| step.id.value.as_str()).collect();
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
        for (index, step) in steps.iter().enumerate() {
            for need in &step.needs {
                if need.value == step.id.value {
                    sound = false;
                    self.push(
                        Diagnostic::error(
                            Code::SelfNeed,
                            self.file,
                            need.span,
                            format!("step `{}` needs itself", need.value),
                        )
                        .with_label("remove this")
                        .with_help("`needs` lists the steps that must finish before this one"),
                    );
                    continue;
                }
                match self.ids.get(need.value.as_str()) {
                    Some(&target) => edges[index].push(target),
                    None => {
                        sound = false;
                        self.push(
                            Diagnostic::error(
                                Code::UnknownNeed,
                                self.file,
                                need.span,
                                format!("unknown step `{}` in `needs`", need.value),
                            )
                            .with_label("no step has this id")
                            .with_help(suggestion(
                                &need.value,
                                ids.iter().copied().filter(|id| *id != step.id.value),
                            )),
                        );
                    }
                }
            }
        }
        let graph = needs_graph(edges.iter().map(Vec::as_slice));
        let order = topological_order(&graph);
        if order.len() < steps.len() {
            sound = false;
            self.cycles(&graph, &order);
        }
        sound.then_some(order)
    }

    fn cycles(&mut self, graph: &NeedsGraph, ordered: &[usize]) {
        let steps = &self.spec.steps;
        let mut reported: BTreeSet<Vec<usize>> = BTreeSet::new();
        let mut in_order = vec![false; steps.len()];
        for &index in ordered {
            in_order[index] = true;
        }
        // A step on a cycle already reported would only find that cycle again.
        let mut on_reported = vec![false; steps.len()];
        for start in (0..steps.len()).filter(|&index| !in_order[index]) {
            if on_reported[start] {
                continue;
            }
            let Some(cycle) = find_cycle(graph, start) else { continue };
            let mut key = cycle.clone();
            key.sort_unstable();
            if !reported.insert(key) {
                continue;
            }
            for &index in &cycle {
                on_reported[index] = true;
            }
            let mut spelled: Vec<&str> = cycle.iter().map(|&index| steps[index].id.value.as_str()).collect();
            spelled.push(spelled[0]);
            let first = &steps[cycle[0]];
            let mut diagnostic = Diagnostic::error(
                Code::Cycle,
                self.file,
                need_span(first, &steps[cycle[1 % cycle.len()]].id.value).unwrap_or(first.id.span),
                format!("steps depend on each other in a cycle: {}", spelled.join(" → ")),
            )
            .with_label(format!("`{}` needs `{}`", first.id.value, steps[cycle[1 % cycle.len()]].id.value))
            .with_help("remove one of these `needs` so the steps can run in order");
            for window in 1..cycle.len() {
                let step = &steps[cycle[window]];
                let next = &steps[cycle[(window + 1) % cycle.len()]];
                let span = need_span(step, &next.id.value).unwrap_or(step.id.span);
                diagnostic =
                    diagnostic.with_secondary(span, format!("`{}` needs `{}`", step.id.value, next.id.value));
            }
            self.push(diagnostic);
        }
    }

    fn parameters(&mut self) {
        // Generating a kind's schema costs more than checking a step against it.
        let mut schemas: HashMap<StepKind, Json> = HashMap::new();
        for step in &self.spec.steps {
            let Some(kind) = step.resolved_kind else { continue };
            let empty = Node::new(Value::Map(Vec::new()), step.kind.span);
            let with = step.with.as_ref().map_or(&empty, |with| &with.0);
            let schema = schemas.entry(kind).or_insert_with(|| kind.parameters_schema());
            for problem in schema_check::check(with, schema, "with") {
                let mut diagnostic =
                    Diagnostic::error(problem.code, self.file, problem.span, problem.message)
                        .with_label(format!("in step `{}` ({})", step.id.value, kind.name()));
                if let Some(help) = problem.help {
                    diagnostic = diagnostic.with_help(help);
                }
                self.push(diagnostic);
            }
            self.kind_rules(step, kind, with);
        }
    }

    /// Rules a schema cannot say: "exactly one of", values a kind checks itself.
    fn kind_rules(&mut self, step: &StepSpec, kind: StepKind, with: &Node) {
        for (first, second) in kind.info().exclusive {
            self.exactly_one(step, kind, with, &[first, second]);
        }
        for group in kind.info().one_of {
            self.exactly_one(step, kind, with, group);
        }
        for checked in kind.info().checked_text {
            self.checked_text(step, kind, with, checked);
        }
        for rule in kind.info().requires_value {
            self.required_value(step, kind, with, rule);
        }
        for (name, help) in kind.info().non_empty {
            if let Some(Node { value: Value::List(items), span }) = with.get(name)
                && items.is_empty()
            {
                self.push(
                    Diagnostic::error(
                        Code::ParameterValue,
                        self.file,
                        *span,
                        format!("`with.{name}` is empty"),
                    )
                    .with_help(*help),
                );
            }
        }
    }

    /// Exactly one of `group` must be given.
    fn exactly_one(&mut self, step: &StepSpec, kind: StepKind, with: &Node, group: &[&str]) {
        let key_span = |name: &str| {
            with.as_map()
                .and_then(|entries| entries.iter().find(|entry| entry.key == name))
                .map(|entry| entry.key_span)
        };
        let given: Vec<&str> = group
            .iter()
            .copied()
            .filter(|name| with.get(name).is_some_and(|node| node.value != Value::Null))
            .collect();
        let quoted = |names: &[&str]| names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>();
        let listed = |names: &[&str], word: &str| {
            let mut names = quoted(names);
            let last = names.pop().unwrap_or_default();
            if names.is_empty() { last } else { format!("{} {word} {last}", names.join(", ")) }
        };
        match given.as_slice() {
            [_] => {}
            [] => {
                let label = if group.len() == 2 {
                    format!("neither `{}` nor `{}` here", group[0], group[1])
                } else {
                    format!("none of {} here", listed(group, "and"))
                };
                self.push(
                    Diagnostic::error(
                        Code::MissingParameter,
                        self.file,
                        with.span,
                        format!("step `{}` needs {}", step.id.value, listed(group, "or")),
                    )
                    .with_label(label)
                    .with_help(format!(
                        "give exactly one of {} ({})",
                        listed(group, "and"),
                        kind.name()
                    )),
                );
            }
            [first, others @ ..] => {
                let mut diagnostic = Diagnostic::error(
                    Code::ConflictingParameters,
                    self.file,
                    key_span(first).unwrap_or(with.span),
                    format!(
                        "step `{}` gives {}{}",
                        step.id.value,
                        if given.len() == 2 { "both " } else { "" },
                        listed(&given, "and")
                    ),
                )
                .with_label(format!("`{first}` here"));
                for other in others {
                    diagnostic = diagnostic
                        .with_secondary(key_span(other).unwrap_or(with.span), format!("and `{other}` here"));
                }
                self.push(diagnostic.with_help(format!(
                    "keep one of them: {} takes {}",
                    a_kind(kind),
                    listed(group, "or")
                )));
            }
        }
    }

    /// A text parameter the kind checks itself (`taken_at.key_pattern`), when it is
    /// written literally; a template is checked once rendered, at run time.
    fn checked_text(&mut self, step: &StepSpec, kind: StepKind, with: &Node, checked: &CheckedText) {
        let mut node = Some(with);
        for segment in checked.path.split('.') {
            node = node.and_then(|node| node.get(segment));
        }
        let Some(node) = node else { return };
        let Value::String(text) = &node.value else { return };
        if contains_expression(text) {
            return;
        }
        if let Err((problem, help)) = (checked.check)(text) {
            self.push(
                Diagnostic::error(
                    Code::ParameterValue,
                    self.file,
                    node.span,
                    format!("`with.{}` of step `{}`: {problem}", checked.path, step.id.value),
                )
                .with_label(format!("in step `{}` ({})", step.id.value, kind.name()))
                .with_help(help),
            );
        }
    }

    /// A parameter given without the value of another it needs (`from_s3` without
    /// `into: side`). A template there is decided at run time, where the step checks again.
    fn required_value(&mut self, step: &StepSpec, kind: StepKind, with: &Node, rule: &RequiredValue) {
        let Some(entry) = with.as_map().and_then(|entries| {
            entries.iter().find(|entry| entry.key == rule.parameter && entry.value.value != Value::Null)
        }) else {
            return;
        };
        let (other, value) = (rule.other, rule.value);
        let written = if self.file.syntax() == Some(crate::lang::source::Syntax::Toml) {
            format!("{other} = \"{value}\"")
        } else {
            format!("{other}: {value}")
        };
        let given = with.get(other).filter(|node| node.value != Value::Null);
        let diagnostic = match given.map(|node| &node.value) {
            Some(Value::String(text)) if text == value || contains_expression(text) => return,
            Some(_) => Diagnostic::error(
                Code::ConflictingParameters,
                self.file,
                entry.key_span,
                format!("step `{}` gives `{}` but not `{written}`", step.id.value, rule.parameter),
            )
            .with_label(format!("`{}` needs `{written}`", rule.parameter))
            .with_secondary(
                given.map_or(with.span, |node| node.span),
                format!("`{other}` is not `{value}` here"),
            ),
            None => Diagnostic::error(
                Code::MissingParameter,
                self.file,
                entry.key_span,
                format!("step `{}` gives `{}` but not `{written}`", step.id.value, rule.parameter),
            )
            .with_label(format!("`{}` needs `{written}`", rule.parameter)),
        };
        self.push(diagnostic.with_help(format!(
            "add `{written}` to this step ({}): {}",
            kind.name(),
            rule.why
        )));
    }

    /// `undo: true` must name a compensation that exists: a kind without one would
    /// print "undone" at 3 AM for a step nothing reverted.
    fn undo(&mut self) {
        let toml_syntax = self.file.syntax() == Some(crate::lang::source::Syntax::Toml);
        for step in &self.spec.steps {
            let Some(kind) = step.resolved_kind else { continue };
            let Some(undo) = step.undo.as_ref().filter(|undo| undo.value) else { continue };
            if kind.info().undo.is_none() {
                let able: Vec<&str> = self
                    .spec
                    .kinds
                    .iter()
                    .copied()
                    .filter(|other| other.info().undo.is_some())
                    .map(StepKind::name)
                    .collect();
                self.push(
                    Diagnostic::error(
                        Code::Undo,
                        self.file,
                        undo.span,
                        format!("step `{}` has `undo: true`, but {} cannot be undone", step.id.value, a_kind(kind)),
                    )
                    .with_label(format!("{} has no undo", a_kind(kind)))
                    .with_help(format!(
                        "remove `undo`; only {} steps can undo (an `exec` step runs the command in its `with.undo`)",
                        able.join(", ")
                    )),
                );
                continue;
            }
            let Some(parameter) = kind.info().undo_parameter else { continue };
            let command = step.with.as_ref().and_then(|with| with.0.get(parameter));
            match command {
                None | Some(Node { value: Value::Null, .. }) => {
                    let example = if toml_syntax {
                        "add the command that reverts this one under `with`, e.g. `undo = [\"helm\", \"rollback\", \"api\"]`, or remove `undo = true`"
                    } else {
                        "add the command that reverts this one under `with:`, e.g. `undo: [helm, rollback, api]`, or remove `undo: true`"
                    };
                    self.push(
                        Diagnostic::error(
                            Code::Undo,
                            self.file,
                            undo.span,
                            format!(
                                "{} step `{}` has `undo: true` but no `with.{parameter}` command",
                                kind.name(),
                                step.id.value
                            ),
                        )
                        .with_label("nothing to run on undo")
                        .with_help(example),
                    );
                }
                Some(Node { value: Value::List(items), span }) if items.is_empty() => self.push(
                    Diagnostic::error(Code::ParameterValue, self.file, *span, format!("`with.{parameter}` is empty"))
                        .with_help("give the program and its arguments that revert this step, e.g. [helm, rollback, api]"),
                ),
                Some(_) => {}
            }
        }
    }

    fn templates(&mut self) {
        let steps = self.spec.steps.as_slice();
        // Direct needs that name a step; unknown ones were reported by `graph`.
        let direct = self.direct_needs();
        let mut ancestry = Ancestry::new(&direct);
        for (index, step) in steps.iter().enumerate() {
            if let Some(with) = &step.with {
                let mut strings = Vec::new();
                collect_strings(&with.0, &mut strings);
                for (text, span) in strings {
                    self.template(text, span, index, &mut ancestry);
                }
            }
            if let Some(when) = &step.when {
                self.when(when, index, &mut ancestry);
            }
        }
    }

    fn when(&mut self, when: &Located<String>, index: usize, ancestors: &mut Ancestry) {
        let literal = matches!(when.value.trim(), "true" | "false");
        if !literal && !crate::lang::template::contains_expression(&when.value) {
            self.push(
                Diagnostic::error(
                    Code::When,
                    self.file,
                    when.span,
                    "`when` must be a template that renders to true or false",
                )
                .with_label("not a template")
                .with_help(
                    "write e.g. `when: \"{{not run.drill}}\"` or `when: \"{{eq inputs.region 'eu'}}\"`",
                ),
            );
            return;
        }
        self.template(&when.value, when.span, index, ancestors);
    }

    fn template(&mut self, text: &str, span: Span, index: usize, ancestors: &mut Ancestry) {
        if !crate::lang::template::contains_expression(text) {
            return;
        }
        let base = content_offset(self.file, span, text);
        let written = self.file.slice(span);
        // Where the file holds the string verbatim, offsets map directly; otherwise
        // (escapes, folding) find the expression's own text in what is written.
        let locate = |range: &std::ops::Range<usize>| match base {
            Some(base) => Span::new(base + range.start, base + range.end),
            None => match text
                .get(range.clone())
                .filter(|part| !part.is_empty())
                .and_then(|part| written.find(part).map(|at| (at, part.len())))
            {
                Some((at, length)) => Span::new(span.start + at, span.start + at + length),
                None => span,
            },
        };
        let template = match Template::parse(text) {
            Ok(template) => template,
            Err(error) => {
                let mut diagnostic = Diagnostic::error(
                    Code::Template,
                    self.file,
                    locate(&error.range),
                    format!("invalid template: {}", error.message),
                )
                .with_label("here");
                diagnostic = diagnostic.with_help(
                    error.help.unwrap_or_else(|| "templates look like `{{vars.name}}`".to_owned()),
                );
                self.push(diagnostic);
                return;
            }
        };
        for reference in template.references() {
            if let Some((message, help)) = self.reference_problem(&reference.path, index, ancestors) {
                let label = if message.contains("does not need it") {
                    "read before it is known"
                } else if message.contains("reads its own output") {
                    "its own output"
                } else {
                    "unknown reference"
                };
                self.push(
                    Diagnostic::error(Code::Reference, self.file, locate(&reference.range), message)
                        .with_label(label)
                        .with_help(help),
                );
            }
        }
    }

    fn reference_problem(
        &self,
        path: &[String],
        index: usize,
        ancestors: &mut Ancestry,
    ) -> Option<(String, String)> {
        let spec = self.spec;
        let written = path.join(".");
        let root = path[0].as_str();
        let name = path.get(1).map(String::as_str);
        match root {
            "vars" => name_problem(&written, name, "vars", &self.vars, spec.vars.names()),
            "inputs" => name_problem(&written, name, "inputs", &self.inputs, spec.inputs.names()),
            "secrets" => name_problem(&written, name, "secrets", &self.secrets, spec.secrets.names()),
            "run" => match name {
                Some(field) if !RUN_FIELDS.contains(&field) => Some((
                    format!("unknown run field `{field}` in `{written}`"),
                    suggestion(field, RUN_FIELDS.iter().copied()),
                )),
                Some(_) => None,
                None => Some((
                    format!("`{written}` needs a field"),
                    format!("run fields: {}", RUN_FIELDS.join(", ")),
                )),
            },
            "steps" => self.output_problem(path, index, ancestors),
            other => Some((
                format!("unknown template root `{other}` in `{written}`"),
                suggestion(other, TEMPLATE_ROOTS.iter().copied()),
            )),
        }
    }

    fn output_problem(
        &self,
        path: &[String],
        index: usize,
        ancestors: &mut Ancestry,
    ) -> Option<(String, String)> {
        let steps = &self.spec.steps;
        let written = path.join(".");
        let Some(id) = path.get(1) else {
            return Some((
                format!("`{written}` needs a step id"),
                "write `steps.ID.outputs.NAME`".to_owned(),
            ));
        };
        let Some(&target) = self.ids.get(id.as_str()) else {
            return Some((
                format!("unknown step `{id}` in `{written}`"),
                suggestion(id, steps.iter().map(|step| step.id.value.as_str())),
            ));
        };
        if path.get(2).map(String::as_str) != Some("outputs") || path.len() < 4 {
            return Some((
                format!("`{written}` does not name an output"),
                format!("write `steps.{id}.outputs.NAME`"),
            ));
        }
        let output = &path[3];
        if let Some(kind) = steps[target].resolved_kind
            && !kind.has_output(output)
        {
            let names: Vec<&str> = kind.info().outputs.iter().map(|output| output.name).collect();
            let help = if names.is_empty() {
                format!("{} steps have no outputs", kind.name())
            } else {
                suggestion(output, names.iter().copied())
            };
            return Some((format!("{} step `{id}` has no output `{output}`", kind.name()), help));
        }
        if target == index {
            return Some((
                format!("step `{id}` reads its own output"),
                "a step can only read outputs of steps it needs".to_owned(),
            ));
        }
        if !ancestors.needs(index, target) {
            return Some((
                format!("step `{}` reads an output of `{id}` but does not need it", steps[index].id.value),
                format!("add `{id}` to this step's `needs`, so it runs first"),
            ));
        }
        None
    }
}

/// What is wrong with `written` (`vars.NAME`...), whose second segment is `name`,
/// when `declared` does not hold it; `names` in order, for the suggestion.
fn name_problem<'n>(
    written: &str,
    name: Option<&str>,
    section: &str,
    declared: &HashSet<&str>,
    names: impl Iterator<Item = &'n str> + Clone,
) -> Option<(String, String)> {
    match name {
        None => Some((format!("`{written}` needs a name"), format!("write `{section}.NAME`"))),
        Some(name) if declared.contains(name) => None,
        Some(name) => Some((
            format!("unknown {} `{name}` in `{written}`", section.trim_end_matches('s')),
            if declared.is_empty() {
                format!("declare it under `{section}:`")
            } else {
                format!("{} (or declare it under `{section}:`)", suggestion(name, names))
            },
        )),
    }
}

/// Answers "does this step need that one, directly or not?" for template references,
/// without building every step's set of ancestors (quadratic in a long chain).
struct Ancestry {
    /// Direct needs of each step.
    needs: NeedsGraph,
    /// Answers found so far, `(step, target)`; shared by later questions about the
    /// same target, so a chain whose every step reads the first is still linear.
    known: HashMap<(usize, usize), bool>,
    /// Whether the needs form no cycle: only then is a memoised "no" final.
    acyclic: bool,
    /// Steps seen by the current search of a graph with cycles.
    seen: DfsSpace<NodeIndex, <NeedsGraph as Visitable>::Map>,
}

impl Ancestry {
    fn new(needs: &[Vec<usize>]) -> Ancestry {
        let needs = needs_graph(needs.iter().map(Vec::as_slice));
        let acyclic = toposort(&needs, None).is_ok();
        let seen = DfsSpace::new(&needs);
        Ancestry { needs, known: HashMap::new(), acyclic, seen }
    }

    /// Whether `step` needs `target`, directly or through other steps.
    fn needs(&mut self, step: usize, target: usize) -> bool {
        if self.acyclic { self.needs_memoised(step, target) } else { self.needs_searched(step, target) }
    }

    /// Depth-first through needs, remembering the answer for every step it settles:
    /// in a DAG a step whose needs all lack `target` lacks it for good.
    fn needs_memoised(&mut self, step: usize, target: usize) -> bool {
        if let Some(&known) = self.known.get(&(step, target)) {
            return known;
        }
        // (step, its needs not looked at yet)
        let mut stack = vec![(step, self.needs.neighbors(NodeIndex::new(step)))];
        while let Some((current, needs)) = stack.last_mut() {
            let Some(need) = needs.next().map(NodeIndex::index) else {
                self.known.insert((*current, target), false);
                stack.pop();
                continue;
            };
            let reached = need == target || self.known.get(&(need, target)) == Some(&true);
            if reached {
                // Every step on the stack needs the one above it, so all reach `target`.
                for (on_path, _) in stack {
                    self.known.insert((on_path, target), true);
                }
                return true;
            }
            if !self.known.contains_key(&(need, target)) {
                stack.push((need, self.needs.neighbors(NodeIndex::new(need))));
            }
        }
        false
    }

    /// A plain search, for graphs with cycles (already reported; templates are still
    /// checked so every problem shows at once). `step` is never `target`.
    fn needs_searched(&mut self, step: usize, target: usize) -> bool {
        has_path_connecting(&self.needs, NodeIndex::new(step), NodeIndex::new(target), Some(&mut self.seen))
    }
}

/// Kahn's algorithm; ties broken by source order so the order is stable. (petgraph's
/// `toposort` and `Topo` break ties otherwise, and this order is the order of steps in
/// dry-runs and runs.) The steps left out are those on a cycle or needing one.
fn topological_order(graph: &NeedsGraph) -> Vec<usize> {
    let mut remaining: Vec<usize> = graph.node_indices().map(|step| graph.neighbors(step).count()).collect();
    let mut ready: BTreeSet<usize> = (0..remaining.len()).filter(|&step| remaining[step] == 0).collect();
    let mut order = Vec::with_capacity(remaining.len());
    while let Some(next) = ready.pop_first() {
        order.push(next);
        for dependent in graph.neighbors_directed(NodeIndex::new(next), Incoming).map(NodeIndex::index) {
            remaining[dependent] -= 1;
            if remaining[dependent] == 0 {
                ready.insert(dependent);
            }
        }
    }
    order
}

/// A cycle reachable from `start`, as step indices in need order: the first one a
/// depth-first walk (needs in the order written) meets. Iterative, so a cycle through
/// thousands of steps cannot overflow the stack (petgraph's `depth_first_search`, which
/// reports back edges, recurses).
fn find_cycle(graph: &NeedsGraph, start: usize) -> Option<Vec<usize>> {
    // Position of each step on the current path, if it is on it.
    let mut on_path: Vec<Option<usize>> = vec![None; graph.node_count()];
    let mut visited = vec![false; graph.node_count()];
    // (step, its needs not followed yet)
    let mut path = vec![(start, graph.neighbors(NodeIndex::new(start)))];
    on_path[start] = Some(0);
    while let Some((current, needs)) = path.last_mut() {
        let Some(next) = needs.next().map(NodeIndex::index) else {
            on_path[*current] = None;
            path.pop();
            continue;
        };
        if let Some(position) = on_path[next] {
            return Some(path[position..].iter().map(|&(step, _)| step).collect());
        }
        if !std::mem::replace(&mut visited[next], true) {
            on_path[next] = Some(path.len());
            path.push((next, graph.neighbors(NodeIndex::new(next))));
        }
    }
    None
}

/// "an exec step", "a sleep step": the kind with its article.
fn a_kind(kind: StepKind) -> String {
    let name = kind.name();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {name} step")
}

fn need_span(step: &StepSpec, id: &str) -> Option<Span> {
    step.needs.iter().find(|need| need.value == id).map(|need| need.span)
}

fn collect_strings<'n>(node: &'n Node, out: &mut Vec<(&'n str, Span)>) {
    match &node.value {
        Value::String(text) => out.push((text, node.span)),
        Value::List(items) => items.iter().for_each(|item| collect_strings(item, out)),
        Value::Map(entries) => entries.iter().for_each(|entry| collect_strings(&entry.value, out)),
        Value::Null | Value::Bool(_) | Value::Integer(_) | Value::Float(_) => {}
    }
}

/// Where the text of a string value starts in the file (after an opening quote), when
/// the file holds it verbatim; `None` when escapes or folding changed it.
fn content_offset(file: &SourceFile, span: Span, text: &str) -> Option<usize> {
    let written = file.slice(span);
    if written == text {
        return Some(span.start);
    }
    let quoted = written.len() >= 2
        && ((written.starts_with('"') && written.ends_with('"'))
            || (written.starts_with('\'') && written.ends_with('\'')));
    (quoted && &written[1..written.len() - 1] == text).then_some(span.start + 1)
}

fn assemble(spec: &PlanSpec, order: &[usize]) -> Vec<Step> {
    // Position in `order` of each step, by id (ids are unique in a valid plan).
    let mut position_of: HashMap<&str, usize> = HashMap::with_capacity(order.len());
    for (position, &spec_index) in order.iter().enumerate() {
        position_of.insert(spec.steps[spec_index].id.value.as_str(), position);
    }
    let mut steps: Vec<Step> = Vec::with_capacity(order.len());
    for &spec_index in order {
        let step = &spec.steps[spec_index];
        let needs: Vec<usize> =
            step.needs.iter().filter_map(|need| position_of.get(need.value.as_str()).copied()).collect();
        let stage = needs.iter().map(|&need| steps[need].stage + 1).max().unwrap_or(0);
        let with = step
            .with
            .as_ref()
            .map_or_else(|| Node::new(Value::Map(Vec::new()), step.span), |with| with.0.clone());
        let retry_backoff =
            step.retry.as_ref().and_then(|retry| retry.backoff.as_ref()).map(|backoff| backoff.value.get());
        steps.push(Step {
            id: step.id.value.clone(),
            kind: step.resolved_kind.expect("validated"),
            needs,
            with,
            when: step.when.as_ref().and_then(|when| Template::parse(&when.value).ok()),
            timeout: step.timeout.as_ref().map(|timeout| timeout.value.get()),
            attempts: step.retry.as_ref().map_or(1, |retry| retry.attempts.value.max(1)),
            backoff: retry_backoff.unwrap_or(Duration::from_secs(5)),
            undo: step.undo.as_ref().is_some_and(|undo| undo.value),
            estimate: step.estimate.as_ref().map(|estimate| estimate.value.get()),
            description: step.description.as_ref().map(|description| description.value.clone()),
            on_failure: step.on_failure.as_ref().map_or(OnFailure::Abort, |on_failure| on_failure.value),
            spec_index,
            stage,
        });
    }
    steps
}

/// The rendered JSON of a literal (template-free) node, e.g. a var's value.
#[must_use]
pub fn literal_json(node: &Node) -> Json {
    node.to_json()
}

/// Reads, parses, decodes and validates a plan file.
///
/// # Errors
/// Every problem found, located; an unreadable file gives one diagnostic naming it.
pub fn load_plan(path: &std::path::Path, kinds: Catalog) -> Result<Plan, Vec<Diagnostic>> {
    plan_from_source(&SourceFile::read(path).map_err(|problem| vec![problem])?, kinds)
}

/// Parses, decodes and validates plan text.
///
/// # Errors
/// Every problem found, located.
pub fn plan_from_source(file: &Arc<SourceFile>, kinds: Catalog) -> Result<Plan, Vec<Diagnostic>> {
    let root = crate::lang::load::load(file).map_err(|problems| capped(file, problems))?;
    let (spec, problems) = crate::lang::spec::decode(file, &root, kinds);
    match spec {
        Some(spec) => Plan::build(spec, problems).map_err(|problems| capped(file, problems)),
        None => Err(capped(file, problems)),
    }
}

/// At most this many diagnostics are reported for one file.
pub const MAX_DIAGNOSTICS: usize = 100;

/// The first [`MAX_DIAGNOSTICS`] problems and one line saying how many more there are: a
/// hostile file with 50,000 duplicate keys must not print 65 MB (or take minutes to
/// render), and nobody reads past the first hundred.
fn capped(file: &SourceFile, mut problems: Vec<Diagnostic>) -> Vec<Diagnostic> {
    if problems.len() > MAX_DIAGNOSTICS {
        let more = problems.len() - MAX_DIAGNOSTICS;
        problems.truncate(MAX_DIAGNOSTICS);
        problems.push(
            Diagnostic::about_path(
                Code::TooManyProblems,
                file.name(),
                format!("{more} more problems are not shown (the first {MAX_DIAGNOSTICS} are)"),
            )
            .with_help("fix these first, then validate again"),
        );
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<Diagnostic> {
        plan_from_source(&SourceFile::new("p.yaml", text), crate::kinds::CATALOG)
            .expect_err("plan should be invalid")
    }

    fn codes(text: &str) -> Vec<&'static str> {
        problems(text).iter().map(|problem| problem.code).collect()
    }

    const HEAD: &str = "version: 1\nname: t\n";

    #[test]
    fn a_cycle_is_spelled_out_and_every_step_labelled() {
        let text = format!(
            "{HEAD}steps:\n  - {{ id: a, kind: sleep, needs: [c], with: {{ duration: 1s }} }}\n  - {{ id: b, kind: sleep, needs: [a], with: {{ duration: 1s }} }}\n  - {{ id: c, kind: sleep, needs: [b], with: {{ duration: 1s }} }}\n"
        );
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("a → c → b → a"), "{}", found[0].message);
        assert_eq!(found[0].labels.len(), 3);
    }

    #[test]
    fn references_must_name_declared_things_and_needed_steps() {
        let text = format!(
            "{HEAD}vars: {{ namespace: x }}\nsteps:\n  - {{ id: a, kind: exec, with: {{ command: [echo, \"{{{{vars.namespce}}}}\"] }} }}\n  - {{ id: b, kind: exec, with: {{ command: [echo, \"{{{{steps.a.outputs.stdout}}}}\"] }} }}\n  - {{ id: c, kind: exec, needs: [a], with: {{ command: [echo, \"{{{{steps.a.outputs.stdot}}}}\"] }} }}\n"
        );
        let found = problems(&text);
        let messages: Vec<&str> = found.iter().map(|problem| problem.message.as_str()).collect();
        assert_eq!(found.len(), 3, "{messages:?}");
        assert!(found[0].help.as_deref().unwrap().contains("namespace"));
        assert!(messages[1].contains("does not need it"));
        assert!(found[2].help.as_deref().unwrap().contains("stdout"));
        let reference = &found[0];
        assert_eq!(
            reference.file.as_ref().unwrap().slice(reference.primary_span().unwrap()),
            "vars.namespce"
        );
    }

    #[test]
    fn duplicate_ids_and_unknown_needs() {
        let text = format!(
            "{HEAD}steps:\n  - {{ id: a, kind: sleep, with: {{ duration: 1s }} }}\n  - {{ id: a, kind: sleep, needs: [b], with: {{ duration: 1s }} }}\n"
        );
        assert_eq!(codes(&text), ["duplicate-id", "unknown-need"]);
    }

    #[test]
    fn a_valid_plan_is_ordered_in_stages() {
        let text = format!(
            "{HEAD}steps:\n  - {{ id: c, kind: sleep, needs: [a, b], with: {{ duration: 1s }} }}\n  - {{ id: a, kind: sleep, with: {{ duration: 1s }} }}\n  - {{ id: b, kind: sleep, with: {{ duration: 1s }} }}\n"
        );
        let plan = plan_from_source(&SourceFile::new("p.yaml", text), crate::kinds::CATALOG).unwrap();
        let ids: Vec<&str> = plan.steps.iter().map(|step| step.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(plan.stages(), vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn ancestors_are_the_steps_needed_directly_or_not() {
        let text = format!(
            "{HEAD}steps:\n  - {{ id: a, kind: sleep, with: {{ duration: 1s }} }}\n  - {{ id: b, kind: sleep, needs: [a], with: {{ duration: 1s }} }}\n  - {{ id: x, kind: sleep, with: {{ duration: 1s }} }}\n  - {{ id: c, kind: sleep, needs: [b, b], with: {{ duration: 1s }} }}\n"
        );
        let plan = plan_from_source(&SourceFile::new("p.yaml", text), crate::kinds::CATALOG).unwrap();
        let ids = |indices: BTreeSet<usize>| -> Vec<&str> {
            indices.into_iter().map(|index| plan.steps[index].id.as_str()).collect()
        };
        assert_eq!(ids(plan.ancestors(plan.index_of("c").unwrap())), ["a", "b"]);
        assert!(plan.ancestors(plan.index_of("x").unwrap()).is_empty());
    }

    #[test]
    fn ancestry_answers_through_long_chains_and_across_branches() {
        // 0 ← 1 ← 2 ← 3, and 4 needs only 0: a diamond-free fork.
        let needs = vec![vec![], vec![0], vec![1], vec![2], vec![0]];
        let mut ancestry = Ancestry::new(&needs);
        assert!(ancestry.needs(3, 0));
        assert!(ancestry.needs(2, 0), "answered from what the first question settled");
        assert!(!ancestry.needs(4, 3));
        assert!(!ancestry.needs(0, 4));
        // With a cycle (already reported), answers are still right.
        let cyclic = vec![vec![2], vec![0], vec![1], vec![]];
        let mut ancestry = Ancestry::new(&cyclic);
        assert!(ancestry.needs(0, 1));
        assert!(!ancestry.needs(0, 3));
    }

    #[test]
    fn a_long_chain_reading_its_first_step_and_a_long_cycle_are_checked() {
        let count = 3000;
        let mut text = format!("{HEAD}steps:\n  - {{ id: s0, kind: exec, with: {{ command: [echo] }} }}\n");
        for index in 1..count {
            text.push_str(&format!(
                "  - {{ id: s{index}, kind: exec, needs: [s{}], with: {{ command: [echo, \"{{{{steps.s0.outputs.stdout}}}}\"] }} }}\n",
                index - 1
            ));
        }
        let plan =
            plan_from_source(&SourceFile::new("p.yaml", text.clone()), crate::kinds::CATALOG).expect("valid");
        assert_eq!(plan.steps.len(), count);
        // Closing the chain into one cycle through every step: one diagnostic, no
        // stack overflow.
        let cycle =
            text.replacen("id: s0, kind: exec,", &format!("id: s0, kind: exec, needs: [s{}],", count - 1), 1);
        let found = problems(&cycle);
        assert_eq!(found.iter().map(|problem| problem.code).collect::<Vec<_>>(), ["cycle"]);
    }
}
