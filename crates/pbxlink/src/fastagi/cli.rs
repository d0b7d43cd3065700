//! `pbxlink agi serve` (the FastAGI server from `[agi]`) and `pbxlink agi load` (a load
//! generator that plays Asterisk).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::handlers::{CallerId, CrmLookup, Lookup, Route, Static, Webhook};
use super::{AgiConfig, Router, Server};
use crate::config::Config;
use delivery::outbox::Crm;

#[derive(Debug, clap::Args)]
pub struct AgiArgs {
    #[command(subcommand)]
    command: AgiCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AgiCommand {
    /// Run the FastAGI server (`[agi]` in the config; defaults without one).
    Serve {
        /// Listen here instead of `[agi] listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Play Asterisk against a FastAGI server: many sessions at once, answering every
    /// command with `200 result=1`; prints sessions/s and latency percentiles as JSON.
    Load(super::load::LoadArgs),
}

pub async fn run(config: &Config, args: AgiArgs) -> anyhow::Result<()> {
    match args.command {
        AgiCommand::Serve { listen } => {
            let mut agi = config.agi.clone().unwrap_or_else(default_config);
            agi.listen = listen.unwrap_or(agi.listen);
            // Only the connector `lookup` names: `agi serve` delivers nothing to CRMs.
            let crms = config
                .crm
                .iter()
                .filter(|c| agi.lookup.as_deref() == Some(c.name()))
                .map(Crm::from_config)
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (server, listener) = bind(&agi, &crms).await?;
            server.serve(listener, shutdown_signal()).await;
            Ok(())
        }
        AgiCommand::Load(args) => super::load::run(args).await,
    }
}

/// The server `[agi]` describes, listening.
async fn bind(agi: &AgiConfig, crms: &[Crm]) -> anyhow::Result<(Server, tokio::net::TcpListener)> {
    let listener =
        listen(agi).with_context(|| format!("cannot listen for FastAGI on {}", agi.listen))?;
    let addr = listener.local_addr()?;
    let server = Server::new(router(agi, crms)?, agi.limits());
    tracing::info!("FastAGI server on agi://{addr}/ ({:?})", server.router);
    eprintln!("FastAGI: listening on {addr}");
    Ok((server, listener))
}

/// A listening socket whose backlog holds a burst of `max_connections` connects: Asterisk
/// opens one connection per call, and a full accept queue costs a caller a 1 s SYN retry.
fn listen(agi: &AgiConfig) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match agi.listen {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(agi.listen)?;
    socket.listen(u32::try_from(agi.max_connections.max(1024)).unwrap_or(u32::MAX))
}

/// Starts the FastAGI server in the background (inside `pbxlink run`, sharing its CRM
/// connectors). At shutdown it takes no new sessions and finishes those in progress, holding
/// `shutdown` until then so `run` waits for them (a channel left waiting on its AGI would
/// sit in silence).
pub async fn start(
    agi: &AgiConfig,
    crms: &[Crm],
    shutdown: delivery::shutdown::Shutdown,
) -> anyhow::Result<()> {
    let (server, listener) = bind(agi, crms).await?;
    tokio::spawn(async move {
        let stop = shutdown.clone();
        server
            .serve(listener, async move { stop.requested().await })
            .await;
        drop(shutdown);
    });
    Ok(())
}

/// `[agi]` with every default.
fn default_config() -> AgiConfig {
    toml::from_str("").expect("every [agi] field has a default")
}

/// The scripts `[agi]` configures: `route` and `callerid` (asking the `[[crm]]` named by
/// `lookup`, found in `crms`; none: they answer `fallback`), `webhook` when `webhook_url` is
/// set, and the static routes.
pub fn router(config: &AgiConfig, crms: &[Crm]) -> anyhow::Result<Router> {
    let budget = Duration::from_millis(config.budget_ms);
    let crm = match &config.lookup {
        None => None,
        Some(name) => {
            let crm = crms
                .iter()
                .find(|c| &c.name == name)
                .with_context(|| format!("[agi] lookup: no [[crm]] is named '{name}'"))?;
            let connector = crm.lookup.clone().with_context(|| {
                format!("[agi] lookup: crm '{name}' does no caller lookups (a webhook needs lookup_url)")
            })?;
            Some(Arc::new(CrmLookup {
                http: reqwest::Client::new(),
                connector,
            }))
        }
    };
    let lookup = Lookup::new(crm, budget, Duration::from_secs_f64(config.cache_ttl));
    let mut router = Router::default()
        .route(
            "route",
            Route {
                lookup: lookup.clone(),
                fallback_target: config.fallback_target.clone(),
            },
        )
        .route("callerid", CallerId { lookup });
    if let Some(url) = &config.webhook_url {
        // No client timeout: the handler's own budget cuts the request, and says `timeout`.
        router = router.route(
            "webhook",
            Webhook {
                client: reqwest::Client::new(),
                url: url.clone(),
                budget,
                fallback_target: config.fallback_target.clone(),
            },
        );
    }
    for (name, variables) in &config.static_routes {
        router = router.route(
            name,
            Static {
                variables: variables.clone(),
            },
        );
    }
    Ok(router)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
