//! `pbxlink run`: the gateway's main job. AMI links -> call tracker -> journal, live events,
//! HTTP API and web UI. With no `[[pbx]]` configured it runs the demo: the built-in simulated
//! PBX on loopback feeds real (generated) calls through the very same path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ami::{Action, Message};
use anyhow::Context;
use calls::{Tracker, TrackerConfig};
use chrono::Utc;
use store::{RawEvent, Store};
use tokio::sync::mpsc;

use crate::ami_client::{AmiClient, ClientConfig, LinkEvent};
use crate::api::{self, AppState};
use crate::config::{Config, PbxConfig, RawEvents, Secret};
use crate::simulate;

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

/// Raw events waiting for the database; beyond this the raw log drops (and counts) rather
/// than slow down call tracking. The raw log is a debugging aid; calls are never dropped.
const RAW_EVENT_QUEUE: usize = 100_000;
const RAW_EVENT_BATCH: usize = 2_000;
/// Finished calls waiting for the journal. When full, tracking waits (and so, through TCP,
/// does Asterisk): a finished call is never dropped.
const JOURNAL_QUEUE: usize = 10_000;
const JOURNAL_BATCH: usize = 500;
/// An API client has this long for its TLS handshake and again for its request head.
const HTTP_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the gateway until Ctrl-C / SIGTERM.
pub fn run(config: Config, args: RunArgs) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(serve(config, args))
}

