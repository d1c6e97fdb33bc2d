//! Template expressions inside plan strings: `"s3://{{vars.bucket}}/{{inputs.backup}}"`.
//!
//! A small Handlebars-like language written here rather than taken from the handlebars
//! crate, because validation needs the exact byte range of every reference, rendering
//! must keep JSON types (`replicas: "{{steps.stop-writers.outputs.previous_replicas}}"`
//! stays an integer), and a dry-run renders values that do not exist yet as placeholders.
//!
//! Grammar, inside each `{{ ... }}` block:
//! `expression := path | helper argument+`,
//! `argument := path | "string" | 'string' | integer | true | false | ( helper argument+ )`,
//! `path := segment ('.' segment)*` with segments of `[A-Za-z0-9_-]`.
//! `\{{` outside a block is a literal `{{`.

use std::cmp::Ordering;
use std::ops::Range;

use serde_json::{Number, Value};

/// A parsed template string: literal text and expressions, with the source kept for
/// placeholders and diagnostics.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    references: Vec<Reference>,
}

/// A syntax error (from [`Template::parse`]) or an evaluation error (in
/// [`Rendered::errors`]), with the byte range of the offending text in the template source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// What is wrong, in one sentence.
    pub message: String,
    /// Byte range in the template source that the message is about.
    pub range: Range<usize>,
    /// What to write instead, when there is something useful to say.
    pub help: Option<String>,
}

/// A path used by an expression, such as `steps.fetch.outputs.path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The dot-separated segments; the root (`vars`, `steps`, ...) is checked by the caller.
    pub path: Vec<String>,
    /// Byte range of the path text in the template source.
    pub range: Range<usize>,
}

/// What the caller knows about a path when rendering.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The value is known.
    Value(Value),
    /// The value exists only later (a dry-run reading an output of a step that has not
    /// run); it renders as `placeholder`, e.g. `<fetch.path>`.
    Unknown {
        /// Text shown in place of the value.
        placeholder: String,
    },
    /// No such value; collected in [`Rendered::missing`] and rendered as null/empty.
    Missing,
}

/// The result of [`Template::render`].
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The value: typed when the template is a single expression, otherwise a string.
    pub value: Value,
    /// True when the value depends on an [`Lookup::Unknown`] and holds placeholders.
    pub unknown: bool,
    /// Paths the lookup reported [`Lookup::Missing`], each once, in order of use.
    pub missing: Vec<Vec<String>>,
    /// Helpers that could not compute a value (`gt` given a non-number); the caller
    /// reports these like missing values.
    pub errors: Vec<TemplateError>,
}

/// Whether `text` holds a `{{` that is not escaped as `\{{`, i.e. needs parsing.
#[must_use]
pub fn contains_expression(text: &str) -> bool {
    text.match_indices("{{").any(|(index, _)| index == 0 || text.as_bytes()[index - 1] != b'\\')
}

/// Reads a rendered `when:` condition: `true`/`false` as booleans or strings, else `None`.
#[must_use]
pub fn truthy(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(boolean) => Some(*boolean),
        Value::String(text) if text == "true" => Some(true),
        Value::String(text) if text == "false" => Some(false),
        Value::Null | Value::Number(_) | Value::String(_) | Value::Array(_) | Value::Object(_) => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Expression(Node),
}

#[derive(Debug, Clone, PartialEq)]
struct Node {
    kind: NodeKind,
    /// Source range; for a sub-expression it includes the parentheses.
    range: Range<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum NodeKind {
    Path(Vec<String>),
    Literal(Value),
    Call(Helper, Vec<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Helper {
    Not,
    Eq,
    Ne,
    And,
    Or,
    Default,
    Compare(Comparison),
}

/// The numeric comparisons, kept apart so evaluating them is one match on the ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Greater,
    Less,
    GreaterOrEqual,
    LessOrEqual,
}

impl Helper {
    const ALL: [Helper; 10] = [
        Helper::Not,
        Helper::Eq,
        Helper::Ne,
        Helper::And,
        Helper::Or,
        Helper::Default,
        Helper::Compare(Comparison::Greater),
        Helper::Compare(Comparison::Less),
        Helper::Compare(Comparison::GreaterOrEqual),
        Helper::Compare(Comparison::LessOrEqual),
    ];

    /// The name, the fewest arguments, whether more are allowed, and an example for help.
    fn signature(self) -> (&'static str, usize, bool, &'static str) {
        match self {
            Helper::Not => ("not", 1, false, "{{not run.drill}}"),
            Helper::Eq => ("eq", 2, false, "{{eq vars.mode \"restore\"}}"),
            Helper::Ne => ("ne", 2, false, "{{ne vars.mode \"restore\"}}"),
            Helper::And => ("and", 2, true, "{{and run.drill vars.confirm}}"),
            Helper::Or => ("or", 2, true, "{{or run.drill vars.confirm}}"),
            Helper::Default => ("default", 2, true, "{{default inputs.backup \"latest\"}}"),
            Helper::Compare(Comparison::Greater) => ("gt", 2, false, "{{gt vars.replicas 0}}"),
            Helper::Compare(Comparison::Less) => ("lt", 2, false, "{{lt vars.replicas 10}}"),
            Helper::Compare(Comparison::GreaterOrEqual) => ("gte", 2, false, "{{gte vars.replicas 1}}"),
            Helper::Compare(Comparison::LessOrEqual) => ("lte", 2, false, "{{lte vars.replicas 10}}"),
        }
    }

    fn name(self) -> &'static str {
        self.signature().0
    }

    fn from_name(name: &str) -> Option<Helper> {
        Helper::ALL.into_iter().find(|helper| helper.name() == name)
    }

    fn list() -> String {
        Helper::ALL.map(Helper::name).join(", ")
    }
}

impl Comparison {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Greater => ordering.is_gt(),
            Comparison::Less => ordering.is_lt(),
            Comparison::GreaterOrEqual => ordering.is_ge(),
            Comparison::LessOrEqual => ordering.is_le(),
        }
    }
}

