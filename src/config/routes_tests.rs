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
