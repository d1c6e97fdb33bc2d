//! Lint output: rendered for people, a versioned JSON document, SARIF 2.1.0 for code
//! scanning, and GitHub workflow annotations. Every function takes the results of a
//! whole run (one [`FileResult`] per file) and returns the text to print.

use serde::Serialize;
use serde_json::{Value as Json, json};

use super::{FileResult, Rule, Summary};
use crate::lang::code::Code;
use crate::lang::diagnostic::{Diagnostic, Severity};
use crate::lang::source::Span;

/// Codes of validation errors (which lint reports for plans that do not validate):
/// every [`Code`], each with [`Code::description`] saying what it means.
pub const VALIDATION_CODES: &[Code] = &Code::ALL;

/// Version of the [`json`] document's layout; bumped on incompatible changes.
pub const JSON_FORMAT_VERSION: u32 = 1;

/// Each diagnostic rendered with its source excerpt, then `N errors, M warnings in K files`.
#[must_use]
pub fn human(results: &[FileResult], color: bool) -> String {
    let mut out = String::new();
    for diagnostic in results.iter().flat_map(|result| &result.diagnostics) {
        out.push_str(&diagnostic.render(color));
    }
    out.push_str(&format!("{}\n", Summary::of(results)));
    out
}

#[derive(Serialize)]
struct JsonDocument<'a> {
    version: u32,
    diagnostics: Vec<JsonDiagnostic<'a>>,
    summary: Summary,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    file: &'a str,
    line: Option<usize>,
    column: Option<usize>,
    end_line: Option<usize>,
    end_column: Option<usize>,
    severity: Severity,
    code: &'a str,
    message: &'a str,
    help: Option<&'a str>,
    labels: Vec<JsonLabel<'a>>,
}

#[derive(Serialize)]
struct JsonLabel<'a> {
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    message: &'a str,
}

/// A stable JSON document: `{"version": 1, "diagnostics": [...], "summary": {...}}`.
/// Lines and columns are 1-based, columns count characters, ends are exclusive.
///
/// # Panics
/// Never: the document holds only strings, numbers and nulls, which always serialize.
#[must_use]
pub fn json(results: &[FileResult]) -> String {
    let diagnostics = results
        .iter()
        .flat_map(|result| result.diagnostics.iter().map(move |diagnostic| (result, diagnostic)))
        .map(|(result, diagnostic)| {
            let range = primary_range(diagnostic);
            JsonDiagnostic {
                file: file_of(result, diagnostic),
                line: range.map(|range| range.start_line),
                column: range.map(|range| range.start_column),
                end_line: range.map(|range| range.end_line),
                end_column: range.map(|range| range.end_column),
                severity: diagnostic.severity,
                code: diagnostic.code,
                message: &diagnostic.message,
                help: diagnostic.help.as_deref(),
                labels: diagnostic
                    .labels
                    .iter()
                    .filter_map(|label| {
                        let range = LineRange::of(diagnostic, label.span)?;
                        Some(JsonLabel {
                            line: range.start_line,
                            column: range.start_column,
                            end_line: range.end_line,
                            end_column: range.end_column,
                            message: &label.message,
                        })
                    })
                    .collect(),
            }
        })
        .collect();
    let document = JsonDocument { version: JSON_FORMAT_VERSION, diagnostics, summary: Summary::of(results) };
    serde_json::to_string_pretty(&document).expect("the document holds only strings and numbers") + "\n"
}

