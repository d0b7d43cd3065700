//! `pbxlink run`: the gateway's main job. AMI links -> call tracker -> journal, live events,
//! HTTP API and web UI. With no `[[pbx]]` configured it runs the demo: the built-in simulated
//! PBX on loopback feeds real (generated) calls through the very same path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use store::Store;

use crate::api::{self, AppState};
use crate::config::{Config, PbxConfig, Secret};
use pbx::ami_client::{AmiClient, ClientConfig};
use sim::simulate;

/// `pbxlink run` arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Address of the HTTP API and web UI.
    #[arg(long, env = "PBXLINK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// API token to accept (instead of printing a fresh one-time token).
    #[arg(long, env = "PBXLINK_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// An API client has this long for its TLS handshake and again for its request head.
const HTTP_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the gateway until Ctrl-C / SIGTERM.
pub async fn run(config: Config, args: RunArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let store = Store::connect(&config.database_url())
        .await
        .context("cannot open the call journal")?;

    // Held for the whole run: dropping the handle stops the simulator.
    let mut _demo = None;
    let pbxes = if config.pbx.is_empty() {
        let (handle, pbx) = start_demo_pbx(&config.data_dir).await?;
        _demo = Some(handle);
        vec![pbx]
    } else {
        config.pbx.clone()
    };

    // The demo PBX writes recordings too; they take the production path from there on.
    let recordings = config.recordings.clone().or_else(|| {
        _demo
            .is_some()
            .then(|| crate::recordings::demo_config(&config.data_dir))
    });
    // A token given on the command line is the operator's own: never printed.
    let (token, fresh_token) = match args.admin_token {
        Some(t) => (t, false),
        None => (web::tokens::new_secret(), true),
    };
    let mut clients = HashMap::new();
    let mut links = Vec::new();
    let mut control_links = Vec::new();
    for pbx in &pbxes {
        if config.cluster.is_none() {
            let (client, events) = AmiClient::start(ClientConfig::from_pbx(pbx)?);
            clients.insert(pbx.name.clone(), client.clone());
            links.push((pbx.name.clone(), client, events));
        } else {
            // In a cluster a PBX is tracked where its lease is (crate::cluster), but calls are
            // controlled from any instance: each keeps a link for actions alone.
            let (client, events) = AmiClient::start(ClientConfig::actions_only(pbx)?);
            clients.insert(pbx.name.clone(), client.clone());
            control_links.push((pbx.name.clone(), client, events));
        }
    }
    let (trigger, shutdown) = delivery::shutdown::Trigger::new();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let click_to_call_links = clients.clone();
    let state = AppState::new(store.clone(), std::slice::from_ref(&token), clients)
        .with_metrics(recorder)
        // Event ids never repeat across runs: a client resuming after a restart resyncs.
        .with_live_numbering_after(u64::try_from(Utc::now().timestamp_micros()).unwrap_or_default())
        .with_allow_list(config.http.allow.clone())
        .with_control_rate(
            config
                .http
                .control_per_minute
                .unwrap_or(api::DEFAULT_CONTROL_PER_MINUTE),
        )
        .with_settings(config.settings_view())
        .with_extensions(config.extensions.clone());
    let crms = delivery::outbox::start(
        &config.crm,
        &config.outbox,
        &store,
        recordings.is_some(),
        &shutdown,
    )?;
    delivery::outbox::metrics::spawn(store.clone(), &crms, shutdown.clone());
    let tls = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => {
            let identity = web::http_server::Identity::Files {
                cert: cert.clone(),
                key: key.clone(),
            };
            Some(web::http_server::tls_acceptor(&identity)?.0)
        }
        (None, None) => None,
        _ => anyhow::bail!("[http] tls_cert and tls_key go together: set both or neither"),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // Bound before the workers start: recording links name the address really bound
    // (`--listen 127.0.0.1:0` picks a free port).
    let addr = listener.local_addr()?;
    tracing::info!("web UI and API on {scheme}://{addr}/ (API under /api/v1)");
    let state = match &recordings {
        Some(recordings) => {
            // Links point at the API itself unless `public_url` says otherwise.
            let own_url = format!("{scheme}://{addr}");
            let worker = delivery::recordings::Worker::from_config(
                recordings,
                &config.data_dir,
                &own_url,
                crms.clone(),
            )?;
            let state = state.with_recordings(worker.recordings.clone());
            tokio::spawn(worker.run(store.clone()));
            state
        }
        None => state,
    };
    let live = match &config.cluster {
        Some(cluster) => {
            crate::live::Live::start(&store, state.clone(), &cluster.instance_id).await?
        }
        None => crate::live::Live::local(state.clone()),
    };
    let pipeline = crate::tracking::Pipeline {
        store: store.clone(),
        state: state.clone(),
        live,
        crms: crms.clone(),
        raw_events: config.journal.raw_events,
        resume: _demo.is_none(),
        cdr: crate::tracking::cdr::CdrSources::from_config(&config)?,
        trackers: Arc::new(
            config
                .pbx
                .iter()
                .map(|pbx| (pbx.name.clone(), pbx.tracker.tracker_config()))
                .collect(),
        ),
    };
    for (name, client, events) in control_links {
        tokio::spawn(crate::cluster::control_link(
            name,
            client,
            events,
            state.clone(),
        ));
    }
    for (name, client, events) in links {
        // No cluster: every PBX is ours, tracked until shutdown.
        let shutdown = shutdown.clone();
        tokio::spawn(crate::tracking::track(
            name,
            client,
            events,
            pipeline.clone(),
            async move {
                shutdown.requested().await;
            },
        ));
    }
    if let Some(cluster) = &config.cluster {
        tracing::info!(
            instance = cluster.instance_id,
            "cluster member: PBXs are tracked by lease"
        );
        for pbx in pbxes.iter().filter(|p| cluster.may_own(&p.name)) {
            let owner = crate::cluster::own_by_lease(
                pbx.clone(),
                cluster.clone(),
                pipeline.clone(),
                shutdown.clone(),
            );
            tokio::spawn(owner);
        }
    }
    drop(pipeline);
    if let Some(agi) = &config.agi {
        crate::fastagi::cli::start(agi, &crms, shutdown.clone()).await?;
    }
    // Bitrix24's click-to-call: its event handler URL, and offline-event polling.
    let bitrix24_events = crate::portal::ClickToCall::new(crms.clone(), click_to_call_links);
    bitrix24_events.start_polling();

    eprintln!("web UI: {scheme}://{addr}/");
    if fresh_token {
        eprintln!("admin API token (valid until pbxlink stops): {token}");
        eprintln!("sign in to the web UI with this link: {scheme}://{addr}/#token={token}");
    }
    // The peer address feeds the `[http] allow` list.
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let app = api::app(state).merge(bitrix24_events.router());
    let http = web::http_server::serve(listener, tls, app, HTTP_HEAD_TIMEOUT, async {
        let _ = http_stopped.await;
    });
    let mut http = tokio::spawn(http);
    tokio::select! {
        () = shutdown_signal() => {}
        served = &mut http => {
            served?;
            anyhow::bail!("the HTTP server stopped");
        }
    }
    // No new HTTP requests; live streams end with the process.
    let _ = stop_http.send(());
    drop(shutdown);
    if trigger.shutdown(config.shutdown_grace).await {
        tracing::info!("stopped: calls journaled, deliveries in flight finished");
    } else {
        tracing::warn!(
            grace = ?config.shutdown_grace,
            "stopped with deliveries still in flight; they are retried at the next start"
        );
    }
    store.close().await;
    Ok(())
}

