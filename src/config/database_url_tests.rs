use super::*;

#[test]
fn a_plain_url_is_plain_tcp() {
    let target = parse("postgres://router:s3cret@127.0.0.1:5432/orders").unwrap();
    assert_eq!(target.tls, Tls::Off);
    assert_eq!(target.config.get_dbname(), Some("orders"));
    assert_eq!(target.config.get_user(), Some("router"));
    assert!(!target.shown.contains("s3cret"), "{}", target.shown);
}

#[test]
fn sslmode_require_and_verify_full_ask_for_tls() {
    for mode in ["require", "verify-ca", "verify-full"] {
        let target = parse(&format!("postgresql://u:p@db.example/x?sslmode={mode}")).unwrap();
        assert_eq!(target.tls, Tls::On { root_cert: None }, "{mode}");
    }
    let target =
        parse("postgres://u@db.example/x?sslmode=verify-full&sslrootcert=/etc/ca.pem").unwrap();
    assert_eq!(
        target.tls,
        Tls::On {
            root_cert: Some(PathBuf::from("/etc/ca.pem"))
        }
    );
}

#[test]
fn bad_urls_are_refused_without_their_password() {
    for (url, says) in [
        ("", "is empty"),
        ("mysql://u:hunter22@h/db", "must start with `postgres://`"),
        (
            "postgres://u:hunter22@h/db?sslmode=always",
            "unknown `sslmode=always`",
        ),
        ("postgres://u:hunter22@h", "names no database"),
        ("postgres://u:hunter22@h:notaport/db", "is not a URL"),
        ("postgres://u:hunter22@h/db?sslrootcert=/x", "without TLS"),
    ] {
        let error = parse(url).unwrap_err();
        assert!(error.contains(says), "{url}: {error}");
        assert!(!error.contains("hunter22"), "{url}: {error}");
    }
}

#[test]
fn debug_shows_no_password() {
    let url = DatabaseUrl::new("postgres://u:hunter22@h/db");
    assert!(!format!("{url:?}").contains("hunter22"));
    assert!(!url.shown().contains("hunter22"));
}
