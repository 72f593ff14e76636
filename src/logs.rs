//! The process's log: `tracing` lines on stderr, filtered by `RUST_LOG`.

/// Installs the log for the process: stderr, colours on a terminal, the
/// level `RUST_LOG` asks for or `default`.
pub fn init(default: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter(std::env::var("RUST_LOG").ok(), default))
        .init();
}

/// `RUST_LOG`, or `default` when it is unset or invalid. The file watcher
/// (`notify`) logs every event in the config's folder at trace level: with
/// the log written into that folder, each line would be an event and then
/// another line, forever. So its trace lines show only when `RUST_LOG`
/// names it.
pub fn filter(rust_log: Option<String>, default: &str) -> tracing_subscriber::EnvFilter {
    let directives = match rust_log {
        Some(text) if text.contains("notify") => text,
        Some(text) if !text.trim().is_empty() => format!("{text},notify=info"),
        _ => default.to_owned(),
    };
    tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
