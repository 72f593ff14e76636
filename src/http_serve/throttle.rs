//! Log lines about one kind of thing, at most so many a second: a flood of
//! refused requests or shed connections writes a few lines a second and a
//! summary, not megabytes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Log lines a second about refused requests and connections (bad
/// signatures, bodies too large or too slow, load shed): enough to see what
/// is going on, while a flood of forged requests writes a few lines a
/// second, not megabytes.
pub const REFUSAL_LOGS_PER_SEC: u32 = 10;

/// At most `per_second` log lines a second about one kind of thing; the
/// rest are counted and summed up in one line once the second is over.
#[derive(Debug)]
pub struct Throttle {
    what: &'static str,
    per_second: u32,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Option<Instant>,
    logged: u32,
    suppressed: u64,
    summary_due: bool,
}

/// What [`Window::admit`] decided.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Log,
    Suppress,
    /// Suppress, and write the summary at this time.
    SuppressAndSum(Instant),
}

const SECOND: Duration = Duration::from_secs(1);

impl Window {
    fn admit(&mut self, now: Instant, per_second: u32) -> Verdict {
        let start = match self.start {
            Some(start) if now < start + SECOND => start,
            _ => {
                self.start = Some(now);
                self.logged = 0;
                now
            }
        };
        if self.logged < per_second {
            self.logged += 1;
            return Verdict::Log;
        }
        self.suppressed += 1;
        if self.summary_due {
            return Verdict::Suppress;
        }
        self.summary_due = true;
        Verdict::SuppressAndSum(start + SECOND)
    }

    fn take(&mut self) -> u64 {
        self.summary_due = false;
        std::mem::take(&mut self.suppressed)
    }
}

impl Throttle {
    /// `what` names the lines in the summary, e.g. `refused requests`.
    pub fn new(what: &'static str, per_second: u32) -> Arc<Throttle> {
        Arc::new(Throttle {
            what,
            per_second,
            window: Mutex::new(Window {
                start: None,
                logged: 0,
                suppressed: 0,
                summary_due: false,
            }),
        })
    }

    /// Whether to write this line.
    pub fn admit(self: &Arc<Self>) -> bool {
        let verdict = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(Instant::now(), self.per_second);
        match verdict {
            Verdict::Log => true,
            Verdict::Suppress => false,
            Verdict::SuppressAndSum(at) => {
                let throttle = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    throttle.summarize();
                });
                false
            }
        }
    }

    fn summarize(&self) {
        let suppressed = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if suppressed > 0 {
            tracing::warn!(
                suppressed,
                "{}: {suppressed} more not logged (at most {} lines a second)",
                self.what,
                self.per_second
            );
        }
    }
}

#[cfg(test)]
#[path = "throttle_tests.rs"]
mod tests;
