//! The `stripe-router` command: parses arguments, sets up logging, and hands
//! over to the library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use url::Url;

use stripe_router::app;
use stripe_router::app::{App, Settings};
use stripe_router::config::env::Env;
use stripe_router::config::{AdminListen, Config, UnsetVars, redact_url};
use stripe_router::ingest::hints as diagnose;
use stripe_router::offline::demo;
use stripe_router::offline::send::{self, PaymentStatus};
use stripe_router::offline::standin::StripeStandIn;
use stripe_router::routing::{event_types, live as reload};
use stripe_router::store::Filter;
use stripe_router::store::deadletters;

#[derive(Debug, Parser)]
#[command(
    name = "stripe-router",
    version,
    about = "Verified Stripe webhooks, routed into complete order records",
    after_help = "Quick start: `stripe-router demo` shows the whole flow, no Stripe account needed."
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
        /// The admin listener's address on loopback, or `off`; overrides
        /// `server.admin_listen` (default 127.0.0.1:9464).
        #[arg(long)]
        admin_listen: Option<AdminListen>,
    },
    /// List dead letters: deliveries, routes and events that gave up.
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
    /// Refuses what `serve` would refuse with the same environment,
    /// including the Stripe variables. Also warns, without failing, about
    /// routes that can never fire (an event type Stripe does not send).
    ///
    /// Example: stripe-router check --config routes.yaml
    Check {
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
        /// Validate the file alone, as a CI job without secrets would:
        /// unset `${VAR}`s and missing Stripe variables are not errors.
        #[arg(long)]
        no_env: bool,
    },
    /// Send a signed test event to a running router: an offline `stripe trigger`.
    ///
    /// Builds a realistic event with fresh ids (or reads one with --file),
    /// signs it with the first secret of STRIPE_WEBHOOK_SECRET as Stripe
    /// does, POSTs it to the config's listen address and path (or --to), and
    /// prints the answer. Exits non-zero unless the answer is 2xx.
    ///
    /// Built sessions name their item count in their id; a router whose
    /// STRIPE_API_BASE points at `stripe-router stripe-standin` fetches that
    /// many line items.
    ///
    /// Examples:
    ///   stripe-router send checkout.session.completed --items 3
    ///   stripe-router send checkout.session.completed --payment-status unpaid
    ///   stripe-router send checkout.session.async_payment_failed --to http://127.0.0.1:3000/api/webhook
    ///   stripe-router send --file event.json
    #[command(verbatim_doc_comment)]
    Send {
        /// The event type to build: checkout.session.completed,
        /// checkout.session.async_payment_succeeded,
        /// checkout.session.async_payment_failed, checkout.session.expired,
        /// payment_intent.succeeded.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        r#type: Option<String>,
        /// Where to POST; default: http://{server.listen}{server.path} from the config.
        #[arg(long)]
        to: Option<Url>,
        /// The session's payment_status; default: what the type implies.
        #[arg(long, value_enum)]
        payment_status: Option<PaymentStatus>,
        /// How many line items the session has (and its total is made of).
        #[arg(long, default_value_t = 2)]
        items: usize,
        /// Send this event (JSON) instead, with a fresh id.
        #[arg(long)]
        file: Option<PathBuf>,
        /// With --file: send the file's bytes unchanged, id included.
        #[arg(long, requires = "file")]
        keep_id: bool,
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
    },
    /// See it work with no Stripe account: a real router, a local Stripe API
    /// stand-in and a local shipping service, a story of orders, a report.
    ///
    /// Sends a card order, an async order that later succeeds, one that
    /// fails and a forged request, then shows what each sink received and
    /// what was refused. Everything lives in a temporary folder.
    ///
    /// Example: stripe-router demo
    Demo,
    /// Run the local Stripe API stand-in alone, for offline work with `send`.
    ///
    /// Serves GET /v1/checkout/sessions/{id}/line_items with Stripe's shapes;
    /// a session id ending in `_<N>items` (as `send` makes them) has N items.
    ///
    /// Example (three terminals):
    ///   stripe-router stripe-standin --api-key rk_test_offline
    ///   STRIPE_API_BASE=http://127.0.0.1:12111 STRIPE_SECRET_API_KEY=rk_test_offline stripe-router serve
    ///   stripe-router send checkout.session.completed --items 3
    #[command(verbatim_doc_comment)]
    StripeStandin {
        #[arg(long, default_value = "127.0.0.1:12111")]
        listen: SocketAddr,
        /// The key requests must carry; default: STRIPE_SECRET_API_KEY.
        #[arg(long)]
        api_key: Option<String>,
    },
    /// Print a shell completion script.
    ///
    /// Examples:
    ///   stripe-router completions bash > ~/.local/share/bash-completion/completions/stripe-router
    ///   stripe-router completions zsh > "${fpath[1]}/_stripe-router"
    ///   stripe-router completions fish > ~/.config/fish/completions/stripe-router.fish
    #[command(verbatim_doc_comment)]
    Completions { shell: clap_complete::Shell },
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
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "stripe-router",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    // The demo's report is the point; its logs only when something is wrong.
    let level = match cli.command {
        Command::Demo | Command::Send { .. } => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(log_filter(std::env::var("RUST_LOG").ok(), level))
        .init();
    let env = match Env::load(std::path::Path::new(".")) {
        Ok(env) => env,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve {
            config,
            listen,
            admin_listen,
        } => serve(Settings {
            config_path: config,
            listen,
            admin_listen,
            env,
        }),
        Command::Check { config, no_env } => check(&config, &env, no_env),
        Command::Send {
            r#type,
            to,
            payment_status,
            items,
            file,
            keep_id,
            config,
        } => {
            let body = match (file, r#type) {
                (Some(file), _) => send::from_file(&file, !keep_id),
                (None, Some(kind)) => send::build(
                    &kind,
                    payment_status,
                    items,
                    stripe_router::clock::unix_now(),
                )
                .map(|event| serde_json::to_vec_pretty(&event).unwrap_or_default()),
                // clap requires one of them.
                (None, None) => return ExitCode::FAILURE,
            };
            send_event(body, to, &config, &env)
        }
        Command::Demo => runtime(async {
            let mut out = std::io::stdout();
            match demo::run(&mut out).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: the demo failed: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }),
        Command::StripeStandin { listen, api_key } => {
            let Some(key) = api_key.or_else(|| env.get("STRIPE_SECRET_API_KEY")) else {
                eprintln!("error: pass --api-key, or set STRIPE_SECRET_API_KEY");
                return ExitCode::FAILURE;
            };
            runtime(stripe_standin(listen, key))
        }
        Command::Completions { .. } => ExitCode::SUCCESS,
        Command::Deadletters {
            config,
            filter,
            json,
        } => runtime(deadletters::run(
            &config,
            &env,
            deadletters::Command::List {
                filter: filter.into(),
                json,
            },
        )),
        Command::Replay {
            config,
            filter,
            all,
            reroute,
        } => runtime(deadletters::run(
            &config,
            &env,
            deadletters::Command::Replay {
                filter: filter.into(),
                all,
                reroute,
            },
        )),
    }
}

