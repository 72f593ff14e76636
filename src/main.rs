//! The `stripe-router` command: parses arguments, sets up logging, and hands
//! over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use stripe_router::app::{App, Settings};
use stripe_router::config::Config;
use stripe_router::env::Env;
use stripe_router::store::{Filter, SqliteStore, Store};
use stripe_router::{deadletters, reload};

#[derive(Debug, Parser)]
#[command(
    name = "stripe-router",
    version,
    about = "Verified Stripe webhooks, routed into complete order records"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive Stripe webhooks and deliver records until SIGINT/SIGTERM.
    ///
    /// Example: STRIPE_WEBHOOK_SECRET=whsec_... stripe-router serve --config routes.yaml
    Serve {
        /// The routes file; edits to it apply live.
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
        /// Listen address; overrides `server.listen` (default 127.0.0.1:3000).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// List dead letters: deliveries (or enrichments) that gave up.
    ///
    /// Example: stripe-router deadletters --sink shipping
    Deadletters {
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-queue dead letters, or route a journaled event again.
    ///
    /// Works while the server runs: it picks re-queued rows up within a second.
    ///
    /// Examples:
    ///   stripe-router replay --sink shipping
    ///   stripe-router replay --all
    ///   stripe-router replay --event evt_1Nq... --reroute
    #[command(verbatim_doc_comment)]
    Replay {
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
        /// Every dead letter.
        #[arg(long, conflicts_with_all = ["sink", "route", "event"])]
        all: bool,
        /// Route the event (`--event`) again through the current routes,
        /// building records for routes that did not exist when it arrived.
        #[arg(long, requires = "event", conflicts_with_all = ["sink", "route"])]
        reroute: bool,
    },
    /// Validate a routes file without serving: every error, with its place.
    ///
    /// Example: stripe-router check --config routes.yaml
    Check {
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct FilterArgs {
    /// Only this sink.
    #[arg(long)]
    sink: Option<String>,
    /// Only this route.
    #[arg(long)]
    route: Option<String>,
    /// Only this Stripe event id.
    #[arg(long)]
    event: Option<String>,
}

impl From<FilterArgs> for Filter {
    fn from(args: FilterArgs) -> Filter {
        Filter {
            sink: args.sink,
            route: args.route,
            event: args.event,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let env = match Env::load(std::path::Path::new(".")) {
        Ok(env) => env,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve { config, listen } => serve(Settings {
            config_path: config,
            listen,
            env,
        }),
        Command::Check { config } => check(&config, &env),
        Command::Deadletters {
            config,
            filter,
            json,
        } => with_store(&config, &env, |store| async move {
            deadletters::list(&*store, filter.into(), json, &mut std::io::stdout())
                .await
                .map(drop)
        }),
        Command::Replay {
            config,
            filter,
            all,
            reroute,
        } => with_store(&config, &env, |store| async move {
            deadletters::replay(&*store, filter.into(), all, reroute, &mut std::io::stdout())
                .await
                .map(drop)
        }),
    }
}

fn serve(settings: Settings) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let app = match App::build(settings).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            "stripe-router listening on http://{}{}",
            app.local_addr(),
            app.webhook_path()
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        app.run(shutdown).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
    }
    shutdown.cancel();
}

fn check(path: &std::path::Path, env: &Env) -> ExitCode {
    let orders_enabled = env
        .get("STRIPE_SECRET_API_KEY")
        .is_some_and(|k| !k.trim().is_empty());
    let result = Config::load(path, env).and_then(|config| {
        reload::compile(&config, orders_enabled)?;
        Ok(config)
    });
    match result {
        Ok(config) => {
            eprintln!("{} is valid\n\n{}", path.display(), config.summary());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "{} is not valid ({} problems):",
                path.display(),
                error.problems.len()
            );
            for problem in &error.problems {
                eprintln!("  {problem}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Runs `command` against the journal named by the config at `path`.
fn with_store<F, Fut>(path: &std::path::Path, env: &Env, command: F) -> ExitCode
where
    F: FnOnce(std::sync::Arc<dyn Store>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let config = match Config::load(path, env) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{} is not valid:\n{error}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let store_path = config.store.path_in(&config.base_dir);
    if !store_path.exists() {
        eprintln!(
            "error: no journal at {} yet (the server creates it on its first start)",
            store_path.display()
        );
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let store = match SqliteStore::open(&store_path, true) {
            Ok(store) => std::sync::Arc::new(store) as std::sync::Arc<dyn Store>,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        match command(store).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}
