//! Builds the whole router from a config file and an environment, then runs
//! it until shutdown. Build and run are separate so tests (and `demo`) can
//! bind port 0, read the address, and drive the same code as `serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::admin;
use crate::config::env::Env;
use crate::config::{AdminListen, Config, ConfigError, StripeConfig};
use crate::delivery::Engine;
use crate::http_serve::Throttle;
use crate::ingest::limits::{self, BodyBuffer};
use crate::ingest::verify::{Secrets, SecretsError};
use crate::ingest::{self, Counters, Endpoint};
use crate::metrics::Metrics;
use crate::routing::build::Builder;
use crate::routing::enrich::{ApiKey, ApiKeyError, StripeApi};
use crate::routing::live::{Live, Watch};
use crate::routing::snapshot::Snapshot;
use crate::store::{CommitObserver, SqliteStore, Store, StoreError};

/// Where the Stripe API is, unless `STRIPE_API_BASE` says otherwise.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// What `serve` was asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_path: PathBuf,
    /// Overrides `server.listen`.
    pub listen: Option<SocketAddr>,
    /// Overrides `server.admin_listen`.
    pub admin_listen: Option<AdminListen>,
    pub env: Env,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{path} is not valid:\n{error}")]
    Config { path: String, error: ConfigError },
    #[error(
        "STRIPE_WEBHOOK_SECRET is not set: set it to the endpoint signing secret (whsec_...), from `stripe listen --print-secret` or the Dashboard's webhook endpoint page"
    )]
    NoWebhookSecret,
    /// Its messages name the variable.
    #[error(transparent)]
    WebhookSecret(#[from] SecretsError),
    #[error("STRIPE_SECRET_API_KEY: {0}")]
    ApiKey(#[from] ApiKeyError),
    /// The value is not repeated: a URL may hold credentials.
    #[error("STRIPE_API_BASE is not a URL ({reason}): write e.g. `https://api.stripe.com`")]
    ApiBase { reason: String },
    #[error("the Stripe API client cannot start: {0}")]
    StripeClient(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot listen on {addr} for the admin listener (server.admin_listen): {source}; choose another port, or `off`"
    )]
    AdminBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "server.admin_listen {addr} is not a loopback address: the admin listener shows the router's internals and has no authentication yet; use 127.0.0.1:PORT or [::1]:PORT, or `off`"
    )]
    AdminNotLoopback { addr: SocketAddr },
    #[error(
        "the open-file limit ({limit}) leaves no room for connections: raise it (`ulimit -n`, systemd's LimitNOFILE) to at least 1024"
    )]
    OpenFiles { limit: u64 },
}