fn error(message: impl Into<String>, range: Range<usize>, help: impl Into<String>) -> TemplateError {
    TemplateError { message: message.into(), range, help: Some(help.into()) }
}

impl Template {
    /// Parses `text`.
    ///
    /// # Errors
    ///
    /// The first syntax error, with the byte range of the offending text.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut references = Vec::new();
        let mut literal = String::new();
        let mut position = 0;
        while let Some(offset) = text[position..].find("{{") {
            let open = position + offset;
            if open > 0 && text.as_bytes()[open - 1] == b'\\' {
                literal.push_str(&text[position..open - 1]);
                literal.push_str("{{");
                position = open + 2;
                continue;
            }
            literal.push_str(&text[position..open]);
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            if let Some(unsupported) = unsupported_block(text, open) {
                return Err(unsupported);
            }
            let (tokens, close_end) = tokenize(text, open)?;
            let mut parser = Parser { source: text, tokens, position: 0, references: &mut references };
            parts.push(Part::Expression(parser.parse_block(open..close_end)?));
            position = close_end;
        }
        literal.push_str(&text[position..]);
        if !literal.is_empty() || parts.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { source: text.to_owned(), parts, references })
    }

    /// The text the template was parsed from.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every path used, in source order (a path used twice appears twice).
    #[must_use]
    pub fn references(&self) -> &[Reference] {
        &self.references
    }

    /// True when the template has no expressions (escaped `\{{` does not count).
    #[must_use]
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|part| matches!(part, Part::Text(_)))
    }

    /// True when the whole string is exactly one `{{...}}`, so rendering keeps its type.
    #[must_use]
    pub fn is_single_expression(&self) -> bool {
        matches!(self.parts.as_slice(), [Part::Expression(_)])
    }

    /// Renders with `lookup` answering every path. Never fails: missing values and
    /// helper errors are collected in the result for the caller to report.
    #[must_use]
    pub fn render(&self, lookup: &dyn Fn(&[String]) -> Lookup) -> Rendered {
        let mut evaluator =
            Evaluator { source: &self.source, lookup, missing: Vec::new(), errors: Vec::new() };
        let mut unknown = false;
        let value = if let [Part::Expression(node)] = self.parts.as_slice() {
            match evaluator.evaluate(node) {
                Evaluated::Known(value) => value,
                Evaluated::Unknown(placeholder) => {
                    unknown = true;
                    Value::String(placeholder)
                }
            }
        } else {
            let mut text = String::new();
            for part in &self.parts {
                match part {
                    Part::Text(literal) => text.push_str(literal),
                    Part::Expression(node) => match evaluator.evaluate(node) {
                        Evaluated::Known(value) => text.push_str(&stringify(&value)),
                        Evaluated::Unknown(placeholder) => {
                            unknown = true;
                            text.push_str(&placeholder);
                        }
                    },
                }
            }
            Value::String(text)
        };
        Rendered { value, unknown, missing: evaluator.missing, errors: evaluator.errors }
    }
}

/// Rejects the Handlebars forms we do not support, saying what to write instead.
fn unsupported_block(source: &str, open: usize) -> Option<TemplateError> {
    let (message, help) = match source[open + 2..].chars().next()? {
        '#' | '/' => (
            "block helpers such as `{{#if}}` and `{{/if}}` are not supported",
            "compute the value with a helper instead, e.g. `when: \"{{not run.drill}}\"` \
             on the step, or `{{default vars.name \"fallback\"}}`",
        ),
        '>' => ("partials (`{{> name}}`) are not supported", "write the text out in place"),
        '!' => (
            "template comments (`{{! ... }}`) are not supported",
            "use a YAML or TOML comment (`# ...`) instead",
        ),
        '{' => (
            "triple-stash `{{{ ... }}}` is not supported",
            "values are never HTML-escaped, so write `{{expression}}` with two braces; \
             write `\\{{` for literal braces",
        ),
        _ => return None,
    };
    let mut end = source[open..].find("}}").map_or(open + 3, |offset| open + offset + 2);
    while source[end..].starts_with('}') {
        end += 1;
    }
    Some(error(message, open..end, help))
}

