//! Tracking one PBX: its AMI link's events through the call tracker into the journal, the
//! live view and the CRM outbox, with the raw event log beside; the state lists read at each
//! login applied in order with the events, and what a gap lost repaired from the CDR. Both
//! `pbxlink run` and the cluster's lease owner run it; it knows nothing of either.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ami::{Action, ActionResult, Message};
use calls::{Tracker, TrackerConfig};
use chrono::{TimeDelta, Utc};
use store::{RawEvent, Store};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::api::AppState;
use crate::config::RawEvents;
use pbx::ami_client::{AmiClient, LinkEvent};

pub mod cdr;

/// Raw events waiting for the database; beyond this the raw log drops (and counts) rather
/// than slow down call tracking. The raw log is a debugging aid; calls are never dropped.
const RAW_EVENT_QUEUE: usize = 100_000;
const RAW_EVENT_BATCH: usize = 2_000;
/// Finished calls waiting for the journal. When full, tracking waits (and so, through TCP,
/// does Asterisk): a finished call is never dropped.
const JOURNAL_QUEUE: usize = 10_000;
const JOURNAL_BATCH: usize = 500;

/// What tracking a PBX needs besides its AMI link (one per PBX, cloned).
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub store: Store,
    pub state: AppState,
    pub live: crate::live::Live,
    pub crms: Arc<[delivery::outbox::Crm]>,
    pub raw_events: RawEvents,
    /// Resume the calls a previous owner left in progress, from the raw event log (not in
    /// demo mode: a fresh simulator never continues an old call).
    pub resume: bool,
    /// `[pbx.cdr]` readers: what fell in a gap of the event stream.
    pub cdr: cdr::CdrSources,
    /// `[pbx.tracker]` of each PBX, by name (a PBX not in it: the defaults).
    pub trackers: Arc<HashMap<String, TrackerConfig>>,
}

impl Pipeline {
    /// How `pbx`'s tracker tells phones from trunks.
    fn tracker_config(&self, pbx: &str) -> TrackerConfig {
        self.trackers.get(pbx).cloned().unwrap_or_default()
    }
}

/// How far back the raw event log is searched for calls to resume: longer than any call.
const RESUME_WINDOW: TimeDelta = TimeDelta::hours(4);

/// One PBX: AMI events -> tracker -> live events and journal, until `stop` resolves. Then it
/// stops reading AMI, tracks what was already read, and returns once the calls that ended
/// are journaled and the raw events written: what the next owner resumes from.
pub async fn track(
    pbx: String,
    client: AmiClient,
    mut events: mpsc::Receiver<LinkEvent>,
    pipeline: Pipeline,
    stop: impl std::future::Future<Output = ()>,
) {
    // Finished calls go to their own writer task so a slow disk never stalls tracking.
    let (journal, journal_done) =
        spawn_journal_writer(pipeline.store.clone(), &pbx, pipeline.crms.clone());
    let (raw_log, raw_log_done) =
        spawn_raw_event_writer(pipeline.store.clone(), &pbx, pipeline.raw_events);
    let mut pbx = PbxTracking {
        tracker: Tracker::new(pipeline.tracker_config(&pbx)),
        cdr: cdr::GapRepair::new(&pbx, &pipeline, journal.clone()),
        // Handles made once: the per-event cost is an atomic add, not a registry lookup.
        events_total: metrics::counter!("pbxlink_ami_events_total", "pbx" => pbx.clone()),
        connected: metrics::gauge!("pbxlink_ami_connected", "pbx" => pbx.clone()),
        active_calls: metrics::gauge!("pbxlink_active_calls", "pbx" => pbx.clone()),
        pbx,
        client: client.clone(),
        pipeline,
        journal,
        raw_log,
        seq: 0,
        snapshots: VecDeque::new(),
        logged_in_at: None,
    };
    // Down until the first login.
    pbx.pipeline.state.link_changed(&pbx.pbx, false);
    if pbx.pipeline.resume {
        pbx.resume().await;
    }
    tokio::pin!(stop);
    loop {
        let link_event = tokio::select! {
            biased;
            () = &mut stop => break,
            e = events.recv() => e,
        };
        let Some(link_event) = link_event else { break };
        if !pbx.handle(link_event, &mut events).await {
            return;
        }
    }
    // Stop reading AMI; what was read is still tracked and logged before the writers close.
    tracing::info!(pbx = pbx.pbx, "stopping: journaling the calls that ended");
    let drain = async {
        while let Some(link_event) = events.recv().await {
            if !pbx.handle(link_event, &mut events).await {
                break;
            }
        }
    };
    tokio::join!(client.shutdown(), drain);
    pbx.pipeline.state.link_untracked(&pbx.pbx);
    drop(pbx);
    let _ = tokio::join!(journal_done, raw_log_done);
}

