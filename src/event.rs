//! A verified Stripe event: the few fields routing needs, plus the whole
//! object as received.

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub created: i64,
    pub livemode: bool,
    /// The event exactly as received (key order kept).
    pub raw: Value,
}

/// A verified body that is not a Stripe event object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is not a Stripe event object: {0}")]
    NotAnEvent(String),
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
        Event::parse(body).map(|e| Head {
            id: e.id,
            kind: e.kind,
        })
    }

    pub fn parse(body: &[u8]) -> Result<Event, EventError> {
        let raw: Value =
            serde_json::from_slice(body).map_err(|e| EventError::NotJson(e.to_string()))?;
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
mod tests {
    use super::*;

    #[track_caller]
    fn check(body: &str, expect: Result<(&str, &str), &str>) {
        match (Event::parse(body.as_bytes()), expect) {
            (Ok(e), Ok((id, kind))) => assert_eq!((e.id.as_str(), e.kind.as_str()), (id, kind)),
            (Err(e), Err(fragment)) => assert!(e.to_string().contains(fragment), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
        // The request path's shortcut accepts and refuses the same bodies.
        let head = Event::head(body.as_bytes());
        let full = Event::parse(body.as_bytes()).map(|e| Head {
            id: e.id,
            kind: e.kind,
        });
        assert_eq!(head, full, "head and parse disagree on {body}");
    }

    #[test]
    fn parse() {
        check(
            r#"{"id":"evt_1","object":"event","type":"a.b","created":1}"#,
            Ok(("evt_1", "a.b")),
        );
        check("not json", Err("not JSON"));
        check("[1]", Err("an array"));
        check(
            r#"{"id":"cs_1","object":"checkout.session","created":1}"#,
            Err("`checkout.session`"),
        );
        check(r#"{"object":"event","type":"a","created":1}"#, Err("`id`"));
        check(
            r#"{"id":"evt_1","object":"event","created":1}"#,
            Err("`type`"),
        );
        check(
            r#"{"id":"evt_1","object":"event","type":"a"}"#,
            Err("`created`"),
        );
        check(
            r#"{"id":"evt_\u0031","object":"event","type":"a","created":1,"data":{"x":[1,{}]}}"#,
            Ok(("evt_1", "a")),
        );
        check(
            r#"{"id":"evt_1","id":"evt_2","object":"event","type":"a","created":1}"#,
            Ok(("evt_2", "a")),
        );
        check(
            r#"{"id":"","object":"event","type":"a","created":1}"#,
            Err("`id`"),
        );
        check(
            r#"{"id":"e","object":"event","type":"a","created":1.5}"#,
            Err("`created`"),
        );
        check(
            r#"{"id":7,"object":"event","type":"a","created":1}"#,
            Err("`id`"),
        );
    }
}
