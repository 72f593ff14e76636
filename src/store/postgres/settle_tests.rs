use tokio::sync::oneshot;

use super::{Job, rounds};
use crate::store::Settle;

fn job(record: &str, outcome: Settle) -> Job {
    Job {
        record_id: record.to_owned(),
        sink: "hook".to_owned(),
        outcome,
        at_ms: 1,
        reply: oneshot::channel().0,
    }
}

#[test]
fn a_delivery_settled_twice_in_a_batch_goes_in_a_later_round_in_call_order() {
    let retry = |e: &str| Settle::Retry {
        next_attempt_ms: 5,
        error: e.to_owned(),
    };
    let batch = vec![
        job("rec_b", retry("first")),
        job("rec_a", Settle::Delivered),
        job("rec_b", retry("second")),
        job("rec_b", Settle::Delivered),
    ];
    let rounds = rounds(&batch);
    assert_eq!(rounds.len(), 3);
    // Each round in key order, each key once.
    assert_eq!(rounds[0].records, ["rec_a", "rec_b"]);
    assert_eq!(rounds[0].errors, [None, Some("first")]);
    assert_eq!(rounds[1].records, ["rec_b"]);
    assert_eq!(rounds[1].errors, [Some("second")]);
    assert_eq!(rounds[2].records, ["rec_b"]);
    assert_eq!(rounds[2].states, [1]);
}
