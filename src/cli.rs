//! Commands and flags.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value, json};

use crate::{client, config, store, up};

/// A global WebSocket gateway mesh with path routing.
#[derive(Parser, Debug)]
#[command(name = "postmesh", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run every role in one process on the embedded postoffice and store.
    Up(ServerArgs),
    /// Run the gateway role alone, asking cores over a shared postoffice (--amqp).
    Gateway(ServerArgs),
    /// Run the core role alone, serving gateways over a shared postoffice (--amqp).
    Core(ServerArgs),
    /// Publish one message.
    Publish(PublishArgs),
    /// Print live messages matching a pattern as JSON lines.
    /// (Reconnects and resumes after a dropped connection or a server
    /// restart; prints each message once.)
    Tail(TailArgs),
    /// Print stored messages matching a pattern, newest first, as JSON lines.
    History(HistoryArgs),
    /// Issue a token.
    Token(TokenArgs),
    /// The Rabbit Router: join regional brokers through a hub as a
    /// federation star (apply, run, status, plan).
    Router(crate::router::RouterArgs),
    /// Manage the CQL store's schema.
    #[command(subcommand)]
    Schema(SchemaCommand),
}

#[derive(Subcommand, Debug)]
pub enum SchemaCommand {
    /// Create the keyspace if needed and apply the schema versions it does
    /// not have yet (deploy/cql/*.cql). Safe to run again.
    Apply(SchemaApplyArgs),
}

#[derive(Args, Debug)]
pub struct SchemaApplyArgs {
    /// CQL contact points, host:port[,host:port...]
    #[arg(long, env = "POSTMESH_CQL", value_delimiter = ',', required = true)]
    pub cql: Vec<String>,
    /// Keyspace.
    #[arg(long, default_value = "postmesh")]
    pub keyspace: String,
    /// Replication of a new keyspace, as a CQL map; for regions e.g.
    /// "{'class': 'NetworkTopologyStrategy', 'eu': 3, 'us': 3}"
    #[arg(
        long,
        default_value = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )]
    pub replication: String,
}

/// Flags shared by the server roles. Each also reads `POSTMESH_*` variables
/// and an optional TOML file; flags win.
#[derive(Args, Debug, Default)]
pub struct ServerArgs {
    /// Address for WebSocket and HTTP [default: 127.0.0.1:7400]
    #[arg(long, env = "POSTMESH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory [default: ./postmesh-data]
    #[arg(long, env = "POSTMESH_DATA")]
    pub data: Option<PathBuf>,
    /// Token secret (HS256). Without one, access is anonymous and loopback-only.
    #[arg(long, env = "POSTMESH_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Allow a non-loopback address without a secret.
    #[arg(long)]
    pub insecure: bool,
    /// TOML configuration file.
    #[arg(long, env = "POSTMESH_CONFIG")]
    pub config: Option<PathBuf>,
    /// RabbitMQ postoffice URI, e.g. amqp://guest:guest@127.0.0.1:5672/%2f
    /// [default: the embedded in-process postoffice]
    #[arg(long, env = "POSTMESH_AMQP", hide_env_values = true)]
    pub amqp: Option<String>,
    /// Store: `embedded` (in the data directory) or
    /// `cql://host:port,host2/keyspace` (Cassandra) [default: embedded]
    #[arg(long, env = "POSTMESH_STORE")]
    pub store: Option<String>,
}

impl ServerArgs {
    fn overrides(&self) -> Result<Value, String> {
        let mut gateway = Map::new();
        if let Some(l) = self.listen {
            gateway.insert("listen".into(), json!(l.to_string()));
        }
        if let Some(s) = &self.secret {
            gateway.insert("secret".into(), json!(s));
        }
        if self.insecure {
            gateway.insert("insecure".into(), json!(true));
        }
        let mut root = Map::new();
        if let Some(d) = &self.data {
            root.insert("data".into(), json!(d));
        }
        if let Some(a) = &self.amqp {
            root.insert("amqp".into(), json!(a));
        }
        if !gateway.is_empty() {
            root.insert("gateway".into(), Value::Object(gateway));
        }
        if let Some(s) = &self.store {
            root.insert(
                "core".into(),
                json!({ "store": config::StoreConfig::flag(s)? }),
            );
        }
        Ok(Value::Object(root))
    }

