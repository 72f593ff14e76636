//! A verified Stripe event: the few fields routing needs, plus the object
//! as received: whole, or only the parts a snapshot reads ([`Keep`]).

use serde_json::Value;

use crate::pruned::Keep;

/// How deeply arrays and objects may nest in an event. Real Stripe events
/// nest 4 to 7 levels (an event, its `data.object`, an address or a list of
/// items inside it); 64 leaves room for any expansion Stripe adds while
/// staying far below serde_json's own recursion limit (128), so the door and
/// routing refuse exactly the same bodies, for the same reason.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub created: i64,
    pub livemode: bool,
    /// The event as received (key order kept): whole from [`Event::parse`],
    /// or only the parts its [`Keep`] names (with `id`, `object`, `type`,
    /// `created` and `livemode` always).
    pub raw: Value,
}

/// A verified body that is not a Stripe event object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is not a Stripe event object: {0}")]
    NotAnEvent(String),
    #[error(
        "body nests arrays and objects more than {MAX_DEPTH} levels deep; Stripe events nest fewer than 10"
    )]
    TooDeep,
}

/// What the endpoint needs to journal a verified event: its id and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub id: String,
    pub kind: String,
}

impl Event {
    /// Accepts exactly the bodies [`Event::parse`] accepts, but on the
    /// request path reads only the few fields it checks, skipping the rest
    /// without building a tree: the whole event is parsed later, once, when
    /// it is routed.
    pub fn head(body: &[u8]) -> Result<Head, EventError> {
        check_depth(body)?;
        #[derive(serde::Deserialize)]
        struct Fields<'a> {
            #[serde(borrow)]
            object: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow)]
            id: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow, rename = "type")]
            kind: Option<std::borrow::Cow<'a, str>>,
            created: Option<i64>,
        }
        // Anything unusual (a duplicate key, a wrong type) takes the full
        // parse, which decides and says why.
        if let Ok(f) = serde_json::from_slice::<Fields<'_>>(body)
            && f.object.as_deref() == Some("event")
            && f.created.is_some()
            && let (Some(id), Some(kind)) = (f.id, f.kind)
            && !id.is_empty()
            && !kind.is_empty()
        {
            return Ok(Head {
                id: id.into_owned(),
                kind: kind.into_owned(),
            });
        }
        Event::parse_checked(body, &Keep::Whole).map(|e| Head {
            id: e.id,
            kind: e.kind,
        })
    }

    /// What every pruned parse keeps: the fields [`Event`] has of its own.
    pub fn keep() -> Keep {
        let mut keep = Keep::default();
        for key in ["id", "object", "type", "created", "livemode"] {
            keep.path(key);
        }
        keep
    }

    /// The whole event.
    pub fn parse(body: &[u8]) -> Result<Event, EventError> {
        Event::parse_keeping(body, &Keep::Whole)
    }

    /// The event with only the parts `keep` names in [`Event::raw`]: what a
    /// snapshot's routes and records read ([`crate::routing::snapshot`]).
    /// `keep` starts from [`Event::keep`].
    /// Accepts and refuses the same bodies as [`Event::parse`] (but for a
    /// lone UTF-16 surrogate escape, `\ud800`, in a string no route reads).
    pub fn parse_keeping(body: &[u8], keep: &Keep) -> Result<Event, EventError> {
        check_depth(body)?;
        Event::parse_checked(body, keep)
    }

    /// [`Event::parse_keeping`] of a body whose depth was checked: one that
    /// [`Event::head`] accepted, so the intake scans it for depth once.
    pub(crate) fn parse_checked(body: &[u8], keep: &Keep) -> Result<Event, EventError> {
        let parsed = if keep.is_whole() {
            keep.parse(body)
        } else {
            // A whole parse reads every string as text; a pruned one skips
            // the strings it does not keep, so their UTF-8 is checked here,
            // once for the whole body (the kept strings are not checked
            // again).
            let text = std::str::from_utf8(body).map_err(|e| {
                EventError::NotJson(format!("invalid UTF-8 at byte {}", e.valid_up_to()))
            })?;
            keep.parse_str(text)
        };
        let raw: Value = parsed.map_err(|e| EventError::NotJson(e.to_string()))?;
        let Some(object) = raw.as_object() else {
            return Err(EventError::NotAnEvent(format!(
                "expected a JSON object, got {}",
                json_kind(&raw)
            )));
        };
        match object.get("object").and_then(Value::as_str) {
            Some("event") => {}
            Some(other) => {
                return Err(EventError::NotAnEvent(format!(
                    "`object` is `{other}`, expected `event`"
                )));
            }
            None => return Err(EventError::NotAnEvent("no `object` field".to_owned())),
        }
        let text = |key: &str| -> Result<String, EventError> {
            object
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| EventError::NotAnEvent(format!("no `{key}` string")))
        };
        let id = text("id")?;
        let kind = text("type")?;
        let created = object
            .get("created")
            .and_then(Value::as_i64)
            .ok_or_else(|| EventError::NotAnEvent("no `created` timestamp".to_owned()))?;
        let livemode = object
            .get("livemode")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Event {
            id,
            kind,
            created,
            livemode,
            raw,
        })
    }

    /// `data.object`, the object the event is about.
    pub fn object(&self) -> Option<&Value> {
        self.raw.get("data")?.get("object")
    }
}

/// Refuses a body whose arrays and objects nest deeper than [`MAX_DEPTH`],
/// by counting brackets outside strings: one pass, no allocation, and it
/// needs no valid JSON (the parse that follows judges that). It jumps from
/// one quote or opening bracket to the next (a vector search: Stripe's
/// bodies are indented, mostly spaces and strings), and the closing
/// brackets in between only lower the depth, so they are counted at once.
fn check_depth(body: &[u8]) -> Result<(), EventError> {
    let mut depth = 0usize;
    let mut at = 0;
    loop {
        let rest = body.get(at..).unwrap_or_default();
        let next = memchr::memchr3(b'"', b'[', b'{', rest);
        depth = depth.saturating_sub(closing_brackets(&rest[..next.unwrap_or(rest.len())]));
        let Some(i) = next else {
            return Ok(());
        };
        at += i + 1;
        if rest[i] != b'"' {
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(EventError::TooDeep);
            }
            continue;
        }
        // Over the string at once, to its closing quote: an escape takes
        // the byte after its backslash with it.
        loop {
            let Some(rest) = body.get(at..) else {
                return Ok(());
            };
            match memchr::memchr2(b'"', b'\\', rest) {
                Some(i) if rest[i] == b'\\' => at += i + 2,
                Some(i) => {
                    at += i + 1;
                    break;
                }
                None => return Ok(()),
            }
        }
    }
}

/// The `]` and `}` in `bytes`: the two bytes that `| 0x20` makes `}`.
fn closing_brackets(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b | 0x20 == b'}').count()
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
