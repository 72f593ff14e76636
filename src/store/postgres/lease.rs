//! A replica's background work on PostgreSQL, while its store lives:
//!
//! - [`renew`]: every third of the lease, the rows this replica holds
//!   (journaled, built or claimed, not yet routed or settled) get a fresh
//!   lease, so another replica takes none of them while this one lives,
//!   however slow a sink or an enrichment is. A replica killed stops
//!   renewing: its rows are free one lease later.
//! - [`listen`]: one connection outside the pool runs `LISTEN
//!   stripe_router_due`; each notification (a replay, a reroute, from any
//!   host) wakes the router's and the workers' scans. After the connection
//!   is lost it reconnects, and wakes the scans once, for what it may have
//!   missed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::writes::{DB_NOW, exec};
use super::{CHANNEL, Shared, connect};
use crate::config::database_url::Target;

/// Renews this replica's leases until `stop`.
pub(super) async fn renew(shared: Arc<Shared>, stop: CancellationToken) {
    let every = Duration::from_millis(u64::try_from(shared.lease_ms / 3).unwrap_or(1).max(10));
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match renew_once(&shared).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("journal leases renewed again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot renew this replica's leases; other replicas may take its rows over");
            }
            Err(_) => {}
        }
    }
}

/// One renewal of every row this replica holds.
pub(super) async fn renew_once(shared: &Shared) -> Result<(), crate::store::StoreError> {
    let client = shared.client().await?;
    for table in ["events", "deliveries"] {
        exec(
            &client,
            &format!(
                "UPDATE {table} SET lease_until = {DB_NOW} + $1::BIGINT
                 WHERE lease_owner = $2 AND state = 0"
            ),
            &[&shared.lease_ms, &shared.owner],
        )
        .await
        .map_err(|e| shared.error(&e))?;
    }
    Ok(())
}

/// Listens for wake-ups until `stop`, bumping `wake` for each.
pub(super) async fn listen(target: Target, wake: watch::Sender<u64>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(250);
    let mut lost = false;
    loop {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let connected = async {
            let client = connect::connect(&target, Some(tx)).await?;
            client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await
                .map_err(|e| connect::error(&target.shown, &e))?;
            Ok::<_, crate::store::StoreError>(client)
        };
        let client = tokio::select! {
            () = stop.cancelled() => return,
            client = connected => client,
        };
        match client {
            Ok(_client) => {
                if lost {
                    tracing::info!("listening for journal wake-ups again");
                    wake.send_modify(|n| *n = n.wrapping_add(1));
                }
                backoff = Duration::from_millis(250);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        notice = rx.recv() => match notice {
                            Some(_) => wake.send_modify(|n| *n = n.wrapping_add(1)),
                            // The connection ended.
                            None => break,
                        },
                    }
                }
                tracing::warn!("lost the journal wake-up connection; reconnecting");
            }
            Err(e) => {
                if !lost {
                    tracing::warn!(error = %e, "cannot listen for journal wake-ups; scans run on their timer");
                }
            }
        }
        lost = true;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
