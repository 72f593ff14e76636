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

use crate::config::{Config, ConfigError};
use crate::deliver::Engine;
use crate::enrich::{ApiKey, ApiKeyError, StripeApi};
use crate::env::Env;
use crate::pipeline::Pipeline;
use crate::reload::{Live, Snapshot, Watch};
use crate::server::{self, Counters, Endpoint};
use crate::store::{SqliteStore, Store, StoreError};
use crate::verify::{Secrets, SecretsError};

/// Where the Stripe API is, unless `STRIPE_API_BASE` says otherwise.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// What `serve` was asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_path: PathBuf,
    /// Overrides `server.listen`.
    pub listen: Option<SocketAddr>,
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
    #[error("STRIPE_WEBHOOK_SECRET: {0}")]
    WebhookSecret(#[from] SecretsError),
    #[error("STRIPE_SECRET_API_KEY: {0}")]
    ApiKey(#[from] ApiKeyError),
    #[error("STRIPE_API_BASE `{value}` is not a URL: {reason}")]
    ApiBase { value: String, reason: String },
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
}

/// A router that is built and bound, not yet serving.
pub struct App {
    listener: TcpListener,
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
            env,
        } = settings;
        let config = Config::load(&config_path, &env).map_err(|error| StartError::Config {
            path: config_path.display().to_string(),
            error,
        })?;

        let secrets = match env.get("STRIPE_WEBHOOK_SECRET") {
            Some(value) => Secrets::parse(&value)?,
            None => return Err(StartError::NoWebhookSecret),
        };
        let stripe = stripe_api(&env, &config)?;
        let orders_enabled = stripe.is_some();

        let server_config = config.server.clone();
        let store_config = config.store.clone();
        let base_dir = config.base_dir.clone();
        let snapshot = Snapshot::build(config, None, 1, orders_enabled).map_err(|error| {
            StartError::Config {
                path: config_path.display().to_string(),
                error,
            }
        })?;
        let addr = listen.unwrap_or(server_config.listen);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;

        let store_path = store_config.path_in(&base_dir);
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(
            &store_path,
            store_config.fsync,
            store_config.wal_limit,
        )?);

        let live = Arc::new(Live::new(snapshot, config_path, env, orders_enabled));
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let engine = Engine::start(
            store.clone(),
            live.clone(),
            Pipeline::new(stripe),
            shutdown.clone(),
            &tracker,
        );
        let endpoint = Arc::new(Endpoint {
            path: server_config.path.clone(),
            max_body: server_config.max_body,
            tolerance: server_config.tolerance,
            secrets,
            live: live.clone(),
            engine,
            counters: Counters::default(),
        });
        let watch = Watch::start(live)
            .map_err(|e| tracing::error!(error = %e, "cannot watch the config file"))
            .ok();
        Ok(App {
            watch,
            listener,
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

    /// The webhook path, e.g. `/api/webhook`.
    pub fn webhook_path(&self) -> &str {
        &self.endpoint.path
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
        server::serve(self.listener, self.endpoint, shutdown, self.drain).await;
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

/// Deletes delivered rows older than `retention`, at start and hourly, in
/// batches so the journal writer is never held for long.
async fn prune(store: Arc<dyn Store>, retention: Duration, shutdown: CancellationToken) {
    const BATCH: usize = 5_000;
    loop {
        let before =
            crate::store::now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
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

/// The Stripe API client, when `STRIPE_SECRET_API_KEY` is set.
fn stripe_api(env: &Env, config: &Config) -> Result<Option<StripeApi>, StartError> {
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
        value: base_text.clone(),
        reason: e.to_string(),
    })?;
    StripeApi::new(base, key, &config.stripe)
        .map(Some)
        .map_err(|e| StartError::StripeClient(e.to_string()))
}
