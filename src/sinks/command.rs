//! `command`: runs a program per record, the record's JSON (or what a
//! `body` template renders from it) on its stdin.
//!
//! The program runs in the config file's folder, in its own process group,
//! with an environment cleared down to [`INHERITED`] (taken from the
//! router's own), the sink's `env`, and `STRIPE_ROUTER_RECORD_ID`: the
//! router's secrets never reach it unless the config passes them. Exit 0
//! is delivered; 75 (`EX_TEMPFAIL`) is retried with the sink's backoff;
//! any other exit, or a signal, is a dead letter carrying the last line
//! the program wrote on stderr (or stdout, when stderr is empty). A
//! program still running at `timeout` is killed with its whole process
//! group, and the attempt is retried: a hang is as likely the network
//! behind the program as the program itself, and `retry.max_age` still
//! ends it. Output is read as it comes and only the last [`TAIL_BYTES`] of
//! each stream kept.
//!
//! The program is resolved once, when the config loads: a path with a `/`
//! from the config's folder, a bare name on `PATH` (the sink's `env`
//! `PATH` when it sets one); it must exist and be executable.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use super::template::Template;
use super::{BuildError, DeliverFuture, DeliveryError, Encoded, KeyProblem, Sink, SinkType};
use crate::redact::REDACTED;
use crate::units::opt_duration;

/// How long a run may take when `timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The variables of the router's environment a program gets: what a shell
/// and its tools need to behave, nothing that could hold a secret.
pub const INHERITED: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];
/// The record's id, given to every run so a program can deduplicate.
pub const RECORD_ID_VAR: &str = "STRIPE_ROUTER_RECORD_ID";
/// How much of each of stdout and stderr is kept (the end); the rest is
/// read and dropped, so a chatty program never blocks on a full pipe.
pub const TAIL_BYTES: usize = 64 * 1024;
/// Longest stderr line a dead letter quotes.
const LINE_CHARS: usize = 300;
/// Exit status meaning "try again later" (sysexits.h `EX_TEMPFAIL`).
pub const EX_TEMPFAIL: i32 = 75;
/// How long to wait for a killed program to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// `command: [program, args...]`, `timeout`, `env`, `body`. Every value
/// the build refuses is refused while deserializing, or by
/// [`SinkType::check`] when the config loads, by the same functions.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// The program, then its arguments; no shell is involved.
    #[serde(deserialize_with = "parse_command")]
    pub command: Vec<String>,
    /// A run's limit; [`DEFAULT_TIMEOUT`] when unset.
    #[serde(default, deserialize_with = "parse_timeout")]
    pub timeout: Option<Duration>,
    /// Variables the program gets besides [`INHERITED`]; values may be
    /// `${VAR}` and are never shown.
    #[serde(default, deserialize_with = "parse_env")]
    pub env: BTreeMap<String, String>,
    /// A template for stdin; the record's JSON when unset.
    #[serde(default)]
    pub body: Option<String>,
}

impl fmt::Debug for CommandConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Arguments and env values may hold `${VAR}` secrets.
        let env: BTreeMap<&str, &str> = self.env.keys().map(|k| (k.as_str(), REDACTED)).collect();
        f.debug_struct("CommandConfig")
            .field("program", &self.command.first())
            .field("args", &self.command.len().saturating_sub(1))
            .field("timeout", &self.timeout)
            .field("env", &env)
            .field("body", &self.body.as_ref().map(String::len))
            .finish()
    }
}

impl SinkType for CommandConfig {
    fn name(&self) -> &'static str {
        "command"
    }

    /// The program as written; its arguments may hold secrets.
    fn target(&self, _base_dir: &Path) -> String {
        let templated = if self.body.is_some() {
            " (body template)"
        } else {
            ""
        };
        format!("{}{templated}", self.program())
    }

    fn build(
        &self,
        base_dir: &Path,
        _delivery: &super::Delivery,
    ) -> Result<Arc<dyn Sink>, BuildError> {
        Ok(Arc::new(CommandSink::build(self, base_dir)?))
    }

    fn check(&self, base_dir: &Path) -> Vec<KeyProblem> {
        let mut problems = Vec::new();
        if let Err(e) = resolve_program(self.program(), base_dir, self.search_path().as_ref()) {
            problems.push(KeyProblem::of("command", e));
        }
        if let Some(source) = &self.body
            && let Err(e) = Template::compile(source)
        {
            problems.push(KeyProblem::in_text("body", e.message, e.line, e.column));
        }
        problems
    }
}

impl CommandConfig {
    fn program(&self) -> &str {
        self.command.first().map_or("", String::as_str)
    }

