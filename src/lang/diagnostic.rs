//! Problems found in plan files, each located in its file, labelled on the exact text,
//! with a help line; rendered by miette for people and as data for machines.

use std::fmt;
use std::sync::Arc;

use crate::lang::code::Code;
use crate::lang::source::{SourceFile, Span};

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Lint finding: the plan is valid but risky.
    Warning,
    /// The plan cannot be used.
    Error,
}

/// A label on a span of the file.
#[derive(Clone, Debug)]
pub struct Label {
    /// What it marks.
    pub span: Span,
    /// What to say there.
    pub message: String,
}

/// One problem.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// Stable code: a validation [`Code`]'s text (`unknown-field`, `cycle`, ...) or a
    /// lint rule's (`DRP003`, ...).
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// One line: what is wrong.
    pub message: String,
    /// The file it is about; `None` when the file could not be read at all.
    pub file: Option<Arc<SourceFile>>,
    /// Labels on the exact text; the first is the primary location.
    pub labels: Vec<Label>,
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span` of `file`.
    #[must_use]
    pub fn error(code: Code, file: &Arc<SourceFile>, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(code.as_str(), Severity::Error, file, span, message)
    }

    /// A lint finding (a warning) at `span` of `file`, with the code of the rule that
    /// found it (`DRP003`): lint's codes are lint's, not [`Code`]s.
    #[must_use]
    pub fn finding(
        rule_code: &'static str,
        file: &Arc<SourceFile>,
        span: Span,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::at(rule_code, Severity::Warning, file, span, message)
    }

    fn at(
        code: &'static str,
        severity: Severity,
        file: &Arc<SourceFile>,
        span: Span,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            code,
            severity,
            message: shown_text(&message.into()),
            file: Some(Arc::clone(file)),
            labels: vec![Label { span, message: String::new() }],
            help: None,
        }
    }

    /// A problem about a file that has no usable text (unreadable, unknown extension).
    #[must_use]
    pub fn about_path(code: Code, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code: code.as_str(),
            severity: Severity::Error,
            message: shown_text(&format!("{path}: {}", message.into())),
            file: None,
            labels: Vec::new(),
            help: None,
        }
    }

    /// Sets the severity.
    #[must_use]
    pub fn with_severity(mut self, severity: Severity) -> Diagnostic {
        self.severity = severity;
        self
    }

    /// Sets the primary label's text.
    #[must_use]
    pub fn with_label(mut self, message: impl Into<String>) -> Diagnostic {
        if let Some(first) = self.labels.first_mut() {
            first.message = shown_text(&message.into());
        }
        self
    }

    /// Adds a secondary label.
    #[must_use]
    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label { span, message: shown_text(&message.into()) });
        self
    }

    /// Sets the help line.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(shown_text(&help.into()));
        self
    }

    /// The primary span, if any.
    #[must_use]
    pub fn primary_span(&self) -> Option<Span> {
        self.labels.first().map(|label| label.span)
    }

    /// File name, line and column (1-based) of the primary location.
    #[must_use]
    pub fn location(&self) -> Option<(String, usize, usize)> {
        let file = self.file.as_ref()?;
        let span = self.primary_span()?;
        let (line, column) = file.line_column(span.start);
        Some((escape_controls(file.name()), line, column))
    }

    /// Line and column (1-based) where the primary label ends.
    #[must_use]
    pub fn end_location(&self) -> Option<(usize, usize)> {
        let file = self.file.as_ref()?;
        let span = self.primary_span()?;
        Some(file.line_column(span.end))
    }

    /// The file name, or the empty string.
    #[must_use]
    pub fn file_name(&self) -> &str {
        self.file.as_deref().map_or("", SourceFile::name)
    }

    /// Sort key: file, then position, so output is stable.
    #[must_use]
    pub fn sort_key(&self) -> (String, usize, &'static str) {
        (self.file_name().to_owned(), self.primary_span().map_or(0, |span| span.start), self.code)
    }

    /// Renders for a terminal (`color`) or for plain text.
    #[must_use]
    pub fn render(&self, color: bool) -> String {
        let theme =
            if color { miette::GraphicalTheme::unicode() } else { miette::GraphicalTheme::unicode_nocolor() };
        let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false);
        let mut out = String::new();
        let report = MietteView::new(self);
        if handler.render_report(&mut out, &report).is_err() {
            out = format!("{self}\n");
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.location() {
            Some((file, line, column)) => {
                write!(formatter, "{file}:{line}:{column}: {severity}[{}]: {}", self.code, self.message)?;
            }
            None => write!(formatter, "{severity}[{}]: {}", self.code, self.message)?,
        }
        if let Some(help) = &self.help {
            write!(formatter, " (help: {help})")?;
        }
        Ok(())
    }
}

/// A [`Diagnostic`] seen through miette's trait, for rendering.
struct MietteView {
    code: &'static str,
    severity: Severity,
    message: String,
    help: Option<String>,
    source: Option<CharacterColumns>,
    labels: Vec<miette::LabeledSpan>,
}

/// The file as miette reads it, except that the column of a location counts characters
/// (as editors, SARIF and `--format json` do), not bytes, and that the text is the
/// [`ShownText`]: miette's offsets are into it, locations are computed in the file.
struct CharacterColumns {
    file: Arc<SourceFile>,
    shown: ShownText,
}

impl miette::SourceCode for CharacterColumns {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let text = self.shown.text.as_deref().unwrap_or(self.file.text());
        let contents = text.read_span(span, context_lines_before, context_lines_after)?;
        let (line, column) = self.file.line_column(self.shown.original(contents.span().offset()));
        Ok(Box::new(miette::MietteSpanContents::new_named(
            escape_controls(self.file.name()),
            contents.data(),
            *contents.span(),
            line - 1,
            column - 1,
            contents.line_count(),
        )))
    }
}

/// Lines longer than this many characters are shown only around their labels: miette
/// cannot underline past column 65,535, and nobody reads a 70,000-character line.
const LONG_LINE: usize = 200;

/// Characters kept on each side of a label's start and end on a long line.
const AROUND_LABEL: usize = 60;

/// A file's text as a snippet shows it: each control character (ESC, NUL, …) or
/// bidirectional override as one visible character, so the plan cannot drive the
/// terminal and columns still line up; long lines cut to the text around the labels.
struct ShownText {
    /// `None` when the file's text can be shown as it is (the usual case).
    text: Option<String>,
    /// `(original offset, shown offset)` wherever the two stop moving together;
    /// between two of them, both advance byte for byte.
    anchors: Vec<(usize, usize)>,
}

impl ShownText {
    /// The text of `file` with the given `points` (label ends) kept on long lines.
    fn new(file: &SourceFile, points: &[usize]) -> ShownText {
        let text = file.text();
        let plain = text.split('\n').all(|line| line.len() <= LONG_LINE)
            && !text.chars().any(|character| shown_as(character).is_some());
        if plain {
            return ShownText { text: None, anchors: vec![(0, 0)] };
        }
        let mut builder = ShownBuilder { shown: String::with_capacity(text.len()), anchors: vec![(0, 0)] };
        let mut line_start = 0;
        for line in text.split_inclusive('\n') {
            let content_end = line_start + line.trim_end_matches('\n').len();
            let windows = if content_end - line_start > LONG_LINE {
                windows(text, line_start, content_end, points)
            } else {
                vec![(line_start, content_end)]
            };
            let mut cursor = line_start;
            for (start, end) in windows {
                if start > cursor {
                    builder.gap(start);
                }
                builder.keep(text, start, end);
                cursor = end;
            }
            if cursor < content_end {
                builder.gap(content_end);
            }
            builder.keep(text, content_end, line_start + line.len());
            line_start += line.len();
        }
        ShownText { text: Some(builder.shown), anchors: builder.anchors }
    }

    /// Where byte `original` of the file is in the shown text.
    fn shown(&self, original: usize) -> usize {
        let index = self.anchors.partition_point(|&(from, _)| from <= original).saturating_sub(1);
        let (from, to) = self.anchors[index];
        match self.anchors.get(index + 1) {
            Some(&(next_from, next_to)) if next_from - from != next_to - to || original >= next_from => to,
            Some(_) | None => to + (original - from),
        }
    }

    /// Where byte `shown` of the shown text comes from in the file.
    fn original(&self, shown: usize) -> usize {
        let index = self.anchors.partition_point(|&(_, to)| to <= shown).saturating_sub(1);
        let (from, to) = self.anchors[index];
        match self.anchors.get(index + 1) {
            Some(&(next_from, next_to)) if next_from - from != next_to - to || shown >= next_to => from,
            Some(_) | None => from + (shown - to),
        }
    }
}

/// The shown text as it is built, with its anchors.
struct ShownBuilder {
    shown: String,
    anchors: Vec<(usize, usize)>,
}

impl ShownBuilder {
    fn anchor(&mut self, original: usize) {
        let here = (original, self.shown.len());
        match self.anchors.last_mut() {
            Some(last) if last.0 == here.0 || last.1 == here.1 => *last = here,
            Some(_) | None => self.anchors.push(here),
        }
    }

    /// Shows `text[start..end]`, hostile characters replaced.
    fn keep(&mut self, text: &str, start: usize, end: usize) {
        for (offset, character) in text[start..end].char_indices() {
            match shown_as(character) {
                Some(replacement) => {
                    self.anchor(start + offset);
                    self.shown.push(replacement);
                    self.anchor(start + offset + character.len_utf8());
                }
                None => self.shown.push(character),
            }
        }
    }

    /// Shows `…` for the text cut up to `resume`.
    fn gap(&mut self, resume: usize) {
        let start = self.anchors.last().map_or(0, |&(from, to)| from + (self.shown.len() - to));
        self.anchor(start);
        self.shown.push('…');
        self.anchor(resume);
    }
}

/// The byte ranges of the long line `text[start..end]` kept around `points`, merged.
fn windows(text: &str, start: usize, end: usize, points: &[usize]) -> Vec<(usize, usize)> {
    let mut inside: Vec<usize> =
        points.iter().copied().filter(|&point| (start..=end).contains(&point)).collect();
    if inside.is_empty() {
        inside.push(start);
    }
    inside.sort_unstable();
    let mut windows: Vec<(usize, usize)> = Vec::new();
    for point in inside {
        let point = floor_boundary(text, point);
        let from =
            text[start..point].char_indices().rev().nth(AROUND_LABEL - 1).map_or(start, |(at, _)| start + at);
        let to = text[point..end].char_indices().nth(AROUND_LABEL).map_or(end, |(at, _)| point + at);
        match windows.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            Some(_) | None => windows.push((from, to)),
        }
    }
    windows
}

fn floor_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Whether a character from a plan must not reach a terminal as it is: control
/// characters other than newline and tab (ESC starts terminal commands, CR overwrites
/// the line, NUL ends C strings), and bidirectional overrides (which reorder what is shown).
fn is_hostile(character: char) -> bool {
    (character.is_control() && !matches!(character, '\n' | '\t'))
        || matches!(character, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The one character a snippet shows for a hostile character: its Unicode control
/// picture (`␛` for ESC, `␀` for NUL), or `�`.
fn shown_as(character: char) -> Option<char> {
    if !is_hostile(character) {
        return None;
    }
    let code = u32::from(character);
    Some(match code {
        0..=0x1f => char::from_u32(0x2400 + code).unwrap_or('\u{fffd}'),
        0x7f => '\u{2421}',
        _ => '\u{fffd}',
    })
}

/// Messages, labels and help longer than this many characters are cut in the middle:
/// they quote the plan, and a 70,000-character name is read by nobody (and took miette
/// most of a second to wrap).
const LONGEST_MESSAGE: usize = 1000;

/// A diagnostic's own text: hostile characters escaped, an overlong text cut.
fn shown_text(text: &str) -> String {
    let escaped = escape_controls(text);
    if escaped.chars().count() <= LONGEST_MESSAGE {
        return escaped;
    }
    let head: String = escaped.chars().take(LONGEST_MESSAGE * 2 / 3).collect();
    let tail: Vec<char> = escaped.chars().rev().take(LONGEST_MESSAGE / 4).collect();
    format!("{head}…{}", tail.into_iter().rev().collect::<String>())
}

/// `text` with every hostile character (see [`is_hostile`]) written as an escape such
/// as `\u{1b}`: diagnostics quote the plan, and must print the same in every format.
#[must_use]
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(is_hostile) {
        return text.to_owned();
    }
    text.chars()
        .map(|character| {
            if is_hostile(character) { character.escape_unicode().to_string() } else { character.to_string() }
        })
        .collect()
}

impl MietteView {
    fn new(diagnostic: &Diagnostic) -> MietteView {
        let points: Vec<usize> =
            diagnostic.labels.iter().flat_map(|label| [label.span.start, label.span.end]).collect();
        let source = diagnostic
            .file
            .as_ref()
            .map(|file| CharacterColumns { file: Arc::clone(file), shown: ShownText::new(file, &points) });
        let labels = diagnostic
            .labels
            .iter()
            .enumerate()
            .map(|(index, label)| {
                let text = (!label.message.is_empty()).then(|| label.message.clone());
                let (start, end) = source.as_ref().map_or((label.span.start, label.span.end), |source| {
                    (source.shown.shown(label.span.start), source.shown.shown(label.span.end))
                });
                let span = miette::SourceSpan::new(start.into(), end.saturating_sub(start));
                if index == 0 {
                    miette::LabeledSpan::new_primary_with_span(text, span)
                } else {
                    miette::LabeledSpan::new_with_span(text, span)
                }
            })
            .collect();
        MietteView {
            code: diagnostic.code,
            severity: diagnostic.severity,
            message: diagnostic.message.clone(),
            help: diagnostic.help.clone(),
            source,
            labels,
        }
    }
}

impl fmt::Debug for MietteView {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl fmt::Display for MietteView {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for MietteView {}

impl miette::Diagnostic for MietteView {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|help| Box::new(help) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|source| source as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        if self.source.is_none() || self.labels.is_empty() {
            return None;
        }
        Some(Box::new(self.labels.iter().cloned()))
    }
}

/// Names longer than this (in bytes) get no "did you mean".
const LONGEST_TYPO: usize = 256;

/// The closest of `candidates` to `name`, if one is close enough to be a likely typo.
#[must_use]
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // The distance costs length × length: a hostile 70,000-character name took seconds.
    // No typo is that long, and names whose lengths differ by more than the limit are
    // that far apart at least, so only the others are measured.
    if name.len() > LONGEST_TYPO {
        return None;
    }
    let limit = |candidate: &str| (name.len().max(candidate.len()) / 3).max(1);
    let name_characters = name.chars().count();
    candidates
        .into_iter()
        .filter(|candidate| {
            candidate.len() <= LONGEST_TYPO
                && (candidate.starts_with(name)
                    || name_characters.abs_diff(candidate.chars().count()) <= limit(candidate))
        })
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|&(distance, candidate)| {
            distance <= limit(candidate) || (candidate.starts_with(name) && name.len() >= 3)
        })
        .min_by_key(|&(distance, candidate)| (distance, candidate))
        .map(|(_, candidate)| candidate)
}

/// "did you mean `x`?" or a list of what is allowed.
#[must_use]
pub fn suggestion<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str> + Clone) -> String {
    match did_you_mean(name, candidates.clone()) {
        Some(close) => format!("did you mean `{close}`?"),
        None => {
            let all: Vec<&str> = candidates.into_iter().collect();
            if all.is_empty() {
                "nothing is allowed here".to_owned()
            } else {
                format!("expected one of: {}", all.join(", "))
            }
        }
    }
}

/// "1 stage", "3 stages": a count with the word it counts, in the singular for one.
#[must_use]
pub fn counted(count: usize, one: &str, many: &str) -> String {
    if count == 1 { format!("1 {one}") } else { format!("{count} {many}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("neds", ["needs", "kind", "with"]), Some("needs"));
        assert_eq!(did_you_mean("timeuot", ["timeout", "retry"]), Some("timeout"));
        assert_eq!(did_you_mean("banana", ["needs", "kind"]), None);
        let long = "x".repeat(70_000);
        assert_eq!(did_you_mean(&long, ["needs", long.as_str()]), None);
    }

    fn at(text: &str, needle: &str) -> Diagnostic {
        let file = SourceFile::new("p.yaml", text);
        let start = text.find(needle).unwrap();
        Diagnostic::error(
            Code::Syntax,
            &file,
            Span::new(start, start + needle.len()),
            format!("bad `{needle}`"),
        )
        .with_label(format!("`{needle}` here"))
        .with_help(format!("remove `{needle}`"))
    }

    #[test]
    fn labels_far_along_a_long_line_render_cut_around_them() {
        let text = format!("a: \"{}\"\nb: ]\nc: \"{}\" # end\n", "y".repeat(70_000), "é".repeat(70_000));
        for needle in ["]", "# end", "a"] {
            let diagnostic = at(&text, needle);
            let rendered = diagnostic.render(false);
            let (_, line, column) = diagnostic.location().unwrap();
            assert!(rendered.contains(&format!("[p.yaml:{line}:{column}]")), "{rendered}");
            assert!(rendered.contains(needle) && rendered.contains('…'), "{rendered}");
            assert!(rendered.len() < 2_000, "{}", rendered.len());
            let quoted =
                Diagnostic::error(Code::Syntax, &diagnostic.file.clone().unwrap(), Span::new(0, 1), &text);
            assert!(
                quoted.message.chars().count() <= LONGEST_MESSAGE + 1 && quoted.message.ends_with("# end\n")
            );
        }
        let end = at(&text, "# end");
        assert_eq!(end.location().unwrap().2, 70_007);
    }

    #[test]
    fn control_characters_from_the_plan_are_escaped_in_every_form() {
        let text = "a: 1\nb\u{1b}[2J\u{0}: \u{202e}x\nc: 2\n";
        let diagnostic = at(text, "b\u{1b}[2J\u{0}");
        for output in [diagnostic.render(false), diagnostic.render(true), diagnostic.to_string()] {
            assert!(!output.contains('\u{0}') && !output.contains('\u{202e}'), "{output:?}");
            assert!(!output.contains("\u{1b}[2J"), "{output:?}");
            assert!(output.contains("b\\u{1b}[2J\\u{0}"), "the message escapes: {output:?}");
        }
        let plain = diagnostic.render(false);
        assert!(plain.contains("b␛[2J␀: �x"), "the snippet shows pictures: {plain}");
        assert!(plain.contains("[p.yaml:2:1]"), "{plain}");
        // The underline still sits under the six characters of the key.
        let underline = plain.lines().find(|line| line.contains('┬')).unwrap();
        assert_eq!(underline.trim_start_matches(|c| c != '·').matches('─').count() + 1, 6, "{plain}");
        // A label after the control characters stays on its own text.
        let after = at(text, "x");
        let rendered = after.render(false);
        assert!(rendered.contains("[p.yaml:2:10]"), "{rendered}");
        let underline = rendered.lines().find(|line| line.contains('┬')).unwrap();
        let source_line = rendered.lines().find(|line| line.contains("b␛")).unwrap();
        let column = |line: &str, wanted: char| line.chars().position(|character| character == wanted);
        assert_eq!(column(underline, '┬'), column(source_line, 'x'), "{rendered}");
    }
}