/// One PBX's tracker and where its output goes.
struct PbxTracking {
    pbx: String,
    client: AmiClient,
    pipeline: Pipeline,
    tracker: Tracker,
    journal: mpsc::Sender<JournalItem>,
    raw_log: RawEventLog,
    /// Events received from the link so far (the raw log's sequence). The link is started
    /// with this tracking, so this is the count [`pbx::ami_client::InStream::events_before`] is measured in.
    seq: u64,
    /// State lists read after a login, each waiting for the event it was answered after.
    snapshots: VecDeque<(u64, Snapshot, ActionResult)>,
    /// When the last login happened (how long the reconciliation took is logged).
    logged_in_at: Option<std::time::Instant>,
    cdr: cdr::GapRepair,
    events_total: metrics::Counter,
    connected: metrics::Gauge,
    active_calls: metrics::Gauge,
}

impl PbxTracking {
    /// Tracks one link event; `false` when calls can no longer be journaled. `events` is
    /// the link's stream, read on while a login's state lists are awaited.
    async fn handle(
        &mut self,
        link_event: LinkEvent,
        events: &mut mpsc::Receiver<LinkEvent>,
    ) -> bool {
        match link_event {
            LinkEvent::Connected { ami_version } => {
                let pbx = &self.pbx;
                tracing::info!(pbx, ami_version, "AMI connected; resyncing live channels");
                self.logged_in_at = Some(std::time::Instant::now());
                self.connected.set(1.0);
                self.pipeline.state.link_changed(pbx, true);
                return self.read_snapshots(events).await;
            }
            LinkEvent::Disconnected { reason } => {
                let pbx = &self.pbx;
                tracing::warn!(pbx, %reason, "AMI link down; reconnecting");
                // Events are missed from here until the next login's channel list.
                self.tracker.link_down(Utc::now());
                self.connected.set(0.0);
                self.pipeline.state.link_changed(pbx, false);
                // Each answer came before its connection ended, so all were applied by now;
                // none may wait into the next connection's stream.
                self.snapshots.clear();
            }
            LinkEvent::Event(msg) => {
                self.observe(&msg);
                if is_endpoint_reload(&msg) {
                    // Endpoints may have come, gone or changed their caller ID.
                    let mut held = Vec::new();
                    self.learn_endpoints(events, &mut held).await;
                    return self.track_held(held, events).await;
                }
            }
        }
        self.flush().await
    }

    /// Feeds one AMI event to the tracker, presence and the raw log.
    fn observe(&mut self, msg: &Message) {
        let now = Utc::now();
        self.tracker.handle(now, msg);
        self.pipeline.live.presence_event(&self.pbx, msg);
        self.events_total.increment(1);
        self.seq += 1;
        self.raw_log.log(&self.pbx, self.seq, now, msg);
        self.apply_due_snapshots();
    }

    /// Publishes the tracker's live events and journals its finished calls; `false` when
    /// calls can no longer be journaled.
    async fn flush(&mut self) -> bool {
        while let Some(ev) = self.tracker.poll_event() {
            if !self.queue_live_steps(&ev).await {
                return false;
            }
            self.pipeline.live.publish(&self.pbx, ev);
        }
        self.journal_finished().await
    }

