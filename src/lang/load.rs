//! Loading plan files into the located [`Node`] tree: YAML through saphyr-parser's
//! event stream (which keeps every position), TOML through `toml`'s spanned document.

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};

use crate::lang::code::Code;
use crate::lang::diagnostic::Diagnostic;
use crate::lang::node::{Entry, Node, Value};
use crate::lang::source::{SourceFile, Span, Syntax};

/// How deeply lists and maps may nest in a plan or vars file. Real plans stay under
/// ten levels; the limit keeps hostile files from exhausting the stack.
pub const MAX_DEPTH: usize = 256;

/// How many aliases (`*name`) a YAML file may use.
pub const MAX_ALIASES: usize = 10_000;

/// How many nodes aliases may add in all: each alias copies its anchor's nodes, so a few
/// nested aliases ("billion laughs") could otherwise grow a tiny file into gigabytes.
pub const MAX_ALIAS_NODES: usize = 100_000;

/// Loads a plan file into a node tree, or the syntax errors that prevent it.
///
/// # Errors
/// Syntax errors, duplicate keys, and unsupported files, as located diagnostics.
pub fn load(file: &Arc<SourceFile>) -> Result<Node, Vec<Diagnostic>> {
    match file.syntax() {
        Some(Syntax::Yaml) => YamlLoader::new(file).load(),
        Some(Syntax::Toml) => load_toml(file),
        None => Err(vec![
            Diagnostic::about_path(Code::File, file.name(), "is not a plan file")
                .with_help("plan files end in .yaml, .yml or .toml"),
        ]),
    }
}

/// Builds a tree from saphyr-parser's events.
struct YamlLoader<'a> {
    file: &'a Arc<SourceFile>,
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    /// Byte offset of each character, when the text is not pure ASCII.
    char_offsets: Option<Vec<usize>>,
    /// Each anchor's node and number of nodes in it (what an alias to it copies), by id.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes built so far, alias copies included.
    nodes: usize,
    /// Lists and maps open around the node being built.
    depth: usize,
    aliases: usize,
    alias_nodes: usize,
    problems: Vec<Diagnostic>,
}

/// Stops the walk at the first syntax error; saphyr cannot recover from one.
struct Stop;

