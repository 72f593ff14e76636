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
use stripe_router::commands::{check, serve};
use stripe_router::config::AdminListen;
use stripe_router::config::env::Env;
use stripe_router::logs;
use stripe_router::offline::demo;
use stripe_router::offline::send::{self, PaymentStatus};
use stripe_router::offline::standin;
use stripe_router::store::Filter;

#[derive(Debug, Parser)]
#[command(
    name = "stripe-router",
    version,
    about = "Verified Stripe webhooks, routed into complete order records",
    after_help = "Quick start: `stripe-router demo` shows the whole flow, no Stripe account needed."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive Stripe webhooks and deliver records until SIGINT/SIGTERM.
    ///
    /// Example: STRIPE_WEBHOOK_SECRET=whsec_... stripe-router serve --config routes.yaml
    Serve {
        /// The routes file; edits to it apply live.
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
        /// Listen address; overrides `server.listen` (default 127.0.0.1:3000).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The admin listener's address on loopback, or `off`; overrides
        /// `server.admin_listen` (default 127.0.0.1:9464).
        #[arg(long)]
        admin_listen: Option<AdminListen>,
        /// Once listening, write the bound addresses to this file as JSON
        /// (`{"webhook": "http://…/api/webhook", "listen": "…", "admin": "…"}`);
        /// useful with port 0. Removed again at a clean exit.
        #[arg(long, value_name = "FILE")]
        addresses_file: Option<PathBuf>,
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
        /// unset `${VAR}`s and missing Stripe variables are not errors (the
        /// output says what was not checked); Stripe variables that are set
        /// but would be refused are warnings.
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
    /// a session id ending in `_<N>items` (as `send` makes them) has N items.
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
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "stripe-router",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    // The demo's report is the point; its logs only when something is wrong.
    let level = match cli.command {
        Command::Demo | Command::Send { .. } => "warn",
        _ => "info",
    };
    logs::init(level);
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
        } => runtime(serve::run(
            Settings {
                config_path: config,
                listen,
                admin_listen,
                env,
            },
            addresses_file,
        )),
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
            runtime(async move {
                let mut out = std::io::stdout();
                match send::run(source, to, &config, &env, &mut out).await {
                    Ok(answer) if answer.status.is_success() => ExitCode::SUCCESS,
                    Ok(_) => ExitCode::FAILURE,
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
