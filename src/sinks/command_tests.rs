//! Unit tests of the `command` sink: finding the program, each way a run
//! ends, the environment a program sees, bounded output.

use super::*;

use std::collections::BTreeSet;
use std::time::Instant;

use bytes::Bytes;

/// Writes an executable `/bin/sh` script named `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn config(command: &[&str]) -> CommandConfig {
    CommandConfig {
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        timeout: None,
        env: BTreeMap::new(),
        body: None,
    }
}

fn record() -> Encoded {
    Encoded {
        id: "evt_1:paid-orders".into(),
        body: Bytes::from_static(br#"{"id":"evt_1:paid-orders","amount_total":3000}"#),
    }
}

#[test]
fn programs_resolve_from_the_config_folder_or_path() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "ok.sh", "exit 0");
    std::fs::write(dir.path().join("plain.sh"), "exit 0").unwrap();
    std::fs::create_dir(dir.path().join("folder")).unwrap();
    let path = Some(OsString::from("/usr/bin:/bin"));
    let resolve = |program: &str| resolve_program(program, dir.path(), path.as_ref());

    assert_eq!(resolve("./ok.sh"), Ok(dir.path().join("./ok.sh")));
    assert!(resolve("sh").unwrap().ends_with("sh"));
    let table = [
        (
            "./missing.sh",
            "does not exist (a relative path is read from the config's folder",
        ),
        ("./plain.sh", "is not executable: `chmod +x` it"),
        ("./folder", "is a folder, not a program"),
        ("no-such-program-anywhere", "is not on PATH"),
    ];
    for (program, expected) in table {
        let error = resolve(program).unwrap_err();
        assert!(error.contains(expected), "{program}: {error}");
    }
}

#[test]
fn check_reports_the_program_and_the_template() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&["./missing.sh"]);
    c.body = Some("{{ record.x | nope }}".into());
    let problems = c.check(dir.path());
    let keys: Vec<&str> = problems.iter().map(|p| p.key).collect();
    assert_eq!(keys, ["command", "body"], "{problems:?}");
    assert_eq!(problems[1].within, Some((1, 15)));
}

#[track_caller]
fn sink(dir: &Path, c: &CommandConfig) -> CommandSink {
    CommandSink::build(c, dir).unwrap()
}

#[tokio::test]
async fn exit_zero_is_delivered_with_the_record_on_stdin_in_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "save.sh", "cat > got.json; pwd > where.txt");
    sink(dir.path(), &config(&["./save.sh"]))
        .deliver(&record())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("got.json")).unwrap(),
        record().body
    );
    let cwd = std::fs::read_to_string(dir.path().join("where.txt")).unwrap();
    assert_eq!(
        Path::new(cwd.trim()).canonicalize().unwrap(),
        dir.path().canonicalize().unwrap()
    );
}

#[tokio::test]
async fn a_body_template_is_what_stdin_gets() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "save.sh", "cat > got.txt");
    let mut c = config(&["./save.sh"]);
    c.body = Some("Total: {{ record.amount_total | money('usd') }}".into());
    sink(dir.path(), &c).deliver(&record()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("got.txt")).unwrap(),
        "Total: $30.00"
    );
}

#[tokio::test]
async fn control_characters_of_stderr_never_reach_the_error() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "odd.sh",
        "cat > /dev/null; printf 'bad\\000 \\033[31mred\\n' >&2; exit 1",
    );
    let error = sink(dir.path(), &config(&["./odd.sh"]))
        .deliver(&record())
        .await
        .unwrap_err();
    assert_eq!(
        error.message,
        "command sink `./odd.sh`: exited 1: bad\u{FFFD} \u{FFFD}[31mred"
    );
}