    fn load(&self) -> Result<config::Config, String> {
        config::load(self.config.as_deref(), self.overrides()?)
            .map_err(|e| format!("configuration: {e}"))
    }
}

/// Where the client commands reach a gateway.
#[derive(Args, Debug, Clone)]
pub struct Endpoint {
    /// Gateway URL.
    #[arg(long, env = "POSTMESH_URL", default_value = "http://127.0.0.1:7400")]
    pub url: String,
    /// Token (when the server has a secret).
    #[arg(long, env = "POSTMESH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Path, e.g. feeds.breaking-news.56
    pub path: String,
    /// Body as JSON, e.g. '{"headline":"..."}' or '"text"'
    pub body: Option<String>,
    /// Meta headers as a JSON object.
    #[arg(long)]
    pub meta: Option<String>,
    /// Class of service: gold, silver or bronze.
    #[arg(long)]
    pub class: Option<String>,
    /// Message UUID (v1); resending the same one publishes once.
    #[arg(long)]
    pub uuid: Option<String>,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    /// Pattern, e.g. 'feeds.#'
    pub pattern: String,
    /// First print this many stored messages (oldest first).
    #[arg(long, conflicts_with = "since")]
    pub history: Option<u32>,
    /// First print everything stored after this cursor (the `cursor` of the
    /// last message a previous tail printed).
    #[arg(long)]
    pub since: Option<String>,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Pattern, e.g. 'feeds.breaking-news.#'
    pub pattern: String,
    /// At most this many messages (1 to 1000).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Only messages older than this UUID.
    #[arg(long)]
    pub before: Option<String>,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The server's secret.
    #[arg(long, env = "POSTMESH_SECRET", hide_env_values = true)]
    pub secret: String,
    /// User id.
    #[arg(long)]
    pub sub: Option<String>,
    /// Patterns the bearer may subscribe to.
    #[arg(long, num_args = 1..)]
    pub subs: Vec<String>,
    /// Patterns the bearer may publish to.
    #[arg(long, num_args = 1..)]
    pub pubs: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub ttl: u64,
}

/// Logs go to stderr. A log line that cannot be written is dropped: by
/// default tracing-subscriber reports the failure with `eprintln!`, which
/// panics when stderr is gone, in whatever task logged (a session, or the
/// one waiting for the shutdown signal).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTMESH_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn,scylla=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init();
}

/// Says why the command failed, on stderr if it is still there.
fn fail(message: std::fmt::Arguments<'_>) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "postmesh: {message}");
    ExitCode::FAILURE
}

/// Parses the command line and runs the command. Errors are printed as one
/// line on stderr with a non-zero exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    // Every device is a file descriptor: use all the process may have.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format_args!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => fail(format_args!("{e}")),
    }
}

async fn serve(args: ServerArgs, roles: up::Roles) -> Result<ExitCode, String> {
    let config = args.load()?;
    up::run(config, roles).await.map_err(|e| format!("{e:#}"))?;
    Ok(ExitCode::SUCCESS)
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Up(args) => serve(args, up::Roles::All).await,
        Command::Gateway(args) => serve(args, up::Roles::Gateway).await,
        Command::Core(args) => serve(args, up::Roles::Core).await,
        Command::Publish(args) => client::publish(args).await,
        Command::Tail(args) => client::tail(args).await,
        Command::History(args) => client::history(args).await,
        Command::Token(args) => client::token(args),
        Command::Schema(SchemaCommand::Apply(args)) => {
            let hosts: Vec<String> = args.cql.iter().map(|h| store::with_port(h)).collect();
            let version = store::schema_apply(&hosts, &args.keyspace, &args.replication)
                .await
                .map_err(|e| format!("{e:#}"))?;
            let _ = writeln!(
                std::io::stdout(),
                "keyspace {} is at schema version {version}",
                args.keyspace
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Router(args) => crate::router::run(args).await,
    }
}
