//! The [`Store`] on PostgreSQL: one journal shared by any number of
//! `serve` replicas (`store.url`).
//!
//! - `connect`: TLS, the bounded pool, timeouts, errors an operator can act
//!   on (never the password).
//! - `migrate`: versioned schema under an advisory lock.
//! - `journal`: group commit of concurrent `journal` calls, one multi-row
//!   `INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id` per batch, so
//!   the unique id decides which replica acknowledges an event as new.
//! - `writes`: routing passes, settles, replays, pruning.
//! - `reads`: due scans that claim rows under a lease (`FOR UPDATE SKIP
//!   LOCKED`), dead letters, depths; `browse`: the admin API's pages.
//! - `lease`: the replica's background work: renewing the leases of the
//!   rows it holds, and `LISTEN stripe_router_due` to wake the scans.
//!
//! Leases: a row an event or delivery that a replica journaled, built or
//! claimed carries `lease_owner` (this process's random replica id) and
//! `lease_until` (the database's clock, so replicas' clocks may differ).
//! While the process lives it renews the leases of the rows it holds, so a
//! slow delivery is never taken over; a row is released (owner cleared)
//! when it is settled, routed or failed. Another replica's scan takes a row
//! only once its lease ended: its holder died (kill -9) or lost the
//! database. The holder's own scans take its rows as SQLite's do, once due
//! (`next_attempt_at`: creation plus the lease for a fresh row).

/// The database's clock in unix milliseconds, for `concat!`: leases are
/// on one clock, whatever the replicas' own say.
macro_rules! db_now {
    () => {
        "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT"
    };
}

mod browse;
mod connect;
mod group;
mod journal;
mod lease;
pub mod migrate;
mod passes;
mod reads;
mod settle;
#[cfg(test)]
pub mod testing;
mod writes;

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "batch_tests.rs"]
mod batch_tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::database_url::Target;
use crate::store::{
    CommitObserver, DeadLetter, DeadLetterPage, DeadLetterQuery, Depths, EventDetail, EventPage,
    EventQuery, Filter, Journaled, LEASE_MS, NewEvent, PendingDelivery, PendingEvent, Routing,
    Settle, Store, StoreError, StoreFuture,
};

/// The channel every replica listens on and notifies when rows became due
/// now (a replay, a reroute) for another replica's scans.
pub const CHANNEL: &str = "stripe_router_due";

/// How a [`PostgresStore`] runs.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The most connections the pool opens (`store.pool_size`).
    pub pool_size: usize,
    /// How long a row belongs to the replica that journaled, built or
    /// claimed it without a renewal; also how late a dead replica's rows
    /// are taken over. Default [`LEASE_MS`].
    pub lease: Duration,
    /// Told about every transaction (metrics).
    pub observer: Option<Arc<dyn CommitObserver>>,
    /// Renew leases and `LISTEN` for wake-ups: what `serve` needs; the
    /// operator commands (`deadletters`, `replay`, `store migrate`) hold
    /// no rows and need neither.
    pub background: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 16,
            lease: Duration::from_millis(LEASE_MS as u64),
            observer: None,
            background: true,
        }
    }
}

/// What the store's tasks share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) pool: Pool,
    /// The URL, redacted: for errors.
    pub(super) url: String,
    /// This process's replica id: `lease_owner` of the rows it holds.
    pub(super) owner: String,
    pub(super) lease_ms: i64,
    pub(super) observer: Option<Arc<dyn CommitObserver>>,
}

impl Shared {
    /// A pooled connection, or why there is none.
    pub(super) async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| connect::pool_error(&self.url, e))
    }

    pub(super) fn error(&self, e: &tokio_postgres::Error) -> StoreError {
        connect::error(&self.url, e)
    }

    /// Tells the observer about one transaction.
    pub(super) fn committed(&self, writes: usize, started: Instant, ok: bool) {
        if let Some(observer) = &self.observer {
            observer.committed(writes, started.elapsed(), ok);
        }
    }
}

