//! Byte budgets: what items held in memory may come to together, where a
//! count alone would let their sizes (which a client, the Stripe API or a
//! consumer controls) multiply it. Three stages keep one:
//! - the intake, for the events it queues for the router, until their
//!   passes end (`delivery::intake::QUEUE_BYTES`);
//! - each sink's worker, for the bodies of the deliveries handed to it,
//!   until they leave its backlog (`delivery::workers::BACKLOG_BYTES`);
//! - the Stripe API client, for the answers being read, until their pages
//!   are read (`routing::enrich::ANSWER_BYTES`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The bytes some items hold, against a limit: an item is kept only with a
/// share of it ([`ByteBudget::take`]), given back when the share is
/// dropped.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    used: Arc<AtomicUsize>,
    limit: usize,
}

impl ByteBudget {
    pub fn new(limit: usize) -> ByteBudget {
        ByteBudget {
            used: Arc::default(),
            limit,
        }
    }

    /// A share of `bytes`, or `None` when it would take the total past the
    /// limit.
    pub fn take(&self, bytes: usize) -> Option<ByteShare> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .ok()?;
        Some(ByteShare {
            used: self.used.clone(),
            bytes,
        })
    }

    /// Adds `bytes` to `share`, or `false` when that would take the total
    /// past the limit (`share` is then as it was).
    pub fn add_to(&self, share: &mut ByteShare, bytes: usize) -> bool {
        match self.take(bytes) {
            Some(mut more) => {
                share.bytes += std::mem::take(&mut more.bytes);
                true
            }
            None => false,
        }
    }

    /// The bytes shared out now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// A share of [`ByteBudget`], given back when dropped, also on unwind.
#[derive(Debug)]
pub struct ByteShare {
    used: Arc<AtomicUsize>,
    bytes: usize,
}

impl ByteShare {
    /// The bytes this share holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for ByteShare {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
