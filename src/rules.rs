//! Route conditions (`when`) and matching. Pure, no I/O.

/// A compiled `when` map: every condition must hold.
#[derive(Debug, Clone)]
pub struct When {}

impl When {
    /// Compiles the conditions of one route; every problem is returned,
    /// each naming its key.
    pub fn compile(conditions: &[(String, serde_json::Value)]) -> Result<When, Vec<String>> {
        let _ = conditions;
        unimplemented!("rules helper")
    }

    /// Whether `event` (a Stripe event object) satisfies every condition.
    pub fn matches(&self, event: &serde_json::Value) -> bool {
        let _ = event;
        unimplemented!("rules helper")
    }
}
