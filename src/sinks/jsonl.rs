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
//! File I/O blocks, so it runs on tokio's blocking pool.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;

use super::{BuildError, DeliverFuture, DeliveryError, Encoded, Sink};

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// The file to append to; relative paths resolve against the config
    /// file's folder.
    #[serde(deserialize_with = "parse_path")]
    pub path: PathBuf,
    /// Retry schedule for this sink's deliveries.
    #[serde(default)]
    pub retry: super::RetryConfig,
    /// Deliveries in flight at once (default 16).
    #[serde(default)]
    pub concurrency: Option<usize>,
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
        let file = OpenFile::open(&path).map_err(|(what, e)| {
            BuildError(format!("jsonl sink {}: {what}: {e}", path.display()))
        })?;
        let appender = Appender {
            path: path.clone(),
            open: Some(file),
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
            let written = tokio::task::spawn_blocking(move || {
                // A panic cannot leave the appender inconsistent: every write
                // starts by checking the file and any torn line.
                let mut appender = appender.lock().unwrap_or_else(PoisonError::into_inner);
                appender.append(&line, fsync)
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
    open: Option<OpenFile>,
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
    fn open(path: &Path) -> Result<OpenFile, Failure> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| ("cannot create its folder", e))?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| ("cannot open for appending", e))?;
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

impl Appender {
    fn append(&mut self, line: &[u8], fsync: bool) -> Result<(), Failure> {
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
        if fsync {
            open.file
                .sync_data()
                .map_err(|e| ("cannot sync to disk", e))?;
        }
        Ok(())
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
            _ => self.open.insert(OpenFile::open(&self.path)?),
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
            body: Bytes::from(format!(r#"{{"n":{n},"text":"line {n}"}}"#)),
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
        assert_eq!(text, "{\"old\":true}\n{\"n\":7,\"text\":\"line 7\"}\n");
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
}