#[derive(Debug, Clone)]
enum TokenKind {
    Word,
    Text(String),
    Open,
    Close,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    range: Range<usize>,
}

fn is_word_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || matches!(character, '_' | '-' | '.')
}

/// Reads the tokens of the block whose `{{` is at `open`; returns them with the end of `}}`.
fn tokenize(source: &str, open: usize) -> Result<(Vec<Token>, usize), TemplateError> {
    let mut tokens = Vec::new();
    let mut position = open + 2;
    loop {
        let rest = &source[position..];
        let Some(character) = rest.chars().next() else {
            return Err(error(
                "unterminated `{{`: the expression is never closed with `}}`",
                open..source.len(),
                "close the expression with `}}`, or write `\\{{` for literal braces",
            ));
        };
        let start = position;
        if character.is_whitespace() {
            position += character.len_utf8();
            continue;
        }
        if rest.starts_with("}}") {
            return Ok((tokens, position + 2));
        }
        let (kind, end) = match character {
            '(' => (TokenKind::Open, start + 1),
            ')' => (TokenKind::Close, start + 1),
            '"' | '\'' => {
                let (text, end) = read_string(source, start, character)?;
                (TokenKind::Text(text), end)
            }
            _ if is_word_character(character) => {
                (TokenKind::Word, start + rest.find(|c| !is_word_character(c)).unwrap_or(rest.len()))
            }
            other => {
                return Err(error(
                    format!("unexpected character `{other}` in an expression"),
                    start..start + other.len_utf8(),
                    "an expression holds paths like `vars.name`, helpers like `not` or `eq`, \
                     quoted strings, integers, `true`, `false` and parentheses",
                ));
            }
        };
        position = end;
        tokens.push(Token { kind, range: start..position });
    }
}

/// Reads the string literal opening with `quote` at `start`, returning its text and end;
/// `\` escapes the quote or itself.
fn read_string(source: &str, start: usize, quote: char) -> Result<(String, usize), TemplateError> {
    let mut text = String::new();
    let mut characters = source[start + 1..].char_indices();
    while let Some((offset, character)) = characters.next() {
        if character == quote {
            return Ok((text, start + 1 + offset + quote.len_utf8()));
        }
        match (character, characters.clone().next()) {
            ('\\', Some((_, next))) if next == quote || next == '\\' => {
                text.push(next);
                characters.next();
            }
            _ => text.push(character),
        }
    }
    Err(error(
        "unterminated string in an expression",
        start..source.len(),
        format!("close the string with {quote}"),
    ))
}

/// Recursive descent over the tokens of one block, recording references as it goes.
struct Parser<'a> {
    source: &'a str,
    tokens: Vec<Token>,
    position: usize,
    references: &'a mut Vec<Reference>,
}