/// `RUST_LOG`, or `default` when it is unset or invalid. The file watcher
/// (`notify`) logs every event in the config's folder at trace level: with
/// the log written into that folder, each line would be an event and then
/// another line, forever. So its trace lines show only when `RUST_LOG`
/// names it.
fn log_filter(rust_log: Option<String>, default: &str) -> tracing_subscriber::EnvFilter {
    let directives = match rust_log {
        Some(text) if text.contains("notify") => text,
        Some(text) if !text.trim().is_empty() => format!("{text},notify=info"),
        _ => default.to_owned(),
    };
    tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

/// How long the runtime waits, once `task` is done, for blocking work still
/// running. `serve` has already spent `server.shutdown_timeout` draining;
/// what is left may never end (a stdout write to a reader that stopped
/// reading), and its rows stay pending in the journal.
const ABANDON_AFTER: Duration = Duration::from_millis(250);

/// Runs `task` on a fresh multi-threaded runtime, then leaves whatever
/// blocking work is still running behind, so the process always exits.
fn runtime(task: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => {
            let code = rt.block_on(task);
            rt.shutdown_timeout(ABANDON_AFTER);
            code
        }
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn send_event(
    body: Result<Vec<u8>, send::SendError>,
    to: Option<Url>,
    config: &std::path::Path,
    env: &Env,
) -> ExitCode {
    let prepared = body.and_then(|body| {
        let secret = send::first_secret(env)?;
        let url = send::target(to, config, env)?;
        Ok((body, secret, url))
    });
    let (body, secret, url) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let summary = serde_json::from_slice::<serde_json::Value>(&body)
        .map(|event| {
            let session = &event["data"]["object"]["id"];
            format!(
                "{} {} ({})",
                event["type"].as_str().unwrap_or("?"),
                event["id"].as_str().unwrap_or("?"),
                session.as_str().unwrap_or("?")
            )
        })
        .unwrap_or_default();
    runtime(async move {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "POST {}: {summary}", redact_url(&url));
        match send::post(
            &reqwest::Client::new(),
            &url,
            body,
            &secret,
            stripe_router::clock::unix_now(),
        )
        .await
        {
            Ok(answer) => {
                let _ = writeln!(out, "HTTP {}\n{}", answer.status, answer.body);
                if answer.status.is_success() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn stripe_standin(listen: SocketAddr, key: String) -> ExitCode {
    let standin = match StripeStandIn::start(listen, key.trim()).await {
        Ok(standin) => standin,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    standin.serve_catalogue();
    eprintln!(
        "Stripe API stand-in on {}: start the router with STRIPE_API_BASE={} and this key as \
         STRIPE_SECRET_API_KEY; Ctrl-C stops it",
        standin.url(),
        standin.url().as_str().trim_end_matches('/')
    );
    let _ = tokio::signal::ctrl_c().await;
    standin.shutdown();
    ExitCode::SUCCESS
}

fn serve(settings: Settings) -> ExitCode {
    let files: Vec<_> = settings
        .env
        .files()
        .map(|f| f.display().to_string())
        .collect();
    if !files.is_empty() {
        tracing::info!(?files, "read environment files");
    }
    runtime(async {
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
        if let Some(admin) = app.admin_addr() {
            tracing::info!("admin listener on http://{admin}");
        }
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

/// `check`: the config's problems and, unless `no_env`, what `serve` would
/// refuse in the environment, by the same functions `serve` uses. Warnings
/// are printed whether or not there are errors.
fn check(path: &std::path::Path, env: &Env, no_env: bool) -> ExitCode {
    let unset = if no_env {
        UnsetVars::Allowed
    } else {
        UnsetVars::Refused
    };
    let orders_enabled = no_env
        || env
            .get("STRIPE_SECRET_API_KEY")
            .is_some_and(|k| !k.trim().is_empty());
    let mut problems: Vec<String> = Vec::new();
    let config = Config::load_with(path, env, unset)
        .map_err(|error| problems.extend(error.problems.iter().map(ToString::to_string)))
        .ok();
    if let Some(config) = &config
        && let Err(error) = reload::compile(config, orders_enabled)
    {
        problems.extend(error.problems.iter().map(ToString::to_string));
    }
    let config_problems = problems.len();
    let mut warnings: Vec<String> = config
        .as_ref()
        .map(|c| {
            event_types::route_warnings(c)
                .iter()
                .map(ToString::to_string)
                .collect()
        })
        .unwrap_or_default();
    let stripe = config
        .as_ref()
        .map(|c| c.stripe.clone())
        .unwrap_or_default();
    match app::stripe_environment(env, &stripe) {
        Ok(_) => warnings.extend(diagnose::environment(env)),
        // Left out, a CI job without secrets: what serve would refuse is
        // only a warning.
        Err(_) if no_env => warnings.extend(diagnose::environment(env)),
        Err(e) => problems.push(format!("environment: {e}")),
    }

    match &config {
        Some(config) if problems.is_empty() => {
            // The summary is the command's output; problems go to stderr.
            let _ = writeln!(
                std::io::stdout(),
                "{} is valid\n\n{}",
                path.display(),
                config.summary()
            );
        }
        _ => {
            let verdict = if config_problems > 0 {
                "is not valid"
            } else {
                "is valid, but serve would not start with this environment"
            };
            eprintln!(
                "{} {verdict} ({} problems):",
                path.display(),
                problems.len()
            );
            for problem in &problems {
                eprintln!("  {problem}");
            }
        }
    }
    if !warnings.is_empty() {
        eprintln!("warnings ({}):", warnings.len());
        for warning in &warnings {
            eprintln!("  warning: {warning}");
        }
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[track_caller]
    fn check(rust_log: Option<&str>, expected: &[&str], absent: &[&str]) {
        let filter = log_filter(rust_log.map(str::to_owned), "info").to_string();
        for directive in expected {
            assert!(
                filter.contains(directive),
                "`{directive}` not in `{filter}`"
            );
        }
        for directive in absent {
            assert!(!filter.contains(directive), "`{directive}` in `{filter}`");
        }
    }

    #[test]
    fn the_file_watcher_logs_below_trace_unless_named() {
        check(Some("trace"), &["trace", "notify=info"], &[]);
        check(Some("info,stripe_router=debug"), &["notify=info"], &[]);
        check(
            Some("trace,notify=trace"),
            &["notify=trace"],
            &["notify=info"],
        );
        check(None, &["info"], &["notify"]);
        check(Some("not a [filter"), &["info"], &["notify"]);
    }
}
