//! The deterministic call generator: a seed and a virtual start time in, `(time, event)` out,
//! in time order, with calls arriving at a Poisson rate under a concurrency cap.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ami::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::call::{CallBuilder, Ids};
use super::directory::{Directory, PbxState};
use super::scenario::{self, Scenario, Truth, TruthTransfer};
use super::style::Style;
use super::wire::{chan_event, event, Chan};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Mean call arrival rate.
    pub calls_per_second: f64,
    /// Most calls up at once; an arrival waits for a call to end.
    pub concurrency: usize,
    /// Stop starting calls after this many seconds of virtual time (None: never stop).
    pub duration_secs: Option<f64>,
    /// Same seed, same bytes.
    pub seed: u64,
    /// Extension numbers of the phones.
    pub extensions: Vec<String>,
    /// Scenario weights.
    pub mix: Vec<(Scenario, u32)>,
    /// Virtual time of the first call, ms since the Unix epoch.
    pub start_ms: u64,
    /// FreePBX or a bare Asterisk.
    pub style: Style,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            calls_per_second: 0.5,
            concurrency: 20,
            duration_secs: None,
            seed: 1,
            extensions: (201..=220).map(|e: u32| e.to_string()).collect(),
            mix: Scenario::DEFAULT_MIX.to_vec(),
            // 2026-11-22 22:54:30 UTC, the day the reference transcripts were recorded.
            start_ms: 1_795_388_070_000,
            style: Style::FREEPBX,
        }
    }
}

/// Which AMI action moves a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferAction {
    Blind,
    Attended,
    Redirect,
}

/// A channel that exists right now in the stream already emitted.
#[derive(Debug, Clone)]
pub struct LiveChan {
    pub chan: Chan,
    pub call: u64,
    pub created_ms: u64,
    pub app: String,
    pub app_data: String,
    pub bridge: String,
}

#[derive(Debug)]
struct CallState {
    truth: Truth,
    pending: usize,
    start_ms: u64,
}

impl CallState {
    // Whether somebody had answered by `t` (the truth knows when: start + ring time).
    fn answered_by_then(&self, t: u64) -> bool {
        self.truth.answered_by.is_some()
            && self.start_ms + self.truth.ring_seconds_approx * 1000 <= t
    }
}

/// Generates the event stream. Pure: no clock, no I/O.
#[derive(Debug)]
pub struct Generator {
    opts: Options,
    dir: Directory,
    state: PbxState,
    ids: Ids,
    rng: StdRng,
    // (time, insertion order) -> (call, event): time order, stable within a call.
    pending: BTreeMap<(u64, u64), (u64, Message)>,
    seq: u64,
    next_arrival: Option<u64>,
    calls: BTreeMap<u64, CallState>,
    next_call: u64,
    // (end time, call) of calls in progress, for the concurrency cap.
    ends: BTreeSet<(u64, u64)>,
    live: BTreeMap<String, LiveChan>,
    // Dials in progress: dialed channel -> the channel dialing it (None: an originate).
    dials: BTreeMap<String, Option<String>>,
    finished: VecDeque<Truth>,
    last_ms: u64,
}

impl Generator {
    pub fn new(opts: Options) -> Self {
        let rng = StdRng::seed_from_u64(opts.seed);
        let dir = Directory::new(
            opts.extensions.clone(),
            opts.start_ms / 1000 - 4,
            opts.style,
        );
        let first = (opts.calls_per_second > 0.0).then_some(opts.start_ms);
        Generator {
            dir,
            state: PbxState::default(),
            ids: Ids::default(),
            rng,
            pending: BTreeMap::new(),
            seq: 0,
            next_arrival: first,
            calls: BTreeMap::new(),
            next_call: 0,
            ends: BTreeSet::new(),
            live: BTreeMap::new(),
            dials: BTreeMap::new(),
            finished: VecDeque::new(),
            last_ms: opts.start_ms,
            opts,
        }
    }

    /// Time of the last event handed out (the stream's "now").
    pub fn now_ms(&self) -> u64 {
        self.last_ms
    }

