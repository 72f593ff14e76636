//! The one retry policy: exponential backoff with jitter, shared by sink
//! deliveries, routing passes that failed on a transient error, and the
//! Stripe API client's requests. Each caller picks its [`RetryConfig`]
//! (the sink's `retry:` keys, [`ROUTING_RETRY`], [`STRIPE_API_RETRY`]);
//! how long to wait before the next attempt is decided here only.
//!
//! A leaf beside the units it reads: sinks, routing and delivery use it
//! without depending on each other.

use std::time::Duration;

use rand::Rng;

use serde::Deserialize;

use crate::units::duration;

/// `retry: { initial, max, max_age }` of a sink: exponential backoff with
/// jitter from `initial` up to `max` between attempts; a delivery still
/// failing `max_age` after its record was built becomes a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_initial", with = "duration")]
    pub initial: Duration,
    #[serde(default = "default_max", with = "duration")]
    pub max: Duration,
    #[serde(default = "default_max_age", with = "duration")]
    pub max_age: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial: default_initial(),
            max: default_max(),
            max_age: default_max_age(),
        }
    }
}

fn default_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_max() -> Duration {
    Duration::from_secs(600)
}
/// Stripe's own retry window.
fn default_max_age() -> Duration {
    Duration::from_secs(72 * 3600)
}

/// Routing passes that failed on a transient error (the Stripe API down,
/// rate limited): Stripe's own schedule is hours; ours is shorter but gives
/// up only after Stripe's 72 h window.
pub const ROUTING_RETRY: RetryConfig = RetryConfig {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(600),
    max_age: Duration::from_secs(72 * 3600),
};

/// One Stripe API request within a routing pass: a few quick tries
/// (`stripe.max_attempts`), after which the pass fails and
/// [`ROUTING_RETRY`] takes over. `max_age` is not used: the attempt count
/// bounds it.
pub const STRIPE_API_RETRY: RetryConfig = RetryConfig {
    initial: Duration::from_millis(250),
    max: Duration::from_secs(5),
    max_age: Duration::MAX,
};

/// How long to wait after `attempts` failed attempts (0 after the first):
/// a random delay up to `initial * 2^attempts`, capped at `max`, never below
/// a tenth of that nominal delay (full jitter spreads a crowd of retries;
/// the floor keeps one from hammering).
pub fn backoff(policy: &RetryConfig, attempts: u32) -> Duration {
    let nominal = policy
        .initial
        .saturating_mul(2u32.saturating_pow(attempts.min(30)))
        .min(policy.max);
    let floor = nominal / 10;
    let spread = u64::try_from(nominal.saturating_sub(floor).as_millis()).unwrap_or(u64::MAX);
    floor + Duration::from_millis(rand::rng().random_range(0..=spread))
}

/// [`backoff`], unless the server said when to come back (`Retry-After`),
/// which is honoured up to the policy's `max`.
pub fn backoff_or_after(
    policy: &RetryConfig,
    attempts: u32,
    retry_after: Option<Duration>,
) -> Duration {
    match retry_after {
        Some(after) => after.min(policy.max),
        None => backoff(policy, attempts),
    }
}

/// The time in Unix milliseconds of the next attempt after `attempts`
/// failed ones, from `now_ms`.
pub fn next_attempt_ms(policy: &RetryConfig, attempts: u32, now_ms: i64) -> i64 {
    now_ms.saturating_add(i64::try_from(backoff(policy, attempts).as_millis()).unwrap_or(i64::MAX))
}

/// Whether something first tried at `since_ms` has been failing for longer
/// than the policy's `max_age` at `now_ms`.
pub fn expired(policy: &RetryConfig, since_ms: i64, now_ms: i64) -> bool {
    let age = Duration::from_millis(u64::try_from(now_ms.saturating_sub(since_ms)).unwrap_or(0));
    age > policy.max_age
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;
