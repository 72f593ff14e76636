//! `jsonl`: one compact JSON record per line, appended to a file.
//!
//! Records go out as whole lines (`body + "\n"`) on a file opened with
//! `O_APPEND`: the lines queued while the previous write ran are written
//! together in a single `write_all` (and synced once, with `fsync`), by one
//! blocking-pool task at a time, so lines never interleave and a `tail -F`
//! reader sees whole lines. Before every write the sink compares the
//! open file's (device, inode) with what the path names now: when log rotation
//! has renamed or deleted the file, the path is reopened (created) first, and
//! the old file keeps what was written to it. The sink assumes it is the only
//! writer of its file.
//!
//! A write that fails midway (a full disk) could leave a fragment without a
//! newline; the sink cuts the file back to its length before that write, at
//! once or, if that fails too, before the next write, so a retried record never
//! lands glued to a fragment.
//!
//! One line per record id: the sink remembers the ids of the last
//! `REMEMBERED` records it wrote, starting from the ids in the file's tail
//! when it is built (its last `TAIL_BYTES`, and at least its last
//! `TAIL_LINES_PER_SLOT` lines per delivery slot however long lines are).
//! A record it already wrote is not appended again: not when the journal
//! could not record the delivery (a full disk; the row is retried), not after
//! a crash between the write and that record, not after the file was rotated
//! away.
//!
//! A crash in the middle of a write leaves the file ending in the first part
//! of a line. The sink never cuts that part off at once: a `tail -F` reader
//! has already printed it, and on seeing the file shrink, `tail -F` prints
//! the whole file again from its start. Instead the line is completed: the
//! record it belongs to is delivered again after the restart (the journal
//! never saw it delivered), and the sink appends only the rest of its line,
//! so the file and every reader get the line whole, once. Other records wait
//! for it (their deliveries are retried) for up to `TORN_LINE_GRACE`; if
//! no record completes it by then (the journal was reset, or another program
//! wrote it) it is cut off, so the file stays whole JSON lines. Either is done
//! only while the file still ends in that part: once it was emptied in place
//! (`copytruncate`) or grew, the part is left alone and records are appended
//! as usual. (A reopened file never has a torn line: rotation by rename drops
//! it with the old file.)
//!
//! Customer data: a file the sink creates is `0600` and a folder it creates
//! `0700`, or what `mode` says (folders get `x` where the mode has `r`).
//! Existing files and folders keep theirs.
//!
//! File I/O blocks, so it runs on tokio's blocking pool.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use tokio::sync::oneshot;

use super::{BuildError, DeliverFuture, Delivery, DeliveryError, Encoded, Sink, SinkType};

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// The file to append to; relative paths resolve against the config
    /// file's folder.
    #[serde(deserialize_with = "parse_path")]
    pub path: PathBuf,
    /// Permissions of the file when the sink creates it, e.g. `"0640"`;
    /// [`FileMode::DEFAULT`] (`0600`) when unset.
    #[serde(default)]
    pub mode: Option<FileMode>,
}

impl SinkType for JsonlConfig {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    fn target(&self, base_dir: &Path) -> String {
        base_dir.join(&self.path).display().to_string()
    }

    fn build(&self, base_dir: &Path, delivery: &Delivery) -> Result<Arc<dyn Sink>, BuildError> {
        Ok(Arc::new(JsonlSink::build_with(
            self,
            base_dir,
            delivery.concurrency,
        )?))
    }
}

/// A path that can name a file: a folder cannot be appended to, so `check`
/// refuses it as `serve` would.
fn parse_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let text = String::deserialize(d)?;
    let names_folder =
        text.trim().is_empty() || text.ends_with('/') || Path::new(&text).file_name().is_none();
    if names_folder {
        return Err(serde::de::Error::custom(format!(
            "`{text}` names a folder, not a file: write e.g. `sinks/orders.jsonl`"
        )));
    }
    Ok(PathBuf::from(text))
}

/// Unix permissions for a file the sink creates, written in the config as
/// an octal string (`"0640"`). The owner can always read and write it: the
/// router appends to it and reads its tail when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(u32);

impl FileMode {
    /// Owner only: the lines hold customers' names and addresses.
    pub const DEFAULT: FileMode = FileMode(0o600);

