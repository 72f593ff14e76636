//! Problems and where they are: [`ConfigProblem`] and [`ConfigError`], the
//! [`Checker`] that collects them in file order (never repeating a value
//! `${VAR}` filled in), and reading a part of the file into its type with
//! every bad field reported by name and place, serde's messages reworded
//! to say what to write.

use serde::Deserialize;
use serde::de::{self, Deserializer, Error as _, Visitor};
use serde_saphyr::{Location, Spanned};

use super::interpolate::UnsetVars;
use super::yaml::{De, DeError, Node};
use crate::sinks::Common;

/// One problem in a config file, with its place and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// `routes.yaml:12:5`, or just the file name when no place is known.
    pub place: String,
    pub message: String,
}

impl ConfigProblem {
    /// The line and column of its place, `(0, 0)` when it names only the
    /// file: problems found by different stages sort into file order by it.
    pub fn position(&self) -> (u64, u64) {
        let mut parts = self.place.rsplitn(3, ':');
        let column = parts.next().and_then(|c| c.parse().ok());
        let line = parts.next().and_then(|l| l.parse().ok());
        match (line, column, parts.next()) {
            (Some(line), Some(column), Some(_)) => (line, column),
            _ => (0, 0),
        }
    }
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.problems))]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

fn render(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    pub(super) fn one(place: String, message: impl Into<String>) -> ConfigError {
        ConfigError {
            problems: vec![ConfigProblem {
                place,
                message: message.into(),
            }],
        }
    }
}

/// One pass over one file, collecting every problem rather than stopping at
/// the first.
pub(super) struct Checker<'a> {
    /// The file as the user named it, for places.
    pub(super) file: String,
    pub(super) text: &'a str,
    /// Sorted into file order at the end.
    pub(super) problems: Vec<(Pos, ConfigProblem)>,
    /// `(value, as written)` for every scalar that `${VAR}` changed, so that
    /// no problem message repeats an interpolated secret.
    pub(super) expanded: Vec<(String, String)>,
    pub(super) unset: UnsetVars,
    /// Scalars holding an unset variable: later problems placed there are
    /// about the empty text standing in for it, not the file; the unset
    /// variable is the problem (or, allowed, none).
    pub(super) unresolved: Vec<Pos>,
    /// The names of the unset variables met, allowed or not.
    pub(super) unset_names: Vec<String>,
}

impl Checker<'_> {
    pub(super) fn place(&self, at: impl Into<Pos>) -> String {
        let at = at.into();
        if at.line == 0 {
            self.file.clone()
        } else {
            format!("{}:{}:{}", self.file, at.line, at.column)
        }
    }

    pub(super) fn problem(&mut self, at: impl Into<Pos>, message: impl Into<String>) {
        let at = at.into();
        // A value that holds an unset variable is not judged.
        if self.unresolved.contains(&at) {
            return;
        }
        let mut message = message.into();
        for (value, written) in &self.expanded {
            if !value.is_empty() && message.contains(value.as_str()) {
                message = message.replace(value.as_str(), written);
            }
        }
        let place = self.place(at);
        self.problems.push((at, ConfigProblem { place, message }));
    }

    pub(super) fn finish(mut self) -> ConfigError {
        self.problems.sort_by_key(|&(at, _)| at);
        ConfigError {
            problems: self.problems.into_iter().map(|(_, p)| p).collect(),
        }
    }
}

/// A 1-based line and column; zero when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    pub(super) line: u64,
    pub(super) column: u64,
}

impl Pos {
    pub(super) const UNKNOWN: Pos = Pos { line: 0, column: 0 };
}

impl From<Location> for Pos {
    fn from(at: Location) -> Pos {
        Pos {
            line: at.line(),
            column: at.column(),
        }
    }
}

