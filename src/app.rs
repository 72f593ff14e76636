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

use crate::admin::{self, auth, auth::AccessError};
use crate::config::env::Env;
use crate::config::{AdminListen, ConfigError, StripeConfig};
use crate::delivery::Engine;
use crate::http_serve::Throttle;
use crate::ingest::limits::{self, BodyBuffer};
use crate::ingest::verify::{Secrets, SecretsError};
use crate::ingest::{self, Counters, Endpoint};
use crate::metrics::Metrics;
use crate::routing::build::Builder;
use crate::routing::enrich::{ApiKey, ApiKeyError, StripeApi};
use crate::routing::live::{Live, Watch};
use crate::routing::snapshot::{self, Snapshot};
use crate::store::sqlite::lock::{LockError, ServeLock};
use crate::store::{CommitObserver, Purpose, Store, StoreError};

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
    /// Its messages name the variable.
    #[error(transparent)]
    ApiKey(#[from] ApiKeyError),
    /// The value is not repeated: a URL may hold credentials.
    #[error("STRIPE_API_BASE is not a URL ({reason}): write e.g. `https://api.stripe.com`")]
    ApiBase { reason: String },
    #[error("the Stripe API client cannot start: {0}")]
    StripeClient(String),
    #[error(
        "{0} (`store.path`): choose another `store.path`, or let the router create and write its folder"
    )]
    Store(#[from] StoreError),
    /// The PostgreSQL journal (`store.url`): its messages name the URL,
    /// redacted, and what to do.
    #[error("{0}")]
    Database(StoreError),
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error("cannot listen on {addr}: {source}{}", bind_hint(.source))]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot listen on {addr} for the admin listener: {source}; choose another address, or `off`, with --admin-listen ADDR (e.g. --admin-listen 127.0.0.1:9465) or `server.admin_listen` in routes.yaml"
    )]
    AdminBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Off loopback without a token, or a token too short; names the key
    /// and the variable, never the token.
    #[error(transparent)]
    AdminAccess(#[from] AccessError),
    #[error(
        "the open-file limit ({limit}) leaves no room for connections: raise it (`ulimit -n`, systemd's LimitNOFILE) to at least 1024"
    )]
    OpenFiles { limit: u64 },
    /// Everything found wrong before starting, each its own `error:` line,
    /// so one run shows them all (a missing secret and a missing key).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\nerror: "))]
    Several(Vec<StartError>),
}

impl StartError {
    /// Whether the webhook secret is missing: a first start with no Stripe
    /// account at hand, which `serve --offline` and `demo` answer.
    pub fn lacks_webhook_secret(&self) -> bool {
        match self {
            StartError::NoWebhookSecret => true,
            StartError::Several(errors) => errors.iter().any(StartError::lacks_webhook_secret),
            _ => false,
        }
    }

    /// The variable this problem is about when it is only that the variable
    /// is not set (what `check --no-env` leaves unchecked).
    pub fn unset_variable(&self) -> Option<&'static str> {
        match self {
            StartError::NoWebhookSecret => Some("STRIPE_WEBHOOK_SECRET"),
            StartError::AdminAccess(AccessError::NoToken { .. }) => Some(auth::TOKEN_VAR),
            _ => None,
        }
    }
}

/// What to do about a listen address that cannot be bound.
fn bind_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "; another program (another `stripe-router serve`?) listens there: stop it, or \
             choose a free address with --listen ADDR (e.g. --listen 127.0.0.1:3001) or \
             `server.listen` in routes.yaml"
        }
        std::io::ErrorKind::PermissionDenied => {
            "; ports below 1024 need privileges: choose one above, with --listen ADDR or \
             `server.listen` in routes.yaml"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "; the address is not one of this machine's: use 127.0.0.1:PORT (this machine \
             only) or 0.0.0.0:PORT (every interface)"
        }
        _ => "",
    }
}

/// A router that is built and bound, not yet serving.
pub struct App {
    listener: TcpListener,
    admin: Option<TcpListener>,
    /// The bearer token the admin listener requires, if any.
    admin_token: Option<auth::Token>,
    max_connections: usize,
    endpoint: Arc<Endpoint>,
    store: Arc<dyn Store>,
    retention: Duration,
    drain: Duration,
    watch: Option<Watch>,
    journal: PathBuf,
    /// One `serve` per SQLite journal, while this lives; none on
    /// PostgreSQL, where replicas share the journal.
    _lock: Option<ServeLock>,
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
        // Every stage of `check`, with the same environment: what it
        // accepts, serve starts with. Orders need the key; a key that is
        // set but refused stops the start just below.
        let orders_wanted = env
            .get("STRIPE_SECRET_API_KEY")
            .is_some_and(|k| !k.trim().is_empty());
        let config = blocking({
            let (path, env) = (config_path.clone(), env.clone());
            move || snapshot::load(&path, &env, orders_wanted)
        })
        .await;

