//! The live view's fan-out: where tracked calls' live events go — this instance's API and,
//! in a cluster, every other instance's through PostgreSQL `NOTIFY`/`LISTEN`. Tracking
//! publishes here; it does not need to know whether there is a cluster.

use std::sync::Arc;
use std::time::Duration;

use calls::CallEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::Store;
use tokio::sync::mpsc;

use crate::api::AppState;

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
                                let msg = sim::replay::message_from_json(&fields);
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
