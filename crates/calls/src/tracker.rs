//! The call tracker: AMI events in (with the `now` the caller vouches for), call events and
//! finished call records out. See the crate docs for what a call is.

use std::collections::VecDeque;
use std::sync::Arc;

use ami::Message;
use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;

use crate::party::{local_partner, Directory, Kind, TrackerConfig};
use crate::record::{
    CallEvent, CallEventKind, CallRecord, Direction, Disposition, Gap, Provenance, Source,
    TimelineEntry, Transfer, TransferKind,
};

mod resync;

pub use resync::Resync;

/// Turns the AMI event stream into calls. Pure: no clock, no I/O.
#[derive(Debug, Default)]
pub struct Tracker {
    config: TrackerConfig,
    /// What is known of the PBX's endpoints: phones, trunks.
    directory: Directory,
    channels: FxHashMap<String, Channel>,
    /// Keyed by Linkedid; channels share the key (`Arc`: no allocation per lookup).
    calls: FxHashMap<Arc<str>, Call>,
    events: VecDeque<CallEvent>,
    records: VecDeque<CallRecord>,
    /// Channel names listed by a `CoreShowChannels` answer still being received.
    snapshot: Option<Snapshot>,
    /// Channels created so far; a snapshot only judges channels older than itself.
    created: u64,
    /// The start of a gap in the event stream not yet closed by a listing
    /// ([`Tracker::link_down`]).
    gap_from: Option<DateTime<Utc>>,
    /// `DNID` of the channels a `Status` answer listed, for the listing that follows.
    dialed_ids: FxHashMap<String, String>,
    /// What the last reconciliation found, until taken.
    resync: Option<Resync>,
}

/// A `CoreShowChannels` listing being received.
#[derive(Debug, Default)]
struct Snapshot {
    listed: Vec<Message>,
    /// `Tracker::created` when the listing began.
    since: u64,
}

#[derive(Debug)]
struct Channel {
    /// The call this channel belongs to (its Linkedid, or the picked-up call after Pickup).
    call: Arc<str>,
    kind: Kind,
    /// The number an outbound trunk leg was dialed with (`15557654321@carrier`).
    dialed: Option<String>,
    caller_num: Option<String>,
    /// A Local `;1` whose `;2` dialed onwards: the real party is further down.
    hop: bool,
    /// A Local `;1` whose `;2` played the busy tone: a dialplan-simulated busy phone.
    busy_tone: bool,
    up_at: Option<DateTime<Utc>>,
    /// Order of creation (see `Tracker::created`).
    seq: u64,
    /// Asterisk reuses channel names after a restart; the Uniqueid tells them apart.
    uniqueid: Box<str>,
    /// The bridge it is in ([`bridge_key`] of `BridgeUniqueid`): after a gap, who the caller
    /// talks to.
    bridge: Option<u64>,
}

impl Channel {
    /// The extension or external number this channel stands for.
    fn party(&self) -> Option<&str> {
        match &self.kind {
            Kind::Phone(ext) => Some(ext),
            Kind::Trunk => self.dialed.as_deref().or(self.caller_num.as_deref()),
            Kind::Local { number, .. } if !number.is_empty() => Some(number),
            _ => None,
        }
    }

    fn owned_party(&self) -> Option<String> {
        self.party().map(str::to_owned)
    }
}

#[derive(Debug)]
struct Call {
    id: Arc<str>,
    /// The channel that started the call and, for a Local origin, its other half: the
    /// caller's side. Its dials are the call's own (not a ring group member's).
    origin: String,
    origin_partner: Option<String>,
    inbound: bool,
    /// A trunk (or an external-number Local) was dialed.
    external: bool,
    started_at: DateTime<Utc>,
    /// When the caller began waiting for a person: the start, or leaving the IVR menu.
    waiting_from: DateTime<Utc>,
    from: Option<String>,
    to: Option<String>,
    caller_name: Option<String>,
    answered_at: Option<DateTime<Utc>>,
    answered_by: Option<String>,
    /// When the conversation began (a person answered / joined the conference).
    talk_from: Option<DateTime<Utc>>,
    /// The party the caller talks to now (changes with transfers).
    current: Option<String>,
    rang: Vec<String>,
    ringing: Vec<String>,
    transfers: Vec<Transfer>,
    /// A transfer event was seen; the caller's next dial carries it out (not a new transfer).
    transfer_pending: bool,
    queue: Option<String>,
    recording: Option<String>,
    legs: Vec<String>,
    timeline: Vec<TimelineEntry>,
    live: usize,
    /// DialStatus of the caller side's last dial, and when it ended (the ringing stopped).
    last_dial: Option<String>,
    last_dial_end: Option<DateTime<Utc>>,
    busy_app: bool,
    failed_app: bool,
    abandoned: bool,
    /// In the IVR menu now / was in it (the menu is entered once per call).
    in_ivr: bool,
    ivr_seen: bool,
    /// Who hung up is in the timeline already.
    hangup_noted: bool,
    /// The caller hung up (rather than the PBX or the callee).
    caller_hung_up: bool,
    /// The PBX answered the caller's line itself (an IVR, a queue, an announcement) before
    /// any person did.
    pbx_answered: bool,
    /// `call.started` was emitted.
    announced: bool,
    /// An Originate is still ringing the caller's own side (the click-to-call agent).
    originating: bool,
    /// The start / the answer / the end happened while pbxlink received no events (see
    /// [`Gap`]).
    gaps: Vec<Gap>,
    started_in_gap: Option<Gap>,
    answered_in_gap: Option<Gap>,
    ended_in_gap: Option<Gap>,
}

impl Call {
    fn is_caller_side(&self, channel: &str) -> bool {
        self.origin == channel || self.origin_partner.as_deref() == Some(channel)
    }

    /// The caller's side: its first channel and, for a Local origin, the other half.
    fn caller_sides(&self) -> impl Iterator<Item = &str> + Clone {
        std::iter::once(self.origin.as_str()).chain(self.origin_partner.as_deref())
    }

