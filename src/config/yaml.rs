//! The YAML as a tree that keeps the place of every node ([`Node`]), and a
//! serde deserializer over it ([`De`]) whose errors say where they are
//! ([`DeError`]), so that each section, sink and route is deserialized on
//! its own and every problem is reported with its line and column.

use std::fmt;

use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde_saphyr::{Location, Spanned};

/// A YAML value with the place of every node, so that each part of the file
/// can be checked on its own and every problem reported with its place.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl Node {
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A scalar as text (keys, messages).
    pub(super) fn text(&self) -> String {
        match self {
            Node::Null => "null".to_owned(),
            Node::Bool(b) => b.to_string(),
            Node::Int(n) => n.to_string(),
            Node::UInt(n) => n.to_string(),
            Node::Float(n) => n.to_string(),
            Node::Str(s) => s.clone(),
            Node::Seq(_) => "[...]".to_owned(),
            Node::Map(_) => "{...}".to_owned(),
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<&Spanned<Node>> {
        match self {
            Node::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.value.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Map(entries))
    }
}

/// An error from deserializing a [`Node`]: where, when known.
#[derive(Debug)]
pub(super) struct DeError {
    pub(super) message: String,
    pub(super) at: Option<Location>,
}

impl DeError {
    fn or_at(mut self, at: Location) -> DeError {
        self.at.get_or_insert(at);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(message: T) -> DeError {
        DeError {
            message: message.to_string(),
            at: None,
        }
    }
}

/// Numbers of every width read like `u64`: the visitor narrows them.
macro_rules! numbers_via_u64 {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.deserialize_u64(visitor)
        }
    )*};
}

/// Deserializes typed config from a [`Node`]; an error is placed at the
/// deepest node it came from.
#[derive(Clone, Copy)]
pub(super) struct De<'a>(pub(super) &'a Spanned<Node>);

impl<'de> Deserializer<'de> for De<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Node::Null => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(*b),
            Node::Int(n) => visitor.visit_i64(*n),
            Node::UInt(n) => visitor.visit_u64(*n),
            Node::Float(n) => visitor.visit_f64(*n),
            Node::Str(s) => visitor.visit_str(s),
            Node::Seq(items) => visitor.visit_seq(SeqDe(items.iter())),
            Node::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
            }),
        }
        .map_err(|e: DeError| e.or_at(self.0.referenced))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Node::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e: DeError| e.or_at(self.0.referenced))
    }

    /// A string field takes any scalar, as YAML readers expect: a header
    /// value `5` or a secret `123456` is text.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Node::Bool(_) | Node::Int(_) | Node::UInt(_) | Node::Float(_) => {
                visitor.visit_string(self.0.value.text())
            }
            _ => return self.deserialize_any(visitor),
        }
        .map_err(|e: DeError| e.or_at(self.0.referenced))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    /// `${VAR}` always yields a string; a typed field (`max_attempts:
    /// ${ATTEMPTS}`) still takes it when the text is a number or a bool.
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Node::Str(s) if matches!(s.as_str(), "true" | "false") => {
                visitor.visit_bool(s == "true")
            }
            _ => return self.deserialize_any(visitor),
        }
        .map_err(|e: DeError| e.or_at(self.0.referenced))
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let Node::Str(s) = &self.0.value else {
            return self.deserialize_any(visitor);
        };
        if let Ok(n) = s.parse::<u64>() {
            visitor.visit_u64(n)
        } else if let Ok(n) = s.parse::<i64>() {
            visitor.visit_i64(n)
        } else if s.contains(|c: char| c.is_ascii_digit()) && !s.contains(char::is_alphabetic) {
            match s.parse::<f64>() {
                Ok(n) => visitor.visit_f64(n),
                Err(_) => return self.deserialize_any(visitor),
            }
        } else {
            return self.deserialize_any(visitor);
        }
        .map_err(|e: DeError| e.or_at(self.0.referenced))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.0.value {
            Node::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => return self.deserialize_any(visitor),
        }
        .map_err(|e: DeError| e.or_at(self.0.referenced))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor
            .visit_newtype_struct(self)
            .map_err(|e: DeError| e.or_at(self.0.referenced))
    }

    numbers_via_u64! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_f32 deserialize_f64
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct SeqDe<'a>(std::slice::Iter<'a, Spanned<Node>>);

impl<'de> SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        self.0
            .next()
            .map(|item| seed.deserialize(De(item)))
            .transpose()
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, (Spanned<Node>, Spanned<Node>)>,
    value: Option<&'a Spanned<Node>>,
}

impl<'de> MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(De(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            // Errors raised after a value was read (`with` functions,
            // `FromStr`) still belong to that value.
            Some(value) => seed
                .deserialize(De(value))
                .map_err(|e| e.or_at(value.referenced)),
            None => Err(de::Error::custom("a map value was read before its key")),
        }
    }
}