impl Parser<'_> {
    fn parse_block(&mut self, block: Range<usize>) -> Result<Node, TemplateError> {
        let Some(first) = self.tokens.first() else {
            return Err(error(
                "empty expression `{{}}`",
                block,
                "write a path such as `{{vars.namespace}}`, or `\\{{` for literal braces",
            ));
        };
        match first.kind {
            TokenKind::Word
                if self.tokens.len() > 1
                    || Helper::from_name(&self.source[first.range.clone()]).is_some() =>
            {
                self.parse_call(None)
            }
            TokenKind::Word | TokenKind::Text(_) => {
                let node = self.parse_argument()?;
                match node.kind {
                    NodeKind::Path(_) | NodeKind::Call(..) => Ok(node),
                    NodeKind::Literal(_) => Err(error(
                        "an expression cannot start with a literal",
                        node.range,
                        "start with a path or a helper name, e.g. `{{eq vars.mode \"drill\"}}`; \
                         a fixed value needs no `{{ }}` around it",
                    )),
                }
            }
            TokenKind::Open | TokenKind::Close => Err(error(
                "an expression starts with a path or a helper name",
                first.range.clone(),
                "parentheses are only for sub-expressions passed to a helper, e.g. \
                 `{{not (eq vars.mode \"drill\")}}`",
            )),
        }
    }

    /// Parses `helper argument*` starting at a word; `open` is the `(` of a sub-expression.
    fn parse_call(&mut self, open: Option<usize>) -> Result<Node, TemplateError> {
        let name_range = self.tokens[self.position].range.clone();
        let name = &self.source[name_range.clone()];
        let helper = Helper::from_name(name).ok_or_else(|| {
            error(
                format!("`{name}` is not a helper"),
                name_range.clone(),
                format!(
                    "the helpers are {}; a path on its own is written `{{{{vars.name}}}}`",
                    Helper::list()
                ),
            )
        })?;
        self.position += 1;
        let mut arguments = Vec::new();
        let mut end = name_range.end;
        loop {
            match (self.tokens.get(self.position), open) {
                (None, None) => break,
                (None, Some(open)) => {
                    return Err(error(
                        "this `(` is never closed",
                        open..open + 1,
                        "add `)` after the last argument",
                    ));
                }
                (Some(Token { kind: TokenKind::Close, range }), Some(_)) => {
                    end = range.end;
                    self.position += 1;
                    break;
                }
                (Some(_), _) => {
                    let argument = self.parse_argument()?;
                    end = argument.range.end;
                    arguments.push(argument);
                }
            }
        }
        let range = open.unwrap_or(name_range.start)..end;
        let (_, least, more_allowed, example) = helper.signature();
        let count = arguments.len();
        if count < least || (!more_allowed && count > least) {
            let expected = if more_allowed { "at least " } else { "" };
            let plural = if least == 1 { "" } else { "s" };
            return Err(error(
                format!("`{name}` takes {expected}{least} argument{plural}, but got {count}"),
                range,
                format!("for example `{example}`"),
            ));
        }
        Ok(Node { kind: NodeKind::Call(helper, arguments), range })
    }

    fn parse_argument(&mut self) -> Result<Node, TemplateError> {
        let token = self.tokens[self.position].clone();
        self.position += 1;
        match token.kind {
            TokenKind::Word => self.parse_word(token.range),
            TokenKind::Text(text) => {
                Ok(Node { kind: NodeKind::Literal(Value::String(text)), range: token.range })
            }
            TokenKind::Open => match self.tokens.get(self.position) {
                Some(Token { kind: TokenKind::Word, .. }) => self.parse_call(Some(token.range.start)),
                Some(_) | None => Err(error(
                    "`(` must be followed by a helper name",
                    token.range,
                    "write a sub-expression such as `(eq vars.mode \"drill\")`",
                )),
            },
            TokenKind::Close => Err(error(
                "unexpected `)` without a matching `(`",
                token.range,
                "remove it, or open the sub-expression with `(` before the helper name",
            )),
        }
    }

    /// A word is `true`, `false`, an integer, or a path.
    fn parse_word(&mut self, range: Range<usize>) -> Result<Node, TemplateError> {
        let word = &self.source[range.clone()];
        let literal = |value: Value| Ok(Node { kind: NodeKind::Literal(value), range: range.clone() });
        let digits = word.strip_prefix('-').unwrap_or(word);
        if word == "true" || word == "false" {
            return literal(Value::Bool(word == "true"));
        }
        if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return match word.parse::<i64>() {
                Ok(integer) => literal(Value::from(integer)),
                Err(_) => Err(error(
                    format!("integer `{word}` is too large"),
                    range,
                    "write it as a quoted string instead",
                )),
            };
        }
        if digits.split('.').all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit())) {
            return Err(error(
                format!("`{word}` is a decimal number; only integers are supported"),
                range,
                "use an integer, or a quoted string",
            ));
        }
        if word.split('.').any(str::is_empty) {
            return Err(error(
                format!("path `{word}` has an empty segment"),
                range,
                "a path is names joined by single dots, e.g. `steps.fetch.outputs.path`",
            ));
        }
        let path: Vec<String> = word.split('.').map(str::to_owned).collect();
        self.references.push(Reference { path: path.clone(), range: range.clone() });
        Ok(Node { kind: NodeKind::Path(path), range })
    }
}

/// A value during evaluation: known, or only a placeholder in a dry-run.
enum Evaluated {
    Known(Value),
    Unknown(String),
}

impl Evaluated {
    fn known(&self) -> Option<&Value> {
        match self {
            Evaluated::Known(value) => Some(value),
            Evaluated::Unknown(_) => None,
        }
    }
}

struct Evaluator<'a> {
    source: &'a str,
    lookup: &'a dyn Fn(&[String]) -> Lookup,
    missing: Vec<Vec<String>>,
    errors: Vec<TemplateError>,
}

