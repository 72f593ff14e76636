//! Tests of the environment: dotenv syntax, precedence of the sources, errors by file and line.

use super::*;

#[track_caller]
fn check(text: &str, expected: &[(&str, &str)]) {
    let vars = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
    let expected: HashMap<String, String> = expected
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(vars, expected, "{text:?}");
}

#[track_caller]
fn check_error(text: &str, line: usize, fragment: &str) {
    match parse(text) {
        Ok(vars) => panic!("{text:?} parsed into {vars:?}"),
        Err((l, message)) => {
            assert_eq!(l, line, "{text:?}: {message}");
            assert!(message.contains(fragment), "{text:?}: {message}");
        }
    }
}

#[test]
fn parses_dotenv_syntax() {
    check("", &[]);
    check("A=1", &[("A", "1")]);
    check("A=1\nB=2\n", &[("A", "1"), ("B", "2")]);
    check("# comment\n\n  A = spaced  \n", &[("A", "spaced")]);
    check("export A=1\n", &[("A", "1")]);
    check("A=\n", &[("A", "")]);
    check("A=x # comment\n", &[("A", "x")]);
    check("A=x#y\n", &[("A", "x#y")]);
    check("A=a=b\n", &[("A", "a=b")]);
    check("A=1\r\nB=2\r\n", &[("A", "1"), ("B", "2")]);
    check("A='single $x \\n'\n", &[("A", "single $x \\n")]);
    check(
        "A=\"line\\nnext \\\"q\\\"\"\n",
        &[("A", "line\nnext \"q\"")],
    );
    check(
        "A=\"x # not a comment\" # comment\n",
        &[("A", "x # not a comment")],
    );
    check(
        "KEY=\"-----BEGIN\nbody\n-----END\"\nB=2\n",
        &[("KEY", "-----BEGIN\nbody\n-----END"), ("B", "2")],
    );
    check("A=1\nA=2\n", &[("A", "2")]);
    check("whsec.name_1=whsec_abc\n", &[("whsec.name_1", "whsec_abc")]);
}

#[test]
fn rejects_malformed_lines_by_line_number() {
    check_error("A=1\nnot a pair\n", 2, "KEY=value");
    check_error("A=1\n\n1A=2\n", 3, "name");
    check_error("A=\"open\nB=2\n", 1, "unterminated double-quoted");
    check_error("A='open\n", 1, "unterminated single-quoted");
    check_error("A=\"x\" y\n", 1, "after the closing quote");
    check_error("K=\"a\nb\"\nbad\n", 3, "KEY=value");
}

#[test]
fn process_env_wins_over_local_over_dotenv() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join(".env"), "A=env\nB=env\nC=env\n").expect("write");
    std::fs::write(dir.path().join(".env.local"), "B=local\nC=local\n").expect("write");
    let process = HashMap::from([("C".to_owned(), "process".to_owned())]);
    let env = Env::load_over(process, dir.path()).expect("loads");
    assert_eq!(env.get("A").as_deref(), Some("env"));
    assert_eq!(env.get("B").as_deref(), Some("local"));
    assert_eq!(env.get("C").as_deref(), Some("process"));
    assert_eq!(env.get("D"), None);
    assert_eq!(env.files().count(), 2);
}

#[test]
fn missing_files_are_fine_and_bad_ones_name_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = Env::load_over(HashMap::new(), dir.path()).expect("no files is fine");
    assert_eq!(env.files().count(), 0);

    std::fs::write(dir.path().join(".env"), "OK=1\nSECRET sk_live_123\n").expect("write");
    let err = Env::load_over(HashMap::new(), dir.path()).expect_err("malformed");
    let text = err.to_string();
    assert!(text.ends_with(".env:2: expected `KEY=value`"), "{text}");
    assert!(!text.contains("sk_live"), "{text}");
}

#[test]
fn debug_shows_no_values() {
    let env = Env::from_map([("STRIPE_SECRET_API_KEY", "sk_test_secret")]);
    let debug = format!("{env:?}");
    assert!(!debug.contains("sk_test_secret"), "{debug}");
    assert!(debug.contains("1 variables"), "{debug}");
    assert_eq!(Env::empty().get("PATH"), None);
}

#[test]
fn hints_show_the_kind_and_last_four_only() {
    assert_eq!(hint("whsec_abcdefghijklmnop1a2b"), "whsec_…1a2b");
    assert_eq!(hint("rk_test_51TestKeyForTheStandIn0000"), "rk_test_…0000");
    assert_eq!(hint("whsec_short"), "whsec_…");
    assert_eq!(hint("no-prefix-but-long-enough"), "…ough");
}

#[test]
fn variables_given_with_win_over_every_layer() {
    let env = Env::from_map([("A", "process"), ("B", "kept")]).with([("A", "offline")]);
    assert_eq!(env.get("A").as_deref(), Some("offline"));
    assert_eq!(env.get("B").as_deref(), Some("kept"));
}
