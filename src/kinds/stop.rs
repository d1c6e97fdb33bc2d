//! Asking a running attempt to stop. An attempt is normally stopped by dropping it,
//! which kills its programs at once (Ctrl-C must not wait for a 40-minute restore). A
//! few moments of a step must not be cut short that way: `pg.swap`, between refusing
//! connections to the live database and allowing them again, would leave every client
//! refused. Such a section holds a [`Shield`]; while one is held, whoever stops the
//! attempt (the dispatcher on Ctrl-C, SIGTERM or SIGHUP, the run deadline, the step's
//! `timeout:`, a lock taken over) tells it instead and waits for it to put things back
//! and return.
//!
//! The attempt learns of its [`Stop`] through a task-local value set around it, so a
//! kind that needs none (nearly all) sees nothing of this.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The stop request of one attempt (or one compensation), shared by the attempt and
/// whoever may stop it.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<State>);

#[derive(Debug, Default)]
struct State {
    requested: AtomicBool,
    shields: AtomicUsize,
    wake: tokio::sync::Notify,
}

tokio::task_local! {
    static CURRENT: Stop;
}

impl Stop {
    /// Runs `future` with this as its stop request: a [`shield`] taken inside it is told
    /// by [`Stop::request`].
    pub async fn scope<F: std::future::Future>(&self, future: F) -> F::Output {
        CURRENT.scope(self.clone(), future).await
    }

    /// Asks the attempt to stop. Returns whether it holds a shield: then it must be left
    /// to finish (it returns soon, having put things back); otherwise drop it.
    #[must_use]
    pub fn request(&self) -> bool {
        // The flag is set before the shields are counted, and a shield is counted before
        // the flag is read (both sequentially consistent): a section starting at this
        // very moment either sees the request and changes nothing, or is counted here.
        self.0.requested.store(true, Ordering::SeqCst);
        self.0.wake.notify_waiters();
        self.0.shields.load(Ordering::SeqCst) > 0
    }
}

/// Held by a section that must not be dropped halfway; see the module's notes.
#[derive(Debug)]
pub struct Shield(Option<Stop>);

/// Takes a shield for the attempt running now. Outside an attempt (a test calling a
/// kind directly) the shield is never told to stop.
#[must_use]
pub fn shield() -> Shield {
    let stop = CURRENT.try_with(Clone::clone).ok();
    if let Some(stop) = &stop {
        stop.0.shields.fetch_add(1, Ordering::SeqCst);
    }
    Shield(stop)
}

impl Shield {
    /// Whether the attempt was asked to stop.
    #[must_use]
    pub fn requested(&self) -> bool {
        self.0.as_ref().is_some_and(|stop| stop.0.requested.load(Ordering::SeqCst))
    }

    /// Returns once the attempt is asked to stop (never outside an attempt).
    pub async fn stopped(&self) {
        let Some(stop) = &self.0 else { return std::future::pending().await };
        loop {
            let notified = stop.0.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if stop.0.requested.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Shield {
    fn drop(&mut self) {
        if let Some(stop) = &self.0 {
            stop.0.shields.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_shielded_section_is_told_and_an_unshielded_one_is_not() {
        let stop = Stop::default();
        let told = stop
            .scope(async {
                let shield = shield();
                assert!(!shield.requested());
                let waiting = tokio::spawn({
                    let stop = stop.clone();
                    async move { stop.request() }
                });
                shield.stopped().await;
                waiting.await.unwrap()
            })
            .await;
        assert!(told, "the request saw the shield");
        let unshielded = Stop::default();
        assert!(!unshielded.scope(async { unshielded.request() }).await);
    }

    #[tokio::test]
    async fn outside_an_attempt_a_shield_is_never_told() {
        let shield = shield();
        assert!(!shield.requested());
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), shield.stopped()).await;
        assert!(waited.is_err());
    }
}
