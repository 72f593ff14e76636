//! Reading the end of an existing JSONL file when its sink is built: the ids
//! of its last whole lines, and a last line a crash cut short.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use super::{ID_HEAD_BYTES, REMEMBERED, TAIL_BYTES, TORN_LINE_GRACE, TornLine};

/// What the end of an existing file holds.
#[derive(Debug, Default)]
pub(super) struct Tail {
    /// The ids of its last whole lines, oldest first (at most [`REMEMBERED`]).
    pub ids: Vec<String>,
    /// A last line without its newline.
    pub torn: Option<TornLine>,
    /// Where to cut the file before the first write: a last line without its
    /// newline too long to be one of this sink's records.
    pub cut_at: Option<u64>,
}

/// Reads the ids of the whole lines in the last [`TAIL_BYTES`] of the file at
/// `path`, or further back until at least `min_lines` lines are covered, and
/// the last line if it has no newline; nothing if there is no file. Only the
/// head of each line is kept in memory.
pub(super) fn read_tail(path: &Path, min_lines: usize) -> io::Result<Tail> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Tail::default()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut window = TAIL_BYTES;
    loop {
        let start = len.saturating_sub(window);
        let scan = scan_lines(&file, start, len)?;
        if start == 0 || scan.lines >= min_lines {
            let mut tail = Tail {
                ids: scan.ids.into(),
                ..Tail::default()
            };
            match len - scan.last_end {
                0 => {}
                // Longer than any record: not a line this sink began.
                n if n > TORN_LINE_MAX => tail.cut_at = Some(scan.last_end),
                n => {
                    let mut bytes = vec![0; usize::try_from(n).unwrap_or(0)];
                    file.read_exact_at(&mut bytes, scan.last_end)?;
                    tail.torn = Some(TornLine {
                        start: scan.last_end,
                        bytes,
                        until: Instant::now() + TORN_LINE_GRACE,
                    });
                }
            }
            return Ok(tail);
        }
        window = window.saturating_mul(4);
    }
}

/// A last line longer than this is not completed but cut off at once.
pub(super) const TORN_LINE_MAX: u64 = 64 * 1024 * 1024;

/// What one pass over the lines from `start` found.
struct Scan {
    ids: VecDeque<String>,
    /// Whole lines seen (with or without an id).
    lines: usize,
    /// The offset just past the last newline, or `start` if none.
    last_end: u64,
}

fn scan_lines(file: &File, start: u64, len: u64) -> io::Result<Scan> {
    let mut file = file;
    file.seek(SeekFrom::Start(start))?;
    // Never past the length it had: a device like /dev/full never ends.
    let mut reader = BufReader::with_capacity(64 * 1024, file.take(len - start));
    let mut scan = Scan {
        ids: VecDeque::new(),
        lines: 0,
        last_end: start,
    };
    let mut offset = start;
    let mut head = Vec::with_capacity(ID_HEAD_BYTES);
    // Starting mid-file, the first line is a part of one: skipped.
    let mut whole = start == 0;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(scan);
        }
        let end = buffer.iter().position(|&b| b == b'\n');
        let part = &buffer[..end.unwrap_or(buffer.len())];
        if whole {
            let room = ID_HEAD_BYTES.saturating_sub(head.len());
            head.extend_from_slice(&part[..part.len().min(room)]);
        }
        let consumed = part.len() + usize::from(end.is_some());
        reader.consume(consumed);
        offset += consumed as u64;
        if end.is_some() {
            if whole {
                scan.lines += 1;
                if let Some(id) = line_id(&head) {
                    scan.ids.push_back(id);
                    if scan.ids.len() > REMEMBERED {
                        scan.ids.pop_front();
                    }
                }
            }
            scan.last_end = offset;
            head.clear();
            whole = true;
        }
    }
}

/// The record id at the head of a line: `{"id":"<JSON string>"`.
pub(super) fn line_id(head: &[u8]) -> Option<String> {
    const PREFIX: &[u8] = b"{\"id\":";
    let string = head.strip_prefix(PREFIX)?;
    if string.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < string.len() {
        match string[i] {
            b'\\' => i += 2,
            b'"' => return serde_json::from_slice(&string[..=i]).ok(),
            _ => i += 1,
        }
    }
    None
}