    pub fn parse(text: &str) -> Result<FileMode, String> {
        let digits = text.trim();
        let digits = digits.strip_prefix("0o").unwrap_or(digits);
        let bits = (!digits.is_empty() && digits.len() <= 4)
            .then(|| u32::from_str_radix(digits, 8).ok())
            .flatten()
            .filter(|bits| *bits <= 0o777)
            .ok_or_else(|| {
                format!(
                    "mode `{text}` is not a file mode: write permission bits in octal, \
                     like \"0640\" (no setuid, setgid or sticky bits)"
                )
            })?;
        if bits & 0o600 != 0o600 {
            return Err(format!(
                "mode `{text}` must let the owner read and write (0600 at least): the router \
                 appends to the file and reads its tail"
            ));
        }
        Ok(FileMode(bits))
    }

    /// The permission bits of a file.
    pub fn file(self) -> u32 {
        self.0
    }

    /// The permission bits of a folder the sink creates: the file's, with
    /// `x` wherever there is `r` (`0640` gives `0750`), so whoever may read
    /// the file may reach it.
    pub fn folder(self) -> u32 {
        self.0 | ((self.0 & 0o444) >> 2)
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FileMode, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = FileMode;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a file mode as a quoted octal string, like \"0640\"")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<FileMode, E> {
                FileMode::parse(text).map_err(E::custom)
            }