    /// The PBX's AstDB and queue pause state, which actions change and scenarios read.
    pub fn state_mut(&mut self) -> &mut PbxState {
        &mut self.state
    }

    pub fn state(&self) -> &PbxState {
        &self.state
    }

    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    /// Channels up at [`Self::now_ms`], by name.
    pub fn live(&self) -> impl Iterator<Item = &LiveChan> {
        self.live.values()
    }

    /// Ground truth of the calls whose last event has been handed out, in that order.
    pub fn take_finished(&mut self) -> Vec<Truth> {
        self.finished.drain(..).collect()
    }

    /// Time of the next event, if any.
    pub fn peek_ms(&mut self) -> Option<u64> {
        self.admit_arrivals();
        self.pending.keys().next().map(|k| k.0)
    }

    /// The next event in time order; None when the duration is over and every call ended.
    pub fn next_event(&mut self) -> Option<(u64, Message)> {
        self.admit_arrivals();
        let ((t, _), (call, m)) = self.pending.pop_first()?;
        self.last_ms = t;
        self.observe(call, t, &m);
        if let Some(cs) = self.calls.get_mut(&call) {
            cs.pending -= 1;
            if cs.pending == 0 {
                if let Some(mut cs) = self.calls.remove(&call) {
                    // An AMI Hangup or transfer may have moved the end the scenario planned.
                    cs.truth.ended_ms = t;
                    self.finished.push_back(cs.truth);
                }
            }
        }
        Some((t, m))
    }

    /// A click-to-call asked for by an AMI Originate: the phone `ext` rings now, then `number`.
    /// `channel_id` (Originate's `ChannelId`) becomes the agent channel's Uniqueid and so the
    /// call's Linkedid, as in Asterisk.
    pub fn originate(
        &mut self,
        ext: &str,
        number: &str,
        action_id: &str,
        channel_id: Option<&str>,
    ) -> Truth {
        let t = self.last_ms;
        self.add_call(t, |b| {
            b.channel_id = channel_id.map(str::to_owned);
            scenario::click_to_call_truth(b, ext, number, action_id)
        })
    }

    /// Hangs up the call that `channel` belongs to, now; false if no such channel is up.
    pub fn hangup(&mut self, channel: &str) -> bool {
        let Some(call) = self.live.get(channel).map(|l| l.call) else {
            return false;
        };
        let dropped: Vec<(u64, u64)> = self
            .pending
            .iter()
            .filter(|(_, (c, _))| *c == call)
            .map(|(k, _)| *k)
            .collect();
        for k in dropped {
            self.pending.remove(&k);
        }
        let t = self.last_ms;
        let mut legs: Vec<LiveChan> = self
            .live
            .values()
            .filter(|l| l.call == call)
            .cloned()
            .collect();
        legs.sort_by_key(|l| l.created_ms);
        if let Some(cs) = self.calls.get_mut(&call) {
            cs.pending = legs.len();
            let answered = cs.answered_by_then(t);
            let talk_until_now =
                (t.saturating_sub(cs.start_ms) / 1000).saturating_sub(cs.truth.ring_seconds_approx);
            let truth = &mut cs.truth;
            if answered {
                truth.talk_seconds_approx = truth.talk_seconds_approx.min(talk_until_now);
            } else {
                truth.disposition = calls::Disposition::Cancelled;
                truth.answered_by = None;
                truth.talk_seconds_approx = 0;
                truth.transfers.clear();
            }
        }
        // Dials still ringing end CANCEL first, as when a caller hangs up in Dial().
        let mut cancels = Vec::new();
        for l in &legs {
            let Some(dialer) = self.dials.get(&l.chan.name) else {
                continue;
            };
            let mut m = event("DialEnd");
            if let Some(d) = dialer.as_ref().and_then(|d| self.live.get(d)) {
                d.chan.block("", &mut m);
            }
            l.chan.block("Dest", &mut m);
            m.push("DialStatus", "CANCEL");
            cancels.push(m);
        }
        if let Some(cs) = self.calls.get_mut(&call) {
            cs.pending += cancels.len();
        }
        for m in cancels {
            self.insert(t, call, m);
        }
        for l in legs {
            let mut m = chan_event("Hangup", &l.chan);
            m.push("Cause", "16");
            m.push("Cause-txt", "Normal Clearing");
            self.insert(t, call, m);
        }
        true
    }

