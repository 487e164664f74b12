//! `postmesh router`: the Rabbit Router's commands. The brokers come from
//! the `[router]` section of the configuration file; see
//! `postmesh_router::federation` for what is set up and why.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use postmesh_router::federation::{self, LinkState, Plan, Star, plan};
use tokio_util::sync::CancellationToken;

use crate::config;

#[derive(Args, Debug)]
pub struct RouterArgs {
    #[command(subcommand)]
    pub command: RouterCommand,
    /// TOML configuration file with a [router] section.
    #[arg(long, env = "POSTMESH_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum RouterCommand {
    /// Declare exchanges, upstreams and policies on every broker, changing
    /// only what differs from the plan; prints what changed. Exits non-zero
    /// if a broker could not be brought in line.
    Apply {
        /// Only print what would change.
        #[arg(long)]
        dry_run: bool,
    },
    /// Keep applying the plan at every check interval, watch every link and
    /// serve Prometheus metrics, until Ctrl-C or SIGTERM.
    Run,
    /// Print every link's state. Exits non-zero unless every link runs.
    Status,
    /// Print the plan (brokers, upstreams, links) without contacting any broker.
    Plan,
}

fn load(args: &RouterArgs) -> Result<Star, String> {
    let c = config::load(args.config.as_deref(), serde_json::json!({}))
        .map_err(|e| format!("configuration: {e}"))?;
    c.router
        .validate()
        .map_err(|e| format!("configuration: {e}"))
}

/// Writes `text` to standard output; a reader that went away is not an
/// error worth a panic.
fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}

/// Runs a `postmesh router` command.
pub async fn run(args: RouterArgs) -> Result<ExitCode, String> {
    let star = load(&args)?;
    let plan = plan(&star);
    match args.command {
        RouterCommand::Apply { dry_run } => apply(&star, &plan, dry_run).await,
        RouterCommand::Status => status(&star, &plan).await,
        RouterCommand::Plan => {
            out(&describe(&plan));
            Ok(ExitCode::SUCCESS)
        }
        RouterCommand::Run => supervise(star).await,
    }
}

async fn apply(star: &Star, plan: &Plan, dry_run: bool) -> Result<ExitCode, String> {
    let clients = federation::clients(plan, star.http_timeout);
    let outcomes = federation::apply(plan, &clients, dry_run).await;
    let mut text = String::new();
    let (mut changed, mut failed) = (0, Vec::new());
    for o in &outcomes {
        match &o.result {
            Ok(d) if d.changes.is_empty() => text.push_str(&format!("{}: up to date\n", o.broker)),
            Ok(d) => {
                for c in &d.changes {
                    let c = c.to_string();
                    let c = if dry_run {
                        format!("would have {c}")
                    } else {
                        c
                    };
                    text.push_str(&format!("{}: {c}\n", o.broker));
                }
                changed += d.changes.len();
            }
            Err(e) => {
                text.push_str(&format!("{}: error: {e}\n", o.broker));
                failed.push(o.broker.clone());
            }
        }
        if let Ok(d) = &o.result {
            for w in &d.warnings {
                text.push_str(&format!("{}: warning: {w}\n", o.broker));
            }
        }
    }
    text.push_str(&match (changed, dry_run) {
        (0, _) if failed.is_empty() => "nothing to change: every broker matches the plan\n".into(),
        (0, _) => String::new(),
        (n, true) => format!("{n} changes to make\n"),
        (n, false) => format!("applied {n} changes\n"),
    });
    out(&text);
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(format!(
            "{} of {} brokers not brought in line with the plan: {}",
            failed.len(),
            outcomes.len(),
            failed.join(", ")
        ))
    }
}

async fn status(star: &Star, plan: &Plan) -> Result<ExitCode, String> {
    let clients = federation::clients(plan, star.http_timeout);
    let statuses = federation::status(plan, &clients, &mut Default::default()).await;
    out(&federation::table(&statuses));
    let down = statuses
        .iter()
        .filter(|s| s.state != LinkState::Running)
        .count();
    if down == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(format!("{down} of {} links not running", statuses.len()))
    }
}

fn describe(plan: &Plan) -> String {
    let mut text = String::new();
    for b in &plan.brokers {
        text.push_str(&format!(
            "{} ({}, vhost {}): exchanges {}\n",
            b.broker.name,
            b.role.as_str(),
            b.broker.vhost,
            b.exchanges.join(", ")
        ));
        for (name, up) in &b.upstreams {
            text.push_str(&format!(
                "  upstream {name} max-hops {} {}\n",
                up.max_hops,
                crate::up::redact(&up.uri)
            ));
        }
    }
    let regions = plan.brokers.len() - 1;
    let per = plan.brokers.first().map_or(0, |b| b.exchanges.len());
    text.push_str(&format!(
        "{regions} regions: {} upstreams and {} links as a star; a full mesh would need {} upstreams and {} links\n",
        plan.upstream_count(),
        plan.links().len(),
        federation::plan::full_mesh_upstreams(regions),
        federation::plan::full_mesh_upstreams(regions) * per,
    ));
    text
}

async fn supervise(star: Star) -> Result<ExitCode, String> {
    let shutdown = CancellationToken::new();
    let interval = star.check_interval;
    let brokers: Vec<String> = star.brokers().map(|b| b.name.clone()).collect();
    let running = federation::supervise::start(star, shutdown.clone())
        .await
        .map_err(|e| e.to_string())?;
    out(&format!(
        "postmesh router is up\n  brokers    {}\n  check      every {} s\n  metrics    http://{}/metrics\n",
        brokers.join(", "),
        interval.as_secs(),
        running.metrics_addr
    ));
    let mut signals = crate::up::Signals::new();
    signals.next().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    running
        .task
        .await
        .map_err(|e| format!("router task: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_router_section_loads_from_toml() {
        let dir =
            std::env::temp_dir().join(format!("postmesh-router-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("postmesh.toml");
        std::fs::write(
            &file,
            r#"
[router]
check_interval_secs = 2

[router.hub]
name = "hub"
amqp = "amqp://guest:guest@hub.example:5672/%2f"
management = "http://hub.example:15672"

[[router.regions]]
name = "east"
amqp = "amqp://u:p@east.example:5672/%2f"
management = "http://east.example:15672"
user = "admin"
password = "secret"
"#,
        )
        .unwrap();
        let c = config::load(Some(&file), serde_json::json!({})).unwrap();
        let star = c.router.validate().unwrap();
        assert_eq!(star.check_interval.as_secs(), 2);
        assert_eq!(star.hub.user, "guest", "guest by default");
        assert_eq!(star.regions[0].user, "admin");
        assert_eq!(plan(&star).links().len(), 4);
        std::fs::write(
            &file,
            "[router.hub]\nname = \"hub\"\namqp = \"amqp://h\"\nmanagement = \"http://h\"\nmanagment = \"x\"\n",
        )
        .unwrap();
        let e = config::load(Some(&file), serde_json::json!({})).unwrap_err();
        assert!(e.to_string().contains("managment"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
