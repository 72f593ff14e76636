//! Reading only the parts of a JSON document that something will look at.
//!
//! A [`Keep`] names those parts: keys of objects, down to a value that is
//! kept whole, or every element of an array. [`Keep::parse`] reads the
//! whole document in one pass, checking its syntax as a full parse does,
//! and builds a [`serde_json::Value`] holding only the kept parts, in the
//! document's order; everything else is skipped without being built. A
//! path read in the pruned tree finds exactly what it finds in the whole
//! tree when the path is kept, so the rules and the record builders read
//! the pruned tree unchanged. Pure, no I/O.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The parts of a JSON value to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// The value as it is.
    Whole,
    /// In an object, these keys (the others are skipped); anything other
    /// than an object is kept whole. Sorted by key: a body's keys are looked
    /// up by binary search, cheaper than hashing each for the dozen or so
    /// keys a snapshot reads.
    Keys(Vec<(String, Keep)>),
    /// In an array, each element as the inner `Keep` says; anything other
    /// than an array is kept whole.
    Each(Box<Keep>),
}

impl Default for Keep {
    /// Nothing but an empty object (or the value, if it is not one).
    fn default() -> Keep {
        Keep::Keys(Vec::new())
    }
}

impl Keep {
    /// Also keeps the value at the dotted `path` whole (with what it holds).
    /// A path through a part kept whole adds nothing.
    pub fn path(&mut self, path: &str) -> &mut Keep {
        *self.at(path) = Keep::Whole;
        self
    }

    /// The part kept at the dotted `path`, which is added (as an object of
    /// no keys yet) when it is not there. A part kept whole holds every
    /// path under it: then it is what this answers.
    pub fn at(&mut self, path: &str) -> &mut Keep {
        let mut node = self;
        for key in path.split('.') {
            if let Keep::Each(_) = node {
                // An array whose elements are chosen, reached by a key:
                // keep it whole, the simplest superset.
                *node = Keep::Whole;
            }
            let Keep::Keys(children) = node else {
                return node;
            };
            let at = match children.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
                Ok(at) => at,
                Err(at) => {
                    children.insert(at, (key.to_owned(), Keep::default()));
                    at
                }
            };
            node = &mut children[at].1;
        }
        node
    }

    /// Keeps each element of the array at `self` as `each` says.
    pub fn each(&mut self, each: Keep) -> &mut Keep {
        if let Keep::Keys(children) = self
            && children.is_empty()
        {
            *self = Keep::Each(Box::new(each));
        }
        self
    }

    /// Whether everything is kept.
    pub fn is_whole(&self) -> bool {
        matches!(self, Keep::Whole)
    }

    /// Parses `body` (the whole of it, with serde_json's syntax rules),
    /// keeping what `self` names.
    pub fn parse(&self, body: &[u8]) -> serde_json::Result<Value> {
        if self.is_whole() {
            return serde_json::from_slice(body);
        }
        self.parse_from(serde_json::Deserializer::from_slice(body))
    }

    /// [`Keep::parse`] of a body already checked to be UTF-8: the same
    /// value or error, without checking each kept string's UTF-8 again.
    pub fn parse_str(&self, text: &str) -> serde_json::Result<Value> {
        if self.is_whole() {
            return serde_json::from_str(text);
        }
        self.parse_from(serde_json::Deserializer::from_str(text))
    }

    fn parse_from<'de, R: serde_json::de::Read<'de>>(
        &self,
        mut deserializer: serde_json::Deserializer<R>,
    ) -> serde_json::Result<Value> {
        let value = self.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }
}

impl<'de> DeserializeSeed<'de> for &Keep {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self {
            Keep::Whole => serde::Deserialize::deserialize(deserializer),
            pruned => deserializer.deserialize_any(Pruning(pruned)),
        }
    }
}

/// Builds a [`Value`] as serde_json does, skipping what its [`Keep`] leaves
/// out.
struct Pruning<'k>(&'k Keep);

impl<'de> Visitor<'de> for Pruning<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.0.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let each = match self.0 {
            Keep::Each(each) => each.as_ref(),
            _ => &Keep::Whole,
        };
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(each)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Keep::Keys(keys) = self.0 else {
            // An object where an array was expected: kept whole, as
            // anything unexpected is.
            let mut object = Map::new();
            while let Some(key) = map.next_key_seed(Key)? {
                let value = map.next_value::<Value>()?;
                object.insert(key.into_owned(), value);
            }
            return Ok(Value::Object(object));
        };
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            match keys.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
                Ok(at) => {
                    let keep = &keys[at].1;
                    let value = map.next_value_seed(keep)?;
                    // A key written twice keeps its last value, as in a
                    // whole parse.
                    object.insert(key.into_owned(), value);
                }
                Err(_) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(object))
    }
}

/// An object key, borrowed from the body when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(Key)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
#[path = "pruned_tests.rs"]
mod tests;
