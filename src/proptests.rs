//! Property tests over everything that parses untrusted input: the
//! `Stripe-Signature` header and [`verify`], the event head
//! ([`Event::head`], [`Event::parse`]) and the config loader
//! ([`Config::parse`]). Arbitrary input never panics, a signed body with any
//! one byte changed, added or removed is never accepted, and no config error
//! repeats an interpolated secret. 256 cases each keep `cargo test` fast.

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::config::Config;
use crate::config::env::Env;
use crate::event::Event;
use crate::ingest::verify::{Secrets, SignatureError, sign, verify};

const SECRET: &str = "whsec_test_secret";
const T: i64 = 1_700_000_000;
const TOLERANCE: Duration = Duration::from_secs(300);

fn secrets() -> Secrets {
    Secrets::parse(SECRET).expect("test secret parses")
}

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// One change to a body: a byte flipped, a byte inserted, a byte removed.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: prop::sample::Index, mask: u8 },
    Insert { at: prop::sample::Index, byte: u8 },
    Remove { at: prop::sample::Index },
}

impl Mutation {
    /// The mutated body, or `None` when there is nothing to remove.
    fn apply(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut body = body.to_vec();
        match self {
            Mutation::Flip { at, mask } => {
                if body.is_empty() {
                    return None;
                }
                let at = at.index(body.len());
                body[at] ^= mask;
            }
            Mutation::Insert { at, byte } => body.insert(at.index(body.len() + 1), *byte),
            Mutation::Remove { at } => {
                if body.is_empty() {
                    return None;
                }
                body.remove(at.index(body.len()));
            }
        }
        Some(body)
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1..=u8::MAX)
            .prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (any::<prop::sample::Index>(), any::<u8>())
            .prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<prop::sample::Index>().prop_map(|at| Mutation::Remove { at }),
    ]
}

/// Bodies as Stripe sends them (pretty JSON events) and arbitrary bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (
            "[a-zA-Z0-9_]{1,24}",
            "[a-z_.]{1,40}",
            any::<i64>(),
            any::<bool>()
        )
            .prop_map(|(id, kind, created, livemode)| {
                serde_json::to_vec_pretty(&json!({
                    "id": format!("evt_{id}"), "object": "event", "type": kind,
                    "created": created, "livemode": livemode,
                    "data": { "object": { "id": "cs_test_1", "amount_total": 2000 } }
                }))
                .expect("serializable")
            }),
        prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// Headers near the real shape (`t=...,v1=...`), and any text at all.
fn header() -> impl Strategy<Value = String> {
    let item = prop_oneof![
        "t=-?[0-9]{0,20}",
        "v1=[0-9a-fA-F]{0,70}",
        "v0=[0-9a-f]{0,64}",
        "[a-z0-9]{0,3}=?[^,]{0,8}",
    ];
    prop_oneof![
        prop::collection::vec(item, 0..6).prop_map(|items| items.join(",")),
        any::<String>(),
    ]
}

