//! Tests of the log filter and format.

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

#[test]
fn log_formats_are_text_or_json_and_others_say_so() {
    use super::LogFormat;
    assert_eq!("json".parse(), Ok(LogFormat::Json));
    assert_eq!(" JSON ".parse(), Ok(LogFormat::Json));
    assert_eq!("text".parse(), Ok(LogFormat::Text));
    let error = "xml".parse::<LogFormat>().unwrap_err();
    assert!(
        error.contains("`xml`") && error.contains("`json`"),
        "{error}"
    );
    assert!(error.contains("STRIPE_ROUTER_LOG_FORMAT"), "{error}");
}
