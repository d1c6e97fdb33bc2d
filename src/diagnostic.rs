//! Problems found in plan files, each located in its file, labelled on the exact text,
//! with a help line; rendered by miette for people and as data for machines.

use std::fmt;
use std::sync::Arc;

use crate::source::{SourceFile, Span};

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
    /// Stable code (`unknown-field`, `cycle`, `DRP003`, ...).
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
    pub fn error(
        code: &'static str,
        file: &Arc<SourceFile>,
        span: Span,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            file: Some(Arc::clone(file)),
            labels: vec![Label { span, message: String::new() }],
            help: None,
        }
    }

    /// A problem about a file that has no usable text (unreadable, unknown extension).
    #[must_use]
    pub fn about_path(code: &'static str, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: format!("{path}: {}", message.into()),
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
            first.message = message.into();
        }
        self
    }

    /// Adds a secondary label.
    #[must_use]
    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label { span, message: message.into() });
        self
    }

    /// Sets the help line.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
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
        Some((file.name().to_owned(), line, column))
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
/// (as editors, SARIF and `--format json` do), not bytes.
struct CharacterColumns {
    file: Arc<SourceFile>,
}

impl miette::SourceCode for CharacterColumns {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let contents = self.file.text().read_span(span, context_lines_before, context_lines_after)?;
        let (line, column) = self.file.line_column(contents.span().offset());
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.file.name().to_owned(),
            contents.data(),
            *contents.span(),
            line - 1,
            column - 1,
            contents.line_count(),
        )))
    }
}

impl MietteView {
    fn new(diagnostic: &Diagnostic) -> MietteView {
        MietteView {
            code: diagnostic.code,
            severity: diagnostic.severity,
            message: diagnostic.message.clone(),
            help: diagnostic.help.clone(),
            source: diagnostic.file.as_ref().map(|file| CharacterColumns { file: Arc::clone(file) }),
            labels: diagnostic
                .labels
                .iter()
                .enumerate()
                .map(|(index, label)| {
                    let text = (!label.message.is_empty()).then(|| label.message.clone());
                    let span = miette::SourceSpan::new(label.span.start.into(), label.span.len());
                    if index == 0 {
                        miette::LabeledSpan::new_primary_with_span(text, span)
                    } else {
                        miette::LabeledSpan::new_with_span(text, span)
                    }
                })
                .collect(),
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

/// The closest of `candidates` to `name`, if one is close enough to be a likely typo.
#[must_use]
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|&(distance, candidate)| {
            let limit = (name.len().max(candidate.len()) / 3).max(1);
            distance <= limit || (candidate.starts_with(name) && name.len() >= 3)
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
    }
}