/// JSON values of every kind, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::from)),
        "[a-z_.]{0,12}".prop_map(Value::from),
        Just(Value::from("event")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Objects that are events or nearly: each field present, missing or of
/// the wrong kind, plus extra keys.
fn event_like() -> impl Strategy<Value = Value> {
    let field = |good: BoxedStrategy<Value>| {
        prop_oneof![good, json_value().boxed(), Just(Value::Null)].prop_map(Some)
    };
    (
        field(Just(json!("event")).boxed()),
        field("evt_[a-zA-Z0-9]{0,8}".prop_map(Value::from).boxed()),
        field("[a-z.]{0,20}".prop_map(Value::from).boxed()),
        field(any::<i64>().prop_map(Value::from).boxed()),
        field(any::<bool>().prop_map(Value::from).boxed()),
        prop::collection::btree_map("[a-z]{1,8}", json_value(), 0..3),
        prop::sample::subsequence(vec!["object", "id", "type", "created", "livemode"], 0..=5),
    )
        .prop_map(|(object, id, kind, created, livemode, extra, missing)| {
            let mut map: serde_json::Map<String, Value> = extra.into_iter().collect();
            for (key, value) in [
                ("object", object),
                ("id", id),
                ("type", kind),
                ("created", created),
                ("livemode", livemode),
            ] {
                if let Some(value) = value.filter(|_| !missing.contains(&key)) {
                    map.insert(key.to_owned(), value);
                }
            }
            Value::Object(map)
        })
}

/// Text made of config vocabulary: keys, values, flow and block syntax,
/// `${VAR}` references, odd indentation; most of it broken.
fn config_text() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "sinks:",
        "routes:",
        "server:",
        "stripe:",
        "store:",
        "type:",
        "jsonl",
        "http",
        "stdout",
        "path:",
        "url:",
        "name:",
        "when:",
        "emit:",
        "order",
        "event",
        "to:",
        "headers:",
        "signing_secret:",
        "timeout:",
        "retry:",
        "concurrency:",
        "listen:",
        "max_body:",
        "2MiB",
        "10s",
        "0s",
        "http://u:p@h:1/x?t=1",
        "whsec_abc",
        "a.b",
        "${SECRET}",
        "${NOPE}",
        "${",
        "$${",
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "-",
        "- ",
        "'",
        "\"",
        "#",
        "~",
        "&a",
        "*a",
        "!!str",
        "|",
        ">",
        "\n",
        "\n  ",
        "\n    ",
        "  ",
        " ",
        "\t",
        "\u{0}",
        "é",
        "\u{feff}",
    ]);
    prop::collection::vec(token, 0..80).prop_map(|tokens| tokens.concat())
}

/// A valid config with `${SECRET}` written as one whole scalar somewhere.
fn config_with_secret() -> impl Strategy<Value = String> {
    let places = prop::sample::select(vec![
        "  a: { type: http, url: \"${SECRET}\" }\n",
        "  a: { type: http, url: \"http://h/\", signing_secret: \"${SECRET}\" }\n",
        "  a: { type: http, url: \"http://h/\", headers: { X-K: \"${SECRET}\" } }\n",
        "  a: { type: http, url: \"http://h/\", timeout: \"${SECRET}\" }\n",
        "  a: { type: \"${SECRET}\" }\n",
        "  a: { type: jsonl, path: \"${SECRET}\" }\n",
        "  a: { type: stdout, concurrency: \"${SECRET}\" }\n",
        "  a: { type: stdout, retry: { max: \"${SECRET}\" } }\n",
    ]);
    let routes = prop::sample::select(vec![
        "  - { name: r, when: {}, emit: event, to: [a] }\n",
        "  - { name: r, when: {}, emit: \"${SECRET}\", to: [a] }\n",
        "  - { name: r, when: {}, emit: event, to: [\"${SECRET}\"] }\n",
        "  - { name: r, when: { type: \"${SECRET}\" }, emit: event, to: [a] }\n",
    ]);
    let server = prop::sample::select(vec![
        "",
        "server: { listen: \"${SECRET}\" }\n",
        "server: { max_body: \"${SECRET}\" }\n",
        "server: { admin_listen: \"${SECRET}\" }\n",
        "stripe: { api_version: \"${SECRET}\" }\n",
    ]);
    (server, places, routes)
        .prop_map(|(server, sink, route)| format!("{server}sinks:\n{sink}routes:\n{route}"))
}

