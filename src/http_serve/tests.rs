//! Tests of the accept loop: drain, the cap with its `503`, and the
//! connection's activity handed to capped handlers.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// Starts `serve` on a loopback port; the token stops it, the handle says
/// when it returned.
async fn start<H, F>(
    options: Options,
    handler: H,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(
        listener,
        options,
        handler,
        stop.clone().cancelled_owned(),
    ));
    (addr, stop, task)
}

/// Everything the server sends until it closes, within `within`.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> String {
    let mut text = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut text))
        .await
        .expect("the server closed the connection in time")
        .expect("reads");
    String::from_utf8_lossy(&text).into_owned()
}

/// Reads until `end` has arrived.
async fn read_until(stream: &mut TcpStream, end: &str) -> String {
    let mut text = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&text).ends_with(end) {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("reads");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&text));
        text.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// A boxed answer, so that one handler can answer in several ways.
type Answer = std::pin::Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// A handler that answers `/quick` at once, holds `/slow` for `slow` and
/// never answers `/stuck`; `entered` gets a permit as a request arrives.
fn handler(
    entered: Arc<tokio::sync::Semaphore>,
    slow: Duration,
) -> impl Fn(Request<Incoming>, SocketAddr) -> Answer + Send + Sync + 'static {
    move |request, _| {
        entered.add_permits(1);
        let path = request.uri().path().to_owned();
        Box::pin(async move {
            match path.as_str() {
                "/stuck" => std::future::pending().await,
                "/slow" => tokio::time::sleep(slow).await,
                _ => {}
            }
            message(StatusCode::OK, "done")
        })
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn after_the_drain_deadline_open_connections_are_closed() {
    let drain = Duration::from_millis(200);
    let options = Options {
        drain,
        ..Options::new("test")
    };
    let entered = Arc::new(tokio::sync::Semaphore::new(0));
    let (addr, stop, task) = start(options, handler(entered.clone(), Duration::ZERO)).await;
    // Kept alive after its answer: idle when shutdown starts.
    let mut idle = TcpStream::connect(addr).await.expect("connects");
    idle.write_all(&get("/quick")).await.expect("writes");
    read_until(&mut idle, r#"{"message":"done"}"#).await;
    // Its answer never comes: only the deadline ends it.
    let mut stuck = TcpStream::connect(addr).await.expect("connects");
    stuck.write_all(&get("/stuck")).await.expect("writes");
    let _ = entered.acquire_many(2).await.expect("both requests arrive");

    let started = tokio::time::Instant::now();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve returns after the drain")
        .expect("serve does not panic");
    assert!(started.elapsed() >= drain, "returned before the deadline");
    assert_eq!(read_to_close(&mut stuck, Duration::from_secs(1)).await, "");
    assert_eq!(read_to_close(&mut idle, Duration::from_secs(1)).await, "");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn a_request_in_hand_finishes_within_the_drain() {
    let options = Options {
        drain: Duration::from_secs(5),
        ..Options::new("test")
    };
    let entered = Arc::new(tokio::sync::Semaphore::new(0));
    let slow = Duration::from_millis(200);
    let (addr, stop, task) = start(options, handler(entered.clone(), slow)).await;
    let mut client = TcpStream::connect(addr).await.expect("connects");
    client.write_all(&get("/slow")).await.expect("writes");
    let _ = entered.acquire().await.expect("the request arrives");
    stop.cancel();
    let answer = read_to_close(&mut client, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with(r#"{"message":"done"}"#), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve returns once the connection is done")
        .expect("serve does not panic");
}

#[tokio::test]
async fn past_the_cap_a_connection_gets_503_and_capped_requests_carry_their_activity() {
    let options = Options {
        cap: Some(Cap {
            max_connections: 1,
            evict_after: Duration::from_secs(3600),
        }),
        ..Options::new("test")
    };
    let (addr, _stop, _task) = start(options, |request, _| {
        let carried = request.extensions().get::<Arc<Activity>>().is_some();
        async move { message(StatusCode::OK, &format!("activity: {carried}")) }
    })
    .await;
    let mut admitted = TcpStream::connect(addr).await.expect("connects");
    admitted.write_all(&get("/")).await.expect("writes");
    read_until(&mut admitted, r#"{"message":"activity: true"}"#).await;

    let mut shed = TcpStream::connect(addr).await.expect("connects");
    shed.write_all(&get("/")).await.expect("writes");
    let answer = read_to_close(&mut shed, Duration::from_secs(5)).await;
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable"),
        "{answer}"
    );
    assert!(
        answer.contains(&format!("retry-after: {RETRY_AFTER_SECS}")),
        "{answer}"
    );
}