impl<'a> YamlLoader<'a> {
    fn new(file: &'a Arc<SourceFile>) -> YamlLoader<'a> {
        let text = file.text();
        let char_offsets = (!text.is_ascii()).then(|| {
            text.char_indices().map(|(offset, _)| offset).chain(std::iter::once(text.len())).collect()
        });
        YamlLoader {
            file,
            parser: Parser::new_from_str(text),
            char_offsets,
            anchors: HashMap::new(),
            nodes: 0,
            depth: 0,
            aliases: 0,
            alias_nodes: 0,
            problems: Vec::new(),
        }
    }

    fn load(mut self) -> Result<Node, Vec<Diagnostic>> {
        let result = self.documents();
        match result {
            Ok(node) if self.problems.is_empty() => Ok(node),
            Ok(_) | Err(Stop) => Err(self.problems),
        }
    }

    fn documents(&mut self) -> Result<Node, Stop> {
        let mut root = None;
        loop {
            let (event, span) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::DocumentStart(_) => {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::DocumentEnd) {
                        continue;
                    }
                    let node = self.node(event, span)?;
                    if root.is_some() {
                        self.problems.push(
                            Diagnostic::error(
                                Code::Syntax,
                                self.file,
                                node.span,
                                "a plan file holds one YAML document",
                            )
                            .with_label("second document")
                            .with_help("put each plan in its own file"),
                        );
                    } else {
                        root = Some(node);
                    }
                }
                Event::StreamEnd => break,
                Event::Alias(_)
                | Event::Scalar(..)
                | Event::SequenceStart(..)
                | Event::SequenceEnd
                | Event::MappingStart(..)
                | Event::MappingEnd => {
                    let node = self.node(event, span)?;
                    root.get_or_insert(node);
                }
            }
        }
        Ok(root.unwrap_or_else(|| Node::new(Value::Null, Span::new(0, 0))))
    }

    fn next(&mut self) -> Result<(Event<'a>, Span), Stop> {
        match self.parser.next_event() {
            Some(Ok((event, span))) => {
                let span = Span::new(self.offset(span.start.index()), self.offset(span.end.index()));
                Ok((event, span))
            }
            Some(Err(error)) => {
                self.syntax_error(&error);
                Err(Stop)
            }
            None => Ok((Event::StreamEnd, Span::new(self.file.text().len(), self.file.text().len()))),
        }
    }

    fn offset(&self, char_index: usize) -> usize {
        match &self.char_offsets {
            Some(offsets) => offsets.get(char_index).copied().unwrap_or(self.file.text().len()),
            None => char_index.min(self.file.text().len()),
        }
    }

    fn syntax_error(&mut self, error: &ScanError) {
        let text = self.file.text();
        let mut at = self.offset(error.marker().index()).min(text.len());
        // At the end of the file, point at the last thing written rather than past it.
        if text[at..].trim().is_empty() {
            at = text.trim_end().len().saturating_sub(1);
        }
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let end = (at + 1).min(text.len());
        let span = Span::new(at, end);
        let diagnostic = if error.info().contains("recursion limit") {
            // saphyr-parser counts `[`/`{` levels in a byte: its limit is below ours.
            too_deep(self.file, span, usize::from(u8::MAX))
        } else if let Some(character) =
            text[at..].chars().next().filter(|_| error.info().contains("unprintable"))
        {
            // Before the bracket check: `ESC [` is a terminal command, not a flow list.
            Diagnostic::error(
                Code::Syntax,
                self.file,
                span,
                format!("invalid YAML: the control character U+{:04X} is not allowed", u32::from(character)),
            )
            .with_label("here")
            .with_help("remove it; inside double quotes, write it as an escape such as `\\u0000`")
        } else if let Some(opener) = unclosed_flow_bracket(&text[..at]) {
            let bracket = &text[opener..=opener];
            let closer = if bracket == "[" { "]" } else { "}" };
            Diagnostic::error(
                Code::Syntax,
                self.file,
                Span::new(opener, opener + 1),
                format!("invalid YAML: `{bracket}` is never closed"),
            )
            .with_label("opened here")
            .with_secondary(span, format!("the parser gave up here: {}", error.info()))
            .with_help(format!(
                "close it with `{closer}`, or write the list or map in block style, one item per line"
            ))
        } else if error.info().contains("anchor") {
            Diagnostic::error(Code::Syntax, self.file, span, format!("invalid YAML: {}", error.info()))
                .with_label("here")
                .with_help("define the anchor (`&name`) before using it (`*name`)")
        } else {
            Diagnostic::error(Code::Syntax, self.file, span, format!("invalid YAML: {}", error.info()))
                .with_label("here")
                .with_help("check the indentation and quoting around this line")
        };
        self.problems.push(diagnostic);
    }

    fn node(&mut self, event: Event<'a>, span: Span) -> Result<Node, Stop> {
        let first = self.nodes;
        self.nodes += 1;
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                // Block scalars' spans run on to the next token: keep the label on the text.
                let written = &self.file.text()[span.start..span.end];
                let span = Span::new(span.start, span.start + written.trim_end().len());
                let node = Node::new(scalar(&text, style), span);
                self.remember(anchor, &node, first)?;
                Ok(node)
            }
            Event::SequenceStart(anchor, _tag) => {
                self.enter(span)?;
                let mut items = Vec::new();
                let mut whole = span;
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        whole = whole.join(Span::new(span.end, span.end));
                        break;
                    }
                    let item = self.node(event, span)?;
                    whole = whole.join(item.span);
                    items.push(item);
                }
                self.depth -= 1;
                let node = Node::new(Value::List(items), whole);
                self.remember(anchor, &node, first)?;
                Ok(node)
            }
            Event::MappingStart(anchor, _tag) => {
                self.enter(span)?;
                let node = self.mapping(span)?;
                self.depth -= 1;
                self.remember(anchor, &node, first)?;
                Ok(node)
            }
            Event::Alias(anchor) => match self.anchors.get(&anchor).map(|(_, size)| *size) {
                Some(size) => {
                    self.aliases += 1;
                    self.nodes = self.nodes.saturating_add(size);
                    self.copy(size, span)?;
                    Ok(self.anchors[&anchor].0.clone())
                }
                None => {
                    self.problems.push(
                        Diagnostic::error(Code::Syntax, self.file, span, "alias to an unknown anchor")
                            .with_help("define the anchor (&name) before using it (*name)"),
                    );
                    Ok(Node::new(Value::Null, span))
                }
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::SequenceEnd
            | Event::MappingEnd => {
                self.problems.push(Diagnostic::error(
                    Code::Syntax,
                    self.file,
                    span,
                    "unexpected end of YAML structure",
                ));
                Err(Stop)
            }
        }
    }

    fn mapping(&mut self, start: Span) -> Result<Node, Stop> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut whole = start;
        loop {
            let (event, key_span) = self.next()?;
            let key = match event {
                Event::MappingEnd => break,
                Event::Scalar(text, ..) => text.into_owned(),
                Event::Alias(_)
                | Event::SequenceStart(..)
                | Event::MappingStart(..)
                | Event::Nothing
                | Event::StreamStart
                | Event::StreamEnd
                | Event::DocumentStart(_)
                | Event::DocumentEnd
                | Event::SequenceEnd => {
                    let complex = self.node(event, key_span)?;
                    self.problems.push(
                        Diagnostic::error(
                            Code::Syntax,
                            self.file,
                            complex.span,
                            "map keys must be plain text",
                        )
                        .with_help("write the key as a string"),
                    );
                    String::new()
                }
            };
            let (event, span) = self.next()?;
            let value = self.node(event, span)?;
            whole = whole.join(key_span).join(value.span);
            // A map of the keys seen so far: comparing each key with every earlier one made a
            // 100,000-key file take minutes.
            if let Some(first) =
                (!key.is_empty()).then(|| seen.get(&key)).flatten().map(|&index| &entries[index])
            {
                self.problems.push(
                    Diagnostic::error(
                        Code::DuplicateKey,
                        self.file,
                        key_span,
                        format!("duplicate key `{key}`"),
                    )
                    .with_label("written again here")
                    .with_secondary(first.key_span, "first written here")
                    .with_help("remove one of them; YAML keeps only one value per key"),
                );
            }
            seen.entry(key.clone()).or_insert(entries.len());
            entries.push(Entry { key, key_span, value });
        }
        Ok(Node::new(Value::Map(entries), whole))
    }

    /// Keeps a copy of an anchored node for its aliases; the copy counts towards
    /// [`MAX_ALIAS_NODES`] too, or many nested anchors on a large value would be as costly.
    fn remember(&mut self, anchor: usize, node: &Node, first: usize) -> Result<(), Stop> {
        if anchor > 0 {
            let size = self.nodes - first;
            self.copy(size, node.span)?;
            // A later anchor of the same name replaces the earlier one, as YAML says.
            self.anchors.insert(anchor, (node.clone(), size));
        }
        Ok(())
    }

    /// Counts `size` copied values, refusing more than [`MAX_ALIAS_NODES`] in all.
    fn copy(&mut self, size: usize, span: Span) -> Result<(), Stop> {
        self.alias_nodes = self.alias_nodes.saturating_add(size);
        if self.aliases > MAX_ALIASES || self.alias_nodes > MAX_ALIAS_NODES {
            self.problems.push(self.alias_limit(span));
            return Err(Stop);
        }
        Ok(())
    }

    /// Opens a list or map at `span`, refusing one nested deeper than [`MAX_DEPTH`].
    fn enter(&mut self, span: Span) -> Result<(), Stop> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.problems.push(too_deep(self.file, span, MAX_DEPTH));
            return Err(Stop);
        }
        Ok(())
    }

    fn alias_limit(&self, span: Span) -> Diagnostic {
        let message = if self.aliases > MAX_ALIASES {
            format!("more than {MAX_ALIASES} YAML aliases")
        } else {
            format!("YAML anchors and aliases copy more than {MAX_ALIAS_NODES} values")
        };
        Diagnostic::error(Code::Limit, self.file, span, message)
            .with_label("this goes over the limit")
            .with_help(
                "each `*alias` copies its anchor; write the values out, or reuse them with fewer, smaller anchors",
            )
    }
}