/// Starts the simulated PBX on loopback and returns the `[[pbx]]` that reaches it.
async fn start_demo_pbx(
    data_dir: &std::path::Path,
) -> anyhow::Result<(simulate::SimulatorHandle, PbxConfig)> {
    let secret = hex::encode(rand::random::<[u8; 16]>());
    let options = simulate::Options {
        calls_per_second: 0.5,
        start_ms: Utc::now().timestamp_millis().max(0) as u64,
        ..simulate::Options::default()
    };
    let server = simulate::ServerOptions {
        username: "pbxlink".into(),
        secret: secret.clone(),
        fast: false,
        speed: 1.0,
        write: None,
        monitor_dir: Some(crate::recordings::demo_config(data_dir).dir),
        cdr: None,
    };
    let handle = simulate::start(SocketAddr::from(([127, 0, 0, 1], 0)), options, server).await?;
    let addr = handle.local_addr();
    tracing::warn!(
        "DEMO MODE: no [[pbx]] in the config, so pbxlink runs its built-in simulated PBX on {addr}; \
         every call you see is generated demo data. To track a real Asterisk, write a config \
         file with a [[pbx]] section (host, username, secret) and start \
         `pbxlink --config FILE run`."
    );
    eprintln!(
        "DEMO MODE: calls come from the built-in simulated PBX on {addr} (not a real Asterisk)"
    );
    let mut pbx = Config::parse("[[pbx]]\nname = \"demo\"\n", "<demo>")?
        .pbx
        .remove(0);
    pbx.host = addr.ip().to_string();
    pbx.port = addr.port();
    pbx.username = "pbxlink".into();
    pbx.secret = Some(Secret::new(secret));
    Ok((handle, pbx))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
