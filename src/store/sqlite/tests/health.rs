//! The journal's health when its disk fills up and frees again.

use std::time::Duration;

use super::event;
use crate::store::{Journaled, SqliteStore, Store};

/// A 1 MiB tmpfs at a temporary folder, unmounted on drop; None (the
/// test says it was skipped) without the root a mount needs.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount() -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            .then_some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_shows_in_health_until_there_is_room_again() {
    let Some(disk) = SmallDisk::mount() else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let store = SqliteStore::open(&disk.0.path().join("journal.db"), true, 256 << 10).unwrap();
    store.journal(event("evt_before")).await.unwrap();
    store.health().await.unwrap();

    let ballast = disk.0.path().join("ballast");
    let mut file = std::fs::File::create(&ballast).unwrap();
    while std::io::Write::write_all(&mut file, &[0; 64 * 1024]).is_ok() {}
    drop(file);
    let mut n = 0;
    while store.journal(event(&format!("evt_full_{n}"))).await.is_ok() {
        n += 1;
        assert!(n < 1000, "the disk never filled up");
    }
    let unhealthy = store.health().await.unwrap_err().to_string();
    assert!(unhealthy.contains("disk is full"), "{unhealthy}");

    // With room again, health comes back by itself: no event arrives.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = store.health().await {
        assert!(std::time::Instant::now() < deadline, "still unhealthy: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        store.journal(event("evt_after")).await.unwrap(),
        Journaled::Inserted
    );
}
