//! Secret values: resolved from the environment or files, held in a type whose
//! `Debug` and `Display` never show them, and scrubbed from everything written.
//!
//! Scrubbing works on raw text, before anything joins, trims or cuts it, and it does
//! not look for the value alone: also for its trimmed form, each line of a multi-line
//! value, and the hex and base64 forms a step may print (see [`Redactor::new`]).

use std::fmt;
use std::ops::Range;

use crate::lang::spec::SecretSpec;

/// The fewest characters a secret may have, leading and trailing whitespace not
/// counted. Every occurrence of a secret is replaced by `***`; a value this short would
/// show through the gaps (with `e` as a secret, every word loses its `e`s), so the run
/// refuses it at the start. Lines of a multi-line secret shorter than this are not
/// looked for on their own either (a `}` line of a JSON secret is no secret).
pub const MINIMUM_LENGTH: usize = 6;

/// Where text is cut (a size cap), the fewest bytes at the end of the kept part that
/// are taken for the beginning of a secret and cut too. A full secret never straddles
/// a cut ([`Redactor::cut_point`] moves the cut before it); this is for a secret the
/// program itself wrote only part of. Three is half of [`MINIMUM_LENGTH`]: what may stay
/// is at most two characters of a secret of six or more, and matching shorter endings
/// would shorten ordinary output at most cuts (the hex and base64 forms begin with
/// common characters).
const FRAGMENT_MINIMUM: usize = 3;

/// The fewest characters of a base64 form whose alignment in a longer stream is
/// guessed (see [`encoded_forms`]): two 4-character groups, 6 bytes of the secret.
/// A single group would match ordinary text too often.
const ALIGNED_MINIMUM: usize = 8;

/// Widths at which tools wrap base64 (`openssl base64` and PEM: 64; GNU `base64`
/// and MIME: 76) and hex (`xxd -p`: 60).
const BASE64_WRAPS: [usize; 2] = [64, 76];
const HEX_WRAP: usize = 60;

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
/// A sentence naming the secret and its source (never its value): the source cannot be
/// read, is empty, or holds fewer than [`MINIMUM_LENGTH`] characters.
pub fn resolve(name: &str, spec: &SecretSpec) -> Result<SecretValue, String> {
    if let Some(variable) = &spec.env {
        return match std::env::var(&variable.value) {
            Ok(value) if !value.is_empty() => {
                long_enough(name, &format!("environment variable {}", variable.value), value)
            }
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
        return long_enough(name, &format!("the first line of {}", path.value), first_line);
    }
    Err(format!("secret `{name}` has no source"))
}

/// The value, if it has at least [`MINIMUM_LENGTH`] characters once trimmed.
fn long_enough(name: &str, source: &str, value: String) -> Result<SecretValue, String> {
    let length = value.trim().chars().count();
    if length >= MINIMUM_LENGTH {
        return Ok(SecretValue(value));
    }
    Err(format!(
        "secret `{name}`: {source} holds {}, and a secret needs at least {MINIMUM_LENGTH} (leading and \
         trailing whitespace not counted): dr-plan replaces every occurrence of a secret by `***`, which \
         would give a value that short away; use a longer secret",
        crate::lang::diagnostic::counted(length, "character", "characters")
    ))
}

/// Replaces every occurrence of any secret, and of the forms a step may derive from it,
/// in text by `***`.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// What is looked for, longest first, without duplicates or empty strings.
    patterns: Vec<String>,
}

