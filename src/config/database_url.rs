//! `store.url`: the PostgreSQL URL of a shared journal, parsed once for
//! `check` (without connecting) and for the store that connects with it.
//! Its password may be in it: it is only ever shown redacted
//! ([`crate::redact::redact_url`]), and its `Debug` shows nothing else.

use std::path::PathBuf;
use std::str::FromStr as _;

use serde::Deserialize;

/// The text of `store.url` as written (after `${VAR}`), never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(url) => write!(f, "DatabaseUrl({})", crate::redact::redact_url(&url)),
            Err(_) => f.write_str("DatabaseUrl(<unparsable>)"),
        }
    }
}

impl DatabaseUrl {
    pub fn new(text: impl Into<String>) -> DatabaseUrl {
        DatabaseUrl(text.into())
    }

    /// The connection settings, or why the URL cannot be one (the message
    /// never repeats the URL or its password).
    pub fn target(&self) -> Result<Target, String> {
        parse(&self.0)
    }

    /// The URL as it may be shown: credentials and query redacted.
    pub fn shown(&self) -> String {
        url::Url::parse(&self.0).map_or_else(
            |_| "<store.url>".to_owned(),
            |u| crate::redact::redact_url(&u),
        )
    }
}

/// Whether, and how, the connection is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// `sslmode` absent, `disable` or `prefer`: plain TCP.
    Off,
    /// `sslmode=require`, `verify-ca` or `verify-full`: TLS (rustls), the
    /// server's certificate verified against the public roots and the
    /// certificates of `sslrootcert`, when given.
    On { root_cert: Option<PathBuf> },
}

/// What connecting needs: the driver's settings, the TLS choice and the
/// URL as it may be shown.
#[derive(Debug, Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: Tls,
    /// Redacted: fit for logs and errors.
    pub shown: String,
}

/// Parses a `postgres://` URL.
pub fn parse(text: &str) -> Result<Target, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty: write e.g. `postgres://router:PASSWORD@db.internal:5432/stripe_router`, usually as `${DATABASE_URL}`".to_owned());
    }
    let url = url::Url::parse(text).map_err(|e| {
        format!("is not a URL ({e}): write e.g. `postgres://router:PASSWORD@db.internal:5432/stripe_router`")
    })?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "must start with `postgres://` (found `{}://`); for a SQLite journal use `store.path` instead",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(
            "names no host: write e.g. `postgres://router:PASSWORD@127.0.0.1:5432/stripe_router`"
                .to_owned(),
        );
    }
    let shown = crate::redact::redact_url(&url);
    // `sslmode` values the driver does not know, and `sslrootcert`, are
    // this router's to read; the rest goes to the driver as is.
    let mut tls = Tls::Off;
    let mut mode = None;
    let mut root_cert = None;
    let mut rest = url.clone();
    rest.set_query(None);
    {
        let mut query = rest.query_pairs_mut();
        for (key, value) in url.query_pairs() {
            match &*key {
                "sslmode" => mode = Some(value.into_owned()),
                "sslrootcert" => root_cert = Some(PathBuf::from(&*value)),
                _ => {
                    query.append_pair(&key, &value);
                }
            }
        }
    }
    let mut rest = rest.to_string();
    if rest.ends_with('?') {
        rest.pop();
    }
    match mode.as_deref() {
        None | Some("disable" | "prefer") => {}
        Some("require" | "verify-ca" | "verify-full") => {
            tls = Tls::On {
                root_cert: root_cert.clone(),
            };
        }
        Some(other) => {
            return Err(format!(
                "has an unknown `sslmode={other}` (expected disable, prefer, require, verify-ca or verify-full)"
            ));
        }
    }
    if root_cert.is_some() && tls == Tls::Off {
        return Err("has `sslrootcert` without TLS: add `sslmode=verify-full`".to_owned());
    }
    let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| {
        // The driver's message names the option, never its value.
        format!("is not a PostgreSQL URL the driver accepts: {e}")
    })?;
    if config.get_dbname().is_none() {
        return Err(
            "names no database: add it after the host, e.g. `postgres://router@db.internal:5432/stripe_router`"
                .to_owned(),
        );
    }
    config.ssl_mode(match tls {
        Tls::Off => tokio_postgres::config::SslMode::Disable,
        Tls::On { .. } => tokio_postgres::config::SslMode::Require,
    });
    Ok(Target { config, tls, shown })
}

#[cfg(test)]
#[path = "database_url_tests.rs"]
mod tests;
