//! Secret values: resolved from the environment or files, held in a type whose
//! `Debug` and `Display` never show them, and scrubbed from everything written.

use std::fmt;

use crate::spec::SecretSpec;

/// A secret's value. Printing it shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> SecretValue {
        SecretValue(value.into())
    }

    /// The value itself, for the step that needs it. Never print it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("***")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("***")
    }
}

/// Reads a secret from its source.
///
/// # Errors
/// A sentence naming the secret and its source (never its value).
pub fn resolve(name: &str, spec: &SecretSpec) -> Result<SecretValue, String> {
    if let Some(variable) = &spec.env {
        return match std::env::var(&variable.value) {
            Ok(value) if !value.is_empty() => Ok(SecretValue(value)),
            Ok(_) => Err(format!(
                "secret `{name}`: environment variable {} is empty; export it with the secret's value before \
                 running",
                variable.value
            )),
            Err(std::env::VarError::NotPresent) => Err(format!(
                "secret `{name}`: environment variable {} is not set; export it before running",
                variable.value
            )),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(format!("secret `{name}`: environment variable {} is not valid UTF-8", variable.value))
            }
        };
    }
    if let Some(path) = &spec.file {
        let text = std::fs::read_to_string(&path.value)
            .map_err(|error| format!("secret `{name}`: cannot read {}: {error}", path.value))?;
        let first_line = text.lines().next().unwrap_or_default().trim_end_matches('\r').to_owned();
        if first_line.is_empty() {
            return Err(format!("secret `{name}`: {} is empty", path.value));
        }
        return Ok(SecretValue(first_line));
    }
    Err(format!("secret `{name}` has no source"))
}

/// Replaces every occurrence of any secret value in text by `***`.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    values: Vec<String>,
}

impl Redactor {
    /// A redactor for these secrets (values shorter than 4 characters are still
    /// redacted; an empty value is ignored).
    #[must_use]
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a SecretValue>) -> Redactor {
        let mut values: Vec<String> =
            secrets.into_iter().map(|secret| secret.0.clone()).filter(|value| !value.is_empty()).collect();
        // Longest first, so a secret containing another is replaced whole.
        values.sort_by_key(|value| std::cmp::Reverse(value.len()));
        Redactor { values }
    }

    /// The text with secrets replaced.
    #[must_use]
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), "***");
            }
        }
        out
    }

    /// A JSON value with secrets replaced in every string.
    #[must_use]
    pub fn redact_json(&self, value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::String(text) => serde_json::Value::String(self.redact(text)),
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(|item| self.redact_json(item)).collect())
            }
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.iter().map(|(key, item)| (key.clone(), self.redact_json(item))).collect(),
            ),
            serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
                value.clone()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_are_scrubbed() {
        let secret = SecretValue::new("hunter2-long");
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
        let redactor = Redactor::new([&secret]);
        assert_eq!(redactor.redact("password=hunter2-long!"), "password=***!");
    }
}
