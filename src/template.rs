//! Placeholder until the template engine lands (being written in the `template` branch).

/// Whether `text` holds a `{{` expression.
#[must_use]
pub fn contains_expression(text: &str) -> bool {
    text.contains("{{")
}
