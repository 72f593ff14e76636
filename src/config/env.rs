//! The environment the router reads: the process environment over
//! `.env.local` over `.env`, like Next.js does.
//!
//! The files are read into memory and looked up alongside the process
//! environment; nothing is written back with `std::env::set_var` (unsafe in
//! edition 2024, and racy in a threaded server). Values are secrets as often
//! as not, so neither `Debug` nor any error ever shows one.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Variables by name, looked up in precedence order: the process environment,
/// then `.env.local`, then `.env`.
#[derive(Clone, Default)]
pub struct Env {
    /// Highest precedence first.
    layers: Vec<Layer>,
}

#[derive(Clone)]
struct Layer {
    /// `None` for the process environment or a map given in code.
    file: Option<PathBuf>,
    vars: HashMap<String, String>,
}

/// A `.env` file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// The message names the problem, never the line's text, which may hold a
    /// secret.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

impl Env {
    /// The process environment over `dir/.env.local` over `dir/.env`. A
    /// missing file is fine; an unreadable or malformed one is an error.
    pub fn load(dir: &Path) -> Result<Env, EnvError> {
        // Variables whose name or value is not UTF-8 cannot be used in
        // `${NAME}` anyway, so they are left out rather than mangled.
        let process = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Env::load_over(process, dir)
    }

    /// [`Env::load`] with `process` as the process environment.
    pub(crate) fn load_over(process: HashMap<String, String>, dir: &Path) -> Result<Env, EnvError> {
        let mut layers = vec![Layer {
            file: None,
            vars: process,
        }];
        for name in [".env.local", ".env"] {
            let path = dir.join(name);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(EnvError::Read { path, source }),
            };
            let vars = parse(&text).map_err(|(line, message)| EnvError::Syntax {
                path: path.clone(),
                line,
                message,
            })?;
            layers.push(Layer {
                file: Some(path),
                vars,
            });
        }
        Ok(Env { layers })
    }

    /// Only the given variables; for tests and embedding.
    pub fn from_map<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Env
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Env {
            layers: vec![Layer { file: None, vars }],
        }
    }

    /// No variables at all.
    pub fn empty() -> Env {
        Env::default()
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.layers
            .iter()
            .find_map(|layer| layer.vars.get(name))
            .cloned()
    }

    /// This environment with `vars` over every layer: what `serve --offline`
    /// points at its stand-in.
    pub fn with<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Env
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.layers.insert(0, Layer { file: None, vars });
        self
    }

    /// The `.env` files that were read, highest precedence first.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.layers.iter().filter_map(|l| l.file.as_deref())
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for layer in &self.layers {
            let source = match &layer.file {
                Some(path) => path.display().to_string(),
                None => "process".to_owned(),
            };
            list.entry(&format_args!("{source}: {} variables", layer.vars.len()));
        }
        list.finish()
    }
}

/// Enough of a secret or key to tell which one is in use, as the Dashboard
/// shows keys: its kind prefix and last four characters (`whsec_…a1b2`).
/// A short value shows only its prefix: four characters would be much of it.
pub fn hint(secret: &str) -> String {
    let secret = secret.trim();
    let prefix_len = ["whsec_", "sk_test_", "sk_live_", "rk_test_", "rk_live_"]
        .iter()
        .find(|p| secret.starts_with(*p))
        .map_or(0, |p| p.len());
    let (prefix, rest) = secret.split_at(prefix_len);
    let chars: Vec<char> = rest.chars().collect();
    if chars.len() >= 12 {
        let last: String = chars[chars.len() - 4..].iter().collect();
        format!("{prefix}…{last}")
    } else {
        format!("{prefix}…")
    }
}

/// Parses dotenv text: `KEY=value`, `export KEY=value`, `#` comments, blank
/// lines, `'literal'` and `"escaped"` values (both may span lines), and a
/// trailing ` # comment` after an unquoted value. No `$VAR` expansion.
/// Errors are `(line, message)`.
fn parse(text: &str) -> Result<HashMap<String, String>, (usize, String)> {
    let mut vars = HashMap::new();
    let mut rest = text;
    let mut line = 1;
    while !rest.is_empty() {
        let (current, after) = rest.split_once('\n').unwrap_or((rest, ""));
        let trimmed = current.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            rest = after;
            line += 1;
            continue;
        }
        let mut offset = current.len() - current.trim_start().len();
        let mut head = &current[offset..];
        if let Some(stripped) = head.strip_prefix("export ") {
            let stripped = stripped.trim_start();
            offset += head.len() - stripped.len();
            head = stripped;
        }
        let Some(eq) = head.find('=') else {
            return Err((line, "expected `KEY=value`".to_owned()));
        };
        let key = head[..eq].trim();
        if !is_name(key) {
            return Err((
                line,
                "expected `KEY=value` with a name of letters, digits and `_`".to_owned(),
            ));
        }
        let value = rest[offset + eq + 1..].trim_start_matches([' ', '\t']);
        let (parsed, consumed) = parse_value(value).map_err(|m| (line, m))?;
        let used = &value[..consumed];
        line += used.matches('\n').count() + 1;
        rest = value[consumed..]
            .split_once('\n')
            .map_or("", |(_, next)| next);
        vars.insert(key.to_owned(), parsed);
    }
    Ok(vars)
}

fn is_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Parses one value at the start of `text`; returns it and how many bytes
/// were used, up to (not including) the end of its last line.
fn parse_value(text: &str) -> Result<(String, usize), String> {
    let (value, end) = match text.chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let mut value = String::new();
            let mut chars = text.char_indices().skip(1);
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    c if c == quote => {
                        end = Some(i + 1);
                        break;
                    }
                    '\\' if quote == '"' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 'r')) => value.push('\r'),
                        Some((_, 't')) => value.push('\t'),
                        Some((_, c @ ('"' | '\\' | '$'))) => value.push(c),
                        Some((_, c)) => {
                            value.push('\\');
                            value.push(c);
                        }
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            let Some(end) = end else {
                let kind = if quote == '"' { "double" } else { "single" };
                return Err(format!("unterminated {kind}-quoted value"));
            };
            let tail = text[end..].split('\n').next().unwrap_or("").trim();
            if !(tail.is_empty() || tail.starts_with('#')) {
                return Err("unexpected text after the closing quote".to_owned());
            }
            (value, end)
        }
        _ => {
            let line = text.split('\n').next().unwrap_or("");
            let line = line.strip_suffix('\r').unwrap_or(line);
            // `#` starts a comment only after whitespace, so `a#b` stays whole.
            let cut = line
                .char_indices()
                .find(|&(i, c)| c == '#' && (i == 0 || line[..i].ends_with([' ', '\t'])))
                .map_or(line.len(), |(i, _)| i);
            (line[..cut].trim().to_owned(), line.len())
        }
    };
    Ok((value, end))
}

#[cfg(test)]
#[path = "env_tests.rs"]
mod tests;
