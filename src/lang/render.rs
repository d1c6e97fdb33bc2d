//! Rendering a step's templates against the run's context. The dry-run and the run use
//! the same code: the dry-run shows outputs of steps that have not run as named
//! placeholders and secrets as `***`; the run has the real values.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use crate::lang::node::{Entry, Node, Value};
use crate::lang::plan::{Plan, Step};
use crate::lang::schema_check;
use crate::lang::secret::SecretValue;
use crate::lang::template::{Lookup, Template, truthy};

/// Whether values come from a real run or are only predicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing runs: unknown outputs are placeholders, secrets are `***`.
    DryRun,
    /// Real values.
    Run,
}

/// Everything a template can read.
#[derive(Clone, Debug)]
pub struct Context {
    /// Dry-run or run.
    pub mode: Mode,
    /// `vars.*`
    pub vars: Map<String, Json>,
    /// `inputs.*`
    pub inputs: Map<String, Json>,
    /// `secrets.*` (resolved only in a run).
    pub secrets: BTreeMap<String, SecretValue>,
    /// `run.*`
    pub run: Map<String, Json>,
    /// `steps.<id>.outputs` of finished steps.
    pub outputs: BTreeMap<String, Json>,
    /// Step id → outputs a resumed run does not have: they held a secret value, which
    /// the journal keeps redacted.
    pub withheld: BTreeMap<String, Vec<String>>,
}

/// A template that could not be rendered at run time.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

impl Context {
    fn lookup(&self, path: &[String]) -> Lookup {
        let name = path.get(1).map(String::as_str).unwrap_or_default();
        let found = match path[0].as_str() {
            "vars" => self.vars.get(name).cloned(),
            "inputs" => self.inputs.get(name).cloned(),
            "run" => self.run.get(name).cloned(),
            "secrets" => {
                return match (self.mode, self.secrets.get(name)) {
                    (Mode::Run, Some(secret)) => Lookup::Value(Json::String(secret.expose().to_owned())),
                    (Mode::DryRun, _) => Lookup::Value(Json::String("***".to_owned())),
                    (Mode::Run, None) => Lookup::Missing,
                };
            }
            "steps" => match self.outputs.get(name) {
                Some(outputs) => {
                    path[3..].iter().try_fold(outputs, |value, segment| child(value, segment)).cloned()
                }
                None if self.mode == Mode::DryRun => {
                    return Lookup::Unknown { placeholder: format!("<{name}.{}>", path[3..].join(".")) };
                }
                None => None,
            },
            _ => None,
        };
        let Some(mut value) = found else { return Lookup::Missing };
        if !matches!(path[0].as_str(), "steps") {
            for segment in &path[2..] {
                match child(&value, segment) {
                    Some(inner) => value = inner.clone(),
                    None => return Lookup::Missing,
                }
            }
        }
        Lookup::Value(value)
    }

