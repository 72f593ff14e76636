//! Tests of the wall clock and its RFC 3339 form.

use super::*;

#[test]
fn rfc3339_is_utc_whole_seconds() {
    assert_eq!(rfc3339(1_795_915_800_123), "2026-11-29T01:30:00Z");
    assert_eq!(rfc3339(1_795_915_800_999), "2026-11-29T01:30:00Z");
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    // Before the epoch, the second it falls in, not the one after.
    assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    assert_eq!(rfc3339(i64::MAX), "1970-01-01T00:00:00Z", "out of range");
}

#[test]
fn the_clocks_agree() {
    let (ms, s) = (now_ms(), unix_now());
    assert!((ms / 1000).abs_diff(s) <= 1, "{ms} ms, {s} s");
    let now = rfc3339(ms);
    assert!(now.len() == 20 && now.ends_with('Z'), "{now}");
}
