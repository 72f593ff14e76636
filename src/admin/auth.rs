//! Who may ask the admin listener: `STRIPE_ROUTER_ADMIN_TOKEN`, required
//! off loopback and enforced wherever it is set, compared in constant time.
//! [`access`] decides, from the environment and the address, whether the
//! listener may start and with which token; `serve` and `check` both call
//! it, so they refuse the same settings.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AdminListen;
use crate::config::env::Env;

/// The variable that holds the admin listener's bearer token.
pub const TOKEN_VAR: &str = "STRIPE_ROUTER_ADMIN_TOKEN";

/// The shortest token taken: a guessable token on a reachable port is no
/// protection.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why the admin listener may not start. The token is never quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error(
        "server.admin_listen {addr} is not a loopback address, and {TOKEN_VAR} is not set: the admin listener shows the router's internals and replays dead letters; set {TOKEN_VAR} to a random secret of at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 32`) to require `Authorization: Bearer <token>`, or use 127.0.0.1:PORT, or `off`"
    )]
    NoToken { addr: SocketAddr },
    #[error(
        "{TOKEN_VAR} is too short ({len} characters): use a random secret of at least {MIN_TOKEN_LEN} characters, e.g. `openssl rand -hex 32`"
    )]
    TooShort { len: usize },
}

/// The admin listener's bearer token. Only its digest is kept, so that
/// comparing a presented token takes the same time whatever its length.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    fn new(secret: &str) -> Token {
        Token {
            digest: Sha256::digest(secret.as_bytes()).into(),
        }
    }

    /// Whether `presented` is the token, in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        bool::from(self.digest.ct_eq(&digest))
    }
}

/// The token the admin listener at `listen` requires, if any: the one in
/// [`TOKEN_VAR`] wherever it is set (on loopback too: a configured token
/// is never ignored); none on loopback without it; refused off loopback
/// without it, or when it is too short.
pub fn access(env: &Env, listen: AdminListen) -> Result<Option<Token>, AccessError> {
    let secret = env
        .get(TOKEN_VAR)
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty());
    match (secret, listen) {
        (Some(secret), _) if secret.chars().count() < MIN_TOKEN_LEN => Err(AccessError::TooShort {
            len: secret.chars().count(),
        }),
        (Some(secret), _) => Ok(Some(Token::new(&secret))),
        (None, AdminListen::On(addr)) if !addr.ip().is_loopback() => {
            Err(AccessError::NoToken { addr })
        }
        (None, _) => Ok(None),
    }
}

/// Whether a request's `Authorization` header carries `token`: `Bearer`
/// (any case) and the token. `None` when the header is missing or not a
/// bearer token, so that the answer can ask for one.
pub fn check(token: &Token, authorization: Option<&[u8]>) -> Option<bool> {
    let value = authorization?;
    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    Some(token.matches(rest.trim_ascii()))
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