    /// AMI BlindTransfer / Atxfer (`channel` sends its bridge peer to extension `to`, blind or
    /// after consulting) or Redirect (`channel` itself goes to `to`, its peer hangs up): the
    /// rest of the call is generated anew from now. Only for two SIP channels bridged to
    /// each other, the transferring one a phone; false otherwise.
    pub fn transfer(&mut self, channel: &str, to: &str, how: TransferAction) -> bool {
        let Some(named) = self.live.get(channel).cloned() else {
            return false;
        };
        let peer = self
            .live
            .values()
            .find(|l| {
                l.call == named.call
                    && !named.bridge.is_empty()
                    && l.bridge == named.bridge
                    && l.chan.name != named.chan.name
            })
            .cloned();
        let Some(peer) = peer else { return false };
        let (transferer, transferee) = match how {
            TransferAction::Redirect => (peer, named),
            TransferAction::Blind | TransferAction::Attended => (named, peer),
        };
        let style = self.dir.style;
        let Some(from_ext) = style.phone_of(&transferer.chan.name).map(str::to_owned) else {
            return false;
        };
        if !style.is_sip(&transferee.chan.name) || !self.dir.extensions.iter().any(|e| e == to) {
            return false;
        }
        let call = transferer.call;
        let t = self.last_ms;
        if self
            .calls
            .get(&call)
            .is_none_or(|cs| !cs.answered_by_then(t))
        {
            return false;
        }
        self.pending.retain(|_, (c, _)| *c != call);
        let mut call_rng = StdRng::seed_from_u64(self.rng.random());
        let mut b = CallBuilder::new(&mut self.ids, &mut call_rng, &self.dir, &self.state, t);
        b.recording = self
            .calls
            .get(&call)
            .and_then(|cs| cs.truth.recording.then(String::new));
        // Both have been up since the call was answered.
        let answered = self
            .calls
            .get(&call)
            .map(|cs| cs.start_ms + cs.truth.ring_seconds_approx * 1000);
        let c = b.adopt(transferee.chan.clone(), transferee.created_ms, answered);
        let p = b.adopt(transferer.chan.clone(), transferer.created_ms, answered);
        let br = b.adopt_bridge(&transferer.bridge, 2);
        let kind = match how {
            TransferAction::Attended => {
                scenario::attended_transfer(&mut b, c, p, br, &from_ext, to);
                calls::TransferKind::Attended
            }
            TransferAction::Blind | TransferAction::Redirect => {
                scenario::blind_transfer(
                    &mut b,
                    c,
                    p,
                    br,
                    &from_ext,
                    to,
                    how == TransferAction::Blind,
                );
                calls::TransferKind::Blind
            }
        };
        let events = std::mem::take(&mut b.events);
        // Channels of the call outside that bridge (none in the shapes allowed) would linger.
        if let Some(cs) = self.calls.get_mut(&call) {
            cs.pending = events.len();
            cs.truth.transfers.push(TruthTransfer {
                kind,
                from: from_ext,
                to: to.to_owned(),
            });
            cs.truth.rang.push(to.to_owned());
        }
        for (t, m) in events {
            self.insert(t, call, m);
        }
        true
    }