    fn direction(&self) -> Direction {
        if self.inbound {
            Direction::Inbound
        } else if self.external {
            Direction::Outbound
        } else {
            Direction::Internal
        }
    }

    /// The caller chose in the menu and is sent on: the wait for a person starts now.
    fn leave_ivr(&mut self, now: DateTime<Utc>) {
        if self.in_ivr {
            self.in_ivr = false;
            self.waiting_from = now;
        }
    }

    fn note(&mut self, at: DateTime<Utc>, what: &str, detail: String) {
        self.timeline.push(TimelineEntry {
            at,
            what: what.to_owned(),
            detail,
        });
    }

    fn disposition(&self) -> Disposition {
        if self.answered_by.is_some() {
            return Disposition::Answered;
        }
        // A queue call nobody answered is unanswered whether the caller left or the queue
        // gave up; after a gap its abandon may be among the events lost.
        if self.abandoned || (self.queue.is_some() && !self.gaps.is_empty()) {
            return Disposition::NoAnswer;
        }
        // `cancelled` is the caller giving up while phones rang, the PBX never having
        // answered. Once the PBX answered (an IVR, a queue, an announcement) and no person
        // did, the call went unanswered, whoever hung up.
        match self.last_dial.as_deref() {
            Some("BUSY") => Disposition::Busy,
            Some("NOANSWER") => Disposition::NoAnswer,
            Some("CANCEL") if self.pbx_answered => Disposition::NoAnswer,
            Some("CANCEL") => Disposition::Cancelled,
            Some("CONGESTION" | "CHANUNAVAIL" | "INVALIDARGS") => Disposition::Failed,
            _ if self.busy_app => Disposition::Busy,
            _ if self.failed_app => Disposition::Failed,
            _ if self.pbx_answered => Disposition::NoAnswer,
            // Nobody was tried and nothing answered: the PBX dropped the call (its end was
            // seen whole, and it was not the caller's), or the caller gave up before being
            // routed. Across a gap the caller's hangup request may be what was missed.
            _ if self.rang.is_empty()
                && self.hangup_noted
                && !self.caller_hung_up
                && self.gaps.is_empty() =>
            {
                Disposition::Failed
            }
            _ if self.rang.is_empty() => Disposition::Cancelled,
            _ => Disposition::NoAnswer,
        }
    }
}

/// The call-story line of a caller who hung up.
const CALLER_HUNG_UP: &str = "hung up by caller";

/// A call-story line saying who a channel was taken for, and why.
fn identified(channel: &str, kind: &Kind, reason: &str) -> String {
    let endpoint = channel.rsplit_once('-').map_or(channel, |(e, _)| e);
    match kind {
        Kind::Phone(ext) => format!("{endpoint} is extension {ext}: {reason}"),
        _ => format!("{endpoint} is a trunk: {reason}"),
    }
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty() && *s != "<unknown>")
}

/// The number in a trunk dial string: `15557654321@carrier` (PJSIP),
/// `carrier/15557654321` (chan_sip, IAX2), `carrier/sip:15557654321@10.0.0.1` (PJSIP URI).
fn dialed_number(dial: &str) -> &str {
    let user = dial.split('@').next().unwrap_or(dial);
    let user = user.rsplit('/').next().unwrap_or(user);
    ["sip:", "sips:", "tel:"]
        .iter()
        .find_map(|scheme| user.strip_prefix(scheme))
        .unwrap_or(user)
}

/// Whether two spellings name one number: the digits the phone dialed and the number an
/// outbound route sent (`918005551212` -> `18005551212`, `5551212` -> `18005551212`):
/// one ends with the other, or they share the last seven digits (`84951234567`,
/// `+74951234567`).
fn same_number(dialed: &str, sent: &str) -> bool {
    let digits = |s: &str| -> String { s.chars().filter(char::is_ascii_digit).collect() };
    let (a, b) = (digits(dialed), digits(sent));
    let (short, long) = if a.len() <= b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    if short.len() < 3 {
        return false;
    }
    long.ends_with(short.as_str())
        || (short.len() >= 7 && long[long.len() - 7..] == short[short.len() - 7..])
}

/// A bridge's id as a number: bridges are compared, never shown, and a number costs no
/// allocation per `BridgeEnter`.
fn bridge_key(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = rustc_hash::FxHasher::default();
    id.hash(&mut hasher);
    hasher.finish()
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    let ms = (to - from).num_milliseconds().max(0) as u64;
    (ms + 500) / 1000
}

impl Tracker {
    /// A tracker with the given configuration.
    pub fn new(config: TrackerConfig) -> Self {
        Tracker {
            config,
            ..Tracker::default()
        }
    }

    /// The next live call event, in order.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// The next finished call, in the order calls ended.
    pub fn poll_record(&mut self) -> Option<CallRecord> {
        self.records.pop_front()
    }

    /// The configuration with what the tracker learned of the PBX's endpoints added (see
    /// [`Directory::applied_to`]): for judging channel names outside the event stream.
    pub fn party_config(&self) -> TrackerConfig {
        self.directory.applied_to(&self.config)
    }

    /// Calls in progress (for metrics and bounded-memory checks).
    pub fn calls_in_progress(&self) -> usize {
        self.calls.len()
    }

