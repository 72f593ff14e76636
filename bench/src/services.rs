//! The helper processes: the Stripe API stand-in that the router enriches
//! orders from, and an HTTP consumer that receives records. Each runs on a
//! single-threaded runtime, prints its address, and stops when its parent
//! closes its stdin (or exits).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use stripe_router::http_serve::{self, Options};
use stripe_router::offline::standin::StripeStandIn;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn until_stdin_closes() {
    let (closed, wait) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(std::io::Read::read(&mut stdin, &mut buf), Ok(n) if n > 0) {}
        let _ = closed.send(());
    });
    let _ = wait.await;
}

/// Runs [`StripeStandIn`] in catalogue mode: the load's session ids name
/// three items each. Every answer waits `delay_ms` first.
pub fn standin(key: &str, delay_ms: u64) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let standin = StripeStandIn::start(([127, 0, 0, 1], 0).into(), key).await?;
        standin.serve_catalogue();
        standin.answer_after(std::time::Duration::from_millis(delay_ms));
        println!("{}", standin.addr());
        until_stdin_closes().await;
        Ok(())
    })
}

/// An HTTP consumer: answers 200 to every POST and counts them; `GET /count`
/// tells how many it received.
pub fn consumer() -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        println!("{}", listener.local_addr()?);
        let received = Arc::new(AtomicU64::new(0));
        let handler = move |request, _peer| {
            let received = received.clone();
            async move { answer(request, &received).await }
        };
        http_serve::serve(
            listener,
            Options::new("bench consumer"),
            handler,
            until_stdin_closes(),
        )
        .await;
        Ok(())
    })
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    received: &AtomicU64,
) -> Response<Full<Bytes>> {
    if request.method() == Method::GET {
        let count = received.load(Ordering::Relaxed).to_string();
        return Response::new(Full::new(Bytes::from(count)));
    }
    let ok = request.into_body().collect().await.is_ok();
    if ok {
        received.fetch_add(1, Ordering::Relaxed);
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    if !ok {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}
