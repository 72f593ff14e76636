//! `stripe-router demo`: the whole router at work in a few seconds, with no
//! Stripe account.
//!
//! It builds the real [`App`] from a throwaway `routes.yaml` in a temporary
//! folder (journal included), with a throwaway secret, and points
//! `STRIPE_API_BASE` at the in-process [`StripeStandIn`]. An http sink posts
//! to a small in-process "shipping service". The seed's story then goes
//! through real signed HTTP requests ([`send::post`]), and what each sink
//! received is read back from the files and the service, so the report
//! shows what the real code paths did, not what the demo expected.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::app::{App, Settings};
use crate::config::AdminListen;
use crate::config::env::Env;
use crate::offline::send;
use crate::offline::standin::{self, SessionEvent, StripeStandIn};
use crate::routing::record::Address;

const SECRET: &str = "whsec_demo_throwaway_secret_0000000000";
const API_KEY: &str = "rk_test_51DemoThrowawayKey000000000000";
const WAIT: Duration = Duration::from_secs(15);

const ROUTES: &str = r#"# The demo's routes: paid orders to a file and to a shipping service,
# failed payments to their own file.
store: { path: journal.db }
sinks:
  orders:   { type: jsonl, path: sinks/orders.jsonl }
  failed:   { type: jsonl, path: sinks/failed-payments.jsonl }
  shipping: { type: http, url: "{shipping}", timeout: 5s }
routes:
  - name: paid-orders
    when:
      type: [checkout.session.completed, checkout.session.async_payment_succeeded]
      payment_status: paid
    emit: order
    to: [orders, shipping]
  - name: failed-payments
    when: { type: checkout.session.async_payment_failed }
    emit: order
    to: [failed]
"#;

/// One request of the story.
struct Step {
    what: &'static str,
    event: Value,
    /// Signed with the demo's secret, or forged with another.
    secret: &'static str,
}

/// Runs the demo and writes its report to `out`.
pub async fn run(out: &mut dyn Write) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let localhost = SocketAddr::from(([127, 0, 0, 1], 0));
    let stripe = StripeStandIn::start(localhost, API_KEY)
        .await
        .context("cannot start the Stripe API stand-in")?;
    let shipping = Shipping::start().await?;
    let config_path = dir.path().join("routes.yaml");
    std::fs::write(
        &config_path,
        ROUTES.replace("{shipping}", shipping.url.as_str()),
    )
    .context("cannot write the demo's routes.yaml")?;

    let env = Env::from_map([
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("STRIPE_SECRET_API_KEY", API_KEY),
        ("STRIPE_API_BASE", stripe.url().as_str()),
    ]);
    let app = App::build(Settings {
        config_path,
        listen: Some(localhost),
        // Nothing reads it, and a router may already hold its port.
        admin_listen: Some(AdminListen::Off),
        env,
    })
    .await?;
    let webhook = Url::parse(&format!(
        "http://{}{}",
        app.local_addr(),
        app.webhook_path()
    ))?;
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));

    writeln!(
        out,
        "stripe-router demo: the real router at {webhook}, with a throwaway secret,\n\
         a local stand-in for the Stripe API and a local shipping service.\n\
         Routes: paid orders -> sinks/orders.jsonl + shipping service; failed payments -> \
         sinks/failed-payments.jsonl\n"
    )?;

    let steps = story(&stripe, crate::clock::unix_now());
    let client = reqwest::Client::new();
    let mut refused = Vec::new();
    writeln!(out, "Sent, signed as Stripe signs:")?;
    for (n, step) in steps.into_iter().enumerate() {
        let kind = step.event["type"].as_str().unwrap_or("?").to_owned();
        let body = serde_json::to_vec_pretty(&step.event)?;
        let answer = send::post(
            &client,
            &webhook,
            body,
            step.secret,
            crate::clock::unix_now(),
        )
        .await?;
        let text = match serde_json::from_str::<Value>(&answer.body) {
            Ok(_) if answer.status.is_success() => "received".to_owned(),
            Ok(json) => json["message"].as_str().unwrap_or_default().to_owned(),
            Err(_) => answer.body.clone(),
        };
        let outcome = if answer.status.is_success() {
            "received"
        } else {
            "refused"
        };
        writeln!(
            out,
            "  {}. {:<38} {:<41} -> {} {outcome}",
            n + 1,
            step.what,
            kind,
            answer.status.as_u16()
        )?;
        if !answer.status.is_success() {
            let hint = serde_json::from_str::<Value>(&answer.body)
                .ok()
                .and_then(|json| json["hint"].as_str().map(str::to_owned));
            refused.push((step.what, answer.status.as_u16(), text, hint));
        }
    }

    let orders = dir.path().join("sinks/orders.jsonl");
    let failed = dir.path().join("sinks/failed-payments.jsonl");
    let delivered = wait_for(WAIT, || {
        let (orders, failed) = (read_jsonl(&orders), read_jsonl(&failed));
        let shipped = shipping.received();
        (orders.len() >= 2 && !failed.is_empty() && shipped.len() >= 2)
            .then_some((orders, failed, shipped))
    })
    .await;
    shutdown.cancel();
    let _ = tokio::time::timeout(WAIT, server).await;
    let Some((orders, failed, shipped)) = delivered else {
        bail!("the records did not all arrive within {WAIT:?}: see the log above");
    };

    writeln!(
        out,
        "\nWhat each sink received (delivery runs after the 200):"
    )?;
    report(out, "orders (jsonl, sinks/orders.jsonl)", &orders)?;
    report(
        out,
        "shipping (http POST to the shipping service)",
        &shipped,
    )?;
    report(out, "failed (jsonl, sinks/failed-payments.jsonl)", &failed)?;
    writeln!(out, "\nRefused:")?;
    for (what, status, message, hint) in &refused {
        writeln!(out, "  {what}: {status} {message}")?;
        if let Some(hint) = hint {
            writeln!(out, "    hint: {hint}")?;
        }
    }
    writeln!(
        out,
        "\nThe unpaid checkouts (steps 2 and 4) were acknowledged but routed nowhere: no route \
         wants an unpaid order.\nNext: run `stripe listen --forward-to localhost:3000/api/webhook` \
         and `stripe-router serve`, or `stripe-router send` for offline work."
    )?;
    Ok(())
}

