//! Reporters draw journal records for people or machines. They only ever see
//! records, which are already redacted, so no secret can reach the terminal.

use std::collections::BTreeMap;
use std::io::Write;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::journal::{Event, Record};
use crate::kinds::{Progress, ProgressUnit};

/// Consumes journal records as they are written.
pub trait Reporter {
    /// A record was journaled.
    fn record(&mut self, record: &Record);
    /// A note that is not a journal event.
    fn message(&mut self, text: &str);
    /// A running step's progress.
    fn progress(&mut self, update: &Progress);
    /// Puts an approval question to the operator; it stays on screen until
    /// [`Reporter::answered`].
    fn ask(&mut self, step: &str, question: &str) {
        let _ = write!(std::io::stderr(), "\n{}\n{}", question_lines(step, question), TYPE_YES);
    }
    /// The answer was neither `yes` nor `no`: say what to type.
    fn ask_again(&mut self, text: &str) {
        let _ = write!(std::io::stderr(), "{text}");
    }
    /// The question was answered, or, with `cut_short`, is no longer asked (Ctrl-C,
    /// the end of input): the cursor still stands after the prompt.
    fn answered(&mut self, cut_short: bool) {
        if cut_short {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// What the operator types at an approval question.
pub const TYPE_YES: &str = "Type `yes` to approve or `no` to refuse, then Enter: ";

fn question_lines(step: &str, question: &str) -> String {
    format!("⏸ approval `{step}` asks:\n    {}", terminal_text(question))
}

/// Text from a plan or a program, fit for a terminal: control characters as escapes
/// (an ESC from a plan must not clear the screen or retitle the window), and further
/// lines indented so they cannot pass for lines of the run.
#[must_use]
pub fn terminal_text(text: &str) -> String {
    crate::lang::diagnostic::escape_controls(text).replace('\n', "\n    ")
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressFormat {
    /// Progress bars on a terminal, plain lines otherwise.
    Human,
    /// One JSON event per line on standard output.
    Json,
}

/// Picks the reporter for this terminal and format.
#[must_use]
pub fn for_terminal(format: ProgressFormat) -> Box<dyn Reporter> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match format {
        ProgressFormat::Json => Box::new(JsonLines),
        ProgressFormat::Human if terminal && crate::sys::output::use_color(true) => Box::new(Bars::default()),
        ProgressFormat::Human => Box::new(PlainLines::default()),
    }
}

/// One JSON object per line on stdout.
pub struct JsonLines;

impl Reporter for JsonLines {
    fn record(&mut self, record: &Record) {
        if let Ok(line) = serde_json::to_string(record) {
            crate::outln!("{line}");
        }
    }

    fn message(&mut self, text: &str) {
        crate::outln!(
            "{}",
            serde_json::json!({ "at": crate::sys::clock::now(), "event": "message", "text": text })
        );
    }

    fn progress(&mut self, update: &Progress) {
        crate::outln!(
            "{}",
            serde_json::json!({ "at": crate::sys::clock::now(), "event": "progress", "step": update.step, "done": update.done, "total": update.total, "unit": update.unit, "note": update.note })
        );
    }
}

/// Timestamped plain lines on stderr (CI logs, `NO_COLOR`, pipes); progress at most
/// every few seconds per step, so logs stay readable.
#[derive(Default)]
pub struct PlainLines {
    last_progress: BTreeMap<String, std::time::Instant>,
    /// The last note printed for each step.
    last_note: BTreeMap<String, String>,
}

impl Reporter for PlainLines {
    fn record(&mut self, record: &Record) {
        // The question itself follows from `ask`.
        if matches!(record.event, Event::ApprovalAsked { .. }) {
            return;
        }
        let time = record.at.get(11..19).unwrap_or(&record.at);
        let _ = writeln!(std::io::stderr(), "{time} {}", terminal_text(&describe(&record.event)));
    }

    fn message(&mut self, text: &str) {
        let now = crate::sys::clock::now();
        let _ = writeln!(std::io::stderr(), "{} {}", now.get(11..19).unwrap_or(&now), terminal_text(text));
    }

    fn progress(&mut self, update: &Progress) {
        // A new note says something (where the replaced database went, what is waited
        // for now): shown at once. Counters, and a note repeated while a wait goes on,
        // at most every 5 seconds.
        let new_note =
            update.note.as_ref().is_some_and(|note| self.last_note.get(&update.step) != Some(note));
        let due = new_note
            || self
                .last_progress
                .get(&update.step)
                .is_none_or(|last| last.elapsed() >= std::time::Duration::from_secs(5));
        if let Some(note) = &update.note {
            self.last_note.insert(update.step.clone(), note.clone());
        }
        if due {
            self.last_progress.insert(update.step.clone(), std::time::Instant::now());
            self.message(&format!("  {} {}", update.step, progress_text(update)));
        }
    }
}

fn progress_text(update: &Progress) -> String {
    if let Some(note) = &update.note {
        return note.clone();
    }
    let (done, unit) = (update.done, update.unit);
    match update.total.filter(|total| *total > 0) {
        Some(total) => {
            let percent = done as f64 * 100.0 / total as f64;
            match unit {
                ProgressUnit::Bytes => {
                    format!(
                        "{} of {} ({percent:.0}%)",
                        indicatif::HumanBytes(done),
                        indicatif::HumanBytes(total)
                    )
                }
                ProgressUnit::Objects => format!("{done} of {total} objects ({percent:.0}%)"),
            }
        }
        None => match unit {
            ProgressUnit::Bytes => indicatif::HumanBytes(done).to_string(),
            ProgressUnit::Objects => format!("{done} objects"),
        },
    }
}

/// indicatif: one spinner line per running step, finished lines above. While an
/// approval question waits, the spinners are not drawn (their redraws would erase the
/// question) and lines are printed above a repeated prompt.
#[derive(Default)]
pub struct Bars {
    multi: MultiProgress,
    running: BTreeMap<String, ProgressBar>,
    asking: bool,
}

impl Bars {
    fn line(&mut self, text: &str) {
        let text = terminal_text(text);
        if self.asking {
            let _ = write!(std::io::stderr(), "\r\x1b[2K{text}\n{TYPE_YES}");
        } else {
            let _ = self.multi.println(&text);
        }
    }
}

impl Reporter for Bars {
    fn record(&mut self, record: &Record) {
        match &record.event {
            Event::StepStarted { step, attempt } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(step.clone());
                bar.set_message(if *attempt > 1 { format!("attempt {attempt}") } else { String::new() });
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                self.running.insert(step.clone(), bar);
            }
            Event::StepSucceeded { step, .. } | Event::StepFailed { step, .. } => {
                if let Some(bar) = self.running.remove(step) {
                    bar.finish_and_clear();
                }
                self.line(&describe(&record.event));
            }
            Event::ApprovalAsked { .. } => {}
            // Steps still drawn when the run stops were interrupted: their spinners must
            // not tick on over the lines that say what to do next.
            Event::RunFinished { .. } => {
                for (_, bar) in std::mem::take(&mut self.running) {
                    bar.finish_and_clear();
                }
                self.line(&describe(&record.event));
            }
            _ => self.line(&describe(&record.event)),
        }
    }

    fn message(&mut self, text: &str) {
        self.line(text);
    }

    fn ask(&mut self, step: &str, question: &str) {
        let _ = self.multi.clear();
        self.multi.set_draw_target(ProgressDrawTarget::hidden());
        self.asking = true;
        // The spinners are hidden while the question waits: say what still runs.
        let others: Vec<&str> =
            self.running.keys().map(String::as_str).filter(|running| *running != step).collect();
        let running = if others.is_empty() {
            String::new()
        } else {
            format!("(still running: {})\n", others.join(", "))
        };
        let _ = write!(std::io::stderr(), "\n{running}{}\n{TYPE_YES}", question_lines(step, question));
    }

    fn answered(&mut self, cut_short: bool) {
        if self.asking {
            self.asking = false;
            if cut_short {
                let _ = writeln!(std::io::stderr());
            }
            self.multi.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    fn progress(&mut self, update: &Progress) {
        let Some(bar) = self.running.get(&update.step) else { return };
        if let Some(total) = update.total.filter(|total| *total > 0) {
            if bar.length() != Some(total) {
                bar.set_length(total);
                let template = match update.unit {
                    ProgressUnit::Bytes => {
                        "{spinner} {prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
                    }
                    ProgressUnit::Objects => "{spinner} {prefix:.bold} [{bar:30}] {pos}/{len} objects",
                };
                bar.set_style(
                    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
            }
            bar.set_position(update.done);
        } else {
            bar.set_message(progress_text(update));
        }
    }
}

/// One line for a person.
#[must_use]
pub fn describe(event: &Event) -> String {
    match event {
        Event::RunStarted { run_id, plan, drill, .. } => {
            format!("run {run_id} of plan {plan} started{}", if *drill { " (drill)" } else { "" })
        }
        Event::Resumed { operator, rerun } => {
            let again = if rerun.is_empty() {
                String::new()
            } else {
                format!("; running again: {}", rerun.join(", "))
            };
            format!("resumed by {operator}{again}")
        }
        Event::StepStarted { step, attempt } if *attempt > 1 => format!("▶ {step} (attempt {attempt})"),
        Event::StepStarted { step, .. } => format!("▶ {step}"),
        Event::StepSucceeded { step, seconds, .. } => format!("✔ {step} ({seconds:.1}s)"),
        Event::StepFailed { step, error, will_retry: true, .. } => format!("✘ {step}: {error} (will retry)"),
        Event::StepFailed { step, error, .. } => format!("✘ {step}: {error}"),
        Event::StepSkipped { step, reason, .. } => format!("⤼ {step} skipped: {reason}"),
        Event::ApprovalNeeded { step, question } if question.is_empty() => {
            format!("⏸ {step} needs an approval")
        }
        Event::ApprovalNeeded { step, question } => format!("⏸ {step} needs an approval: {question}"),
        Event::ApprovalAsked { step, question } => format!("⏸ {step} asks: {question}"),
        Event::ApprovalGranted { step, by, via, approver, waited_seconds, .. } => {
            let who = approver.as_ref().map_or_else(|| by.clone(), |name| format!("{name} ({by})"));
            format!(
                "✔ {step} approved by {who} via {via} after {}",
                crate::lang::duration::format_measured(crate::lang::duration::seconds(*waited_seconds))
            )
        }
        Event::StepWarning { step, message } => format!("⚠ {step}: {message}"),
        Event::StepMarkedDone { step, operator, reason } => {
            format!("✔ {step} marked done by hand by {operator}: {reason}")
        }
        Event::ValuesOverridden { operator, values } => {
            let listed: Vec<String> = values.iter().map(|(name, value)| format!("{name}={value}")).collect();
            format!("values corrected by {operator}: {}", listed.join(", "))
        }
        Event::UndoStarted { step } => format!("↩ undoing {step}"),
        Event::UndoSkipped { step, reason } => format!("↩ {step} {reason}"),
        Event::UndoFinished { step, error: None } => format!("↩ {step} undone"),
        Event::UndoFinished { step, error: Some(error) } => format!("↩ undo of {step} FAILED: {error}"),
        Event::LockBroken { operator, holder } => format!("stale lock of {holder} broken by {operator}"),
        Event::RunFinished { status } => format!("run {}", status.word()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(done: u64, total: Option<u64>, unit: ProgressUnit) -> Progress {
        Progress { step: "step".to_owned(), done, total, unit, note: None }
    }

    #[test]
    fn a_question_from_the_plan_is_indented_once_and_cannot_drive_the_terminal() {
        assert_eq!(
            question_lines("go", "Fail over?\nReally \u{1b}[2J?"),
            "⏸ approval `go` asks:\n    Fail over?\n    Really \\u{1b}[2J?"
        );
    }

    #[test]
    fn progress_says_what_it_counts() {
        assert_eq!(progress_text(&update(512, Some(2048), ProgressUnit::Bytes)), "512 B of 2.00 KiB (25%)");
        assert_eq!(progress_text(&update(3 << 20, None, ProgressUnit::Bytes)), "3.00 MiB");
        assert_eq!(progress_text(&update(2, Some(5), ProgressUnit::Objects)), "2 of 5 objects (40%)");
        assert_eq!(progress_text(&update(2, None, ProgressUnit::Objects)), "2 objects");
    }
}
