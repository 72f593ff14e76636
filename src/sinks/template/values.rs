//! The record's JSON as template values, built in one pass over its bytes.
//!
//! Deserializing straight into `minijinja::Value` makes every JSON object
//! an `IndexMap`: a SipHash per key, a hash table grown by doubling, on
//! every render of every record. A record's objects are small (a dozen
//! keys) and a template reads a few of them, so here an object is its
//! entries in order, looked up by a scan, allocated once at its exact size
//! (entries are gathered on one scratch stack shared by all levels).
//!
//! Templates see no difference: keys keep their order, a repeated key keeps
//! its first place and its last value (as `IndexMap::insert`), iteration,
//! `length`, `items`, `tojson` and printing go through the same object
//! interface minijinja's own maps use. Objects too large for a scan become
//! minijinja's own maps. Numbers, strings, arrays and `null` are the values
//! minijinja's own deserializer makes.

use std::fmt;
use std::sync::Arc;

use minijinja::Value;
use minijinja::value::{Enumerator, Object, ObjectExt};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Objects with more keys than this become minijinja's hashed maps: a scan
/// per lookup (and per key while building, for repeats) stays cheaper than
/// hashing only for a few dozen keys.
const SCANNED_KEYS: usize = 32;

/// `json` (one JSON value, nothing after it but whitespace) as a template
/// value. Nesting is bounded by serde_json's recursion limit.
pub fn from_json(json: &[u8]) -> Result<Value, serde_json::Error> {
    match std::str::from_utf8(json) {
        // One UTF-8 check of the whole record instead of one per string.
        Ok(text) => build(serde_json::Deserializer::from_str(text)),
        // serde_json's own error, with its place.
        Err(_) => build(serde_json::Deserializer::from_slice(json)),
    }
}

fn build<'de, R: serde_json::de::Read<'de>>(
    mut deserializer: serde_json::Deserializer<R>,
) -> Result<Value, serde_json::Error> {
    let mut scratch = Scratch {
        entries: Vec::with_capacity(64),
        prints: Vec::with_capacity(64),
        items: Vec::with_capacity(16),
    };
    let value = Build(&mut scratch).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// The entries of the objects and the items of the arrays being built, the
/// innermost at the top; `prints` holds a fingerprint of each entry's key,
/// so that looking for a repeated key compares integers.
struct Scratch {
    entries: Vec<(Value, Value)>,
    prints: Vec<u64>,
    items: Vec<Value>,
}

/// A JSON object with few keys, in order.
struct Entries(Box<[(Value, Value)]>);

impl fmt::Debug for Entries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl Entries {
    fn find(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
}

impl Object for Entries {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.find(key.as_str()?).cloned()
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.find(key).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_rev_key_value_enumerator(|this| {
            Box::new(this.0.iter().map(|(k, v)| (k.clone(), v.clone())))
        })
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

/// Builds one value, gathering on the scratch stack.
struct Build<'a>(&'a mut Scratch);

impl<'de> DeserializeSeed<'de> for Build<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::from(()))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::from(()))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let start = self.0.items.len();
        while let Some(item) = seq.next_element_seed(Build(self.0))? {
            self.0.items.push(item);
        }
        // Exactly sized: one allocation per array.
        let items: Vec<Value> = self.0.items.drain(start..).collect();
        Ok(Value::from(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let start = self.0.entries.len();
        while let Some((key, print)) = map.next_key_seed(Key)? {
            let value = map.next_value_seed(Build(self.0))?;
            let scratch = &mut *self.0;
            let known = &scratch.prints[start..];
            let repeated = if known.len() < SCANNED_KEYS {
                known
                    .iter()
                    .zip(&scratch.entries[start..])
                    .position(|(p, (k, _))| *p == print && k.as_str() == key.as_str())
            } else {
                None
            };
            match repeated {
                Some(i) => scratch.entries[start + i].1 = value,
                None => {
                    scratch.entries.push((key, value));
                    scratch.prints.push(print);
                }
            }
        }
        self.0.prints.truncate(start);
        let entries = self.0.entries.drain(start..);
        if entries.len() > SCANNED_KEYS {
            // minijinja's own map; a repeated key is merged as above.
            return Ok(Value::from_pairs(entries));
        }
        Ok(Value::from_object(Entries(entries.collect())))
    }
}

/// A fingerprint of an object key (FxHash's mixing): equal keys have equal
/// prints, different keys almost never do.
fn print(key: &str) -> u64 {
    key.bytes().fold(key.len() as u64, |hash, byte| {
        (hash.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x517c_c1b7_2722_0a95)
    })
}

/// An object key (JSON keys are strings) and its print.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = (Value, u64);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(Value, u64), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Key {
    type Value = (Value, u64);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<(Value, u64), E> {
        Ok((Value::from(v), print(v)))
    }
}

#[cfg(test)]
#[path = "values_tests.rs"]
mod tests;