/// The seed's story: a card order, an async order that later succeeds, one
/// that fails, and a forged request.
fn story(stripe: &StripeStandIn, now: i64) -> Vec<Step> {
    let order = |n: usize,
                 event_type: &str,
                 status: &str,
                 name: &str,
                 email: &str,
                 address: Address,
                 currency: &str,
                 items: Vec<Value>| {
        let session_id = format!("cs_test_demo{n:02}_{}", send::token(20));
        let event = SessionEvent {
            event_id: format!("evt_1Demo{n:02}{}", send::token(18)),
            event_type: event_type.to_owned(),
            session_id: session_id.clone(),
            payment_intent: Some(format!("pi_3Demo{n:02}{}", send::token(16))),
            payment_status: status.to_owned(),
            customer_name: Some(name.to_owned()),
            customer_email: Some(email.to_owned()),
            customer_address: address,
            amount_total: standin::items_total(&items),
            currency: currency.to_owned(),
            created: now,
            ..SessionEvent::default()
        };
        stripe.add_session(&session_id, items);
        event
    };
    let item = |n: usize, name: &str, cents: i64, qty: i64, currency: &str| {
        standin::line_item_fixture(
            &format!("li_1Demo{n:02}{}", send::token(12)),
            &format!("prod_Demo{n:02}"),
            name,
            &format!("price_1Demo{n:02}"),
            cents,
            qty,
            currency,
        )
    };
    let address = |line1: &str, city: &str, postal_code: &str, country: &str| Address {
        line1: Some(line1.to_owned()),
        line2: None,
        city: Some(city.to_owned()),
        state: None,
        postal_code: Some(postal_code.to_owned()),
        country: Some(country.to_owned()),
    };

    let card = order(
        1,
        "checkout.session.completed",
        "paid",
        "Jenny Rosen",
        "jenny.rosen@example.com",
        SessionEvent::default().customer_address,
        "usd",
        vec![
            item(1, "Organic cotton T-shirt", 2500, 2, "usd"),
            item(2, "Ceramic mug", 1400, 1, "usd"),
        ],
    );
    let berlin = address("Unter den Linden 1", "Berlin", "10117", "DE");
    let sepa_items = || vec![item(3, "Linen tea towel", 1200, 3, "eur")];
    let pending = order(
        2,
        "checkout.session.completed",
        "unpaid",
        "Max Mustermann",
        "max@example.de",
        berlin,
        "eur",
        sepa_items(),
    );
    let mut succeeded = pending.clone();
    succeeded.event_id = format!("evt_1Demo02s{}", send::token(17));
    succeeded.event_type = "checkout.session.async_payment_succeeded".to_owned();
    succeeded.payment_status = "paid".to_owned();

    let paris = address("8 rue de Rivoli", "Paris", "75004", "FR");
    let failing = order(
        3,
        "checkout.session.completed",
        "unpaid",
        "Marie Dupont",
        "marie.dupont@example.fr",
        paris,
        "eur",
        vec![item(4, "Canvas tote bag", 1800, 1, "eur")],
    );
    let mut failed = failing.clone();
    failed.event_id = format!("evt_1Demo03f{}", send::token(17));
    failed.event_type = "checkout.session.async_payment_failed".to_owned();

    let mut forged = card.clone();
    forged.event_id = format!("evt_1Forged{}", send::token(17));
    forged.amount_total = 1;

    let step = |what, e: &SessionEvent, secret| Step {
        what,
        event: standin::checkout_session_event(e),
        secret,
    };
    vec![
        step("card order, paid at once", &card, SECRET),
        step("bank-debit order, payment pending", &pending, SECRET),
        step("  ...its payment succeeds", &succeeded, SECRET),
        step("bank-debit order, payment pending", &failing, SECRET),
        step("  ...its payment fails", &failed, SECRET),
        step(
            "forged: signed with a guessed secret",
            &forged,
            "whsec_guessed",
        ),
    ]
}

