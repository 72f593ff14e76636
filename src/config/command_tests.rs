use super::super::env::Env;
use super::super::test_support::parse;
use super::environment;

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
    check_env(&[key], &["is not set"]);
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
