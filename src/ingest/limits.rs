//! The door's bounds (SPEC §9): open files, the webhook port's connection
//! cap, hyper's read buffer and the bytes of request bodies held at once.
//!
//! Past a bound the server sheds load with `503` and `Retry-After` (Stripe
//! retries) instead of queueing. The cap itself, the shedding and the log
//! throttle are enforced by the shared accept loop ([`crate::http_serve`]),
//! with the figures decided here.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::http_serve::cap::SHED_LINGERING;

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

/// Bytes hyper buffers per connection while reading a request's headers
/// (and its body, chunk by chunk). Stripe's headers are well under 2 KiB;
/// hyper's default (about 400 KiB) would let 1,024 connections hold
/// 400 MiB of headers that never end.
pub const READ_BUFFER: usize = 64 * 1024;

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

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
