//! Scale-out: several `pbxlink run` instances on one PostgreSQL. Each PBX is tracked by the
//! one instance holding its lease (renewed every third of `lease_ttl`); when the owner dies,
//! another takes the lease once it lapses, finishes the calls the owner left in progress from
//! the raw event log, and carries on from the live AMI stream. Live call events reach every
//! instance's API through PostgreSQL `NOTIFY`/`LISTEN`.

use std::sync::Arc;
use std::time::Duration;

use calls::CallEvent;
use chrono::{TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::Store;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::api::AppState;
use crate::config::{ClusterConfig, PbxConfig};
use crate::run::Pipeline;
use delivery::shutdown::Shutdown;
use pbx::ami_client::{AmiClient, ClientConfig};

/// Live events waiting for `NOTIFY`; beyond this they are dropped (and counted): the live
/// view is best-effort across instances, the journal is not.
const FANOUT_QUEUE: usize = 10_000;
/// Live events shared per `NOTIFY` round trip at most.
const NOTIFY_BATCH: usize = 256;
/// PostgreSQL refuses a `NOTIFY` payload of this many bytes or more.
const NOTIFY_MAX_PAYLOAD: usize = 8000;

/// A live event as it travels between instances.
#[derive(Debug, Serialize, Deserialize)]
struct Fanned {
    instance: String,
    pbx: String,
    #[serde(flatten)]
    what: Shared,
}

/// What the tracking instance shares: call events, and the AMI events that change presence
/// (each instance folds those into its own view of the PBX's extensions).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Shared {
    Event(CallEvent),
    Presence(serde_json::Value),
}

/// Where tracked calls' live events go: this instance's API and, in a cluster, the others'.
#[derive(Debug, Clone)]
pub struct Live {
    state: AppState,
    /// `(instance id, NOTIFY queue)` in a cluster on PostgreSQL.
    fanout: Option<(Arc<str>, mpsc::Sender<String>)>,
}

impl Live {
    /// This instance only.
    pub fn local(state: AppState) -> Self {
        Self {
            state,
            fanout: None,
        }
    }

    /// Shares live events with the other instances on the same PostgreSQL (on SQLite there
    /// are none: local only). Events from the others are published into `state` as well.
    pub async fn start(store: &Store, state: AppState, instance: &str) -> anyhow::Result<Self> {
        let Some(mut listener) = store.listen(store::LIVE_CHANNEL).await? else {
            return Ok(Self::local(state));
        };
        let me: Arc<str> = instance.into();
        let remote = state.clone();
        let own = me.clone();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(payload) => match serde_json::from_str::<Fanned>(&payload) {
                        Ok(f) if *f.instance != *own => match f.what {
                            Shared::Event(event) => remote.publish(&f.pbx, event),
                            Shared::Presence(Value::Object(fields)) => {
                                let msg = crate::replay::message_from_json(&fields);
                                remote.presence_event(&f.pbx, &msg);
                            }
                            Shared::Presence(_) => {}
                        },
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable live event from another instance")
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "live events from other instances: LISTEN failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        let (tx, mut rx) = mpsc::channel::<String>(FANOUT_QUEUE);
        let sender = store.clone();
        tokio::spawn(async move {
            // Whatever queued during the last round trip goes in the next one, in order.
            let mut batch = Vec::with_capacity(NOTIFY_BATCH);
            while rx.recv_many(&mut batch, NOTIFY_BATCH).await > 0 {
                if let Err(e) = sender.notify(store::LIVE_CHANNEL, &batch).await {
                    tracing::warn!(error = %e, events = batch.len(), "cannot share live events with other instances");
                }
                batch.clear();
            }
        });
        Ok(Self {
            state,
            fanout: Some((me, tx)),
        })
    }

    /// Publishes an event of a call this instance tracks, here and to the other instances.
    pub fn publish(&self, pbx: &str, event: CallEvent) {
        self.share(pbx, || Shared::Event(event.clone()));
        self.state.publish(pbx, event);
    }

    /// Folds an AMI event of a PBX this instance tracks into presence, here and (when it
    /// concerns presence) at the other instances.
    pub fn presence_event(&self, pbx: &str, msg: &ami::Message) {
        if !calls::presence::concerns(msg) {
            return;
        }
        self.share(pbx, || Shared::Presence(msg.to_json()));
        self.state.presence_event(pbx, msg);
    }

    /// Queues `what` for the other instances (in a cluster); a full queue drops and counts.
    fn share(&self, pbx: &str, what: impl FnOnce() -> Shared) {
        let Some((instance, tx)) = &self.fanout else {
            return;
        };
        let fanned = Fanned {
            instance: instance.to_string(),
            pbx: pbx.to_owned(),
            what: what(),
        };
        let payload = serde_json::to_string(&fanned).unwrap_or_default();
        if payload.len() >= NOTIFY_MAX_PAYLOAD {
            tracing::warn!(
                pbx,
                bytes = payload.len(),
                "live event too large for NOTIFY; not shared"
            );
            metrics::counter!("pbxlink_live_fanout_dropped_total").increment(1);
        } else if tx.try_send(payload).is_err() {
            metrics::counter!("pbxlink_live_fanout_dropped_total").increment(1);
        }
    }

    /// Publishes here only: events of calls resumed from the raw event log, which the other
    /// instances already saw from the previous owner.
    pub fn publish_local(&self, pbx: &str, event: CallEvent) {
        self.state.publish(pbx, event);
    }
}

/// A PBX tracked by this instance: its tracking task and how to stop it.
struct Owned {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Owned {
    fn start(pbx: &PbxConfig, pipeline: &Pipeline) -> anyhow::Result<Owned> {
        let (client, events) = AmiClient::start(ClientConfig::from_pbx(pbx)?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::run::track(
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
                crate::run::resync_presence(&client, &state, &pbx).await;
            }
            pbx::ami_client::LinkEvent::Disconnected { reason } => {
                tracing::warn!(pbx, %reason, "AMI control link down; reconnecting");
            }
            pbx::ami_client::LinkEvent::Event(_) => {}
        }
    }
}
