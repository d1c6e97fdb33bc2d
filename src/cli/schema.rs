//! The JSON Schema of the plan format, generated from the spec types and the step
//! catalog (`dr-plan schema`, committed as `schemas/plan.schema.json`).

use serde_json::{Value as Json, json};

use crate::lang::spec::PlanSpec;

/// Where the published schema lives, for the `yaml-language-server` line of plans.
pub const SCHEMA_PATH: &str = "schemas/plan.schema.json";

/// The plan schema: the spec's generated schema, with each step's `with` tied to
/// the parameters schema of its `kind`, and template strings accepted wherever a
/// number, boolean, list or map is expected (they are only known at run time).
#[must_use]
pub fn plan_schema() -> Json {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<PlanSpec>().to_value();
    let kinds: Vec<&str> = crate::kinds::CATALOG.iter().map(|kind| kind.name()).collect();
    let step = &mut schema["properties"]["steps"]["items"];
    step["properties"]["kind"] = json!({ "type": "string", "enum": kinds, "description": "The step kind (`dr-plan steps` lists them)." });
    step["required"] = json!(["id", "kind"]);
    step["properties"]["with"] = json!({ "type": "object", "description": "The kind's parameters." });
    step["properties"]["on_failure"] = json!({ "enum": ["abort", "continue"] });
    let rules: Vec<Json> = crate::kinds::CATALOG
        .iter()
        .map(|kind| {
            let mut parameters = kind.parameters_schema();
            accept_templates(&mut parameters);
            if let Some(object) = parameters.as_object_mut() {
                object.remove("title");
            }
            json!({
                "if": { "properties": { "kind": { "const": kind.name() } }, "required": ["kind"] },
                "then": { "properties": { "with": parameters } },
            })
        })
        .collect();
    step["allOf"] = Json::Array(rules);
    schema["$id"] = json!("https://dr-plan.dev/schemas/plan.schema.json");
    schema
}

/// Lets a `{{...}}` string stand wherever a value of another type is expected.
fn accept_templates(schema: &mut Json) {
    let template = json!({ "type": "string", "pattern": "\\{\\{" });
    if let Some(properties) = schema.get_mut("properties").and_then(Json::as_object_mut) {
        for property in properties.values_mut() {
            accept_templates(property);
        }
    }
    if let Some(items) = schema.get_mut("items") {
        accept_templates(items);
    }
    if let Some(extra) = schema.get_mut("additionalProperties").filter(|extra| extra.is_object()) {
        accept_templates(extra);
    }
    let only_string = match schema.get("type") {
        Some(Json::String(name)) => name == "string",
        Some(Json::Array(names)) => names.iter().all(|name| name == "string" || name == "null"),
        _ => schema.get("anyOf").is_none() && schema.get("oneOf").is_none(),
    };
    if only_string || schema.get("const").is_some() {
        return;
    }
    let original = schema.take();
    let description = original.get("description").cloned();
    let mut wrapped = json!({ "anyOf": [original, template] });
    if let Some(description) = description {
        wrapped["description"] = description;
    }
    *schema = wrapped;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_schema_matches_the_types() {
        let generated = serde_json::to_string_pretty(&super::plan_schema()).unwrap() + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/plan.schema.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "schemas/plan.schema.json is out of date: run `cargo run -- schema > schemas/plan.schema.json`"
        );
    }
}
