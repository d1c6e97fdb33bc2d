//! `dr-plan steps`: the step catalog rendered from the kinds' declarations and their
//! generated parameter schemas. The pages under `docs/steps/` are this output, and a
//! test fails when they drift.

use std::fmt::Write;

use serde_json::{Value as Json, json};

use crate::kinds::StepKind;

/// One parameter row: name, type, required/default, description.
struct Parameter {
    name: String,
    kind: String,
    required: bool,
    default: Option<String>,
    description: String,
}

fn parameters(kind: StepKind) -> Vec<Parameter> {
    let schema = kind.parameters_schema();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    schema["properties"]
        .as_object()
        .map(|properties| {
            properties
                .iter()
                .map(|(name, property)| Parameter {
                    name: name.clone(),
                    kind: type_name(property),
                    required: required.contains(&name.as_str()),
                    default: property.get("default").map(|value| match value {
                        Json::String(text) => text.clone(),
                        other => other.to_string(),
                    }),
                    description: property["description"].as_str().unwrap_or_default().replace('\n', " "),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn type_name(schema: &Json) -> String {
    if let Some(alternatives) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Json::as_array) {
        let constants: Vec<&str> =
            alternatives.iter().filter_map(|alternative| alternative.get("const")?.as_str()).collect();
        if constants.len() == alternatives.len() {
            return constants.join(" \\| ");
        }
        return alternatives.iter().map(type_name).collect::<Vec<_>>().join(" or ");
    }
    let names: Vec<&str> = match schema.get("type") {
        Some(Json::String(name)) => vec![name.as_str()],
        Some(Json::Array(names)) => {
            names.iter().filter_map(Json::as_str).filter(|name| *name != "null").collect()
        }
        _ => vec!["any"],
    };
    let base = names.first().copied().unwrap_or("any");
    match base {
        "array" => format!("list of {}", schema.get("items").map_or_else(|| "any".to_owned(), type_name)),
        "object" if schema.get("properties").is_some() => "map (see below)".to_owned(),
        "object" => match schema.get("additionalProperties") {
            Some(extra @ Json::Object(_)) => format!("map of {}", type_name(extra)),
            _ => "map".to_owned(),
        },
        "string"
            if schema
                .get("pattern")
                .and_then(Json::as_str)
                .is_some_and(|pattern| pattern.contains("ms|s|m|h|d")) =>
        {
            "duration".to_owned()
        }
        other => other.to_owned(),
    }
}

/// The one-line-per-kind overview.
#[must_use]
pub fn overview() -> String {
    let mut out = String::from("KIND             DESTRUCTIVE  IDEMPOTENT  UNDO  SUMMARY\n");
    for &kind in crate::kinds::CATALOG {
        let info = kind.info();
        let _ = writeln!(
            out,
            "{:<16} {:<12} {:<11} {:<5} {}",
            kind.name(),
            yes_no(info.destructive),
            yes_no(info.idempotent),
            yes_no(info.undo.is_some()),
            info.summary
        );
    }
    out.push_str("\n`dr-plan steps KIND` shows a kind's parameters and outputs.\n");
    out
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// A kind in full, as plain text.
#[must_use]
pub fn human(kind: StepKind) -> String {
    let info = kind.info();
    let mut out = format!("{}: {}\n\n", kind.name(), info.summary);
    let _ =
        writeln!(out, "destructive: {}   idempotent: {}", yes_no(info.destructive), yes_no(info.idempotent));
    if let Some(undo) = info.undo {
        let _ = writeln!(out, "undo: {undo}");
    }
    let _ = writeln!(out, "preflight: {}\n\nParameters:", info.preflight);
    for parameter in parameters(kind) {
        let requirement = if parameter.required {
            "required".to_owned()
        } else {
            parameter
                .default
                .as_ref()
                .map_or_else(|| "optional".to_owned(), |default| format!("default {default}"))
        };
        let _ = writeln!(
            out,
            "  {} ({}, {requirement})\n      {}",
            parameter.name,
            parameter.kind.replace("\\|", "|"),
            parameter.description
        );
    }
    out.push_str("\nOutputs:\n");
    if info.outputs.is_empty() {
        out.push_str("  (none)\n");
    }
    for output in info.outputs {
        let _ = writeln!(out, "  {}: {}", output.name, output.description);
    }
    if !info.notes.is_empty() {
        let _ = writeln!(out, "\n{}", info.notes);
    }
    let _ = write!(out, "\nExample:\n{}", indent(info.example));
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

/// A kind in full, as the markdown of its docs page.
#[must_use]
pub fn markdown(kind: StepKind) -> String {
    let info = kind.info();
    let mut out = format!("# `{}`\n\n{}\n\n", kind.name(), info.summary);
    let _ = writeln!(out, "| destructive | idempotent | undo |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| {} | {} | {} |\n",
        yes_no(info.destructive),
        yes_no(info.idempotent),
        info.undo.unwrap_or("—")
    );
    let _ = writeln!(out, "Preflight (`dry-run --preflight`): {}.\n", info.preflight);
    out.push_str("## Parameters\n\n| name | type | required / default | description |\n|---|---|---|---|\n");
    for parameter in parameters(kind) {
        let requirement = if parameter.required {
            "required".to_owned()
        } else {
            parameter.default.as_ref().map_or_else(|| "optional".to_owned(), |default| format!("`{default}`"))
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {requirement} | {} |",
            parameter.name,
            parameter.kind,
            parameter.description.replace('|', "\\|")
        );
    }
    out.push_str("\n## Outputs\n\n");
    if info.outputs.is_empty() {
        out.push_str("None.\n");
    }
    for output in info.outputs {
        let _ = writeln!(out, "- `{}`: {}", output.name, output.description);
    }
    if !info.notes.is_empty() {
        let _ =
            writeln!(out, "\n## Notes\n\n{}", info.notes.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    let _ = write!(out, "\n## Example\n\n```yaml\n{}```\n", info.example);
    if !info.guide.is_empty() {
        let _ = write!(out, "\n{}", info.guide);
    }
    out.push_str("\n_Generated by `dr-plan steps ");
    out.push_str(kind.name());
    out.push_str(" --format markdown`._\n");
    out
}

/// The catalog (or one kind) as JSON.
#[must_use]
pub fn json(kinds: &[StepKind]) -> Json {
    Json::Array(
        kinds
            .iter()
            .map(|kind| {
                let info = kind.info();
                json!({
                    "kind": kind.name(),
                    "summary": info.summary,
                    "destructive": info.destructive,
                    "idempotent": info.idempotent,
                    "undo": info.undo,
                    "preflight": info.preflight,
                    "outputs": info.outputs.iter().map(|output| json!({"name": output.name, "description": output.description})).collect::<Vec<_>>(),
                    "parameters": kind.parameters_schema(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_pages_match_the_catalog() {
        for &kind in crate::kinds::CATALOG {
            let path = format!("{}/docs/steps/{}.md", env!("CARGO_MANIFEST_DIR"), kind.name());
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == markdown(kind),
                "{path} is out of date: run `cargo run -- steps {} --format markdown > {path}`",
                kind.name()
            );
        }
    }
}