    /// The `PATH` a bare program name is looked up on: the one the program
    /// will run with.
    fn search_path(&self) -> Option<OsString> {
        match self.env.get("PATH") {
            Some(path) => Some(path.into()),
            None => std::env::var_os("PATH"),
        }
    }
}

fn parse_command<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let command = Vec::<String>::deserialize(d)?;
    check_command(&command).map_err(serde::de::Error::custom)?;
    Ok(command)
}

fn check_command(command: &[String]) -> Result<(), String> {
    match command.first() {
        None => Err(
            "command must name a program, e.g. `command: [./scripts/ship.sh, --dry-run]`".into(),
        ),
        Some(program) if program.trim().is_empty() => Err("command's program is empty".into()),
        Some(_) if command.iter().any(|a| a.contains('\0')) => {
            Err("command's program and arguments cannot hold a NUL character".into())
        }
        Some(_) => Ok(()),
    }
}

fn parse_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let timeout = opt_duration::deserialize(d)?;
    if timeout.is_some_and(|t| t.is_zero()) {
        return Err(serde::de::Error::custom("timeout must be more than zero"));
    }
    Ok(timeout)
}

fn parse_env<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let env = BTreeMap::<String, String>::deserialize(d)?;
    check_env(&env).map_err(serde::de::Error::custom)?;
    Ok(env)
}

fn check_env(env: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in env {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(format!(
                "env name `{name}` is not a variable name (no `=`, not empty)"
            ));
        }
        if value.contains('\0') {
            return Err(format!("the value of env `{name}` holds a NUL character"));
        }
    }
    Ok(())
}

/// The program to run: `program` with a `/` from `base_dir` (an absolute
/// path as is), a bare name from the first `search_path` folder holding it.
/// It must be an executable file.
pub fn resolve_program(
    program: &str,
    base_dir: &Path,
    search_path: Option<&OsString>,
) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = base_dir.join(program);
        return match executable(&path) {
            Ok(()) => Ok(path),
            Err(Missing) => Err(format!(
                "program `{program}` does not exist (a relative path is read from the config's folder, `{}`)",
                base_dir.display()
            )),
            Err(why) => Err(why.say(program)),
        };
    }
    let mut found = None;
    for dir in search_path.map(std::env::split_paths).into_iter().flatten() {
        let path = base_dir.join(dir).join(program);
        match executable(&path) {
            Ok(()) => return Ok(path),
            Err(Missing) => {}
            Err(why) => found = found.or(Some(why)),
        }
    }
    Err(match found {
        Some(why) => why.say(program),
        None => format!(
            "program `{program}` is not on PATH: install it, or write its path (`./{program}` is read from the config's folder)"
        ),
    })
}

/// Why a path cannot be run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotRunnable {
    Missing,
    Folder,
    NotExecutable,
}
use NotRunnable::{Folder, Missing, NotExecutable};

impl NotRunnable {
    fn say(self, program: &str) -> String {
        match self {
            Missing => format!("program `{program}` does not exist"),
            Folder => format!("program `{program}` is a folder, not a program"),
            NotExecutable => format!(
                "program `{program}` is not executable: `chmod +x` it, or name its interpreter first, e.g. `command: [sh, {program}]`"
            ),
        }
    }
}

fn executable(path: &Path) -> Result<(), NotRunnable> {
    let meta = std::fs::metadata(path).map_err(|_| Missing)?;
    if meta.is_dir() {
        Err(Folder)
    } else if meta.permissions().mode() & 0o111 == 0 {
        Err(NotExecutable)
    } else {
        Ok(())
    }
}

pub struct CommandSink {
    program: PathBuf,
    args: Vec<String>,
    /// What the program is shown as in messages: as written.
    shown: String,
    dir: PathBuf,
    env: Vec<(String, OsString)>,
    timeout: Duration,
    template: Option<Template>,
    /// `env` values, redacted from what a dead letter quotes; longest first.
    secrets: Vec<String>,
}