#[tokio::test]
async fn exit_75_is_retried_and_others_are_dead_letters_with_the_last_stderr_line() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "busy.sh",
        "echo 'first' >&2; echo 'warehouse busy' >&2; exit 75",
    );
    script(
        dir.path(),
        "bad.sh",
        "cat > /dev/null; echo progress; echo 'no such SKU: tok_s3cr3t_value' >&2; echo >&2; exit 1",
    );
    script(dir.path(), "quiet.sh", "echo 'said on stdout'; exit 3");
    let busy = sink(dir.path(), &config(&["./busy.sh"]))
        .deliver(&record())
        .await;
    let error = busy.unwrap_err();
    assert!(error.retryable, "{}", error.message);
    assert!(error.message.contains("exited 75"), "{}", error.message);
    assert!(
        error.message.ends_with(": warehouse busy"),
        "{}",
        error.message
    );

    let mut c = config(&["./bad.sh"]);
    c.env.insert("TOKEN".into(), "tok_s3cr3t_value".into());
    let error = sink(dir.path(), &c).deliver(&record()).await.unwrap_err();
    assert!(!error.retryable, "{}", error.message);
    assert_eq!(
        error.message,
        "command sink `./bad.sh`: exited 1: no such SKU: <redacted>"
    );

    let error = sink(dir.path(), &config(&["./quiet.sh"]))
        .deliver(&record())
        .await
        .unwrap_err();
    assert!(
        error.message.ends_with("exited 3: said on stdout"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_hung_program_and_its_children_are_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // The child `sleep` holds stdout open: only a group kill ends the run.
    script(
        dir.path(),
        "hang.sh",
        "sleep 30 & echo $! > child.pid; wait",
    );
    let mut c = config(&["./hang.sh"]);
    c.timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let error = sink(dir.path(), &c).deliver(&record()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(error.retryable, "{}", error.message);
    assert!(error.message.contains("timeout"), "{}", error.message);
    let pid: i32 = std::fs::read_to_string(dir.path().join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Gone, or a zombie waiting for init to reap it; a signal takes a
    // moment to land.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
        if matches!(state, None | Some("Z")) {
            break;
        }
        assert!(Instant::now() < deadline, "sleep still runs: {stat}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_environment_is_cleared_but_for_the_safe_set_and_env() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "env.sh", "env > env.txt");
    let mut c = config(&["./env.sh"]);
    c.env.insert("SHIP_TOKEN".into(), "tok_123".into());
    sink(dir.path(), &c).deliver(&record()).await.unwrap();
    let env = std::fs::read_to_string(dir.path().join("env.txt")).unwrap();
    let names: BTreeSet<&str> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    assert!(env.contains("SHIP_TOKEN=tok_123\n"), "{env}");
    assert!(
        env.contains("STRIPE_ROUTER_RECORD_ID=evt_1:paid-orders\n"),
        "{env}"
    );
    // What sh adds itself (PWD, SHLVL, _) aside, nothing else.
    for name in names {
        assert!(
            INHERITED.contains(&name)
                || ["SHIP_TOKEN", RECORD_ID_VAR, "PWD", "SHLVL", "_", "OLDPWD"].contains(&name),
            "{name} reached the program"
        );
    }
}

#[tokio::test]
async fn output_is_kept_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // 4 MiB on each stream, then the line that counts.
    script(
        dir.path(),
        "loud.sh",
        "head -c 4194304 /dev/zero | tr '\\0' x; head -c 4194304 /dev/zero | tr '\\0' y >&2; echo >&2; echo 'the end' >&2; exit 2",
    );
    let error = sink(dir.path(), &config(&["./loud.sh"]))
        .deliver(&record())
        .await
        .unwrap_err();
    assert!(
        error.message.ends_with("exited 2: the end"),
        "{}",
        &error.message[..200.min(error.message.len())]
    );
}

#[tokio::test]
async fn tail_keeps_the_last_bytes() {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let kept = tail(Some(data.as_slice())).await;
    assert_eq!(kept.len(), TAIL_BYTES);
    assert_eq!(kept, data[data.len() - TAIL_BYTES..]);
}

#[test]
fn debug_hides_arguments_and_env_values() {
    let mut c = config(&["./ship.sh", "--token=s3cr3t"]);
    c.env.insert("TOKEN".into(), "s3cr3t".into());
    let shown = format!("{c:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(
        shown.contains("TOKEN") && shown.contains("./ship.sh"),
        "{shown}"
    );
}
