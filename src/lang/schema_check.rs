//! Checks a located [`Node`] against a JSON Schema generated from a Rust type, and
//! reports every problem at once with its span. Only the keywords our generated
//! schemas use are understood: `type`, `properties`, `required`,
//! `additionalProperties`, `items`, `anyOf`/`oneOf`, `const`, `minimum`, `maximum`.
//!
//! A string holding a template expression (`{{...}}`) matches any schema here: its
//! value is only known at run time, when the rendered value is checked again and
//! coerced with [`coerce`].

use serde_json::Value as Json;

use crate::lang::code::Code;
use crate::lang::diagnostic::{did_you_mean, suggestion};
use crate::lang::node::{Node, Value};
use crate::lang::source::Span;
use crate::lang::template::contains_expression;

/// A problem found by the check.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// Stable code.
    pub code: Code,
    /// Where.
    pub span: Span,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub help: Option<String>,
}

/// Checks `node` against `schema`; `path` names the node in messages (`with.replicas`).
#[must_use]
pub fn check(node: &Node, schema: &Json, path: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_into(node, schema, path, &mut problems);
    problems
}

fn check_into(node: &Node, schema: &Json, path: &str, problems: &mut Vec<Problem>) {
    if let Value::String(text) = &node.value
        && contains_expression(text)
    {
        return;
    }
    if let Some(alternatives) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Json::as_array) {
        check_alternatives(node, alternatives, path, problems);
        return;
    }
    if let Some(expected) = schema.get("const") {
        if !same_scalar(node, expected) {
            problems.push(Problem {
                code: Code::ParameterValue,
                span: node.span,
                message: format!("`{path}` must be {expected}"),
                help: None,
            });
        }
        return;
    }
    let types = types_of(schema);
    if !types.is_empty() && !types.iter().any(|expected| matches_type(node, expected)) {
        problems.push(Problem {
            code: Code::ParameterType,
            span: node.span,
            message: format!("`{path}` must be {}, found {}", describe_types(&types), node.shape()),
            help: type_help(&types, node),
        });
        return;
    }
    match &node.value {
        Value::Map(entries) => check_map(node, entries, schema, path, problems),
        Value::List(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    check_into(item, item_schema, &format!("{path}[{index}]"), problems);
                }
            }
        }
        Value::Integer(integer) => check_integer(node, *integer, schema, path, problems),
        Value::String(text) => check_duration(node, text, schema, path, problems),
        Value::Null | Value::Bool(_) | Value::Float(_) => {}
    }
}

/// An integer within the schema's `minimum`/`maximum` and the bounds of its `format`.
fn check_integer(node: &Node, integer: i64, schema: &Json, path: &str, problems: &mut Vec<Problem>) {
    // The type's own bounds, so a value that would not decode at run time is
    // refused here with its location.
    let (type_minimum, type_maximum) = match schema.get("format").and_then(Json::as_str) {
        Some("uint8") => (Some(0), Some(i64::from(u8::MAX))),
        Some("uint16") => (Some(0), Some(i64::from(u16::MAX))),
        Some("uint32") => (Some(0), Some(i64::from(u32::MAX))),
        Some("int32") => (Some(i64::from(i32::MIN)), Some(i64::from(i32::MAX))),
        Some(format) if format.starts_with("uint") => (Some(0), None),
        Some(_) | None => (None, None),
    };
    let minimum = schema.get("minimum").and_then(Json::as_i64).or(type_minimum);
    let stated_maximum = schema.get("maximum").and_then(Json::as_i64);
    let maximum = stated_maximum.or(type_maximum);
    // The help names the type's own maximum only to a value beyond it.
    let range = |minimum: Option<i64>, maximum: Option<i64>| match (minimum, maximum) {
        (Some(minimum), Some(maximum)) => format!("write a whole number from {minimum} to {maximum}"),
        (Some(minimum), None) => format!("write a whole number of {minimum} or more"),
        (None, Some(maximum)) => format!("write a whole number of at most {maximum}"),
        (None, None) => "write a whole number".to_owned(),
    };
    let found = match (minimum, maximum) {
        (Some(minimum), _) if integer < minimum => Some((
            format!("`{path}` must be at least {minimum}, found {integer}"),
            range(Some(minimum), stated_maximum),
        )),
        (_, Some(maximum)) if integer > maximum => Some((
            format!("`{path}` must be at most {maximum}, found {integer}"),
            range(minimum, Some(maximum)),
        )),
        _ => None,
    };
    if let Some((message, help)) = found {
        problems.push(Problem { code: Code::ParameterValue, span: node.span, message, help: Some(help) });
    }
}

