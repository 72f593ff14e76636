//! Stripe webhook signature verification. Pure: the clock is a parameter.
//!
//! `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>][,v0=<hex>]`; the expected
//! `v1` is HMAC-SHA256 over `"{t}." + body`, keyed by the whole `whsec_…`
//! secret string.

use std::time::Duration;

/// The configured endpoint secrets; `Debug` never shows them.
#[derive(Clone)]
pub struct Secrets(Vec<String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets([{} redacted])", self.0.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error("STRIPE_WEBHOOK_SECRET is empty: set it to the endpoint signing secret (whsec_...)")]
    Empty,
}

impl Secrets {
    /// Parses `STRIPE_WEBHOOK_SECRET`: comma-separated, whitespace trimmed.
    pub fn parse(value: &str) -> Result<Secrets, SecretsError> {
        let _ = value;
        unimplemented!("verify helper")
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("unable to extract timestamp and signatures from header")]
    MalformedHeader,
}

/// Verifies `header` over the raw `body` at time `now` (unix seconds).
/// A zero `tolerance` turns the timestamp check off.
pub fn verify(
    body: &[u8],
    header: &str,
    secrets: &Secrets,
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let _ = (body, header, secrets, now, tolerance);
    unimplemented!("verify helper")
}

/// The `Stripe-Signature` header Stripe would send for `body` at `timestamp`.
pub fn sign(body: &[u8], secret: &str, timestamp: i64) -> String {
    let _ = (body, secret, timestamp);
    unimplemented!("verify helper")
}