impl Evaluator<'_> {
    fn evaluate(&mut self, node: &Node) -> Evaluated {
        match &node.kind {
            NodeKind::Literal(value) => Evaluated::Known(value.clone()),
            NodeKind::Path(path) => match (self.lookup)(path) {
                Lookup::Value(value) => Evaluated::Known(value),
                Lookup::Unknown { placeholder } => Evaluated::Unknown(placeholder),
                Lookup::Missing => {
                    if !self.missing.contains(path) {
                        self.missing.push(path.clone());
                    }
                    Evaluated::Known(Value::Null)
                }
            },
            NodeKind::Call(helper, arguments) => {
                // Every argument is evaluated, even when the result is decided early, so
                // all missing paths and errors are reported at once.
                let values: Vec<Evaluated> =
                    arguments.iter().map(|argument| self.evaluate(argument)).collect();
                self.call(*helper, arguments, &values).map_or_else(
                    || Evaluated::Unknown(format!("<{}>", &self.source[node.range.clone()])),
                    Evaluated::Known,
                )
            }
        }
    }

    /// Applies a helper; `None` when the result depends on an unknown argument.
    fn call(&mut self, helper: Helper, arguments: &[Node], values: &[Evaluated]) -> Option<Value> {
        let decided_by = |wanted: bool| {
            if values.iter().any(|value| value.known().is_some_and(|value| is_truthy(value) == wanted)) {
                Some(Value::Bool(wanted))
            } else if values.iter().all(|value| value.known().is_some()) {
                Some(Value::Bool(!wanted))
            } else {
                None
            }
        };
        match helper {
            Helper::Not => Some(Value::Bool(!is_truthy(values[0].known()?))),
            Helper::Eq => Some(Value::Bool(loosely_equal(values[0].known()?, values[1].known()?))),
            Helper::Ne => Some(Value::Bool(!loosely_equal(values[0].known()?, values[1].known()?))),
            Helper::And => decided_by(false),
            Helper::Or => decided_by(true),
            Helper::Default => {
                for value in values {
                    match value.known()? {
                        Value::Null => {}
                        Value::String(text) if text.is_empty() => {}
                        chosen => return Some(chosen.clone()),
                    }
                }
                values.last()?.known().cloned()
            }
            Helper::Compare(comparison) => {
                let (left, right) = (values[0].known()?, values[1].known()?);
                let left = self.number_argument(helper, &arguments[0], left);
                let right = self.number_argument(helper, &arguments[1], right);
                // A non-number is an error, reported in `errors`; the value is then null.
                let ordering = left.zip(right).and_then(|(left, right)| compare_numbers(&left, &right));
                Some(ordering.map_or(Value::Null, |ordering| Value::Bool(comparison.holds(ordering))))
            }
        }
    }

    fn number_argument(&mut self, helper: Helper, argument: &Node, value: &Value) -> Option<Number> {
        let number = as_number(value);
        if number.is_none() {
            self.errors.push(error(
                format!("`{}` compares numbers, but this argument is {value}", helper.name()),
                argument.range.clone(),
                "pass an integer, or a string holding one",
            ));
        }
        number
    }
}

/// false, null, "", "false" and 0 are false; everything else is true.
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(boolean) => *boolean,
        Value::Number(number) => number.as_f64() != Some(0.0),
        Value::String(text) => !text.is_empty() && text != "false",
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A number, or a string that is exactly a JSON number (rendered values are often strings).
fn as_number(value: &Value) -> Option<Number> {
    match value {
        Value::Number(number) => Some(number.clone()),
        Value::String(text) if text.trim() == text => serde_json::from_str(text).ok(),
        Value::Null | Value::Bool(_) | Value::String(_) | Value::Array(_) | Value::Object(_) => None,
    }
}

fn compare_numbers(left: &Number, right: &Number) -> Option<Ordering> {
    // Integers compare exactly; only fractions go through floating point.
    let integer =
        |number: &Number| number.as_i64().map(i128::from).or_else(|| number.as_u64().map(i128::from));
    match (integer(left), integer(right)) {
        (Some(left), Some(right)) => Some(left.cmp(&right)),
        _ => left.as_f64()?.partial_cmp(&right.as_f64()?),
    }
}

/// JSON equality, except that a number equals a string holding it and a boolean equals
/// `"true"`/`"false"`, because values rendered from templates arrive as strings.
fn loosely_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(_), Value::Number(_) | Value::String(_)) | (Value::String(_), Value::Number(_)) => {
            match (as_number(left), as_number(right)) {
                (Some(left), Some(right)) => compare_numbers(&left, &right) == Some(Ordering::Equal),
                _ => false,
            }
        }
        (Value::Bool(boolean), Value::String(text)) | (Value::String(text), Value::Bool(boolean)) => {
            text == if *boolean { "true" } else { "false" }
        }
        _ => left == right,
    }
}

