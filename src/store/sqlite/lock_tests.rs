use super::*;

#[test]
fn a_second_lock_on_the_journal_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j.db");
    let first = ServeLock::acquire(&journal).expect("the first lock");
    first.announce("127.0.0.1:4242".parse().unwrap()).unwrap();
    let err = ServeLock::acquire(&journal).expect_err("a second lock");
    let message = err.to_string();
    assert!(
        message.contains(&format!("pid {}", std::process::id()))
            && message.contains("127.0.0.1:4242")
            && message.contains("j.db"),
        "{message}"
    );
    drop(first);
    ServeLock::acquire(&journal).expect("free again once dropped");
}

#[test]
fn a_file_left_behind_is_no_obstacle() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j.db");
    std::fs::write(
        dir.path().join("j.db.lock"),
        "pid 1 listening on 127.0.0.1:1\n",
    )
    .unwrap();
    let lock = ServeLock::acquire(&journal).expect("a stale file is not a lock");
    drop(lock);
    let text = std::fs::read_to_string(dir.path().join("j.db.lock")).unwrap();
    assert_eq!(text, format!("pid {}\n", std::process::id()));
}
