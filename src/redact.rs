//! The one URL redactor: every message, log line, summary or answer that
//! names a URL shows it through [`redact_url`].
//!
//! A leaf: it imports nothing of the crate, so sinks and any other module
//! may use it without depending on the config.

/// What [`redact_url`] shows in place of a URL's credentials.
pub const REDACTED: &str = "<redacted>";

/// Path segments at least this long are shown as [`REDACTED`]: incoming
/// webhooks (Slack, Discord, Teams, Apps Script) carry their secret in the
/// path, while the paths of internal services (`/orders`, `/api/webhook`)
/// are short words.
pub const LONG_SEGMENT: usize = 16;

/// A URL fit to show in logs, errors, `check` output and HTTP answers: its
/// user, password and query may each hold a token, so they are replaced by
/// [`REDACTED`] (which still says that one is set), as is every path
/// segment of [`LONG_SEGMENT`] characters or more; the fragment, never
/// sent, is dropped. The one URL redactor: every message that names a URL
/// shows it through this.
pub fn redact_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    // Only fails for URLs that cannot have userinfo, which then have none.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    let mut text = shown.to_string();
    // With query and fragment gone, the text ends with the path (written
    // here, not through `set_path`, which would escape `<` and `>`).
    if let Some(segments) = url.path_segments()
        && segments.clone().any(|s| s.len() >= LONG_SEGMENT)
        && let Some(origin) = text.strip_suffix(shown.path())
    {
        let path: Vec<&str> = segments
            .map(|s| if s.len() >= LONG_SEGMENT { REDACTED } else { s })
            .collect();
        text = format!("{origin}/{}", path.join("/"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        text = text.replacen("://", &format!("://{REDACTED}@"), 1);
    }
    if url.query().is_some() {
        text.push('?');
        text.push_str(REDACTED);
    }
    text
}

#[cfg(test)]
#[path = "redact_tests.rs"]
mod tests;