/// A string whose schema pattern is the duration pattern must parse as a duration.
fn check_duration(node: &Node, text: &str, schema: &Json, path: &str, problems: &mut Vec<Problem>) {
    if let Some(pattern) = schema.get("pattern").and_then(Json::as_str)
        && pattern.contains("ms|s|m|h|d")
        && let Err(reason) = crate::lang::duration::HumanDuration::parse(text)
    {
        problems.push(Problem {
            code: Code::Duration,
            span: node.span,
            message: format!("`{path}`: {reason}"),
            help: Some("write a duration such as 90s, 45m, 2h or 1h30m".to_owned()),
        });
    }
}

fn check_map(
    node: &Node,
    entries: &[crate::lang::node::Entry],
    schema: &Json,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    let properties = schema.get("properties").and_then(Json::as_object);
    let extra = schema.get("additionalProperties");
    for entry in entries {
        let child_path = if path.is_empty() { entry.key.clone() } else { format!("{path}.{}", entry.key) };
        match properties.and_then(|properties| properties.get(&entry.key)) {
            Some(property) => check_into(&entry.value, property, &child_path, problems),
            None => match extra {
                Some(Json::Bool(false)) => {
                    let known: Vec<&str> =
                        properties.map(|map| map.keys().map(String::as_str).collect()).unwrap_or_default();
                    problems.push(Problem {
                        code: Code::UnknownParameter,
                        span: entry.key_span,
                        message: format!("unknown parameter `{child_path}`"),
                        help: Some(suggestion(&entry.key, known.iter().copied())),
                    });
                }
                Some(extra_schema @ Json::Object(_)) => {
                    check_into(&entry.value, extra_schema, &child_path, problems)
                }
                Some(_) | None => {}
            },
        }
    }
    let known: Vec<&str> = properties.map(|map| map.keys().map(String::as_str).collect()).unwrap_or_default();
    for required in schema.get("required").and_then(Json::as_array).into_iter().flatten() {
        let Some(name) = required.as_str() else { continue };
        // A misspelt required key is reported once, as unknown with "did you mean".
        let misspelt = entries.iter().any(|entry| {
            !known.contains(&entry.key.as_str())
                && did_you_mean(&entry.key, known.iter().copied()) == Some(name)
        });
        if !misspelt && !entries.iter().any(|entry| entry.key == name) {
            let description = properties
                .and_then(|properties| properties.get(name))
                .and_then(|property| property.get("description"))
                .and_then(Json::as_str)
                .map(|text| text.replace('\n', " "));
            let prefix = if path.is_empty() { String::new() } else { format!("{path}.") };
            problems.push(Problem {
                code: Code::MissingParameter,
                span: node.span,
                message: format!("missing parameter `{prefix}{name}`"),
                help: Some(match description {
                    Some(description) => format!("add `{name}`: {description}"),
                    None => format!("add `{name}`"),
                }),
            });
        }
    }
}

fn check_alternatives(node: &Node, alternatives: &[Json], path: &str, problems: &mut Vec<Problem>) {
    let constants: Vec<&str> =
        alternatives.iter().filter_map(|alternative| alternative.get("const")?.as_str()).collect();
    if constants.len() == alternatives.len() {
        let text = scalar_text(node);
        if !text.as_deref().is_some_and(|text| constants.contains(&text)) {
            let found = text.map_or_else(|| node.shape().to_owned(), |text| format!("`{text}`"));
            let help = match node.as_str().and_then(|text| did_you_mean(text, constants.iter().copied())) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!("expected one of: {}", constants.join(", ")),
            };
            problems.push(Problem {
                code: Code::ParameterValue,
                span: node.span,
                message: format!("`{path}` cannot be {found}"),
                help: Some(help),
            });
        }
        return;
    }
    let mut typed_matches = Vec::new();
    for alternative in alternatives {
        let found = check(node, alternative, path);
        if found.is_empty() {
            return;
        }
        let types = types_of(alternative);
        if types.iter().any(|expected| matches_type(node, expected)) {
            typed_matches.push(found);
        }
    }
    if typed_matches.len() == 1 {
        problems.extend(typed_matches.remove(0));
        return;
    }
    let mut expected: Vec<&str> = alternatives.iter().flat_map(types_of).collect();
    expected.dedup();
    problems.push(Problem {
        code: Code::ParameterType,
        span: node.span,
        message: format!("`{path}` must be {}, found {}", describe_types(&expected), node.shape()),
        help: type_help(&expected, node),
    });
}

fn types_of(schema: &Json) -> Vec<&str> {
    match schema.get("type") {
        Some(Json::String(name)) => vec![name.as_str()],
        Some(Json::Array(names)) => names.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    }
}

fn matches_type(node: &Node, expected: &str) -> bool {
    match (&node.value, expected) {
        (Value::Null, "null")
        | (Value::Bool(_), "boolean")
        | (Value::Integer(_), "integer" | "number")
        | (Value::Float(_), "number")
        | (Value::String(_) | Value::Integer(_) | Value::Float(_), "string")
        | (Value::List(_), "array")
        | (Value::Map(_), "object") => true,
        (Value::Float(value), "integer") => value.fract() == 0.0,
        _ => false,
    }
}

