//! `${VAR}` interpolation: replaced in the parsed scalar values, never in
//! the raw text, so quoting stays intact whatever a value holds, keys are
//! left alone and places stay true to the file. `$${` writes a literal `${`.
//! An interpolated value is always a string (typed fields such as
//! `max_attempts` still parse it), and no problem message repeats one.

use serde_saphyr::{Location, Spanned};

use super::checker::{Checker, Pos};
use super::env::Env;
use super::yaml::Node;

/// How `${VAR}` naming an unset variable is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsetVars {
    /// An error naming it: what `serve` needs.
    Refused,
    /// Read as empty text, its value not judged: `check --no-env`, as a CI
    /// job without the secrets runs it.
    Allowed,
}

impl<'a> Checker<'a> {
    /// Replaces `${NAME}` in every scalar value (never in keys) and `$${`
    /// with a literal `${`. Working on parsed scalars rather than on the raw
    /// text keeps quoting intact whatever a value contains, and keeps every
    /// place true to the file.
    pub(super) fn interpolate(&mut self, node: &mut Spanned<Node>, env: &Env) {
        match &mut node.value {
            Node::Str(text) if text.contains('$') => {
                let raw = self.raw(node.referenced);
                let (value, missing, unresolved) = expand(text, env, self.unset);
                for (name, problem) in missing {
                    let at = self.locate_in_raw(node.referenced, raw, &format!("${{{name}"));
                    self.problem(at, problem);
                }
                if unresolved {
                    self.unresolved.push(node.referenced.into());
                }
                if value != *text {
                    self.expanded
                        .push((value.clone(), std::mem::replace(text, value)));
                }
            }
            Node::Seq(items) => items
                .iter_mut()
                .for_each(|item| self.interpolate(item, env)),
            Node::Map(entries) => entries
                .iter_mut()
                .for_each(|(_, value)| self.interpolate(value, env)),
            _ => {}
        }
    }

    /// The file text of a scalar: from its start for its length, or to the
    /// end of its line when the length is unknown.
    fn raw(&self, at: Location) -> &'a str {
        let span = at.span();
        let Some(start) = span.byte_offset().and_then(|o| usize::try_from(o).ok()) else {
            return "";
        };
        let rest = self.text.get(start..).unwrap_or("");
        match span.byte_len().and_then(|l| usize::try_from(l).ok()) {
            Some(len) if len > 0 => rest.get(..len).unwrap_or(rest),
            _ => rest.split('\n').next().unwrap_or(""),
        }
    }

    /// The place of `needle` inside a scalar written at `at`, or `at`.
    fn locate_in_raw(&self, at: Location, raw: &str, needle: &str) -> Pos {
        let at = Pos::from(at);
        let Some(offset) = raw.find(needle) else {
            return at;
        };
        let before = &raw[..offset];
        match before.rfind('\n') {
            Some(newline) => Pos {
                line: at.line + before.matches('\n').count() as u64,
                column: before[newline + 1..].chars().count() as u64 + 1,
            },
            None => Pos {
                line: at.line,
                column: at.column + before.chars().count() as u64,
            },
        }
    }
}

/// Expands `${NAME}` and `$${`; returns the value, for each malformed
/// reference (and unset one, unless `unset` allows them) its name and a
/// problem message, and whether an unset variable was left empty.
fn expand(text: &str, env: &Env, unset: UnsetVars) -> (String, Vec<(String, String)>, bool) {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut unresolved = false;
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some((name, tail)) = tail.split_once('}') else {
                problems.push((
                    String::new(),
                    "`${` is not closed: write `${NAME}`, or `$${` for a literal `${`".to_owned(),
                ));
                out.push_str(after);
                rest = "";
                continue;
            };
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            match env.get(name) {
                _ if !valid => problems.push((
                    name.to_owned(),
                    format!("`${{{name}}}` is not a variable name: use letters, digits and `_`, or write `$${{` for a literal `${{`"),
                )),
                Some(value) => out.push_str(&value),
                None => {
                    unresolved = true;
                    if unset == UnsetVars::Refused {
                        problems.push((
                            name.to_owned(),
                            format!("${{{name}}} is not set: export it or put it in .env"),
                        ));
                    }
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    (out, problems, unresolved)
}

#[cfg(test)]
#[path = "interpolate_tests.rs"]
mod tests;
