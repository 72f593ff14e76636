//! Unit tests of the `http` sink: signing, build checks, answers classified, bounded waits.

use super::*;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::http_serve;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

#[test]
fn signs_the_standard_webhooks_vector() {
    let key = SigningKey::parse(SECRET).unwrap();
    let signature = key.sign(
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        1649367553,
        br#"{"email":"test@example.com","username":"test_user"}"#,
    );
    assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
}

#[track_caller]
fn check_secret(secret: &str, valid: bool) {
    assert_eq!(SigningKey::parse(secret).is_ok(), valid, "{secret}");
}

#[test]
fn parses_only_whsec_base64_secrets() {
    check_secret(SECRET, true);
    check_secret("whsec_MTIzNDU2Nzg5MDEyMzQ1Ng==", true);
    check_secret("whsec_MTIzNDU2Nzg5MDEyMzQ1Ng", true);
    check_secret("C2FVsBQIhrscChlQIMV+b5sSYspob7oD", false);
    check_secret("whsec_", false);
    check_secret("whsec_not base64!", false);
    check_secret("WHSEC_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", false);
}

fn config(url: &str) -> HttpConfig {
    HttpConfig {
        url: Url::parse(url).unwrap(),
        headers: BTreeMap::new(),
        signing_secret: None,
        timeout: None,
        body: None,
        content_type: None,
        method: Method::Post,
    }
}

#[track_caller]
fn check_build_error(config: HttpConfig, expected: &str) {
    let err = HttpSink::build(&config).expect_err("the build fails");
    assert!(
        err.0.contains(expected),
        "`{}` does not contain `{expected}`",
        err.0
    );
    assert!(!err.0.contains("s3cr3t"), "{}", err.0);
}

#[test]
fn build_rejects_bad_settings() {
    let base = || config("https://example.com/hook");
    let with_header = |name: &str, value: &str| {
        let mut c = base();
        c.headers.insert(name.into(), value.into());
        c
    };
    let with_secret = HttpConfig {
        signing_secret: Some("s3cr3t".into()),
        ..base()
    };
    let with_zero_timeout = HttpConfig {
        timeout: Some(Duration::ZERO),
        ..base()
    };
    let table = [
        (
            config("ftp://example.com/x"),
            "scheme `ftp` is not supported",
        ),
        (
            with_secret,
            "must be `whsec_` followed by a non-empty base64 key",
        ),
        (
            with_header("bad name", "s3cr3t"),
            "header name `bad name` is not a valid",
        ),
        (
            with_header("x-token", "s3cr3t\n"),
            "the value of header `x-token` is not a valid",
        ),
        (
            with_header("Webhook-Signature", "s3cr3t"),
            "`Webhook-Signature` is set by the sink",
        ),
        (with_zero_timeout, "timeout must be more than zero"),
    ];
    for (config, expected) in table {
        check_build_error(config, expected);
    }
}

#[test]
fn debug_hides_secrets() {
    let mut c = config("https://user:s3cr3t@example.com/hook?token=s3cr3t");
    c.signing_secret = Some(SECRET.into());
    c.headers
        .insert("authorization".into(), "Bearer s3cr3t".into());
    let sink = HttpSink::build(&c).unwrap();
    for shown in [format!("{c:?}"), format!("{sink:?}")] {
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("C2FVsBQIhrsc"), "{shown}");
        assert!(shown.contains("authorization"), "{shown}");
        assert!(shown.contains("example.com/hook"), "{shown}");
    }
}

struct Received {
    method: hyper::Method,
    headers: hyper::HeaderMap,
    body: Bytes,
}

/// A consumer stand-in that records requests and answers `status` with
/// `reply`, until the test's runtime ends.
async fn serve(status: u16, reply: &'static str) -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    let handler = move |request: hyper::Request<Incoming>, _peer| {
        let log = Arc::clone(&log);
        async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            log.lock().unwrap().push(Received {
                method: parts.method,
                headers: parts.headers,
                body,
            });
            let mut response = hyper::Response::new(Full::new(Bytes::from(reply)));
            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
            response
        }
    };
    tokio::spawn(http_serve::serve(
        listener,
        http_serve::Options::new("test consumer"),
        handler,
        std::future::pending(),
    ));
    (addr, received)
}