/// A SARIF 2.1.0 log with one run of `dr-plan`: every lint rule and validation code
/// as a rule, every diagnostic as a result with its region.
///
/// # Panics
/// Never: the log holds only strings and numbers, which always serialize.
#[must_use]
pub fn sarif(results: &[FileResult]) -> String {
    let docs = docs_url();
    let mut rules: Vec<Json> = Rule::ALL
        .into_iter()
        .map(|rule| {
            sarif_rule(rule.code(), rule.name(), rule.summary(), "warning", &rule.anchor(), docs.as_deref())
        })
        .collect();
    rules.extend(VALIDATION_CODES.iter().map(|code| {
        sarif_rule(
            code.as_str(),
            code.as_str(),
            code.description(),
            "error",
            "validation-errors",
            docs.as_deref(),
        )
    }));
    let mut rule_ids: Vec<String> = Rule::ALL
        .into_iter()
        .map(|rule| rule.code().to_owned())
        .chain(VALIDATION_CODES.iter().map(|code| code.as_str().to_owned()))
        .collect();
    let mut sarif_results = Vec::new();
    for result in results {
        for diagnostic in &result.diagnostics {
            let rule_index = if let Some(index) = rule_ids.iter().position(|id| id == diagnostic.code) {
                index
            } else {
                // A code this catalog does not list yet: describe it from the diagnostic.
                rule_ids.push(diagnostic.code.to_owned());
                rules.push(sarif_rule(
                    diagnostic.code,
                    diagnostic.code,
                    "A plan validation error.",
                    level(diagnostic.severity),
                    "validation-errors",
                    docs.as_deref(),
                ));
                rule_ids.len() - 1
            };
            sarif_results.push(sarif_result(result, diagnostic, rule_index));
        }
    }
    let document = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "dr-plan",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": sarif_results,
        }]
    });
    serde_json::to_string_pretty(&document).expect("the document holds only strings and numbers") + "\n"
}

/// One `::warning file=...::message` line per diagnostic, the workflow command GitHub
/// Actions turns into an annotation on the file.
#[must_use]
pub fn github(results: &[FileResult]) -> String {
    let mut out = String::new();
    for result in results {
        for diagnostic in &result.diagnostics {
            let mut properties = Vec::new();
            let file = file_of(result, diagnostic);
            if !file.is_empty() {
                properties.push(format!("file={}", escape_property(file)));
            }
            if let Some(range) = primary_range(diagnostic) {
                properties.push(format!("line={}", range.start_line));
                properties.push(format!("col={}", range.start_column));
                properties.push(format!("endLine={}", range.end_line));
                properties.push(format!("endColumn={}", range.end_column));
            }
            properties.push(format!("title={}", escape_property(diagnostic.code)));
            let mut message = diagnostic.message.clone();
            if let Some(help) = &diagnostic.help {
                message.push_str(&format!("\nhelp: {help}"));
            }
            out.push_str(&format!(
                "::{} {}::{}\n",
                level(diagnostic.severity),
                properties.join(","),
                escape_data(&message)
            ));
        }
    }
    out
}

/// 1-based lines and character columns of a span; the end is exclusive.
#[derive(Clone, Copy, Debug)]
struct LineRange {
    start_line: usize,
    start_column: usize,
    end_line: usize,
    end_column: usize,
}

impl LineRange {
    fn of(diagnostic: &Diagnostic, span: Span) -> Option<LineRange> {
        let file = diagnostic.file.as_ref()?;
        let (start_line, start_column) = file.line_column(span.start);
        let (end_line, end_column) = file.line_column(span.end);
        Some(LineRange { start_line, start_column, end_line, end_column })
    }
}

fn primary_range(diagnostic: &Diagnostic) -> Option<LineRange> {
    LineRange::of(diagnostic, diagnostic.primary_span()?)
}