impl Redactor {
    /// A redactor for these secrets. Besides each value it looks for:
    /// - the value trimmed (`trim_end` of a step's output would otherwise leave it
    ///   unmatched), and each trimmed line of a multi-line value with at least
    ///   [`MINIMUM_LENGTH`] characters (error messages join lines with ` / `);
    /// - its JSON-escaped form (quotes, backslashes, newlines as `\"`, `\\`, `\n`);
    /// - hex (lower and upper case) and base64 (standard and URL-safe, with and without
    ///   padding, and wrapped as tools wrap it) of the value, of its trimmed form and of
    ///   both followed by a newline (`echo "$SECRET" | base64`).
    ///
    /// A value shorter than [`MINIMUM_LENGTH`] (which the run refuses) is still
    /// redacted; an empty value is ignored.
    #[must_use]
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a SecretValue>) -> Redactor {
        let mut patterns = Vec::new();
        for secret in secrets {
            let value = secret.0.as_str();
            if value.is_empty() {
                continue;
            }
            let trimmed = value.trim();
            patterns.push(value.to_owned());
            patterns.push(trimmed.to_owned());
            if value.contains(['\n', '\r']) {
                patterns.extend(
                    value
                        .lines()
                        .map(str::trim)
                        .filter(|line| line.chars().count() >= MINIMUM_LENGTH)
                        .map(str::to_owned),
                );
            }
            for form in [value.to_owned(), trimmed.to_owned(), format!("{value}\n"), format!("{trimmed}\n")] {
                patterns.extend(encoded_forms(form.as_bytes()));
            }
            // Inside a JSON string (a step that prints JSON, `jq`, a log line) quotes,
            // backslashes and newlines are escaped: the secret must still be found.
            for form in [value, trimmed] {
                let escaped = serde_json::to_string(form).unwrap_or_default();
                let inner = escaped.get(1..escaped.len().saturating_sub(1)).unwrap_or_default();
                if inner != form {
                    patterns.push(inner.to_owned());
                }
            }
        }
        patterns.retain(|pattern| !pattern.is_empty());
        // Longest first, so that a cut ([`Redactor::cut_point`]) looks at the longest
        // fragment first; duplicates removed.
        patterns.sort_by(|left, right| right.len().cmp(&left.len()).then_with(|| left.cmp(right)));
        patterns.dedup();
        Redactor { patterns }
    }

    /// The text with secrets replaced. Occurrences that overlap (a secret that ends
    /// where another begins, a line inside a whole value) become one `***`.
    #[must_use]
    pub fn redact(&self, text: &str) -> String {
        let occurrences = self.occurrences(text);
        if occurrences.is_empty() {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for occurrence in occurrences {
            out.push_str(&text[copied..occurrence.start]);
            out.push_str("***");
            copied = occurrence.end;
        }
        out.push_str(&text[copied..]);
        out
    }

    /// A JSON value with secrets replaced in every string, object keys included.
    #[must_use]
    pub fn redact_json(&self, value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::String(text) => serde_json::Value::String(self.redact(text)),
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(|item| self.redact_json(item)).collect())
            }
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.iter().map(|(key, item)| (self.redact(key), self.redact_json(item))).collect(),
            ),
            serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
                value.clone()
            }
        }
    }

    /// Where to cut `text` to keep at most `limit` bytes of it, for text that is kept
    /// raw (a step's output, redacted later when it is journaled): never inside a
    /// character, never inside an occurrence of a secret (the cut moves before it, so
    /// that no part of it is kept), and not after a fragment of at least
    /// [`FRAGMENT_MINIMUM`] bytes that begins a secret. `text.len()` when it fits.
    #[must_use]
    pub fn cut_point(&self, text: &str, limit: usize) -> usize {
        if text.len() <= limit {
            return text.len();
        }
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let occurrences = self.occurrences(text);
        loop {
            if let Some(straddling) =
                occurrences.iter().find(|occurrence| occurrence.start < cut && cut < occurrence.end)
            {
                cut = straddling.start;
            }
            match self.beginning_at_end(&text[..cut]) {
                0 => return cut,
                fragment => cut -= fragment,
            }
        }
    }

    /// The byte ranges of all occurrences, in order, overlapping ones merged.
    fn occurrences(&self, text: &str) -> Vec<Range<usize>> {
        let mut found: Vec<Range<usize>> = self
            .patterns
            .iter()
            .flat_map(|pattern| {
                text.match_indices(pattern.as_str()).map(|(start, _)| start..start + pattern.len())
            })
            .collect();
        found.sort_by_key(|range| (range.start, std::cmp::Reverse(range.end)));
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(found.len());
        for range in found {
            match merged.last_mut() {
                Some(last) if range.start < last.end => last.end = last.end.max(range.end),
                _ => merged.push(range),
            }
        }
        merged
    }

    /// The length of the longest end of `text` (at least [`FRAGMENT_MINIMUM`] bytes)
    /// that is the beginning, but not the whole, of a pattern; 0 if none.
    fn beginning_at_end(&self, text: &str) -> usize {
        let text = text.as_bytes();
        let mut longest = 0;
        for pattern in &self.patterns {
            let pattern = pattern.as_bytes();
            let most = (pattern.len() - 1).min(text.len());
            // A fragment equal to a pattern's beginning starts where a character does
            // (the pattern is UTF-8), so cutting before it is a valid cut.
            if let Some(length) = (FRAGMENT_MINIMUM.max(longest + 1)..=most)
                .rev()
                .find(|&length| text[text.len() - length..] == pattern[..length])
            {
                longest = length;
            }
        }
        longest
    }
}

