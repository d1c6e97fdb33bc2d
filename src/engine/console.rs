//! The operator's side of a run: Ctrl-C, SIGTERM and SIGHUP, and the answers typed at
//! the terminal. Signals are watched by one task for the whole command: the first asks
//! the run to stop cleanly (resumable); a second one ends the process at once, after
//! removing the lock, so a hung step can never trap the operator. SIGHUP (an ssh
//! session dropped, a terminal closed) is an interrupt like the others: the operator is
//! gone, so what matters is that the journal, the lock and the databases are left
//! right; what is printed afterwards may reach no one. Lines are read by a plain
//! thread, never by the runtime's blocking pool, so a prompt never keeps the process
//! alive after Ctrl-C.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;

/// What the process does if the operator insists (second Ctrl-C): the lock to remove
/// and the command that takes the run up again.
#[derive(Debug, Default)]
pub struct LastWords {
    /// The lock this process holds.
    pub lock: Option<super::lock::Lease>,
    /// Printed before exiting, e.g. the resume command.
    pub hint: Option<String>,
}

/// Signals and typed lines.
#[derive(Debug)]
pub struct Console {
    interrupts: watch::Receiver<u32>,
    lines: Option<UnboundedReceiver<Option<String>>>,
    /// Shared with the signal task.
    pub last_words: Arc<Mutex<LastWords>>,
}

/// A line the operator typed, or why there is none.
#[derive(Debug, PartialEq, Eq)]
pub enum Typed {
    /// The line, without its newline.
    Line(String),
    /// Standard input ended (closed terminal, `< /dev/null`).
    End,
    /// Ctrl-C, SIGTERM or SIGHUP.
    Interrupted,
}

/// How long the end of standard input waits for the hang-up that usually comes with it:
/// a closed terminal both ends the input and sends SIGHUP, in either order, and the run
/// must end as interrupted (resumable), not as if no one were there to ask.
const HANG_UP_GRACE: std::time::Duration = std::time::Duration::from_millis(300);

impl Console {
    /// Starts watching SIGINT, SIGTERM and SIGHUP. Must be called inside the runtime.
    ///
    /// # Errors
    /// The signal handlers could not be installed.
    pub fn start() -> std::io::Result<Console> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hang_up = signal(SignalKind::hangup())?;
        let (sender, interrupts) = watch::channel(0u32);
        let last_words = Arc::new(Mutex::new(LastWords::default()));
        let shared = Arc::clone(&last_words);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                    _ = hang_up.recv() => {}
                }
                let count = *sender.borrow() + 1;
                if count >= 2 {
                    leave_now(&shared);
                }
                let _ = sender.send(count);
            }
        });
        Ok(Console { interrupts, lines: None, last_words })
    }

    /// Whether the operator interrupted.
    #[must_use]
    pub fn interrupted(&self) -> bool {
        *self.interrupts.borrow() > 0
    }

    /// A receiver of the interrupt count, to wait on beside other borrows of the console.
    #[must_use]
    pub fn interrupt_watch(&self) -> watch::Receiver<u32> {
        self.interrupts.clone()
    }

    /// Forgets lines typed before now (an Enter pressed while a spinner ran must not
    /// answer the next question).
    pub fn discard_typed(&mut self) {
        let lines = self.lines.get_or_insert_with(read_lines);
        while lines.try_recv().is_ok() {}
    }

    /// The next line typed at the terminal.
    pub async fn next_line(&mut self) -> Typed {
        if self.interrupted() {
            return Typed::Interrupted;
        }
        let mut interrupts = self.interrupts.clone();
        let lines = self.lines.get_or_insert_with(read_lines);
        let line = tokio::select! {
            line = lines.recv() => line,
            _ = interrupts.wait_for(|count| *count > 0) => return Typed::Interrupted,
        };
        match line {
            Some(Some(line)) => Typed::Line(line.trim_end_matches(['\r', '\n']).to_owned()),
            Some(None) | None => {
                // Give a hang-up that closed the input a moment to be heard.
                let heard =
                    tokio::time::timeout(HANG_UP_GRACE, interrupts.wait_for(|count| *count > 0)).await;
                if matches!(heard, Ok(Ok(_))) { Typed::Interrupted } else { Typed::End }
            }
        }
    }

    /// Asks a yes/no question on standard error until the answer is exactly `yes` or
    /// `no`; anything else asks again, saying what to type.
    pub async fn ask_yes_no(&mut self, question: &str, meaning: (&str, &str)) -> Answer {
        self.discard_typed();
        crate::errout!("{question}");
        loop {
            match self.next_line().await {
                Typed::Line(line) => match classify(&line) {
                    Some(answer) => return answer,
                    None => crate::errout!("{}", retry_prompt(&line, meaning)),
                },
                Typed::End => return Answer::NoTerminal,
                Typed::Interrupted => return Answer::Interrupted,
            }
        }
    }
}

