//! `serve`: builds the [`App`] (with `--offline`, beside the Stripe API
//! stand-in, see [`crate::offline::local`]), announces where it listens and
//! what it uses (the log, and `--addresses-file` for whoever started it),
//! runs it until SIGINT or SIGTERM, then drains.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::app::{App, DEFAULT_API_BASE, Settings};
use crate::config::env::{self, Env};
use crate::offline::local::{self, Offline, SecretSource};
use crate::redact::redact_url;

/// Runs the router until a signal; a failed start is reported on stderr
/// and is the command's failure. With `offline`, the Stripe API stand-in
/// runs in this process and the router uses it (see [`local::start`]).
pub async fn run(
    mut settings: Settings,
    addresses_file: Option<PathBuf>,
    offline: bool,
) -> ExitCode {
    let files: Vec<_> = settings
        .env
        .files()
        .map(|f| f.display().to_string())
        .collect();
    if !files.is_empty() {
        tracing::info!(?files, "read environment files");
    }
    let offline = if offline {
        match local::start(Path::new("."), settings.env.clone()).await {
            Ok((env, offline)) => {
                settings.env = env;
                Some(offline)
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let env = settings.env.clone();
    let app = match App::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            if e.lacks_webhook_secret() {
                eprintln!(
                    "no Stripe account at hand? `stripe-router serve --offline` runs the router \
                     with a local Stripe stand-in and a generated secret; `stripe-router demo` \
                     shows the whole flow"
                );
            }
            return ExitCode::FAILURE;
        }
    };
    // What `check` warns about the environment, said at start too (the
    // config's warnings are logged as it goes live). Started, nothing in
    // it is refused: only what may still be wrong remains.
    for warning in super::check::environment(&env) {
        tracing::warn!("{warning}");
    }
    // Before anything announces the router as started (the log line, the
    // addresses file): a supervisor that signals as soon as it reads them
    // must get a drain, not the default death without one.
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("error: cannot listen for SIGTERM and SIGINT: {e}");
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
    announce_environment(&app, &env);
    if let Some(offline) = &offline {
        announce_offline(&app, offline);
    }
    if let Some(path) = &addresses_file
        && let Err(e) = app.write_addresses(path).await
    {
        eprintln!(
            "error: cannot write the addresses to {}: {e}",
            path.display()
        );
        return ExitCode::FAILURE;
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(signals.stop(shutdown.clone()));
    app.run(shutdown).await;
    if let Some(path) = &addresses_file {
        let _ = tokio::fs::remove_file(path).await;
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// What a `send`/`serve` mismatch is spotted by: the journal, the Stripe
/// API base and key, and each webhook secret, shown by its last four
/// characters only.
fn announce_environment(app: &App, env: &Env) {
    tracing::info!(journal = %app.journal_path().display(), "journal");
    match env
        .get("STRIPE_SECRET_API_KEY")
        .filter(|k| !k.trim().is_empty())
    {
        Some(key) => {
            let base = env
                .get("STRIPE_API_BASE")
                .and_then(|b| url::Url::parse(b.trim()).ok())
                .map_or_else(|| DEFAULT_API_BASE.to_owned(), |u| redact_url(&u));
            tracing::info!(api_base = %base, api_key = %env::hint(&key), "stripe api");
        }
        None => tracing::info!("stripe api: off (STRIPE_SECRET_API_KEY is not set)"),
    }
    let secrets: Vec<String> = env
        .get("STRIPE_WEBHOOK_SECRET")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(env::hint)
        .collect();
    tracing::info!(secrets = %secrets.join(", "), "webhook signing secrets");
}

/// Tells a `serve --offline` user what runs and what to type next, on
/// stderr beside the log (stdout may be a sink's).
fn announce_offline(app: &App, offline: &Offline) {
    let mut addr = app.local_addr();
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let webhook = format!("http://{addr}{}", app.webhook_path());
    let secret = match &offline.secret {
        SecretSource::Generated(path) => format!(
            "a new local secret {}, written to {}",
            offline.secret_hint,
            path.display()
        ),
        SecretSource::Existing => format!("STRIPE_WEBHOOK_SECRET {}", offline.secret_hint),
    };
    tracing::info!(api_base = %offline.api_base(), "offline: the Stripe API stand-in runs in this process");
    eprintln!(
        "\noffline: Stripe API stand-in at {}, webhooks verified with {secret}.\n\
         Send an order from another terminal, in this folder:\n\n    {}\n",
        offline.api_base(),
        offline.send_line(&webhook)
    );
}

/// SIGTERM and SIGINT, caught from the moment they are installed: a signal
/// that arrives before [`Signals::stop`] waits is kept for it.
struct Signals {
    term: Signal,
    interrupt: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for either signal, then cancels `shutdown`.
    async fn stop(mut self, shutdown: CancellationToken) {
        tokio::select! {
            _ = self.interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
            _ = self.term.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
        shutdown.cancel();
    }
}