    /// After a (re)connect, reads which channels exist (`Status` for the number each was
    /// dialed with, then `CoreShowChannels` for state, bridges and age: the tracker
    /// reconciles with them, so calls that went on while the link was down are neither lost
    /// nor invented), every hint's and queue member's state (with the paused flag), then
    /// the PBX's endpoints (who is a phone, see [`Self::learn_endpoints`]). Each state list
    /// is applied where it sits in the event stream:
    /// Asterisk sent the events before it first, and a channel list applied ahead of them
    /// would end, unanswered, a call they answer and hang up. Events keep being read (and
    /// held) meanwhile: a full queue must not keep the link from reading the answer.
    async fn read_snapshots(&mut self, events: &mut mpsc::Receiver<LinkEvent>) -> bool {
        let presence = presence_reads().map(|action| (action, Snapshot::Presence));
        // `Status` first: the tracker keeps its numbers for the channel list that follows,
        // which is where it reconciles.
        let channels = [
            (Action::status(), Snapshot::Channels),
            (Action::core_show_channels(), Snapshot::Channels),
        ];
        let reads = channels.into_iter().chain(presence);
        let mut held = Vec::new();
        let mut link_changed = false;
        for (action, snapshot) in reads {
            if link_changed {
                break;
            }
            let name = action.name().to_owned();
            let client = self.client.clone();
            let answer = holding_events(client.send_in_stream(action), events, &mut held).await;
            link_changed = answer.is_none();
            match answer {
                Some(Ok(answer)) => {
                    self.snapshots
                        .push_back((answer.events_before, snapshot, answer.result))
                }
                Some(Err(e)) => {
                    tracing::warn!(pbx = self.pbx, action = name, error = %e, "resync read failed; tracking from the events alone")
                }
                None => break,
            }
            // Track what came meanwhile now: the channel list is applied at its place
            // without waiting for the presence reads (thousands of hints can take 100s of ms).
            self.apply_due_snapshots();
            for link_event in std::mem::take(&mut held) {
                // Only events are held while the link stands (a link change breaks above).
                if let LinkEvent::Event(msg) = link_event {
                    self.observe(&msg);
                    if !self.flush().await {
                        return false;
                    }
                }
            }
        }
        // The endpoints last: a call that ends while they are read would, with its channel
        // list asked after them, be lost (begun in the gap, gone before listed). Until
        // then the tracker knows the endpoints from the events (and, after a restart, from
        // the raw log it resumed).
        if !link_changed {
            self.learn_endpoints(events, &mut held).await;
        }
        self.apply_due_snapshots();
        self.track_held(held, events).await
    }

    /// Tracks the link events held while an answer was awaited, in order.
    async fn track_held(
        &mut self,
        held: Vec<LinkEvent>,
        events: &mut mpsc::Receiver<LinkEvent>,
    ) -> bool {
        for link_event in held {
            match link_event {
                LinkEvent::Event(msg) => {
                    self.observe(&msg);
                    if !self.flush().await {
                        return false;
                    }
                }
                other => return Box::pin(self.handle(other, events)).await,
            }
        }
        self.flush().await
    }

    /// Reads what the PBX says of its endpoints into the tracker (at login, and when the PBX
    /// reloads its configuration). `false` when the link changed meanwhile.
    async fn learn_endpoints(
        &mut self,
        events: &mut mpsc::Receiver<LinkEvent>,
        held: &mut Vec<LinkEvent>,
    ) -> bool {
        let client = self.client.clone();
        let Some(details) =
            holding_events(pbx::endpoints::read(&client, &self.pbx), events, held).await
        else {
            return false;
        };
        let now = Utc::now();
        for detail in &details {
            self.tracker.handle(now, detail);
        }
        tracing::debug!(
            pbx = self.pbx,
            endpoints = details.len(),
            "read the PBX's endpoints"
        );
        true
    }

