//! Integrations wired in routes.yaml alone: the README's recipes (Slack,
//! Discord, Google Sheets, a shipping API, a packing-slip script), loaded
//! from tests/recipes/ and checked against exactly what their receiver
//! gets; templates and programs refused by `check` with their place; a
//! record a template cannot render dead-lettered, then delivered by
//! `replay` once the template is fixed; each way a `command` sink's program
//! can end, and what it can see of the router's environment.

use std::path::Path;

use serde_json::{Value, json};
use stripe_router::offline::standin::catalogue_items;

use crate::events::session_event;
use crate::harness::{
    Options, TestApp, WAIT, eventually, router_command, spawn_app, spawn_in_process_with,
    spawn_with,
};

/// The paid order every recipe is shown with: three line items (1 T-shirt,
/// 2 tote bags, 3 mugs: $103.00), shipped to Jenny Rosen.
const EVENT_CREATED: i64 = 1_764_417_600;

/// A recipe as the README shows it.
fn recipe(name: &str) -> String {
    std::fs::read_to_string(recipes_dir().join(name)).expect("the recipe file")
}

fn recipes_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recipes")
}

fn var(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

/// Sends the paid order `n` with its three line items; its record id.
async fn send_paid_order(app: &TestApp, n: u32, extra: impl FnOnce(&mut Value)) -> String {
    let session = format!("cs_test_recipe_{n}");
    let event_id = format!("evt_recipe_{n}");
    app.stripe.add_session(&session, catalogue_items(3));
    let mut event = session_event(&event_id, "checkout.session.completed", &session, "paid");
    event["created"] = json!(EVENT_CREATED);
    let object = &mut event["data"]["object"];
    object["amount_subtotal"] = json!(10300);
    object["amount_total"] = json!(10300);
    object["collected_information"]["shipping_details"] = json!({
        "name": "Jenny Rosen",
        "address": {
            "line1": "510 Townsend St", "line2": "Apt 4", "city": "San Francisco",
            "state": "CA", "postal_code": "94103", "country": "US"
        }
    });
    extra(&mut event);
    let answer = app.send(&event).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    format!("{event_id}:paid-orders")
}

/// The body the consumer got, as text.
async fn received_text(app: &TestApp) -> String {
    let received = app.consumer.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    String::from_utf8(received[0].body.to_vec()).expect("UTF-8")
}

#[tokio::test]
async fn the_slack_recipe_posts_exactly_the_expected_message() {
    let app = spawn_recipe_with_url("slack.yaml", "SLACK_WEBHOOK_URL").await;
    send_paid_order(&app, 1, |_| {}).await;
    let expected = concat!(
        r#"{"text": "*New order* $103.00 from Jenny Rosen (jenny.rosen@example.com)\n"#,
        r#"• 1 × Organic cotton T-shirt: $25.00\n"#,
        r#"• 2 × Canvas tote bag: $36.00\n"#,
        r#"• 3 × Ceramic mug: $42.00\n"#,
        r#"Ship to Jenny Rosen, 510 Townsend St, 94103 San Francisco, US"}"#,
    );
    assert_eq!(received_text(&app).await, expected);
    let received = app.consumer.received();
    assert_eq!(received[0].header("content-type"), Some("application/json"));
}

/// [`spawn_recipe`] with the recipe's URL variable set to the consumer's.
async fn spawn_recipe_with_url(name: &str, url_var: &str) -> TestApp {
    let mut options = Options::new(&recipe(name).replace(&format!("${{{url_var}}}"), "{consumer}"));
    options.env.push(var(url_var, "set by the test"));
    spawn_in_process_with(options).await
}

#[tokio::test]
async fn the_discord_recipe_posts_an_embed_with_a_field_per_item() {
    let app = spawn_recipe_with_url("discord.yaml", "DISCORD_WEBHOOK_URL").await;
    send_paid_order(&app, 2, |_| {}).await;
    let expected = r#"{
  "username": "Shop orders",
  "content": "New order: $103.00",
  "embeds": [{
    "title": "Jenny Rosen",
    "description": "jenny.rosen@example.com",
    "fields": [
      {"name": "Organic cotton T-shirt", "value": "1 × $25.00", "inline": true},
      {"name": "Canvas tote bag", "value": "2 × $18.00", "inline": true},
      {"name": "Ceramic mug", "value": "3 × $14.00", "inline": true}
    ]
  }]
}"#;
    assert_eq!(received_text(&app).await, expected);
}

