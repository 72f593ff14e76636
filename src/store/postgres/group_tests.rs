//! The collector's bounds on a batch: its count and its bytes. No database:
//! the batches are recorded as the collector hands them over.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{BATCH_BYTES, Weigh, start};

/// A job of `bytes`, known by its place in the queue.
struct Job {
    at: usize,
    bytes: usize,
}

impl Weigh for Job {
    fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Queues jobs of `sizes` all before the collector runs (one thread: it
/// runs only once this test waits), and returns the places of each batch
/// it handed over, in order, once every job was in one.
async fn batches(max: usize, sizes: &[usize]) -> Vec<Vec<usize>> {
    let seen: Arc<Mutex<Vec<Vec<usize>>>> = Arc::default();
    let (done, mut committed) = mpsc::unbounded_channel::<usize>();
    let stop = CancellationToken::new();
    let jobs = {
        let seen = seen.clone();
        start(max, 1, stop.clone(), move |batch: Vec<Job>| {
            let (seen, done) = (seen.clone(), done.clone());
            async move {
                let places: Vec<usize> = batch.iter().map(|job| job.at).collect();
                let n = places.len();
                seen.lock().unwrap().push(places);
                let _ = done.send(n);
            }
        })
    };
    for (at, &bytes) in sizes.iter().enumerate() {
        assert!(jobs.send(Job { at, bytes }).is_ok());
    }
    let mut left = sizes.len();
    while left > 0 {
        let n = tokio::time::timeout(Duration::from_secs(10), committed.recv())
            .await
            .expect("the collector hands every job over")
            .expect("the collector runs");
        left -= n;
    }
    stop.cancel();
    seen.lock().unwrap().clone()
}

#[tokio::test]
async fn a_batch_stops_before_its_bodies_pass_the_bound() {
    let tenth = BATCH_BYTES / 10;
    let sizes = [
        6 * tenth,
        3 * tenth,
        2 * tenth,
        3 * BATCH_BYTES,
        10,
        10,
        BATCH_BYTES,
    ];
    let seen = batches(512, &sizes).await;
    // Six and three tenths of the bound fit; two more would pass it, so that
    // job starts the next batch; a job past the bound goes alone; the last
    // fills a batch by itself.
    assert_eq!(
        seen,
        vec![vec![0, 1], vec![2], vec![3], vec![4, 5], vec![6]]
    );
    for batch in &seen {
        let bytes: usize = batch.iter().map(|&at| sizes[at]).sum();
        assert!(
            batch.len() == 1 || bytes <= BATCH_BYTES,
            "{batch:?}: {bytes} bytes"
        );
    }
}

#[tokio::test]
async fn a_batch_stops_at_its_count() {
    let seen = batches(3, &[1; 7]).await;
    assert_eq!(seen, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
}