    /// Applies the state lists whose events before them are all tracked.
    fn apply_due_snapshots(&mut self) {
        while self
            .snapshots
            .front()
            .is_some_and(|(events_before, ..)| *events_before <= self.seq)
        {
            let Some((_, snapshot, result)) = self.snapshots.pop_front() else {
                break;
            };
            match snapshot {
                Snapshot::Channels => {
                    let now = Utc::now();
                    for item in result.items.iter().chain(&result.complete) {
                        self.tracker.handle(now, item);
                    }
                    // Logged like events: a call taken in from the list has no Newchannel
                    // in the log, and a restart rebuilds it from these (`resume`).
                    for item in &result.items {
                        self.raw_log.log(&self.pbx, self.seq, now, item);
                    }
                    if let Some(resync) = self.tracker.take_resync() {
                        self.log_resync(&resync);
                        if let Some(gap) = resync.gap {
                            let live = result
                                .items
                                .iter()
                                .filter_map(|item| item.get("Linkedid"))
                                .map(str::to_owned)
                                .collect();
                            self.cdr.gap_closed(gap, live, self.tracker.party_config());
                        }
                    }
                }
                Snapshot::Presence => self
                    .pipeline
                    .state
                    .presence_resync(&self.pbx, &result.items),
            }
        }
    }

    /// What the reconciliation after a login found, and how long after the login it was
    /// done (`bench/gap.sh` reads this line).
    fn log_resync(&self, resync: &calls::Resync) {
        let since_login_ms = self.logged_in_at.map(|t| t.elapsed().as_secs_f64() * 1e3);
        let gap_seconds = resync
            .gap
            .map(|g| (g.to - g.from).num_milliseconds() as f64 / 1e3);
        tracing::info!(
            pbx = self.pbx,
            listed = resync.listed,
            ended_in_gap = resync.ended,
            taken_in = resync.taken_in,
            answered_in_gap = resync.answered,
            gap_seconds,
            since_login_ms,
            calls = self.tracker.calls_in_progress(),
            "reconciled with the PBX's channel list"
        );
    }

    /// Publishes the live events of calls replayed from the raw log: the steps come out as
    /// before the restart (same keys, queued once).
    async fn publish_resumed(&mut self) {
        while let Some(ev) = self.tracker.poll_event() {
            self.queue_live_steps(&ev).await;
            self.pipeline.live.publish_local(&self.pbx, ev);
        }
    }

    /// Queues the CRM steps a live call event gives (Bitrix24 register, cards) through the
    /// journal writer, in order with the call's record; `false` if the writer has stopped.
    async fn queue_live_steps(&self, event: &calls::CallEvent) -> bool {
        let rows = delivery::outbox::plan_event_all(&self.pipeline.crms, &self.pbx, event);
        if rows.is_empty() {
            return true;
        }
        let item = JournalItem::Live {
            call_id: event.call_id.clone(),
            rows,
        };
        if self.journal.send(item).await.is_err() {
            tracing::error!(
                pbx = self.pbx,
                "journal writer stopped; no more calls can be saved"
            );
            return false;
        }
        true
    }

    /// Sends the calls that ended to the journal writer; `false` if it has stopped.
    async fn journal_finished(&mut self) -> bool {
        while let Some(record) = self.tracker.poll_record() {
            let tracker = &self.tracker;
            let Some(record) = self.cdr.take_gapped(record, || tracker.party_config()) else {
                continue;
            };
            if self.journal.send(JournalItem::Call(record)).await.is_err() {
                tracing::error!(
                    pbx = self.pbx,
                    "journal writer stopped; no more calls can be saved"
                );
                return false;
            }
        }
        self.active_calls
            .set(self.tracker.calls_in_progress() as f64);
        true
    }

