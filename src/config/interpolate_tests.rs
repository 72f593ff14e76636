//! Tests of `${VAR}` interpolation: values only, escapes, secrets never echoed in problems.

use std::path::Path;

use super::super::Config;
use super::super::env::Env;
use super::super::test_support::{VALID_TAIL, check_errors, parse};

#[test]
fn interpolates_values_only_and_keeps_escapes() {
    let config = parse(&format!(
        "server:\n  path: '/hooks/${{PORT}}'\n  listen: \"127.0.0.1:${{PORT}}\"\nstripe:\n  max_attempts: ${{PORT}}\n  api_version: a$${{PORT}}b$x$\n{VALID_TAIL}"
    ));
    assert_eq!(config.server.path, "/hooks/8080");
    assert_eq!(config.server.listen.port(), 8080);
    assert_eq!(config.stripe.max_attempts, Some(8080));
    assert_eq!(config.stripe.api_version.as_deref(), Some("a${PORT}b$x$"));

    // Keys are not interpolated: `${PORT}` here is an unknown field.
    check_errors(
        &format!("server: {{ \"${{PORT}}\": 1 }}\n{VALID_TAIL}"),
        &[("routes.yaml:1:11", &["unknown field `${PORT}` in `server`"])],
    );
    check_errors(
        &format!("stripe: {{ api_version: \"${{NOT A NAME}}\" }}\n{VALID_TAIL}"),
        &[(
            "routes.yaml:1:25",
            &["`${NOT A NAME}` is not a variable name", "`$${`"],
        )],
    );
}

#[test]
fn problems_never_repeat_an_interpolated_secret() {
    let env = Env::from_map([("TOKEN", "sk_live_supersecret")]);
    let text = "sinks:\n  web: { type: http, url: \"${TOKEN}\" }\nroutes: []\n";
    let error = Config::parse(text, Path::new("routes.yaml"), &env).expect_err("bad url");
    let rendered = error.to_string();
    assert!(!rendered.contains("supersecret"), "{rendered}");
    assert!(
        rendered.starts_with("routes.yaml:2:27: invalid `url`"),
        "{rendered}"
    );
}
