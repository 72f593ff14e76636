//! The processes a run starts and measures: the router under test, and the
//! helpers (Stripe stand-in, HTTP consumer) that run as separate processes of
//! this binary so that their CPU time is theirs alone. Figures come from
//! `/proc`: `VmHWM` for peak RSS, `utime + stime` for CPU seconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// CPU time and peak memory of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_secs: f64,
    pub peak_rss_kib: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` (`pid` may be `self`).
pub fn usage(pid: &str) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields start after the last `)`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15; `fields[0]` is field 3.
    let ticks: u64 = fields
        .get(11..13)
        .context("short /proc stat line")?
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Ok(Usage {
        cpu_secs: ticks as f64 / clock_ticks() as f64,
        peak_rss_kib,
    })
}

pub fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// A child process, killed when dropped.
pub struct Process {
    child: Child,
    pub addr: SocketAddr,
    /// The router's admin listener (where `/healthz` has the details).
    pub admin: Option<SocketAddr>,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn usage(&self) -> Usage {
        usage(&self.child.id().to_string()).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts this binary with `args`; the helper prints its address as the first
/// line of stdout and runs until its stdin closes.
pub fn helper(args: &[&str]) -> anyhow::Result<Process> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("helper stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .parse()
        .with_context(|| format!("helper {args:?} printed {line:?}, not its address"))?;
    Ok(Process {
        child,
        addr,
        admin: None,
    })
}

/// A free loopback port (closed again; a small race is acceptable here).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts the router in `dir` (its working directory, so no project `.env`
/// is read) and waits until `/healthz` answers. Returns the process and the
/// time from spawn to the first answer.
pub fn router(
    bin: &Path,
    dir: &Path,
    env: &[(&str, String)],
) -> anyhow::Result<(Process, Duration)> {
    router_with(bin, dir, env, true)
}

/// [`router`], with its admin listener (`/healthz` details, `/metrics`) on
/// or `off`.
pub fn router_with(
    bin: &Path,
    dir: &Path,
    env: &[(&str, String)],
    admin_on: bool,
) -> anyhow::Result<(Process, Duration)> {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    // Its own port, so a router already running on this machine (holding
    // the default 9464) never makes the run fail.
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let admin_listen = if admin_on {
        admin.to_string()
    } else {
        "off".to_owned()
    };
    let log = std::fs::File::create(dir.join("router.log"))?;
    let started = Instant::now();
    let child = Command::new(bin)
        .args(["serve", "--config", "routes.yaml", "--listen"])
        .arg(addr.to_string())
        .arg("--admin-listen")
        .arg(admin_listen)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Per-event info logs would dominate the profile; warnings still show.
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut process = Process {
        child,
        addr,
        admin: admin_on.then_some(admin),
    };
    loop {
        if http_get(addr, "/healthz").is_some_and(|(status, _)| status == 200) {
            return Ok((process, started.elapsed()));
        }
        if let Some(status) = process.child.try_wait()? {
            let log = std::fs::read_to_string(dir.join("router.log")).unwrap_or_default();
            bail!("the router exited ({status}) before listening:\n{log}");
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("the router did not answer /healthz within 10 s");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A minimal blocking `GET`: status and body, or None if nothing answered.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}