    /// Feeds one AMI message. Anything that is not a call event is ignored cheaply.
    pub fn handle(&mut self, now: DateTime<Utc>, msg: &Message) {
        let Some(event) = msg.event() else {
            // The answer to our own CoreShowChannels: the listing starts here.
            if msg.get("EventList") == Some("start")
                && msg
                    .get("Message")
                    .is_some_and(|m| m.contains("Channels will follow"))
            {
                self.snapshot_start();
            }
            // The answer to our own `SIPshowpeer`: a chan_sip peer's configuration.
            if msg.get("Channeltype").is_some() {
                self.on_endpoint_detail(msg);
            }
            return;
        };
        match event {
            // ~75% of all events: look at one field and leave.
            "VarSet" => self.on_varset(now, msg),
            "Newexten" => self.on_newexten(now, msg),
            "Newchannel" => self.on_newchannel(now, msg),
            "Newstate" => self.on_newstate(now, msg),
            "DialBegin" => self.on_dial_begin(now, msg),
            "DialEnd" => self.on_dial_end(now, msg),
            "Hangup" => self.on_hangup(now, msg),
            "HangupRequest" => self.on_hangup_request(now, msg),
            "Pickup" => self.on_pickup(now, msg),
            "BlindTransfer" => self.on_blind_transfer(now, msg),
            "AttendedTransfer" => self.on_attended_transfer(now, msg),
            "ConfbridgeJoin" => self.on_conference_join(now, msg),
            "QueueCallerJoin" => self.on_queue(now, msg, false),
            "QueueCallerAbandon" => self.on_queue(now, msg, true),
            "DTMFEnd" => self.on_dtmf(now, msg),
            "BridgeEnter" => self.on_bridge(now, msg, true),
            "BridgeLeave" => self.on_bridge(now, msg, false),
            "CoreShowChannel" => self.on_snapshot_channel(msg),
            "Status" => self.on_status(msg),
            "CoreShowChannelsComplete" => self.on_snapshot_complete(now),
            "EndpointDetail" => self.on_endpoint_detail(msg),
            _ => {}
        }
    }

    /// An endpoint's configuration, as the PBX lists it (`PJSIPShowEndpoint`'s
    /// `EndpointDetail`, `SIPshowpeer`'s answer): its caller ID says phone or trunk.
    fn on_endpoint_detail(&mut self, msg: &Message) {
        if let (Some(endpoint), Some(callerid)) = (msg.get("ObjectName"), msg.get("Callerid")) {
            self.directory.configured(&self.config, endpoint, callerid);
        }
    }

    /// End of input: every call still in progress ends now.
    pub fn flush(&mut self, now: DateTime<Utc>) {
        let mut open: Vec<Call> = self.calls.drain().map(|(_, c)| c).collect();
        open.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        self.channels.clear();
        for call in open {
            self.finish(call, now);
        }
    }

    fn call_of(&mut self, channel: &str) -> Option<&mut Call> {
        let id = &self.channels.get(channel)?.call;
        self.calls.get_mut(id)
    }

    fn emit(&mut self, call_id: &str, at: DateTime<Utc>, kind: CallEventKind) {
        if let Some(call) = self.calls.get_mut(call_id) {
            Self::announce(&mut self.events, call, at);
        }
        self.events.push_back(CallEvent {
            call_id: call_id.to_owned(),
            at,
            kind,
        });
    }

    /// `call.started` goes out once, before anything else about the call.
    fn announce(events: &mut VecDeque<CallEvent>, call: &mut Call, at: DateTime<Utc>) {
        if call.announced {
            return;
        }
        call.announced = true;
        events.push_back(CallEvent {
            call_id: call.id.to_string(),
            at,
            kind: CallEventKind::Started {
                direction: call.direction(),
                from: call.from.clone(),
                to: call.to.clone(),
            },
        });
    }

    fn on_varset(&mut self, now: DateTime<Utc>, msg: &Message) {
        if !is_recording_var(msg) {
            return;
        }
        let (Some(channel), Some(file)) = (msg.get("Channel"), non_empty(msg.get_last("Value")))
        else {
            return;
        };
        if let Some(call) = self.call_of(channel) {
            if call.recording.is_none() {
                call.recording = Some(file.to_owned());
                call.note(now, "recording", format!("recording started: {file}"));
            }
        }
    }

    fn on_newexten(&mut self, now: DateTime<Utc>, msg: &Message) {
        let Some(app) = tracked_app(msg) else {
            return;
        };
        let Some(channel) = msg.get("Channel") else {
            return;
        };
        if app == "Busy" && channel.ends_with(";2") {
            if let Some(one) = local_partner(channel).and_then(|p| self.channels.get_mut(&p)) {
                one.busy_tone = true;
            }
        }
        let Some(call) = self.call_of(channel) else {
            return;
        };
        if !call.is_caller_side(channel) {
            return;
        }
        match app {
            // Busy/congestion tone without a dial (DND): the caller stops waiting now.
            "Busy" => {
                call.busy_app = true;
                call.last_dial_end.get_or_insert(now);
            }
            "Congestion" => {
                call.failed_app = true;
                call.last_dial_end.get_or_insert(now);
            }
            _ if !call.ivr_seen && call.answered_by.is_none() => {
                call.ivr_seen = true;
                call.in_ivr = true;
                call.note(now, "ivr", "entered IVR".to_owned());
            }
            _ => {}
        }
    }

    fn on_newchannel(&mut self, now: DateTime<Utc>, msg: &Message) {
        let (Some(name), Some(uniqueid), Some(linkedid)) =
            (msg.get("Channel"), msg.get("Uniqueid"), msg.get("Linkedid"))
        else {
            return;
        };
        if let Some(old) = self.channels.remove(name) {
            // Names are unique among live channels: one reused (the PBX restarted, its
            // counters too) means the old channel is gone, its Hangup unseen.
            self.hang_up_unseen(now, name, old);
        }
        let caller_num = non_empty(msg.get("CallerIDNum")).map(str::to_owned);
        // A channel the PBX made to dial out starts Down; one a call came in on, ringing.
        let dialed = msg.get("ChannelState") == Some("0");
        let (kind, rule) =
            self.directory
                .classify(&self.config, name, caller_num.as_deref(), dialed);
        if !self.calls.contains_key(linkedid) {
            if uniqueid != linkedid {
                // A leg of a call whose start we did not see (attached mid-call): not ours.
                return;
            }
            let exten = non_empty(msg.get("Exten")).filter(|e| *e != "s");
            let caller_name = non_empty(msg.get("CallerIDName"));
            self.start_call(
                now,
                linkedid,
                name,
                &kind,
                caller_num.clone(),
                caller_name,
                exten,
            );
        }
        let Some(call) = self.calls.get_mut(linkedid) else {
            return;
        };
        self.created += 1;
        call.live += 1;
        call.legs.push(name.to_owned());
        if let Some(reason) = rule.reason() {
            // Once per endpoint and call: a phone's second channel says nothing new.
            let detail = identified(name, &kind, reason);
            if !call.timeline.iter().any(|e| e.detail == detail) {
                call.note(now, "party", detail);
            }
        }
        let call = call.id.clone();
        self.channels.insert(
            name.to_owned(),
            Channel {
                call,
                kind,
                dialed: None,
                caller_num,
                hop: false,
                busy_tone: false,
                up_at: None,
                seq: self.created,
                uniqueid: uniqueid.into(),
                bridge: None,
            },
        );
    }

