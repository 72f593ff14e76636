use std::net::SocketAddr;

use super::*;

const GOOD: &str = "0123456789abcdef0123";

fn env(token: Option<&str>) -> Env {
    Env::from_map(token.map(|t| (TOKEN_VAR, t)))
}

fn on(addr: &str) -> AdminListen {
    AdminListen::On(addr.parse::<SocketAddr>().expect("address"))
}

#[test]
fn off_loopback_a_token_is_required() {
    let error = access(&env(None), on("0.0.0.0:9464")).expect_err("refused");
    let message = error.to_string();
    assert!(message.contains("server.admin_listen"), "{message}");
    assert!(message.contains(TOKEN_VAR), "{message}");
    assert!(
        access(&env(Some(GOOD)), on("0.0.0.0:9464"))
            .unwrap()
            .is_some()
    );
    assert!(access(&env(Some("   ")), on("[::]:1")).is_err());
}

#[test]
fn on_loopback_a_token_is_optional_but_enforced_when_set() {
    assert!(access(&env(None), on("127.0.0.1:9464")).unwrap().is_none());
    assert!(access(&env(None), AdminListen::Off).unwrap().is_none());
    assert!(access(&env(Some(GOOD)), on("[::1]:0")).unwrap().is_some());
}

#[test]
fn a_short_token_is_refused_without_quoting_it() {
    let error = access(&env(Some("hunter2")), on("127.0.0.1:0")).expect_err("short");
    assert_eq!(error, AccessError::TooShort { len: 7 });
    assert!(!error.to_string().contains("hunter2"));
}

#[test]
fn only_the_exact_bearer_token_passes() {
    let token = access(&env(Some(GOOD)), on("0.0.0.0:0")).unwrap().unwrap();
    let header = format!("Bearer {GOOD}");
    assert_eq!(check(&token, Some(header.as_bytes())), Some(true));
    let header = format!("bearer  {GOOD} ");
    assert_eq!(check(&token, Some(header.as_bytes())), Some(true));
    assert_eq!(
        check(&token, Some(b"Bearer 0123456789abcdef012")),
        Some(false)
    );
    assert_eq!(check(&token, Some(b"Bearer ")), Some(false));
    assert_eq!(check(&token, None), None);
    assert_eq!(check(&token, Some(GOOD.as_bytes())), None);
    let basic = format!("Basic {GOOD}");
    assert_eq!(check(&token, Some(basic.as_bytes())), None);
    assert!(!format!("{token:?}").contains(GOOD));
}
