//! Plan files as read from disk, and byte spans into them.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::lang::code::Code;
use crate::lang::diagnostic::Diagnostic;

/// The largest plan or vars file dr-plan reads: far above any real plan, small enough
/// that a wrong path (`/dev/zero`, a disk image) is refused instead of read forever.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A byte range into a [`SourceFile`]'s text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end` (byte offsets).
    #[must_use]
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end: end.max(start) }
    }

    /// The smallest span covering both.
    #[must_use]
    pub fn join(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    /// Number of bytes covered.
    #[must_use]
    pub fn len(self) -> usize {
        self.end - self.start
    }

    /// Whether the span covers no byte.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// The syntax a plan file is written in, chosen by its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// `.yaml` / `.yml`
    Yaml,
    /// `.toml`
    Toml,
}

/// A plan file: its name as the user gave it, and its text.
#[derive(Debug)]
pub struct SourceFile {
    name: String,
    text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// Wraps text read from `name`.
    #[must_use]
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<SourceFile> {
        let text = text.into();
        let line_starts =
            std::iter::once(0).chain(text.match_indices('\n').map(|(index, _)| index + 1)).collect();
        Arc::new(SourceFile { name: name.into(), text, line_starts })
    }

    /// Reads a plan or vars file: the extension is checked before anything is read, at
    /// most [`MAX_FILE_BYTES`] are read, and text that is not UTF-8 is located.
    ///
    /// # Errors
    /// One diagnostic: an extension dr-plan does not read, an unreadable or too large
    /// file, or the line and column of the first byte that is not UTF-8.
    pub fn read(path: &Path) -> Result<Arc<SourceFile>, Diagnostic> {
        let name = path.display().to_string();
        if syntax_of(&name).is_none() {
            let json = name.to_ascii_lowercase().ends_with(".json");
            return Err(Diagnostic::about_path(Code::File, &name, "is not a YAML or TOML file").with_help(
                if json {
                    "plan and vars files end in .yaml, .yml or .toml; JSON is YAML: rename the file to .yaml"
                } else {
                    "plan and vars files end in .yaml, .yml or .toml"
                },
            ));
        }
        let unreadable = |error: std::io::Error| {
            Diagnostic::about_path(Code::File, &name, format!("cannot read: {error}"))
                .with_help("check the path")
        };
        // Only a regular file, never a link or a pipe: a plan in a pull request that is a
        // link to /etc/passwd or to a runner's credentials must not get them quoted into
        // a public CI log, and a FIFO would block the read for ever.
        let kind = std::fs::symlink_metadata(path).map_err(unreadable)?.file_type();
        if kind.is_symlink() {
            let target =
                std::fs::read_link(path).map(|target| target.display().to_string()).unwrap_or_default();
            return Err(Diagnostic::about_path(
                Code::File,
                &name,
                format!("is a symbolic link (to {target}); dr-plan reads plans only from regular files"),
            )
            .with_help("name the file itself, or copy it"));
        }
        if !kind.is_file() {
            return Err(Diagnostic::about_path(
                Code::File,
                &name,
                "is not a regular file (a pipe, a device or a directory)",
            )
            .with_help("check the path: plans are small text files"));
        }
        let file = std::fs::File::open(path).map_err(unreadable)?;
        let mut bytes = Vec::new();
        // One byte more than allowed tells "exactly at the limit" from "over it"
        // without trusting the size the file system reports (devices report 0).
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(unreadable)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(Diagnostic::about_path(
                Code::File,
                &name,
                format!("is larger than {} MiB, the limit for a plan or vars file", MAX_FILE_BYTES >> 20),
            )
            .with_help("check the path: plans are small text files"));
        }
        match String::from_utf8(bytes) {
            Ok(text) => Ok(SourceFile::new(name, text)),
            Err(error) => {
                let at = error.utf8_error().valid_up_to();
                let bad = error.utf8_error().error_len().unwrap_or(1);
                // The valid prefix keeps its offsets, so the location is exact.
                let file = SourceFile::new(name, String::from_utf8_lossy(error.as_bytes()).into_owned());
                let shown = &error.as_bytes()[at..(at + bad).min(error.as_bytes().len())];
                let hex: Vec<String> = shown.iter().map(|byte| format!("0x{byte:02x}")).collect();
                let plural = if shown.len() == 1 { "" } else { "s" };
                Err(Diagnostic::error(
                    Code::Encoding,
                    &file,
                    Span::new(at, at + file.text()[at..].chars().next().map_or(0, char::len_utf8)),
                    format!("the file is not valid UTF-8 (byte{plural} {})", hex.join(" ")),
                )
                .with_label("not UTF-8")
                .with_help("save the file as UTF-8 (the encoding YAML and TOML require)"))
            }
        }
    }

    /// The file name as given on the command line.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole text.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The syntax implied by the extension, if it is one dr-plan reads.
    #[must_use]
    pub fn syntax(&self) -> Option<Syntax> {
        syntax_of(&self.name)
    }

    /// 1-based line and column (in characters) of a byte offset.
    #[must_use]
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let line_start = self.line_starts[line];
        let column =
            self.text.get(line_start..offset).map_or(offset - line_start, |prefix| prefix.chars().count());
        (line + 1, column + 1)
    }

    /// The text a span covers.
    #[must_use]
    pub fn slice(&self, span: Span) -> &str {
        self.text.get(span.start..span.end).unwrap_or("")
    }
}

/// The syntax implied by a file name's extension.
#[must_use]
pub fn syntax_of(name: &str) -> Option<Syntax> {
    let extension = std::path::Path::new(name).extension()?.to_str()?;
    match extension {
        "yaml" | "yml" => Some(Syntax::Yaml),
        "toml" => Some(Syntax::Toml),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let file = SourceFile::new("p.yaml", "a: 1\nnäme: x\n");
        assert_eq!(file.line_column(0), (1, 1));
        assert_eq!(file.line_column(5), (2, 1));
        let x = file.text().find('x').unwrap();
        assert_eq!(file.line_column(x), (2, 7));
    }
}
