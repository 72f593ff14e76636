//! Stripe webhook signature verification. Pure: the clock is a parameter.
//!
//! `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>][,v0=<hex>]`; the expected
//! `v1` is HMAC-SHA256 over `"{t}." + body`, keyed by the whole `whsec_…`
//! secret string. Every `v1` in the header is compared, in constant time,
//! against every configured secret, so both sides of a secret roll verify.
//!
//! The header is parsed the way Stripe's SDKs parse it (split on `,`, then on
//! the first `=`, no trimming), hex is decoded case-insensitively, and the
//! timestamp is checked in both directions: a timestamp from the future is as
//! suspicious as an old one. Checks run in the order header, signature,
//! timestamp, so a forged request is reported as forged, never as late.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

type HmacSha256 = Hmac<Sha256>;

/// The configured endpoint secrets, at least one; `Debug` never shows them.
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
    /// `prefix` is only the key's kind (`sk_live_`), never the key itself.
    #[error(
        "STRIPE_WEBHOOK_SECRET holds an API key ({prefix}...), not a webhook signing secret: \
         set it to the endpoint signing secret, whsec_..., printed by \
         `stripe listen --print-secret` or shown on the Dashboard's webhook endpoint page"
    )]
    ApiKey { prefix: String },
}

impl Secrets {
    /// Parses `STRIPE_WEBHOOK_SECRET`: comma-separated, whitespace trimmed,
    /// empty pieces ignored. API keys (`sk_`, `rk_`, `pk_`) are refused;
    /// anything else is accepted, `whsec_` prefix or not.
    pub fn parse(value: &str) -> Result<Secrets, SecretsError> {
        let mut secrets = Vec::new();
        for piece in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(prefix) = api_key_prefix(piece) {
                return Err(SecretsError::ApiKey { prefix });
            }
            secrets.push(piece.to_owned());
        }
        if secrets.is_empty() {
            return Err(SecretsError::Empty);
        }
        Ok(Secrets(secrets))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The kind of API key `value` is (`sk_live_`, `rk_test_`, `pk_`), if it is one.
fn api_key_prefix(value: &str) -> Option<String> {
    let kind = ["sk_", "rk_", "pk_"]
        .into_iter()
        .find(|k| value.starts_with(k))?;
    let rest = &value[kind.len()..];
    let mode = ["live_", "test_"]
        .into_iter()
        .find(|m| rest.starts_with(m))
        .unwrap_or("");
    Some(format!("{kind}{mode}"))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("unable to extract timestamp and signatures from header")]
    MalformedHeader,
    #[error("no signatures found with expected scheme v1")]
    NoV1Signature,
    #[error(
        "no signatures found matching the expected signature for payload (tried {secrets} {})",
        if *.secrets == 1 { "secret" } else { "secrets" }
    )]
    NoMatchingSignature { secrets: usize },
    /// `age` is `now - t`: positive when the timestamp is in the past,
    /// negative when it is in the future.
    #[error("{}", describe_skew(*.age, *.tolerance_secs))]
    TimestampOutsideTolerance { age: i64, tolerance_secs: u64 },
}

fn describe_skew(age: i64, tolerance_secs: u64) -> String {
    let direction = if age < 0 { "in the future" } else { "old" };
    format!(
        "timestamp is {}s {direction}, outside the tolerance of {tolerance_secs}s: \
         the sender's or this machine's clock may be wrong, or the request is a replay",
        age.unsigned_abs()
    )
}

/// The parts of a `Stripe-Signature` header that verification uses.
struct Header<'a> {
    /// The timestamp exactly as sent: it is what the sender signed.
    timestamp_text: &'a str,
    timestamp: i64,
    v1: Vec<&'a str>,
}

fn parse_header(header: &str) -> Result<Header<'_>, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for (scheme, value) in header.split(',').filter_map(|item| item.split_once('=')) {
        match scheme {
            "t" => {
                // Two timestamps would make "the" signed timestamp ambiguous.
                if timestamp.is_some() {
                    return Err(SignatureError::MalformedHeader);
                }
                let parsed: i64 = value.parse().map_err(|_| SignatureError::MalformedHeader)?;
                timestamp = Some((value, parsed));
            }
            "v1" => v1.push(value),
            _ => {}
        }
    }
    let (timestamp_text, timestamp) = timestamp.ok_or(SignatureError::MalformedHeader)?;
    if v1.is_empty() {
        return Err(SignatureError::NoV1Signature);
    }
    Ok(Header {
        timestamp_text,
        timestamp,
        v1,
    })
}

fn signature(body: &[u8], secret: &str, timestamp: &str) -> [u8; 32] {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Verifies `header` over the raw `body` at time `now` (unix seconds).
/// A zero `tolerance` turns the timestamp check off; an age of exactly
/// `tolerance`, past or future, is still accepted.
pub fn verify(
    body: &[u8],
    header: &str,
    secrets: &Secrets,
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let header = parse_header(header)?;
    // A `v1` that is not 32 bytes of hex cannot match; it is skipped rather
    // than rejected, as the SDKs do.
    let candidates: Vec<[u8; 32]> = header
        .v1
        .iter()
        .filter_map(|v| hex::decode(v).ok()?.try_into().ok())
        .collect();
    let mut matched = Choice::from(0);
    for secret in &secrets.0 {
        let expected = signature(body, secret, header.timestamp_text);
        for candidate in &candidates {
            matched |= expected.ct_eq(candidate);
        }
    }
    if !bool::from(matched) {
        return Err(SignatureError::NoMatchingSignature {
            secrets: secrets.len(),
        });
    }
    let age = now.saturating_sub(header.timestamp);
    if !tolerance.is_zero() && Duration::from_secs(age.unsigned_abs()) > tolerance {
        return Err(SignatureError::TimestampOutsideTolerance {
            age,
            tolerance_secs: tolerance.as_secs(),
        });
    }
    Ok(())
}

/// The `Stripe-Signature` header Stripe would send for `body` at `timestamp`.
pub fn sign(body: &[u8], secret: &str, timestamp: i64) -> String {
    let v1 = signature(body, secret, &timestamp.to_string());
    format!("t={timestamp},v1={}", hex::encode(v1))
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
