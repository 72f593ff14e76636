//! The door's bounds (SPEC §9): open files, connections, bytes of request
//! bodies held at once, and how many log lines refused requests may write.
//!
//! Past a bound the server sheds load with `503` and `Retry-After` (Stripe
//! retries) instead of queueing: a connection past the cap is answered and
//! closed at once, never left in the listen backlog, so the connections
//! already admitted keep being served.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Open files kept for everything but connections: the journal (a database,
/// its WAL and shared memory, for each of its three connections), file
/// sinks, HTTP sinks' and the Stripe API client's connections, the config
/// watcher, the runtime. Generous: a file that cannot be opened is an error
/// on some event, a connection refused is only a retry.
pub const FD_RESERVE: u64 = 128;

/// Connections the admin listener holds at once: an operator, a dashboard,
/// a scraper. Its own cap, so a flood on the webhook port never locks the
/// operator out.
pub const ADMIN_MAX_CONNECTIONS: usize = 16;

/// Shed connections waiting for their client to read the `503` before they
/// are closed; past it, a shed connection is answered and closed at once.
pub const SHED_LINGERING: usize = 64;

/// How long a shed connection waits for its client to finish sending, so
/// that closing it does not reset the connection before the `503` is read.
const SHED_LINGER: Duration = Duration::from_millis(500);

/// `Retry-After` on a `503`: connections and body memory free up as
/// requests finish (milliseconds) or as stalled clients reach
/// `server.read_timeout`. Stripe keeps its own retry schedule anyway.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Bytes hyper buffers per connection while reading a request's headers
/// (and its body, chunk by chunk). Stripe's headers are well under 2 KiB;
/// hyper's default (about 400 KiB) would let 1,024 connections hold
/// 400 MiB of headers that never end.
pub const READ_BUFFER: usize = 64 * 1024;

/// The connections one listener holds: at most `max`. When a new one
/// arrives at the cap, the connection that has waited longest on its client
/// (for a request's headers or body, or idle between requests) is closed to
/// make room, provided it has waited at least `evict_after`; otherwise the
/// new one is shed. Real clients send a whole request in milliseconds, so
/// under a flood of stalled connections a real event still gets in, instead
/// of waiting until the stalled ones reach `server.read_timeout`.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    evict_after: Duration,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    next: u64,
    by_id: std::collections::HashMap<u64, (Arc<Activity>, CancellationToken)>,
}

/// What one admitted connection is doing, as far as eviction cares.
#[derive(Debug)]
pub struct Activity {
    /// Since when it has been waiting on its client.
    since: Mutex<Instant>,
    /// A whole request is in hand and being answered: never evicted then.
    working: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            since: Mutex::new(Instant::now()),
            working: AtomicBool::new(false),
        }
    }

    /// Its client has what it asked for; from now on it is waited on.
    pub fn answered(&self) {
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// A whole request is in hand until the guard is dropped.
    pub fn working(self: &Arc<Self>) -> Working {
        self.working.store(true, Ordering::Relaxed);
        Working(self.clone())
    }

    fn waited(&self, now: Instant) -> Option<Duration> {
        if self.working.load(Ordering::Relaxed) {
            return None;
        }
        let since = *self.since.lock().unwrap_or_else(|e| e.into_inner());
        Some(now.saturating_duration_since(since))
    }
}

/// See [`Activity::working`].
#[derive(Debug)]
pub struct Working(Arc<Activity>);

impl Drop for Working {
    fn drop(&mut self) {
        self.0.working.store(false, Ordering::Relaxed);
        self.0.answered();
    }
}

/// How a new connection was admitted.
#[derive(Debug)]
pub enum Admission {
    Admitted(Slot),
    /// Admitted in the place of a stalled connection, which is being closed.
    Replaced(Slot),
    Full,
}

impl Slots {
    pub fn new(max: usize, evict_after: Duration) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            evict_after,
            held: Mutex::new(Held::default()),
        })
    }

    pub fn admit(self: &Arc<Self>) -> Admission {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut replaced = false;
        if held.by_id.len() >= self.max {
            let now = Instant::now();
            let stalled = held
                .by_id
                .iter()
                .filter_map(|(id, (activity, _))| Some((*id, activity.waited(now)?)))
                .filter(|(_, waited)| *waited >= self.evict_after)
                .max_by_key(|(_, waited)| *waited)
                .map(|(id, _)| id);
            let Some((_, evict)) = stalled.and_then(|id| held.by_id.remove(&id)) else {
                return Admission::Full;
            };
            evict.cancel();
            replaced = true;
        }
        let id = held.next;
        held.next += 1;
        let activity = Arc::new(Activity::new());
        let evicted = CancellationToken::new();
        held.by_id.insert(id, (activity.clone(), evicted.clone()));
        let slot = Slot {
            id,
            slots: self.clone(),
            activity,
            evicted,
        };
        if replaced {
            Admission::Replaced(slot)
        } else {
            Admission::Admitted(slot)
        }
    }
}