/// The journal on PostgreSQL; see the module's documentation.
pub struct PostgresStore {
    shared: Arc<Shared>,
    journal: mpsc::UnboundedSender<journal::Job>,
    settles: mpsc::UnboundedSender<settle::Job>,
    passes: mpsc::UnboundedSender<passes::Job>,
    wake: watch::Receiver<u64>,
    /// The background tasks stop when the store is dropped.
    _tasks: DropGuard,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.shared.url)
            .field("owner", &self.shared.owner)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database of `target`, brings its schema to this
    /// binary's version (refusing a newer one) and starts the journal's
    /// group commit and, with `options.background`, lease renewal and
    /// `LISTEN`. A wrong URL, password or database name, or a server
    /// that is down, is an error here, said without the password.
    pub async fn connect(
        target: &Target,
        options: PostgresOptions,
    ) -> Result<PostgresStore, StoreError> {
        let pool = connect::pool(target, options.pool_size)?;
        let lease_ms = i64::try_from(options.lease.as_millis())
            .unwrap_or(LEASE_MS)
            .max(1);
        let shared = Arc::new(Shared {
            pool,
            url: target.shown.clone(),
            owner: replica_id(),
            lease_ms,
            observer: options.observer,
        });
        // The first connection says whether the URL, the password and the
        // database are right; then the schema.
        {
            let mut client = shared.client().await?;
            migrate::migrate(&mut client)
                .await
                .map_err(|e| migrate_error(&shared.url, e))?;
        }
        let tasks = CancellationToken::new();
        let (wake_tx, wake) = watch::channel(0u64);
        let journal = journal::start(shared.clone(), tasks.clone());
        let settles = settle::start(shared.clone(), tasks.clone());
        let passes = passes::start(shared.clone(), tasks.clone());
        if options.background {
            tokio::spawn(lease::renew(shared.clone(), tasks.clone()));
            tokio::spawn(lease::listen(target.clone(), wake_tx, tasks.clone()));
        }
        Ok(PostgresStore {
            shared,
            journal,
            settles,
            passes,
            wake,
            _tasks: tasks.drop_guard(),
        })
    }

    /// Brings the database of `target` to this binary's schema version:
    /// `stripe-router store migrate`. The version before and after.
    pub async fn migrate(target: &Target) -> Result<(u32, u32), StoreError> {
        let mut client = connect::connect(target, None).await?;
        migrate::migrate(&mut client)
            .await
            .map_err(|e| migrate_error(&target.shown, e))
    }

    /// This process's replica id (`lease_owner` of the rows it holds).
    pub fn replica_id(&self) -> &str {
        &self.shared.owner
    }

    /// Runs `work` on a pooled connection, mapping driver errors.
    fn run<'a, T, F>(&'a self, work: F) -> StoreFuture<'a, T>
    where
        T: Send + 'a,
        F: for<'c> FnOnce(&'c Shared, &'c mut deadpool_postgres::Client) -> Work<'c, T> + Send + 'a,
    {
        let shared = self.shared.clone();
        Box::pin(async move {
            let mut client = shared.client().await?;
            work(&shared, &mut client)
                .await
                .map_err(|e| shared.error(&e))
        })
    }

    /// Runs one write transaction's work, telling the observer.
    fn write<'a, T, F>(&'a self, work: F) -> StoreFuture<'a, T>
    where
        T: Send + 'a,
        F: for<'c> FnOnce(&'c Shared, &'c mut deadpool_postgres::Client) -> Work<'c, T> + Send + 'a,
    {
        let shared = self.shared.clone();
        Box::pin(async move {
            let mut client = shared.client().await?;
            let started = Instant::now();
            let done = work(&shared, &mut client).await;
            shared.committed(1, started, done.is_ok());
            done.map_err(|e| shared.error(&e))
        })
    }
}

/// The work of one store call on one connection.
pub(super) type Work<'c, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send + 'c>>;

/// A random id for this process: the `lease_owner` of the rows it holds.
fn replica_id() -> String {
    use rand::Rng as _;
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(32)
        .collect();
    let n: u64 = rand::rng().random();
    if host.is_empty() {
        format!("{n:016x}")
    } else {
        format!("{host}-{n:016x}")
    }
}

fn migrate_error(url: &str, e: migrate::MigrateError) -> StoreError {
    match e {
        migrate::MigrateError::Db(e) => connect::error(url, &e),
        migrate::MigrateError::TooNew { found, known } => StoreError::TooNew {
            store: url.to_owned(),
            found,
            known,
        },
    }
}

