//! The `stripe-router` command: parses arguments and calls the library
//! (`commands`, `offline`, `logs`); all it owns is the runtime each command
//! runs on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use url::Url;

use stripe_router::app::Settings;
use stripe_router::commands::deadletters;
use stripe_router::commands::{check, completions, serve};
use stripe_router::config::AdminListen;
use stripe_router::config::env::Env;
use stripe_router::logs::{self, LogFormat};
use stripe_router::offline::demo;
use stripe_router::offline::send::{self, PaymentStatus};
use stripe_router::offline::standin;
use stripe_router::store::Filter;

/// One malloc arena per core (`stripe_router::arenas`), set before any
/// thread exists. glibc only; elsewhere the allocator is left as it is.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn cap_malloc_arenas() {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    // Lossy: a value that is not UTF-8 still names its tunables in ASCII.
    let tunables = std::env::var_os("GLIBC_TUNABLES").map(|v| v.to_string_lossy().into_owned());
    let set = std::env::var_os("MALLOC_ARENA_MAX").is_some();
    if let Some(cap) = stripe_router::arenas::cap(set, tunables.as_deref(), cores) {
        // SAFETY: `mallopt` sets one parameter of glibc's allocator under
        // the allocator's own lock and touches no memory of ours; with
        // `M_ARENA_MAX` it only limits arenas created later. Its result
        // (0 when refused) leaves the default in place, which is harmless.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cap);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn cap_malloc_arenas() {}

#[derive(Debug, Parser)]
#[command(
    name = "stripe-router",
    version,
    about = "Verified Stripe webhooks, routed into complete order records",
    after_help = "Quick start: `stripe-router demo` shows the whole flow, no Stripe account needed; \
                  `stripe-router serve --offline` runs the router with a local Stripe stand-in."
)]
struct Cli {
    /// How log lines on stderr are written: `text`, or `json` (one object
    /// per line, with the event id, type, route and sink of each line).
    #[arg(
        long,
        global = true,
        env = "STRIPE_ROUTER_LOG_FORMAT",
        default_value = "text",
        value_name = "FORMAT",
        value_parser = LogFormat::parser()
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Bring the journal's schema to this binary's version, and print the
    /// version before and after.
    ///
    /// `serve` does it at start too (several replicas starting at once
    /// are safe); a journal newer than this binary is refused.
    ///
    /// Example: DATABASE_URL=postgres://... stripe-router store migrate --config routes.yaml
    Migrate {
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive Stripe webhooks and deliver records until SIGINT/SIGTERM.
    ///
    /// One `serve` per journal: a second one on the same `store.path` is
    /// refused, naming the first one's pid and address.
    ///
    /// Examples:
    ///   STRIPE_WEBHOOK_SECRET=whsec_... stripe-router serve --config routes.yaml
    ///   stripe-router serve --offline      (no Stripe account: see --offline)
    #[command(verbatim_doc_comment)]
    Serve {
        /// The routes file; edits to it apply live.
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
        /// Listen address, HOST:PORT (or a bare PORT for 127.0.0.1:PORT);
        /// overrides `server.listen` (default 127.0.0.1:3000).
        #[arg(long, value_name = "ADDR", value_parser = listen_address)]
        listen: Option<ListenArg>,
        /// The admin listener's address, or `off`; overrides
        /// `server.admin_listen` (default 127.0.0.1:9464). Off loopback it
        /// needs STRIPE_ROUTER_ADMIN_TOKEN.
        #[arg(long)]
        admin_listen: Option<AdminListen>,
        /// Once listening, write the bound addresses to this file as JSON
        /// (`{"webhook": "http://…/api/webhook", "listen": "…", "admin": "…"}`);
        /// useful with port 0. Removed again at a clean exit.
        #[arg(long, value_name = "FILE")]
        addresses_file: Option<PathBuf>,
        /// Work offline in one command: run the Stripe API stand-in in this
        /// process and use it (any session gets line items), make a local
        /// webhook secret once into .env.local unless STRIPE_WEBHOOK_SECRET
        /// is set, and print the `send` line to paste in another terminal.
        #[arg(long)]
        offline: bool,
    },
    /// List dead letters: deliveries, routes and events that gave up.
    ///
    /// Example: stripe-router deadletters --sink shipping
    Deadletters {
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-queue dead letters, or route a journaled event again.
    ///
    /// Works while the server runs: it picks re-queued rows up within a second.
    ///
    /// Examples:
    ///   stripe-router replay --sink shipping
    ///   stripe-router replay --all
    ///   stripe-router replay --event evt_1Nq... --reroute
    #[command(verbatim_doc_comment)]
    Replay {
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
        /// Every dead letter.
        #[arg(long, conflicts_with_all = ["sink", "route", "event"])]
        all: bool,
        /// Route the event (`--event`) again through the current routes,
        /// building records for routes that did not exist when it arrived.
        #[arg(long, requires = "event", conflicts_with_all = ["sink", "route"])]
        reroute: bool,
    },
    /// Work on the journal itself (`store:`).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Validate a routes file without serving: every problem, with its place.
    ///
    /// Every stage in one run: the YAML, each key and value, names and sink
    /// references, the routes' conditions, `emit: order` on types that are
    /// not Checkout Session events. Refuses what `serve` would refuse with
    /// the same environment, including the Stripe variables, and exits 1.
    /// Also prints warnings, errors or not, without failing (unless
    /// --deny-warnings): an event type Stripe does not send, a path no
    /// Stripe event has. `serve` logs the same warnings at start and reload.
    ///
    /// Examples:
    ///   stripe-router check --config routes.yaml
    ///   stripe-router check --no-env --deny-warnings   # in CI, without secrets
    #[command(verbatim_doc_comment)]
    Check {
        /// The routes file to check.
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
        /// Validate the file alone, as a CI job without secrets would:
        /// unset `${VAR}`s, missing Stripe variables and a missing admin
        /// token are not errors (the output says what was not checked);
        /// variables that are set but would be refused are warnings.
        #[arg(long)]
        no_env: bool,
        /// Exit 1 on warnings too, e.g. in CI.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Send a signed test event to a running router: an offline `stripe trigger`.
    ///
    /// Builds a realistic event with fresh ids (or reads one with --file),
    /// signs it with the first secret of STRIPE_WEBHOOK_SECRET as Stripe
    /// does, POSTs it to the config's listen address and path (or --to), and
    /// prints the answer. Exits non-zero unless the answer is 2xx.
    ///
    /// Built sessions name their item count in their id; a router whose
    /// STRIPE_API_BASE points at `stripe-router stripe-standin` fetches that
    /// many line items.
    ///
    /// Examples:
    ///   stripe-router send checkout.session.completed --items 3
    ///   stripe-router send checkout.session.completed --payment-status unpaid
    ///   stripe-router send checkout.session.async_payment_failed --to http://127.0.0.1:3000/api/webhook
    ///   stripe-router send --file event.json
    ///   stripe-router send checkout.session.completed --set data.object.currency=eur --set data.object.amount_total=5000
    ///   stripe-router send checkout.session.completed --print
    #[command(verbatim_doc_comment)]
    Send {
        /// The event type to build: checkout.session.completed,
        /// checkout.session.async_payment_succeeded,
        /// checkout.session.async_payment_failed, checkout.session.expired,
        /// payment_intent.succeeded.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        r#type: Option<String>,
        /// Where to POST; default: http://{server.listen}{server.path} from the config.
        #[arg(long)]
        to: Option<Url>,
        /// The session's payment_status; default: what the type implies.
        #[arg(long, value_enum)]
        payment_status: Option<PaymentStatus>,
        /// How many line items the session has (and its total is made of).
        #[arg(long, default_value_t = 2)]
        items: usize,
        /// Send this event (JSON) instead, with a fresh id.
        #[arg(long)]
        file: Option<PathBuf>,
        /// With --file: send the file's bytes unchanged, id included.
        #[arg(long, requires = "file")]
        keep_id: bool,
        /// Change one field of the event before signing: a dotted path
        /// (`data.object.currency`, list items by number) and a value, read
        /// as JSON when it is JSON (5000, true, null, "42") else as text.
        /// Repeatable.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<send::Set>,
        /// Print the signed request (request line, headers, body) instead
        /// of sending it.
        #[arg(long)]
        print: bool,
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
    },
    /// See it work with no Stripe account: a real router, a local Stripe API
    /// stand-in and a local shipping service, a story of orders, a report.
    ///
    /// Sends a card order, an async order that later succeeds, one that
    /// fails and a forged request, then shows what each sink received and
    /// what was refused. Everything lives in a temporary folder.
    ///
    /// Example: stripe-router demo
    Demo,
    /// Run the local Stripe API stand-in alone, for offline work with `send`.
    ///
    /// Serves GET /v1/checkout/sessions/{id}/line_items with Stripe's shapes;
    /// a session id ending in `_<N>items` (as `send` makes them) has N items,
    /// any other id a cart of one to four made from the id. Takes the key as
    /// Bearer or Basic auth (`curl -u KEY:`). `serve --offline` runs it in
    /// the router; alone it is for a router started elsewhere.
    ///
    /// Example (three terminals):
    ///   stripe-router stripe-standin --api-key rk_test_offline
    ///   STRIPE_API_BASE=http://127.0.0.1:12111 STRIPE_SECRET_API_KEY=rk_test_offline stripe-router serve
    ///   stripe-router send checkout.session.completed --items 3
    #[command(verbatim_doc_comment)]
    StripeStandin {
        #[arg(long, default_value = "127.0.0.1:12111")]
        listen: SocketAddr,
        /// The key requests must carry; default: STRIPE_SECRET_API_KEY.
        #[arg(long)]
        api_key: Option<String>,
    },
    /// Print a shell completion script.
    ///
    /// Examples:
    ///   stripe-router completions bash > ~/.local/share/bash-completion/completions/stripe-router
    ///   stripe-router completions zsh > "${fpath[1]}/_stripe-router"
    ///   stripe-router completions fish > ~/.config/fish/completions/stripe-router.fish
    #[command(verbatim_doc_comment)]
    Completions { shell: clap_complete::Shell },
}

/// `serve --listen`: the address, and whether it was a bare port.
#[derive(Debug, Clone, Copy)]
struct ListenArg {
    addr: SocketAddr,
    bare_port: bool,
}

/// HOST:PORT, or a bare PORT for 127.0.0.1:PORT (what `--listen 3001`
/// means to most people); anything else is explained with examples.
fn listen_address(text: &str) -> Result<ListenArg, String> {
    if let Ok(port) = text.trim().parse::<u16>() {
        return Ok(ListenArg {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            bare_port: true,
        });
    }
    text.trim()
        .parse()
        .map(|addr| ListenArg {
            addr,
            bare_port: false,
        })
        .map_err(|_| {
            "expected HOST:PORT, e.g. 127.0.0.1:3000 (this machine only), 0.0.0.0:3000 (every \
             interface) or [::1]:3000, or a bare port such as 3000 for 127.0.0.1:3000"
                .to_owned()
        })
}

#[derive(Debug, clap::Args)]
struct FilterArgs {
    /// Only this sink.
    #[arg(long)]
    sink: Option<String>,
    /// Only this route.
    #[arg(long)]
    route: Option<String>,
    /// Only this Stripe event id.
    #[arg(long)]
    event: Option<String>,
}

impl From<FilterArgs> for Filter {
    fn from(args: FilterArgs) -> Filter {
        Filter {
            sink: args.sink,
            route: args.route,
            event: args.event,
        }
    }
}

fn main() -> ExitCode {
    cap_malloc_arenas();
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        return match completions::write(
            shell,
            &mut Cli::command(),
            "stripe-router",
            &mut std::io::stdout(),
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write the completion script: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // The demo's report is the point; its logs only when something is wrong.
    let level = match cli.command {
        Command::Demo | Command::Send { .. } => "warn",
        _ => "info",
    };
    logs::init(level, cli.log_format);
    let env = match Env::load(std::path::Path::new(".")) {
        Ok(env) => env,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve {
            config,
            listen,
            admin_listen,
            addresses_file,
            offline,
        } => {
            if let Some(ListenArg {
                addr,
                bare_port: true,
            }) = listen
            {
                tracing::info!(
                    "--listen {} taken as {addr} (this machine only; 0.0.0.0:{} listens on every interface)",
                    addr.port(),
                    addr.port()
                );
            }
            runtime(serve::run(
                Settings {
                    config_path: config,
                    listen: listen.map(|l| l.addr),
                    admin_listen,
                    env,
                },
                addresses_file,
                offline,
            ))
        }
        Command::Check {
            config,
            no_env,
            deny_warnings,
        } => {
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            let options = check::Options {
                no_env,
                deny_warnings,
            };
            if check::check(&config, &env, options, &mut out, &mut err) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Send {
            r#type,
            to,
            payment_status,
            items,
            file,
            keep_id,
            sets,
            print,
            config,
        } => {
            let source = match (file, r#type) {
                (Some(path), _) => send::Source::File { path, keep_id },
                (None, Some(kind)) => send::Source::Build {
                    kind,
                    payment_status,
                    items,
                },
                // clap requires one of them.
                (None, None) => return ExitCode::FAILURE,
            };
            let options = send::Options { sets, print };
            runtime(async move {
                let mut out = std::io::stdout();
                match send::run(source, to, &options, &config, &env, &mut out).await {
                    Ok(None) => ExitCode::SUCCESS,
                    Ok(Some(answer)) if answer.status.is_success() => ExitCode::SUCCESS,
                    Ok(Some(_)) => ExitCode::FAILURE,
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
        Command::Demo => runtime(async {
            let mut out = std::io::stdout();
            match demo::run(&mut out).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: the demo failed: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }),
        Command::StripeStandin { listen, api_key } => runtime(async move {
            let ctrl_c = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            let mut out = std::io::stderr();
            match standin::run(listen, api_key, &env, &mut out, ctrl_c).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
        Command::Completions { .. } => ExitCode::SUCCESS,
        Command::Store(StoreCommand::Migrate { config }) => runtime(async move {
            stripe_router::commands::store::run_migrate(&config, &env, &mut std::io::stdout()).await
        }),
        Command::Deadletters {
            config,
            filter,
            json,
        } => runtime(deadletters::run(
            &config,
            &env,
            deadletters::Command::List {
                filter: filter.into(),
                json,
            },
        )),
        Command::Replay {
            config,
            filter,
            all,
            reroute,
        } => runtime(deadletters::run(
            &config,
            &env,
            deadletters::Command::Replay {
                filter: filter.into(),
                all,
                reroute,
            },
        )),
    }
}

/// How long the runtime waits, once `task` is done, for blocking work still
/// running. `serve` has already spent `server.shutdown_timeout` draining;
/// what is left may never end (a stdout write to a reader that stopped
/// reading), and its rows stay pending in the journal.
const ABANDON_AFTER: Duration = Duration::from_millis(250);

/// Runs `task` on a fresh multi-threaded runtime, then leaves whatever
/// blocking work is still running behind, so the process always exits.
fn runtime(task: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => {
            let code = rt.block_on(task);
            rt.shutdown_timeout(ABANDON_AFTER);
            code
        }
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