async fn serve(config: Config, args: RunArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let store = Store::connect(&config.database_url())
        .await
        .context("cannot open the call journal")?;

    // Held for the whole run: dropping the handle stops the simulator.
    let mut _demo = None;
    let pbxes = if config.pbx.is_empty() {
        let (handle, pbx) = start_demo_pbx().await?;
        _demo = Some(handle);
        vec![pbx]
    } else {
        config.pbx.clone()
    };

    // A token given on the command line is the operator's own: never printed.
    let (token, fresh_token) = match args.admin_token {
        Some(t) => (t, false),
        None => (crate::tokens::new_secret(), true),
    };
    let mut clients = HashMap::new();
    let mut links = Vec::new();
    for pbx in &pbxes {
        let (client, events) = AmiClient::start(ClientConfig::from_pbx(pbx)?);
        clients.insert(pbx.name.clone(), client.clone());
        links.push((pbx.name.clone(), client, events));
    }
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let state = AppState::new(store.clone(), std::slice::from_ref(&token), clients)
        .with_metrics(recorder)
        .with_allow_list(config.http.allow.clone())
        .with_control_rate(
            config
                .http
                .control_per_minute
                .unwrap_or(api::DEFAULT_CONTROL_PER_MINUTE),
        );
    let crms = crate::outbox::start(&config.crm, &store, config.recordings.is_some())?;
    let state = match &config.recordings {
        Some(recordings) => {
            // Links point at the API itself unless `public_url` says otherwise.
            let own_scheme = if config.http.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            let own_url = format!("{own_scheme}://{}", args.listen);
            let worker = crate::recordings::Worker::from_config(
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
    for (name, client, events) in links {
        let raw_log = spawn_raw_event_writer(store.clone(), &name, config.journal.raw_events);
        tokio::spawn(track(
            name,
            client,
            events,
            store.clone(),
            state.clone(),
            raw_log,
            crms.clone(),
        ));
    }
    if let Some(agi) = &config.agi {
        crate::fastagi::cli::start(agi, &crms).await?;
    }

    let tls = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => {
            let identity = crate::release::Identity::Files {
                cert: cert.clone(),
                key: key.clone(),
            };
            Some(crate::release::tls_acceptor(&identity)?.0)
        }
        (None, None) => None,
        _ => anyhow::bail!("[http] tls_cert and tls_key go together: set both or neither"),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(
        "web UI and API on {scheme}://{}/ (API under /api/v1)",
        listener.local_addr()?
    );
    let addr = listener.local_addr()?;
    eprintln!("web UI: {scheme}://{addr}/");
    if fresh_token {
        eprintln!("admin API token (valid until pbxlink stops): {token}");
        eprintln!("sign in to the web UI with this link: {scheme}://{addr}/#token={token}");
    }
    // The peer address feeds the `[http] allow` list.
    let app = api::app(state);
    crate::http_server::serve(listener, tls, app, HTTP_HEAD_TIMEOUT, shutdown_signal()).await;
    store.close().await;
    Ok(())
}

/// Starts the simulated PBX on loopback and returns the `[[pbx]]` that reaches it.
async fn start_demo_pbx() -> anyhow::Result<(simulate::SimulatorHandle, PbxConfig)> {
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
        write: None,
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

/// One PBX: AMI events -> tracker -> live events and journal.
async fn track(
    pbx: String,
    client: AmiClient,
    mut events: mpsc::Receiver<LinkEvent>,
    store: Store,
    state: AppState,
    mut raw_log: RawEventLog,
    crms: Arc<[crate::outbox::Crm]>,
) {
    let mut tracker = Tracker::new(TrackerConfig::default());
    // Handles made once: the per-event cost is an atomic add, not a registry lookup.
    let events_total = metrics::counter!("pbxlink_ami_events_total", "pbx" => pbx.clone());
    let connected = metrics::gauge!("pbxlink_ami_connected", "pbx" => pbx.clone());
    let active_calls = metrics::gauge!("pbxlink_active_calls", "pbx" => pbx.clone());
    // Finished calls go to their own writer task so a slow disk never stalls tracking.
    let journal = spawn_journal_writer(store, &pbx, crms);
    let mut seq: u64 = 0;
    while let Some(link_event) = events.recv().await {
        match link_event {
            LinkEvent::Connected { ami_version } => {
                tracing::info!(pbx, ami_version, "AMI connected; resyncing live channels");
                connected.set(1.0);
                resync(&client, &mut tracker).await;
            }
            LinkEvent::Disconnected { reason } => {
                tracing::warn!(pbx, %reason, "AMI link down; reconnecting");
                connected.set(0.0);
            }
            LinkEvent::Event(msg) => {
                let now = Utc::now();
                tracker.handle(now, &msg);
                events_total.increment(1);
                seq += 1;
                raw_log.log(&pbx, seq, now, &msg);
            }
        }
        while let Some(ev) = tracker.poll_event() {
            state.publish(&pbx, ev);
        }
        while let Some(record) = tracker.poll_record() {
            if journal.send(record).await.is_err() {
                tracing::error!(pbx, "journal writer stopped; no more calls can be saved");
                return;
            }
        }
        active_calls.set(tracker.calls_in_progress() as f64);
    }
}

/// The journal writer: finished calls, saved in batches (one transaction each), in order.
/// A failed batch is retried until the database takes it: calls wait, they are not dropped.
fn spawn_journal_writer(
    store: Store,
    pbx: &str,
    crms: Arc<[crate::outbox::Crm]>,
) -> mpsc::Sender<calls::CallRecord> {
    let (tx, mut rx) = mpsc::channel::<calls::CallRecord>(JOURNAL_QUEUE);
    let pbx = pbx.to_owned();
    let journaled = metrics::counter!("pbxlink_calls_journaled_total", "pbx" => pbx.clone());
    let errors = metrics::counter!("pbxlink_journal_errors_total", "pbx" => pbx.clone());
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(JOURNAL_BATCH);
        while rx.recv_many(&mut batch, JOURNAL_BATCH).await > 0 {
            // CRM deliveries are queued in the call's own transaction: never one without the other.
            let outbox: Vec<_> = batch
                .iter()
                .map(|c| crate::outbox::plan_all(&crms, &pbx, c))
                .collect();
            let rows: Vec<_> = batch
                .iter()
                .zip(&outbox)
                .map(|(c, o)| (c, &o[..]))
                .collect();
            let mut delay = Duration::from_millis(100);
            while let Err(e) = store.save_calls(&pbx, &rows, Utc::now()).await {
                errors.increment(1);
                tracing::error!(pbx, calls = rows.len(), error = %e, "cannot journal calls; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            journaled.increment(rows.len() as u64);
            batch.clear();
        }
    });
    tx
}

/// After a (re)connect, tells the tracker which channels exist, so calls that went on
/// while the link was down are neither lost nor invented.
async fn resync(client: &AmiClient, tracker: &mut Tracker) {
    match client.send(Action::core_show_channels()).await {
        Ok(result) => {
            let now = Utc::now();
            for item in &result.items {
                tracker.handle(now, item);
            }
            if let Some(complete) = &result.complete {
                tracker.handle(now, complete);
            }
        }
        Err(e) => tracing::warn!(error = %e, "CoreShowChannels failed; tracking from now on"),
    }
}

/// The raw AMI event log, written in batches by its own task.
struct RawEventLog {
    tx: mpsc::Sender<RawEvent>,
    keep: RawEvents,
    dropped: metrics::Counter,
    dropped_so_far: u64,
}

impl RawEventLog {
    fn log(&mut self, pbx: &str, seq: u64, at: chrono::DateTime<Utc>, msg: &Message) {
        // Only call events: the log exists to replay and debug calls.
        let Some(linkedid) = msg.get("Linkedid") else {
            return;
        };
        if !self.keep.keeps(msg.event().unwrap_or_default()) {
            return;
        }
        let event = RawEvent {
            pbx: pbx.to_owned(),
            seq,
            received_at: at,
            event: msg.event().unwrap_or_default().to_owned(),
            linkedid: Some(linkedid.to_owned()),
            message: msg.to_json(),
        };
        if self.tx.try_send(event).is_err() {
            self.dropped.increment(1);
            self.dropped_so_far += 1;
            if self.dropped_so_far.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped_so_far,
                    "raw AMI event log behind the event rate; dropping raw events (calls are unaffected)"
                );
            }
        }
    }
}

fn spawn_raw_event_writer(store: Store, pbx: &str, keep: RawEvents) -> RawEventLog {
    let (tx, mut rx) = mpsc::channel::<RawEvent>(RAW_EVENT_QUEUE);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(RAW_EVENT_BATCH);
        while rx.recv_many(&mut batch, RAW_EVENT_BATCH).await > 0 {
            if let Err(e) = store.append_events(&batch).await {
                tracing::error!(error = %e, "cannot write raw AMI events");
            }
            batch.clear();
        }
    });
    RawEventLog {
        tx,
        keep,
        dropped: metrics::counter!("pbxlink_raw_events_dropped_total", "pbx" => pbx.to_owned()),
        dropped_so_far: 0,
    }
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