/// Secrets of the shapes that end up in configs.
fn secret_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "whsec_[A-Za-z0-9+/]{8,32}",
        "sk_live_[A-Za-z0-9]{8,24}",
        "https://user:[a-z0-9]{8,16}@example\\.com/x\\?token=[a-z0-9]{8}",
        "[!-~]{8,24}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn verify_never_panics(body in body(), header in header(), now in any::<i64>()) {
        let _ = verify(&body, &header, &secrets(), now, TOLERANCE);
    }

    #[test]
    fn a_signed_body_verifies_and_any_one_change_is_refused(
        body in body(),
        mutation in mutation(),
        skew in -300i64..=300,
    ) {
        let header = sign(&body, SECRET, T);
        prop_assert_eq!(verify(&body, &header, &secrets(), T + skew, TOLERANCE), Ok(()));
        if let Some(changed) = mutation.apply(&body) {
            prop_assume!(changed != body);
            prop_assert_eq!(
                verify(&changed, &header, &secrets(), T + skew, TOLERANCE),
                Err(SignatureError::NoMatchingSignature { secrets: 1 })
            );
        }
    }

    #[test]
    fn a_signature_for_another_timestamp_is_refused(body in body(), shift in 1i64..=1_000_000) {
        // The timestamp is signed: moving it, even within the tolerance,
        // breaks the signature.
        let signature = sign(&body, SECRET, T);
        let v1 = signature.split_once(",v1=").map(|(_, v1)| v1).unwrap_or_default();
        for t in [T + shift, T - shift] {
            let moved = format!("t={t},v1={v1}");
            prop_assert_eq!(
                verify(&body, &moved, &secrets(), t, TOLERANCE),
                Err(SignatureError::NoMatchingSignature { secrets: 1 })
            );
        }
    }

    #[test]
    fn event_parsers_never_panic_on_bytes(body in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = Event::head(&body);
        let _ = Event::parse(&body);
    }

    #[test]
    fn event_head_accepts_exactly_what_parse_accepts(
        value in event_like(),
        mutation in prop::option::of(mutation()),
    ) {
        let mut body = serde_json::to_vec_pretty(&value).expect("serializable");
        if let Some(changed) = mutation.and_then(|m| m.apply(&body)) {
            body = changed;
        }
        let head = Event::head(&body);
        let parsed = Event::parse(&body);
        match (&head, &parsed) {
            (Ok(head), Ok(event)) => {
                prop_assert_eq!(&head.id, &event.id);
                prop_assert_eq!(&head.kind, &event.kind);
            }
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "head {:?} but parse {:?}", head, parsed.map(|e| e.id)),
        }
    }

    #[test]
    fn a_pruned_parse_accepts_exactly_what_parse_accepts(
        value in event_like(),
        mutation in prop::option::of(mutation()),
    ) {
        let mut body = serde_json::to_vec_pretty(&value).expect("serializable");
        if let Some(changed) = mutation.and_then(|m| m.apply(&body)) {
            body = changed;
        }
        let mut keep = Event::keep();
        crate::routing::record::keep_order(&mut keep);
        keep.path("data.object.items.0.name");
        let pruned = Event::parse_keeping(&body, &keep);
        let whole = Event::parse(&body);
        match (&pruned, &whole) {
            (Ok(pruned), Ok(whole)) => {
                for path in ["/id", "/type", "/created", "/data/object/metadata",
                    "/data/object/id", "/data/object/items/0/name"] {
                    prop_assert_eq!(pruned.raw.pointer(path), whole.raw.pointer(path));
                }
            }
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "pruned {:?} but whole {:?}",
                pruned.as_ref().map(|e| &e.id), whole.as_ref().map(|e| &e.id)),
        }
    }

    #[test]
    fn config_parse_never_panics(text in config_text()) {
        let env = Env::from_map([("SECRET", "s3cr3t")]);
        let _ = Config::parse(&text, Path::new("routes.yaml"), &env);
    }

    #[test]
    fn config_parse_never_panics_on_any_text(text in any::<String>()) {
        let _ = Config::parse(&text, Path::new("routes.yaml"), &Env::empty());
    }

    #[test]
    fn config_errors_never_repeat_an_interpolated_secret(
        text in config_with_secret(),
        secret in secret_value(),
    ) {
        let env = Env::from_map([("SECRET", secret.as_str())]);
        if let Err(error) = Config::parse(&text, Path::new("routes.yaml"), &env) {
            let shown = error.to_string();
            prop_assert!(!shown.contains(&secret), "{}", shown);
        }
    }
}