            // YAML reads `0640` as a number, octal or not depending on the
            // version: ambiguous, so refused.
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<FileMode, E> {
                Err(E::custom(format!(
                    "mode {n} is a number: write it as a quoted octal string, like \"0640\""
                )))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<FileMode, E> {
                self.visit_u64(n.unsigned_abs())
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Record ids remembered as written: far more than can be written and not
/// yet recorded as delivered at once (a sink's `concurrency` plus its
/// worker's backlog of 4096), at about 50 bytes each (`written`).
const REMEMBERED: usize = 16_384;
/// How much of the end of an existing file is read for the ids it holds
/// when the sink is built. The records a crash can leave written but not
/// recorded are among the last lines: about `concurrency` of them, more when
/// the journal was slow to record deliveries. Orders are a few KB each.
const TAIL_BYTES: u64 = 16 * 1024 * 1024;
/// However long the lines (records of whole events can be megabytes), the
/// tail read covers at least this many lines per delivery slot
/// (`concurrency`): 16 MB would hold only 8 lines of 2 MB.
const TAIL_LINES_PER_SLOT: usize = 8;
/// How long other records wait for the record that completes a line a crash
/// cut short. That record is among the first the worker delivers again after
/// a restart; the others are retried meanwhile.
const TORN_LINE_GRACE: Duration = Duration::from_secs(10);
/// A record's id is at the very start of its line (`{"id":"evt_…:route"`);
/// no id is longer than this.
const ID_HEAD_BYTES: usize = 1024;

#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    fsync: bool,
    queue: Arc<Mutex<Queue>>,
    appender: Arc<Mutex<Appender>>,
}

impl JsonlSink {
    /// Creates the parent folders and opens the file for appending, so a
    /// config naming an unwritable place fails at build, not at the first
    /// record.
    pub fn build(config: &JsonlConfig, base_dir: &Path) -> Result<JsonlSink, BuildError> {
        JsonlSink::build_with(config, base_dir, super::DEFAULT_CONCURRENCY)
    }

    /// As [`JsonlSink::build`], for a sink with `concurrency` deliveries in
    /// flight at once.
    pub fn build_with(
        config: &JsonlConfig,
        base_dir: &Path,
        concurrency: usize,
    ) -> Result<JsonlSink, BuildError> {
        let path = base_dir.join(&config.path);
        let mode = config.mode.unwrap_or(FileMode::DEFAULT);
        let fail = |(what, e): Failure| {
            BuildError(format!(
                "jsonl sink {}: {what}: {e}; choose another `path`, or let the router create and write its folders",
                path.display()
            ))
        };
        let mut file = OpenFile::open(&path, mode).map_err(fail)?;
        let min_lines = TAIL_LINES_PER_SLOT * concurrency.max(1);
        let tail = read_tail(&path, min_lines)
            .map_err(|e| fail(("cannot read the end of the file", e)))?;
        let mut written = Written::default();
        for id in tail.ids {
            written.insert(&id);
        }
        if let Some(torn) = tail.torn {
            tracing::warn!(
                path = %path.display(), bytes = torn.bytes.len(),
                record_id = line_id(&torn.bytes).as_deref().unwrap_or("unknown"),
                "the file ends in a line cut short (a crash while writing it): it is \
                 completed when its record is delivered again; other records wait for it"
            );
            file.torn_line = Some(torn);
        }
        file.torn_at = tail.cut_at;
        let appender = Appender {
            path: path.clone(),
            mode,
            open: Some(file),
            written,
        };
        Ok(JsonlSink {
            path,
            fsync: false,
            queue: Arc::default(),
            appender: Arc::new(Mutex::new(appender)),
        })
    }

    /// With `fsync`, a delivery is Ok only once the line is on disk
    /// (`sync_data` after each write), not merely handed to the kernel. Off by
    /// default: it costs a disk flush per record.
    pub fn with_fsync(mut self, fsync: bool) -> JsonlSink {
        self.fsync = fsync;
        self
    }

    /// The resolved file path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Sink for JsonlSink {
    fn deliver<'a>(&'a self, record: &'a Encoded) -> DeliverFuture<'a> {
        Box::pin(async move {
            // A raw newline would split the record into two lines for readers.
            if record.body.contains(&b'\n') {
                return Err(DeliveryError::permanent(format!(
                    "jsonl sink {}: record {} is not compact JSON (it holds a newline)",
                    self.path.display(),
                    record.id
                )));
            }
            let (done, outcome) = oneshot::channel();
            let start = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                queue.lines.push(Queued {
                    id: record.id.clone(),
                    body: record.body.clone(),
                    done,
                });
                !std::mem::replace(&mut queue.writing, true)
            };
            if start {
                let (queue, appender, fsync) = (
                    Arc::clone(&self.queue),
                    Arc::clone(&self.appender),
                    self.fsync,
                );
                drop(tokio::task::spawn_blocking(move || {
                    write_queued(&queue, &appender, fsync);
                }));
            }
            match outcome.await {
                Ok(result) => result.map_err(|(what, e)| {
                    DeliveryError::retryable(format!(
                        "jsonl sink {}: {what}: {e}",
                        self.path.display()
                    ))
                }),
                Err(_) => Err(DeliveryError::retryable(format!(
                    "jsonl sink {}: write task did not finish",
                    self.path.display()
                ))),
            }
        })
    }
}

/// Lines waiting for the blocking task that writes them.
#[derive(Debug, Default)]
struct Queue {
    lines: Vec<Queued>,
    /// A task is writing, and takes whatever is queued before it stops.
    writing: bool,
}

/// One record's line, and where its outcome goes.
#[derive(Debug)]
struct Queued {
    id: String,
    /// The record without its newline.
    body: Bytes,
    done: oneshot::Sender<Result<(), Failure>>,
}

/// Writes what is queued, a batch at a time, until the queue is empty: the
/// lines that arrive during one write go out together in the next, so a
/// burst costs one blocking-pool task, and one write (one sync) per batch,
/// not per line. The queue holds at most the sink's deliveries in flight.
fn write_queued(queue: &Mutex<Queue>, appender: &Mutex<Appender>, fsync: bool) {
    // A panic drops the queued lines (their deliveries fail and are retried)
    // and lets the next delivery start a writer again.
    struct Unwind<'a>(&'a Mutex<Queue>);
    impl Drop for Unwind<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                queue.lines.clear();
                queue.writing = false;
            }
        }
    }
    let _unwind = Unwind(queue);
    loop {
        let batch = {
            let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.lines.is_empty() {
                queue.writing = false;
                return;
            }
            std::mem::take(&mut queue.lines)
        };
        let outcomes = {
            // A panic cannot leave the appender inconsistent: every write
            // starts by checking the file and any torn line.
            let mut appender = appender.lock().unwrap_or_else(PoisonError::into_inner);
            appender.append(&batch, fsync)
        };
        for (queued, outcome) in batch.into_iter().zip(outcomes) {
            let _ = queued.done.send(outcome);
        }
    }
}