    /// Replays the logged events of calls that are not in the journal (a previous owner was
    /// tracking them when it died or stopped), so they end here instead of being lost. The
    /// resync after login then reconciles them with the PBX's channels: the gap runs from
    /// the last logged event (the last moment pbxlink was known to listen) to that login.
    async fn resume(&mut self) {
        let since = Utc::now() - RESUME_WINDOW;
        let logged = match self
            .pipeline
            .store
            .unfinished_call_events(&self.pbx, since)
            .await
        {
            Ok(logged) => logged,
            Err(e) => {
                tracing::error!(pbx = self.pbx, error = %e, "cannot read the raw event log; calls in progress are not resumed");
                return;
            }
        };
        // A channel list read at a login is logged item by item (no Complete: it has no
        // Linkedid); it is whole where the items stop. It closed the gap before that login,
        // which opened after the call's previous event: replayed without that gap, a call
        // the list no longer had would end at the list, unflagged, as if seen ending.
        let mut listing_at = None;
        let mut previous = None;
        for event in &logged {
            let Some(object) = event.message.as_object() else {
                continue;
            };
            let msg = sim::replay::message_from_json(object);
            // (`Status` items only note numbers for the list that follows: not the list.)
            let listing = msg.event() == Some("CoreShowChannel");
            if let (Some(at), false) = (listing_at, listing) {
                self.tracker.handle(at, &listing_complete());
            }
            if listing && listing_at.is_none() {
                self.tracker
                    .link_down(previous.unwrap_or(event.received_at));
            }
            previous = Some(event.received_at);
            listing_at = listing.then_some(event.received_at);
            self.tracker.handle(event.received_at, &msg);
            self.publish_resumed().await;
        }
        if let Some(at) = listing_at {
            self.tracker.handle(at, &listing_complete());
        }
        self.publish_resumed().await;
        self.journal_finished().await;
        // The gap since the last logged event closes at the login's channel list. (Not
        // before the replay: a listing replayed from the log must not close it.)
        match self.pipeline.store.last_event_at(&self.pbx).await {
            Ok(Some(last)) => self.tracker.link_down(last),
            Ok(None) => {}
            Err(e) => tracing::error!(pbx = self.pbx, error = %e, "cannot read the raw event log"),
        }
        if !logged.is_empty() {
            tracing::info!(
                pbx = self.pbx,
                events = logged.len(),
                calls = self.tracker.calls_in_progress(),
                "resumed calls in progress from the raw event log"
            );
        }
    }
}

/// The end of a channel list replayed from the raw log.
fn listing_complete() -> Message {
    Message::from_pairs([("Event", "CoreShowChannelsComplete")])
}

/// What the journal writer saves: a finished call, or CRM steps of a call in progress.
enum JournalItem {
    Call(calls::CallRecord),
    Live {
        call_id: String,
        rows: Vec<store::NewOutboxRow>,
    },
}

/// The journal writer: finished calls and live CRM steps, saved in batches (one transaction
/// each), in order. A failed batch is retried until the database takes it: calls wait, they
/// are not dropped.
fn spawn_journal_writer(
    store: Store,
    pbx: &str,
    crms: Arc<[delivery::outbox::Crm]>,
) -> (mpsc::Sender<JournalItem>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<JournalItem>(JOURNAL_QUEUE);
    let pbx = pbx.to_owned();
    let journaled = metrics::counter!("pbxlink_calls_journaled_total", "pbx" => pbx.clone());
    let errors = metrics::counter!("pbxlink_journal_errors_total", "pbx" => pbx.clone());
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(JOURNAL_BATCH);
        while rx.recv_many(&mut batch, JOURNAL_BATCH).await > 0 {
            let mut live = Vec::new();
            let mut calls = Vec::new();
            for item in &batch {
                match item {
                    JournalItem::Call(call) => calls.push(call),
                    JournalItem::Live { call_id, rows } => live.push((call_id.as_str(), &rows[..])),
                }
            }
            // CRM deliveries are queued in the call's own transaction: never one without the other.
            let outbox: Vec<_> = calls
                .iter()
                .map(|c| delivery::outbox::plan_all(&crms, &pbx, c))
                .collect();
            let rows: Vec<_> = calls
                .iter()
                .zip(&outbox)
                .map(|(c, o)| (*c, &o[..]))
                .collect();
            let mut delay = Duration::from_millis(100);
            while let Err(e) = store.save_journal(&pbx, &live, &rows, Utc::now()).await {
                errors.increment(1);
                tracing::error!(pbx, calls = rows.len(), error = %e, "cannot journal calls; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            journaled.increment(rows.len() as u64);
            if !live.is_empty() || outbox.iter().any(|o| !o.is_empty()) {
                delivery::outbox::rows_queued(&crms);
            }
            batch.clear();
        }
    });
    (tx, task)
}