    /// Renders every string of `node`. Returns the value and whether it holds placeholders.
    ///
    /// # Errors
    /// A reference with no value (a skipped step's output, a missing key).
    pub fn render_node(&self, node: &Node) -> Result<(Json, bool), RenderError> {
        match &node.value {
            // Every string with `{{` goes through the template, also when each one is
            // escaped (`\{{`): the escape then renders as a literal `{{`.
            Value::String(text) if text.contains("{{") => {
                let template = Template::parse(text).map_err(|error| RenderError(error.message))?;
                let rendered = template.render(&|path| self.lookup(path));
                if let Some(path) = rendered.missing.first() {
                    if let [root, step, _, output, ..] = path.as_slice()
                        && root == "steps"
                        && self.withheld.get(step).is_some_and(|names| names.contains(output))
                    {
                        return Err(RenderError(format!(
                            "`{}` held a secret value, which the journal keeps redacted, so this resumed run \
                             does not have it; read the secret itself (`{{{{secrets.NAME}}}}`) in this step, or \
                             start a new run",
                            path.join(".")
                        )));
                    }
                    return Err(RenderError(format!(
                        "`{}` has no value (the step that produces it was skipped or did not produce it)",
                        path.join(".")
                    )));
                }
                if let Some(error) = rendered.errors.first() {
                    return Err(RenderError(error.message.clone()));
                }
                Ok((rendered.value, rendered.unknown))
            }
            Value::List(items) => {
                let mut unknown = false;
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let (value, item_unknown) = self.render_node(item)?;
                    unknown |= item_unknown;
                    out.push(value);
                }
                Ok((Json::Array(out), unknown))
            }
            Value::Map(entries) => {
                let mut unknown = false;
                let mut out = Map::new();
                for Entry { key, value, .. } in entries {
                    let (value, item_unknown) = self.render_node(value)?;
                    unknown |= item_unknown;
                    out.insert(key.clone(), value);
                }
                Ok((Json::Object(out), unknown))
            }
            Value::Null | Value::Bool(_) | Value::Integer(_) | Value::Float(_) | Value::String(_) => {
                Ok((node.to_json(), false))
            }
        }
    }

    /// The step's parameters, rendered and coerced to its kind's types. Once every
    /// value is known they are checked against the kind's schema again: validation
    /// let `replicas: "{{inputs.count}}"` through, and `--var count=five` must be
    /// refused here, not shown as "scale ... to five".
    ///
    /// # Errors
    /// See [`Context::render_node`]; and a rendered parameter its kind does not accept.
    pub fn render_with(&self, step: &Step) -> Result<(Json, bool), RenderError> {
        let (value, unknown) = self.render_node(&step.with)?;
        let schema = step.kind.parameters_schema();
        let value = schema_check::coerce(value, &schema);
        if !unknown {
            let rendered = Node::from_json(&value, crate::lang::source::Span::default());
            if let Some(problem) = schema_check::check(&rendered, &schema, "with").first() {
                // Only a dry-run may quote the value: in a run it could hold a secret.
                let quoted = match (self.mode, rendered_at(&value, &problem.message)) {
                    (Mode::DryRun, Some(given)) => format!(" (rendered: `{given}`)"),
                    (Mode::DryRun | Mode::Run, _) => String::new(),
                };
                return Err(RenderError(format!(
                    "{}{quoted}; the value comes from a template of this {} step",
                    problem.message,
                    step.kind.name()
                )));
            }
        }
        Ok((value, unknown))
    }

    /// Evaluates `when`: `Some(true/false)`, or `None` when the dry-run cannot know.
    ///
    /// # Errors
    /// A value that is neither true nor false.
    pub fn evaluate_when(&self, step: &Step) -> Result<Option<bool>, RenderError> {
        let Some(when) = &step.when else { return Ok(Some(true)) };
        let rendered = when.render(&|path| self.lookup(path));
        if rendered.unknown {
            return Ok(None);
        }
        if let Some(path) = rendered.missing.first() {
            return Err(RenderError(format!(
                "`when` of step `{}` reads `{}`, which has no value",
                step.id,
                path.join(".")
            )));
        }
        match truthy(&rendered.value) {
            Some(value) => Ok(Some(value)),
            None => Err(RenderError(format!(
                "`when` of step `{}` rendered `{}`, not true or false",
                step.id,
                crate::lang::kind::display(&rendered.value)
            ))),
        }
    }
}

/// The rendered value a schema problem is about: its message starts with the path in
/// backquotes (`with.replicas`, `with.assert[0].sql`).
fn rendered_at(value: &Json, message: &str) -> Option<String> {
    let path = message.strip_prefix('`')?.split('`').next()?.strip_prefix("with")?;
    let mut current = value;
    for segment in path.split(['.', '[', ']']).filter(|segment| !segment.is_empty()) {
        current = child(current, segment)?;
    }
    Some(crate::lang::kind::display(current))
}

/// `value.segment`: a key of a map, or a 0-based position in a list (`results.0`).
fn child<'a>(value: &'a Json, segment: &str) -> Option<&'a Json> {
    match value {
        Json::Array(items) => segment.parse::<usize>().ok().and_then(|position| items.get(position)),
        Json::Object(_) | Json::Null | Json::Bool(_) | Json::Number(_) | Json::String(_) => {
            value.get(segment)
        }
    }
}

/// Values given on the command line (`--var`, `--vars-file`).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `NAME=VALUE` pairs, in order (later wins).
    pub values: Vec<(String, Json)>,
}

