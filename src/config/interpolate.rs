//! `${VAR}` interpolation of one value: `${NAME}` from the environment,
//! `$${` for a literal `${`, and what an unset variable does ([`UnsetVars`]).
//! The checker applies it to the parsed scalar values, never to the raw
//! text, so quoting stays intact whatever a value holds, keys are left alone
//! and places stay true to the file. An interpolated value is always a
//! string (typed fields such as `max_attempts` still parse it), and no
//! problem message repeats one.

use super::env::Env;

/// How `${VAR}` naming an unset variable is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsetVars {
    /// An error naming it: what `serve` needs.
    Refused,
    /// Read as empty text, its value not judged: `check --no-env`, as a CI
    /// job without the secrets runs it.
    Allowed,
}

/// Expands `${NAME}` and `$${`; returns the value, for each malformed
/// reference (and unset one, unless `unset` allows them) its name and a
/// problem message, and the names of the unset variables left empty.
pub(super) fn expand(
    text: &str,
    env: &Env,
    unset: UnsetVars,
) -> (String, Vec<(String, String)>, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut unresolved = Vec::new();
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
                    unresolved.push(name.to_owned());
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
