//! The offending line of a YAML syntax error with a caret under its column,
//! as compilers show them, so the mistake is seen without opening the file:
//!
//! ```text
//! routes.yaml:3:7: while parsing a flow mapping, did not find expected ',' or '}'
//!     2 |   orders: { type: jsonl, path: a.jsonl
//!     3 | routes: []
//!       |       ^
//! ```

use super::problems::Pos;

/// Words that mark a line as holding a secret: it is not shown.
const SECRET_MARKS: [&str; 9] = [
    "whsec_",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "secret",
    "token",
    "password",
    "authorization",
];

/// Said instead of the excerpt when a line looks like it holds a secret,
/// so the excerpt is not taken for missing.
const WITHHELD: &str = "(line not shown: it may hold a secret)";

/// The line at `at` in `text` (after the one before it, unless blank)
/// and a caret under its column, each line
/// starting with a newline and indented to sit under a problem; nothing
/// when the place is unknown or past the text, [`WITHHELD`] when the line
/// looks like it holds a secret.
pub(super) fn excerpt(text: &str, at: Pos) -> String {
    let (Ok(line_no), Ok(column)) = (usize::try_from(at.line), usize::try_from(at.column)) else {
        return String::new();
    };
    if line_no == 0 {
        return String::new();
    }
    let Some(line) = text.lines().nth(line_no - 1) else {
        return String::new();
    };
    // The line before, when it has text: where the parser stops is often
    // just past the mistake (a brace left open on the line above).
    let before = line_no
        .checked_sub(2)
        .and_then(|i| text.lines().nth(i))
        .filter(|l| !l.trim().is_empty());
    let holds_secret = |l: &str| {
        let lower = l.to_ascii_lowercase();
        SECRET_MARKS.iter().any(|mark| lower.contains(mark))
    };
    if holds_secret(line) || before.is_some_and(holds_secret) {
        return format!("\n    {WITHHELD}");
    }
    // Long lines are cut, not wrapped: the caret must stay under its column.
    const WIDTH: usize = 160;
    let cut = |l: &str| l.chars().take(WIDTH).collect::<String>();
    let shown = cut(line);
    // Tabs before the column are kept, so the caret lines up in a terminal.
    let pad: String = line
        .chars()
        .take(column.saturating_sub(1).min(WIDTH))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let number = line_no.to_string();
    let gutter = " ".repeat(number.len());
    let before = before
        .map(|l| {
            format!(
                "\n    {:>width$} | {}",
                line_no - 1,
                cut(l),
                width = number.len()
            )
        })
        .unwrap_or_default();
    format!("{before}\n    {number} | {shown}\n    {gutter} | {pad}^")
}

/// The next step for a YAML error caused by a tab: YAML never indents
/// with tabs, and the parser's own words do not say what to do. `None`
/// when neither the error nor the line at `at` (or the one before) is
/// about a tab.
pub(super) fn tab_hint(message: &str, text: &str, at: Pos) -> Option<&'static str> {
    const HINT: &str = "; YAML indents with spaces, never tabs: replace the tabs with spaces";
    let indented_by_tab = |line: &str| {
        line.chars()
            .take_while(|c| c.is_whitespace())
            .any(|c| c == '\t')
    };
    let near = usize::try_from(at.line).ok().filter(|&n| n > 0).map(|n| {
        text.lines()
            .skip(n.saturating_sub(2))
            .take(if n >= 2 { 2 } else { 1 })
            .any(indented_by_tab)
    });
    let about_tabs = message.to_ascii_lowercase().contains("tab") || near == Some(true);
    about_tabs.then_some(HINT)
}

#[cfg(test)]
#[path = "excerpt_tests.rs"]
mod tests;
