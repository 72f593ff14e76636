//! `serve`: builds the [`App`], announces where it listens (the log, and
//! `--addresses-file` for whoever started it), runs it until SIGINT or
//! SIGTERM, then drains.

use std::path::PathBuf;
use std::process::ExitCode;

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
    tokio::spawn(stop_on_signal(shutdown.clone()));
    app.run(shutdown).await;
    if let Some(path) = &addresses_file {
        let _ = tokio::fs::remove_file(path).await;
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
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
