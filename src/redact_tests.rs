//! Tests of the URL redactor.

use super::redact_url;

#[test]
fn redact_url_hides_userinfo_and_query() {
    #[track_caller]
    fn check(url: &str, shown: &str) {
        assert_eq!(redact_url(&url::Url::parse(url).unwrap()), shown);
    }
    check(
        "http://127.0.0.1:4000/orders",
        "http://127.0.0.1:4000/orders",
    );
    check(
        "https://user:pw@example.com/hook?token=abc#frag",
        "https://<redacted>@example.com/hook?<redacted>",
    );
    check(
        "https://tok_123@example.com/",
        "https://<redacted>@example.com/",
    );
    check("https://:pw@example.com", "https://<redacted>@example.com/");
    check(
        "http://user:pa ss@host/x?",
        "http://<redacted>@host/x?<redacted>",
    );
    check("http://host/x#token=abc", "http://host/x");
}