/// One admitted connection's place; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    slots: Arc<Slots>,
    pub activity: Arc<Activity>,
    /// Cancelled when the connection is closed to make room for a new one.
    pub evicted: CancellationToken,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        held.by_id.remove(&self.id);
    }
}

/// Body memory is counted in KiB so that a `u32` reservation covers any
/// `server.max_body` (tokio's semaphores take `u32` per acquisition).
const UNIT: u64 = 1024;

/// Raises the soft open-file limit to the hard limit (SPEC §9); returns the
/// soft limit now in force, or `None` when there is none.
pub fn raise_open_files() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current?;
    let Some(hard) = limit.maximum.filter(|hard| *hard > soft) else {
        return Some(soft);
    };
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::debug!(from = soft, to = hard, "raised the open-file limit");
            Some(hard)
        }
        Err(e) => {
            tracing::warn!(error = %e, limit = soft, "cannot raise the open-file limit to its hard limit");
            Some(soft)
        }
    }
}

/// The webhook port's connection cap: `server.max_connections`, lowered so
/// that connections can never use up the open files the router needs
/// (`open_files` less [`FD_RESERVE`], the admin listener's and the shed
/// connections'). `Err` carries the limit when it leaves no room at all.
pub fn connection_cap(configured: usize, open_files: Option<u64>) -> Result<usize, u64> {
    let Some(limit) = open_files else {
        return Ok(configured);
    };
    let kept = FD_RESERVE + (ADMIN_MAX_CONNECTIONS + SHED_LINGERING) as u64;
    let room = usize::try_from(limit.saturating_sub(kept)).unwrap_or(usize::MAX);
    if room == 0 {
        return Err(limit);
    }
    if configured > room {
        tracing::warn!(
            max_connections = configured,
            capped_to = room,
            open_files = limit,
            "server.max_connections is more than the open-file limit allows; raise the hard limit (`ulimit -Hn`, systemd's LimitNOFILE) to serve that many"
        );
    }
    Ok(configured.min(room))
}

/// Bytes of request bodies held in memory at once, over all connections
/// (`server.body_buffer`).
#[derive(Debug)]
pub struct BodyBuffer {
    units: Arc<Semaphore>,
}

impl BodyBuffer {
    pub fn new(bytes: u64) -> BodyBuffer {
        let units = usize::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        BodyBuffer {
            units: Arc::new(Semaphore::new(units)),
        }
    }

    /// Reserves room for `bytes` now, or `None` when the buffer is full.
    pub fn reserve(&self, bytes: u64) -> Option<Reservation> {
        let mut reservation = Reservation {
            units: self.units.clone(),
            held: 0,
        };
        reservation.grow_to(bytes).then_some(reservation)
    }
}

/// Room in the [`BodyBuffer`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    units: Arc<Semaphore>,
    held: u32,
}

impl Reservation {
    /// Extends the reservation to cover `bytes` in all; false when the
    /// buffer has no room for the difference.
    pub fn grow_to(&mut self, bytes: u64) -> bool {
        let Ok(wanted) = u32::try_from(bytes.div_ceil(UNIT)) else {
            return false;
        };
        if wanted <= self.held {
            return true;
        }
        match self.units.try_acquire_many(wanted - self.held) {
            Ok(permit) => {
                // Given back in `Drop`, all at once.
                permit.forget();
                self.held = wanted;
                true
            }
            Err(_) => false,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.units.add_permits(self.held as usize);
    }
}

/// The answer to a connection past the cap, written without reading the
/// request.
fn shed_answer() -> &'static [u8] {
    static ANSWER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ANSWER.get_or_init(|| {
        let body = r#"{"message":"Too many connections: retry later"}"#;
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             retry-after: {RETRY_AFTER_SECS}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
}

/// Answers `stream` with `503` and `Retry-After`, then closes it: after a
/// short linger when `lingering` has room (so the client reads the answer
/// rather than a reset), at once otherwise.
pub fn shed(stream: TcpStream, lingering: &Arc<Semaphore>) {
    // A fresh socket's send buffer is empty: the short answer goes out whole.
    let _ = stream.try_write(shed_answer());
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        drain_ready(&stream);
        return;
    };
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(SHED_LINGER, async {
            while let Ok(1..) = stream.read(&mut sink).await {}
        })
        .await;
        drop(permit);
    });
}

/// Reads what the client already sent, so that closing sends a FIN after
/// the answer rather than a reset that may discard it.
fn drain_ready(stream: &TcpStream) {
    let mut sink = [0u8; 4096];
    while let Ok(1..) = stream.try_read(&mut sink) {}
}

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
#[path = "limits_tests.rs"]
mod tests;