/// The diagnostic for a list or map opened at `span` deeper than [`MAX_DEPTH`].
fn too_deep(file: &Arc<SourceFile>, span: Span, limit: usize) -> Diagnostic {
    let span = Span::new(span.start, span.end.max(span.start + 1).min(file.text().len()));
    Diagnostic::error(Code::Limit, file, span, format!("lists and maps nest deeper than {limit} levels"))
        .with_label("this one is too deep")
        .with_help("a plan needs a few levels; look for a repeated `- ` or an unclosed `[` or `{`")
}

/// The offset of a `[` or `{` opened in flow style and not closed before the end of
/// `text`, ignoring quoted strings and comments.
fn unclosed_flow_bracket(text: &str) -> Option<usize> {
    let mut stack = Vec::new();
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut previous = '\n';
    for (offset, character) in text.char_indices() {
        if comment {
            comment = character != '\n';
        } else if let Some(open) = quote {
            if character == open && previous != '\\' {
                quote = None;
            }
        } else {
            match character {
                '"' | '\'' => quote = Some(character),
                '#' if previous.is_whitespace() => comment = true,
                '[' | '{' => stack.push(offset),
                ']' | '}' => {
                    stack.pop();
                }
                _ => {}
            }
        }
        previous = character;
    }
    stack.pop()
}

