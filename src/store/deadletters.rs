//! Dead letters for operators: list them, re-queue them, or route a
//! journaled event again. Used by the `deadletters` and `replay` commands;
//! both work against the journal while the server runs.

use std::io::Write;

use anyhow::{Context, bail};

use crate::store::{DeadLetter, Filter, Store, now_ms};

/// Writes the dead letters matching `filter` to `out`, as a table or as
/// JSON lines.
pub async fn list(
    store: &dyn Store,
    filter: Filter,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let letters = store
        .dead_letters(filter)
        .await
        .context("reading dead letters")?;
    if json {
        for letter in &letters {
            writeln!(out, "{}", serde_json::to_string(letter)?)?;
        }
        return Ok(letters.len());
    }
    if letters.is_empty() {
        writeln!(out, "no dead letters")?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:<44} {:<14} {:>8} {:>9}  LAST ERROR",
        "ID", "SINK", "ATTEMPTS", "AGE"
    )?;
    for letter in &letters {
        writeln!(
            out,
            "{:<44} {:<14} {:>8} {:>9}  {}",
            letter.record_id.as_deref().unwrap_or(&letter.event_id),
            letter.sink.as_deref().unwrap_or("(routing)"),
            letter.attempts,
            age(letter),
            letter
                .last_error
                .as_deref()
                .unwrap_or("")
                .replace('\n', " "),
        )?;
    }
    writeln!(
        out,
        "\n{} dead letter(s); `stripe-router replay --help` re-queues them",
        letters.len()
    )?;
    Ok(letters.len())
}

/// Re-queues dead letters (`all`, or those matching `filter`), or with
/// `reroute` routes `filter.event` again through the current routes.
pub async fn replay(
    store: &dyn Store,
    filter: Filter,
    all: bool,
    reroute: bool,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    if reroute {
        let Some(event) = filter.event.as_deref() else {
            bail!("--reroute needs --event evt_...")
        };
        if !store.reroute(event).await.context("queueing the event")? {
            bail!(
                "event {event} is not in the journal (never received, or pruned after store.retention)"
            );
        }
        writeln!(
            out,
            "event {event} queued to be routed through the current routes"
        )?;
        return Ok(1);
    }
    if !all && filter.sink.is_none() && filter.route.is_none() && filter.event.is_none() {
        bail!("say which dead letters to replay: --all, --sink S, --route R or --event evt_...");
    }
    let queued = store
        .replay(filter)
        .await
        .context("re-queueing dead letters")?;
    writeln!(out, "{queued} dead letter(s) queued for delivery")?;
    Ok(queued)
}

fn age(letter: &DeadLetter) -> String {
    let seconds = (now_ms() - letter.created_at_ms).max(0) / 1000;
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
