//! What the unit tests of the router and of the sink workers share: a live
//! routing table over a `routes.yaml` they write, and waiting for what the
//! tasks they start write to files.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::live::Live;
use super::snapshot::Snapshot;
use crate::config::Config;
use crate::config::env::Env;

/// The routes in `text`, written to `dir/routes.yaml` (a reload reads that
/// file) and live as version 1; `orders_enabled`: a Stripe API key is
/// configured for `emit: order`.
#[track_caller]
pub fn live(dir: &Path, text: &str, orders_enabled: bool) -> Arc<Live> {
    let path = dir.join("routes.yaml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path, &Env::empty()).expect("valid config");
    let snapshot = Snapshot::build(config, None, 1, orders_enabled).expect("builds");
    Arc::new(Live::new(
        snapshot,
        path,
        Env::empty(),
        orders_enabled,
        crate::metrics::Metrics::new(),
    ))
}

/// Polls `condition` every 20 ms for up to 15 s: longer than a fresh row's
/// lease ([`crate::store::LEASE_MS`]), after which a scan takes it.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the file at `path` exists and holds `text`.
pub fn contains(path: &Path, text: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.contains(text))
}
