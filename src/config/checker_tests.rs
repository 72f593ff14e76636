//! Tests of the checker: every problem with its place, values serve would refuse, no secrets.

use std::path::Path;

use super::super::Config;
use super::super::env::Env;
use super::super::test_support::{VALID_TAIL, check_errors};

#[test]
fn broken_configs_report_every_problem_with_its_place() {
    // Three broken sinks and a route naming a missing one: four problems.
    check_errors(
        "sinks:\n  a: { type: jsnl, path: x }\n  b: { type: jsonl, pth: x }\n  c: { type: http, url: nope }\n  console: { type: stdout }\nroutes:\n  - name: r\n    when: {}\n    emit: order\n    to: [console, shipping]\n",
        &[
            (
                "routes.yaml:2:14",
                &[
                    "unknown sink type `jsnl` in sink `a`",
                    "jsonl, http, stdout",
                ],
            ),
            (
                "routes.yaml:3:21",
                &["unknown field `pth` in sink `b`", "expected one of `path`"],
            ),
            (
                "routes.yaml:4:25",
                &[
                    "invalid `url` in sink `c`",
                    "relative URL",
                    "http://127.0.0.1:4000",
                ],
            ),
            (
                "routes.yaml:10:19",
                &[
                    "route `r` sends to sink `shipping`, which is not defined",
                    "add it under `sinks:`",
                    "(defined: a, b, c, console)",
                ],
            ),
        ],
    );
    // Unknown keys at every level.
    check_errors(
        &format!("sevrer: {{}}\nserver: {{ lisen: 1 }}\n{VALID_TAIL}"),
        &[
            (
                "routes.yaml:1:1",
                &[
                    "unknown key `sevrer` at the top level",
                    "server, stripe, store, sinks, routes",
                ],
            ),
            (
                "routes.yaml:2:11",
                &["unknown field `lisen` in `server`", "`listen`"],
            ),
        ],
    );
    check_errors(
        "sinks:\n  console: { type: stdout, colour: true }\nroutes:\n  - name: r\n    when: {}\n    emit: event\n    to: console\n    too: [x]\n",
        &[
            (
                "routes.yaml:2:28",
                &[
                    "unknown field `colour` in sink `console`",
                    "expected `retry` or `concurrency`",
                ],
            ),
            (
                "routes.yaml:8:5",
                &["unknown field `too` in route `r`", "`to`"],
            ),
        ],
    );
    // Duplicate route names; duplicate sink keys; duplicate keys elsewhere.
    check_errors(
        &format!("{VALID_TAIL}  - name: all\n    when: {{}}\n    emit: event\n    to: console\n"),
        &[(
            "routes.yaml:8:11",
            &["route name `all` is used twice (first at routes.yaml:4:11)"],
        )],
    );
    check_errors(
        "sinks:\n  console: { type: stdout }\n  console: { type: jsonl, path: x }\nroutes:\n  - name: r\n    when: { type: a, type: b }\n    emit: event\n    to: console\n",
        &[
            (
                "routes.yaml:3:3",
                &["sink `console` is defined twice (first at routes.yaml:2:3)"],
            ),
            (
                "routes.yaml:6:22",
                &["duplicate key `type` (first at routes.yaml:6:13)"],
            ),
        ],
    );
    // Route fields missing or wrong.
    check_errors(
        "sinks: { console: { type: stdout } }\nroutes:\n  - when: {}\n    emit: order\n    to: []\n  - name: r\n    when: paid\n    emit: orders\n",
        &[
            ("routes.yaml:3:5", &["route #1 has no `name`"]),
            ("routes.yaml:5:9", &["route #1 sends to no sink"]),
            ("routes.yaml:6:5", &["route `r` has no `to`"]),
            ("routes.yaml:7:11", &["`when` in route `r` must be a map"]),
            (
                "routes.yaml:8:11",
                &["`emit` in route `r` must be `order` or `event`"],
            ),
        ],
    );
    // Bounds that would refuse every request.
    check_errors(
        &format!(
            "server:\n  max_connections: 0\n  read_timeout: 0s\n  max_body: 4MiB\n  body_buffer: 1MiB\n{VALID_TAIL}"
        ),
        &[
            (
                "routes.yaml:2:20",
                &["`server.max_connections` must be at least 1"],
            ),
            (
                "routes.yaml:3:17",
                &["`server.read_timeout` must be more than 0s"],
            ),
            (
                "routes.yaml:5:16",
                &[
                    "`server.body_buffer` (1048576 bytes) is less than `server.max_body` (4194304 bytes)",
                ],
            ),
        ],
    );
    check_errors(
        &format!("server: {{ max_body: 100MiB }}\n{VALID_TAIL}"),
        &[("routes.yaml:1:21", &["make body_buffer at least max_body"])],
    );
    // An address off loopback is the environment's business (a token,
    // `admin::auth`); the file alone only needs an address or `off`.
    check_errors(
        &format!("server:\n  admin_listen: localhost-ish\n{VALID_TAIL}"),
        &[(
            "routes.yaml:2:17",
            &[
                "invalid address `localhost-ish`",
                "`127.0.0.1:9464`, or `off`",
            ],
        )],
    );
    // Bad values in typed fields: every one, not only the first per section.
    check_errors(
        &format!(
            "server:\n  listen: localhost:3000\n  path: api/webhook\n  tolerance: 5 parsecs\nstripe:\n  timeout: 300\n  max_attempts: many\n{VALID_TAIL}"
        ),
        &[
            (
                "routes.yaml:2:11",
                &[
                    "invalid `listen` in `server`",
                    "invalid socket address",
                    "`127.0.0.1:3000`",
                ],
            ),
            (
                "routes.yaml:3:9",
                &["`server.path` must start with `/`: write `/api/webhook`"],
            ),
            (
                "routes.yaml:4:14",
                &[
                    "invalid `tolerance` in `server`",
                    "invalid duration `5 parsecs`",
                    "`300s`",
                ],
            ),
            (
                "routes.yaml:6:12",
                &[
                    "invalid `timeout` in `stripe`",
                    "invalid duration `300`",
                    "`300s`",
                ],
            ),
            (
                "routes.yaml:7:17",
                &["invalid `max_attempts` in `stripe`", "expected u32"],
            ),
        ],
    );
    check_errors(
        "sinks:\n  web:\n    type: http\n    url: ftp//x\n    timeout: soon\n    headers: { X-Count: 5 }\n  c: { path: x }\n  d: 5\n  e: { type: jsonl }\nroutes: []\n",
        &[
            (
                "routes.yaml:4:10",
                &["invalid `url` in sink `web`", "relative URL without a base"],
            ),
            (
                "routes.yaml:5:14",
                &["invalid `timeout` in sink `web`", "invalid duration `soon`"],
            ),
            (
                "routes.yaml:6:14",
                &[
                    "invalid `headers` in sink `web`",
                    "expected a string (put the value in quotes)",
                ],
            ),
            (
                "routes.yaml:7:6",
                &["sink `c` has no `type`: add one, e.g. `type: jsonl`"],
            ),
            ("routes.yaml:8:6", &["sink `d` must be a map with a `type`"]),
            ("routes.yaml:9:6", &["sink `e` has no `path`: add it"]),
        ],
    );
    // Empty, comment-only, document-marker-only, not a map.
    for empty in ["", "\n  \n", "# only\n\n  # comments\n", "---\n", "~\n"] {
        check_errors(empty, &[("routes.yaml", &["the config is empty"])]);
    }
    check_errors(
        "- a\n",
        &[(
            "routes.yaml:1:1",
            &["must be a map with `sinks:` and `routes:`"],
        )],
    );
    check_errors(
        "sinks: { console: { type: stdout } }\n",
        &[("routes.yaml:1:1", &["no `routes:`"])],
    );
    check_errors(
        "sinks: { console: { type: stdout } }\nroutes:\n",
        &[("routes.yaml:2:7", &["`routes` must be a list"])],
    );
    // Truncated mid-write: broken syntax is reported with its place and
    // a hint; a half-written route is incomplete, not silently smaller.
    check_errors(
        &VALID_TAIL.replace("to: console\n", "to: [cons"),
        &[(
            "routes.yaml:7:9",
            &[
                "unclosed bracket",
                "the file does not end with a newline: was it cut short",
            ],
        )],
    );
    check_errors(
        &VALID_TAIL[..VALID_TAIL.len() - 4],
        &[("routes.yaml:7:9", &["sink `cons`, which is not defined"])],
    );
    let text = format!("{VALID_TAIL}  - name: second\n    when: {{ type: a }}\n    emi");
    check_errors(
        &text,
        &[("routes.yaml:10:5", &["expected ':'", "was it cut short"])],
    );
    check_errors(
        &format!("{VALID_TAIL}  - name: second\n    when: {{ type: a }}\n    emit: ev"),
        &[
            ("routes.yaml:8:5", &["route `second` has no `to`"]),
            (
                "routes.yaml:10:11",
                &["`emit` in route `second` must be `order` or `event`"],
            ),
        ],
    );
    // An unset variable, with its place inside the value.
    check_errors(
        "sinks:\n  web:\n    type: http\n    url: http://127.0.0.1:4000/orders\n    headers: { Authorization: \"Bearer ${SHIPPING_TOKEN} ${MISSING}\" }\nroutes: []\n",
        &[(
            "routes.yaml:5:57",
            &["${MISSING} is not set: export it or put it in .env"],
        )],
    );
}

