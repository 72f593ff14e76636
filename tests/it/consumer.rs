//! A stand-in for a team's internal service: records every POST and answers
//! with scripted statuses (200 once the script runs out).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use stripe_router::http_serve::{self, Options};

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("consumer received JSON")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<u16>>,
    /// How long each answer takes (a slow service).
    delay: Mutex<Duration>,
    requests: std::sync::atomic::AtomicUsize,
    changed: Notify,
}

pub struct Consumer {
    addr: SocketAddr,
    state: Arc<State>,
    /// Stops the listener and closes every connection.
    stop: CancellationToken,
}

impl Consumer {
    pub async fn start() -> Consumer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind consumer");
        Consumer::serve(listener)
    }

    /// Starts answering on `listener`: a consumer that was down (its port
    /// held, nothing answering) comes back up, with no other process able to
    /// take its port in between.
    pub fn serve(listener: std::net::TcpListener) -> Consumer {
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        let addr = listener.local_addr().expect("consumer address");
        let state = Arc::new(State::default());
        let handler = {
            let state = state.clone();
            move |request, _peer| {
                let state = state.clone();
                async move { answer(&state, request).await }
            }
        };
        let stop = CancellationToken::new();
        let options = Options::new("test consumer");
        tokio::spawn(http_serve::serve(
            listener,
            options,
            handler,
            stop.clone().cancelled_owned(),
        ));
        Consumer { addr, state, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}/orders", self.addr)
    }

    /// Answers the next requests with these statuses, in order.
    pub fn script(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses);
    }

    /// Takes `delay` over each answer from now on, as a slow service does.
    pub fn slow(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// Requests answered so far, whatever the status.
    pub fn requests(&self) -> usize {
        self.state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records accepted with a 2xx so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` records were accepted.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.changed.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "consumer got {} records, expected {n}",
                    self.received().len()
                );
            }
        }
    }
}

/// Records the request and answers with the script's next status.
async fn answer(state: &State, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = state.script.lock().unwrap().pop_front().unwrap_or(200);
    state
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if (200..300).contains(&status) {
        state.received.lock().unwrap().push(Received {
            headers: parts.headers,
            body,
        });
    }
    state.changed.notify_waiters();
    let mut response = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
