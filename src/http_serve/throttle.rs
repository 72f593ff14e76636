//! Log lines about one kind of thing, at most so many a second: a flood of
//! refused requests or shed connections writes a few lines a second and a
//! summary, not megabytes ([`Throttle`]). And warnings about a failure that
//! keeps coming back, at most one per key and period ([`Quiet`]).

use std::collections::HashMap;
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

/// Keys [`Quiet`] remembers; past it they are forgotten, and the next line
/// of each is a warning again. Keys come from the config (route names), so
/// this is reached only by churning reloads.
const QUIET_KEYS: usize = 1024;

/// At most one warning per key every `every`: the first line of a key is a
/// warning at once, the ones within `every` of it are quieted (logged at
/// debug by the caller) and counted, and the next warning says how many.
#[derive(Debug)]
pub struct Quiet {
    every: Duration,
    /// Per key: when it was last a warning, and how many were quieted since.
    keys: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Quiet {
    pub fn new(every: Duration) -> Quiet {
        Quiet {
            every,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(lines quieted since the last warning)` when this line of `key`
    /// is a warning: its first, or the first after `Quiet::every`.
    pub fn admit(&self, key: &str, now: Instant) -> Option<u64> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((last, quieted)) = keys.get_mut(key) {
            if now < *last + self.every {
                *quieted += 1;
                return None;
            }
            *last = now;
            return Some(std::mem::take(quieted));
        }
        if keys.len() >= QUIET_KEYS {
            keys.clear();
        }
        keys.insert(key.to_owned(), (now, 0));
        Some(0)
    }
}

#[cfg(test)]
#[path = "throttle_tests.rs"]
mod tests;
