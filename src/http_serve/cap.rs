//! A listener's connection cap ([`super::Cap`]): at most so many
//! connections at once; at the cap, the connection that has waited longest
//! on its client makes room, or the new one is answered `503` with
//! `Retry-After` and closed at once ([`shed`]), never left in the listen
//! backlog, so the connections already admitted keep being served.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Cap;
use super::throttle::{REFUSAL_LOGS_PER_SEC, Throttle};

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

/// A listener's [`Cap`] at work: its slots, the shed connections still
/// lingering, and the log lines about both.
pub(super) struct Gate {
    cap: Cap,
    slots: Arc<Slots>,
    lingering: Arc<Semaphore>,
    sheds: Arc<Throttle>,
    evictions: Arc<Throttle>,
}

impl Gate {
    pub(super) fn new(cap: Cap) -> Gate {
        Gate {
            cap,
            slots: Slots::new(cap.max_connections, cap.evict_after),
            lingering: Arc::new(Semaphore::new(SHED_LINGERING)),
            sheds: Throttle::new("connections shed", REFUSAL_LOGS_PER_SEC),
            evictions: Throttle::new("stalled connections closed", REFUSAL_LOGS_PER_SEC),
        }
    }

    /// A slot for the new connection from `peer`, or `None` when it was
    /// shed (answered `503` and closed).
    pub(super) fn admit(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        listener: &'static str,
    ) -> Option<(TcpStream, Slot)> {
        let max_connections = self.cap.max_connections;
        match self.slots.admit() {
            Admission::Admitted(slot) => Some((stream, slot)),
            Admission::Replaced(slot) => {
                if self.evictions.admit() {
                    tracing::warn!(%peer, listener, max_connections, "connection limit reached; closed the connection that waited longest on its client to make room");
                }
                Some((stream, slot))
            }
            Admission::Full => {
                if self.sheds.admit() {
                    tracing::warn!(%peer, listener, max_connections, "connection limit reached; answered 503 with Retry-After");
                }
                shed(stream, &self.lingering);
                None
            }
        }
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

#[cfg(test)]
#[path = "cap_tests.rs"]
mod tests;
