//! `dr-plan steps [KIND]`, `dr-plan graph` and `dr-plan schema`: what the catalog and a
//! plan's graph look like, generated from the kinds' table and the plan types.

use std::path::Path;

use super::{GraphFormat, StepsFormat, catalog};
use crate::sys::exit_code;

/// `dr-plan steps [KIND]`.
#[must_use]
pub fn steps(kind: Option<&str>, format: StepsFormat) -> i32 {
    let kinds: Vec<crate::kinds::StepKind> = match kind {
        None => crate::kinds::CATALOG.to_vec(),
        Some(name) => match crate::kinds::find(name) {
            Some(kind) => vec![kind],
            None => {
                let names = crate::kinds::CATALOG.iter().map(|kind| kind.name());
                crate::errln!(
                    "error: unknown step kind `{name}`; {}",
                    crate::lang::diagnostic::suggestion(name, names)
                );
                return exit_code::INVALID;
            }
        },
    };
    match (format, kind) {
        (StepsFormat::Json, _) => {
            crate::outln!("{}", serde_json::to_string_pretty(&catalog::json(&kinds)).unwrap_or_default())
        }
        (StepsFormat::Human, None) => crate::out!("{}", catalog::overview()),
        (StepsFormat::Human, Some(_)) => crate::out!("{}", catalog::human(kinds[0])),
        (StepsFormat::Markdown, _) => {
            let pages: Vec<String> = kinds.iter().map(|kind| catalog::markdown(*kind)).collect();
            crate::out!("{}", pages.join("\n"));
        }
    }
    exit_code::SUCCESS
}

/// `dr-plan graph PLAN`.
#[must_use]
pub fn graph(path: &Path, format: GraphFormat) -> i32 {
    match crate::kinds::load_plan(path) {
        Ok(plan) => {
            let graph = match format {
                GraphFormat::Mermaid => crate::preview::graph::mermaid(&plan),
                GraphFormat::Dot => crate::preview::graph::dot(&plan),
            };
            // Plan text (descriptions, `when` templates) never reaches a terminal raw.
            crate::out!("{}", crate::lang::diagnostic::escape_controls(&graph));
            exit_code::SUCCESS
        }
        Err(problems) => {
            crate::sys::output::print_diagnostics(&problems);
            exit_code::INVALID
        }
    }
}

/// `dr-plan schema`.
#[must_use]
pub fn schema() -> i32 {
    crate::outln!("{}", serde_json::to_string_pretty(&super::schema::plan_schema()).unwrap_or_default());
    exit_code::SUCCESS
}