#[tokio::test]
async fn the_shipping_recipe_renames_fields_and_its_signature_verifies() {
    const SIGNING: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let mut options =
        Options::new(&recipe("shipping.yaml").replace("${SHIPPING_API_URL}", "{consumer}"));
    options.env.extend([
        var("SHIPPING_API_TOKEN", "tok_partner_123"),
        var("SHIPPING_SIGNING_SECRET", SIGNING),
    ]);
    let app = spawn_in_process_with(options).await;
    let id = send_paid_order(&app, 3, |_| {}).await;
    let expected = format!(
        r#"{{
  "reference": "{id}",
  "recipient": {{
    "name": "Jenny Rosen",
    "street1": "510 Townsend St",
    "street2": "Apt 4",
    "city": "San Francisco",
    "region": "CA",
    "zip": "94103",
    "country_code": "US",
    "email": "jenny.rosen@example.com"
  }},
  "items": [
    {{"sku": "price_1Catalogue0000000000", "title": "Organic cotton T-shirt", "qty": 1, "unit_price": "25.00"}},
    {{"sku": "price_1Catalogue0000000001", "title": "Canvas tote bag", "qty": 2, "unit_price": "18.00"}},
    {{"sku": "price_1Catalogue0000000002", "title": "Ceramic mug", "qty": 3, "unit_price": "14.00"}}
  ],
  "declared_value": {{"amount": "103.00", "currency": "USD"}}
}}"#
    );
    assert_eq!(received_text(&app).await, expected);

    // The official Standard Webhooks library accepts the templated bytes.
    let received = &app.consumer.received()[0];
    assert_eq!(
        received.header("authorization"),
        Some("Bearer tok_partner_123")
    );
    let webhook = standardwebhooks::Webhook::new(SIGNING).unwrap();
    webhook
        .verify(&received.body, &received.headers)
        .expect("the signature covers the body as sent");
    let mut tampered = received.body.to_vec();
    tampered[0] = b' ';
    assert!(webhook.verify(&tampered, &received.headers).is_err());
}