/// The file a diagnostic is about: its own, else the path that was linted.
fn file_of<'a>(result: &'a FileResult, diagnostic: &'a Diagnostic) -> &'a str {
    if diagnostic.file.is_some() { diagnostic.file_name() } else { &result.path }
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// Where `docs/lint.md` is published: under the crate's `repository`, when it has one.
fn docs_url() -> Option<String> {
    let repository = env!("CARGO_PKG_REPOSITORY").trim_end_matches('/');
    (!repository.is_empty()).then(|| format!("{repository}/blob/main/docs/lint.md"))
}

fn sarif_rule(id: &str, name: &str, summary: &str, level: &str, anchor: &str, docs: Option<&str>) -> Json {
    let mut rule = json!({
        "id": id,
        "name": name,
        "shortDescription": { "text": summary },
        "help": { "text": format!("{summary} See docs/lint.md#{anchor}.") },
        "defaultConfiguration": { "level": level },
    });
    if let Some(docs) = docs {
        rule["helpUri"] = Json::String(format!("{docs}#{anchor}"));
    }
    rule
}

fn sarif_result(result: &FileResult, diagnostic: &Diagnostic, rule_index: usize) -> Json {
    let mut text = diagnostic.message.clone();
    if let Some(help) = &diagnostic.help {
        text.push_str(&format!("\nhelp: {help}"));
    }
    let uri = artifact_uri(file_of(result, diagnostic));
    let location = |span: Span, message: &str| -> Option<Json> {
        let range = LineRange::of(diagnostic, span)?;
        let mut location = json!({
            "physicalLocation": {
                "artifactLocation": { "uri": uri },
                "region": {
                    "startLine": range.start_line,
                    "startColumn": range.start_column,
                    "endLine": range.end_line,
                    "endColumn": range.end_column,
                }
            }
        });
        if !message.is_empty() {
            location["message"] = json!({ "text": message });
        }
        Some(location)
    };
    let mut locations: Vec<Json> = diagnostic
        .labels
        .first()
        .and_then(|label| location(label.span, &label.message))
        .into_iter()
        .collect();
    if locations.is_empty() {
        // No text to point at (an unreadable file): the file itself is the location.
        locations.push(json!({ "physicalLocation": { "artifactLocation": { "uri": uri } } }));
    }
    let related: Vec<Json> = diagnostic
        .labels
        .iter()
        .skip(1)
        .filter_map(|label| location(label.span, &label.message))
        .enumerate()
        .map(|(index, mut location)| {
            location["id"] = json!(index + 1);
            location
        })
        .collect();
    let mut sarif_result = json!({
        "ruleId": diagnostic.code,
        "ruleIndex": rule_index,
        "level": level(diagnostic.severity),
        "message": { "text": text },
        "locations": locations,
    });
    if !related.is_empty() {
        sarif_result["relatedLocations"] = Json::Array(related);
    }
    sarif_result
}

/// A file name as a URI reference: relative paths stay relative (code scanning resolves
/// them against the repository root), absolute ones become `file://` URIs, and bytes
/// outside the unreserved set are percent-encoded.
fn artifact_uri(path: &str) -> String {
    let path = path.replace('\\', "/");
    let mut encoded = String::new();
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    if path.starts_with('/') { format!("file://{encoded}") } else { encoded }
}

/// Escapes a workflow command's message: `%`, CR and LF.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a workflow command's property value: as data, plus `:` and `,`.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::source::SourceFile;

    fn sample() -> Vec<FileResult> {
        let file = SourceFile::new("plans/a b.yaml", "version: 1\nname: x\nsteps: []\n");
        let warning = Diagnostic::finding(
            Rule::NoRto.code(),
            &file,
            Span::new(17, 18),
            "plan `x` has no recovery time objective",
        )
        .with_label("no rto")
        .with_secondary(Span::new(0, 7), "here, 100%")
        .with_help("add `objectives: { rto: 30m }`");
        let error = Diagnostic::error(Code::Cycle, &file, Span::new(19, 24), "a → b → a");
        let unreadable = Diagnostic::about_path(Code::File, "missing.yaml", "cannot read: not found");
        vec![
            FileResult { path: "plans/a b.yaml".to_owned(), diagnostics: vec![warning, error] },
            FileResult { path: "missing.yaml".to_owned(), diagnostics: vec![unreadable] },
            FileResult { path: "plans/clean.yaml".to_owned(), diagnostics: Vec::new() },
        ]
    }

    #[test]
    fn human_ends_with_the_summary() {
        let out = human(&sample(), false);
        assert!(out.ends_with("2 errors, 1 warning in 3 files\n"), "{out}");
        assert!(out.contains("DRP003"), "{out}");
    }

    #[test]
    fn json_is_versioned_and_located() {
        let document: Json = serde_json::from_str(&json(&sample())).unwrap();
        assert_eq!(document["version"], 1);
        let first = &document["diagnostics"][0];
        assert_eq!(first["file"], "plans/a b.yaml");
        assert_eq!((first["line"].as_u64(), first["column"].as_u64()), (Some(2), Some(7)));
        assert_eq!((first["end_line"].as_u64(), first["end_column"].as_u64()), (Some(2), Some(8)));
        assert_eq!(first["severity"], "warning");
        assert_eq!(first["labels"].as_array().unwrap().len(), 2);
        assert_eq!(first["labels"][1]["message"], "here, 100%");
        let unreadable = &document["diagnostics"][2];
        assert_eq!(unreadable["file"], "missing.yaml");
        assert!(unreadable["line"].is_null());
        assert_eq!(document["summary"], json!({ "errors": 2, "warnings": 1, "files": 3 }));
    }

    #[test]
    fn sarif_has_the_required_structure() {
        let log: Json = serde_json::from_str(&sarif(&sample())).unwrap();
        assert_eq!(log["version"], "2.1.0");
        assert_eq!(log["$schema"], "https://json.schemastore.org/sarif-2.1.0.json");
        let runs = log["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1);
        let driver = &runs[0]["tool"]["driver"];
        assert_eq!(driver["name"], "dr-plan");
        let rules = driver["rules"].as_array().unwrap();
        for code in ["DRP001", "DRP010", "unknown-field", "cycle"] {
            let rule = rules.iter().find(|rule| rule["id"] == code).unwrap_or_else(|| panic!("rule {code}"));
            assert!(rule["shortDescription"]["text"].is_string());
        }
        let results = runs[0]["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        for result in results {
            let index = usize::try_from(result["ruleIndex"].as_u64().unwrap()).unwrap();
            assert_eq!(rules[index]["id"], result["ruleId"]);
            assert!(matches!(result["level"].as_str(), Some("warning" | "error")));
            assert!(result["message"]["text"].is_string());
            assert!(!result["locations"].as_array().unwrap().is_empty());
        }
        let location = &results[0]["locations"][0]["physicalLocation"];
        assert_eq!(location["artifactLocation"]["uri"], "plans/a%20b.yaml");
        assert_eq!(
            location["region"],
            json!({ "startLine": 2, "startColumn": 7, "endLine": 2, "endColumn": 8 })
        );
        assert_eq!(results[0]["relatedLocations"][0]["id"], 1);
        assert_eq!(results[1]["level"], "error");
        assert!(results[2]["locations"][0]["physicalLocation"].get("region").is_none());
    }

    #[test]
    fn every_validation_code_is_in_the_docs_table_and_in_sarif() {
        let docs = include_str!("../../docs/lint.md");
        let missing: Vec<&str> = Code::ALL
            .iter()
            .map(|code| code.as_str())
            .filter(|code| !docs.contains(&format!("\n| `{code}` | ")))
            .collect();
        assert!(missing.is_empty(), "docs/lint.md's table of validation errors needs a row for: {missing:?}");
        let log: Json = serde_json::from_str(&sarif(&[])).unwrap();
        let rules = log["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
        for code in Code::ALL {
            let rule = rules
                .iter()
                .find(|rule| rule["id"] == code.as_str())
                .unwrap_or_else(|| panic!("rule {code}"));
            assert_eq!(rule["shortDescription"]["text"], code.description());
        }
    }

    #[test]
    fn github_annotations_escape_data_and_properties() {
        let out = github(&sample());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "::warning file=plans/a b.yaml,line=2,col=7,endLine=2,endColumn=8,title=DRP003::plan `x` has no \
             recovery time objective%0Ahelp: add `objectives: { rto: 30m }`"
        );
        assert!(lines[1].starts_with("::error file=plans/a b.yaml,line=3,col=1,"), "{}", lines[1]);
        assert_eq!(lines[2], "::error file=missing.yaml,title=file::missing.yaml: cannot read: not found");
        assert_eq!(escape_property("a:b,c%\n"), "a%3Ab%2Cc%25%0A");
        assert_eq!(artifact_uri("/tmp/x y.yaml"), "file:///tmp/x%20y.yaml");
    }
}
