//! The Stripe API client used to complete order records: a Checkout
//! Session's line items, every page, with retries.

use crate::record::LineItem;

/// `STRIPE_SECRET_API_KEY`; `Debug` and errors show only a hint of it.
#[derive(Clone)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey(redacted)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EnrichError {
    pub retryable: bool,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct StripeApi {}

impl StripeApi {
    pub async fn line_items(&self, session_id: &str) -> Result<Vec<LineItem>, EnrichError> {
        let _ = session_id;
        unimplemented!("enrich helper")
    }
}