/// One block of the report: a line per record.
fn report(out: &mut dyn Write, sink: &str, records: &[Value]) -> std::io::Result<()> {
    writeln!(out, "  {sink}: {} record(s)", records.len())?;
    for r in records {
        let customer = &r["customer"];
        let items: Vec<String> = r["line_items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| {
                        format!(
                            "{} x {}",
                            i["quantity"],
                            i["product"].as_str().unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        writeln!(
            out,
            "    - {} <{}>, {} {}\n      {}; total {}\n      record {} ({}, {})",
            customer["name"].as_str().unwrap_or("?"),
            customer["email"].as_str().unwrap_or("?"),
            customer["address"]["city"].as_str().unwrap_or("?"),
            customer["address"]["country"].as_str().unwrap_or("?"),
            items.join(", "),
            money(r["amount_total"].as_i64(), r["currency"].as_str()),
            r["id"].as_str().unwrap_or("?"),
            r["event_type"].as_str().unwrap_or("?"),
            r["payment_status"].as_str().unwrap_or("?"),
        )?;
    }
    Ok(())
}

/// `5198`, `usd` → `51.98 USD`.
fn money(cents: Option<i64>, currency: Option<&str>) -> String {
    match cents {
        Some(c) => format!(
            "{}.{:02} {}",
            c / 100,
            (c % 100).abs(),
            currency.unwrap_or("").to_uppercase()
        ),
        None => "?".to_owned(),
    }
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `probe` until it returns something or `timeout` passes.
async fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The demo's "shipping service": answers 200 to every POST and keeps the
/// JSON bodies.
struct Shipping {
    url: Url,
    received: Arc<Mutex<Vec<Value>>>,
    stop: CancellationToken,
}

impl Shipping {
    async fn start() -> anyhow::Result<Shipping> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("cannot start the demo's shipping service")?;
        let url = Url::parse(&format!("http://{}/orders", listener.local_addr()?))?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, received.clone(), stop.clone()));
        Ok(Shipping {
            url,
            received,
            stop,
        })
    }

    fn received(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Shipping {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept(listener: TcpListener, received: Arc<Mutex<Vec<Value>>>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let received = received.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let received = received.clone();
            async move {
                if let Ok(body) = request.into_body().collect().await
                    && let Ok(json) = serde_json::from_slice(&body.to_bytes())
                {
                    received
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(json);
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
            }
        });
        let stop = stop.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = stop.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
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
}