        // Every problem of the file and the environment in one run: fixing
        // the webhook secret must not reveal a missing API key only then.
        let (stripe_config, config_admin_listen) = config
            .as_ref()
            .map(|c| (c.stripe.clone(), c.server.admin_listen))
            .unwrap_or_default();
        let admin_listen = admin_listen.unwrap_or(config_admin_listen);
        let environment = environment(&env, &stripe_config, admin_listen);
        // A key that is set but refused is reported once, as itself, not
        // again by every route that emits orders.
        let orders_enabled = orders_wanted;
        let built = match config {
            Ok(config) => {
                let (server, store, base_dir) = (
                    config.server.clone(),
                    config.store.clone(),
                    config.base_dir.clone(),
                );
                blocking(move || Snapshot::build(config, None, 1, orders_enabled))
                    .await
                    .map(|snapshot| (snapshot, server, store, base_dir))
            }
            Err(error) => Err(error),
        }
        .map_err(|error| StartError::Config {
            path: config_path.display().to_string(),
            error,
        });
        let ((snapshot, server_config, store_config, base_dir), environment) =
            match (built, environment) {
                (Ok(built), Ok(environment)) => (built, environment),
                (built, environment) => {
                    let mut errors: Vec<StartError> = built.err().into_iter().collect();
                    errors.extend(environment.err().into_iter().flatten());
                    return Err(match errors.len() {
                        1 => errors.remove(0),
                        _ => StartError::Several(errors),
                    });
                }
            };
        let Environment {
            secrets,
            stripe,
            admin_token,
        } = environment;
        // This router's own metrics, handed to each stage that records:
        // never a process-wide registry.
        let metrics = Metrics::new();
        let stripe = stripe.map(|api| api.with_metrics(metrics.clone()));
        let addr = listen.unwrap_or(server_config.listen);
        let admin_addr = match admin_listen {
            AdminListen::Off => None,
            AdminListen::On(addr) => Some(addr),
        };
        // Before binding: a second `serve` on this journal is told who has
        // it, not that the port is taken.
        let journal = store_config.path_in(&base_dir);
        let lock = match crate::store::open::sqlite_path(&store_config, &base_dir) {
            Some(journal) => Some(blocking(move || ServeLock::acquire(&journal)).await?),
            None => None,
        };
        let open_files = limits::raise_open_files();
        let max_connections = limits::connection_cap(server_config.max_connections, open_files)
            .map_err(|limit| StartError::OpenFiles { limit })?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        if let (Ok(bound), Some(lock)) = (listener.local_addr(), &lock) {
            lock.announce(bound)?;
        }
        let admin = match admin_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::AdminBind { addr, source })?,
            ),
            None => None,
        };

        let observer: Arc<dyn CommitObserver> = metrics.clone();
        let store = crate::store::open(&store_config, &base_dir, Purpose::Serve, Some(observer))
            .await
            .map_err(|e| {
                if store_config.url.is_some() || matches!(e, StoreError::TooNew { .. }) {
                    StartError::Database(e)
                } else {
                    StartError::Store(e)
                }
            })?;

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
            journal,
            _lock: lock,
            listener,
            admin,
            admin_token,
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

    /// The journal database's path (`store.path`; unused on PostgreSQL).
    pub fn journal_path(&self) -> &std::path::Path {
        &self.journal
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
                let admin = admin::Admin {
                    endpoint: self.endpoint,
                    token: self.admin_token,
                };
                admin::serve(listener, Arc::new(admin), shutdown, self.drain).await;
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

/// What `serve` takes from the environment, once every value is accepted.
pub struct Environment {
    pub secrets: Secrets,
    /// The Stripe API client, when `STRIPE_SECRET_API_KEY` is set.
    pub stripe: Option<StripeApi>,
    /// The bearer token the admin listener requires, if any.
    pub admin_token: Option<auth::Token>,
}

/// Every problem of the environment `serve` would refuse to start with
/// (the webhook secret, the API key, the API base, the admin token), all
/// of them, not the first: `check` and `serve` both call it, so they
/// report exactly the same set.
pub fn environment(
    env: &Env,
    config: &StripeConfig,
    admin_listen: AdminListen,
) -> Result<Environment, Vec<StartError>> {
    let secrets = webhook_secrets(env);
    let stripe = stripe_api(env, config);
    let admin_token = auth::access(env, admin_listen).map_err(StartError::from);
    match (secrets, stripe, admin_token) {
        (Ok(secrets), Ok(stripe), Ok(admin_token)) => Ok(Environment {
            secrets,
            stripe,
            admin_token,
        }),
        (secrets, stripe, admin_token) => {
            let mut errors = secrets.err().into_iter().collect::<Vec<_>>();
            errors.extend(stripe.err().into_iter().flatten());
            errors.extend(admin_token.err());
            Err(errors)
        }
    }
}

/// `STRIPE_WEBHOOK_SECRET`, which `serve` cannot start without.
fn webhook_secrets(env: &Env) -> Result<Secrets, StartError> {
    match env.get("STRIPE_WEBHOOK_SECRET") {
        Some(value) => Ok(Secrets::parse(&value)?),
        None => Err(StartError::NoWebhookSecret),
    }
}

/// The Stripe API client, when `STRIPE_SECRET_API_KEY` is set; a refused
/// key and a refused `STRIPE_API_BASE` are both reported.
fn stripe_api(env: &Env, config: &StripeConfig) -> Result<Option<StripeApi>, Vec<StartError>> {
    let Some(key) = env
        .get("STRIPE_SECRET_API_KEY")
        .filter(|k| !k.trim().is_empty())
    else {
        return Ok(None);
    };
    let key = ApiKey::parse(key.trim()).map_err(StartError::from);
    let base_text = env
        .get("STRIPE_API_BASE")
        .unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
    let base = Url::parse(base_text.trim()).map_err(|e| StartError::ApiBase {
        reason: e.to_string(),
    });
    match (key, base) {
        (Ok(key), Ok(base)) => StripeApi::new(base, key, config)
            .map(Some)
            .map_err(|e| vec![StartError::StripeClient(e.to_string())]),
        (key, base) => Err(key.err().into_iter().chain(base.err()).collect()),
    }
}
