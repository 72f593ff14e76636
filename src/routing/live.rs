//! The live routing snapshot and how it is replaced: [`Live`] holds the
//! current [`Snapshot`] in an `ArcSwap`; [`Watch`] reloads it when the config
//! file changes or on `SIGHUP`.
//!
//! Every event is routed by exactly one config: the intake loads the
//! snapshot once and the event carries it to the router. A reload parses the
//! file and builds a complete new snapshot on the blocking pool first, and
//! only then swaps it in; on any error the old one keeps running and the
//! error is kept for `/healthz`. The file is judged as `check` judges it
//! ([`snapshot::load`]), and the warnings of each config that goes live are
//! logged, at start and on every applied reload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::env::Env;
use crate::config::{ConfigError, ConfigProblem};
use crate::metrics::Metrics;
use crate::routing::snapshot::{self, Snapshot};

/// The last reload that was refused.
#[derive(Debug, Clone)]
pub struct ReloadFailure {
    pub at: String,
    pub error: ConfigError,
}

/// The current snapshot and how to replace it.
pub struct Live {
    current: ArcSwap<Snapshot>,
    path: PathBuf,
    env: Env,
    orders_enabled: bool,
    last_error: Mutex<Option<ReloadFailure>>,
    /// Serializes reloads so two never race to build from the same previous.
    reloading: tokio::sync::Mutex<()>,
    /// The version of the snapshot in `current`, for those that follow
    /// reloads (the sink workers).
    version: tokio::sync::watch::Sender<u64>,
    /// Counts reloads, and knows the config in force.
    metrics: Arc<Metrics>,
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// A new snapshot with this version is live.
    Applied(u64),
    /// The file parses to the config already running.
    Unchanged,
}

