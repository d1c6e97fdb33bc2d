//! What the rules need to know about a plan, computed once: every template reference
//! each step makes (with its exact span), the parameters as JSON, values known before
//! the run (literals, vars, input defaults), and where each step's data comes from.

use std::ops::Range;
use std::sync::Arc;

use serde_json::Value as Json;

use super::Rule;
use crate::lang::diagnostic::Diagnostic;
use crate::lang::kind::{Role, StepKind};
use crate::lang::node::{Node, Value};
use crate::lang::plan::Plan;
use crate::lang::source::{SourceFile, Span};
use crate::lang::template::{Lookup, Template, contains_expression};

/// A template reference made by a step.
#[derive(Clone, Debug)]
pub(super) struct Use {
    /// The dot-separated path (`steps.fetch.outputs.path`).
    pub path: Vec<String>,
    /// The reference text in the file (the whole string when it cannot be pinpointed).
    pub span: Span,
    /// The top-level `with` parameter it sits in; `None` for `when`.
    pub parameter: Option<String>,
}

/// Where the data a step produces comes from, as far as the plan shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Provenance {
    /// Downloaded without a checksum by the `s3.fetch` at this index, or made from
    /// such a download.
    Unverified {
        /// Index of the `s3.fetch` with `checksum: none`.
        origin: usize,
    },
    /// A checksum-verified `s3.fetch`, a `pg.dump` of this run, or made from one.
    Verified,
    /// Neither: nothing in the plan vouches for it.
    Unknown,
}

/// The facts of one plan.
pub(super) struct Facts<'p> {
    /// The plan.
    pub plan: &'p Plan,
    /// Its file.
    pub file: &'p Arc<SourceFile>,
    /// References made by each step (index into [`Plan::steps`]), in source order.
    pub uses: Vec<Vec<Use>>,
    /// Each step's parameters as written, as JSON.
    pub parameters: Vec<Json>,
    /// Where each step's outputs come from.
    pub provenance: Vec<Provenance>,
}

impl<'p> Facts<'p> {
    /// Gathers the facts of `plan`.
    pub fn new(plan: &'p Plan) -> Facts<'p> {
        let file = &plan.file;
        let uses: Vec<Vec<Use>> = plan
            .steps
            .iter()
            .map(|step| {
                let mut found = Vec::new();
                if let Some(entries) = step.with.as_map() {
                    for entry in entries {
                        collect_uses(file, &entry.value, Some(&entry.key), &mut found);
                    }
                }
                if let Some(when) = &plan.spec_of(step).when {
                    let node = Node::new(Value::String(when.value.clone()), when.span);
                    collect_uses(file, &node, None, &mut found);
                }
                found
            })
            .collect();
        let parameters = plan.steps.iter().map(|step| step.with.to_json()).collect();
        let mut facts = Facts { plan, file, uses, parameters, provenance: Vec::new() };
        facts.provenance = facts.trace_provenance();
        facts
    }

    /// The index of the step whose output `reference` reads, if it reads one.
    pub fn step_read(&self, reference: &Use) -> Option<usize> {
        match reference.path.as_slice() {
            [root, id, outputs, _, ..] if root == "steps" && outputs == "outputs" => self.plan.index_of(id),
            _ => None,
        }
    }

    /// The value of a parameter when it is known before the run: a literal, or a
    /// template over vars and input defaults only.
    pub fn resolve(&self, node: &Node) -> Option<Json> {
        let Some(text) = node.as_str().filter(|text| contains_expression(text)) else {
            return Some(node.to_json());
        };
        let template = Template::parse(text).ok()?;
        let rendered = template.render(&|path| self.lookup(path));
        let known = !rendered.unknown && rendered.missing.is_empty() && rendered.errors.is_empty();
        known.then_some(rendered.value)
    }

    /// Whether a parameter is known to be true before the run.
    pub fn resolves_true(&self, node: Option<&Node>) -> bool {
        match node.and_then(|node| self.resolve(node)) {
            Some(Json::Bool(value)) => value,
            Some(Json::String(text)) => text == "true",
            Some(Json::Null | Json::Number(_) | Json::Array(_) | Json::Object(_)) | None => false,
        }
    }

    /// A parameter known before the run, as text (`tododb`), else as written.
    pub fn display(&self, node: &Node) -> String {
        match self.resolve(node) {
            Some(Json::String(text)) => text,
            Some(other) => other.to_string(),
            None => self.file.slice(node.span).to_owned(),
        }
    }

    /// The span of a step's id.
    pub fn id_span(&self, index: usize) -> Span {
        self.plan.spec_of(&self.plan.steps[index]).id.span
    }

    /// The id of a step.
    pub fn id(&self, index: usize) -> &str {
        &self.plan.steps[index].id
    }

    /// The kind of a step.
    pub fn kind(&self, index: usize) -> StepKind {
        self.plan.steps[index].kind
    }

    /// A top-level parameter of a step.
    pub fn parameter(&self, index: usize, name: &str) -> Option<&'p Node> {
        self.plan.steps[index].with.get(name)
    }