/// The hex and base64 forms of `bytes` that a step may print.
///
/// Base64 of a secret written on its own is matched whole, with and without `=`
/// padding, in both alphabets, and wrapped at the usual widths. Base64 of a longer
/// stream that contains the secret (`base64 < file-with-the-secret-inside`) encodes it
/// differently depending on where it falls among the 3-byte groups: at an offset of 0, 1
/// or 2 bytes past a group boundary. Only the groups made entirely of the secret's bytes
/// are the same whatever surrounds it, so for each of the three alignments the form is
/// the base64 of the secret's bytes from the first group boundary (skipping 0, 2 or 1
/// bytes) to the last, unpadded; the few characters at each end that mix in
/// neighbouring bytes stay. Those inner forms are looked for only when they have at
/// least [`ALIGNED_MINIMUM`] characters. Hex needs no such care: each byte is two
/// characters of its own.
fn encoded_forms(bytes: &[u8]) -> Vec<String> {
    let mut forms = Vec::new();
    let lower = hex::encode(bytes);
    forms.push(wrap(&lower, HEX_WRAP));
    forms.push(lower.to_uppercase());
    forms.push(lower);
    for alphabet in [STANDARD, URL_SAFE] {
        let padded = base64(bytes, alphabet, true);
        let unpadded = base64(bytes, alphabet, false);
        for skipped in 0..3 {
            let inner = bytes.get(skipped..).unwrap_or_default();
            let inner = base64(&inner[..inner.len() / 3 * 3], alphabet, false);
            if inner.len() >= ALIGNED_MINIMUM {
                if skipped == 0 {
                    forms.extend(BASE64_WRAPS.iter().map(|&width| wrap(&inner, width)));
                }
                forms.push(inner);
            }
        }
        forms.extend(BASE64_WRAPS.iter().map(|&width| wrap(&padded, width)));
        forms.push(padded);
        forms.push(unpadded);
    }
    forms
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `bytes` in base64 with `alphabet`, `=`-padded to a multiple of 4 when `padded`.
fn base64(bytes: &[u8], alphabet: &[u8; 64], padded: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let byte = |index: usize| u32::from(group.get(index).copied().unwrap_or_default());
        let bits = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for position in 0..4 {
            if position <= group.len() {
                let sextet = (bits >> (18 - 6 * position)) & 0x3f;
                out.push(char::from(alphabet[sextet as usize]));
            } else if padded {
                out.push('=');
            }
        }
    }
    out
}

