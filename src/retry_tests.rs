//! Tests of the retry policy: capped jittered backoff, Retry-After and expiry.

use std::collections::HashSet;
use std::time::Duration;

use super::*;

#[test]
fn backoff_grows_with_jitter_and_stays_capped() {
    let policy = RetryConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
        max_age: Duration::from_secs(60),
    };
    for (attempts, nominal) in [
        (0, 100),
        (1, 200),
        (3, 800),
        (4, 1600),
        (5, 2000),
        (40, 2000),
    ] {
        let nominal = Duration::from_millis(nominal);
        for _ in 0..50 {
            let delay = backoff(&policy, attempts);
            assert!(
                delay >= nominal / 10 && delay <= nominal,
                "{attempts}: {delay:?} vs {nominal:?}"
            );
        }
    }
    let spread: HashSet<Duration> = (0..50).map(|_| backoff(&policy, 4)).collect();
    assert!(spread.len() > 1, "jittered");
}

#[test]
fn stripe_api_backoff_stays_within_its_bounds_and_honours_retry_after() {
    for attempts in 0..30 {
        let ceiling =
            (Duration::from_millis(250) * 2u32.pow(attempts.min(10))).min(Duration::from_secs(5));
        let delay = backoff_or_after(&STRIPE_API_RETRY, attempts, None);
        assert!(delay <= ceiling, "attempts {attempts}");
    }
    let after = Some(Duration::from_secs(2));
    assert_eq!(
        backoff_or_after(&STRIPE_API_RETRY, 0, after),
        Duration::from_secs(2)
    );
    assert_eq!(
        backoff_or_after(&STRIPE_API_RETRY, 0, Some(Duration::from_secs(60))),
        Duration::from_secs(5)
    );
}

#[test]
fn expiry_counts_from_the_first_attempt() {
    let policy = RetryConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
        max_age: Duration::from_secs(60),
    };
    assert!(!expired(&policy, 1_000, 61_000));
    assert!(expired(&policy, 1_000, 61_001));
    // A clock that went backwards is not an expiry.
    assert!(!expired(&policy, 5_000, 1_000));
    let next = next_attempt_ms(&policy, 0, 1_000);
    assert!((1_010..=1_100).contains(&next), "{next}");
}