    // Starts every call whose arrival time has come before the next pending event.
    fn admit_arrivals(&mut self) {
        while let Some(at) = self.next_arrival {
            if self.pending.keys().next().is_some_and(|k| k.0 < at) {
                return;
            }
            let end_of_run = self
                .opts
                .duration_secs
                .map(|d| self.opts.start_ms + (d * 1000.0) as u64);
            if end_of_run.is_some_and(|e| at >= e) {
                self.next_arrival = None;
                return;
            }
            // Over the concurrency cap: the arrival waits for the earliest end.
            self.ends.retain(|&(end, _)| end > at);
            if self.ends.len() >= self.opts.concurrency.max(1) {
                let first_end = self.ends.first().map_or(at, |e| e.0);
                self.next_arrival = Some(first_end.max(at + 1));
                continue;
            }
            let scenario = self.pick_scenario();
            self.add_call(at, |b| scenario::build(b, scenario));
            let gap = -(1.0 - self.rng.random::<f64>()).ln() * 1000.0 / self.opts.calls_per_second;
            self.next_arrival = Some(at + gap.max(1.0) as u64);
        }
    }

    fn pick_scenario(&mut self) -> Scenario {
        let total: u32 = self.opts.mix.iter().map(|(_, w)| w).sum();
        let mut r = self.rng.random_range(0..total.max(1));
        for (s, w) in &self.opts.mix {
            if r < *w {
                return *s;
            }
            r -= w;
        }
        Scenario::InboundExt
    }

    fn add_call(&mut self, t: u64, f: impl FnOnce(&mut CallBuilder) -> Truth) -> Truth {
        // Each call draws from its own stream so one call's length never shifts the next one's.
        let mut call_rng = StdRng::seed_from_u64(self.rng.random());
        let mut b = CallBuilder::new(&mut self.ids, &mut call_rng, &self.dir, &self.state, t);
        let truth = f(&mut b);
        let events = std::mem::take(&mut b.events);
        let call = self.next_call;
        self.next_call += 1;
        let end = events.iter().map(|(t, _)| *t).max().unwrap_or(t);
        self.ends.insert((end, call));
        self.calls.insert(
            call,
            CallState {
                truth: truth.clone(),
                pending: events.len(),
                start_ms: t,
            },
        );
        for (t, m) in events {
            self.insert(t, call, m);
        }
        truth
    }

    fn insert(&mut self, t: u64, call: u64, m: Message) {
        self.pending.insert((t, self.seq), (call, m));
        self.seq += 1;
    }

    // Keeps the live channel table in step with the emitted stream.
    fn observe(&mut self, call: u64, t: u64, m: &Message) {
        if let Some(dest) = m.get("DestChannel") {
            match m.event() {
                Some("DialBegin") => {
                    self.dials
                        .insert(dest.to_owned(), m.get("Channel").map(str::to_owned));
                }
                Some("DialEnd") => {
                    self.dials.remove(dest);
                }
                _ => {}
            }
        }
        let Some(chan) = Chan::from_message(m) else {
            return;
        };
        match m.event() {
            Some("Hangup") => {
                self.live.remove(&chan.name);
                self.dials.remove(&chan.name);
            }
            Some("Newchannel") => {
                self.live.insert(
                    chan.name.clone(),
                    LiveChan {
                        chan,
                        call,
                        created_ms: t,
                        // Until it runs dialplan, a dialed channel sits in AppDial.
                        app: "AppDial".to_owned(),
                        app_data: "(Outgoing Line)".to_owned(),
                        bridge: String::new(),
                    },
                );
            }
            Some(ev) => {
                // Only a Newchannel makes a channel: Dial's result VarSets reach a caller
                // that already hung up, and must not bring it back into CoreShowChannels
                // (a resyncing client would keep the finished call up for ever).
                let Some(entry) = self.live.get_mut(&chan.name) else {
                    return;
                };
                entry.chan = chan;
                match ev {
                    "Newexten" => {
                        entry.app = m.get("Application").unwrap_or_default().to_owned();
                        entry.app_data = m.get("AppData").unwrap_or_default().to_owned();
                    }
                    "BridgeEnter" => {
                        entry.bridge = m.get("BridgeUniqueid").unwrap_or_default().to_owned()
                    }
                    "BridgeLeave" => entry.bridge.clear(),
                    _ => {}
                }
            }
            None => {}
        }
    }
}