/// What failed (a short phrase for the message) and why.
type Failure = (&'static str, io::Error);

/// The file behind the mutex. `open` is `None` after a reopen failed; the
/// next write tries again.
#[derive(Debug)]
struct Appender {
    path: PathBuf,
    mode: FileMode,
    open: Option<OpenFile>,
    written: Written,
}

#[derive(Debug)]
struct OpenFile {
    file: File,
    /// (device, inode) of the file when it was opened.
    identity: (u64, u64),
    /// After a write failed midway and cutting back failed too: the length to
    /// cut back to before writing anything else.
    torn_at: Option<u64>,
    /// The first part of a line a crash left at the end of the file, found
    /// when the sink was built; the record whose line starts with it
    /// completes it.
    torn_line: Option<TornLine>,
}

/// The first part of a line that a crash left at the end of the file.
#[derive(Debug)]
struct TornLine {
    /// Where the line starts in the file.
    start: u64,
    bytes: Vec<u8>,
    /// Until when other records wait for it to be completed.
    until: Instant,
}

impl OpenFile {
    fn open(path: &Path, mode: FileMode) -> Result<OpenFile, Failure> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_folders(parent, mode.folder()).map_err(|e| ("cannot create its folder", e))?;
        }
        let created = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(mode.file())
            .open(path);
        let file = match created {
            // The umask may have narrowed the mode; a configured one is meant.
            Ok(file) => {
                file.set_permissions(Permissions::from_mode(mode.file()))
                    .map_err(|e| ("cannot set its mode", e))?;
                file
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                { OpenOptions::new().append(true).open(path) }
                    .map_err(|e| ("cannot open for appending", e))?
            }
            Err(e) => return Err(("cannot open for appending", e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| ("cannot inspect the open file", e))?;
        Ok(OpenFile {
            file,
            identity: (meta.dev(), meta.ino()),
            torn_at: None,
            torn_line: None,
        })
    }
}

/// Creates the missing folders of `dir`, each with `mode` exactly (not
/// narrowed by the umask); existing ones are left as they are.
fn create_folders(dir: &Path, mode: u32) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|folder| !folder.as_os_str().is_empty() && !folder.exists())
        .collect();
    for folder in missing.into_iter().rev() {
        match DirBuilder::new().mode(mode).create(folder) {
            Ok(()) => fs::set_permissions(folder, Permissions::from_mode(mode))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    // Says why when a part of the path is a file.
    fs::create_dir_all(dir)
}

impl Appender {
    /// Appends the lines of `batch` not in the file yet in one write (and one
    /// sync with `fsync`); the outcome of each, in order.
    fn append(&mut self, batch: &[Queued], fsync: bool) -> Vec<Result<(), Failure>> {
        match self.append_all(batch, fsync) {
            Ok(()) => batch.iter().map(|_| Ok(())).collect(),
            Err((what, e)) => batch
                .iter()
                .map(|_| Err((what, io::Error::new(e.kind(), e.to_string()))))
                .collect(),
        }
    }

    fn append_all(&mut self, batch: &[Queued], fsync: bool) -> Result<(), Failure> {
        // A record written before, but not recorded by the journal (a full
        // disk, a crash right after the write), is in the file already; so is
        // one queued twice.
        let mut fresh: Vec<&Queued> = Vec::with_capacity(batch.len());
        for queued in batch {
            if self.written.contains(&queued.id) || fresh.iter().any(|f| f.id == queued.id) {
                tracing::debug!(path = %self.path.display(), record_id = queued.id,
                    "record already in the file; not appended again");
            } else {
                fresh.push(queued);
            }
        }
        if fresh.is_empty() {
            if fsync && let Some(open) = &self.open {
                open.file
                    .sync_data()
                    .map_err(|e| ("cannot sync to disk", e))?;
            }
            return Ok(());
        }
        let path = &self.path;
        let open = Appender::current(&mut self.open, path, self.mode)?;
        if let Some(len) = open.torn_at {
            open.file
                .set_len(len)
                .map_err(|e| ("cannot cut back a torn line", e))?;
            open.torn_at = None;
        }
        if let Some(torn) = &open.torn_line {
            // The part is ours to complete or cut off only while the file
            // still ends in it. Emptied in place (`copytruncate`) or written
            // by another program, completing would put the end of a line
            // alone in the file, and cutting back to `torn.start` would
            // extend it with NUL bytes.
            let len = open
                .file
                .metadata()
                .map_err(|e| ("cannot inspect the open file", e))?
                .len();
            if len != torn.start + torn.bytes.len() as u64 {
                tracing::warn!(
                    path = %path.display(), bytes = torn.bytes.len(), len,
                    "the file changed since it was found ending in a line cut short \
                     (rotated in place, or written by another program): that line is \
                     left as it is"
                );
                open.torn_line = None;
            }
        }
        // The record that completes a torn line goes first, and only the
        // rest of its line is written.
        let mut completes = None;
        if let Some(torn) = &open.torn_line {
            let found = fresh.iter().enumerate().find_map(|(k, queued)| {
                queued
                    .body
                    .strip_prefix(torn.bytes.as_slice())
                    .map(|rest| (k, rest.len()))
            });
            if let Some((k, rest)) = found {
                let queued = fresh.remove(k);
                fresh.insert(0, queued);
                completes = Some(rest);
            } else if Instant::now() < torn.until {
                return Err((
                    "waiting for the record that completes the last line, cut short by a crash",
                    io::Error::other(format!(
                        "{} bytes of the line of {} are in the file",
                        torn.bytes.len(),
                        line_id(&torn.bytes)
                            .as_deref()
                            .unwrap_or("an unknown record")
                    )),
                ));
            } else {
                open.file
                    .set_len(torn.start)
                    .map_err(|e| ("cannot cut off a line cut short by a crash", e))?;
                tracing::warn!(
                    path = %path.display(), bytes = torn.bytes.len(),
                    "no record completed the line a crash cut short: cut off (`tail -F` \
                     readers see the file truncated)"
                );
                open.torn_line = None;
            }
        }
        let mut lines = Vec::with_capacity(fresh.iter().map(|q| q.body.len() + 1).sum());
        for (k, queued) in fresh.iter().enumerate() {
            let body = &queued.body[..];
            let from = match completes {
                Some(rest) if k == 0 => body.len() - rest,
                _ => 0,
            };
            lines.extend_from_slice(&body[from..]);
            lines.push(b'\n');
        }
        let before = open
            .file
            .metadata()
            .map_err(|e| ("cannot inspect the open file", e))?
            .len();
        // One `write_all`: whole lines, in one piece as far as the kernel
        // takes it, so `tail -F` readers see whole lines.
        if let Err(e) = open.file.write_all(&lines) {
            if open.file.set_len(before).is_err() {
                open.torn_at = Some(before);
            }
            return Err(("cannot write", e));
        }
        if completes.is_some() {
            tracing::info!(path = %path.display(), record_id = fresh[0].id,
                "completed the line a crash cut short");
            open.torn_line = None;
        }
        // `File` has no user-space buffer: after `write_all` the kernel has the
        // lines, which is what `tail -F` readers see.
        let synced = if fsync {
            open.file
                .sync_data()
                .map_err(|e| ("cannot sync to disk", e))
        } else {
            Ok(())
        };
        // In the file now, synced or not: a retry only syncs again.
        for queued in fresh {
            self.written.insert(&queued.id);
        }
        synced
    }

    /// The open file in `slot`, reopened when `path` no longer names it.
    fn current<'a>(
        slot: &'a mut Option<OpenFile>,
        path: &Path,
        mode: FileMode,
    ) -> Result<&'a mut OpenFile, Failure> {
        let stale = match (&*slot, fs::metadata(path)) {
            (None, _) => true,
            (Some(open), Ok(meta)) => (meta.dev(), meta.ino()) != open.identity,
            (Some(_), Err(e)) if e.kind() == io::ErrorKind::NotFound => true,
            (Some(_), Err(e)) => return Err(("cannot inspect the path", e)),
        };
        Ok(match slot.take() {
            Some(open) if !stale => slot.insert(open),
            _ => slot.insert(OpenFile::open(path, mode)?),
        })
    }
}

mod tail;
mod written;

#[cfg(test)]
use tail::TORN_LINE_MAX;
use tail::{line_id, read_tail};
use written::Written;

#[cfg(test)]
#[path = "jsonl_tests.rs"]
mod tests;
