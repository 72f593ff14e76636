//! Tests of the demo's report.

use super::*;

#[track_caller]
fn check(cents: Option<i64>, currency: Option<&str>, want: &str) {
    assert_eq!(money(cents, currency), want);
}

#[test]
fn money_reads_like_money() {
    check(Some(5198), Some("usd"), "51.98 USD");
    check(Some(5), Some("eur"), "0.05 EUR");
    check(Some(0), None, "0.00 ");
    check(None, Some("usd"), "?");
}