/// Resolves a scalar the way YAML 1.2's core schema does; quoted text stays text.
fn scalar(text: &str, style: ScalarStyle) -> Value {
    if !matches!(style, ScalarStyle::Plain) {
        return Value::String(text.to_owned());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(integer) = parse_integer(text) {
        return Value::Integer(integer);
    }
    let looks_numeric =
        text.bytes().next().is_some_and(|byte| byte.is_ascii_digit() || b"+-.".contains(&byte));
    if looks_numeric && let Ok(float) = text.parse::<f64>() {
        return Value::Float(float);
    }
    Value::String(text.to_owned())
}

fn parse_integer(text: &str) -> Option<i64> {
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Some(octal) = text.strip_prefix("0o") {
        return i64::from_str_radix(octal, 8).ok();
    }
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn load_toml(file: &Arc<SourceFile>) -> Result<Node, Vec<Diagnostic>> {
    let (table, errors) = toml::de::DeTable::parse_recoverable(file.text());
    if !errors.is_empty() {
        // Recovery after the first syntax error mostly repeats it: report the first only.
        return Err(errors
            .iter()
            .take(1)
            .map(|error| {
                let range = error.span().unwrap_or(0..0);
                let span = Span::new(range.start, range.end.max(range.start + 1).min(file.text().len()));
                let written = file.text().get(span.start..span.end).unwrap_or_default();
                let (message, help) = if matches!(written, "}" | "," | "]" | "\n" | "")
                    && error.message().contains("string, expected")
                {
                    ("a key has no value".to_owned(), "write a value after `=`, e.g. `duration = \"30s\"`")
                } else if error.message().contains("recurs") {
                    // The toml crate's own nesting limit, lower than ours.
                    (
                        "arrays, inline tables or dotted keys nest too deeply".to_owned(),
                        "a plan needs a few levels; look for a repeated `[` or `{`, or a very long dotted key",
                    )
                } else {
                    (error.message().trim_end().replace('\n', " "), "see https://toml.io for the syntax")
                };
                Diagnostic::error(Code::Syntax, file, span, format!("invalid TOML: {message}"))
                    .with_label("here")
                    .with_help(help)
            })
            .collect());
    }
    let span = table.span();
    toml_table(file, table.get_ref(), Span::new(span.start, span.end), 0).map_err(|problem| vec![problem])
}

/// Converts a table at `depth` (tables and arrays around it). The toml crate limits each
/// array, inline table and dotted key, but a dotted key inside an inline table inside an
/// array … multiplies those limits, so the whole depth is checked here.
fn toml_table(
    file: &Arc<SourceFile>,
    table: &toml::de::DeTable<'_>,
    span: Span,
    depth: usize,
) -> Result<Node, Diagnostic> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(file, span, MAX_DEPTH));
    }
    let mut entries = Vec::with_capacity(table.len());
    for (key, value) in table {
        let key_span = key.span();
        entries.push(Entry {
            key: key.get_ref().to_string(),
            key_span: Span::new(key_span.start, key_span.end),
            value: toml_value(file, value, depth + 1)?,
        });
    }
    // The table type may sort its keys; diagnostics read best in the order written.
    entries.sort_by_key(|entry| entry.key_span.start);
    Ok(Node::new(Value::Map(entries), span))
}