fn describe_types(types: &[&str]) -> String {
    let words: Vec<&str> = types
        .iter()
        .filter(|name| **name != "null")
        .map(|name| match *name {
            "integer" => "an integer",
            "number" => "a number",
            "string" => "a string",
            "boolean" => "true or false",
            "array" => "a list",
            "object" => "a map",
            _ => "a value",
        })
        .collect();
    match words.as_slice() {
        [] => "null".to_owned(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

fn type_help(types: &[&str], node: &Node) -> Option<String> {
    let expected = types.iter().copied().find(|name| *name != "null");
    match (&node.value, expected) {
        (Value::String(text), Some("boolean")) if ["yes", "no", "on", "off"].contains(&text.as_str()) => {
            Some("write `true` or `false` (YAML 1.2 reads yes/no/on/off as text)".to_owned())
        }
        (Value::String(text), Some("integer")) if text.trim().parse::<i64>().is_ok() => {
            Some("write the number without quotes".to_owned())
        }
        (_, Some("integer")) => {
            Some("write a whole number, or a template such as \"{{steps.ID.outputs.NAME}}\"".to_owned())
        }
        (_, Some("number")) => Some("write a number".to_owned()),
        (_, Some("boolean")) => Some("write `true` or `false`".to_owned()),
        (_, Some("array")) => Some("write a list: `[a, b]`".to_owned()),
        (_, Some("object")) => Some("write a map of `name: value` entries".to_owned()),
        (_, Some("string")) => Some("write text (quote it if it looks like something else)".to_owned()),
        _ => None,
    }
}

fn scalar_text(node: &Node) -> Option<String> {
    match &node.value {
        Value::String(text) => Some(text.clone()),
        Value::Integer(value) => Some(value.to_string()),
        Value::Bool(value) => Some(value.to_string()),
        Value::Float(value) => Some(value.to_string()),
        Value::Null | Value::List(_) | Value::Map(_) => None,
    }
}

fn same_scalar(node: &Node, expected: &Json) -> bool {
    node.to_json() == *expected
}

/// Converts a rendered JSON value towards `schema`: numeric and boolean text where a
/// number or boolean is expected (a template renders `"3"` for a count), numbers
/// where text is expected. Deserialization then reports anything still wrong.
#[must_use]
pub fn coerce(value: Json, schema: &Json) -> Json {
    if let Some(alternatives) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Json::as_array) {
        if alternatives.iter().any(|alternative| accepts_as_is(&value, alternative)) {
            return value;
        }
        for alternative in alternatives {
            let coerced = coerce(value.clone(), alternative);
            if accepts_as_is(&coerced, alternative) {
                return coerced;
            }
        }
        return value;
    }
    let types = types_of(schema);
    match value {
        Json::String(text) if !types.contains(&"string") => {
            if types.contains(&"integer")
                && let Ok(integer) = text.trim().parse::<i64>()
            {
                return Json::from(integer);
            }
            if types.contains(&"number")
                && let Ok(number) = text.trim().parse::<f64>()
            {
                return serde_json::Number::from_f64(number).map_or(Json::String(text), Json::Number);
            }
            if types.contains(&"boolean") {
                match text.trim() {
                    "true" => return Json::Bool(true),
                    "false" => return Json::Bool(false),
                    _ => {}
                }
            }
            if (types.contains(&"object") || types.contains(&"array"))
                && let Ok(parsed) = serde_json::from_str::<Json>(&text)
            {
                return coerce(parsed, schema);
            }
            Json::String(text)
        }
        Json::Number(number) if types.contains(&"string") && !types.contains(&"integer") => {
            Json::String(number.to_string())
        }
        Json::Bool(flag) if types.contains(&"string") && !types.contains(&"boolean") => {
            Json::String(flag.to_string())
        }
        Json::Object(map) => {
            let properties = schema.get("properties").and_then(Json::as_object);
            let extra = schema.get("additionalProperties").filter(|extra| extra.is_object());
            Json::Object(
                map.into_iter()
                    .map(|(key, child)| {
                        let child_schema = properties.and_then(|properties| properties.get(&key)).or(extra);
                        let child = match child_schema {
                            Some(child_schema) => coerce(child, child_schema),
                            None => child,
                        };
                        (key, child)
                    })
                    .collect(),
            )
        }
        Json::Array(items) => match schema.get("items") {
            Some(item_schema) => {
                Json::Array(items.into_iter().map(|item| coerce(item, item_schema)).collect())
            }
            None => Json::Array(items),
        },
        other => other,
    }
}

fn accepts_as_is(value: &Json, schema: &Json) -> bool {
    let node = Node::from_json(value, Span::default());
    check(&node, schema, "").is_empty()
}
