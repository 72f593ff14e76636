//! Unit tests of the `jsonl` sink.

use super::*;

use std::time::{Duration, Instant};

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
    let tail = read_tail(&path, 1).unwrap();
    assert_eq!(tail.ids, ["evt_5:route"]);
    let torn = tail.torn.expect("the last line is torn");
    assert_eq!(torn.start, 27);
    assert_eq!(torn.bytes, b"{\"id\":\"evt_6:route\",\"n\"");
}

/// A file ending in a whole line of record 5, then the first `cut` bytes of
/// record 6's line: what a crash while writing record 6 leaves.
fn torn_file(path: &Path, cut: usize) {
    let mut text = record(5).body.to_vec();
    text.push(b'\n');
    text.extend_from_slice(&record(6).body[..cut]);
    fs::write(path, text).unwrap();
}

#[tokio::test]
async fn a_line_cut_short_by_a_crash_is_completed_by_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    torn_file(&path, 20);
    let sink = sink(&path);
    // Another record waits: appended now, it would be glued to the part.
    let err = deliver(&sink, 7).await.unwrap_err();
    assert!(err.retryable, "{}", err.message);
    assert!(
        err.message.contains("cut short by a crash"),
        "{}",
        err.message
    );
    assert_eq!(
        fs::read(&path).unwrap().len(),
        record(5).body.len() + 1 + 20
    );
    // Its own record completes it, appending only the rest: the file never
    // shrinks under a `tail -F` reader.
    deliver(&sink, 6).await.unwrap();
    deliver(&sink, 7).await.unwrap();
    deliver(&sink, 6).await.unwrap();
    check_lines(&path, &[5, 6, 7]);
}

#[tokio::test]
async fn a_line_cut_short_that_no_record_completes_is_cut_off_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    torn_file(&path, 20);
    let sink = sink(&path);
    assert!(deliver(&sink, 7).await.is_err());
    let past = Instant::now() - Duration::from_secs(1);
    sink.appender
        .lock()
        .unwrap()
        .open
        .as_mut()
        .unwrap()
        .torn_line
        .as_mut()
        .unwrap()
        .until = past;
    deliver(&sink, 7).await.unwrap();
    check_lines(&path, &[5, 7]);
    // Record 6 was never written whole: it is appended like any other.
    deliver(&sink, 6).await.unwrap();
    check_lines(&path, &[5, 7, 6]);
}

/// Empties the file in place, as `logrotate`'s `copytruncate` does: the same
/// inode, now shorter.
fn copytruncate(path: &Path) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

fn expire_grace(sink: &JsonlSink) {
    let mut appender = sink.appender.lock().unwrap();
    let torn = appender.open.as_mut().unwrap().torn_line.as_mut().unwrap();
    torn.until = Instant::now() - Duration::from_secs(1);
}

#[tokio::test]
async fn a_line_cut_short_is_neither_completed_nor_cut_off_in_a_file_that_changed() {
    // Completed: the rest of record 6's line alone would open the fresh file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    torn_file(&path, 20);
    let sink = sink(&path);
    copytruncate(&path);
    deliver(&sink, 6).await.unwrap();
    deliver(&sink, 7).await.unwrap();
    check_lines(&path, &[6, 7]);

    // Cut off after the grace: `set_len` to where the line started would
    // fill the emptied file with NUL bytes up to there.
    let path = dir.path().join("audit.jsonl");
    torn_file(&path, 20);
    let sink = self::sink(&path);
    copytruncate(&path);
    expire_grace(&sink);
    deliver(&sink, 7).await.unwrap();
    check_lines(&path, &[7]);

    // Written to by someone else meanwhile: the file no longer ends in the
    // part, so neither completing nor cutting is about that line.
    let path = dir.path().join("other.jsonl");
    torn_file(&path, 20);
    let sink = self::sink(&path);
    let mut appended = OpenOptions::new().append(true).open(&path).unwrap();
    appended.write_all(b"\n").unwrap();
    deliver(&sink, 7).await.unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let seven = String::from_utf8_lossy(&record(7).body).into_owned();
    assert!(text.ends_with(&format!("\n{seven}\n")), "{text:?}");
    assert!(!text.contains('\0'));
}

#[tokio::test]
async fn the_tail_read_at_start_covers_the_last_lines_however_long_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    // 150 lines of 200 KB: 16 MB holds only the last 80 of them.
    let padded = |n: usize| Encoded {
        id: format!("evt_{n}:route"),
        body: Bytes::from(format!(
            r#"{{"id":"evt_{n}:route","pad":"{}"}}"#,
            "x".repeat(200 * 1024)
        )),
    };
    let mut text = Vec::new();
    for n in 0..150 {
        text.extend_from_slice(&padded(n).body);
        text.push(b'\n');
    }
    fs::write(&path, &text).unwrap();
    // With 16 delivery slots (the default), the last 128 lines are known.
    let sink = sink(&path);
    sink.deliver(&padded(30)).await.unwrap();
    sink.deliver(&padded(149)).await.unwrap();
    assert_eq!(
        fs::read(&path).unwrap().len(),
        text.len(),
        "nothing appended"
    );
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
    let Some(super::super::SinkKind::Jsonl(orders)) = parsed.sinks.get("orders").map(|s| &s.kind)
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

#[tokio::test]
async fn a_last_line_longer_than_any_record_is_cut_off_before_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    torn_file(&path, 20);
    // Grown past any record without a newline (sparse: no disk used).
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    let first_line = record(5).body.len() as u64 + 1;
    file.set_len(first_line + TORN_LINE_MAX + 1).unwrap();
    drop(file);
    deliver(&sink(&path), 7).await.unwrap();
    check_lines(&path, &[5, 7]);
}