/// An operator's answer to a yes/no question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `yes`
    Yes,
    /// `no`
    No,
    /// Ctrl-C, SIGTERM or SIGHUP.
    Interrupted,
    /// Standard input ended before an answer.
    NoTerminal,
}

/// `yes` and `no` are answers; anything else (`y`, `Y`, empty, `ye`) is not, because
/// at 3 AM a reflexive `y` must neither start a destructive run nor refuse one.
#[must_use]
pub fn classify(line: &str) -> Option<Answer> {
    match line.trim() {
        "yes" => Some(Answer::Yes),
        "no" => Some(Answer::No),
        _ => None,
    }
}

/// The line shown after an answer that is neither `yes` nor `no`.
#[must_use]
/// `meaning` says what `yes` and `no` do, e.g. `("approve", "refuse")`.
pub fn retry_prompt(given: &str, meaning: (&str, &str)) -> String {
    let given = given.trim();
    let heard = if given.is_empty() { "nothing".to_owned() } else { format!("`{}`", given.escape_debug()) };
    format!("Got {heard}. Type `yes` to {} or `no` to {}, then Enter: ", meaning.0, meaning.1)
}

/// Starts the thread that reads standard input line by line. It blocks in `read_line`
/// for as long as the process lives and is never joined.
fn read_lines() -> UnboundedReceiver<Option<String>> {
    let (sender, receiver): (UnboundedSender<Option<String>>, _) = tokio::sync::mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new().name("dr-plan-stdin".into()).spawn(move || {
        let stdin = std::io::stdin();
        loop {
            let mut line = String::new();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = sender.send(None);
                    return;
                }
                Ok(_) => {
                    if sender.send(Some(line)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    if spawned.is_err() {
        // No thread, no answers: the caller sees the end of input and blocks the run
        // (exit 3, resumable) instead of guessing.
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let _ = sender.send(None);
        return receiver;
    }
    receiver
}

/// The second interrupt: the lock goes, the hint is printed, the process ends (130).
/// Steps still running are killed by the orphan watchdog and stay "started, not
/// finished" in the journal, so the run remains resumable.
fn leave_now(last_words: &Mutex<LastWords>) -> ! {
    let words = last_words.lock().map(|words| (words.lock.clone(), words.hint.clone())).unwrap_or_default();
    if let Some(lease) = words.0 {
        lease.release();
    }
    crate::errln!("\nsecond interrupt: stopping now.");
    if let Some(hint) = words.1 {
        crate::errln!("{hint}");
    }
    std::process::exit(crate::sys::exit_code::INTERRUPTED);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_and_no_are_answers() {
        assert_eq!(classify("yes"), Some(Answer::Yes));
        assert_eq!(classify(" yes "), Some(Answer::Yes));
        assert_eq!(classify("no"), Some(Answer::No));
        for unclear in ["y", "Y", "", "ye", "YES", "n", "yes please"] {
            assert_eq!(classify(unclear), None, "{unclear:?}");
        }
    }

    #[test]
    fn the_retry_prompt_says_what_was_heard_and_what_to_type() {
        assert_eq!(
            retry_prompt("y", ("approve", "refuse")),
            "Got `y`. Type `yes` to approve or `no` to refuse, then Enter: "
        );
        assert!(retry_prompt("", ("start", "cancel")).starts_with("Got nothing."));
        assert!(retry_prompt("\u{1b}[2J", ("start", "cancel")).contains("\\u{1b}"));
    }
}