impl fmt::Debug for CommandSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandSink")
            .field("program", &self.shown)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl CommandSink {
    pub fn build(config: &CommandConfig, base_dir: &Path) -> Result<CommandSink, BuildError> {
        let shown = config.program().to_owned();
        let fail = |why: String| BuildError(format!("command sink `{shown}`: {why}"));
        check_command(&config.command).map_err(fail)?;
        check_env(&config.env).map_err(fail)?;
        let program =
            resolve_program(&shown, base_dir, config.search_path().as_ref()).map_err(fail)?;
        let template = match &config.body {
            None => None,
            Some(source) => {
                Some(Template::compile(source).map_err(|e| fail(format!("body: {e}")))?)
            }
        };
        let mut env: Vec<(String, OsString)> = INHERITED
            .iter()
            .filter_map(|name| Some(((*name).to_owned(), std::env::var_os(name)?)))
            .filter(|(name, _)| !config.env.contains_key(name))
            .collect();
        env.extend(config.env.iter().map(|(k, v)| (k.clone(), v.into())));
        let mut secrets: Vec<String> = config
            .env
            .values()
            .filter(|v| v.chars().count() >= 4)
            .cloned()
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(CommandSink {
            program,
            args: config.command[1..].to_vec(),
            shown,
            dir: base_dir.to_path_buf(),
            env,
            timeout: config.timeout.unwrap_or(DEFAULT_TIMEOUT),
            template,
            secrets,
        })
    }

    fn fail(&self, retryable: bool, why: impl fmt::Display) -> DeliveryError {
        DeliveryError {
            retryable,
            message: format!("command sink `{}`: {why}", self.shown),
        }
    }

    async fn run(&self, record: &Encoded) -> Result<(), DeliveryError> {
        let input = match &self.template {
            None => record.body.to_vec(),
            Some(template) => template
                .render(&record.body)
                .map_err(|e| self.fail(false, e))?
                .into_bytes(),
        };
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(RECORD_ID_VAR, &record.id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that a timeout kills what it started too.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            // Installed again, permissions fixed: worth another try.
            .map_err(|e| self.fail(true, format!("cannot start: {e}")))?;
        let group = child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?));
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let run = async {
            let write = async move {
                if let Some(mut stdin) = stdin {
                    // A program that does not read its input may exit
                    // first: its exit status says how it went.
                    let _ = stdin.write_all(&input).await;
                }
            };
            let (_, out, err, status) =
                tokio::join!(write, tail(stdout), tail(stderr), child.wait());
            (out, err, status)
        };
        let outcome = tokio::time::timeout(self.timeout, run).await;
        let (out, err, status) = match outcome {
            Ok(done) => done,
            Err(_) => {
                if let Some(group) = group {
                    let _ =
                        rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                }
                let _ = child.start_kill();
                let _ = tokio::time::timeout(REAP_WAIT, child.wait()).await;
                return Err(self.fail(
                    true,
                    format!(
                        "still running after {} (timeout); killed with its process group",
                        humantime::format_duration(self.timeout)
                    ),
                ));
            }
        };
        let status = status.map_err(|e| self.fail(true, format!("cannot wait for it: {e}")))?;
        self.settle(status, &out, &err)
    }

    fn settle(&self, status: ExitStatus, out: &[u8], err: &[u8]) -> Result<(), DeliveryError> {
        let said = last_line(err).or_else(|| last_line(out)).map(|line| {
            let mut line = line;
            for secret in &self.secrets {
                line = line.replace(secret.as_str(), REDACTED);
            }
            format!(": {line}")
        });
        let said = said.unwrap_or_default();
        match (status.code(), status.signal()) {
            (Some(0), _) => Ok(()),
            (Some(EX_TEMPFAIL), _) => Err(self.fail(
                true,
                format!("exited {EX_TEMPFAIL} (temporary failure, will retry){said}"),
            )),
            (Some(code), _) => Err(self.fail(false, format!("exited {code}{said}"))),
            (None, Some(signal)) => {
                Err(self.fail(false, format!("killed by signal {signal}{said}")))
            }
            (None, None) => Err(self.fail(false, format!("ended without a status{said}"))),
        }
    }
}

impl Sink for CommandSink {
    fn deliver<'a>(&'a self, record: &'a Encoded) -> DeliverFuture<'a> {
        Box::pin(self.run(record))
    }
}

/// Reads `stream` to its end, keeping the last [`TAIL_BYTES`].
async fn tail(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut chunk = vec![0; 16 * 1024];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > 2 * TAIL_BYTES {
                    kept.drain(..kept.len() - TAIL_BYTES);
                }
            }
        }
    }
    if kept.len() > TAIL_BYTES {
        kept.drain(..kept.len() - TAIL_BYTES);
    }
    kept
}

/// The last non-blank line of `output`, trimmed and cut to [`LINE_CHARS`].
fn last_line(output: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(output);
    let text = super::printable(&text);
    let line = text.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    Some(if line.chars().count() > LINE_CHARS {
        let cut: String = line.chars().take(LINE_CHARS).collect();
        format!("{cut}...")
    } else {
        line.to_owned()
    })
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