    /// Whether the step changes or removes something.
    pub fn is_destructive(&self, index: usize) -> bool {
        self.kind(index).is_destructive(&self.parameters[index])
    }

    /// The `checksum` value of an `s3.fetch` that is known to be `none`.
    pub fn disabled_checksum(&self, index: usize) -> Option<&'p Node> {
        let Role::Fetch { checksum } = self.kind(index).info().role else {
            return None;
        };
        let checksum = self.parameter(index, checksum)?;
        (self.resolve(checksum)? == Json::String("none".to_owned())).then_some(checksum)
    }

    /// The span of `range` (a byte range of `text`, the value of `node`) in the file.
    pub fn locate(&self, node: &Node, text: &str, range: &Range<usize>) -> Span {
        locate(self.file, node.span, text, range)
    }

    /// A lint warning at `span`.
    pub fn warning(&self, rule: Rule, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::finding(rule.code(), self.file, span, message)
    }

    fn lookup(&self, path: &[String]) -> Lookup {
        let spec = &self.plan.spec;
        let name = path.get(1).map(String::as_str).unwrap_or_default();
        let value = match path.first().map(String::as_str) {
            Some("vars") => spec.vars.get(name).map(|value| value.0.to_json()),
            Some("inputs") => {
                spec.inputs.get(name).and_then(|input| input.default.as_ref()).map(|value| value.0.to_json())
            }
            Some(_) | None => None,
        };
        let value = value.and_then(|value| {
            path.iter().skip(2).try_fold(value, |value, segment| value.get(segment).cloned())
        });
        match value {
            // A var holding a template is not rendered by the engine either.
            Some(Json::String(text)) if contains_expression(&text) => unknown(),
            Some(value) => Lookup::Value(value),
            None => unknown(),
        }
    }

    fn trace_provenance(&self) -> Vec<Provenance> {
        let mut provenance: Vec<Provenance> = Vec::with_capacity(self.plan.steps.len());
        // Steps are in topological order: everything a step reads is traced before it.
        for (index, step) in self.plan.steps.iter().enumerate() {
            let traced = if self.disabled_checksum(index).is_some() {
                Provenance::Unverified { origin: index }
            } else if matches!(step.kind.info().role, Role::Fetch { .. } | Role::Backup { .. }) {
                Provenance::Verified
            } else {
                let read: Vec<Provenance> = self.uses[index]
                    .iter()
                    .filter(|reference| reference.parameter.is_some())
                    .filter_map(|reference| self.step_read(reference))
                    .map(|source| provenance[source])
                    .collect();
                read.iter()
                    .copied()
                    .find(|source| matches!(source, Provenance::Unverified { .. }))
                    .or_else(|| read.contains(&Provenance::Verified).then_some(Provenance::Verified))
                    .unwrap_or(Provenance::Unknown)
            };
            provenance.push(traced);
        }
        provenance
    }
}

fn unknown() -> Lookup {
    Lookup::Unknown { placeholder: "<run time>".to_owned() }
}

fn collect_uses(file: &SourceFile, node: &Node, parameter: Option<&str>, out: &mut Vec<Use>) {
    match &node.value {
        Value::String(text) => {
            if !contains_expression(text) {
                return;
            }
            let Ok(template) = Template::parse(text) else { return };
            for reference in template.references() {
                out.push(Use {
                    path: reference.path.clone(),
                    span: locate(file, node.span, text, &reference.range),
                    parameter: parameter.map(str::to_owned),
                });
            }
        }
        Value::List(items) => {
            for item in items {
                collect_uses(file, item, parameter, out);
            }
        }
        Value::Map(entries) => {
            for entry in entries {
                collect_uses(file, &entry.value, parameter, out);
            }
        }
        Value::Null | Value::Bool(_) | Value::Integer(_) | Value::Float(_) => {}
    }
}

/// Where `range` of a string value lies in the file: exact when the file holds the
/// value verbatim (plain or simply quoted), else the whole value.
pub(super) fn locate(file: &SourceFile, span: Span, text: &str, range: &Range<usize>) -> Span {
    let written = file.slice(span);
    let base =
        if written == text { Some(span.start) } else { written.find(text).map(|offset| span.start + offset) };
    match base {
        Some(base) => Span::new(base + range.start, base + range.end),
        None => span,
    }
}
