//! The template language is ours (see `src/lang/template.rs` for why), but it claims to be
//! Handlebars expressions: this test proves it on every template of the shipped plans
//! and of the test fixtures. Each is rendered by our engine and by the `handlebars`
//! crate over the same context, and the text must be the same.

use std::path::{Path, PathBuf};

use dr_plan::lang::node::{Node, Value as NodeValue};
use dr_plan::lang::template::{Lookup, Template, contains_expression};
use serde_json::{Map, Value};

fn plan_files(directory: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).expect("a directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            plan_files(&path, out);
        } else if path.extension().is_some_and(|extension| extension == "yaml" || extension == "toml") {
            out.push(path);
        }
    }
}

fn strings(node: &Node, out: &mut Vec<String>) {
    match &node.value {
        NodeValue::String(text) if contains_expression(text) => out.push(text.clone()),
        NodeValue::List(items) => items.iter().for_each(|item| strings(item, out)),
        NodeValue::Map(entries) => entries.iter().for_each(|entry| strings(&entry.value, out)),
        _ => {}
    }
}

/// A context holding a distinct value at every path the template reads.
fn context_for(template: &Template) -> Value {
    let mut root = Value::Object(Map::new());
    for reference in template.references() {
        let mut here = &mut root;
        for (depth, segment) in reference.path.iter().enumerate() {
            let last = depth + 1 == reference.path.len();
            let Value::Object(map) = here else { break };
            here = map.entry(segment.clone()).or_insert_with(|| {
                if last {
                    Value::String(format!("v:{}", reference.path.join(".")))
                } else {
                    Value::Object(Map::new())
                }
            });
        }
    }
    root
}

fn lookup(context: &Value, path: &[String]) -> Lookup {
    path.iter()
        .try_fold(context, |value, segment| value.get(segment))
        .map_or(Lookup::Missing, |value| Lookup::Value(value.clone()))
}

#[test]
fn every_template_renders_as_handlebars_renders_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    plan_files(&root.join("plans"), &mut files);
    plan_files(&root.join("tests/fixtures"), &mut files);
    let mut handlebars = handlebars::Handlebars::new();
    handlebars.register_escape_fn(handlebars::no_escape);
    let mut compared = 0;
    let mut differences = Vec::new();
    for file in files {
        let Ok(source) = dr_plan::lang::source::SourceFile::read(&file) else { continue };
        let Ok(node) = dr_plan::lang::load::load(&source) else { continue };
        let mut templates = Vec::new();
        strings(&node, &mut templates);
        for text in templates {
            let Ok(template) = Template::parse(&text) else { continue };
            // `default` is our helper, not one of Handlebars' built-ins.
            if text.contains("default ") {
                continue;
            }
            let context = context_for(&template);
            let ours = template.render(&|path| lookup(&context, path));
            if !ours.missing.is_empty() || !ours.errors.is_empty() {
                continue;
            }
            let ours = match ours.value {
                Value::String(text) => text,
                other => other.to_string(),
            };
            let theirs = handlebars
                .render_template(&text, &context)
                .unwrap_or_else(|error| format!("handlebars failed: {error}"));
            compared += 1;
            if ours != theirs {
                differences.push(format!(
                    "{}: `{text}`\n  ours:       {ours}\n  handlebars: {theirs}",
                    file.display()
                ));
            }
        }
    }
    assert!(compared >= 100, "only {compared} templates compared");
    assert!(
        differences.is_empty(),
        "{} of {compared} templates differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}
