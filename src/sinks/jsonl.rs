//! `jsonl`: one compact JSON record per line, appended to a file.
//!
//! Each record goes out as a single `write_all` of `body + "\n"` on a file
//! opened with `O_APPEND`, under a mutex, so lines never interleave and a
//! `tail -F` reader sees whole lines. Before every write the sink compares the
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
//! [`REMEMBERED`] records it wrote, starting from the ids in the file's last
//! [`TAIL_BYTES`] when it is built. A record it already wrote is not
//! appended again: not when the journal could not record the delivery (a
//! full disk; the row is retried), not after a crash between the write and
//! that record, not after the file was rotated away.
//!
//! Customer data: a file the sink creates is `0600` and a folder it creates
//! `0700`, or what `mode` says (folders get `x` where the mode has `r`).
//! Existing files and folders keep theirs.
//!
//! File I/O blocks, so it runs on tokio's blocking pool.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Deserializer};

use super::{BuildError, DeliverFuture, DeliveryError, Encoded, Sink, SinkType};

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

    fn build(&self, base_dir: &Path) -> Result<Arc<dyn Sink>, BuildError> {
        Ok(Arc::new(JsonlSink::build(self, base_dir)?))
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
/// worker's backlog of 4096), at about 100 bytes each.
const REMEMBERED: usize = 16_384;
/// How much of the end of an existing file is read for the ids it holds
/// when the sink is built. The records a crash can leave written but not
/// recorded are the last `concurrency` lines; orders are a few KB each.
const TAIL_BYTES: u64 = 16 * 1024 * 1024;
/// A record's id is at the very start of its line (`{"id":"evt_…:route"`);
/// no id is longer than this.
const ID_HEAD_BYTES: usize = 1024;

#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    fsync: bool,
    appender: Arc<Mutex<Appender>>,
}

impl JsonlSink {
    /// Creates the parent folders and opens the file for appending, so a
    /// config naming an unwritable place fails at build, not at the first
    /// record.
    pub fn build(config: &JsonlConfig, base_dir: &Path) -> Result<JsonlSink, BuildError> {
        let path = base_dir.join(&config.path);
        let mode = config.mode.unwrap_or(FileMode::DEFAULT);
        let fail =
            |(what, e): Failure| BuildError(format!("jsonl sink {}: {what}: {e}", path.display()));
        let file = OpenFile::open(&path, mode).map_err(fail)?;
        let mut written = Written::default();
        for id in tail_ids(&path).map_err(|e| fail(("cannot read the end of the file", e)))? {
            written.insert(id);
        }
        let appender = Appender {
            path: path.clone(),
            mode,
            open: Some(file),
            written,
        };
        Ok(JsonlSink {
            path,
            fsync: false,
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
            let mut line = Vec::with_capacity(record.body.len() + 1);
            line.extend_from_slice(&record.body);
            line.push(b'\n');
            let appender = Arc::clone(&self.appender);
            let fsync = self.fsync;
            let id = record.id.clone();
            let written = tokio::task::spawn_blocking(move || {
                // A panic cannot leave the appender inconsistent: every write
                // starts by checking the file and any torn line.
                let mut appender = appender.lock().unwrap_or_else(PoisonError::into_inner);
                appender.append(&id, &line, fsync)
            })
            .await;
            match written {
                Ok(result) => result.map_err(|(what, e)| {
                    DeliveryError::retryable(format!(
                        "jsonl sink {}: {what}: {e}",
                        self.path.display()
                    ))
                }),
                Err(e) => Err(DeliveryError::retryable(format!(
                    "jsonl sink {}: write task did not finish: {e}",
                    self.path.display()
                ))),
            }
        })
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

/// The ids of the last [`REMEMBERED`] records put in the file.
#[derive(Debug, Default)]
struct Written {
    order: VecDeque<Arc<str>>,
    ids: HashSet<Arc<str>>,
}

impl Written {
    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: String) {
        let id: Arc<str> = id.into();
        if !self.ids.insert(id.clone()) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
    }
}

#[derive(Debug)]
struct OpenFile {
    file: File,
    /// (device, inode) of the file when it was opened.
    identity: (u64, u64),
    /// After a write failed midway and cutting back failed too: the length to
    /// cut back to before writing anything else.
    torn_at: Option<u64>,
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

/// The ids of the whole lines in the last [`TAIL_BYTES`] of the file at
/// `path`, oldest first; none if there is no file. Only the head of each
/// line is kept in memory.
fn tail_ids(path: &Path) -> io::Result<Vec<String>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    // Never past the length it had: a device like /dev/full never ends.
    let mut reader = BufReader::with_capacity(64 * 1024, file.take(len - start));
    let mut ids = VecDeque::new();
    let mut head = Vec::with_capacity(ID_HEAD_BYTES);
    // Starting mid-file, the first line is a part of one: skipped.
    let mut whole = start == 0;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            // A last line without its newline was never completely written.
            break;
        }
        let end = buffer.iter().position(|&b| b == b'\n');
        let part = &buffer[..end.unwrap_or(buffer.len())];
        if whole {
            let room = ID_HEAD_BYTES.saturating_sub(head.len());
            head.extend_from_slice(&part[..part.len().min(room)]);
        }
        let consumed = part.len() + usize::from(end.is_some());
        reader.consume(consumed);
        if end.is_some() {
            if whole && let Some(id) = line_id(&head) {
                ids.push_back(id);
                if ids.len() > REMEMBERED {
                    ids.pop_front();
                }
            }
            head.clear();
            whole = true;
        }
    }
    Ok(ids.into())
}

