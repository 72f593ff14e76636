//! What a new user sees: `send`, `demo`, `check` warnings, completions and
//! the hints on refused requests, all through the real binary.

use serde_json::json;
use stripe_router::ingest::verify;

use crate::harness::{
    ROUTES, SECRET, WAIT, eventually, now, pretty, read_jsonl, run_router as run, spawn_app, text,
};

#[tokio::test]
async fn send_delivers_a_signed_order_with_the_items_asked_for() {
    let app = spawn_app(ROUTES).await;
    app.stripe.serve_catalogue();
    let to = app.url("/api/webhook");
    let elsewhere = tempfile::tempdir().expect("a temp dir");

    // No routes.yaml where `send` runs: --to is enough.
    let args = [
        "send",
        "checkout.session.completed",
        "--items",
        "3",
        "--to",
        &to,
    ];
    let output = run(
        elsewhere.path(),
        &args,
        &[("STRIPE_WEBHOOK_SECRET", SECRET)],
    )
    .await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("HTTP 200 OK") && stdout.contains(r#""received":true"#),
        "{stdout}"
    );

    let orders = eventually(WAIT, || {
        let orders = read_jsonl(&app.path("sinks/orders.jsonl"));
        (!orders.is_empty()).then_some(orders)
    })
    .await;
    let order = &orders[0];
    assert_eq!(order["event_type"], "checkout.session.completed");
    assert_eq!(order["line_items"].as_array().map(Vec::len), Some(3));
    let items_total: i64 = order["line_items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["amount_total"].as_i64())
        .sum();
    assert_eq!(order["amount_total"].as_i64(), Some(items_total));

    // Again: fresh ids, so not a duplicate.
    let output = run(
        elsewhere.path(),
        &args,
        &[("STRIPE_WEBHOOK_SECRET", SECRET)],
    )
    .await;
    assert!(text(&output.stdout).contains(r#""duplicate":false"#));
}

#[tokio::test]
async fn send_with_the_wrong_secret_fails_and_the_router_says_why() {
    let app = spawn_app(ROUTES).await;
    // The config names the target: `send` reads server.listen from it.
    let dir = tempfile::tempdir().expect("a temp dir");
    let routes = format!(
        "server: {{ listen: \"{}\" }}\nsinks: {{ out: {{ type: stdout }} }}\nroutes: []\n",
        app.addr
    );
    std::fs::write(dir.path().join("routes.yaml"), routes).expect("writes");
    // .env files are honoured; the first secret signs.
    std::fs::write(
        dir.path().join(".env"),
        "STRIPE_WEBHOOK_SECRET=whsec_from_dashboard,x\n",
    )
    .expect("writes");

    let output = run(dir.path(), &["send", "checkout.session.expired"], &[]).await;
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("HTTP 400") && stdout.contains("--print-secret"),
        "{stdout}"
    );
    app.stderr.wait_for(WAIT, |line| {
        (line.contains("refused a request whose signature does not verify")
            && line.contains("hint")
            && line.contains("stripe listen --print-secret"))
        .then_some(())
    });
}

#[tokio::test]
async fn a_reserialised_body_is_named_as_such() {
    let app = spawn_app(ROUTES).await;
    let event = json!({
        "id": "evt_1Reserialised", "object": "event", "type": "checkout.session.completed",
        "created": now(), "livemode": false, "data": { "object": { "id": "cs_test_1" } }
    });
    let signature = verify::sign(&pretty(&event), SECRET, now());
    // What a JSON body parser that re-encodes does: compact bytes.
    let compact = serde_json::to_vec(&event).expect("serializes");
    let answer = app.post(compact, Some(signature)).await;
    assert_eq!(answer.status, 400);
    let hint = answer.body["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("re-encoded the body"), "{}", answer.body);
    app.stderr.wait_for(WAIT, |line| {
        line.contains("re-encoded the body").then_some(())
    });
}

#[tokio::test]
async fn check_warns_about_a_route_that_can_never_fire() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let routes = "sinks: { out: { type: stdout } }\nroutes:\n  - name: paid\n    when: { type: checkout.sessions.completed }\n    emit: event\n    to: [out]\n";
    std::fs::write(dir.path().join("routes.yaml"), routes).expect("writes");
    // The file alone: what the environment lacks is a warning only.
    let env = [("STRIPE_WEBHOOK_SECRET", "sk_test_51NotAWebhookSecret")];
    let output = run(dir.path(), &["check", "--no-env"], &env).await;
    let stderr = text(&output.stderr);
    assert!(
        output.status.success(),
        "warnings do not fail check:\n{stderr}"
    );
    assert!(
        stderr.contains("routes.yaml:4:13:")
            && stderr.contains("did you mean `checkout.session.completed`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("holds an API key (sk_test_...)"),
        "{stderr}"
    );
    assert!(!stderr.contains("51NotAWebhookSecret"), "{stderr}");
}

#[tokio::test]
async fn demo_tells_the_story_and_exits_zero() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let output = run(dir.path(), &["demo"], &[]).await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    for want in [
        "Jenny Rosen",
        "2 x Organic cotton T-shirt, 1 x Ceramic mug; total 64.00 USD",
        "Max Mustermann",
        "Marie Dupont",
        "orders (jsonl, sinks/orders.jsonl): 2 record(s)",
        "shipping (http POST to the shipping service): 2 record(s)",
        "failed (jsonl, sinks/failed-payments.jsonl): 1 record(s)",
        "Refused:",
        "400 Webhook signature verification failed",
    ] {
        assert!(stdout.contains(want), "{want:?} not in:\n{stdout}");
    }
    // Nothing left behind where it ran.
    assert_eq!(std::fs::read_dir(dir.path()).expect("lists").count(), 0);
}

#[tokio::test]
async fn completions_and_help() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let output = run(dir.path(), &["completions", "bash"], &[]).await;
    let script = text(&output.stdout);
    assert!(output.status.success());
    for command in [
        "serve",
        "check",
        "send",
        "demo",
        "completions",
        "stripe-standin",
    ] {
        assert!(
            script.contains(command),
            "{command} not in the bash completions"
        );
    }
    for command in [
        "serve",
        "check",
        "send",
        "demo",
        "stripe-standin",
        "completions",
        "replay",
    ] {
        let output = run(dir.path(), &[command, "--help"], &[]).await;
        let help = text(&output.stdout);
        assert!(
            help.contains("Example") && help.contains(&format!("stripe-router {command}")),
            "{command} --help has no example:\n{help}"
        );
    }
}

#[tokio::test]
async fn check_reports_every_error_with_its_place_and_exits_one() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let routes = "sinks:\n  orders: { type: jsonl, pth: x.jsonl }\n  hook: { type: htp, url: http://x }\nroutes:\n  - name: paid\n    when: { type: checkout.session.completed, data.object.amount_total: { gtee: 5 } }\n    emit: order\n    to: [orders, missing]\n";
    std::fs::write(dir.path().join("routes.yaml"), routes).expect("writes");
    let output = run(dir.path(), &["check"], &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for expected in [
        "routes.yaml:2:",
        "unknown field `pth`",
        "routes.yaml:3:",
        "unknown sink type `htp`",
        "routes.yaml:8:",
        "`missing`, which is not defined",
    ] {
        assert!(
            stderr.contains(expected),
            "`{expected}` missing from:\n{stderr}"
        );
    }

    // With the structure fixed, the rules' own errors come with the route's place.
    let routes = "sinks:\n  orders: { type: jsonl, path: x.jsonl }\nroutes:\n  - name: paid\n    when: { type: checkout.session.completed, data.object.amount_total: { gtee: 5 } }\n    emit: order\n    to: [orders]\n";
    std::fs::write(dir.path().join("routes.yaml"), routes).expect("writes");
    let output = run(dir.path(), &["check"], &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("routes.yaml:4:") && stderr.contains("unknown operator `gtee`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("STRIPE_SECRET_API_KEY is not set"),
        "{stderr}"
    );

    let output = run(
        dir.path(),
        &["check"],
        &[("STRIPE_SECRET_API_KEY", "rk_test_51CheckKey00000000")],
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("STRIPE_SECRET_API_KEY is not set"),
        "{stderr}"
    );
}