    /// A call starts with its first channel `name`, which dialed `exten`.
    #[allow(clippy::too_many_arguments)]
    fn start_call(
        &mut self,
        now: DateTime<Utc>,
        id: &str,
        name: &str,
        kind: &Kind,
        caller_num: Option<String>,
        caller_name: Option<&str>,
        exten: Option<&str>,
    ) {
        let id: Arc<str> = Arc::from(id);
        let exten = exten.map(str::to_owned);
        let (inbound, from, to) = match kind {
            Kind::Trunk => (true, caller_num, exten),
            Kind::Local { number, .. } if self.config.is_extension(number) => {
                (false, Some(number.clone()), None)
            }
            Kind::Local { number, .. } => (true, caller_num, Some(number.clone())),
            Kind::Phone(ext) => (false, Some(ext.clone()), exten),
            Kind::Other => (false, caller_num, exten),
        };
        let mut call = Call {
            id: id.clone(),
            origin: name.to_owned(),
            origin_partner: local_partner(name),
            inbound,
            external: false,
            started_at: now,
            waiting_from: now,
            from,
            to,
            caller_name: caller_name.map(str::to_owned),
            answered_at: None,
            answered_by: None,
            talk_from: None,
            current: None,
            rang: Vec::new(),
            ringing: Vec::new(),
            transfers: Vec::new(),
            transfer_pending: false,
            queue: None,
            recording: None,
            legs: Vec::new(),
            timeline: Vec::new(),
            live: 0,
            last_dial: None,
            last_dial_end: None,
            busy_app: false,
            failed_app: false,
            abandoned: false,
            in_ivr: false,
            ivr_seen: false,
            hangup_noted: false,
            caller_hung_up: false,
            pbx_answered: false,
            announced: false,
            originating: false,
            gaps: Vec::new(),
            started_in_gap: None,
            answered_in_gap: None,
            ended_in_gap: None,
        };
        let detail = match (&call.from, &call.to) {
            (Some(from), Some(to)) => format!("call from {from} to {to}"),
            (Some(from), None) => format!("call from {from}"),
            (None, Some(to)) => format!("call to {to}"),
            (None, None) => "call".to_owned(),
        };
        call.note(now, "started", detail);
        // A phone dialing a feature code (`*8` pickup) is announced only once it does
        // something call-like: a pickup makes it a leg of the picked-up call instead.
        let feature_code = matches!(kind, Kind::Phone(_))
            && call.to.as_deref().is_some_and(|t| t.starts_with('*'));
        if !feature_code {
            Self::announce(&mut self.events, &mut call, now);
        }
        self.calls.insert(id, call);
    }

    fn on_newstate(&mut self, now: DateTime<Utc>, msg: &Message) {
        let Some(name) = msg.get("Channel") else {
            return;
        };
        let Some(chan) = self.channels.get_mut(name) else {
            return;
        };
        let state = msg.get("ChannelStateDesc").unwrap_or("");
        if state == "Up" && chan.up_at.is_none() {
            chan.up_at = Some(now);
        }
        if chan.caller_num.is_none() {
            chan.caller_num = non_empty(msg.get("CallerIDNum")).map(str::to_owned);
        }
        // A Local `;1` that rings without dialing onwards is the party itself (a phone
        // simulated in dialplan, an app): it rang.
        let rings = match &chan.kind {
            Kind::Local { number, half: 1 } if state == "Ringing" && !chan.hop => {
                self.config.is_extension(number).then(|| number.clone())
            }
            _ => None,
        };
        let call_id = chan.call.clone();
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if call.from.is_none() && call.is_caller_side(name) {
            call.from = chan.caller_num.clone();
        }
        // The caller's line answered with no person on it (the click-to-call agent
        // answering their own leg is not the PBX answering).
        if state == "Up"
            && call.is_caller_side(name)
            && call.answered_by.is_none()
            && !call.originating
        {
            call.pbx_answered = true;
        }
        if let Some(ext) = rings {
            self.ring(now, &call_id, ext);
        }
    }

