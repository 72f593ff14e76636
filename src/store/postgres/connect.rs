//! Reaching PostgreSQL: the TLS choice of the URL (rustls, the public
//! roots plus `sslrootcert`), the bounded pool with its timeouts, the
//! dedicated connection `LISTEN` needs, and what the driver's and the
//! pool's errors mean for an operator: a wrong password, a missing
//! database, a server that is down. No message holds the password: the
//! URL is only ever shown redacted.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};

use crate::config::database_url::{Target, Tls};
use crate::store::StoreError;

/// How long opening a connection may take (unless the URL says
/// `connect_timeout`), and how long a caller waits for a pooled one.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most one statement may run: past it the server cancels it, and the
/// caller gets an error rather than a request that hangs.
pub(super) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The TLS connector of a target, `None` for plain TCP.
pub(super) fn tls(
    target: &Target,
) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, StoreError> {
    let Tls::On { root_cert } = &target.tls else {
        return Ok(None);
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = root_cert {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let refused = |reason: String| StoreError::Postgres {
            url: target.shown.clone(),
            reason: format!("sslrootcert {}: {reason}", path.display()),
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| refused(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refused(e.to_string()))?;
        if certs.is_empty() {
            return Err(refused("holds no PEM certificate".to_owned()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| refused(e.to_string()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Postgres {
            url: target.shown.clone(),
            reason: format!("TLS: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

/// The driver's settings for every connection: timeouts, keepalives (a
/// server that vanished is noticed in about a minute, not hours) and the
/// name the server shows in `pg_stat_activity`.
pub(super) fn settings(target: &Target) -> tokio_postgres::Config {
    let mut config = target.config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    if config.get_application_name().is_none() {
        config.application_name("stripe-router");
    }
    let statement = format!("-c statement_timeout={}", STATEMENT_TIMEOUT.as_millis());
    let options = match config.get_options() {
        Some(options) if !options.is_empty() => format!("{options} {statement}"),
        _ => statement,
    };
    config.options(options);
    config
}

/// A pool of at most `size` connections; a caller waits at most
/// [`CONNECT_TIMEOUT`] for one.
pub(super) fn pool(target: &Target, size: usize) -> Result<Pool, StoreError> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let config = settings(target);
    let manager = match tls(target)? {
        Some(tls) => Manager::from_config(config, tls, manager_config),
        None => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
    };
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT + Duration::from_secs(1)))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Postgres {
            url: target.shown.clone(),
            reason: e.to_string(),
        })
}

/// One connection outside the pool (`LISTEN`, migrations), its driver
/// task spawned; notifications, if any, are sent on `notices`.
pub(super) async fn connect(
    target: &Target,
    notices: Option<tokio::sync::mpsc::UnboundedSender<tokio_postgres::Notification>>,
) -> Result<Client, StoreError> {
    let config = settings(target);
    match tls(target)? {
        Some(tls) => connect_with(&config, tls, notices, target).await,
        None => connect_with(&config, tokio_postgres::NoTls, notices, target).await,
    }
}

async fn connect_with<T>(
    config: &tokio_postgres::Config,
    tls: T,
    notices: Option<tokio::sync::mpsc::UnboundedSender<tokio_postgres::Notification>>,
    target: &Target,
) -> Result<Client, StoreError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config
        .connect(tls)
        .await
        .map_err(|e| error(&target.shown, &e))?;
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        use futures_util::StreamExt as _;
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if let Some(notices) = &notices {
                        let _ = notices.send(n);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "journal database connection ended");
                    break;
                }
            }
        }
    });
    Ok(client)
}

/// A driver error as a [`StoreError`]: `Unavailable` when the server could
/// not be reached or went away, `Postgres` when it refused.
pub(super) fn error(url: &str, e: &tokio_postgres::Error) -> StoreError {
    let (unavailable, reason) = explain(e);
    if unavailable {
        StoreError::Unavailable {
            url: url.to_owned(),
            reason,
        }
    } else {
        StoreError::Postgres {
            url: url.to_owned(),
            reason,
        }
    }
}

/// A pool error as a [`StoreError`].
pub(super) fn pool_error(url: &str, e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => error(url, &e),
        PoolError::Timeout(_) => StoreError::Unavailable {
            url: url.to_owned(),
            reason: format!(
                "no connection within {}s (the server is down or slow, or every pooled connection is busy: raise `store.pool_size`)",
                CONNECT_TIMEOUT.as_secs()
            ),
        },
        PoolError::Closed => StoreError::Stopped,
        other => StoreError::Unavailable {
            url: url.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// Whether the error means the server is out of reach, and what to say.
fn explain(e: &tokio_postgres::Error) -> (bool, String) {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let hint = if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            ": check the user and password of `store.url`"
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            ": create it (`createdb NAME`, or `CREATE DATABASE`) or fix the database name in `store.url`"
        } else if *code == SqlState::TOO_MANY_CONNECTIONS {
            ": lower `store.pool_size`, or raise the server's `max_connections`"
        } else {
            ""
        };
        let unavailable = [
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ]
        .contains(code);
        return (unavailable, format!("{}{hint}", db.message()));
    }
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    if reason.contains("authentication") || reason.contains("password") {
        return (
            false,
            format!("{reason}: check the user and password of `store.url`"),
        );
    }
    (true, reason)
}
