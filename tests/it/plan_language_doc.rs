//! `docs/plan-language.md` is the reference a plan author reads. This test keeps it
//! complete and true:
//!
//! - every field of the plan format, i.e. every property of `schemas/plan.schema.json`
//!   (top level, objectives, inputs, secrets, steps, retry, and any nested object added
//!   later) except each kind's `with` parameters (documented in `docs/steps/`), has a
//!   row in one of the page's field tables: a table row whose first cell is the field's
//!   path in backquotes, `| `steps[].retry.backoff` | ...`, where `steps[]` is any step
//!   and `<name>` a name the author chooses (`inputs.<name>.type`);
//! - every ```yaml and ```toml block of the page whose first line is `# plan` is a
//!   complete plan that `dr-plan validate` accepts;
//! - a YAML and a TOML complete plan with the same `name` are the same plan: their
//!   dry-runs (`--format json`) are identical.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

/// The page, relative to the crate root.
const PAGE: &str = "docs/plan-language.md";
/// The schema whose fields the page must document (kept equal to `dr-plan schema` by a
/// unit test of `src/schema.rs`).
const SCHEMA: &str = "schemas/plan.schema.json";
/// The first line of a code block that holds a complete plan.
const MARKER: &str = "# plan";

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The path of every field of the plan format, as the page writes it.
fn schema_fields(root: &Value) -> BTreeSet<String> {
    let mut fields = BTreeSet::new();
    collect_fields(root, root, "", &mut fields);
    fields
}

fn collect_fields(root: &Value, schema: &Value, path: &str, fields: &mut BTreeSet<String>) {
    let Some(object) = schema.as_object() else { return };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        let target = reference.strip_prefix('#').and_then(|pointer| root.pointer(pointer));
        let target = target.unwrap_or_else(|| panic!("{SCHEMA}: cannot resolve `$ref: {reference}`"));
        collect_fields(root, target, path, fields);
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let field = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
            fields.insert(field.clone());
            // A step's `with` holds its kind's parameters: docs/steps/KIND.md documents
            // them (the `allOf` rules of a step, not walked, tie `with` to each kind).
            if name != "with" {
                collect_fields(root, property, &field, fields);
            }
        }
    }
    if let Some(items) = object.get("items") {
        collect_fields(root, items, &format!("{path}[]"), fields);
    }
    if let Some(values) = object.get("additionalProperties") {
        collect_fields(root, values, &format!("{path}.<name>"), fields);
    }
    for alternatives in ["anyOf", "oneOf"] {
        for alternative in object.get(alternatives).and_then(Value::as_array).into_iter().flatten() {
            collect_fields(root, alternative, path, fields);
        }
    }
}

/// The first cells of the page's table rows that are a single `code span`.
fn documented_fields(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |"))
        .map(|(field, _)| field.to_owned())
        .filter(|field| !field.contains('`'))
        .collect()
}

/// A fenced code block of the page.
struct Block {
    /// `yaml` or `toml`.
    syntax: &'static str,
    /// 1-based line of the opening fence.
    line: usize,
    text: String,
}

/// Every ```yaml and ```toml block whose first line is [`MARKER`].
fn complete_plans(page: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = page.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let syntax = match line.trim_end() {
            "```yaml" => "yaml",
            "```toml" => "toml",
            _ => continue,
        };
        let mut text = String::new();
        let mut closed = false;
        for (_, line) in lines.by_ref() {
            if line.trim_end() == "```" {
                closed = true;
                break;
            }
            text.push_str(line);
            text.push('\n');
        }
        assert!(closed, "{PAGE}:{}: the ```{syntax} block is never closed", index + 1);
        if text.lines().next() == Some(MARKER) {
            blocks.push(Block { syntax, line: index + 1, text });
        }
    }
    blocks
}

/// The plan's `name`, read from its top-level `name:` (YAML) or `name =` (TOML) line.
fn plan_name(block: &Block) -> Option<String> {
    block.text.lines().find_map(|line| {
        let value = line.strip_prefix("name:").or_else(|| line.strip_prefix("name ="))?;
        Some(value.trim().trim_matches('"').to_owned())
    })
}

fn dr_plan(directory: &Path, arguments: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dr-plan"))
        .current_dir(directory)
        .env("NO_COLOR", "1")
        .env_remove("DR_PLAN_STATE_DIR")
        .args(arguments)
        .output()
        .expect("dr-plan runs")
}