    /// `ext` is ringing now in `call_id`.
    fn ring(&mut self, now: DateTime<Utc>, call_id: &str, ext: String) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.ringing.contains(&ext) {
            return;
        }
        let detail = format!("rang {}", self.config.describe(&ext));
        if !call.rang.contains(&ext) {
            call.rang.push(ext.clone());
        }
        call.ringing.push(ext);
        call.note(now, "ringing", detail);
        let kind = CallEventKind::Ringing {
            extensions: call.ringing.clone(),
        };
        self.emit(call_id, now, kind);
    }

    fn on_dial_begin(&mut self, now: DateTime<Utc>, msg: &Message) {
        let Some(dest) = msg.get("DestChannel") else {
            return;
        };
        let dialer = msg.get("Channel");
        let dial = msg.get("DialString").unwrap_or("");
        let Some(dest_chan) = self.channels.get_mut(dest) else {
            return;
        };
        // A phone dialed with a number: a trunk, whatever its caller ID suggested.
        let reidentified = matches!(dest_chan.kind, Kind::Phone(_))
            && self.directory.dialed(&self.config, dest, dial);
        if reidentified {
            dest_chan.kind = Kind::Trunk;
        }
        let mut external = false;
        let mut trunk_number = None;
        match &dest_chan.kind {
            Kind::Trunk => {
                let number = dialed_number(dial);
                if !number.is_empty() {
                    dest_chan.dialed = Some(number.to_owned());
                    trunk_number = Some(number.to_owned());
                }
                external = true;
            }
            Kind::Local { number, .. } => external = !self.config.is_extension(number),
            _ => {}
        }
        let rings = match &dest_chan.kind {
            Kind::Phone(ext) => Some(ext.clone()),
            _ => None,
        };
        let dest_party = dest_chan.owned_party();
        let call_id = dest_chan.call.clone();
        if let Some(dialer) = dialer {
            if let Some(partner) = local_partner(dialer) {
                if let Some(one) = self.channels.get_mut(&partner) {
                    one.hop = matches!(one.kind, Kind::Local { half: 1, .. });
                }
            }
        }
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if reidentified {
            let reason = "it was dialed with a number";
            call.note(now, "party", identified(dest, &Kind::Trunk, reason));
        }
        // An outbound route that strips or prepends digits: the call went to the number
        // that left on the trunk, not to the digits the phone dialed.
        if let Some(sent) = trunk_number.filter(|_| !call.inbound && call.answered_by.is_none()) {
            if call
                .to
                .as_deref()
                .is_some_and(|to| to != sent && same_number(to, &sent))
            {
                call.note(now, "dialed", format!("sent to the trunk as {sent}"));
                call.to = Some(sent);
            }
        }
        call.external |= external;
        if dialer.is_none() && call.is_caller_side(dest) {
            // Originate (click-to-call): until the agent leg answers, its ringing is the
            // agent's phone, not the call's destination.
            call.originating = true;
        }
        if dialer.is_some_and(|d| call.is_caller_side(d)) {
            call.leave_ivr(now);
            if call.to.is_none() && !call.originating {
                call.to = dest_party.clone();
            }
            if call.answered_by.is_some() {
                if call.transfer_pending {
                    call.transfer_pending = false;
                } else {
                    // The caller was moved on without a transfer event (AMI Redirect, a
                    // dialplan Goto): a blind transfer by whoever they talked to.
                    let transfer = Transfer {
                        kind: TransferKind::Blind,
                        from: call.current.clone(),
                        to: dest_party,
                        at: now,
                    };
                    self.transferred(now, &call_id, transfer);
                }
            }
        }
        if let Some(ext) = rings {
            self.ring(now, &call_id, ext);
        }
    }

    fn on_dial_end(&mut self, now: DateTime<Utc>, msg: &Message) {
        let (Some(dest), Some(status)) = (msg.get("DestChannel"), msg.get("DialStatus")) else {
            return;
        };
        // The channel a dial ended with is a leg of the dialer's call: one from another
        // call is a picker whose Pickup event fell in a gap.
        let dialer_call = msg
            .get("Channel")
            .and_then(|d| self.channels.get(d))
            .map(|d| d.call.clone());
        if let Some(dialer_call) = dialer_call {
            if self
                .channels
                .get(dest)
                .is_some_and(|d| d.call != dialer_call)
            {
                self.move_channel(now, dest, &dialer_call);
            }
        }
        let Some(dest_chan) = self.channels.get(dest) else {
            return;
        };
        let party = dest_chan.owned_party();
        let trunk_undialed = matches!(dest_chan.kind, Kind::Trunk) && dest_chan.dialed.is_none();
        let hop = dest_chan.hop;
        let busy_local = match &dest_chan.kind {
            Kind::Local { number, half: 1 } if dest_chan.busy_tone && !hop => Some(number.clone()),
            _ => None,
        };
        let call_id = dest_chan.call.clone();
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if let Some(p) = &party {
            call.ringing.retain(|r| r != p);
        }
        // No Channel: the originate leg or the bridge core dialed; not the call's own dial.
        let Some(dialer) = msg.get("Channel") else {
            if call.is_caller_side(dest) {
                call.originating = false;
                if status == "ANSWER" {
                    // The agent took their click-to-call: from now on they wait for the
                    // called party.
                    call.waiting_from = now;
                }
            }
            return;
        };
        // A Local channel for an outside number dialing the trunk (a call forward): its
        // number is the party, should the trunk's own dial string be unknown.
        let dialer_number = match self.channels.get(dialer).map(|c| &c.kind) {
            Some(Kind::Local { number, .. }) if !self.config.is_extension(number) => {
                Some(number.clone()).filter(|n| !n.is_empty())
            }
            _ => None,
        };
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if call.is_caller_side(dialer) {
            call.last_dial = Some(status.to_owned());
            call.last_dial_end = Some(now);
        }
        match status {
            // The agent answering their own click-to-call is not the call being answered.
            "ANSWER" if !hop && !call.originating => {
                // An outside number whose dial string was not seen (its DialBegin fell in a
                // gap): the number the call was placed to.
                let party = match (trunk_undialed, dialer_number) {
                    (true, Some(number)) => Some(number),
                    (true, None) if !call.inbound => call.to.clone().or(party),
                    _ => party,
                };
                if let Some(p) = party {
                    self.answer(now, &call_id, p);
                }
            }
            // A dialplan-simulated phone that played busy was dialed like a SIP phone
            // that answered 486: it counts as rung. (A DND member that just hangs up
            // does not.)
            "BUSY" => {
                if let Some(ext) = busy_local.filter(|e| self.config.is_extension(e)) {
                    if !call.rang.contains(&ext) {
                        call.rang.push(ext);
                    }
                }
            }
            _ => {}
        }
    }

    fn answer(&mut self, now: DateTime<Utc>, call_id: &str, party: String) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.ringing.clear();
        call.current = Some(party.clone());
        let detail = format!("answered by {}", self.config.describe(&party));
        call.note(now, "answered", detail);
        if call.answered_by.is_none() {
            call.answered_by = Some(party.clone());
            call.answered_at = Some(now);
            call.talk_from = Some(now);
            self.emit(call_id, now, CallEventKind::Answered { by: Some(party) });
        }
    }

    fn transferred(&mut self, now: DateTime<Utc>, call_id: &str, transfer: Transfer) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let kind = match transfer.kind {
            TransferKind::Blind => "blind",
            TransferKind::Attended => "attended",
        };
        let detail = format!(
            "{kind} transfer from {} to {}",
            transfer.from.as_deref().unwrap_or("unknown"),
            transfer.to.as_deref().unwrap_or("unknown")
        );
        call.note(now, "transferred", detail);
        // From now on the caller's party is the target: the transferer hanging up does
        // not end the conversation.
        call.current = transfer.to.clone();
        call.transfers.push(transfer.clone());
        self.emit(call_id, now, CallEventKind::Transferred { transfer });
    }

    fn on_pickup(&mut self, now: DateTime<Utc>, msg: &Message) {
        let (Some(picker), Some(target)) = (msg.get("Channel"), msg.get("TargetChannel")) else {
            return;
        };
        let target_call = self
            .channels
            .get(target)
            .map(|c| c.call.clone())
            .filter(|id| self.calls.contains_key(id));
        match target_call {
            Some(target_call) => self.move_channel(now, picker, &target_call),
            // When the picked-up call is not tracked (its start was not seen), neither is
            // the picker.
            None => {
                if let Some(chan) = self.channels.remove(picker) {
                    self.forget_leg(picker, &chan.call);
                }
            }
        }
    }

    /// `name` becomes a leg of `target` (a pickup). The picker dialed a feature code as its
    /// own call; that call (only that dial) is forgotten unreported.
    fn move_channel(&mut self, now: DateTime<Utc>, name: &str, target: &str) {
        let Some(chan) = self.channels.get_mut(name) else {
            return;
        };
        if *chan.call == *target {
            return;
        }
        let Some(target_call) = self.calls.get(target) else {
            return;
        };
        let own_call = std::mem::replace(&mut chan.call, target_call.id.clone());
        let party = chan.owned_party();
        self.forget_leg(name, &own_call);
        let Some(call) = self.calls.get_mut(target) else {
            return;
        };
        call.live += 1;
        call.legs.push(name.to_owned());
        let detail = format!(
            "picked up by {}",
            party
                .as_deref()
                .map_or("unknown".to_owned(), |p| self.config.describe(p))
        );
        call.note(now, "pickup", detail);
    }

    /// `name` is no longer a leg of `call`; a call left with no leg is dropped unreported.
    fn forget_leg(&mut self, name: &str, call: &str) {
        if let Some(own) = self.calls.get_mut(call) {
            own.live = own.live.saturating_sub(1);
            own.legs.retain(|l| l != name);
            if own.live == 0 {
                self.calls.remove(call);
            }
        }
    }

    /// A channel entered or left a bridge. After a gap that swallowed a call's answer, its
    /// caller bridged with a party is that party having answered.
    fn on_bridge(&mut self, now: DateTime<Utc>, msg: &Message, enter: bool) {
        let Some(name) = msg.get("Channel") else {
            return;
        };
        let Some(chan) = self.channels.get_mut(name) else {
            return;
        };
        chan.bridge = enter
            .then(|| msg.get("BridgeUniqueid").map(bridge_key))
            .flatten();
        let call_id = chan.call.clone();
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        if !enter || call.answered_by.is_some() || call.originating || call.gaps.is_empty() {
            return;
        }
        if let Some(party) = self.bridged_party(call) {
            self.answer_unseen(now, &call_id, party, true);
        }
    }

    fn on_blind_transfer(&mut self, now: DateTime<Utc>, msg: &Message) {
        let Some(transferee) = msg.get("TransfereeChannel") else {
            return;
        };
        let from = msg
            .get("TransfererChannel")
            .and_then(|c| self.channels.get(c))
            .and_then(Channel::owned_party);
        let Some(call) = self.call_of(transferee) else {
            return;
        };
        call.transfer_pending = true;
        let call_id = call.id.clone();
        let transfer = Transfer {
            kind: TransferKind::Blind,
            from,
            to: non_empty(msg.get("Extension")).map(str::to_owned),
            at: now,
        };
        self.transferred(now, &call_id, transfer);
    }

    fn on_attended_transfer(&mut self, now: DateTime<Utc>, msg: &Message) {
        let party = |key: &str| {
            msg.get(key)
                .and_then(|c| self.channels.get(c))
                .and_then(Channel::owned_party)
        };
        let from = party("OrigTransfererChannel");
        // A "blonde" transfer (completed while the target still rang: `DestType: App`) has
        // no target channel: the target is the phone the consultation was ringing.
        let ringing_in_consultation = || {
            let second = msg.get("SecondTransfererChannel")?;
            let consultation = self.calls.get(&self.channels.get(second)?.call)?;
            consultation.ringing.last().cloned()
        };
        let to = party("TransferTargetChannel")
            .or_else(ringing_in_consultation)
            .or_else(|| party("SecondTransfererChannel"));
        let call_id = ["TransfereeChannel", "OrigTransfererChannel"]
            .iter()
            .filter_map(|k| msg.get(k).and_then(|c| self.channels.get(c)))
            .map(|c| c.call.clone())
            .next();
        let Some(call_id) = call_id else { return };
        // A phone's own attended transfer (SIP REFER with Replaces) joins its consultation,
        // a call of its own (its own Linkedid), into the call.
        let consult = ["SecondTransfererChannel", "TransferTargetChannel"]
            .iter()
            .filter_map(|k| msg.get(k).and_then(|c| self.channels.get(c)))
            .map(|c| c.call.clone())
            .find(|id| *id != call_id);
        if let Some(consult) = consult {
            self.absorb(now, &consult, &call_id);
        }
        let transfer = Transfer {
            kind: TransferKind::Attended,
            from,
            to,
            at: now,
        };
        self.transferred(now, &call_id, transfer);
    }

    /// The consultation call `consult` becomes part of `into`: its channels are legs of
    /// `into`, the phones it rang rang for `into`, its story joins `into`'s. It is no call of
    /// its own: it ends unrecorded (its live `call.ended` closes it for live views).
    fn absorb(&mut self, now: DateTime<Utc>, consult: &str, into: &str) {
        if !self.calls.contains_key(into) {
            return;
        }
        let Some(consulted) = self.calls.remove(consult) else {
            return;
        };
        let Some(call) = self.calls.get_mut(into) else {
            return;
        };
        for leg in &consulted.legs {
            if let Some(chan) = self.channels.get_mut(leg) {
                chan.call = call.id.clone();
            }
        }
        call.live += consulted.live;
        call.legs.extend(consulted.legs.iter().cloned());
        for ext in &consulted.rang {
            if !call.rang.contains(ext) {
                call.rang.push(ext.clone());
            }
        }
        call.gaps.extend(consulted.gaps.iter().copied());
        if call.recording.is_none() {
            call.recording.clone_from(&consulted.recording);
        }
        let from = consulted.from.as_deref().unwrap_or("unknown");
        let to = consulted.to.as_deref().unwrap_or("unknown");
        call.timeline.push(TimelineEntry {
            at: consulted.started_at,
            what: "consultation".to_owned(),
            detail: format!("consultation call from {from} to {to}"),
        });
        call.timeline.extend(
            consulted
                .timeline
                .iter()
                .filter(|e| e.what != "started")
                .cloned(),
        );
        call.timeline.sort_by_key(|e| e.at);
        if consulted.announced {
            self.events.push_back(CallEvent {
                call_id: consulted.id.to_string(),
                at: now,
                kind: CallEventKind::Ended {
                    disposition: consulted.disposition(),
                },
            });
        }
    }

    fn on_conference_join(&mut self, now: DateTime<Utc>, msg: &Message) {
        let (Some(channel), Some(room)) = (msg.get("Channel"), msg.get("Conference")) else {
            return;
        };
        let up_at = self.channels.get(channel).and_then(|c| c.up_at);
        let Some(call) = self.call_of(channel) else {
            return;
        };
        call.note(now, "conference", format!("joined conference {room}"));
        if call.answered_by.is_none() {
            // The conference answered the line; the conversation is the time in the room.
            call.answered_by = Some(room.to_owned());
            call.current = Some(room.to_owned());
            call.answered_at = Some(up_at.unwrap_or(now));
            call.talk_from = Some(now);
            let id = call.id.clone();
            self.emit(
                &id,
                now,
                CallEventKind::Answered {
                    by: Some(room.to_owned()),
                },
            );
        }
    }

    fn on_queue(&mut self, now: DateTime<Utc>, msg: &Message, abandon: bool) {
        let Some(channel) = msg.get("Channel") else {
            return;
        };
        let queue = msg.get("Queue").unwrap_or_default().to_owned();
        let Some(call) = self.call_of(channel) else {
            return;
        };
        if abandon {
            call.abandoned = true;
            call.note(now, "queue", format!("abandoned in queue {queue}"));
        } else {
            call.leave_ivr(now);
            call.note(now, "queue", format!("joined queue {queue}"));
            call.queue = Some(queue);
        }
    }

    fn on_dtmf(&mut self, now: DateTime<Utc>, msg: &Message) {
        let (Some(channel), Some(digit)) = (msg.get("Channel"), msg.get("Digit")) else {
            return;
        };
        if msg.get("Direction") != Some("Received") {
            return;
        }
        let Some(call) = self.call_of(channel) else {
            return;
        };
        if call.in_ivr && call.is_caller_side(channel) {
            call.note(now, "dtmf", format!("pressed {digit}"));
        }
    }

    fn on_hangup(&mut self, now: DateTime<Utc>, msg: &Message) {
        let Some(name) = msg.get("Channel") else {
            return;
        };
        let Some(chan) = self.channels.remove(name) else {
            return;
        };
        if let Some(call) = self.calls.get_mut(&chan.call) {
            Self::dial_ended_unseen(call, now, name, msg.get("Cause"));
        }
        self.hang_up(now, name, chan);
    }

    /// A leg the caller dialed hangs up, and its dial's end fell in a gap: the hangup says
    /// how the dial ended. A busy callee hangs up with cause 17; a caller who asked to hang
    /// up first cancelled; else nobody answered. (Without a gap the DialEnd said it.)
    fn dial_ended_unseen(call: &mut Call, now: DateTime<Utc>, name: &str, cause: Option<&str>) {
        if call.gaps.is_empty()
            || call.answered_by.is_some()
            || call.last_dial.is_some()
            || call.is_caller_side(name)
            || call.live < 2
        {
            return;
        }
        let status = match cause {
            Some("17") => "BUSY",
            _ if call.hangup_noted => "CANCEL",
            _ => "NOANSWER",
        };
        call.last_dial = Some(status.to_owned());
        call.last_dial_end = Some(now);
    }

    fn hang_up(&mut self, now: DateTime<Utc>, name: &str, chan: Channel) {
        let Some(call) = self.calls.get_mut(&chan.call) else {
            return;
        };
        call.live = call.live.saturating_sub(1);
        if let Some(p) = chan.party() {
            call.ringing.retain(|r| r != p);
        }
        if !call.hangup_noted {
            // A SIP channel that goes without its own HangupRequest was hung up by the
            // PBX; a Local channel has no such tell, so its going counts as its party's.
            let sip = matches!(chan.kind, Kind::Phone(_) | Kind::Trunk);
            // A Local channel that goes while another channel of the call still stands for
            // its party (the pair optimised away after a transfer, the phone still talking)
            // is plumbing, not that party hanging up.
            let party_stays = !sip
                && chan.party().is_some_and(|party| {
                    call.legs
                        .iter()
                        .filter_map(|leg| self.channels.get(leg))
                        .any(|leg| leg.call == chan.call && leg.party() == Some(party))
                });
            let who = match Self::who_hangs_up(call, name, &chan) {
                Some(_) if sip && call.is_caller_side(name) => Some("ended by the PBX"),
                Some(who) if !sip && !party_stays => Some(who),
                _ => None,
            };
            if let Some(who) = who {
                call.hangup_noted = true;
                call.caller_hung_up = who == CALLER_HUNG_UP;
                call.note(now, "hangup", who.to_owned());
            }
        }
        if call.live == 0 {
            if let Some(call) = self.calls.remove(&chan.call) {
                self.finish(call, now);
            }
        }
    }

    /// "caller" or "callee" when `chan` is the caller's side or the party they talk to.
    fn who_hangs_up(call: &Call, name: &str, chan: &Channel) -> Option<&'static str> {
        if call.is_caller_side(name) {
            Some(CALLER_HUNG_UP)
        } else if call.answered_by.is_some()
            && chan.party().is_some()
            && chan.party() == call.current.as_deref()
        {
            Some("hung up by callee")
        } else {
            None
        }
    }

    /// The channel's own side (SIP BYE/CANCEL) asked to hang up: that party hung up.
    fn on_hangup_request(&mut self, now: DateTime<Utc>, msg: &Message) {
        let Some(name) = msg.get("Channel") else {
            return;
        };
        let Some(chan) = self.channels.get(name) else {
            return;
        };
        if !matches!(chan.kind, Kind::Phone(_) | Kind::Trunk) {
            return;
        }
        let Some(call) = self.calls.get_mut(&chan.call) else {
            return;
        };
        if call.hangup_noted {
            return;
        }
        if let Some(who) = Self::who_hangs_up(call, name, chan) {
            call.hangup_noted = true;
            call.caller_hung_up = who == CALLER_HUNG_UP;
            call.note(now, "hangup", who.to_owned());
        }
    }

    fn snapshot_start(&mut self) -> &mut Snapshot {
        let since = self.created;
        self.snapshot.get_or_insert_with(|| Snapshot {
            listed: Vec::new(),
            since,
        })
    }

    fn on_snapshot_channel(&mut self, msg: &Message) {
        self.snapshot_start().listed.push(msg.clone());
    }

    /// The listing is whole: reconcile with it ([`resync`]). Channels that appeared while
    /// it was on its way are not judged by it.
    fn on_snapshot_complete(&mut self, now: DateTime<Utc>) {
        self.snapshot_start();
        if let Some(snapshot) = self.snapshot.take() {
            self.reconcile(now, snapshot);
        }
    }

    fn finish(&mut self, mut call: Call, now: DateTime<Utc>) {
        // Ended after a reconnect but before its channel list: the call may have lived
        // through a gap no listing closed for it (when its start was seen after the gap
        // opened, all the same: the stream may have been behind), so it is flagged and the
        // CDR may repair it.
        if let Some(from) = self.gap_from {
            if call.gaps.last().is_none_or(|g| g.from != from) {
                call.gaps.push(Gap { from, to: now });
            }
        }
        if let Some(gap) = call.ended_in_gap {
            let detail = format!("ended while pbxlink received no events from the PBX ({gap})");
            call.note(now, "gap", detail);
        }
        let disposition = call.disposition();
        Self::announce(&mut self.events, &mut call, now);
        self.emit(&call.id, now, CallEventKind::Ended { disposition });
        // Unanswered: the ringing stopped when the last dial ended, not when the
        // announcement that may follow it did.
        let ring_end = call.answered_at.or(call.last_dial_end).unwrap_or(now);
        let record = CallRecord {
            direction: call.direction(),
            ring_seconds: seconds(call.waiting_from, ring_end),
            talk_seconds: call.talk_from.map_or(0, |t| seconds(t, now)),
            id: call.id.to_string(),
            from: call.from,
            to: call.to,
            caller_name: call.caller_name,
            started_at: call.started_at,
            answered_at: call.answered_at,
            ended_at: now,
            disposition,
            answered_by: call.answered_by,
            rang: call.rang,
            transfers: call.transfers,
            queue: call.queue,
            recording: call.recording,
            legs: call.legs,
            timeline: call.timeline,
            provenance: Provenance {
                source: Source::Ami,
                gaps: call.gaps,
                started_in_gap: call.started_in_gap,
                ended_in_gap: call.ended_in_gap,
                answered_in_gap: call.answered_in_gap,
            },
        };
        self.records.push_back(record);
    }
}