impl Checker<'_> {
    /// A section that may be left out or empty (`server:`); its defaults then.
    pub(super) fn section<T: serde::de::DeserializeOwned + Default>(
        &mut self,
        node: &Spanned<Node>,
        what: &str,
    ) -> Option<T> {
        if node.value == Node::Null {
            return Some(T::default());
        }
        self.typed(node, what, None)
    }

    /// Deserializes `T`, reporting every bad field. Serde stops at a
    /// struct's first error, so on failure each field is tried again alone
    /// (with the enum tag, `tag`, when `T` is internally tagged) to find the
    /// others too.
    pub(super) fn typed<T: serde::de::DeserializeOwned>(
        &mut self,
        node: &Spanned<Node>,
        what: &str,
        tag: Option<&str>,
    ) -> Option<T> {
        let first = match T::deserialize(De(node)) {
            Ok(value) => return Some(value),
            Err(e) => e,
        };
        let mut errors: Vec<DeError> = Vec::new();
        if let Node::Map(entries) = &node.value {
            let tag = tag.map(|t| entries.iter().find(|(k, _)| k.value.as_str() == Some(t)));
            // What the tag alone says (a missing field, an unknown type):
            // any other error of a probe is about the probe's one field.
            let tag_alone = tag.and_then(|t| {
                let alone = Node::Map(t.into_iter().cloned().collect());
                let alone = Spanned::new(alone, node.referenced, node.defined);
                T::deserialize(De(&alone)).err()
            });
            // The tag says what the other keys mean: missing or wrong, it is
            // the one problem said, at its value.
            if let Some(mut error) = tag_alone
                .as_ref()
                .filter(|e| tag == Some(None) || !e.message.starts_with("missing field"))
                .map(|e| DeError::custom(&e.message))
            {
                error.at = tag.flatten().map(|(_, value)| value.referenced);
                self.report(error, node, what);
                return None;
            }
            let tag = tag.flatten();
            let tag_alone = tag_alone.map(|e| e.message);
            for entry in entries {
                if tag.is_some_and(|t| std::ptr::eq(t, entry)) {
                    continue;
                }
                let alone = Node::Map(tag.into_iter().chain([entry]).cloned().collect());
                let probe = Spanned::new(alone, node.referenced, node.defined);
                if let Err(mut e) = T::deserialize(De(&probe)) {
                    // Internally tagged enums (sinks) buffer their input, so
                    // their errors come back without a place of their own,
                    // with the whole map's; the probe gives it, and messages
                    // need not repeat the value (which may be a secret) to
                    // be placed. An unknown key is found by its name, a
                    // duplicate tag is the map's.
                    if tag.is_some()
                        && e.at.is_none_or(|at| at == node.referenced)
                        && !e.message.starts_with("unknown field")
                        && !e.message.starts_with("duplicate field")
                        && tag_alone.as_deref() != Some(e.message.as_str())
                    {
                        e.at = Some(entry.1.referenced);
                    }
                    let known = errors
                        .iter()
                        .any(|k| k.message == e.message && k.at == e.at);
                    if !known && !e.message.starts_with("missing field") {
                        errors.push(e);
                    }
                }
            }
        }
        if errors.is_empty() {
            errors.push(first);
        }
        for error in errors {
            self.report(error, node, what);
        }
        None
    }

    /// Turns a deserialization error into a problem that names `what` and
    /// the field, placed as precisely as the error allows.
    pub(super) fn report(&mut self, error: DeError, node: &Spanned<Node>, what: &str) {
        let message = error.message;
        let entries: &[(Spanned<Node>, Spanned<Node>)] = match &node.value {
            Node::Map(entries) => entries,
            _ => &[],
        };
        let unknown = between(&message, "unknown field `", "`");
        // Internally tagged enums (sinks) buffer their input, so errors from
        // inside them come back without a place: find the key or value that
        // the message names.
        let found = entries.iter().find(|(key, value)| {
            let key_named = unknown == key.value.as_str();
            let at_value = error.at == Some(value.referenced);
            let value_named = value.value.as_str().is_some_and(|v| {
                !v.is_empty()
                    && (message.contains(&format!("{v:?}")) || message.contains(&format!("`{v}`")))
            });
            key_named || at_value || (error.at.is_none() && value_named)
        });
        let at = match (unknown, found) {
            (Some(_), Some((key, _))) => key.referenced,
            (None, Some((_, value))) if error.at.is_none() => value.referenced,
            _ => error.at.unwrap_or(node.referenced),
        };
        let field = found.and_then(|(key, _)| key.value.as_str());

        let text = if let Some(name) = unknown {
            // A sink's own keys (not those of a map inside it, `retry`'s)
            // are its type's and those every sink takes.
            let own_key = entries.iter().any(|(k, _)| k.value.as_str() == Some(name));
            let expected = if what.starts_with("sink ") && own_key {
                sink_keys_expected(&message)
            } else {
                message
                    .split_once(", expected ")
                    .map(|(_, e)| format!("expected {e}"))
                    .unwrap_or_else(|| "it takes no other options".to_owned())
            };
            format!("unknown field `{name}` in {what} ({expected})")
        } else if let Some(variant) = between(&message, "unknown variant `", "`") {
            let expected = message
                .split_once(", expected ")
                .map_or(String::new(), |(_, e)| e.replace('`', ""));
            if field == Some("type") && what.starts_with("sink ") {
                format!("unknown sink type `{variant}` in {what} (expected {expected})")
            } else {
                format!("unknown value `{variant}` in {what} (expected {expected})")
            }
        } else if let Some(name) = between(&message, "missing field `", "`") {
            if name == "type" && what.starts_with("sink ") {
                format!("{what} has no `type`: add one, e.g. `type: jsonl`")
            } else {
                format!("{what} has no `{name}`: add it")
            }
        } else {
            let hint = match field {
                Some("listen") => " (write an address and port, e.g. `127.0.0.1:3000`)",
                Some("url") => " (write a full URL, e.g. `http://127.0.0.1:4000/orders`)",
                _ if message.ends_with("expected a string") => " (put the value in quotes)",
                _ => "",
            };
            match field {
                Some(field) => format!("invalid `{field}` in {what}: {message}{hint}"),
                None => format!("{what}: {message}{hint}"),
            }
        };
        self.problem(at, text);
    }
}