#[test]
fn every_field_of_the_schema_is_documented() {
    let schema: Value = serde_json::from_str(&read(SCHEMA)).expect("the schema is JSON");
    let fields = schema_fields(&schema);
    // If the schema changed shape and the walk found nothing, the test would pass for
    // nothing: it must at least see these.
    for known in
        ["version", "objectives.rto", "inputs.<name>.type", "secrets.<name>.env", "steps[].retry.attempts"]
    {
        assert!(fields.contains(known), "the walk of {SCHEMA} did not find `{known}`: {fields:?}");
    }
    let documented = documented_fields(&read(PAGE));
    let missing: Vec<&String> = fields.iter().filter(|field| !documented.contains(*field)).collect();
    assert!(
        missing.is_empty(),
        "{PAGE} does not document these fields of {SCHEMA}: {}.\nAdd each to the field table of its \
         section in {PAGE}, as a row whose first cell is the path in backquotes, then its type, \
         default and meaning: `| `{}` | TYPE | DEFAULT | MEANING |`.",
        missing.iter().map(|field| format!("`{field}`")).collect::<Vec<_>>().join(", "),
        missing[0],
    );
}

#[test]
fn every_complete_plan_of_the_page_validates_and_its_twins_agree() {
    let page = read(PAGE);
    let blocks = complete_plans(&page);
    for syntax in ["yaml", "toml"] {
        assert!(
            blocks.iter().any(|block| block.syntax == syntax),
            "{PAGE} has no complete ```{syntax} plan (a block whose first line is `{MARKER}`)"
        );
    }
    let directory = tempfile::tempdir().expect("a temporary directory");
    let state = directory.path().join("state");
    let state = state.to_str().expect("a UTF-8 path");
    let mut by_name: BTreeMap<String, Vec<(&Block, String)>> = BTreeMap::new();
    for block in &blocks {
        let file = format!("plan-language-line-{}.{}", block.line, block.syntax);
        std::fs::write(directory.path().join(&file), &block.text).expect("write the plan");
        let output = dr_plan(directory.path(), &["validate", &file]);
        assert!(
            output.status.success(),
            "the ```{} plan at {PAGE}:{} does not validate (exit {:?}); fix the block, or remove its \
             `{MARKER}` line if it is not meant to be a complete plan:\n{}",
            block.syntax,
            block.line,
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        let name = plan_name(block)
            .unwrap_or_else(|| panic!("{PAGE}:{}: no top-level `name` line in the plan", block.line));
        by_name.entry(name).or_default().push((block, file));
    }
    for (name, twins) in by_name.iter().filter(|(_, twins)| twins.len() > 1) {
        let dry_runs: Vec<(usize, Value)> = twins
            .iter()
            .map(|(block, file)| {
                let output =
                    dr_plan(directory.path(), &["dry-run", file, "--format", "json", "--state-dir", state]);
                assert!(
                    output.status.success(),
                    "`dr-plan dry-run` of the plan at {PAGE}:{} failed:\n{}",
                    block.line,
                    String::from_utf8_lossy(&output.stderr)
                );
                (block.line, serde_json::from_slice(&output.stdout).expect("dry-run JSON parses"))
            })
            .collect();
        let (first_line, first) = &dry_runs[0];
        for (line, dry_run) in &dry_runs[1..] {
            if let Some((path, left, right)) = first_difference(first, dry_run, String::new()) {
                panic!(
                    "the plans `{name}` at {PAGE}:{first_line} and {PAGE}:{line} should be the same plan in \
                     two syntaxes, but their dry-runs (`--format json`) differ at `{path}`: {left} vs {right}"
                );
            }
        }
    }
}

/// Where two JSON values first differ: the path, and both values there.
fn first_difference(left: &Value, right: &Value, path: String) -> Option<(String, Value, Value)> {
    match (left, right) {
        (Value::Object(left_map), Value::Object(right_map)) => {
            let keys: BTreeSet<&String> = left_map.keys().chain(right_map.keys()).collect();
            keys.into_iter().find_map(|key| {
                let (left, right) = (left_map.get(key), right_map.get(key));
                let inner = format!("{path}.{key}");
                match (left, right) {
                    (Some(left), Some(right)) => first_difference(left, right, inner),
                    _ => Some((
                        inner,
                        left.cloned().unwrap_or(Value::Null),
                        right.cloned().unwrap_or(Value::Null),
                    )),
                }
            })
        }
        (Value::Array(left_items), Value::Array(right_items)) if left_items.len() == right_items.len() => {
            left_items
                .iter()
                .zip(right_items)
                .enumerate()
                .find_map(|(index, (left, right))| first_difference(left, right, format!("{path}[{index}]")))
        }
        _ => (left != right).then(|| (path, left.clone(), right.clone())),
    }
}
