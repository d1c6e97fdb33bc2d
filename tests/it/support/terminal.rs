//! A program in a pseudo-terminal, read the way a person reads it: everything it
//! writes goes through a terminal emulator (`vt100`), so a test asks what is on the
//! screen after carriage returns, erased lines and redrawn spinners, not which bytes
//! went by. Keys are typed into the terminal, so Ctrl-C is the terminal driver's
//! SIGINT to the foreground process group, as at a real keyboard.
//!
//! Every wait has a deadline, every failure carries the screen, and the program is
//! killed when the [`Terminal`] is dropped.

use std::fmt;
use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, MasterPty, PtySize};

/// The size of every test terminal: wide enough that no prompt wraps.
pub const ROWS: NonZeroU16 = NonZeroU16::new(30).expect("not zero");
/// See [`ROWS`].
pub const COLUMNS: NonZeroU16 = NonZeroU16::new(120).expect("not zero");

/// The byte the Ctrl-C key sends; the terminal driver turns it into SIGINT.
const CONTROL_C: u8 = 0x03;

/// How long [`Terminal::wait_exit`] waits, once the program exited, for its last
/// output to reach the screen (the reader sees end-of-file when the pty is closed).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// How a program in the terminal ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(u32),
    /// A signal killed it (named as `strsignal` names it, e.g. "Interrupt").
    Signal(String),
}

impl fmt::Display for Exit {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(formatter, "exit code {code}"),
            Exit::Signal(signal) => write!(formatter, "killed by signal {signal}"),
        }
    }
}

/// What the reader thread keeps: the emulated screen, and whether the terminal was
/// closed (end-of-file or an error on the master side).
struct Output {
    parser: vt100::Parser,
    closed: bool,
}

