//! What the config's unit tests share: an environment, parsing that must
//! succeed, and the exact problems a broken config must report.

use std::path::Path;

use super::Config;
use super::env::Env;

pub fn env() -> Env {
    Env::from_map([
        ("SHIPPING_TOKEN", "tok_123"),
        ("SIGNING", "whsec_c2VjcmV0"),
        ("PORT", "8080"),
    ])
}

#[track_caller]
pub fn parse(text: &str) -> Config {
    Config::parse(text, Path::new("routes.yaml"), &env()).unwrap_or_else(|e| panic!("{e}"))
}

/// Asserts the exact problems, in file order: (place, message fragments).
#[track_caller]
pub fn check_errors(text: &str, expected: &[(&str, &[&str])]) {
    let error = match Config::parse(text, Path::new("routes.yaml"), &env()) {
        Ok(config) => panic!("parsed, expected errors:\n{text}\n{config:#?}"),
        Err(e) => e,
    };
    let got: Vec<_> = error.problems.iter().map(ToString::to_string).collect();
    assert_eq!(error.problems.len(), expected.len(), "{text}\n{got:#?}");
    for (problem, (place, fragments)) in error.problems.iter().zip(expected) {
        assert_eq!(&problem.place, place, "{text}\n{got:#?}");
        for fragment in *fragments {
            assert!(
                problem.message.contains(fragment),
                "`{fragment}` not in {problem}\n{got:#?}"
            );
        }
    }
}

pub const VALID_TAIL: &str = "sinks:\n  console: { type: stdout }\nroutes:\n  - name: all\n    when: { type: \"*\" }\n    emit: event\n    to: console\n";
