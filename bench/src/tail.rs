//! Follows JSONL sink files the way `tail -F` would (one per router, when
//! several replicas share the load), and times each record from its
//! event's send instant to the moment its line is read.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::load::{event_index, histogram};

/// What the tail saw.
pub struct Tailed {
    /// Send-to-record latency, microseconds, one entry per distinct event.
    pub latency: Histogram<u64>,
    pub records: usize,
    /// When the last expected record was read, after `t0`.
    pub last_at: Option<Duration>,
}

pub struct Tail {
    stop: Arc<AtomicBool>,
    /// Distinct records read so far, while the tail runs.
    seen: Arc<AtomicUsize>,
    thread: JoinHandle<Tailed>,
}

impl Tail {
    /// Starts following `paths` (which may not exist yet) until `expect`
    /// distinct events were seen in them or [`Tail::finish`] is called.
    pub fn start(
        paths: Vec<PathBuf>,
        expect: usize,
        sent_at: Arc<Vec<AtomicU64>>,
        t0: Instant,
    ) -> Tail {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || follow(&paths, expect, &sent_at, t0, &stop, &seen))
        };
        Tail { stop, seen, thread }
    }

    /// Distinct records in the file now (as far as the tail has read: it
    /// polls every 0.5 ms).
    pub fn records(&self) -> usize {
        self.seen.load(Ordering::Relaxed)
    }

    /// Waits until every expected record arrived or `timeout` passed.
    pub fn finish(self, timeout: Duration) -> Tailed {
        let deadline = Instant::now() + timeout;
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_else(|_| Tailed {
            latency: histogram(),
            records: 0,
            last_at: None,
        })
    }
}

const NEEDLE: &[u8] = b"\"event_id\":\"";

/// One followed file: open once it exists, and the bytes after its last
/// whole line.
struct Followed<'a> {
    path: &'a std::path::Path,
    file: Option<File>,
    pending: Vec<u8>,
}

fn follow(
    paths: &[PathBuf],
    expect: usize,
    sent_at: &[AtomicU64],
    t0: Instant,
    stop: &AtomicBool,
    seen_count: &AtomicUsize,
) -> Tailed {
    let mut tailed = Tailed {
        latency: histogram(),
        records: 0,
        last_at: None,
    };
    let mut seen = vec![false; sent_at.len()];
    let mut files: Vec<Followed> = paths
        .iter()
        .map(|path| Followed {
            path,
            file: None,
            pending: Vec::new(),
        })
        .collect();
    let mut chunk = vec![0u8; 1 << 20];
    while tailed.records < expect && !stop.load(Ordering::Relaxed) {
        let mut read_any = false;
        for followed in &mut files {
            if followed.file.is_none() {
                followed.file = File::open(followed.path).ok();
            }
            let n = followed
                .file
                .as_mut()
                .map_or(0, |f| f.read(&mut chunk).unwrap_or(0));
            if n == 0 {
                continue;
            }
            read_any = true;
            let now = t0.elapsed();
            let pending = &mut followed.pending;
            pending.extend_from_slice(&chunk[..n]);
            let mut consumed = 0;
            while let Some(end) = pending[consumed..].iter().position(|&b| b == b'\n') {
                let line = &pending[consumed..consumed + end];
                consumed += end + 1;
                let Some(i) = find_index(line) else { continue };
                if i >= seen.len() || seen[i] {
                    continue;
                }
                seen[i] = true;
                tailed.records += 1;
                seen_count.store(tailed.records, Ordering::Relaxed);
                let sent = sent_at[i].load(Ordering::Relaxed);
                if sent > 0 {
                    let micros = now.as_nanos().saturating_sub(sent as u128) / 1000;
                    tailed.latency.saturating_record((micros as u64).max(1));
                }
                if tailed.records == expect {
                    tailed.last_at = Some(now);
                }
            }
            pending.drain(..consumed);
        }
        if !read_any {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    tailed
}

fn find_index(line: &[u8]) -> Option<usize> {
    let start = line.windows(NEEDLE.len()).position(|w| w == NEEDLE)? + NEEDLE.len();
    let rest = &line[start..];
    let end = rest.iter().position(|&b| b == b'"')?;
    event_index(&rest[..end])
}