/// The PBX reloaded its SIP configuration (or all of it): `Reload` with `Module:
/// res_pjsip.so`, `chan_sip.so`, or none.
fn is_endpoint_reload(msg: &Message) -> bool {
    msg.event() == Some("Reload")
        && msg
            .get("Module")
            .is_none_or(|m| m.contains("pjsip") || m.contains("chan_sip"))
}

/// Awaits `answer` while reading the link's events on into `held`: a full queue must not
/// keep the link from reading the answer. `None` when the link changed (or ended) meanwhile:
/// the answer is moot, the next login reads it again.
async fn holding_events<F: std::future::Future>(
    answer: F,
    events: &mut mpsc::Receiver<LinkEvent>,
    held: &mut Vec<LinkEvent>,
) -> Option<F::Output> {
    tokio::pin!(answer);
    loop {
        tokio::select! {
            answer = &mut answer => return Some(answer),
            link_event = events.recv() => match link_event {
                Some(LinkEvent::Event(msg)) => held.push(LinkEvent::Event(msg)),
                Some(other) => {
                    held.push(other);
                    return None;
                }
                None => return None,
            },
        }
    }
}

/// What a state list read after a login sets.
#[derive(Debug, Clone, Copy)]
enum Snapshot {
    /// `Status`, `CoreShowChannels`: the tracker's channels.
    Channels,
    /// `ExtensionStateList`, `QueueStatus`: extension and queue member states.
    Presence,
}

/// What presence is read from after a login: every hint's state and every queue member
/// (with its paused flag).
fn presence_reads() -> [Action; 2] {
    [Action::extension_state_list(), Action::queue_status(None)]
}

/// After a (re)connect, reads [`presence_reads`] and applies them at once (a link with no
/// events to order them with), so presence is right from the start and after changes
/// missed while away.
pub(crate) async fn resync_presence(client: &AmiClient, state: &AppState, pbx: &str) {
    for action in presence_reads() {
        let name = action.name().to_owned();
        match client.send(action).await {
            Ok(result) => state.presence_resync(pbx, &result.items),
            Err(e) => tracing::warn!(pbx, action = name, error = %e, "presence resync failed"),
        }
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
        // Only call events: the log exists to replay and debug calls. A dial that
        // `Originate` started (click-to-call) has no calling channel: only `DestLinkedid`.
        let Some(linkedid) = msg.get("Linkedid").or_else(|| msg.get("DestLinkedid")) else {
            return;
        };
        if !self.keep.keeps(msg) {
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

/// The raw log and its writer task, which ends once the log is dropped and written out.
fn spawn_raw_event_writer(
    store: Store,
    pbx: &str,
    keep: RawEvents,
) -> (RawEventLog, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<RawEvent>(RAW_EVENT_QUEUE);
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(RAW_EVENT_BATCH);
        while rx.recv_many(&mut batch, RAW_EVENT_BATCH).await > 0 {
            if let Err(e) = store.append_events(&batch).await {
                tracing::error!(error = %e, "cannot write raw AMI events");
            }
            batch.clear();
        }
    });
    let log = RawEventLog {
        tx,
        keep,
        dropped: metrics::counter!("pbxlink_raw_events_dropped_total", "pbx" => pbx.to_owned()),
        dropped_so_far: 0,
    };
    (log, task)
}

#[cfg(test)]
mod tests;