/// How a value reads inside text: strings bare, null empty, arrays and objects as JSON.
fn stringify(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A context like a dry-run's: `steps.*` outputs are unknown, other roots known.
    fn lookup(path: &[String]) -> Lookup {
        let context = json!({
            "vars": { "namespace": "festivals-production", "bucket": "backups", "replicas": 3,
                      "count": "12", "empty": "", "nothing": null, "list": [1, "a"], "map": { "a": 1 } },
            "inputs": { "backup": "latest" },
            "run": { "drill": true, "live": false },
        });
        if path[0] == "steps" {
            return Lookup::Unknown {
                placeholder: format!("<{}>", [&path[1], &path[3]].map(String::as_str).join(".")),
            };
        }
        path.iter()
            .try_fold(&context, |value, segment| value.get(segment))
            .map_or(Lookup::Missing, |value| Lookup::Value(value.clone()))
    }

    fn render(text: &str) -> Rendered {
        Template::parse(text).unwrap_or_else(|error| panic!("{text}: {error:?}")).render(&lookup)
    }

    fn value(text: &str) -> Value {
        let rendered = render(text);
        assert!(rendered.missing.is_empty() && rendered.errors.is_empty(), "{text}: {rendered:?}");
        rendered.value
    }

    fn parse_error(text: &str) -> TemplateError {
        Template::parse(text).expect_err(text)
    }

    /// The source text an error points at.
    fn labelled(text: &str) -> &str {
        &text[parse_error(text).range]
    }

    #[test]
    fn literal_text_and_escapes() {
        let template = Template::parse(r"plain \{{not}} text }}").unwrap();
        assert!(template.is_literal() && !template.is_single_expression());
        assert!(template.references().is_empty());
        assert_eq!(template.render(&lookup).value, json!("plain {{not}} text }}"));
        assert_eq!(value(""), json!(""));
        assert_eq!(value(r"a\{{b}} {{vars.bucket}}"), json!("a{{b}} backups"));
        assert_eq!(value(r"back\slash"), json!(r"back\slash"));
    }

    #[test]
    fn contains_expression_ignores_escapes() {
        assert!(contains_expression("{{vars.x}}"));
        assert!(contains_expression(r"\{{ {{vars.x}}"));
        assert!(!contains_expression(r"a \{{b}} c"));
        assert!(!contains_expression("a { b } }}"));
    }

    #[test]
    fn references_have_exact_ranges_in_order() {
        let text = "s3://{{vars.bucket}}/{{ inputs.backup }}";
        let template = Template::parse(text).unwrap();
        let references = template.references();
        assert_eq!(references.len(), 2);
        assert_eq!(references[0].path, ["vars", "bucket"]);
        assert_eq!(references[0].range, 7..18);
        assert_eq!(references[1].range, 24..37);
        assert_eq!(&text[references[1].range.clone()], "inputs.backup");
        assert!(!template.is_literal() && !template.is_single_expression());
    }

    #[test]
    fn ranges_count_bytes_after_multibyte_text() {
        let text = "été ✓ {{ steps.stop-writers.outputs.previous_replicas }}";
        let template = Template::parse(text).unwrap();
        let reference = &template.references()[0];
        assert_eq!(reference.range.start, "été ✓ {{ ".len());
        assert_eq!(reference.range.start, 13);
        assert_eq!(reference.path, ["steps", "stop-writers", "outputs", "previous_replicas"]);
        assert_eq!(&text[reference.range.clone()], "steps.stop-writers.outputs.previous_replicas");
    }

    #[test]
    fn references_inside_helpers_and_sub_expressions() {
        let text = r#"{{and (not run.drill) (eq vars.mode "x") vars.mode}}"#;
        let template = Template::parse(text).unwrap();
        let paths: Vec<&str> =
            template.references().iter().map(|reference| &text[reference.range.clone()]).collect();
        assert_eq!(paths, ["run.drill", "vars.mode", "vars.mode"]);
        assert!(template.is_single_expression());
    }

    #[test]
    fn single_expression_detection() {
        assert!(Template::parse("{{vars.x}}").unwrap().is_single_expression());
        assert!(Template::parse("{{  not  run.drill  }}").unwrap().is_single_expression());
        assert!(Template::parse("{{\n\tvars.x\n}}").unwrap().is_single_expression());
        assert!(!Template::parse(" {{vars.x}}").unwrap().is_single_expression());
        assert!(!Template::parse("{{vars.x}}{{vars.y}}").unwrap().is_single_expression());
    }

    #[test]
    fn string_literals_may_hold_braces_and_escaped_quotes() {
        assert_eq!(value(r#"{{default vars.empty "}}"}}"#), json!("}}"));
        assert_eq!(value(r#"{{default vars.empty 'it\'s "x" \\'}}"#), json!(r#"it's "x" \"#));
        assert_eq!(value(r#"{{eq "a\"b" 'a"b'}}"#), json!(true));
    }

    #[test]
    fn unterminated_and_empty_blocks() {
        let error = parse_error("abc {{vars.x");
        assert_eq!(error.range, 4..12);
        assert!(error.message.contains("unterminated `{{`"), "{error:?}");
        assert_eq!(labelled("x {{vars.x} y"), "}");
        assert_eq!(labelled("a {{}} b"), "{{}}");
        assert_eq!(labelled("a {{   }} b"), "{{   }}");
        assert!(parse_error("{{}}").message.contains("empty"));
        assert_eq!(labelled(r#"{{eq vars.x "abc}}"#), r#""abc}}"#);
    }

    #[test]
    fn unsupported_handlebars_forms_say_what_to_write() {
        for (text, label, words) in [
            ("{{#if run.drill}}x{{/if}}", "{{#if run.drill}}", "block helpers"),
            ("x {{/if}}", "{{/if}}", "block helpers"),
            ("{{> header}}", "{{> header}}", "partials"),
            ("{{! note }}", "{{! note }}", "comments"),
            ("a {{{vars.x}}} b", "{{{vars.x}}}", "triple-stash"),
            ("{{#if", "{{#", "block helpers"),
        ] {
            let error = parse_error(text);
            assert_eq!(&text[error.range.clone()], label, "{text}");
            assert!(error.message.contains(words), "{text}: {error:?}");
            assert!(error.help.is_some());
        }
    }

    #[test]
    fn unknown_helper_points_at_its_name_and_lists_helpers() {
        let text = "x {{ upper vars.namespace }}";
        let error = parse_error(text);
        assert_eq!(&text[error.range.clone()], "upper");
        assert_eq!(error.to_string(), "`upper` is not a helper");
        let help = error.help.unwrap();
        assert!(help.contains("not, eq, ne, and, or, default, gt, lt, gte, lte"), "{help}");
        assert_eq!(labelled("{{not (vars.a)}}"), "vars.a");
        assert_eq!(labelled("{{vars.a vars.b}}"), "vars.a");
    }

    #[test]
    fn wrong_argument_counts() {
        assert_eq!(labelled("{{not a.b c.d}}"), "not a.b c.d");
        assert_eq!(labelled("{{ eq a.b }}"), "eq a.b");
        assert_eq!(labelled("{{and a.b}}"), "and a.b");
        assert_eq!(labelled("{{default}}"), "default");
        assert_eq!(labelled("{{or a.b (gt a.b)}}"), "(gt a.b)");
        let error = parse_error("{{gte a.b 1 2}}");
        assert_eq!(error.message, "`gte` takes 2 arguments, but got 3");
        assert_eq!(error.help.as_deref(), Some("for example `{{gte vars.replicas 1}}`"));
        assert_eq!(parse_error("{{not}}").message, "`not` takes 1 argument, but got 0");
        assert!(parse_error("{{and a}}").message.contains("at least 2"));
        assert!(Template::parse("{{or a.b c.d e.f f.g}}").is_ok());
    }

    #[test]
    fn bad_tokens_and_shapes() {
        assert_eq!(labelled("{{ vars.a + 1 }}"), "+");
        assert_eq!(labelled("ü {{ vars.é }}"), "é");
        assert_eq!(labelled("{{ vars.a {{ vars.b }}"), "{");
        assert_eq!(labelled("{{not (eq a.b c.d}}"), "(");
        assert_eq!(labelled("{{not a.b)}}"), ")");
        assert_eq!(labelled("{{not ()}}"), "(");
        assert_eq!(labelled("{{(not a.b)}}"), "(");
        assert_eq!(labelled("{{ \"text\" }}"), "\"text\"");
        assert_eq!(labelled("{{ 42 }}"), "42");
        assert_eq!(labelled("{{ true }}"), "true");
        assert_eq!(labelled("{{ vars..x }}"), "vars..x");
        assert_eq!(labelled("{{ vars.x. }}"), "vars.x.");
        assert_eq!(labelled("{{ gt vars.x 1.5 }}"), "1.5");
        assert_eq!(labelled("{{ gt vars.x 99999999999999999999 }}"), "99999999999999999999");
    }

    #[test]
    fn single_expression_keeps_the_json_type() {
        assert_eq!(value("{{vars.replicas}}"), json!(3));
        assert_eq!(value("{{run.drill}}"), json!(true));
        assert_eq!(value("{{vars.map}}"), json!({ "a": 1 }));
        assert_eq!(value("{{vars.nothing}}"), json!(null));
        assert_eq!(value("{{ not run.drill }}"), json!(false));
        assert_eq!(value("{{default vars.nothing vars.replicas}}"), json!(3));
    }

    #[test]
    fn interpolation_stringifies() {
        assert_eq!(
            value(
                "{{vars.namespace}}/{{vars.replicas}}/{{run.drill}}/[{{vars.nothing}}]/{{vars.list}}/{{vars.map}}"
            ),
            json!(r#"festivals-production/3/true/[]/[1,"a"]/{"a":1}"#)
        );
        assert_eq!(value("s3://{{vars.bucket}}/{{inputs.backup}}"), json!("s3://backups/latest"));
    }

    #[test]
    fn unknown_values_render_as_placeholders() {
        let rendered = render("{{steps.fetch.outputs.path}}");
        assert_eq!((rendered.value, rendered.unknown), (json!("<fetch.path>"), true));
        let rendered = render("dump at {{steps.fetch.outputs.path}}!");
        assert_eq!((rendered.value, rendered.unknown), (json!("dump at <fetch.path>!"), true));
        let rendered = render("{{ not  steps.check.outputs.ok }}");
        assert_eq!((rendered.value, rendered.unknown), (json!("<not  steps.check.outputs.ok>"), true));
        let rendered = render("{{eq (not steps.check.outputs.ok) true}}");
        assert_eq!(rendered.value, json!("<eq (not steps.check.outputs.ok) true>"));
        assert!(!render("{{vars.bucket}}").unknown);
    }

    #[test]
    fn helpers_decided_without_unknown_arguments_stay_known() {
        let known = |text: &str, expected: Value| {
            let rendered = render(text);
            assert_eq!((rendered.value, rendered.unknown), (expected, false), "{text}");
        };
        known("{{and run.live steps.check.outputs.ok}}", json!(false));
        known("{{or steps.check.outputs.ok run.drill}}", json!(true));
        known("{{default vars.bucket steps.fetch.outputs.path}}", json!("backups"));
        assert!(render("{{and run.drill steps.check.outputs.ok}}").unknown);
        assert!(render("{{default steps.fetch.outputs.path vars.bucket}}").unknown);
    }

    #[test]
    fn missing_paths_are_collected_once_and_render_empty() {
        let rendered = render("a{{vars.nope}}b{{inputs.none}}{{vars.nope}}");
        assert_eq!(rendered.value, json!("ab"));
        assert_eq!(rendered.missing, [vec!["vars", "nope"], vec!["inputs", "none"]]);
        assert!(!rendered.unknown);
        let rendered = render("{{default vars.nope \"x\"}}");
        assert_eq!((rendered.value, rendered.missing.len()), (json!("x"), 1));
    }

    #[test]
    fn truthiness_of_not_and_or() {
        for (argument, negated) in [
            ("false", true),
            ("vars.nothing", true),
            ("vars.empty", true),
            ("'false'", true),
            ("0", true),
            ("true", false),
            ("'no'", false),
            ("1", false),
            ("-1", false),
            ("vars.list", false),
            ("vars.map", false),
        ] {
            assert_eq!(value(&format!("{{{{not {argument}}}}}")), json!(negated), "{argument}");
        }
        assert_eq!(value("{{and run.drill 1 'x'}}"), json!(true));
        assert_eq!(value("{{and run.drill 0}}"), json!(false));
        assert_eq!(value("{{or run.live vars.empty}}"), json!(false));
        assert_eq!(value("{{or run.live vars.namespace}}"), json!(true));
    }

    #[test]
    fn equality_is_loose_between_numbers_strings_and_booleans() {
        assert_eq!(value("{{eq vars.count 12}}"), json!(true));
        assert_eq!(value("{{eq 3 vars.replicas}}"), json!(true));
        assert_eq!(value("{{eq '3' vars.replicas}}"), json!(true));
        assert_eq!(value("{{eq ' 3' vars.replicas}}"), json!(false));
        assert_eq!(value("{{eq '3x' vars.replicas}}"), json!(false));
        assert_eq!(value("{{eq 'true' run.drill}}"), json!(true));
        assert_eq!(value("{{eq vars.namespace 'festivals-production'}}"), json!(true));
        assert_eq!(value("{{eq vars.list vars.list}}"), json!(true));
        assert_eq!(value("{{eq vars.nothing vars.empty}}"), json!(false));
        assert_eq!(value("{{ne vars.count '12'}}"), json!(false));
        assert_eq!(value("{{ne vars.namespace 'staging'}}"), json!(true));
    }

    #[test]
    fn numeric_comparisons() {
        assert_eq!(value("{{gt vars.replicas 0}}"), json!(true));
        assert_eq!(value("{{lt vars.count 12}}"), json!(false));
        assert_eq!(value("{{lte vars.count '12'}}"), json!(true));
        assert_eq!(value("{{gte -1 0}}"), json!(false));
        assert_eq!(value("{{not (gt vars.replicas vars.count)}}"), json!(true));
        let text = "{{gt vars.namespace 1}}";
        let rendered = render(text);
        assert_eq!(rendered.value, json!(null));
        assert_eq!(rendered.errors.len(), 1);
        assert_eq!(&text[rendered.errors[0].range.clone()], "vars.namespace");
        assert!(rendered.errors[0].message.contains("`gt` compares numbers"), "{:?}", rendered.errors);
        assert!(render("{{gt steps.fetch.outputs.size 1}}").unknown);
    }

    #[test]
    fn truthy_reads_when_conditions() {
        assert_eq!(truthy(&json!(true)), Some(true));
        assert_eq!(truthy(&json!("false")), Some(false));
        assert_eq!(truthy(&json!("yes")), None);
        assert_eq!(truthy(&json!(1)), None);
        assert_eq!(truthy(&json!(null)), None);
    }
}
