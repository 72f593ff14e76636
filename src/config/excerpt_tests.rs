use super::*;

fn at(line: u64, column: u64) -> Pos {
    Pos { line, column }
}

#[test]
fn shows_the_line_after_the_one_before_and_a_caret_under_the_column() {
    let text = "sinks:\n  orders: { type: jsonl, path: a.jsonl\nroutes: []\n";
    assert_eq!(
        excerpt(text, at(3, 7)),
        "\n    2 |   orders: { type: jsonl, path: a.jsonl\n    3 | routes: []\n      |       ^"
    );
    // A blank line before is left out; tabs stay tabs under the line.
    assert_eq!(
        excerpt("\n\tb: 1\n", at(2, 2)),
        "\n    2 | \tb: 1\n      | \t^"
    );
    let long = "x\n".repeat(9) + "routes: [\n";
    assert_eq!(
        excerpt(&long, at(10, 9)),
        "\n     9 | x\n    10 | routes: [\n       |         ^"
    );
}

#[test]
fn shows_nothing_it_cannot_place_or_should_not_show() {
    assert_eq!(excerpt("a: 1\n", at(0, 0)), "");
    assert_eq!(excerpt("a: 1\n", at(7, 1)), "");
    // A line with a secret is not repeated, and the reader is told why.
    let withheld = "\n    (line not shown: it may hold a secret)";
    assert_eq!(
        excerpt("  signing_secret: whsec_abc {\n", at(1, 3)),
        withheld
    );
    assert_eq!(excerpt("token: x {\nb: 1\n", at(2, 1)), withheld);
}

#[test]
fn a_tab_in_the_indentation_gets_the_hint_to_use_spaces() {
    let text = "sinks:\n\torders: { type: stdout }\n";
    let hint = tab_hint(
        "found character that cannot start any token",
        text,
        at(2, 1),
    );
    assert!(hint.is_some_and(|h| h.contains("spaces")), "{hint:?}");
    assert!(tab_hint("found a tab character", "a: 1\n", at(1, 1)).is_some());
    // A tab inside a value, or no tab at all, is not the cause.
    assert_eq!(
        tab_hint("did not find expected ','", "a: [1\tb\n", at(1, 5)),
        None
    );
    assert_eq!(
        tab_hint("did not find expected ','", "a: [1\n", at(0, 0)),
        None
    );
}