/// [`Output`] with a condition variable that is notified on every read.
struct Shared {
    output: Mutex<Output>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Output> {
        // A panic on the reader thread cannot leave the parser half-updated in a way
        // that matters to a test, so a poisoned lock is used as it is.
        self.output.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A program running in a pseudo-terminal of [`ROWS`] × [`COLUMNS`].
pub struct Terminal {
    shared: Arc<Shared>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn Child + Send + Sync>,
    // Kept open for the life of the program: closing the master side hangs it up.
    _master: Box<dyn MasterPty + Send>,
    exit: Option<Exit>,
    description: String,
}

impl Terminal {
    /// Starts `program` with `arguments` in `cwd`, with the test's environment plus
    /// `TERM=xterm-256color` and `environment`, and without `NO_COLOR` (so it draws
    /// what it draws for a person).
    pub fn spawn(program: &str, arguments: &[&str], cwd: &Path, environment: &[(&str, &str)]) -> Terminal {
        let description = format!("{program} {}", arguments.join(" "));
        let system = portable_pty::native_pty_system();
        let pair = system
            .openpty(PtySize { rows: ROWS.get(), cols: COLUMNS.get(), pixel_width: 0, pixel_height: 0 })
            .unwrap_or_else(|error| panic!("cannot open a pseudo-terminal: {error}"));
        let mut command = CommandBuilder::new(program);
        command.args(arguments);
        command.cwd(cwd);
        command.env_remove("NO_COLOR");
        command.env("TERM", "xterm-256color");
        for (name, value) in environment {
            command.env(name, value);
        }
        let child = pair
            .slave
            .spawn_command(command)
            .unwrap_or_else(|error| panic!("cannot start `{description}` in a pseudo-terminal: {error}"));
        // Only the child holds the terminal's slave side now, so the reader sees the
        // end of the output once the child (and whatever it started) let go of it.
        drop(pair.slave);
        let reader = pair
            .master
            .try_clone_reader()
            .unwrap_or_else(|error| panic!("cannot read the pseudo-terminal: {error}"));
        let writer = pair
            .master
            .take_writer()
            .unwrap_or_else(|error| panic!("cannot write to the pseudo-terminal: {error}"));
        let shared = Arc::new(Shared {
            output: Mutex::new(Output { parser: vt100::Parser::new(ROWS, COLUMNS, 0), closed: false }),
            changed: Condvar::new(),
        });
        spawn_reader(reader, Arc::clone(&shared));
        Terminal { shared, writer, child, _master: pair.master, exit: None, description }
    }

    /// What a person sees now: the screen's text, one line per row, trailing blanks
    /// removed.
    pub fn screen(&self) -> String {
        screen_text(self.shared.lock().parser.screen())
    }

    /// Waits until `ready` holds for the screen's text; returns that screen, or
    /// after `timeout` an error holding the screen as it was then.
    pub fn wait_for_screen(
        &self,
        mut ready: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut output = self.shared.lock();
        loop {
            let screen = screen_text(output.parser.screen());
            if ready(&screen) {
                return Ok(screen);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(screen);
            }
            // Woken by new output; the short slice also lets time-dependent
            // conditions be checked again when nothing is written.
            let slice = (deadline - now).min(Duration::from_millis(50));
            output = self
                .shared
                .changed
                .wait_timeout(output, slice)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until the screen contains `text`; returns the screen, or panics with it.
    #[track_caller]
    pub fn expect_text(&self, text: &str, timeout: Duration) -> String {
        self.wait_for_screen(|screen| screen.contains(text), timeout).unwrap_or_else(|screen| {
            panic!("{text:?} did not appear on the screen within {timeout:?}\n{}", self.report_with(&screen))
        })
    }

    /// Types `text` and Enter (a carriage return, as a keyboard sends it).
    #[track_caller]
    pub fn type_line(&mut self, text: &str) {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(b'\r');
        self.type_bytes(&bytes);
    }

    /// Presses Ctrl-C: the terminal driver sends SIGINT to the foreground process
    /// group, as for a person at the keyboard.
    #[track_caller]
    pub fn ctrl_c(&mut self) {
        self.type_bytes(&[CONTROL_C]);
    }

    /// Sends `bytes` as typed keys; panics (with the screen) when the terminal is gone.
    #[track_caller]
    pub fn type_bytes(&mut self, bytes: &[u8]) {
        if let Err(error) = self.writer.write_all(bytes).and_then(|()| self.writer.flush()) {
            panic!("cannot type {bytes:?} into the terminal: {error}\n{}", self.report());
        }
    }

    /// The program's process id.
    pub fn process_id(&self) -> Option<u32> {
        self.child.process_id()
    }

    /// Whether the program has ended, without waiting.
    pub fn try_exit(&mut self) -> Option<Exit> {
        if self.exit.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exit = Some(match status.signal() {
                Some(signal) => Exit::Signal(signal.to_owned()),
                None => Exit::Code(status.exit_code()),
            });
        }
        self.exit.clone()
    }

    /// Waits up to `timeout` for the program to end; once it has, waits a little for
    /// its last output to reach the screen. `None` when it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Exit> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.try_exit() {
                self.wait_closed(DRAIN_AFTER_EXIT);
                return Some(exit);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the program to end with `expected` within `timeout`; panics with the
    /// screen otherwise. Returns the final screen.
    #[track_caller]
    pub fn expect_exit(&mut self, expected: &Exit, timeout: Duration) -> String {
        match self.wait_exit(timeout) {
            Some(exit) if exit == *expected => self.screen(),
            Some(exit) => panic!("expected {expected}, got {exit}\n{}", self.report()),
            None => panic!("expected {expected} within {timeout:?}, but it still runs\n{}", self.report()),
        }
    }

    /// The program, how it ended, and its screen: for panic messages.
    pub fn report(&self) -> String {
        self.report_with(&self.screen())
    }

    /// Like [`Terminal::report`], with `screen` (e.g. the one a wait timed out on).
    pub fn report_with(&self, screen: &str) -> String {
        let state = match &self.exit {
            Some(exit) => exit.to_string(),
            None => "still running".to_owned(),
        };
        format!(
            "`{}` ({state}); the screen:\n{}\n{}\n{}",
            self.description,
            "-".repeat(usize::from(COLUMNS.get())),
            screen.trim_end(),
            "-".repeat(usize::from(COLUMNS.get()))
        )
    }

    /// Waits until the reader saw the end of the output, up to `timeout`.
    fn wait_closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut output = self.shared.lock();
        while !output.closed {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            output = self
                .shared
                .changed
                .wait_timeout(output, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A failed assertion that did not go through this harness still shows what
        // the person saw: the test's captured output is printed with its failure.
        // `DR_PLAN_TEST_SCREENS=1` shows the last screen of passing tests too.
        if thread::panicking() || std::env::var_os("DR_PLAN_TEST_SCREENS").is_some() {
            eprintln!("{}", self.report());
        }
    }
}

/// The screen row by row. (`vt100::Screen::contents` joins a row that was filled to
/// the last column with the next one, which indicatif's full-width lines do, so two
/// lines a person sees apart would read as one.)
fn screen_text(screen: &vt100::Screen) -> String {
    let rows: Vec<String> = screen.rows(0, COLUMNS.get()).map(|row| row.trim_end().to_owned()).collect();
    let shown = rows.iter().rposition(|row| !row.is_empty()).map_or(0, |last| last + 1);
    rows[..shown].join("\n")
}

/// Drains the terminal continuously (a program writing to a full pty blocks) into
/// the emulator, until end-of-file or an error (EIO once every slave side is closed).
fn spawn_reader(mut reader: Box<dyn Read + Send>, shared: Arc<Shared>) {
    thread::spawn(move || {
        let mut buffer = [0_u8; 4096];
        loop {
            let read = reader.read(&mut buffer);
            if read.as_ref().is_err_and(|error| error.kind() == std::io::ErrorKind::Interrupted) {
                continue;
            }
            let mut output = shared.lock();
            match read {
                Ok(0) | Err(_) => {
                    output.closed = true;
                    shared.changed.notify_all();
                    return;
                }
                Ok(count) => {
                    output.parser.process(&buffer[..count]);
                    shared.changed.notify_all();
                }
            }
        }
    });
}