impl Live {
    pub fn new(
        snapshot: Snapshot,
        path: PathBuf,
        env: Env,
        orders_enabled: bool,
        metrics: Arc<Metrics>,
    ) -> Live {
        let (version, _) = tokio::sync::watch::channel(snapshot.version);
        // The first config goes live: its warnings are said once, at start,
        // as `check` prints them.
        log_warnings(&snapshot);
        in_force(&metrics, &snapshot);
        Live {
            metrics,
            version,
            current: ArcSwap::from_pointee(snapshot),
            path,
            env,
            orders_enabled,
            last_error: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The snapshot to route one event with.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Changes every time a new snapshot is swapped in.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn last_error(&self) -> Option<ReloadFailure> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the config file and swaps in a new snapshot if it is valid
    /// and different. On error the running snapshot stays.
    pub async fn reload(&self) -> Result<Reloaded, ConfigError> {
        let _guard = self.reloading.lock().await;
        let result = self.rebuild().await;
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        self.metrics.reload(match &result {
            Ok(Reloaded::Applied(_)) => "applied",
            Ok(Reloaded::Unchanged) => "unchanged",
            Err(_) => "refused",
        });
        match &result {
            Ok(Reloaded::Applied(version)) => {
                in_force(&self.metrics, &self.load());
                *last = None;
                tracing::info!(version, path = %self.path.display(), "config reloaded");
                log_warnings(&self.current.load());
            }
            Ok(Reloaded::Unchanged) => {
                *last = None;
                tracing::debug!(path = %self.path.display(), "config unchanged");
            }
            Err(error) => {
                tracing::error!(
                    path = %self.path.display(),
                    "config reload refused, the previous config keeps running:\n{error}"
                );
                *last = Some(ReloadFailure {
                    at: crate::clock::rfc3339(crate::clock::now_ms()),
                    error: error.clone(),
                });
            }
        }
        result
    }

    async fn rebuild(&self) -> Result<Reloaded, ConfigError> {
        let path = self.path.clone();
        let env = self.env.clone();
        let previous = self.current.load_full();
        let orders_enabled = self.orders_enabled;
        // Reading the file and building sinks block (a JSONL sink reads up
        // to 16 MiB of its file's tail): off the async threads.
        let built = tokio::task::spawn_blocking(move || {
            // Judged as `serve` and `check` judge it, every stage.
            let config = snapshot::load(&path, &env, orders_enabled)?;
            if config == previous.config {
                return Ok(None);
            }
            let version = previous.version + 1;
            Snapshot::build(config, Some(&previous), version, orders_enabled).map(Some)
        })
        .await
        .map_err(|e| ConfigError {
            problems: vec![ConfigProblem {
                place: self.path.display().to_string(),
                message: format!("config loading stopped: {e}"),
            }],
        })??;
        let Some(snapshot) = built else {
            return Ok(Reloaded::Unchanged);
        };
        let version = snapshot.version;
        self.current.store(Arc::new(snapshot));
        self.version.send_replace(version);
        Ok(Reloaded::Applied(version))
    }
}

/// Logs each warning of the config `snapshot` holds (`check` prints the
/// same), one WARN line each with its place.
fn log_warnings(snapshot: &Snapshot) {
    for warning in &snapshot.warnings {
        // Place first, as `check` prints it.
        tracing::warn!(version = snapshot.version, "config warning: {warning}");
    }
}

/// Tells the metrics which config is in force: its version, routes and
/// sinks.
fn in_force(metrics: &Metrics, snapshot: &Snapshot) {
    metrics.config(
        snapshot.version,
        snapshot.routes.iter().map(|r| r.name.clone()).collect(),
        snapshot.config.sinks.keys().cloned().collect(),
    );
}

/// How long the file must stay quiet after a change before it is read:
/// editors save in several steps (truncate, write, rename).
const DEBOUNCE: Duration = Duration::from_millis(250);
/// How long after the first change of a burst the file is read even if it
/// keeps changing: a file rewritten every 100 ms is never quiet for
/// [`DEBOUNCE`], and SPEC §8 applies a change within 2 s.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// The config file's watcher and `SIGHUP` handler, registered before the
/// server announces it listens, so that no edit made after that is missed.
pub struct Watch {
    live: Arc<Live>,
    changes: mpsc::Receiver<()>,
    hangup: Option<tokio::signal::unix::Signal>,
    /// Kept alive while watching; dropping it stops the notifications.
    _watcher: notify::RecommendedWatcher,
}

impl Watch {
    /// Starts watching the config file's folder (not the file: that catches
    /// rename-on-save, `sed -i`, `mv` and editors that replace the inode)
    /// and listening for `SIGHUP`. Must run inside a tokio runtime.
    pub fn start(live: Arc<Live>) -> Result<Watch, notify::Error> {
        use notify::{RecursiveMode, Watcher};

        let file_name = live.path.file_name().map(ToOwned::to_owned);
        let folder = match live.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (tx, changes) = mpsc::channel::<()>(1);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Events about other files in the folder (a log written
                // there, say) stop here, before anything is logged: logging
                // them would write to that log, and so on forever.
                let relevant = match &event {
                    Ok(event) => {
                        !event.kind.is_access()
                            && event
                                .paths
                                .iter()
                                .any(|p| p.file_name() == file_name.as_deref())
                    }
                    Err(_) => true,
                };
                if relevant {
                    // A full channel already holds a pending reload.
                    let _ = tx.try_send(());
                }
            })?;
        watcher.watch(&folder, RecursiveMode::NonRecursive)?;
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP"))
            .ok();
        Ok(Watch {
            live,
            changes,
            hangup,
            _watcher: watcher,
        })
    }

    /// Reloads on every change once the file has been quiet for
    /// `DEBOUNCE`, or `MAX_DELAY` after the first change of a burst
    /// even if it keeps changing; on `SIGHUP`, at once. Until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        use tokio::time::Instant;
        // The first and the latest change not yet read.
        let mut pending: Option<(Instant, Instant)> = None;
        loop {
            let due = pending.map(|(first, last)| (last + DEBOUNCE).min(first + MAX_DELAY));
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(()) = self.changes.recv() => {
                    let now = Instant::now();
                    pending = Some((pending.map_or(now, |(first, _)| first), now));
                }
                () = sleep_until(due) => {
                    pending = None;
                    let _ = self.live.reload().await;
                }
                Some(()) = recv_hangup(&mut self.hangup) => {
                    tracing::info!("SIGHUP received, reloading config");
                    // This reload reads whatever change was pending.
                    pending = None;
                    let _ = self.live.reload().await;
                }
            }
        }
    }
}

/// Sleeps until `due`, or forever when nothing is due.
async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

async fn recv_hangup(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
