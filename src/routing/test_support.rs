//! What the unit tests of the router and of the sink workers share: a live
//! routing table over a `routes.yaml` they write.

use std::path::Path;
use std::sync::Arc;

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
    Arc::new(Live::new(snapshot, path, Env::empty(), orders_enabled))
}
