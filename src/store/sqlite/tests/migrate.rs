//! The SQLite journal's schema versions: a fresh journal, a re-run, two
//! processes at once, a journal written before versions, and one newer
//! than this binary.

use super::super::SqliteStore;
use super::super::migrate::{latest, version};
use super::event;
use crate::store::{Store, StoreError};

#[test]
fn a_fresh_journal_is_migrated_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/journal.db");
    assert_eq!(SqliteStore::migrate(&path).unwrap(), (0, latest()));
    assert_eq!(SqliteStore::migrate(&path).unwrap(), (latest(), latest()));
}

#[test]
fn two_processes_migrating_at_once_apply_each_step_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || SqliteStore::migrate(&path).unwrap())
        })
        .collect();
    let mut outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    outcomes.sort();
    assert_eq!(outcomes, [(0, latest()), (latest(), latest())]);
}

#[tokio::test]
async fn a_journal_from_before_versions_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    {
        let store = SqliteStore::open(&path, true, 64 << 20).unwrap();
        store.journal(event("evt_old")).await.unwrap();
        let reader = store.reader.lock().unwrap();
        reader.execute_batch("PRAGMA user_version = 0").unwrap();
    }
    assert_eq!(SqliteStore::migrate(&path).unwrap(), (0, latest()));
    let store = SqliteStore::open(&path, true, 64 << 20).unwrap();
    assert_eq!(
        store.journal(event("evt_old")).await.unwrap(),
        crate::store::Journaled::Duplicate
    );
    let reader = store.reader.lock().unwrap();
    assert_eq!(version(&reader).unwrap(), latest());
}

#[test]
fn a_journal_newer_than_the_binary_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    SqliteStore::migrate(&path).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let error = SqliteStore::open(&path, true, 64 << 20).unwrap_err();
    assert!(matches!(error, StoreError::TooNew { found: 99, .. }));
    let message = error.to_string();
    assert!(
        message.contains("version 99") && message.contains(&format!("binary's {}", latest())),
        "{message}"
    );
}
