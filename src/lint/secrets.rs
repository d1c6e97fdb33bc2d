//! DRP005: secrets written literally in the plan file. A plan is committed, reviewed in
//! pull requests and printed by dry-runs; only `{{secrets.NAME}}` values stay out of
//! all of those.
//!
//! Two signs: a name that says "secret" (`password`, `token`, `api_key`, ...) holding a
//! literal string, and a URL or libpq string carrying a password. Names are judged by
//! their words, so `key` (an S3 object key), `token_file` (a path) or
//! `AWS_ACCESS_KEY_ID` (an identifier) are not taken for secrets.

use std::ops::Range;

use super::Rule;
use super::facts::Facts;
use crate::lang::diagnostic::Diagnostic;
use crate::lang::node::{Node, Value};
use crate::lang::template::contains_expression;

/// Words that make a name secret wherever they appear in it (`PGPASSWORD`, `GITHUB_TOKEN`).
const SECRET_STEMS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "webhook",
    "authorization",
    "credential",
];
/// Words that make `key` in the same name a secret key (`api_key`, `ENCRYPTION_KEY`).
const KEY_QUALIFIERS: &[&str] = &[
    "api",
    "private",
    "secret",
    "encryption",
    "decryption",
    "signing",
    "master",
    "ssh",
    "gpg",
    "pgp",
    "hmac",
    "license",
    "client",
    "session",
    "access",
];
/// Words that make a name point at a secret rather than hold one (`token_file`,
/// `secret_name`, `AWS_ACCESS_KEY_ID`).
const REFERENCE_WORDS: &[&str] = &[
    "id",
    "ids",
    "path",
    "file",
    "dir",
    "directory",
    "name",
    "arn",
    "ref",
    "public",
    "prefix",
    "env",
    "length",
    "size",
    "type",
    "count",
    "ttl",
    "version",
    "expiry",
    "expires",
    "format",
    "header",
];

/// Where a value sits, for messages: ``var `db.password` ``, `` `with.env.TOKEN` of step `x` ``.
#[derive(Clone)]
struct Place {
    prefix: &'static str,
    path: Vec<String>,
    suffix: String,
    /// The parameters of the step's kind that name an object, not a secret key
    /// (`key`, `from_s3.key`); none outside a step's `with`.
    object_keys: &'static [&'static str],
}

impl Place {
    fn child(&self, key: &str) -> Place {
        let mut path = self.path.clone();
        path.push(key.to_owned());
        Place { prefix: self.prefix, path, suffix: self.suffix.clone(), object_keys: self.object_keys }
    }

    /// Whether a value here named `key` is a secret key: everywhere but at the
    /// parameters that name objects.
    fn bare_key_is_secret(&self) -> bool {
        let inside_with = self.path.get(1..).unwrap_or_default().join(".");
        !self.object_keys.contains(&inside_with.as_str())
    }

    fn describe(&self) -> String {
        format!("{}`{}`{}", self.prefix, self.path.join("."), self.suffix)
    }
}

/// Pushes a DRP005 warning for every literal secret in the plan.
pub(super) fn literal_secrets(facts: &Facts<'_>, found: &mut Vec<Diagnostic>) {
    let spec = &facts.plan.spec;
    for (name, value) in &spec.vars.entries {
        let place =
            Place { prefix: "var ", path: vec![name.value.clone()], suffix: String::new(), object_keys: &[] };
        check_named(facts, &name.value, &value.0, false, &place, found);
    }
    for (name, input) in &spec.inputs.entries {
        if let Some(default) = &input.default {
            let place = Place {
                prefix: "the default of input ",
                path: vec![name.value.clone()],
                suffix: String::new(),
                object_keys: &[],
            };
            check_named(facts, &name.value, &default.0, false, &place, found);
        }
    }
    for (index, step) in facts.plan.steps.iter().enumerate() {
        let Some(entries) = step.with.as_map() else { continue };
        // `key` of s3.fetch and s3.put is an object key, not a secret.
        let with = Place {
            prefix: "",
            path: vec!["with".to_owned()],
            suffix: format!(" of step `{}`", facts.id(index)),
            object_keys: step.kind.info().object_keys,
        };
        for entry in entries {
            let place = with.child(&entry.key);
            check_named(facts, &entry.key, &entry.value, place.bare_key_is_secret(), &place, found);
        }
    }
}