#[tokio::test]
async fn the_sheets_recipe_posts_a_row_through_curl() {
    let app = spawn_recipe_with_url("sheets.yaml", "SHEETS_WEBAPP_URL").await;
    send_paid_order(&app, 4, |_| {}).await;
    let expected = format!(
        r#"{{"row": [{EVENT_CREATED}, "cs_test_recipe_4", "Jenny Rosen", "jenny.rosen@example.com", 6, "103.00", "USD"]}}"#
    );
    assert_eq!(received_text(&app).await, expected);
    let received = &app.consumer.received()[0];
    assert_eq!(received.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn the_packing_slip_recipe_files_the_rendered_slip() {
    let app = spawn_in_process_with(Options::new(&recipe("packing-slip.yaml"))).await;
    std::fs::copy(
        recipes_dir().join("packing-slip.sh"),
        app.path("packing-slip.sh"),
    )
    .unwrap();
    let id = send_paid_order(&app, 5, |_| {}).await;
    let slip = app.path(&format!("slips/{id}.txt"));
    let text = eventually(WAIT, || std::fs::read_to_string(&slip).ok()).await;
    let expected = "\
PACKING SLIP  cs_test_recipe_5

Ship to:
  Jenny Rosen
  510 Townsend St
  Apt 4
  94103 San Francisco, CA
  US

Qty  Item
1 x  Organic cotton T-shirt
2 x  Canvas tote bag
3 x  Ceramic mug

Paid: $103.00
";
    assert_eq!(text, expected);
}

#[test]
fn every_recipe_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        var("STRIPE_WEBHOOK_SECRET", crate::harness::SECRET),
        var("STRIPE_SECRET_API_KEY", crate::harness::API_KEY),
        var(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T0/B0/x",
        ),
        var(
            "DISCORD_WEBHOOK_URL",
            "https://discord.com/api/webhooks/1/x",
        ),
        var(
            "SHEETS_WEBAPP_URL",
            "https://script.google.com/macros/s/x/exec",
        ),
        var(
            "SHIPPING_API_URL",
            "https://api.example-shipping.test/v2/shipments",
        ),
        var("SHIPPING_API_TOKEN", "tok_partner_123"),
        var(
            "SHIPPING_SIGNING_SECRET",
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        ),
    ];
    for name in [
        "slack.yaml",
        "discord.yaml",
        "sheets.yaml",
        "shipping.yaml",
        "packing-slip.yaml",
    ] {
        std::fs::write(dir.path().join(name), recipe(name)).unwrap();
        let output = router_command(dir.path(), &env, &["check", "--config", name])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

const PAID: &str = "
routes:
  - name: paid-orders
    when: { type: checkout.session.completed, payment_status: paid }
    emit: order
    to: [hook]
";

#[test]
fn check_reports_template_and_program_errors_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-executable.sh"), "exit 0\n").unwrap();
    let routes = r#"sinks:
  hook:
    type: http
    url: http://127.0.0.1:9/x
    body: |
      {
        "text": {{ record.customer.name | tojson }},
        "total": {{ record.amount_total | dollars }}
      }
  inline: { type: http, url: "http://127.0.0.1:9/y", body: "{{ order.id }}" }
  broken: { type: http, url: "http://127.0.0.1:9/z", body: "{% for x in record.line_items %}" }
  missing: { type: command, command: [./ship.sh] }
  plain: { type: command, command: [./not-executable.sh] }
  nowhere: { type: command, command: [no-such-program-anywhere] }
  verb: { type: http, url: "http://127.0.0.1:9/w", method: PATCH }
"#
    .to_owned()
        + PAID;
    std::fs::write(dir.path().join("routes.yaml"), routes).unwrap();
    let output = router_command(dir.path(), &[], &["check", "--no-env"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    for expected in [
        "routes.yaml:8:43: invalid `body` in sink `hook`: unknown filter `dollars`",
        "routes.yaml:10:64: invalid `body` in sink `inline`: unknown name `order`",
        "routes.yaml:11:91: invalid `body` in sink `broken`: syntax error: unexpected end of input",
        "routes.yaml:12:38: invalid `command` in sink `missing`: program `./ship.sh` does not exist",
        "routes.yaml:13:36: invalid `command` in sink `plain`: program `./not-executable.sh` is not executable",
        "routes.yaml:14:38: invalid `command` in sink `nowhere`: program `no-such-program-anywhere` is not on PATH",
        "routes.yaml:15:60: unknown value `PATCH` in sink `verb` (expected POST or PUT)",
    ] {
        assert!(shown.contains(expected), "`{expected}` not in:\n{shown}");
    }

    // `serve` refuses the same file, with the same places.
    let output = router_command(
        dir.path(),
        &[var("STRIPE_WEBHOOK_SECRET", crate::harness::SECRET)],
        &["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off"],
    )
    .output()
    .unwrap();
    let shown = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        shown.contains("routes.yaml:8:43: invalid `body` in sink `hook`: unknown filter `dollars`"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_missing_field_is_a_dead_letter_naming_it_until_the_fixed_template_is_replayed() {
    let with_gift = "sinks:\n  hook:\n    type: http\n    url: \"{consumer}\"\n    body: '{\"note\": {{ record.metadata.gift_note | tojson }}}'\n"
        .to_owned()
        + PAID;
    let app = spawn_app(&with_gift).await;
    let id = send_paid_order(&app, 6, |_| {}).await;
    let dead = app.wait_dead_letters(|listed| !listed.is_empty()).await;
    let shown = dead[0].to_string();
    assert!(
        shown.contains("record.metadata.gift_note is undefined") && shown.contains(&id),
        "{shown}"
    );
    assert_eq!(app.consumer.requests(), 0, "nothing was sent");

    // Fixed: a note only when there is one. The reload applies it; the
    // replay renders the stored record with the template now configured.
    let fixed = with_gift
        .replace("{consumer}", &app.consumer.url())
        .replace(
            "record.metadata.gift_note | tojson",
            "record.metadata.gift_note | default(\"\") | tojson",
        );
    std::fs::write(app.path("routes.yaml"), fixed).unwrap();
    app.wait_health(|h| h["config"]["version"] == 2).await;
    let replayed = app.cli(&["replay", "--sink", "hook"]);
    assert!(replayed.contains("1 dead letter"), "{replayed}");
    let received = app.consumer.wait_for(1, WAIT).await;
    assert_eq!(received[0].body, r#"{"note": ""}"#);
    assert_eq!(received[0].header("webhook-id"), Some(id.as_str()));
}

/// One route to four command sinks, one per way a program ends.
const COMMANDS: &str = r#"sinks:
  ok: { type: command, command: [sh, -c, 'cat > ok.tmp && mv ok.tmp ok.json'] }
  flaky:
    type: command
    command: [sh, -c, 'if [ -e flaky.tried ]; then cat > flaky.tmp && mv flaky.tmp flaky.json; else touch flaky.tried; echo busy >&2; exit 75; fi']
    retry: { initial: 100ms, max: 200ms }
  broken:
    type: command
    command: [sh, -c, 'echo starting >&2; echo "label printer out of paper" >&2; exit 1']
  hung:
    type: command
    command: [sh, -c, 'echo $$ >> hung.pids; exec sleep 300']
    timeout: 300ms
    retry: { initial: 100ms, max: 200ms, max_age: 1s }
routes:
  - name: paid-orders
    when: { type: checkout.session.completed, payment_status: paid }
    emit: order
    to: [ok, flaky, broken, hung]
"#;

#[tokio::test]
async fn a_command_sink_delivers_on_0_retries_75_and_dead_letters_1_and_a_timeout() {
    let app = spawn_app(COMMANDS).await;
    let id = send_paid_order(&app, 7, |_| {}).await;

    let ok = eventually(WAIT, || std::fs::read(app.path("ok.json")).ok()).await;
    let record: Value = serde_json::from_slice(&ok).expect("the record on stdin");
    assert_eq!(record["id"], id);
    assert_eq!(record["amount_total"], 10300);
    let flaky = eventually(WAIT, || std::fs::read(app.path("flaky.json")).ok()).await;
    assert_eq!(flaky, ok, "the retry got the same record");

    let dead = app.wait_dead_letters(|listed| listed.len() == 2).await;
    let error_of = |sink: &str| {
        dead.iter()
            .find(|d| d.to_string().contains(&format!("\"{sink}\"")))
            .unwrap_or_else(|| panic!("no dead letter for {sink}: {dead:?}"))
            .to_string()
    };
    let broken = error_of("broken");
    assert!(
        broken.contains("exited 1: label printer out of paper"),
        "{broken}"
    );
    let hung = error_of("hung");
    assert!(
        hung.contains("timeout") && hung.contains("killed"),
        "{hung}"
    );

    // Every hung run was killed at its timeout.
    let pids = std::fs::read_to_string(app.path("hung.pids")).unwrap();
    for pid in pids.lines() {
        eventually(WAIT, || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest[..1].to_owned());
            matches!(state.as_deref(), None | Some("Z")).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn a_command_never_sees_the_routers_secrets_unless_the_config_passes_them() {
    let routes = r#"sinks:
  env:
    type: command
    command: [sh, -c, 'env > env.tmp && mv env.tmp env.txt']
    env: { SHIP_TOKEN: "${SHIP_TOKEN}" }
routes:
  - name: paid-orders
    when: { type: checkout.session.completed, payment_status: paid }
    emit: order
    to: [env]
"#;
    let mut options = Options::new(routes);
    options.env.push(var("SHIP_TOKEN", "tok_ship_456"));
    let app = spawn_with(options).await;
    assert!(
        app.env.iter().any(|(k, _)| k == "STRIPE_WEBHOOK_SECRET")
            && app.env.iter().any(|(k, _)| k == "STRIPE_SECRET_API_KEY"),
        "the router has both"
    );
    let id = send_paid_order(&app, 8, |_| {}).await;
    let env = eventually(WAIT, || {
        std::fs::read_to_string(app.path("env.txt"))
            .ok()
            .filter(|t| t.contains("STRIPE_ROUTER_RECORD_ID"))
    })
    .await;
    assert!(!env.contains("STRIPE_WEBHOOK_SECRET"), "{env}");
    assert!(!env.contains("STRIPE_SECRET_API_KEY"), "{env}");
    assert!(!env.contains(crate::harness::SECRET), "{env}");
    assert!(!env.contains("RUST_LOG"), "{env}");
    assert!(env.contains("SHIP_TOKEN=tok_ship_456\n"), "{env}");
    assert!(
        env.contains(&format!("STRIPE_ROUTER_RECORD_ID={id}\n")),
        "{env}"
    );
    assert!(env.contains("PATH="), "{env}");
}