#[test]
fn values_serve_would_refuse_are_refused_with_their_place() {
    check_errors(
        "stripe: { api_version: \"2024\\u0001\" }\nsinks:\n  web:\n    type: http\n    url: ftp://x/y\n    signing_secret: whsec_not base64!\n    timeout: 0s\n    headers: { Host: x }\n  bare:\n    type: http\n    url: http://x/\n    signing_secret: C2FVsBQIhrscChlQIMV+b5sSYspob7oD\n  file: { type: jsonl, path: sinks/ }\nroutes: []\n",
        &[
            (
                "routes.yaml:1:24",
                &["invalid `api_version` in `stripe`", "`2024-06-20`"],
            ),
            (
                "routes.yaml:5:10",
                &[
                    "invalid `url` in sink `web`",
                    "scheme `ftp`",
                    "http or https",
                ],
            ),
            (
                "routes.yaml:6:21",
                &[
                    "invalid `signing_secret` in sink `web`",
                    "`whsec_` followed by",
                ],
            ),
            (
                "routes.yaml:7:14",
                &["invalid `timeout` in sink `web`", "more than zero"],
            ),
            (
                "routes.yaml:8:14",
                &[
                    "invalid `headers` in sink `web`",
                    "`Host` is set by the sink",
                ],
            ),
            (
                "routes.yaml:12:21",
                &["invalid `signing_secret` in sink `bare`", "`whsec_`"],
            ),
            (
                "routes.yaml:13:30",
                &["invalid `path` in sink `file`", "names a folder"],
            ),
        ],
    );
}

