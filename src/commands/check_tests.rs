//! Tests of `check`: the summary, environment warnings and its verdict on serve.

use super::environment;
use crate::config::env::Env;
use crate::config::test_support::parse;

#[test]
fn summary_names_sinks_and_routes_without_secrets() {
    let config = parse(
        "sinks:\n  orders: { type: jsonl, path: sinks/orders.jsonl }\n  web:\n    type: http\n    url: https://user:pw@example.com/hook?token=abc\n    signing_secret: ${SIGNING}\n    headers: { Authorization: \"Bearer ${SHIPPING_TOKEN}\" }\n  console: { type: stdout }\nroutes:\n  - name: paid\n    when: { type: [a, b], data.object.amount_total: { gte: 100 } }\n    emit: order\n    to: [orders, web]\n",
    );
    let summary = config.summary();
    for expected in [
        "listen: 127.0.0.1:3000, webhook path: /api/webhook",
        "orders   jsonl   ./sinks/orders.jsonl",
        "web      http    https://<redacted>@example.com/hook?<redacted> (signed)",
        "console  stdout",
        "paid  when {type: [a, b], data.object.amount_total: {gte: 100}}  emit order -> orders, web",
    ] {
        assert!(summary.contains(expected), "`{expected}` not in\n{summary}");
    }
    for secret in ["pw", "abc", "tok_123", "whsec_"] {
        assert!(!summary.contains(secret), "`{secret}` in\n{summary}");
    }
}

#[track_caller]
fn check_env(vars: &[(&str, &str)], wants: &[&str]) {
    let warnings = environment(&Env::from_map(vars.iter().copied()));
    assert_eq!(warnings.len(), wants.len(), "{warnings:?}");
    for (warning, want) in warnings.iter().zip(wants) {
        assert!(warning.contains(want), "{want:?} not in {warning:?}");
        assert!(!warning.contains("51Hsecret"), "{warning}");
    }
}

#[test]
fn environment_warnings() {
    let key = ("STRIPE_SECRET_API_KEY", "rk_test_51Hsecret000000000");
    check_env(&[("STRIPE_WEBHOOK_SECRET", "whsec_a"), key], &[]);
    // Not set, a variable is not judged: without --no-env it is a problem,
    // with it, what was not checked.
    check_env(&[key], &[]);
    check_env(
        &[("STRIPE_WEBHOOK_SECRET", "sk_test_51Hsecret"), key],
        &["holds an API key (sk_test_...)"],
    );
    check_env(
        &[("STRIPE_WEBHOOK_SECRET", "whsec_a, abc")],
        &["1 of its secrets"],
    );
    check_env(
        &[
            ("STRIPE_WEBHOOK_SECRET", "whsec_a"),
            ("STRIPE_SECRET_API_KEY", "whsec_51Hsecret"),
        ],
        &["webhook signing secret"],
    );
}

/// Runs `check` on `text` as `routes.yaml` in a temp folder: its verdict,
/// what it wrote to `out` and to `err`.
fn run_check(text: &str, env: &Env, no_env: bool) -> (bool, String, String) {
    let options = super::Options {
        no_env,
        deny_warnings: false,
    };
    run_check_with(text, env, options)
}

fn run_check_with(text: &str, env: &Env, options: super::Options) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, text).expect("write");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let ok = super::check(&path, env, options, &mut out, &mut err);
    let shown = |bytes: Vec<u8>| {
        String::from_utf8(bytes)
            .expect("utf-8")
            .replace(&path.display().to_string(), "routes.yaml")
    };
    (ok, shown(out), shown(err))
}

#[test]
fn check_writes_the_summary_or_every_problem_and_says_whether_serve_would_start() {
    let valid = "sinks:\n  console: { type: stdout }\nroutes:\n  - name: all\n    when: { type: checkout.session.completed }\n    emit: event\n    to: console\n";
    let secret = Env::from_map([("STRIPE_WEBHOOK_SECRET", "whsec_c2VjcmV0")]);
    let (ok, out, err) = run_check(valid, &secret, false);
    assert!(ok, "{err}");
    assert!(out.starts_with("routes.yaml is valid\n\nlisten: "), "{out}");
    assert!(out.contains("  console  stdout\n"), "{out}");
    assert_eq!(err, "");

    // The file is fine, the environment is not: serve would not start.
    let (ok, out, err) = run_check(valid, &Env::empty(), false);
    assert!(!ok);
    assert_eq!(out, "");
    assert!(
        err.starts_with(
            "routes.yaml is valid, but serve would not start with this environment (1 problem):\n  environment: "
        ),
        "{err}"
    );
    // Left out (`--no-env`), the same environment is no problem, and no
    // warning either (CI denies warnings): the output says it was not checked.
    let (ok, out, err) = run_check(valid, &Env::empty(), true);
    assert!(ok, "{err}");
    assert_eq!(err, "");
    assert!(
        out.ends_with(
            "not checked (--no-env): STRIPE_WEBHOOK_SECRET, STRIPE_SECRET_API_KEY (not set); run \
             `stripe-router check` without --no-env where `serve` runs, with its environment, to \
             check them too\n"
        ),
        "{out}"
    );

    let broken = valid.replace("type: stdout", "type: stdot");
    let (ok, out, err) = run_check(&broken, &secret, false);
    assert!(!ok);
    assert_eq!(out, "");
    assert!(
        err.starts_with(
            "routes.yaml is not valid (1 problem):\n  routes.yaml:2:20: unknown sink type `stdot`"
        ),
        "{err}"
    );
}