/// Checks `node`, the value of `name`, then everything inside it.
fn check_named(
    facts: &Facts<'_>,
    name: &str,
    node: &Node,
    bare_key_is_secret: bool,
    place: &Place,
    found: &mut Vec<Diagnostic>,
) {
    match &node.value {
        Value::String(text) => {
            if is_secret_name(name, bare_key_is_secret) && is_literal_secret(text) {
                found.push(literal_value(facts, node, name, place));
            } else if let Some((range, scheme)) = embedded_password(text) {
                found.push(embedded(facts, node, text, &range, scheme, place));
            }
        }
        Value::List(items) => {
            for item in items {
                check_named(facts, name, item, bare_key_is_secret, place, found);
            }
        }
        Value::Map(entries) => {
            for entry in entries {
                // Inside a map the bare name `key` is a secret (`decrypt.key`, `encrypt.key`),
                // but where the kind says it names an object (`from_s3.key`).
                let place = place.child(&entry.key);
                check_named(facts, &entry.key, &entry.value, place.bare_key_is_secret(), &place, found);
            }
        }
        Value::Null | Value::Bool(_) | Value::Integer(_) | Value::Float(_) => {}
    }
}

fn literal_value(facts: &Facts<'_>, node: &Node, name: &str, place: &Place) -> Diagnostic {
    let secret = secret_name_for(name);
    facts
        .warning(Rule::LiteralSecret, node.span, format!("{} holds a secret written in the plan", place.describe()))
        .with_label("literal secret")
        .with_help(format!(
            "declare it under `secrets:` (e.g. `{secret}: {{ env: {} }}`) and write `\"{{{{secrets.{secret}}}}}\"` \
             here: plan files are committed, reviewed and printed by dry-runs",
            secret.to_ascii_uppercase()
        ))
}

fn embedded(
    facts: &Facts<'_>,
    node: &Node,
    text: &str,
    range: &Range<usize>,
    scheme: Scheme,
    place: &Place,
) -> Diagnostic {
    let how = match scheme {
        Scheme::Url => "in the URL as `user:{{secrets.db_password}}@`",
        Scheme::Keywords => "as `password={{secrets.db_password}}`",
    };
    facts
        .warning(
            Rule::LiteralSecret,
            facts.locate(node, text, range),
            format!("{} holds a password written in the plan", place.describe()),
        )
        .with_label("literal password")
        .with_help(format!(
            "declare it under `secrets:` (e.g. `db_password: {{ env: DB_PASSWORD }}`) and write it {how}, or leave it \
             out and let the client read its environment (`PGPASSWORD`)"
        ))
}

/// Whether a parameter, var or environment name says it holds a secret.
/// `bare_key_is_secret`: whether the name `key` alone means a secret key here.
fn is_secret_name(name: &str, bare_key_is_secret: bool) -> bool {
    let words = words(name);
    if words.iter().any(|word| REFERENCE_WORDS.contains(&word.as_str())) {
        return false;
    }
    if words.iter().any(|word| SECRET_STEMS.iter().any(|stem| word.contains(stem))) {
        return true;
    }
    if words.len() == 1 && words[0] == "key" {
        return bare_key_is_secret;
    }
    let has_key = words.iter().any(|word| word == "key");
    let qualified = words.iter().any(|word| KEY_QUALIFIERS.contains(&word.as_str()));
    let compound = words.iter().any(|word| {
        word.len() > 3
            && word.ends_with("key")
            && KEY_QUALIFIERS.iter().any(|qualifier| word.strip_suffix("key") == Some(qualifier))
    });
    (has_key && qualified) || compound
}

/// Whether a value is a literal a secret could be: not a template, not empty, not a
/// reference to an environment variable.
fn is_literal_secret(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty() && !contains_expression(text) && !text.starts_with('$')
}