/// The record id at the head of a line: `{"id":"<JSON string>"`.
fn line_id(head: &[u8]) -> Option<String> {
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

impl Appender {
    fn append(&mut self, id: &str, line: &[u8], fsync: bool) -> Result<(), Failure> {
        if self.written.contains(id) {
            // Written before, but the journal did not record it (a full disk,
            // a crash right after the write): the file has it already.
            tracing::debug!(path = %self.path.display(), record_id = id,
                "record already in the file; not appended again");
            if fsync && let Some(open) = &self.open {
                open.file
                    .sync_data()
                    .map_err(|e| ("cannot sync to disk", e))?;
            }
            return Ok(());
        }
        let open = self.current()?;
        if let Some(len) = open.torn_at {
            open.file
                .set_len(len)
                .map_err(|e| ("cannot cut back a torn line", e))?;
            open.torn_at = None;
        }
        let before = open
            .file
            .metadata()
            .map_err(|e| ("cannot inspect the open file", e))?
            .len();
        if let Err(e) = open.file.write_all(line) {
            if open.file.set_len(before).is_err() {
                open.torn_at = Some(before);
            }
            return Err(("cannot write", e));
        }
        // `File` has no user-space buffer: after `write_all` the kernel has the
        // line, which is what `tail -F` readers see.
        let synced = if fsync {
            open.file
                .sync_data()
                .map_err(|e| ("cannot sync to disk", e))
        } else {
            Ok(())
        };
        // In the file now, synced or not: a retry only syncs again.
        self.written.insert(id.to_owned());
        synced
    }

    /// The open file, reopened when the path no longer names it.
    fn current(&mut self) -> Result<&mut OpenFile, Failure> {
        let stale = match (&self.open, fs::metadata(&self.path)) {
            (None, _) => true,
            (Some(open), Ok(meta)) => (meta.dev(), meta.ino()) != open.identity,
            (Some(_), Err(e)) if e.kind() == io::ErrorKind::NotFound => true,
            (Some(_), Err(e)) => return Err(("cannot inspect the path", e)),
        };
        Ok(match self.open.take() {
            Some(open) if !stale => self.open.insert(open),
            _ => self.open.insert(OpenFile::open(&self.path, self.mode)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;

    fn record(n: usize) -> Encoded {
        Encoded {
            id: format!("evt_{n}:route"),
            body: Bytes::from(format!(
                r#"{{"id":"evt_{n}:route","n":{n},"text":"line {n}"}}"#
            )),
        }
    }

    fn sink(path: &Path) -> JsonlSink {
        JsonlSink::build(
            &JsonlConfig {
                path: path.to_path_buf(),
                ..JsonlConfig::default()
            },
            Path::new("/"),
        )
        .expect("the test path is writable")
    }

    #[track_caller]
    fn check_lines(path: &Path, expected: &[usize]) {
        let text = fs::read_to_string(path).expect("the file exists");
        let want: String = expected
            .iter()
            .map(|&n| format!("{}\n", String::from_utf8_lossy(&record(n).body)))
            .collect();
        assert_eq!(text, want, "contents of {}", path.display());
    }

    async fn deliver(sink: &JsonlSink, n: usize) -> Result<(), DeliveryError> {
        sink.deliver(&record(n)).await
    }

    #[tokio::test]
    async fn appends_whole_compact_lines_creating_parent_folders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/orders.jsonl");
        let sink = sink(&path);
        for n in 0..3 {
            deliver(&sink, n).await.unwrap();
        }
        check_lines(&path, &[0, 1, 2]);
    }

    #[tokio::test]
    async fn appends_to_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.jsonl");
        fs::write(&path, "{\"old\":true}\n").unwrap();
        deliver(&sink(&path), 7).await.unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"old\":true}\n{\"id\":\"evt_7:route\",\"n\":7,\"text\":\"line 7\"}\n"
        );
    }

    #[tokio::test]
    async fn relative_paths_resolve_against_the_base_dir() {
        let dir = tempfile::tempdir().unwrap();
        let config = JsonlConfig {
            path: PathBuf::from("sinks/orders.jsonl"),
            ..JsonlConfig::default()
        };
        let sink = JsonlSink::build(&config, dir.path()).unwrap();
        assert_eq!(sink.path(), dir.path().join("sinks/orders.jsonl"));
        deliver(&sink, 1).await.unwrap();
        check_lines(&dir.path().join("sinks/orders.jsonl"), &[1]);
    }

    #[tokio::test]
    async fn concurrent_deliveries_give_intact_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.jsonl");
        let sink = Arc::new(sink(&path).with_fsync(true));
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let sink = Arc::clone(&sink);
                tokio::spawn(async move { sink.deliver(&record(n)).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let text = fs::read_to_string(&path).unwrap();
        let mut seen: Vec<usize> = text
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).expect("a whole line");
                value["n"].as_u64().unwrap() as usize
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
        assert!(text.ends_with('\n'));
    }

    #[tokio::test]
    async fn a_renamed_file_is_reopened_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.jsonl");
        let rotated = dir.path().join("orders.jsonl.1");
        let sink = sink(&path);
        deliver(&sink, 1).await.unwrap();
        fs::rename(&path, &rotated).unwrap();
        deliver(&sink, 2).await.unwrap();
        check_lines(&rotated, &[1]);
        check_lines(&path, &[2]);
    }

    #[tokio::test]
    async fn a_deleted_file_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/orders.jsonl");
        let sink = sink(&path);
        deliver(&sink, 1).await.unwrap();
        fs::remove_dir_all(dir.path().join("logs")).unwrap();
        deliver(&sink, 2).await.unwrap();
        check_lines(&path, &[2]);
    }

    #[tokio::test]
    async fn an_unwritable_path_is_retryable_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.jsonl");
        let sink = sink(&path);
        deliver(&sink, 1).await.unwrap();
        // A folder where the file was: root cannot open it for writing either.
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        let err = deliver(&sink, 2).await.unwrap_err();
        assert!(err.retryable);
        assert!(
            err.message.contains(&path.display().to_string()),
            "{}",
            err.message
        );
        assert!(err.message.contains("os error"), "{}", err.message);
        fs::remove_dir(&path).unwrap();
        deliver(&sink, 3).await.unwrap();
        check_lines(&path, &[3]);
    }

    #[tokio::test]
    async fn a_full_disk_is_retryable() {
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let err = deliver(&sink(full), 1).await.unwrap_err();
        assert!(err.retryable);
        assert!(err.message.contains("/dev/full"), "{}", err.message);
        assert!(err.message.contains("os error 28"), "{}", err.message);
    }

    #[tokio::test]
    async fn a_torn_line_is_cut_back_before_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.jsonl");
        let sink = sink(&path);
        deliver(&sink, 1).await.unwrap();
        let len = fs::metadata(&path).unwrap().len();
        // What a write that failed midway, and a failed cut-back, leave.
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"n\":2,")
            .unwrap();
        sink.appender.lock().unwrap().open.as_mut().unwrap().torn_at = Some(len);
        deliver(&sink, 2).await.unwrap();
        check_lines(&path, &[1, 2]);
    }

    #[tokio::test]
    async fn a_body_with_a_newline_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.jsonl");
        let record = Encoded {
            id: "evt_1:r".into(),
            body: Bytes::from_static(b"{\n}"),
        };
        let err = sink(&path).deliver(&record).await.unwrap_err();
        assert!(!err.retryable);
        assert_eq!(fs::read_to_string(&path).unwrap(), "");
    }

    #[track_caller]
    fn check_build_error(path: &Path, expected: &str) {
        let err = JsonlSink::build(
            &JsonlConfig {
                path: path.to_path_buf(),
                ..JsonlConfig::default()
            },
            Path::new("/"),
        )
        .expect_err("the build fails");
        assert!(err.0.contains(&path.display().to_string()), "{}", err.0);
        assert!(
            err.0.contains(expected),
            "{} does not contain {expected}",
            err.0
        );
        assert!(err.0.contains("os error"), "{}", err.0);
    }

    #[test]
    fn unwritable_paths_fail_the_build() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        fs::write(&file, "").unwrap();
        check_build_error(&file.join("orders.jsonl"), "cannot create its folder");
        check_build_error(dir.path(), "cannot open for appending");
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[tokio::test]
    async fn a_record_reaches_the_file_once_across_retries_restarts_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.jsonl");
        let first = sink(&path);
        // The journal could not record the delivery: the worker retries.
        for _ in 0..3 {
            deliver(&first, 1).await.unwrap();
        }
        deliver(&first, 2).await.unwrap();
        check_lines(&path, &[1, 2]);
        // A restart (a crash before the journal recorded them): the file's
        // tail says what it holds.
        let second = sink(&path);
        deliver(&second, 2).await.unwrap();
        deliver(&second, 1).await.unwrap();
        deliver(&second, 3).await.unwrap();
        check_lines(&path, &[1, 2, 3]);
        // Rotated away, a record the old file has is not written anew.
        let rotated = dir.path().join("orders.jsonl.1");
        fs::rename(&path, &rotated).unwrap();
        deliver(&second, 3).await.unwrap();
        deliver(&second, 4).await.unwrap();
        check_lines(&rotated, &[1, 2, 3]);
        check_lines(&path, &[4]);
    }

    #[tokio::test]
    async fn a_torn_last_line_does_not_count_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.jsonl");
        // A crash in the middle of a write: no newline.
        fs::write(
            &path,
            "{\"id\":\"evt_5:route\",\"n\":5}\n{\"id\":\"evt_6:route\",\"n\"",
        )
        .unwrap();
        assert_eq!(tail_ids(&path).unwrap(), ["evt_5:route"]);
    }

    #[track_caller]
    fn check_line_id(head: &str, want: Option<&str>) {
        assert_eq!(line_id(head.as_bytes()).as_deref(), want, "{head}");
    }

    #[test]
    fn ids_are_read_from_the_head_of_a_line() {
        check_line_id(r#"{"id":"evt_1:r","kind":"order"}"#, Some("evt_1:r"));
        check_line_id(r#"{"id":"evt_\"q\\:r"}"#, Some("evt_\"q\\:r"));
        check_line_id(r#"{"id":"evt_1:r"#, None);
        check_line_id(r#"{"kind":"order","id":"evt_1:r"}"#, None);
        check_line_id(r#"{"id":7}"#, None);
        check_line_id("", None);
    }

    #[tokio::test]
    async fn files_and_folders_it_creates_are_private_unless_a_mode_says() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("existing");
        fs::create_dir(&existing).unwrap();
        fs::set_permissions(&existing, Permissions::from_mode(0o755)).unwrap();
        let path = existing.join("new/deeper/orders.jsonl");
        deliver(&sink(&path), 1).await.unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(&existing.join("new/deeper")), 0o700);
        assert_eq!(mode_of(&existing.join("new")), 0o700);
        assert_eq!(
            mode_of(&existing),
            0o755,
            "existing folders keep their mode"
        );

        let shared = dir.path().join("shared/orders.jsonl");
        let config = JsonlConfig {
            path: shared.clone(),
            mode: Some(FileMode::parse("0640").unwrap()),
        };
        let sink = JsonlSink::build(&config, Path::new("/")).unwrap();
        assert_eq!(mode_of(&shared), 0o640);
        assert_eq!(mode_of(&dir.path().join("shared")), 0o750);
        // Rotated away: the new file gets the mode too.
        fs::rename(&shared, dir.path().join("shared/orders.jsonl.1")).unwrap();
        sink.deliver(&record(1)).await.unwrap();
        assert_eq!(mode_of(&shared), 0o640);

        let old = dir.path().join("old.jsonl");
        fs::write(&old, "").unwrap();
        fs::set_permissions(&old, Permissions::from_mode(0o644)).unwrap();
        deliver(&self::sink(&old), 1).await.unwrap();
        assert_eq!(mode_of(&old), 0o644, "existing files keep their mode");
    }

    #[track_caller]
    fn check_mode(text: &str, want: Result<(u32, u32), &str>) {
        match (FileMode::parse(text), want) {
            (Ok(mode), Ok(bits)) => assert_eq!((mode.file(), mode.folder()), bits, "{text}"),
            (Err(e), Err(fragment)) => assert!(e.contains(fragment), "{text}: {e}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn modes() {
        check_mode("0600", Ok((0o600, 0o700)));
        check_mode("0640", Ok((0o640, 0o750)));
        check_mode("644", Ok((0o644, 0o755)));
        check_mode("0o660", Ok((0o660, 0o770)));
        check_mode("0666", Ok((0o666, 0o777)));
        check_mode("0400", Err("owner read and write"));
        check_mode("0200", Err("owner read and write"));
        check_mode("4755", Err("not a file mode"));
        check_mode("0689", Err("not a file mode"));
        check_mode("", Err("not a file mode"));
        check_mode("rw-r-----", Err("not a file mode"));
    }

    #[test]
    fn a_bad_mode_is_a_config_error_with_its_place() {
        let config = |mode: &str| {
            format!(
                "sinks:\n  orders: {{ type: jsonl, path: o.jsonl, mode: {mode} }}\nroutes:\n  \
                 - name: all\n    when: {{ type: \"*\" }}\n    emit: event\n    to: orders\n"
            )
        };
        let parse = |mode: &str| {
            crate::config::Config::parse(
                &config(mode),
                Path::new("routes.yaml"),
                &crate::config::env::Env::empty(),
            )
        };
        let parsed = parse("\"0640\"").expect("a valid mode");
        let Some(super::super::SinkKind::Jsonl(orders)) =
            parsed.sinks.get("orders").map(|s| &s.kind)
        else {
            panic!("a jsonl sink");
        };
        assert_eq!(orders.mode, Some(FileMode(0o640)));
        for (mode, fragment) in [("\"0470\"", "owner read and write"), ("0640", "quoted")] {
            let error = parse(mode).expect_err("an invalid mode");
            let problem = &error.problems[0];
            assert!(problem.place.starts_with("routes.yaml:2:"), "{problem}");
            assert!(problem.message.contains(fragment), "{problem}");
        }
    }
}
