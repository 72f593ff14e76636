//! The ids of the last records a JSONL sink put in its file, so that a
//! record already there is not appended again.
//!
//! Each id is kept as a 128-bit SHA-256 fingerprint rather than as its text:
//! 16 bytes whatever the id's length, and no allocation per id, so the
//! memory the sink holds for [`REMEMBERED`] ids is fixed and small. Two ids
//! share a fingerprint with odds of about one in 2^128 per pair, far below
//! those of the disk flipping a bit.

use std::collections::{HashSet, VecDeque};

use sha2::{Digest, Sha256};

use super::REMEMBERED;

/// The fingerprints of the last [`REMEMBERED`] records put in the file.
#[derive(Debug, Default)]
pub(super) struct Written {
    order: VecDeque<u128>,
    ids: HashSet<u128>,
}

impl Written {
    pub(super) fn contains(&self, id: &str) -> bool {
        self.ids.contains(&fingerprint(id))
    }

    pub(super) fn insert(&mut self, id: &str) {
        let id = fingerprint(id);
        if !self.ids.insert(id) {
            return;
        }
        // The oldest leaves before the newest comes in, so the queue never
        // outgrows `REMEMBERED` (a `VecDeque` at capacity doubles).
        if self.order.len() >= REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.order.push_back(id);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }
}

fn fingerprint(id: &str) -> u128 {
    let digest = Sha256::digest(id.as_bytes());
    let mut head = [0u8; 16];
    head.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(head)
}

#[cfg(test)]
#[path = "written_tests.rs"]
mod tests;
