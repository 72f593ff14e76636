//! The process's log: `tracing` lines on stderr, filtered by `RUST_LOG`,
//! as text (the default) or as one JSON object per line
//! (`--log-format json`, `STRIPE_ROUTER_LOG_FORMAT=json`).

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the
    /// event's fields (`message` included) at the top level, and `spans`,
    /// the fields of every span the line is in (`event_id`, `event_type`,
    /// `route`, `sink`, `record_id`), outermost first.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "`{text}` is not a log format (--log-format, STRIPE_ROUTER_LOG_FORMAT): write `text` (the default) or `json`"
            )),
        }
    }
}

impl LogFormat {
    /// The names `--log-format` takes, for `--help` and shell completions.
    pub const NAMES: [&str; 2] = ["text", "json"];

    /// The clap parser of `--log-format`: it offers [`LogFormat::NAMES`] to
    /// completions and `--help`, and refuses anything else with the message
    /// of its `FromStr`, which names both the
    /// flag and `STRIPE_ROUTER_LOG_FORMAT`.
    pub fn parser() -> impl clap::builder::TypedValueParser<Value = LogFormat> {
        LogFormatParser
    }
}

#[derive(Debug, Clone, Copy)]
struct LogFormatParser;

impl clap::builder::TypedValueParser for LogFormatParser {
    type Value = LogFormat;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<LogFormat, clap::Error> {
        value
            .to_string_lossy()
            .parse()
            .map_err(|message| clap::Error::raw(clap::error::ErrorKind::InvalidValue, message))
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            LogFormat::NAMES
                .into_iter()
                .map(clap::builder::PossibleValue::new),
        ))
    }
}

/// Installs the log for the process: stderr, in `format` (text has colours
/// on a terminal), the level `RUST_LOG` asks for or `default`.
pub fn init(default: &str, format: LogFormat) {
    let filter = filter(std::env::var("RUST_LOG").ok(), default);
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .init(),
    }
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