impl Store for PostgresStore {
    fn journal(&self, event: NewEvent) -> StoreFuture<'_, Journaled> {
        journal::submit(&self.journal, event)
    }

    fn due_events_within(
        &self,
        now_ms: i64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreFuture<'_, Vec<PendingEvent>> {
        self.run(move |s, c| Box::pin(reads::due_events(s, c, now_ms, limit, max_bytes)))
    }

    fn record_body(&self, record_id: &str) -> StoreFuture<'_, Bytes> {
        let record_id = record_id.to_owned();
        let url = self.shared.url.clone();
        Box::pin(async move {
            let client = self.shared.client().await?;
            reads::record_body(&client, &record_id)
                .await
                .map_err(|e| self.shared.error(&e))?
                .ok_or_else(|| StoreError::Postgres {
                    url,
                    reason: format!("record {record_id} is not in the journal"),
                })
        })
    }

    fn save_routing(&self, event_id: &str, routing: Routing) -> StoreFuture<'_, Vec<String>> {
        // The collector's task writes it: a caller that stops waiting
        // cannot leave a half-sent transaction on a pooled connection.
        passes::submit(&self.passes, event_id.to_owned(), routing)
    }

    fn event_failed(
        &self,
        event_id: &str,
        error: String,
        next_attempt_ms: i64,
        dead: bool,
    ) -> StoreFuture<'_, ()> {
        let id = event_id.to_owned();
        self.write(move |_, c| Box::pin(writes::event_failed(c, id, error, next_attempt_ms, dead)))
    }

    fn due_deliveries(
        &self,
        sink: &str,
        now_ms: i64,
        limit: usize,
        busy: Vec<String>,
    ) -> StoreFuture<'_, Vec<PendingDelivery>> {
        let sink = sink.to_owned();
        self.run(move |s, c| Box::pin(reads::due_deliveries(s, c, sink, now_ms, limit, busy)))
    }

    fn settle(&self, record_id: &str, sink: &str, outcome: Settle) -> StoreFuture<'_, ()> {
        settle::submit(
            &self.settles,
            record_id.to_owned(),
            sink.to_owned(),
            outcome,
        )
    }

    fn dead_letters(&self, filter: Filter) -> StoreFuture<'_, Vec<DeadLetter>> {
        self.run(move |_, c| Box::pin(reads::dead_letters(c, filter)))
    }

    fn replay(&self, filter: Filter) -> StoreFuture<'_, u64> {
        self.write(move |_, c| Box::pin(writes::replay(c, filter)))
    }

    fn reroute(&self, event_id: &str) -> StoreFuture<'_, bool> {
        let event_id = event_id.to_owned();
        self.write(move |_, c| Box::pin(writes::reroute(c, event_id)))
    }

    fn depths(&self) -> StoreFuture<'_, Depths> {
        self.run(|_, c| Box::pin(reads::depths(c)))
    }

    fn events(&self, query: EventQuery) -> StoreFuture<'_, EventPage> {
        self.run(move |_, c| Box::pin(browse::events(c, query)))
    }

    fn event(&self, event_id: &str) -> StoreFuture<'_, Option<EventDetail>> {
        let event_id = event_id.to_owned();
        self.run(move |_, c| Box::pin(browse::event(c, event_id)))
    }

    fn dead_letter_page(&self, query: DeadLetterQuery) -> StoreFuture<'_, DeadLetterPage> {
        self.run(move |_, c| Box::pin(browse::dead_letter_page(c, query)))
    }

    fn health(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let probe = async {
                let client = self.shared.client().await?;
                // A standby (after a failover, a URL pointing at a
                // replica) answers, but takes no writes.
                let standby: bool = client
                    .query_one("SELECT pg_is_in_recovery()", &[])
                    .await
                    .map_err(|e| self.shared.error(&e))?
                    .get(0);
                if standby {
                    return Err(StoreError::Unavailable {
                        url: self.shared.url.clone(),
                        reason:
                            "the server is a read-only standby: point `store.url` at the primary"
                                .to_owned(),
                    });
                }
                Ok::<(), StoreError>(())
            };
            match tokio::time::timeout(HEALTH_TIMEOUT, probe).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(StoreError::Unhealthy(e.to_string())),
                Err(_) => Err(StoreError::Unhealthy(format!(
                    "journal database {} did not answer within {}s",
                    self.shared.url,
                    HEALTH_TIMEOUT.as_secs()
                ))),
            }
        })
    }

    fn prune(&self, before_ms: i64, limit: usize) -> StoreFuture<'_, u64> {
        self.write(move |_, c| Box::pin(writes::prune(c, before_ms, limit)))
    }

    fn scan_every(&self) -> Duration {
        // Wake-ups come by NOTIFY; the timer finds retries that came due
        // and the rows of a replica whose lease ended: within a quarter
        // lease of its end.
        Duration::from_millis(u64::try_from(self.shared.lease_ms / 4).unwrap_or(1).max(50))
    }

    fn wakeups(&self) -> Option<watch::Receiver<u64>> {
        Some(self.wake.clone())
    }
}

/// How long `/readyz` waits for PostgreSQL's answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
