//! The SQLite journal's schema versions: an ordered list of SQL steps,
//! `PRAGMA user_version` the number applied. Step 1 is the schema every
//! journal had before versions (all `IF NOT EXISTS`), so a journal written
//! by an older router is brought to version 1 in place. Steps run under
//! SQLite's write lock (`BEGIN IMMEDIATE`), so two processes opening one
//! journal at once apply each step once; a journal newer than this binary
//! is refused.

use rusqlite::Connection;

use super::schema;
use crate::store::StoreError;

/// The steps, oldest first: step `n` (1-based) brings the journal from
/// version `n - 1` to `n`. Append new steps; never edit a released one.
pub(super) fn steps() -> Vec<String> {
    vec![schema::schema()]
}

/// The version this binary writes.
pub fn latest() -> u32 {
    steps().len() as u32
}

/// Applies the missing steps in one transaction; the version before and
/// after.
pub(super) fn migrate(connection: &mut Connection, path: &str) -> Result<(u32, u32), StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let tx = connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(open_err)?;
    let before: u32 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(open_err)?;
    let steps = steps();
    let latest = steps.len() as u32;
    if before > latest {
        return Err(StoreError::TooNew {
            store: path.to_owned(),
            found: before,
            known: latest,
        });
    }
    for step in &steps[before as usize..] {
        tx.execute_batch(step).map_err(open_err)?;
    }
    if before != latest {
        tx.pragma_update(None, "user_version", latest)
            .map_err(open_err)?;
    }
    tx.commit().map_err(open_err)?;
    Ok((before, latest))
}

/// The version of the journal at `path`, without changing it (0: none).
pub fn version(connection: &Connection) -> Result<u32, rusqlite::Error> {
    connection.query_row("PRAGMA user_version", [], |row| row.get(0))
}
