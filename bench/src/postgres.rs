//! The router on PostgreSQL (`run --store postgres`): a fresh database per
//! scenario on the server `--database-url` names, dropped afterwards, and
//! the server's own CPU time over the run, read from `/proc`: the
//! postmaster and every process it started (backends, WAL writer,
//! checkpointer, autovacuum), including those that exited during the run
//! (their time is in the postmaster's `cutime`/`cstime`). The server must
//! run on this machine for its CPU to be counted; other clients of the same
//! server count too, so measure on a server of its own.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// A database made for one scenario; dropped with this.
pub struct Database {
    server: String,
    name: String,
    /// The URL the routers get (`store: { url }`).
    pub url: String,
}

impl Database {
    /// Creates an empty database on the server `server` names.
    pub async fn create(server: &str) -> anyhow::Result<Database> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!("stripe_router_bench_{}_{nanos}", std::process::id());
        execute(server, &format!("CREATE DATABASE {name}")).await?;
        let mut url = url::Url::parse(server).context("--database-url is not a URL")?;
        url.set_path(&format!("/{name}"));
        Ok(Database {
            server: server.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    /// Drops the database, closing what is still connected to it.
    pub async fn drop_now(self) -> anyhow::Result<()> {
        execute(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await
    }
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("cannot connect to the PostgreSQL server of --database-url")?;
    tokio::spawn(connection);
    Ok(client)
}

async fn execute(server: &str, sql: &str) -> anyhow::Result<()> {
    connect(server)
        .await?
        .batch_execute(sql)
        .await
        .with_context(|| format!("{sql} on the PostgreSQL server"))
}

/// The server's postmaster on this machine: the parent of a backend.
pub async fn postmaster(server: &str) -> anyhow::Result<u32> {
    let client = connect(server).await?;
    let backend: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    let status = std::fs::read_to_string(format!("/proc/{backend}/status"))
        .context("the PostgreSQL server does not run on this machine")?;
    let parent: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse().ok())
        .context("no parent in /proc status")?;
    let name = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default();
    if !name.trim().starts_with("postgres") {
        bail!(
            "the backend's parent is {name:?}, not the postmaster: is the server on this machine?"
        );
    }
    Ok(parent)
}

/// CPU seconds the server has used so far: the postmaster, its children
/// now, and its children that have exited.
pub fn server_cpu_secs(postmaster: u32) -> f64 {
    let ticks_of = |pid: &str| -> Option<(u32, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // `fields[0]` is field 3: field 4 is the parent, 14 to 17 are
        // utime, stime, cutime and cstime.
        let parent = fields.get(1).and_then(|f| f.parse().ok())?;
        let ticks = fields
            .get(11..15)?
            .iter()
            .filter_map(|f| f.parse::<i64>().ok())
            .sum::<i64>();
        Some((parent, u64::try_from(ticks).unwrap_or(0)))
    };
    let mut ticks = ticks_of(&postmaster.to_string()).map_or(0, |(_, t)| t);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            if let Some((parent, t)) = ticks_of(pid)
                && parent == postmaster
            {
                ticks += t;
            }
        }
    }
    ticks as f64 / crate::procs::clock_ticks() as f64
}