impl Overrides {
    /// Parses `--var NAME=VALUE` arguments and a `--vars-file` (YAML or TOML map).
    ///
    /// # Errors
    /// A malformed `--var` or an unreadable or invalid vars file.
    pub fn parse(vars: &[String], vars_file: Option<&std::path::Path>) -> Result<Overrides, String> {
        let mut values = Vec::new();
        if let Some(path) = vars_file {
            // `error: ` is printed in front: the message alone, with its help.
            let file =
                crate::lang::source::SourceFile::read(path).map_err(|problem| match &problem.help {
                    Some(help) => format!("--vars-file {} (help: {help})", problem.message),
                    None => format!("--vars-file {}", problem.message),
                })?;
            let node = crate::lang::load::load(&file).map_err(|problems| {
                problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
            })?;
            let Some(entries) = node.as_map() else {
                return Err(format!("{}: a vars file is a map of NAME: VALUE", path.display()));
            };
            for entry in entries {
                values.push((entry.key.clone(), entry.value.to_json()));
            }
        }
        for pair in vars {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(format!("`--var {pair}` must be NAME=VALUE"));
            };
            values.push((name.trim().to_owned(), Json::String(value.to_owned())));
        }
        Ok(Overrides { values })
    }
}

/// Resolved `(inputs, vars)`.
pub type ResolvedValues = (Map<String, Json>, Map<String, Json>);

/// Resolves inputs (defaults, then overrides) and vars (plan values, then overrides).
///
/// # Errors
/// Unknown names (with a suggestion), required inputs with no value, and values an
/// input's `type` or `enum` refuses (naming the input, what it expects and the value).
pub fn resolve_values(plan: &Plan, overrides: &Overrides) -> Result<ResolvedValues, Vec<String>> {
    let mut inputs = Map::new();
    let mut vars = Map::new();
    let mut problems = Vec::new();
    for (name, input) in &plan.spec.inputs.entries {
        if let Some(default) = &input.default {
            // Validation checked defaults already; a failure here would be a bug, and is
            // reported rather than run.
            match input.accept(&default.0.to_json()) {
                Ok(typed) => {
                    inputs.insert(name.value.clone(), typed);
                }
                Err(reason) => problems.push(format!("the default of input `{}` {reason}", name.value)),
            }
        }
    }
    for (name, value) in &plan.spec.vars.entries {
        vars.insert(name.value.clone(), value.0.to_json());
    }
    for (name, value) in &overrides.values {
        if let Some(input) = plan.spec.inputs.get(name) {
            match input.accept(value) {
                Ok(typed) => {
                    inputs.insert(name.clone(), typed);
                }
                Err(reason) => {
                    inputs.remove(name);
                    problems.push(format!("input `{name}` {reason} (given with --var or --vars-file)"));
                }
            }
        } else if plan.spec.vars.get(name).is_some() {
            let typed = match (&vars[name], value) {
                (Json::Number(_) | Json::Bool(_), Json::String(text)) => {
                    serde_json::from_str(text).unwrap_or_else(|_| value.clone())
                }
                _ => value.clone(),
            };
            vars.insert(name.clone(), typed);
        } else {
            let known = plan.spec.inputs.names().chain(plan.spec.vars.names());
            problems.push(format!(
                "`{name}` is neither an input nor a var of plan {}; {}",
                plan.name(),
                crate::lang::diagnostic::suggestion(name, known)
            ));
        }
    }
    for (name, _) in &plan.spec.inputs.entries {
        let refused = problems.iter().any(|problem| problem.starts_with(&format!("input `{}` ", name.value)));
        if !inputs.contains_key(&name.value) && !refused {
            problems.push(format!(
                "input `{}` has no default: give it with `--var {}=VALUE`",
                name.value, name.value
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // Values given now can make a parameter wrong (`replicas: "{{inputs.count}}"` with
    // `--var count=five`): refuse before anything runs, not at the step.
    let context = Context {
        mode: Mode::DryRun,
        vars: vars.clone(),
        inputs: inputs.clone(),
        secrets: BTreeMap::new(),
        run: placeholder_run_fields(plan, false),
        outputs: BTreeMap::new(),
        withheld: BTreeMap::new(),
    };
    for step in &plan.steps {
        if let Err(error) = context.render_with(step) {
            problems.push(format!("step `{}`: {}", step.id, error.0));
        }
    }
    if problems.is_empty() { Ok((inputs, vars)) } else { Err(problems) }
}

/// `run.*` before a run exists (dry-run, checks of given values): placeholders where a
/// run would have real values.
#[must_use]
pub fn placeholder_run_fields(plan: &Plan, drill: bool) -> Map<String, Json> {
    let mut run = Map::new();
    run.insert("id".into(), Json::String("<run.id>".into()));
    run.insert("drill".into(), Json::Bool(drill));
    run.insert("started_at".into(), Json::String("<run.started_at>".into()));
    run.insert("dir".into(), Json::String("<run.dir>".into()));
    run.insert("plan".into(), Json::String(plan.name().to_owned()));
    run
}
