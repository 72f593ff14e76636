//! The wall clock: the one source of "now" as a time of day, and its
//! RFC 3339 form. A leaf: it depends on nothing in the crate.
//!
//! The journal keeps milliseconds since the Unix epoch ([`now_ms`]); Stripe's
//! signatures carry seconds ([`unix_now`]); records carry RFC 3339, UTC,
//! whole seconds ([`rfc3339`]). Durations (timeouts, backoff, ages within a
//! run) use `std::time::Instant`, not this clock. Pure code takes the time
//! as a parameter: only its callers read the clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 on a clock set before it.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, as Stripe signs; 0 on a clock set before
/// it.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A time in Unix milliseconds as RFC 3339, UTC, whole seconds (the
/// fraction dropped): `2026-11-29T01:30:00Z`. A time out of the calendar's
/// range shows as the epoch.
pub fn rfc3339(unix_ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(unix_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

#[cfg(test)]
#[path = "clock_tests.rs"]
mod tests;