#[test]
fn problems_never_repeat_a_secret_written_in_the_file() {
    let text = "sinks:\n  a: { type: http, url: \"http://user:hunter2secret@host:99999/x?token=tok_leak\" }\n  b: { type: http, url: \"http://x/\", signing_secret: \"whsec_sup3r secret\", headers: { X-Key: \"sk_live_leak\\nx\" } }\n  c: { type: http, url: \"https://u:pw@ho st/?token=tok_leak\" }\nroutes: []\n";
    let error = Config::parse(text, Path::new("routes.yaml"), &Env::empty())
        .expect_err("every sink is broken");
    let rendered = error.to_string();
    assert_eq!(error.problems.len(), 4, "{rendered}");
    for secret in ["hunter2secret", "tok_leak", "sup3r", "sk_live_leak", "pw@"] {
        assert!(!rendered.contains(secret), "`{secret}` in\n{rendered}");
    }
}

#[test]
fn store_url_is_checked_at_its_key_without_its_password() {
    // Both: the path is the one too many.
    check_errors(
        &format!("store:\n  path: x.db\n  url: postgres://u:hunter22@db/orders\n{VALID_TAIL}"),
        &[(
            "routes.yaml:2:3",
            &["`store.path` and `store.url` exclude each other"],
        )],
    );
    check_errors(
        &format!("store:\n  url: mysql://u:hunter22@db/orders\n{VALID_TAIL}"),
        &[(
            "routes.yaml:2:3",
            &["`store.url` must start with `postgres://`"],
        )],
    );
    check_errors(
        &format!(
            "store:\n  url: postgres://u:hunter22@db/orders?sslmode=sometimes\n  pool_size: 0\n  lease: 1h\n{VALID_TAIL}"
        ),
        &[
            ("routes.yaml:2:3", &["unknown `sslmode=sometimes`"]),
            (
                "routes.yaml:3:3",
                &["`store.pool_size` must be between 1 and 256"],
            ),
            (
                "routes.yaml:4:3",
                &["`store.lease` must be between 500ms and 10m"],
            ),
        ],
    );
    let error = Config::parse(
        &format!("store:\n  url: postgres://u:hunter22@db:x/orders\n{VALID_TAIL}"),
        Path::new("routes.yaml"),
        &super::super::test_support::env(),
    )
    .unwrap_err()
    .to_string();
    assert!(!error.contains("hunter22"), "{error}");
}

#[test]
fn a_store_url_from_the_environment_is_read_and_an_unset_one_allowed_by_no_env() {
    let text = format!("store:\n  url: ${{DATABASE_URL}}\n  pool_size: 4\n{VALID_TAIL}");
    let env = Env::from_map([("DATABASE_URL", "postgres://router:pw@db.internal/orders")]);
    let config = Config::parse(&text, Path::new("routes.yaml"), &env).unwrap();
    let url = config.store.url.as_ref().unwrap();
    assert_eq!(url.target().unwrap().config.get_dbname(), Some("orders"));
    assert_eq!(config.store.pool_size, 4);
    let checked = Config::check(
        &text,
        Path::new("routes.yaml"),
        &Env::default(),
        super::super::UnsetVars::Allowed,
    );
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    assert_eq!(checked.unset_vars, ["DATABASE_URL"]);
}
