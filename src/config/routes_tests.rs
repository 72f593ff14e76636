//! Tests of the `sinks:` and `routes:` checks: names that fit record ids, the keys a sink takes.

use super::super::test_support::check_errors;

#[test]
fn route_and_sink_names_fit_in_record_ids() {
    check_errors(
        "sinks:\n  a.b: { type: stdout }\n  \"ship to: us\": { type: stdout }\n  ok_name-2: { type: stdout }\nroutes:\n  - name: paid.orders\n    when: {}\n    emit: event\n    to: [a.b, \"ship to: us\", ok_name-2]\n  - name: \"..\"\n    when: {}\n    emit: event\n    to: ok_name-2\n",
        &[
            (
                "routes.yaml:2:3",
                &["sink name `a.b` may only hold", "e.g. `a-b`"],
            ),
            (
                "routes.yaml:3:3",
                &["sink name `ship to: us`", "e.g. `ship-to-us`"],
            ),
            (
                "routes.yaml:6:11",
                &[
                    "route name `paid.orders` may only hold ASCII letters, digits, `-` and `_`",
                    "e.g. `paid-orders`",
                ],
            ),
            ("routes.yaml:10:11", &["route name `..`", "e.g. `route`"]),
        ],
    );
}

#[test]
fn the_keys_every_sink_takes_are_read_from_their_struct() {
    assert_eq!(
        super::super::problems::struct_keys::<crate::sinks::Common>(),
        ["retry", "concurrency"]
    );
}

#[test]
fn an_unknown_sink_key_lists_the_type_keys_and_the_common_ones() {
    check_errors(
        "sinks:\n  a: { type: stdout, colour: red }\n  b: { type: http, url: \"http://x/\", retries: 3 }\n  c: { type: stdout, retry: { initial: 1s, extra: 1 } }\n  d: { type: jsnl, retry: 5 }\n  e: { retry: 5, path: x }\nroutes: []\n",
        &[
            (
                "routes.yaml:2:22",
                &["unknown field `colour` in sink `a` (expected `retry` or `concurrency`)"],
            ),
            (
                "routes.yaml:3:38",
                &[
                    "unknown field `retries` in sink `b` (expected one of `url`, `headers`, \
                     `signing_secret`, `timeout`, `body`, `content_type`, `method`, `retry`, \
                     `concurrency`)",
                ],
            ),
            // Inside `retry`, only its own keys.
            (
                "routes.yaml:4:6",
                &[
                    "unknown field `extra` in sink `c` (expected one of `initial`, `max`, `max_age`)",
                ],
            ),
            // A wrong or missing type is the one problem said.
            (
                "routes.yaml:5:14",
                &["unknown sink type `jsnl` in sink `d`"],
            ),
            ("routes.yaml:6:6", &["sink `e` has no `type`"]),
        ],
    );
}
