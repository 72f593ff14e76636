//! Replaying dead letters: the one function behind the `replay` command
//! and the admin API's `POST /api/replay`, on any `Store`.

use std::io::Write;

use anyhow::{Context, bail};

use super::{Filter, Store};

/// Re-queues dead letters (`all`, or those matching `filter`), or with
/// `reroute` routes `filter.event` again through the current routes. The
/// `replay` command and the admin API's `POST /api/replay` both call it
/// (hence `Send`).
pub async fn replay(
    store: &dyn Store,
    filter: Filter,
    all: bool,
    reroute: bool,
    out: &mut (dyn Write + Send),
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