/// `text` with a newline after every `width` characters (ASCII), as `base64` and
/// `xxd -p` print it; unchanged when it fits on one line.
fn wrap(text: &str, width: usize) -> String {
    let lines: Vec<&str> =
        text.as_bytes().chunks(width).map(|line| std::str::from_utf8(line).unwrap_or_default()).collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::source::Span;

    fn redactor(values: &[&str]) -> Redactor {
        let secrets: Vec<SecretValue> = values.iter().map(|value| SecretValue::new(*value)).collect();
        Redactor::new(&secrets)
    }

    #[test]
    fn a_secret_escaped_inside_json_is_found() {
        let redactor = Redactor::new([&SecretValue::new("he said \"hi\" loudly")]);
        assert_eq!(redactor.redact(r#"{"note":"he said \"hi\" loudly"}"#), r#"{"note":"***"}"#);
    }

    #[test]
    fn secrets_never_print_and_are_scrubbed() {
        let secret = SecretValue::new("hunter2-long");
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
        let redactor = Redactor::new([&secret]);
        assert_eq!(redactor.redact("password=hunter2-long!"), "password=***!");
    }

    #[test]
    fn base64_matches_the_reference_vectors() {
        // RFC 4648, section 10.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
        ] {
            assert_eq!(base64(plain.as_bytes(), STANDARD, true), encoded);
            assert_eq!(base64(plain.as_bytes(), STANDARD, false), encoded.trim_end_matches('='));
        }
        assert_eq!(base64(&[0xfb, 0xff], STANDARD, true), "+/8=");
        assert_eq!(base64(&[0xfb, 0xff], URL_SAFE, false), "-_8");
    }

    #[test]
    fn each_line_of_a_multi_line_secret_and_its_trimmed_form_are_scrubbed() {
        let redactor = redactor(&["  first-line-of-it\r\n  second line\n}\n"]);
        assert_eq!(redactor.redact("stderr: first-line-of-it / second line"), "stderr: *** / ***");
        assert_eq!(redactor.redact("x first-line-of-it\r\n  second line\n}"), "x ***");
        // A line shorter than the minimum is no secret on its own.
        assert_eq!(redactor.redact("{ a: 1 }"), "{ a: 1 }");
        let spaced = self::redactor(&["\t padded-secret \n"]);
        assert_eq!(spaced.redact("out: padded-secret"), "out: ***");
    }

    #[test]
    fn a_secret_that_contains_or_overlaps_another_leaves_nothing_of_either() {
        let redactor = redactor(&["abcdef12", "abcdef1234", "1234-tail"]);
        assert_eq!(redactor.redact("[abcdef1234] [abcdef12] [abcdef1234-tail]"), "[***] [***] [***]");
    }

    #[test]
    fn hex_and_base64_forms_are_scrubbed() {
        let secret = "s3cr3t/with+base64?chars~";
        let redactor = redactor(&[secret]);
        let bytes = secret.as_bytes();
        let forms = [
            hex::encode(bytes),
            hex::encode_upper(bytes),
            base64(bytes, STANDARD, true),
            base64(bytes, STANDARD, false),
            base64(bytes, URL_SAFE, true),
            base64(bytes, URL_SAFE, false),
            base64(format!("{secret}\n").as_bytes(), STANDARD, true),
        ];
        for form in forms {
            assert_eq!(redactor.redact(&format!("<{form}>")), "<***>", "{form}");
        }
    }

    #[test]
    fn base64_of_a_stream_holding_the_secret_keeps_none_of_its_inner_groups() {
        let secret = "inner-secret-value-42";
        let redactor = redactor(&[secret]);
        for before in ["", "a", "ab", "abc", "abcd"] {
            for after in ["", "z", "yz"] {
                let stream = format!("{before}{secret}{after}");
                for alphabet in [STANDARD, URL_SAFE] {
                    let encoded = base64(stream.as_bytes(), alphabet, true);
                    let redacted = redactor.redact(&encoded);
                    assert!(redacted.contains("***"), "{before:?} {after:?}: {redacted}");
                    // What stays is the few characters at each end that mix in the
                    // neighbouring bytes: at most two groups and the padding.
                    assert!(redacted.len() <= 3 + 2 * 4 + 4 + 4, "{before:?} {after:?}: {redacted}");
                }
            }
        }
    }

    #[test]
    fn wrapped_base64_and_hex_are_scrubbed() {
        let secret = "w".repeat(200);
        let redactor = redactor(&[&secret]);
        let bytes = format!("{secret}\n");
        for width in BASE64_WRAPS {
            let wrapped = wrap(&base64(bytes.as_bytes(), STANDARD, true), width);
            assert_eq!(redactor.redact(&wrapped), "***");
        }
        assert_eq!(redactor.redact(&wrap(&hex::encode(&secret), HEX_WRAP)), "***");
    }

    #[test]
    fn a_cut_never_keeps_part_of_a_secret() {
        let redactor = redactor(&["0123456789-secret"]);
        let text = format!("{}0123456789-secret tail", "x".repeat(10));
        // Inside the secret: the cut moves before it.
        for limit in 11..27 {
            assert_eq!(redactor.cut_point(&text, limit), 10, "limit {limit}");
        }
        assert_eq!(redactor.cut_point(&text, 27), 27);
        assert_eq!(redactor.cut_point(&text, 5), 5);
        assert_eq!(redactor.cut_point(&text, 1000), text.len());
        // A beginning the program wrote without the rest is cut too, from 3 bytes on.
        let partial = "xxxxxxxxxx0123 and more text here";
        assert_eq!(redactor.cut_point(partial, 14), 10);
        assert_eq!(redactor.cut_point(partial, 12), 12);
        // A cut inside a character moves before it.
        assert_eq!(redactor.cut_point("ééé", 3), 2);
    }

    #[test]
    fn json_keys_and_values_are_scrubbed() {
        let redactor = redactor(&["json-secret"]);
        let value = serde_json::json!({ "json-secret": ["a json-secret", 1, null] });
        assert_eq!(redactor.redact_json(&value), serde_json::json!({ "***": ["a ***", 1, null] }));
    }

    fn spec(env: Option<&str>, file: Option<&str>) -> SecretSpec {
        let located =
            |value: &str| crate::lang::spec::Located { value: value.to_owned(), span: Span::default() };
        SecretSpec { env: env.map(located), file: file.map(located), span: Span::default() }
    }

    #[test]
    fn a_secret_shorter_than_six_characters_once_trimmed_is_refused() {
        let directory = std::env::temp_dir().join(format!("dr-plan-secret-unit-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("pin");
        let path = path.display().to_string();
        for (value, accepted) in
            [("  12345 ", false), ("\t1234\t", false), ("123456", true), ("éééééé", true)]
        {
            std::fs::write(&path, format!("{value}\nsecond line\n")).unwrap();
            let result = resolve("pin", &spec(None, Some(&path)));
            assert_eq!(result.is_ok(), accepted, "{value:?}: {result:?}");
            if let Err(message) = result {
                assert!(
                    message.starts_with(&format!("secret `pin`: the first line of {path} holds ")),
                    "{message}"
                );
                assert!(message.contains("needs at least 6"), "{message}");
                assert!(!message.contains("1234"), "{message}");
            }
        }
        let _ = std::fs::remove_dir_all(&directory);
        let unset = resolve("pin", &spec(Some("DR_PLAN_SECRET_UNIT_TEST_UNSET"), None));
        assert!(unset.unwrap_err().contains("is not set"));
    }
}
