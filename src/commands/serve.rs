//! `serve`: builds the [`App`], announces where it listens (the log, and
//! `--addresses-file` for whoever started it), runs it until SIGINT or
//! SIGTERM, then drains.

use std::path::PathBuf;
use std::process::ExitCode;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::app::{App, Settings};

/// Runs the router until a signal; a failed start is reported on stderr
/// and is the command's failure.
pub async fn run(settings: Settings, addresses_file: Option<PathBuf>) -> ExitCode {
    let files: Vec<_> = settings
        .env
        .files()
        .map(|f| f.display().to_string())
        .collect();
    if !files.is_empty() {
        tracing::info!(?files, "read environment files");
    }
    let env = settings.env.clone();
    let app = match App::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
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