/// Whether [`Tracker::handle`] can learn anything from `msg`. The dialplan trace (`VarSet`,
/// `Newexten`: most of a FreePBX stream) matters only for recordings, IVR menus and busy or
/// congestion tones; a log of the events that pass is enough to rebuild the calls.
pub fn tracks(msg: &Message) -> bool {
    match msg.event() {
        Some("VarSet") => is_recording_var(msg),
        Some("Newexten") => tracked_app(msg).is_some(),
        Some(_) => true,
        None => false,
    }
}

/// `MIXMONITOR_FILENAME` being set: the call's recording.
fn is_recording_var(msg: &Message) -> bool {
    // Variable/Value close the event: look from the end.
    msg.get_last("Variable") == Some("MIXMONITOR_FILENAME")
}

/// The dialplan application of a `Newexten` the tracker follows (menus, busy/congestion).
fn tracked_app(msg: &Message) -> Option<&'static str> {
    // Application names are case-insensitive in Asterisk (`BackGround`); FreePBX runs
    // the menu prompt as `ExecIf(...?Background(...))`.
    const APPS: [&str; 5] = ["BackGround", "WaitExten", "Read", "Busy", "Congestion"];
    // Application/AppData close the event: look from the end.
    let mut app = msg.get_last("Application").unwrap_or("");
    if app.eq_ignore_ascii_case("ExecIf") {
        let data = msg.get_last("AppData").unwrap_or("").to_ascii_lowercase();
        if ["?background(", "?waitexten(", "?read("]
            .iter()
            .any(|a| data.contains(a))
        {
            app = "WaitExten";
        }
    }
    APPS.into_iter().find(|a| a.eq_ignore_ascii_case(app))
}

#[cfg(test)]
mod tests {
    use super::dialed_number;

    #[test]
    fn number_from_trunk_dial_strings() {
        for dial in [
            "15557654321@carrier",
            "carrier/15557654321",
            "carrier/sip:15557654321@10.0.0.1:5060",
            "tel:15557654321",
        ] {
            assert_eq!(dialed_number(dial), "15557654321", "{dial}");
        }
    }
}