fn record() -> Encoded {
    Encoded {
        id: "evt_1NG8Du2eZvKYlo2CUI79vXWy:paid-orders".into(),
        body: Bytes::from_static(br#"{"order":{"id":"cs_test_a1"},"amount":2000}"#),
    }
}

#[tokio::test]
async fn posts_signed_json_with_all_headers() {
    let (addr, received) = serve(200, "ok").await;
    let mut c = config(&format!("http://{addr}/hook"));
    c.signing_secret = Some(SECRET.into());
    c.headers
        .insert("Authorization".into(), "Bearer s3cr3t".into());
    c.headers.insert("x-tenant".into(), "acme".into());
    let sink = HttpSink::build(&c).unwrap();
    let record = record();
    sink.deliver(&record).await.unwrap();

    let received = received.lock().unwrap();
    let [request] = received.as_slice() else {
        panic!("one request, got {}", received.len())
    };
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .to_str()
            .unwrap()
    };
    assert_eq!(request.body, record.body);
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(
        header("user-agent"),
        format!("stripe-router/{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(header("webhook-id"), record.id);
    assert_eq!(header("authorization"), "Bearer s3cr3t");
    assert_eq!(header("x-tenant"), "acme");
    let timestamp: u64 = header("webhook-timestamp").parse().unwrap();
    assert!(unix_now().abs_diff(timestamp) < 60, "timestamp {timestamp}");
    let expected = SigningKey::parse(SECRET)
        .unwrap()
        .sign(&record.id, timestamp, &record.body);
    assert_eq!(header("webhook-signature"), expected);
}

#[tokio::test]
async fn unsigned_without_a_secret() {
    let (addr, received) = serve(204, "").await;
    let sink = HttpSink::build(&config(&format!("http://{addr}/"))).unwrap();
    sink.deliver(&record()).await.unwrap();
    assert!(
        received.lock().unwrap()[0]
            .headers
            .get("webhook-signature")
            .is_none()
    );
}

#[track_caller]
fn check_outcome(result: Result<(), DeliveryError>, status: u16, retryable: Option<bool>) {
    match (result, retryable) {
        (Ok(()), None) => {}
        (Err(e), Some(retryable)) => {
            assert_eq!(e.retryable, retryable, "{status}: {}", e.message);
            assert!(e.message.contains(&status.to_string()), "{}", e.message);
            assert!(e.message.contains("consumer says no"), "{}", e.message);
            assert!(!e.message.contains("s3cr3t"), "{}", e.message);
        }
        (result, _) => panic!("{status}: unexpected {result:?}"),
    }
}

#[tokio::test]
async fn classifies_answers_by_status() {
    let table = [
        (200, None),
        (201, None),
        (204, None),
        (301, Some(false)),
        (400, Some(false)),
        (401, Some(false)),
        (404, Some(false)),
        (422, Some(false)),
        (408, Some(true)),
        (409, Some(true)),
        (425, Some(true)),
        (429, Some(true)),
        (500, Some(true)),
        (503, Some(true)),
    ];
    for (status, retryable) in table {
        let (addr, _) = serve(status, "consumer says no").await;
        let mut c = config(&format!("http://{addr}/"));
        c.headers
            .insert("authorization".into(), "Bearer s3cr3t".into());
        let result = HttpSink::build(&c).unwrap().deliver(&record()).await;
        check_outcome(result, status, retryable);
    }
}

#[tokio::test]
async fn long_error_bodies_are_cut() {
    let (addr, _) = serve(400, concat!("x", include_str!("http.rs"))).await;
    let sink = HttpSink::build(&config(&format!("http://{addr}/"))).unwrap();
    let err = sink.deliver(&record()).await.unwrap_err();
    assert!(err.message.len() < 400, "{}", err.message);
}

#[tokio::test]
async fn errors_never_repeat_what_the_request_carried() {
    // An error page that echoes the request: the URL's password and
    // token, the Basic credentials built from them, a header value.
    let (addr, _) = serve(
        401,
        "denied /hook?token=tok_s3cr3t&x=1 as dXNlcjpodW50ZXIy (user:hunter2) with Bearer hdr_s3cr3t",
    )
    .await;
    let mut c = config(&format!(
        "http://user:hunter2@{addr}/hook?token=tok_s3cr3t&x=1"
    ));
    c.headers
        .insert("authorization".into(), "Bearer hdr_s3cr3t".into());
    let err = HttpSink::build(&c)
        .unwrap()
        .deliver(&record())
        .await
        .unwrap_err();
    for secret in ["hunter2", "tok_s3cr3t", "dXNlcjpodW50ZXIy", "hdr_s3cr3t"] {
        assert!(!err.message.contains(secret), "{}", err.message);
    }
    assert!(err.message.contains("answered 401"), "{}", err.message);
    assert!(err.message.contains("denied /hook"), "{}", err.message);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = config(&format!("http://user:hunter2@{addr}/hook?token=tok_s3cr3t"));
    let err = HttpSink::build(&c)
        .unwrap()
        .deliver(&record())
        .await
        .unwrap_err();
    assert!(!err.message.contains("hunter2"), "{}", err.message);
    assert!(!err.message.contains("tok_s3cr3t"), "{}", err.message);
}

#[tokio::test]
async fn a_secret_cut_by_the_end_of_the_excerpt_never_shows_in_part() {
    let echo = format!("{}tok_s3cr3t_value", "x".repeat(EXCERPT_BYTES - 5)).leak();
    let (addr, _) = serve(401, echo).await;
    let c = config(&format!("http://{addr}/hook?token=tok_s3cr3t_value"));
    let err = HttpSink::build(&c)
        .unwrap()
        .deliver(&record())
        .await
        .unwrap_err();
    assert!(err.message.contains("xxxxx"), "{}", err.message);
    assert!(!err.message.contains("tok_s"), "{}", err.message);
}

#[tokio::test]
async fn control_characters_of_an_answer_never_reach_the_error() {
    let (addr, _) = serve(500, "down\u{0}\u{1b}[31mred\u{7}").await;
    let c = config(&format!("http://{addr}/hook"));
    let err = HttpSink::build(&c)
        .unwrap()
        .deliver(&record())
        .await
        .unwrap_err();
    assert!(
        err.message.ends_with("down\u{FFFD}\u{FFFD}[31mred\u{FFFD}"),
        "{:?}",
        err.message
    );
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let sink = HttpSink::build(&config(&format!("http://{addr}/"))).unwrap();
    let err = sink.deliver(&record()).await.unwrap_err();
    assert!(err.retryable, "{}", err.message);
    assert!(err.message.contains("cannot connect"), "{}", err.message);
}

#[tokio::test]
async fn a_silent_server_times_out_retryably() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts and holds connections without ever answering.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut c = config(&format!("http://{addr}/"));
    c.timeout = Some(Duration::from_millis(200));
    let err = HttpSink::build(&c)
        .unwrap()
        .deliver(&record())
        .await
        .unwrap_err();
    assert!(err.retryable, "{}", err.message);
    assert!(err.message.contains("timed out"), "{}", err.message);
}

/// A consumer that answers `status` with a body that never ends: 64 KiB
/// chunks as fast as they are taken, or one byte every 50 ms.
async fn endless(status: u16, trickle: bool) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let head = format!("HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\n\r\n");
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = if trickle {
                    b"1\r\nx\r\n".to_vec()
                } else {
                    let mut chunk = b"10000\r\n".to_vec();
                    chunk.extend(std::iter::repeat_n(b'x', 0x10000));
                    chunk.extend_from_slice(b"\r\n");
                    chunk
                };
                while stream.write_all(&chunk).await.is_ok() {
                    if trickle {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_consumer_cannot_make_the_sink_read_or_wait_without_end() {
    for (status, trickle) in [(500, false), (200, false), (500, true), (200, true)] {
        let mut c = config(&format!("http://{}/", endless(status, trickle).await));
        c.timeout = Some(Duration::from_secs(1));
        let sink = HttpSink::build(&c).unwrap();
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(10), sink.deliver(&record()))
            .await
            .expect("the delivery ends");
        let case = format!("{status}, trickle: {trickle}, took {:?}", started.elapsed());
        match result {
            Ok(()) => assert_eq!(status, 200, "{case}"),
            Err(e) => {
                assert_eq!(status, 500, "{case}: {}", e.message);
                assert!(e.message.len() < 400, "{case}: {}", e.message);
            }
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{case}");
    }
}

#[tokio::test]
async fn a_body_template_is_sent_and_signed_as_rendered() {
    let (addr, received) = serve(200, "ok").await;
    let mut c = config(&format!("http://{addr}/hook"));
    c.signing_secret = Some(SECRET.into());
    c.body = Some(r#"{"text": {{ ("Order " ~ record.order.id ~ ": " ~ (record.amount | money("usd"))) | tojson }}}"#.into());
    let sink = HttpSink::build(&c).unwrap();
    let record = record();
    sink.deliver(&record).await.unwrap();

    let received = received.lock().unwrap();
    let request = &received[0];
    assert_eq!(request.method, hyper::Method::POST);
    assert_eq!(request.body, r#"{"text": "Order cs_test_a1: $20.00"}"#);
    let header = |name: &str| request.headers.get(name).unwrap().to_str().unwrap();
    assert_eq!(header("content-type"), DEFAULT_CONTENT_TYPE);
    let timestamp: u64 = header("webhook-timestamp").parse().unwrap();
    let expected = SigningKey::parse(SECRET)
        .unwrap()
        .sign(&record.id, timestamp, &request.body);
    assert_eq!(header("webhook-signature"), expected);
}

#[tokio::test]
async fn put_and_a_content_type_of_its_own() {
    let (addr, received) = serve(200, "ok").await;
    let mut c = config(&format!("http://{addr}/orders/1"));
    c.method = Method::Put;
    c.content_type = Some("text/plain; charset=utf-8".into());
    c.body = Some("order {{ record.order.id }}".into());
    HttpSink::build(&c)
        .unwrap()
        .deliver(&record())
        .await
        .unwrap();
    let received = received.lock().unwrap();
    assert_eq!(received[0].method, hyper::Method::PUT);
    assert_eq!(received[0].body, "order cs_test_a1");
    assert_eq!(
        received[0].headers.get("content-type").unwrap(),
        "text/plain; charset=utf-8"
    );
}

#[tokio::test]
async fn a_record_the_template_cannot_render_is_a_permanent_failure_naming_the_field() {
    let (addr, received) = serve(200, "ok").await;
    let mut c = config(&format!("http://{addr}/"));
    c.body = Some("{\"city\": {{ record.shipping.address.city | tojson }}}".into());
    let error = HttpSink::build(&c)
        .unwrap()
        .deliver(&record())
        .await
        .unwrap_err();
    assert!(!error.retryable);
    assert!(
        error
            .message
            .contains("record.shipping.address.city is undefined"),
        "{}",
        error.message
    );
    assert!(received.lock().unwrap().is_empty(), "nothing is sent");
}

#[tokio::test]
async fn a_template_rendering_invalid_json_says_to_use_tojson() {
    let (addr, received) = serve(200, "ok").await;
    let mut c = config(&format!("http://{addr}/"));
    c.body = Some(r#"{"id": {{ record.order.id }}}"#.into());
    let error = HttpSink::build(&c)
        .unwrap()
        .deliver(&record())
        .await
        .unwrap_err();
    assert!(!error.retryable);
    assert!(
        error.message.contains("invalid JSON") && error.message.contains("tojson"),
        "{}",
        error.message
    );
    assert!(received.lock().unwrap().is_empty(), "nothing is sent");
}

#[test]
fn check_places_template_errors_inside_the_body() {
    let mut c = config("https://example.com/");
    c.body = Some("{\n  \"text\": {{ record.x | jsn }}\n}".into());
    let problems = c.check(Path::new("."));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "body");
    assert_eq!(problems[0].within, Some((2, 25)));
    assert!(problems[0].message.contains("unknown filter `jsn`"));
    assert!(HttpSink::build(&c).is_err(), "the build refuses it too");
}