/// A router that is built and bound, not yet serving.
pub struct App {
    listener: TcpListener,
    admin: Option<TcpListener>,
    max_connections: usize,
    endpoint: Arc<Endpoint>,
    store: Arc<dyn Store>,
    retention: Duration,
    drain: Duration,
    watch: Option<Watch>,
    /// Stops the background routing and delivery.
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl App {
    pub async fn build(settings: Settings) -> Result<App, StartError> {
        let Settings {
            config_path,
            listen,
            admin_listen,
            env,
        } = settings;
        // Reading the file, building the sinks (a JSONL sink reads up to
        // 16 MiB of its file's tail) and opening the journal block: they run
        // on the blocking pool, never on the threads that serve requests.
        let config = blocking({
            let (path, env) = (config_path.clone(), env.clone());
            move || Config::load(&path, &env)
        })
        .await
        .map_err(|error| StartError::Config {
            path: config_path.display().to_string(),
            error,
        })?;

        let (secrets, stripe) = stripe_environment(&env, &config.stripe)?;
        let orders_enabled = stripe.is_some();
        // This router's own metrics, handed to each stage that records:
        // never a process-wide registry.
        let metrics = Metrics::new();
        let stripe = stripe.map(|api| api.with_metrics(metrics.clone()));

        let server_config = config.server.clone();
        let store_config = config.store.clone();
        let base_dir = config.base_dir.clone();
        let snapshot = blocking(move || Snapshot::build(config, None, 1, orders_enabled))
            .await
            .map_err(|error| StartError::Config {
                path: config_path.display().to_string(),
                error,
            })?;
        let addr = listen.unwrap_or(server_config.listen);
        let admin_addr = match admin_listen.unwrap_or(server_config.admin_listen) {
            AdminListen::Off => None,
            AdminListen::On(addr) if !addr.ip().is_loopback() => {
                return Err(StartError::AdminNotLoopback { addr });
            }
            AdminListen::On(addr) => Some(addr),
        };
        let open_files = limits::raise_open_files();
        let max_connections = limits::connection_cap(server_config.max_connections, open_files)
            .map_err(|limit| StartError::OpenFiles { limit })?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let admin = match admin_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::AdminBind { addr, source })?,
            ),
            None => None,
        };

        let store_path = store_config.path_in(&base_dir);
        let (fsync, wal_limit) = (store_config.fsync, store_config.wal_limit);
        let observer: Arc<dyn CommitObserver> = metrics.clone();
        let store: Arc<dyn Store> = Arc::new(
            blocking(move || {
                SqliteStore::open_observed(&store_path, fsync, wal_limit, Some(observer))
            })
            .await?,
        );

        let live = Arc::new(Live::new(
            snapshot,
            config_path,
            env,
            orders_enabled,
            metrics.clone(),
        ));
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let engine = Engine::start(
            store.clone(),
            live.clone(),
            Builder::new(stripe),
            metrics.clone(),
            shutdown.clone(),
            &tracker,
        );
        let endpoint = Arc::new(Endpoint {
            path: server_config.path.clone(),
            max_body: server_config.max_body,
            tolerance: server_config.tolerance,
            read_timeout: server_config.read_timeout,
            body_buffer: BodyBuffer::new(server_config.body_buffer),
            secrets,
            live: live.clone(),
            engine,
            counters: Counters::default(),
            metrics,
            refusals: Throttle::new("refused requests", ingest::REFUSAL_LOGS_PER_SEC),
        });
        let watch = Watch::start(live)
            .map_err(|e| tracing::error!(error = %e, "cannot watch the config file"))
            .ok();
        Ok(App {
            watch,
            listener,
            admin,
            max_connections,
            endpoint,
            store,
            retention: store_config.retention,
            drain: server_config.shutdown_timeout,
            shutdown,
            tracker,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The admin listener's bound address, unless it is off.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The webhook path, e.g. `/api/webhook`.
    pub fn webhook_path(&self) -> &str {
        &self.endpoint.path
    }

    /// Writes the bound addresses to `path` as one JSON object (`serve
    /// --addresses-file`), for scripts and tests that listen on port 0:
    /// `webhook` (the endpoint's URL), `listen` and `admin` (`null` when
    /// off). Written beside it and renamed into place, so a reader polling
    /// for the file never sees half of it.
    pub async fn write_addresses(&self, path: &std::path::Path) -> std::io::Result<()> {
        let addresses = serde_json::json!({
            "webhook": format!("http://{}{}", self.local_addr(), self.webhook_path()),
            "listen": self.local_addr(),
            "admin": self.admin_addr(),
        });
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let partial = path.with_file_name(format!(".{name}.partial"));
        tokio::fs::write(&partial, format!("{addresses}\n")).await?;
        tokio::fs::rename(&partial, path).await
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, drains
    /// in-flight requests and background deliveries within
    /// `server.shutdown_timeout`. Whatever is not finished by then stays
    /// pending in the journal and resumes at the next start.
    pub async fn run(self, shutdown: CancellationToken) {
        let background = self.shutdown.clone();
        match self.watch {
            Some(watch) => {
                self.tracker.spawn(watch.run(background.clone()));
            }
            None => {
                tracing::error!("the config file is not watched; edits apply at the next start");
            }
        }
        self.tracker.spawn(prune(
            self.store.clone(),
            self.retention,
            background.clone(),
        ));
        // One deadline for everything, counted from the shutdown signal: the
        // HTTP side and the background drain at the same time. Requests still
        // in flight are journaled as usual; their routing resumes at the next
        // start.
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
        tokio::spawn({
            let (shutdown, background) = (shutdown.clone(), background.clone());
            async move {
                shutdown.cancelled().await;
                background.cancel();
                let _ = stopped_tx.send(tokio::time::Instant::now());
            }
        });
        let webhook = ingest::serve(
            self.listener,
            self.max_connections,
            self.endpoint.clone(),
            shutdown.clone(),
            self.drain,
        );
        let admin = async {
            if let Some(listener) = self.admin {
                admin::serve(listener, self.endpoint, shutdown, self.drain).await;
            }
        };
        tokio::join!(webhook, admin);
        let deadline = stopped_rx
            .await
            .unwrap_or_else(|_| tokio::time::Instant::now())
            + self.drain;
        self.tracker.close();
        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown deadline reached; unfinished deliveries stay pending in the journal"
            );
        }
    }
}

/// Runs blocking start-up work on the blocking pool. A panic there is
/// carried on: start-up cannot go on without its result.
async fn blocking<T, F>(work: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Deletes delivered rows older than `retention`, at start and hourly, in
/// batches so the journal writer is never held for long.
async fn prune(store: Arc<dyn Store>, retention: Duration, shutdown: CancellationToken) {
    const BATCH: usize = 5_000;
    loop {
        let before =
            crate::clock::now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let mut total = 0;
        loop {
            match store.prune(before, BATCH).await {
                Ok(removed) => {
                    total += removed;
                    if removed == 0 || shutdown.is_cancelled() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pruning the journal failed");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(
                removed = total,
                "pruned delivered rows past store.retention"
            );
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

/// What `serve` takes from the environment: the webhook secrets and, when
/// `STRIPE_SECRET_API_KEY` is set, the Stripe API client. `check` calls it
/// too, so both refuse the same environment.
pub fn stripe_environment(
    env: &Env,
    config: &StripeConfig,
) -> Result<(Secrets, Option<StripeApi>), StartError> {
    let secrets = match env.get("STRIPE_WEBHOOK_SECRET") {
        Some(value) => Secrets::parse(&value)?,
        None => return Err(StartError::NoWebhookSecret),
    };
    Ok((secrets, stripe_api(env, config)?))
}

/// The Stripe API client, when `STRIPE_SECRET_API_KEY` is set.
fn stripe_api(env: &Env, config: &StripeConfig) -> Result<Option<StripeApi>, StartError> {
    let Some(key) = env
        .get("STRIPE_SECRET_API_KEY")
        .filter(|k| !k.trim().is_empty())
    else {
        return Ok(None);
    };
    let key = ApiKey::parse(key.trim())?;
    let base_text = env
        .get("STRIPE_API_BASE")
        .unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
    let base = Url::parse(base_text.trim()).map_err(|e| StartError::ApiBase {
        reason: e.to_string(),
    })?;
    StripeApi::new(base, key, config)
        .map(Some)
        .map_err(|e| StartError::StripeClient(e.to_string()))
}