fn toml_value(
    file: &Arc<SourceFile>,
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    depth: usize,
) -> Result<Node, Diagnostic> {
    let range = value.span();
    let span = Span::new(range.start, range.end);
    let value = match value.get_ref() {
        toml::de::DeValue::String(text) => Value::String(text.to_string()),
        toml::de::DeValue::Integer(integer) => {
            let digits = integer.as_str().replace('_', "");
            let parsed = match integer.radix() {
                10 => digits.parse().ok(),
                radix => i64::from_str_radix(&digits, radix).ok(),
            };
            parsed.map_or_else(|| Value::String(integer.as_str().to_owned()), Value::Integer)
        }
        toml::de::DeValue::Float(float) => float
            .as_str()
            .replace('_', "")
            .parse()
            .map_or_else(|_| Value::String(float.to_string()), Value::Float),
        toml::de::DeValue::Boolean(boolean) => Value::Bool(*boolean),
        toml::de::DeValue::Datetime(datetime) => Value::String(datetime.to_string()),
        toml::de::DeValue::Array(items) => {
            if depth >= MAX_DEPTH {
                return Err(too_deep(file, span, MAX_DEPTH));
            }
            Value::List(items.iter().map(|item| toml_value(file, item, depth + 1)).collect::<Result<_, _>>()?)
        }
        toml::de::DeValue::Table(table) => return toml_table(file, table, span, depth),
    };
    Ok(Node::new(value, span))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Node {
        load(&SourceFile::new("t.yaml", text)).unwrap()
    }

    #[test]
    fn yaml_scalars_follow_the_core_schema() {
        let node = yaml("a: 1\nb: true\nc: '1'\nd: yes\ne: ~\nf: 1.5\ng: 30m\n");
        assert_eq!(node.get("a").unwrap().value, Value::Integer(1));
        assert_eq!(node.get("b").unwrap().value, Value::Bool(true));
        assert_eq!(node.get("c").unwrap().value, Value::String("1".into()));
        assert_eq!(node.get("d").unwrap().value, Value::String("yes".into()));
        assert_eq!(node.get("e").unwrap().value, Value::Null);
        assert_eq!(node.get("f").unwrap().value, Value::Float(1.5));
        assert_eq!(node.get("g").unwrap().value, Value::String("30m".into()));
    }

    #[test]
    fn yaml_spans_are_byte_offsets_even_after_multibyte_text() {
        let text = "description: \"naïve ünïcode\"\nname: x\n";
        let node = yaml(text);
        let entry = &node.as_map().unwrap()[1];
        assert_eq!(&text[entry.key_span.start..entry.key_span.end], "name");
        assert_eq!(&text[entry.value.span.start..entry.value.span.end], "x");
    }

    #[test]
    fn yaml_duplicate_keys_label_both() {
        let problems = load(&SourceFile::new("t.yaml", "a: 1\na: 2\n")).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].labels.len(), 2);
    }

    #[test]
    fn yaml_aliases_copy_the_anchored_value() {
        let node = yaml("a: &x [1, 2]\nb: *x\n");
        assert_eq!(node.get("a").unwrap().value, node.get("b").unwrap().value);
    }

    #[test]
    fn toml_and_yaml_give_the_same_values() {
        let from_toml = load(&SourceFile::new("t.toml", "b = 1\na = \"x\"\n[c]\nd = [true]\n")).unwrap();
        let from_yaml = yaml("b: 1\na: x\nc:\n  d: [true]\n");
        assert_eq!(from_toml.to_json(), from_yaml.to_json());
        assert_eq!(from_toml.as_map().unwrap()[0].key, "b");
    }

    #[test]
    fn syntax_errors_are_located() {
        let problems = load(&SourceFile::new("t.yaml", "a: [1, 2\nb: 3\n")).unwrap_err();
        assert!(problems[0].location().is_some());
        let problems = load(&SourceFile::new("t.toml", "a = \n")).unwrap_err();
        assert_eq!(problems[0].location().unwrap().1, 1);
    }

    fn problem(name: &str, text: &str) -> Diagnostic {
        let mut problems = load(&SourceFile::new(name, text)).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        problems.remove(0)
    }

    /// Nine levels of ten aliases each: 10^9 values if expanded.
    fn billion_laughs() -> String {
        let mut text = "a0: &a0 [lol]\n".to_owned();
        for level in 1..10 {
            let previous = format!("*a{}", level - 1);
            text.push_str(&format!("a{level}: &a{level} [{}]\n", vec![previous; 10].join(", ")));
        }
        text
    }

    #[test]
    fn alias_expansion_is_bounded_and_located() {
        let text = billion_laughs();
        let problem = problem("t.yaml", &text);
        assert_eq!(problem.code, "limit");
        assert!(problem.message.contains(&MAX_ALIAS_NODES.to_string()), "{}", problem.message);
        let (_, line, _) = problem.location().unwrap();
        assert!((5..=10).contains(&line), "located on the alias that goes over: line {line}");
    }

    #[test]
    fn alias_count_is_bounded() {
        let mut text = "a: &a 1\nb:\n".to_owned();
        text.push_str(&"- *a\n".repeat(MAX_ALIASES + 1));
        assert!(problem("t.yaml", &text).message.contains(&format!("more than {MAX_ALIASES} YAML aliases")));
        let mut text = "a: &a 1\nb:\n".to_owned();
        text.push_str(&"- *a\n".repeat(MAX_ALIASES));
        let node = yaml(&text);
        assert!(matches!(&node.get("b").unwrap().value, Value::List(items) if items.len() == MAX_ALIASES));
    }

    #[test]
    fn yaml_nesting_is_bounded_in_block_and_flow_style() {
        let deep_block = format!("{}1\n", "- ".repeat(5000));
        let deep_flow = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let deep_maps = "{a: ".repeat(5000);
        for text in [deep_block, deep_flow, deep_maps] {
            let problem = problem("t.yaml", &text);
            assert_eq!(problem.code, "limit", "{}: {problem}", &text[..20]);
            assert!(problem.message.contains("deeper than 25"), "{}", problem.message);
            let (_, line, column) = problem.location().unwrap();
            assert!(line == 1 && column > 255, "at the level over the limit: {line}:{column}");
        }
        let allowed = format!("{}1\n", "- ".repeat(MAX_DEPTH));
        assert!(load(&SourceFile::new("t.yaml", allowed)).is_ok());
    }

    #[test]
    fn toml_nesting_is_bounded_even_across_dotted_keys() {
        let deep_array = format!("a = {}{}\n", "[".repeat(5000), "]".repeat(5000));
        assert!(problem("t.toml", &deep_array).message.contains("nest too deeply"));
        // 70 levels of dotted key inside each of 10 nested inline tables: 700 levels,
        // under the toml crate's limits for each part.
        let key: Vec<String> = (0..70).map(|index| format!("k{index}")).collect();
        let key = key.join(".");
        let text = format!("a = {}1{}\n", format!("{{ {key} = ").repeat(10), " }".repeat(10));
        let problem = problem("t.toml", &text);
        assert!(problem.message.contains("deeper than 256 levels"), "{}", problem.message);
    }
}
