//! One `serve` per journal: a lock file beside the database
//! (`<journal>.lock`) held with an advisory lock for as long as the router
//! runs, holding its pid and listen address for the message a second
//! `serve` gets.
//!
//! The lock, not the file, is what counts: the operating system lets it go
//! when the process ends however it ends, so a file left by a crash is no
//! obstacle. The file is never removed (removing it would let a third
//! process lock a new file while a second still holds the old one).
//! `deadletters` and `replay` do not take it: they are meant to run while
//! the router serves, and SQLite keeps their writes apart.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Held while it lives; dropping it (or the process ending) lets it go.
#[derive(Debug)]
pub struct ServeLock {
    file: File,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another stripe-router serve ({holder}) is using the journal {journal}: stop it first, \
         or give this one its own journal (`store.path` in routes.yaml)"
    )]
    Held { journal: String, holder: String },
    #[error(
        "cannot lock the journal with {path}: {source}; serve needs to write beside the \
         journal (check the folder's permissions, or choose another `store.path`)"
    )]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ServeLock {
    /// Locks the journal at `journal` for this process, or says who holds
    /// it. Creates the journal's folder (private, as the journal does).
    pub fn acquire(journal: &Path) -> Result<ServeLock, LockError> {
        use std::os::unix::fs::DirBuilderExt as _;
        let mut name = journal.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = journal.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io)?;
        }
        // Not truncated on open: until the lock is ours, what is in it is
        // the holder's.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut said = String::new();
                // Bounded: the holder writes one short line.
                let _ = (&mut file).take(1024).read_to_string(&mut said);
                return Err(LockError::Held {
                    journal: journal.display().to_string(),
                    holder: describe(&said),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let lock = ServeLock {
            file,
            path: path.clone(),
        };
        lock.write(&format!("pid {}", std::process::id()))
            .map_err(io)?;
        Ok(lock)
    }

    /// Records the address this router listens on, for the message a
    /// second `serve` gets.
    pub fn announce(&self, listen: SocketAddr) -> Result<(), LockError> {
        self.write(&format!("pid {} listening on {listen}", std::process::id()))
            .map_err(|source| LockError::Io {
                path: self.path.display().to_string(),
                source,
            })
    }

    fn write(&self, line: &str) -> std::io::Result<()> {
        let mut file = &self.file;
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(format!("{line}\n").as_bytes())
    }
}

/// What the holder wrote, as shown in the message: one line of printable
/// text, or that it has not said yet.
fn describe(said: &str) -> String {
    let line: String = said
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if line.trim().is_empty() {
        "starting, its pid not written yet".to_owned()
    } else {
        line.trim().to_owned()
    }
}

#[cfg(test)]
#[path = "lock_tests.rs"]
mod tests;