/// Splits `PGPASSWORD`, `api_key`, `X-Api-Key`, `apiKey` into lowercase words.
fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lowercase = false;
    for character in name.chars() {
        if !character.is_ascii_alphanumeric() {
            words.push(std::mem::take(&mut current));
            previous_lowercase = false;
            continue;
        }
        if character.is_ascii_uppercase() && previous_lowercase {
            words.push(std::mem::take(&mut current));
        }
        current.push(character.to_ascii_lowercase());
        previous_lowercase = character.is_ascii_lowercase() || character.is_ascii_digit();
    }
    words.push(current);
    words.retain(|word| !word.is_empty());
    words
}

/// A secret name for the help line: `PGPASSWORD` → `pgpassword`, `X-Api-Key` → `x_api_key`.
fn secret_name_for(name: &str) -> String {
    let joined = words(name).join("_");
    if joined.is_empty() { "secret".to_owned() } else { joined }
}

/// How a password is embedded in a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    /// `scheme://user:password@host`.
    Url,
    /// libpq keywords, `host=db password=...`.
    Keywords,
}

/// The byte range of a literal password inside a URL's user info or a libpq keyword
/// string.
fn embedded_password(text: &str) -> Option<(Range<usize>, Scheme)> {
    for (separator, _) in text.match_indices("://") {
        let authority_start = separator + 3;
        let rest = &text[authority_start..];
        let authority_end = rest.find(['/', '?', '#', ' ', '"', '\'']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let Some(at) = authority.rfind('@') else { continue };
        let Some(colon) = authority[..at].find(':') else { continue };
        let password = &authority[colon + 1..at];
        if is_literal_secret(password) {
            return Some((authority_start + colon + 1..authority_start + at, Scheme::Url));
        }
    }
    for (position, _) in text.match_indices("password=") {
        if position > 0 && !text[..position].ends_with(char::is_whitespace) {
            continue;
        }
        let value_start = position + "password=".len();
        let rest = &text[value_start..];
        let (start, length) = match rest.strip_prefix('\'') {
            Some(quoted) => (value_start + 1, quoted.find('\'').unwrap_or(quoted.len())),
            None => (value_start, rest.find(char::is_whitespace).unwrap_or(rest.len())),
        };
        let password = &text[start..start + length];
        if is_literal_secret(password) && !password.contains("{{") {
            return Some((start..start + length, Scheme::Keywords));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_judged_by_their_words() {
        for secret in
            ["password", "PGPASSWORD", "db_password", "GITHUB_TOKEN", "api_key", "X-Api-Key", "apiKey"]
        {
            assert!(is_secret_name(secret, false), "{secret}");
        }
        for secret in ["AWS_SECRET_ACCESS_KEY", "encryption_key", "webhook", "Authorization", "privateKey"] {
            assert!(is_secret_name(secret, false), "{secret}");
        }
        for plain in
            ["key", "backup_key", "token_file", "AWS_ACCESS_KEY_ID", "secret_name", "public_key", "bucket"]
        {
            assert!(!is_secret_name(plain, false), "{plain}");
        }
        assert!(is_secret_name("key", true));
    }

    #[test]
    fn literal_values_only() {
        assert!(is_literal_secret("hunter2"));
        assert!(!is_literal_secret("{{secrets.pg_password}}"));
        assert!(!is_literal_secret("Bearer {{secrets.token}}"));
        assert!(!is_literal_secret("$PGPASSWORD"));
        assert!(!is_literal_secret(""));
    }

    #[test]
    fn finds_passwords_in_urls_and_keyword_strings() {
        let url = "postgres://app:s3cret@db:5432/tododb";
        let (range, scheme) = embedded_password(url).unwrap();
        assert_eq!((&url[range], scheme), ("s3cret", Scheme::Url));
        let redis = "redis://:hunter2@127.0.0.1:6379/0";
        assert_eq!(&redis[embedded_password(redis).unwrap().0], "hunter2");
        let keywords = "host=db user=app password='p w' dbname=x";
        assert_eq!(&keywords[embedded_password(keywords).unwrap().0], "p w");
        assert_eq!(embedded_password("postgres://app:{{secrets.pg}}@db/x"), None);
        assert_eq!(embedded_password("postgres://app@db/x"), None);
        assert_eq!(embedded_password("https://example.com/a:b@c"), None);
        assert_eq!(embedded_password("host=db sslpassword= x"), None);
    }
}
