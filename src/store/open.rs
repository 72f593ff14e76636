//! Opening the journal that `store:` names: the SQLite file at
//! `store.path`, or the PostgreSQL database at `store.url`. `serve`, the
//! operator commands (`deadletters`, `replay`, `store migrate`) and the
//! tests all open it here, so they agree on which journal it is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CommitObserver, PostgresOptions, PostgresStore, SqliteStore, Store, StoreError};
use crate::config::StoreConfig;

/// Who opens the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `serve`: creates a SQLite journal; on PostgreSQL holds leases and
    /// listens for wake-ups.
    Serve,
    /// An operator command: a SQLite journal must exist already (the
    /// server creates it); on PostgreSQL nothing runs in the background.
    Operate,
}

/// The SQLite file `config` names, or `None` on PostgreSQL.
pub fn sqlite_path(config: &StoreConfig, base_dir: &Path) -> Option<PathBuf> {
    config.url.is_none().then(|| config.path_in(base_dir))
}

/// The journal as messages name it: the SQLite path, or the URL redacted.
pub fn describe(config: &StoreConfig, base_dir: &Path) -> String {
    match &config.url {
        Some(url) => url.shown(),
        None => config.path_in(base_dir).display().to_string(),
    }
}

/// Opens the journal `config` names (relative paths against `base_dir`),
/// telling `observer` about every transaction.
pub async fn open(
    config: &StoreConfig,
    base_dir: &Path,
    purpose: Purpose,
    observer: Option<Arc<dyn CommitObserver>>,
) -> Result<Arc<dyn Store>, StoreError> {
    match &config.url {
        Some(url) => {
            let target = url.target().map_err(|reason| StoreError::Postgres {
                url: url.shown(),
                reason: format!("`store.url` {reason}"),
            })?;
            let options = PostgresOptions {
                pool_size: config.pool_size as usize,
                lease: config.lease,
                observer,
                background: purpose == Purpose::Serve,
            };
            Ok(Arc::new(PostgresStore::connect(&target, options).await?))
        }
        None => {
            let path = config.path_in(base_dir);
            if purpose == Purpose::Operate && !path.exists() {
                return Err(StoreError::Missing {
                    path: path.display().to_string(),
                });
            }
            let (fsync, wal_limit) = (config.fsync, config.wal_limit);
            let opened = tokio::task::spawn_blocking(move || {
                SqliteStore::open_observed(&path, fsync, wal_limit, observer)
            })
            .await
            .map_err(|_| StoreError::Stopped)??;
            Ok(Arc::new(opened))
        }
    }
}

/// Brings the journal `config` names to this binary's schema version,
/// creating a SQLite journal that does not exist yet: the version before
/// and after.
pub async fn migrate(config: &StoreConfig, base_dir: &Path) -> Result<(u32, u32), StoreError> {
    match &config.url {
        Some(url) => {
            let target = url.target().map_err(|reason| StoreError::Postgres {
                url: url.shown(),
                reason: format!("`store.url` {reason}"),
            })?;
            PostgresStore::migrate(&target).await
        }
        None => {
            let path = config.path_in(base_dir);
            tokio::task::spawn_blocking(move || SqliteStore::migrate(&path))
                .await
                .map_err(|_| StoreError::Stopped)?
        }
    }
}
