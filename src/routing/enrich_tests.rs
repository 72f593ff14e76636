//! Tests of enrichment against the Stripe stand-in: API keys, paging, retries, errors and bounds.

use super::*;
use crate::offline::standin::{Misbehaviour, StripeStandIn, line_item_fixture};

const KEY: &str = "rk_test_51PgafyB7WZ01zgkWstandinKeya1b2";
const SESSION: &str = "cs_test_a1YS1URlnyQCN5fUUduORoQ7Pw41PJqDWkIVQCpJPqkfIhd6tVY8XB1OLY";

#[track_caller]
fn check_key(value: &str, expect: Result<(&str, bool), &str>) {
    match (ApiKey::parse(value), expect) {
        (Ok(key), Ok((hint, live))) => {
            assert_eq!((key.hint().as_str(), key.is_live()), (hint, live));
            assert_eq!(format!("{key:?}"), format!("ApiKey({hint})"));
        }
        (Err(e), Err(fragment)) => {
            let message = e.to_string();
            assert!(message.contains(fragment), "{message}");
            // The value is never echoed (short ones are mere prefixes).
            let value = value.trim();
            assert!(value.len() < 10 || !message.contains(value), "{message}");
        }
        (got, want) => panic!("{value}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn api_keys() {
    check_key(KEY, Ok(("rk_test_…a1b2", false)));
    check_key(
        " sk_live_51Abcdefghijklmnopqrstuvwxyz\n",
        Ok(("sk_live_…wxyz", true)),
    );
    check_key("rk_live_short", Ok(("rk_live_…", true)));
    check_key("", Err("empty"));
    check_key("   ", Err("empty"));
    check_key("pk_test_51Abcdefghijklmnop", Err("publishable"));
    check_key("whsec_abcdefghijklmnop", Err("STRIPE_WEBHOOK_SECRET"));
    check_key("sk_test_", Err("is not an API key"));
    check_key("sk_test_abc def", Err("is not an API key"));
    check_key("Bearer sk_test_abcdef", Err("is not an API key"));
}

fn fast() -> RetryConfig {
    RetryConfig {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(5),
        max_age: Duration::MAX,
    }
}

fn api(base: Url, key: &str, config: &StripeConfig) -> StripeApi {
    let key = ApiKey::parse(key).expect("a valid key");
    StripeApi::new(base, key, config)
        .expect("builds")
        .with_retry(fast())
}

async fn standin(items: usize) -> StripeStandIn {
    let standin = StripeStandIn::start(([127, 0, 0, 1], 0).into(), KEY)
        .await
        .expect("stand-in starts");
    let items = (0..items)
        .map(|i| {
            line_item_fixture(
                &format!("li_{i:04}"),
                &format!("prod_{i:04}"),
                &format!("Product {i}"),
                &format!("price_{i:04}"),
                100 + i as i64,
                1 + (i as i64 % 3),
                "eur",
            )
        })
        .collect();
    standin.add_session(SESSION, items);
    standin
}

#[tokio::test]
async fn fetches_every_page_in_order() {
    let standin = standin(250).await;
    let config = StripeConfig {
        api_version: Some("2026-07-29.dahlia".to_owned()),
        ..StripeConfig::default()
    };
    let items = api(standin.url(), KEY, &config)
        .line_items(SESSION, false)
        .await
        .expect("line items");
    assert_eq!(items.len(), 250);
    assert_eq!(standin.requests(), 3);
    for (i, item) in items.iter().enumerate() {
        let quantity = 1 + (i as i64 % 3);
        let expect = LineItem {
            id: format!("li_{i:04}"),
            product: Some(format!("Product {i}")),
            product_id: Some(format!("prod_{i:04}")),
            price_id: Some(format!("price_{i:04}")),
            description: Some(format!("Product {i}")),
            unit_amount: Some(100 + i as i64),
            currency: Some("eur".to_owned()),
            quantity: Some(quantity),
            amount_subtotal: Some((100 + i as i64) * quantity),
            amount_discount: Some(0),
            amount_tax: Some(0),
            amount_total: Some((100 + i as i64) * quantity),
        };
        assert_eq!(item, &expect);
    }
    let headers = standin.last_headers().expect("requests were seen");
    assert_eq!(headers["stripe-version"], "2026-07-29.dahlia");
    assert_eq!(headers["authorization"], format!("Bearer {KEY}").as_str());
    let agent = headers["user-agent"].to_str().expect("ascii");
    assert_eq!(agent, concat!("stripe-router/", env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn no_version_header_unless_pinned() {
    let standin = standin(1).await;
    let api = api(standin.url(), KEY, &StripeConfig::default());
    assert_eq!(
        api.line_items(SESSION, false)
            .await
            .expect("line items")
            .len(),
        1
    );
    let headers = standin.last_headers().expect("a request was seen");
    assert!(headers.get("stripe-version").is_none());
}

/// Injects `fault`, fetches one page, and checks the outcome and how many
/// requests it took.
#[track_caller]
fn check_retries(
    fault: (u32, u16, Option<bool>),
    expect: Result<(), (EnrichErrorKind, bool, &'static str)>,
    requests: u64,
) -> impl Future<Output = ()> {
    let caller = std::panic::Location::caller();
    async move {
        let standin = standin(3).await;
        standin.fail_next_with(fault.0, fault.1, fault.2);
        let result = api(standin.url(), KEY, &StripeConfig::default())
            .line_items(SESSION, false)
            .await;
        match (result, expect) {
            (Ok(items), Ok(())) => assert_eq!(items.len(), 3, "{caller}"),
            (Err(e), Err((kind, retryable, fragment))) => {
                assert_eq!((e.kind, e.retryable), (kind, retryable), "{caller}: {e}");
                assert!(e.message.contains(fragment), "{caller}: {e}");
            }
            (got, want) => panic!("{caller}: got {got:?}, want {want:?}"),
        }
        assert_eq!(standin.requests(), requests, "{caller}: requests");
    }
}

#[tokio::test]
async fn retries_transient_failures_only() {
    use EnrichErrorKind::*;
    check_retries((2, 500, None), Ok(()), 3).await;
    check_retries((1, 429, None), Ok(()), 2).await;
    check_retries((1, 409, None), Ok(()), 2).await;
    check_retries((1, 400, Some(true)), Ok(()), 2).await;
    check_retries((1, 400, None), Err((Invalid, false, "(400)")), 1).await;
    check_retries((1, 503, Some(false)), Err((Unavailable, false, "503")), 1).await;
    check_retries(
        (9, 502, None),
        Err((
            Unavailable,
            true,
            "gave up after 4 attempts: stripe answered 502",
        )),
        4,
    )
    .await;
    check_retries(
        (9, 429, None),
        Err((RateLimited, true, "(stripe: Too many")),
        4,
    )
    .await;
}

#[tokio::test]
async fn auth_and_missing_session_errors() {
    let standin = standin(1).await;
    let other = "sk_test_51OtherAccountKeyzz9z";
    let err = api(standin.url(), other, &StripeConfig::default())
        .line_items(SESSION, false)
        .await
        .expect_err("wrong key");
    assert_eq!(
        (err.kind, err.retryable),
        (EnrichErrorKind::Unauthorized, false)
    );
    assert!(err.message.contains("`sk_test_…zz9z`"), "{err}");
    assert!(
        err.message.contains("read access to Checkout Sessions"),
        "{err}"
    );
    assert!(!err.message.contains(other), "{err}");
    assert_eq!(standin.requests(), 1);

    let api = api(standin.url(), KEY, &StripeConfig::default());
    let err = api
        .line_items("cs_live_nope", true)
        .await
        .expect_err("no such session");
    assert_eq!(
        (err.kind, err.retryable),
        (EnrichErrorKind::NotFound, false)
    );
    assert_eq!(
        err.message,
        "checkout session `cs_live_nope` does not exist in this account/mode (test vs live): \
             the key `rk_test_…a1b2` is a test key but the event is livemode \
             (stripe: No such checkout.session: 'cs_live_nope')"
    );
    let err = api
        .line_items("cs_test_nope", false)
        .await
        .expect_err("no such session");
    assert!(!err.message.contains("livemode"), "{err}");

    let err = api
        .line_items("../v1/charges", false)
        .await
        .expect_err("not an id");
    assert_eq!((err.kind, err.retryable), (EnrichErrorKind::Invalid, false));
    assert_eq!(standin.requests(), 3, "an invalid id is never sent");
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let port = listener.local_addr().expect("has an address").port();
    drop(listener);
    let base = Url::parse(&format!("http://127.0.0.1:{port}")).expect("a URL");
    let config = StripeConfig {
        max_attempts: Some(2),
        ..StripeConfig::default()
    };
    let err = api(base, KEY, &config)
        .line_items(SESSION, false)
        .await
        .expect_err("refused");
    assert_eq!(
        (err.kind, err.retryable),
        (EnrichErrorKind::Unavailable, true)
    );
    assert!(
        err.message
            .contains("gave up after 2 attempts: cannot connect"),
        "{err}"
    );
}

/// Fetches `SESSION` under `config` and checks that a bound stopped it,
/// after `requests` requests, with a message naming `key`.
#[track_caller]
fn check_bound(
    standin: &StripeStandIn,
    config: StripeConfig,
    key: &'static str,
    requests: u64,
) -> impl Future<Output = ()> {
    let caller = std::panic::Location::caller();
    let before = standin.requests();
    let api = api(standin.url(), KEY, &config);
    async move {
        let err = api
            .line_items(SESSION, false)
            .await
            .expect_err("a bound stops it");
        assert_eq!(
            (err.kind, err.retryable),
            (EnrichErrorKind::OverLimit, false),
            "{caller}: {err}"
        );
        assert!(err.message.contains(key), "{caller}: {err}");
        assert!(err.message.contains(SESSION), "{caller}: {err}");
        assert_eq!(standin.requests() - before, requests, "{caller}: requests");
    }
}

#[tokio::test]
async fn pages_items_and_bytes_are_bounded() {
    let standin = standin(12).await;
    let items = |n| StripeConfig {
        max_line_items: n,
        ..StripeConfig::default()
    };
    check_bound(&standin, items(11), "stripe.max_line_items (11)", 1).await;
    let twelve = api(standin.url(), KEY, &items(12));
    let ok = twelve.line_items(SESSION, false).await;
    assert_eq!(ok.expect("12 items are allowed").len(), 12);

    standin.misbehave(SESSION, Misbehaviour::EndlessPages { per_page: 1 });
    let pages = StripeConfig {
        max_pages: 3,
        ..StripeConfig::default()
    };
    check_bound(&standin, pages, "stripe.max_pages (3)", 3).await;
    standin.misbehave(SESSION, Misbehaviour::EndlessPages { per_page: 100 });
    check_bound(&standin, items(250), "stripe.max_line_items (250)", 3).await;

    let bytes = StripeConfig {
        max_response: 64 * 1024,
        ..StripeConfig::default()
    };
    for announced in [true, false] {
        let how = Misbehaviour::Huge {
            bytes: 10 * 1024 * 1024,
            announced,
        };
        standin.misbehave(SESSION, how);
        check_bound(&standin, bytes.clone(), "stripe.max_response (64KiB)", 1).await;
    }
    // All pages together: 3 pages of 100 items are past 64 KiB.
    standin.misbehave(SESSION, Misbehaviour::EndlessPages { per_page: 100 });
    let bytes = StripeConfig {
        max_response: 256 * 1024,
        ..StripeConfig::default()
    };
    check_bound(&standin, bytes, "stripe.max_response (256KiB)", 2).await;
}

#[test]
fn base_must_be_http() {
    let key = ApiKey::parse(KEY).expect("valid");
    let base = Url::parse("ftp://example.com").expect("a URL");
    let err = StripeApi::new(base, key, &StripeConfig::default()).expect_err("not http");
    assert!(err.to_string().contains("http or https"), "{err}");
}

#[test]
fn warnings_about_failing_requests_are_one_per_period_with_a_count() {
    let quiet = Quiet::new(WARN_EVERY);
    let start = tokio::time::Instant::now();
    assert_eq!(quiet.admit("", start), Some(0));
    assert_eq!(quiet.admit("", start + Duration::from_secs(1)), None);
    assert_eq!(quiet.admit("", start + Duration::from_secs(29)), None);
    assert_eq!(quiet.admit("", start + WARN_EVERY), Some(2));
    assert_eq!(quiet.admit("", start + WARN_EVERY), None);
}

#[tokio::test]
async fn the_answers_every_pass_reads_at_once_are_bounded() {
    let standin = standin(3).await;
    let api = api(standin.url(), KEY, &StripeConfig::default());
    let limit = usize::try_from(ANSWER_BYTES).unwrap();
    assert_eq!(api.answers.used(), 0);
    // Other passes hold all but 1 KiB; the page of 3 items is larger.
    let others = api.answers.take(limit - 1024).expect("room");
    let before = standin.requests();
    let err = api
        .line_items(SESSION, false)
        .await
        .expect_err("no room for the page");
    assert_eq!(
        (err.kind, err.retryable),
        (EnrichErrorKind::Unavailable, true),
        "{err}"
    );
    assert!(err.message.contains("all routing passes"), "{err}");
    assert_eq!(
        standin.requests() - before,
        u64::from(DEFAULT_MAX_ATTEMPTS),
        "each try waits its turn"
    );
    assert_eq!(
        api.answers.used(),
        limit - 1024,
        "a refused answer holds nothing"
    );
    drop(others);
    let items = api.line_items(SESSION, false).await.expect("read");
    assert_eq!(items.len(), 3);
    assert_eq!(api.answers.used(), 0, "a page read gives its bytes back");

    // An answer with no length is counted as it is read: it stops at the
    // bound, partway.
    standin.misbehave(
        SESSION,
        Misbehaviour::Huge {
            bytes: 256 * 1024,
            announced: false,
        },
    );
    let others = api.answers.take(limit - 64 * 1024).expect("room");
    let err = api
        .line_items(SESSION, false)
        .await
        .expect_err("no room for the page");
    assert!(
        err.retryable && err.message.contains("all routing passes"),
        "{err}"
    );
    assert_eq!(api.answers.used(), limit - 64 * 1024);
    drop(others);
    let items = api.line_items(SESSION, false).await;
    assert_eq!(items.map(|items| items.len()).ok(), Some(1), "read");
    assert_eq!(api.answers.used(), 0);
}

#[test]
fn one_session_s_largest_answer_always_fits_the_answers_bound() {
    assert_eq!(answer_bytes(ANSWER_BYTES, 8 << 20), 64 << 20);
    assert_eq!(answer_bytes(ANSWER_BYTES, 100 << 20), 100 << 20);
}
