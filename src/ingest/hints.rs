//! What to do about the classic mistakes: the hint for a refused webhook
//! request. (`check`'s warnings about the environment are in
//! `commands::check`.)
//!
//! Pure, like [`crate::ingest::verify`]: the refused request's body, header and the
//! secrets go in, a sentence comes out. A hint never quotes a secret or the
//! signature.

use std::time::Duration;

use crate::ingest::verify::{self, Secrets, SignatureError};

/// The `stripe listen` advice, said wherever a secret may be the wrong one.
pub const WHICH_SECRET: &str = "the `stripe listen` secret differs from the Dashboard endpoint's \
                            and changes with each `stripe login`: print it with \
                            `stripe listen --print-secret`, or copy the endpoint's signing \
                            secret from the Dashboard, into STRIPE_WEBHOOK_SECRET";

/// The largest body whose refusal is diagnosed. Diagnosing a body that
/// matches no secret parses it, re-serialises it and hashes it again: about
/// 20 times what verifying it costs, which anyone can make the router pay
/// with forged requests. Real Stripe events are a few KiB (the fixtures of
/// Checkout Session events are under 5 KiB), so 64 KiB keeps the hint for
/// every real mistake while a forged 2 MiB body costs what a verified one does.
pub const HINT_MAX_BODY: usize = 64 * 1024;

/// What most likely caused `error` and what to do about it.
pub fn refusal_hint(
    error: &SignatureError,
    body: &[u8],
    header: &str,
    secrets: &Secrets,
) -> String {
    match error {
        SignatureError::MalformedHeader => "the Stripe-Signature header must look like \
             `t=<unix seconds>,v1=<hex>`: the request did not come from Stripe, or a proxy \
             rewrote the header"
            .to_owned(),
        SignatureError::NoV1Signature => "the header carries no `v1` signature, the only \
             scheme Stripe signs with: the request did not come from Stripe"
            .to_owned(),
        SignatureError::NoMatchingSignature { secrets: count } => {
            if body.len() > HINT_MAX_BODY {
                return format!(
                    "the body ({} bytes) matches none of the {count} configured secret(s); \
                     bodies over {} KiB are not examined further: the request did not come \
                     from Stripe, or {WHICH_SECRET}",
                    body.len(),
                    HINT_MAX_BODY / 1024
                );
            }
            // Parsed once, for both questions: a forged request pays for it.
            let parsed = serde_json::from_slice::<serde_json::Value>(body).ok();
            let Some(event) = parsed.filter(looks_like_event) else {
                return format!(
                    "the body is not a Stripe event and matches none of the {count} configured \
                     secret(s): the request did not come from Stripe, or {WHICH_SECRET}"
                );
            };
            if reserialised(&event, body, header, secrets) {
                return "the signature matches this event as Stripe serialises it (2-space \
                        indented JSON) but not the bytes received: something between Stripe and \
                        here parsed and re-encoded the body (a proxy, or a framework's JSON body \
                        parser); pass the raw body through unchanged"
                    .to_owned();
            }
            format!(
                "the body is a well-formed Stripe event signed with none of the {count} \
                 configured secret(s): {WHICH_SECRET}; if the secret is right, something \
                 changed the body's bytes on the way"
            )
        }
        SignatureError::TimestampOutsideTolerance { age, .. } => {
            let far = humantime::format_duration(Duration::from_secs(age.unsigned_abs()));
            let when = if *age < 0 { "ahead of" } else { "behind" };
            format!(
                "the signature is genuine but its time is {far} {when} this machine's clock: \
                 if this machine's clock is wrong, fix its time sync (NTP); Stripe signs every \
                 retry afresh, so an old timestamp otherwise means a replayed request"
            )
        }
    }
}

/// A JSON object with `"object": "event"` and an `evt_` id: what Stripe sends.
fn looks_like_event(value: &serde_json::Value) -> bool {
    value["object"] == "event"
        && value["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("evt_"))
}

/// Whether the signature verifies over the body (`value`, parsed from
/// `body`) re-encoded the way Stripe encodes webhook bodies, i.e. the
/// received bytes are a re-serialisation.
fn reserialised(value: &serde_json::Value, body: &[u8], header: &str, secrets: &Secrets) -> bool {
    let Ok(stripe_bytes) = serde_json::to_vec_pretty(value) else {
        return false;
    };
    // Tolerance zero: only the bytes are in question here, not the time.
    stripe_bytes != body
        && verify::verify(&stripe_bytes, header, secrets, 0, Duration::ZERO).is_ok()
}

#[cfg(test)]
#[path = "hints_tests.rs"]
mod tests;
