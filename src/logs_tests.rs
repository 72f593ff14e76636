//! Tests of the log filter.

use super::filter;

#[track_caller]
fn check(rust_log: Option<&str>, expected: &[&str], absent: &[&str]) {
    let filter = filter(rust_log.map(str::to_owned), "info").to_string();
    for directive in expected {
        assert!(
            filter.contains(directive),
            "`{directive}` not in `{filter}`"
        );
    }
    for directive in absent {
        assert!(!filter.contains(directive), "`{directive}` in `{filter}`");
    }
}

#[test]
fn the_file_watcher_logs_below_trace_unless_named() {
    check(Some("trace"), &["trace", "notify=info"], &[]);
    check(Some("info,stripe_router=debug"), &["notify=info"], &[]);
    check(
        Some("trace,notify=trace"),
        &["notify=trace"],
        &["notify=info"],
    );
    check(None, &["info"], &["notify"]);
    check(Some("not a [filter"), &["info"], &["notify"]);
}
