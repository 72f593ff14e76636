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
    // Incoming webhooks keep their secret in the path.
    check(
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "https://hooks.slack.com/services/T00000000/B00000000/<redacted>",
    );
    check(
        "https://discord.com/api/webhooks/123456789012345678/abcdefghijklmnopqrstuvwxyz0123456789",
        "https://discord.com/api/webhooks/<redacted>/<redacted>",
    );
    check(
        "https://script.google.com/macros/s/AKfycbx0123456789abcdefghijklmnop/exec",
        "https://script.google.com/macros/s/<redacted>/exec",
    );
    check(
        "http://127.0.0.1:4000/api/v1/orders/",
        "http://127.0.0.1:4000/api/v1/orders/",
    );
}
