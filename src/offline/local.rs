//! `serve --offline`: the whole offline loop in one command. The Stripe API
//! stand-in runs in the router's process (catalogue mode, so any session
//! gets line items), `STRIPE_API_BASE` and a stand-in key point the router
//! at it, and a webhook signing secret is made once and kept in
//! `.env.local`, where `send` run in the same folder finds it.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::config::env::{self, Env};
use crate::offline::send;
use crate::offline::standin::StripeStandIn;

/// The key the in-process stand-in takes; no real key is sent anywhere.
pub const API_KEY: &str = "sk_test_stripe_router_offline_standin";

/// Where the secret a `serve --offline` verifies with comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Made now and appended to this `.env.local`.
    Generated(PathBuf),
    /// Already set (the environment, `.env.local` or `.env`).
    Existing,
}

/// The stand-in, running while this lives.
#[derive(Debug)]
pub struct Offline {
    standin: StripeStandIn,
    pub secret: SecretSource,
    /// `hint` of the secret, for the log.
    pub secret_hint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("cannot start the Stripe API stand-in: {0}")]
    StandIn(#[source] std::io::Error),
    #[error(
        "cannot write the local webhook secret to {}: {source}; set STRIPE_WEBHOOK_SECRET \
         yourself (any whsec_... value) and start again",
        path.display()
    )]
    Secret {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Offline {
    /// The stand-in's base URL (`STRIPE_API_BASE`).
    pub fn api_base(&self) -> url::Url {
        self.standin.url()
    }

    /// What to type in another terminal, in the same folder, to send an
    /// order to the router at `webhook`.
    pub fn send_line(&self, webhook: &str) -> String {
        format!("stripe-router send checkout.session.completed --items 3 --to {webhook}")
    }
}

/// Starts the stand-in on loopback and returns `env` pointed at it, with a
/// webhook secret: the one set, else one made now and appended to
/// `dir/.env.local` (created private; existing keys are never rewritten).
pub async fn start(dir: &Path, env: Env) -> Result<(Env, Offline), OfflineError> {
    let (env, secret) = match env.get("STRIPE_WEBHOOK_SECRET") {
        Some(_) => (env, SecretSource::Existing),
        None => {
            let value = format!("whsec_{}", send::token(32));
            let path = dir.join(".env.local");
            append_secret(&path, &value).map_err(|source| OfflineError::Secret {
                path: path.clone(),
                source,
            })?;
            (
                env.with([("STRIPE_WEBHOOK_SECRET", value)]),
                SecretSource::Generated(path),
            )
        }
    };
    let standin = StripeStandIn::start(SocketAddr::from(([127, 0, 0, 1], 0)), API_KEY)
        .await
        .map_err(OfflineError::StandIn)?;
    standin.serve_catalogue();
    let base = standin.url().as_str().trim_end_matches('/').to_owned();
    let env = env.with([
        ("STRIPE_API_BASE", base.as_str()),
        ("STRIPE_SECRET_API_KEY", API_KEY),
    ]);
    let secret_hint = env
        .get("STRIPE_WEBHOOK_SECRET")
        .and_then(|v| {
            v.split(',')
                .map(str::trim)
                .find(|s| !s.is_empty())
                .map(env::hint)
        })
        .unwrap_or_default();
    Ok((
        env,
        Offline {
            standin,
            secret,
            secret_hint,
        },
    ))
}

/// Appends `STRIPE_WEBHOOK_SECRET=value` to the dotenv file at `path`,
/// creating it readable by the user only.
fn append_secret(path: &Path, value: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let ends_open = std::fs::read(path)
        .map(|bytes| bytes.last().is_some_and(|&b| b != b'\n'))
        .unwrap_or(false);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let mut text = String::new();
    if ends_open {
        text.push('\n');
    }
    text.push_str(
        "# The local webhook signing secret of `stripe-router serve --offline`; \
         `stripe-router send` run in this folder signs with it.\n",
    );
    text.push_str(&format!("STRIPE_WEBHOOK_SECRET={value}\n"));
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
