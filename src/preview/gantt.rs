//! Mermaid `gantt` blocks, which GitHub draws: the predicted timeline of a dry-run and
//! the measured one of a report share this writer.
//!
//! Times are offsets from the start written as `HH:mm:ss.SSS` (a `dateFormat` Mermaid
//! documents): Mermaid reads them as a time of today in the viewer's zone, so the axis
//! shows elapsed time whatever that zone is. A timeline longer than a day wraps.

use std::fmt::Write;

/// How Mermaid colours a bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Plain.
    Plain,
    /// `done`: finished well.
    Done,
    /// `active`: waiting (an approval).
    Active,
    /// `crit`: failed, or on the critical path.
    Critical,
}

/// One bar.
#[derive(Clone, Debug)]
pub struct Task {
    /// The section (row group) it belongs to.
    pub section: String,
    /// Its label.
    pub name: String,
    /// Its colour.
    pub mark: Mark,
    /// Seconds from the start.
    pub start: f64,
    /// Seconds from the start.
    pub end: f64,
}

/// Text Mermaid reads as a label: `:`, `;` and `#` have a meaning in a gantt line, and a
/// line break would end it.
fn label(text: &str) -> String {
    text.chars()
        .map(|character| match character {
            ':' | ';' | '#' | '%' => ' ',
            character if character.is_control() => ' ',
            character => character,
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// `HH:mm:ss.SSS` of an offset in seconds, rounded to the millisecond.
fn clock(seconds: f64) -> String {
    let millis = crate::lang::duration::seconds(seconds).as_millis();
    let total = millis / 1000;
    format!("{:02}:{:02}:{:02}.{:03}", total / 3600 % 24, total / 60 % 60, total % 60, millis % 1000)
}

/// A fenced ```` ```mermaid ```` block with a `gantt` chart of `tasks`, sections in the
/// order they first appear.
#[must_use]
pub fn mermaid(title: &str, tasks: &[Task]) -> String {
    let mut out = String::from("```mermaid\ngantt\n");
    let _ = writeln!(out, "    title {}", label(title));
    // Ticks of a short chart are seconds apart: show them to the millisecond.
    let longest = tasks.iter().map(|task| task.end).fold(0.0, f64::max);
    let axis = if longest < 60.0 { "%M:%S.%L" } else { "%H:%M:%S" };
    let _ = writeln!(out, "    dateFormat HH:mm:ss.SSS\n    axisFormat {axis}");
    let mut sections: Vec<&str> = Vec::new();
    for task in tasks {
        if !sections.contains(&task.section.as_str()) {
            sections.push(&task.section);
        }
    }
    for section in sections {
        let _ = writeln!(out, "    section {}", label(section));
        for task in tasks.iter().filter(|task| task.section == section) {
            let mark = match task.mark {
                Mark::Plain => "",
                Mark::Done => "done, ",
                Mark::Active => "active, ",
                Mark::Critical => "crit, ",
            };
            let _ = writeln!(
                out,
                "    {} :{mark}{}, {}",
                label(&task.name),
                clock(task.start),
                clock(task.end.max(task.start))
            );
        }
    }
    out.push_str("```\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cannot_break_the_chart_and_times_are_clocks() {
        let task = Task {
            section: "stage 1".to_owned(),
            name: "a: b; #c\nd".to_owned(),
            mark: Mark::Critical,
            start: 61.4,
            end: 3723.6,
        };
        assert_eq!(
            mermaid("plan: x", &[task]),
            "```mermaid\ngantt\n    title plan  x\n    dateFormat HH:mm:ss.SSS\n    axisFormat %H:%M:%S\n    section stage 1\n    a  b   c d :crit, 00:01:01.400, 01:02:03.600\n```\n"
        );
    }
}
