use super::*;

#[tokio::test]
async fn makes_a_secret_once_and_keeps_what_the_file_had() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env.local");
    std::fs::write(&path, "SHIPPING_TOKEN=abc").unwrap();

    let (env, offline) = start(dir.path(), Env::empty()).await.unwrap();
    assert_eq!(offline.secret, SecretSource::Generated(path.clone()));
    let secret = env.get("STRIPE_WEBHOOK_SECRET").unwrap();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 30,
        "{secret}"
    );
    assert_eq!(env.get("STRIPE_SECRET_API_KEY").as_deref(), Some(API_KEY));
    assert_eq!(
        env.get("STRIPE_API_BASE").as_deref(),
        Some(offline.api_base().as_str().trim_end_matches('/'))
    );

    // What `send` in this folder reads: the old key kept, the secret added.
    let reread = Env::load_over(Default::default(), dir.path()).unwrap();
    assert_eq!(reread.get("SHIPPING_TOKEN").as_deref(), Some("abc"));
    assert_eq!(reread.get("STRIPE_WEBHOOK_SECRET"), Some(secret.clone()));

    // Once there, it is used, not made again.
    let (again, offline) = start(dir.path(), reread).await.unwrap();
    assert_eq!(offline.secret, SecretSource::Existing);
    assert_eq!(again.get("STRIPE_WEBHOOK_SECRET"), Some(secret));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches("STRIPE_WEBHOOK_SECRET=").count(), 1, "{text}");
}

#[tokio::test]
async fn a_new_env_local_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    start(dir.path(), Env::empty()).await.unwrap();
    let mode = std::fs::metadata(dir.path().join(".env.local"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
