//! Scale-out: several `pbxlink run` instances on one PostgreSQL. Each PBX is tracked by the
//! one instance holding its lease (renewed every third of `lease_ttl`); when the owner dies,
//! another takes the lease once it lapses, finishes the calls the owner left in progress from
//! the raw event log, and carries on from the live AMI stream. Live call events reach every
//! instance's API through PostgreSQL `NOTIFY`/`LISTEN` (`live.rs`).

use chrono::{TimeDelta, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::api::AppState;
use crate::config::{ClusterConfig, PbxConfig};
use crate::tracking::Pipeline;
use delivery::shutdown::Shutdown;
use pbx::ami_client::{AmiClient, ClientConfig};

/// A PBX tracked by this instance: its tracking task and how to stop it.
struct Owned {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Owned {
    fn start(pbx: &PbxConfig, pipeline: &Pipeline) -> anyhow::Result<Owned> {
        let (client, events) = AmiClient::start(ClientConfig::from_pbx(pbx)?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::tracking::track(
            pbx.name.clone(),
            client,
            events,
            pipeline.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        Ok(Owned { stop, task })
    }

    /// Stops tracking; returns once the calls that ended are journaled.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Holds (or waits for) the lease of `pbx` and tracks it while held, until shutdown; then
/// gives the lease up so another instance takes over at once.
pub async fn own_by_lease(
    pbx: PbxConfig,
    cluster: ClusterConfig,
    pipeline: Pipeline,
    shutdown: Shutdown,
) {
    let (name, me) = (pbx.name.as_str(), cluster.instance_id.as_str());
    let ttl = cluster.lease_ttl;
    let renew_every = ttl / 3;
    let store = pipeline.store.clone();
    let mut owned: Option<Owned> = None;
    // Until when the lease is surely ours, with a renewal period to spare for stopping.
    let mut safe_until = Instant::now();
    loop {
        let asked = Instant::now();
        let lease = TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX);
        match store.acquire_lease(name, me, lease, Utc::now()).await {
            Ok(true) => {
                safe_until = asked + ttl - renew_every;
                if owned.is_none() {
                    tracing::info!(pbx = name, instance = me, "PBX lease taken; tracking it");
                    match Owned::start(&pbx, &pipeline) {
                        Ok(o) => owned = Some(o),
                        Err(e) => {
                            tracing::error!(pbx = name, error = %e, "cannot start the AMI link")
                        }
                    }
                }
            }
            Ok(false) => {
                if let Some(o) = owned.take() {
                    tracing::warn!(pbx = name, "PBX lease held by another instance; stopping");
                    o.stop().await;
                }
            }
            Err(e) => tracing::warn!(pbx = name, error = %e, "cannot renew the PBX lease"),
        }
        if owned.is_some() && Instant::now() >= safe_until {
            tracing::warn!(
                pbx = name,
                "PBX lease not renewed in time; stopping before it lapses"
            );
            if let Some(o) = owned.take() {
                o.stop().await;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(renew_every) => {}
            () = shutdown.requested() => break,
        }
    }
    if let Some(o) = owned.take() {
        o.stop().await;
        if let Err(e) = store.release_lease(name, me).await {
            tracing::warn!(pbx = name, error = %e, "cannot release the PBX lease; it lapses by itself");
        }
    }
    drop(shutdown);
}

/// A cluster instance's actions-only link to a PBX it may not track: its events are only
/// the link's own (connected, lost); at each login the PBX's extensions and queue members are
/// read, so the API knows them wherever the PBX is tracked (changes then arrive from the
/// tracking instance).
pub async fn control_link(
    pbx: String,
    client: AmiClient,
    mut events: mpsc::Receiver<pbx::ami_client::LinkEvent>,
    state: AppState,
) {
    while let Some(event) = events.recv().await {
        match event {
            pbx::ami_client::LinkEvent::Connected { .. } => {
                crate::tracking::resync_presence(&client, &state, &pbx).await;
            }
            pbx::ami_client::LinkEvent::Disconnected { reason } => {
                tracing::warn!(pbx, %reason, "AMI control link down; reconnecting");
            }
            pbx::ami_client::LinkEvent::Event(_) => {}
        }
    }
}