/// The text between `start` and the next `end` in `text`.
fn between<'t>(text: &'t str, start: &str, end: &str) -> Option<&'t str> {
    let (_, rest) = text.split_once(start)?;
    rest.split_once(end).map(|(inside, _)| inside)
}

/// What an unknown key in a sink could have been: the keys of its type,
/// which serde's `message` lists, then those every sink takes.
pub(super) fn sink_keys_expected(message: &str) -> String {
    let listed = message
        .split_once(", expected one of ")
        .or_else(|| message.split_once(", expected "))
        .map_or("", |(_, list)| list);
    let mut keys: Vec<&str> = listed
        .split(", ")
        .flat_map(|k| k.split(" or "))
        .map(|k| k.trim_matches('`'))
        .filter(|k| !k.is_empty())
        .collect();
    keys.extend(struct_keys::<Common>());
    let keys: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    // Worded as serde words it for one struct.
    match keys.as_slice() {
        [] => "it takes no other options".to_owned(),
        [one] => format!("expected {one}"),
        [a, b] => format!("expected {a} or {b}"),
        _ => format!("expected one of {}", keys.join(", ")),
    }
}

/// The keys of a struct as its derived `Deserialize` names them, so that
/// they are declared once, in the struct.
pub(super) fn struct_keys<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut keys: &'static [&'static str] = &[];
    let _ = T::deserialize(KeysOf(&mut keys));
    keys
}

/// A deserializer that only learns the fields a struct asks for.
struct KeysOf<'k>(&'k mut &'static [&'static str]);

impl<'de> Deserializer<'de> for KeysOf<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, DeError> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, DeError> {
        *self.0 = fields;
        Err(de::Error::custom("fields read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}
