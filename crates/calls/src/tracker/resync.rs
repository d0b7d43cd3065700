//! Reconciling the tracker with the PBX's own state lists after a gap in the event stream.
//!
//! While pbxlink does not receive events (its link dropped, it was restarted, the PBX
//! restarted) calls go on without it. At the next login the PBX says what exists now:
//! `Status` (each channel with its `DNID`, the number it was dialed with) and then
//! `CoreShowChannels` (each channel with its state, Linkedid, application, age and bridge).
//! That listing is set against what the tracker holds:
//!
//! - a tracked channel the PBX no longer lists hung up in the gap: it ends at the gap's
//!   start (the last moment it was known alive), and a call it ends is flagged
//!   `ended_in_gap`, so talk time is never stretched by the outage;
//! - a listed channel the tracker never saw joins its call (same Linkedid), or, when its
//!   call is unknown too, starts it (a call that began in the gap is real: the PBX lists
//!   it), with the start time the PBX gives (`Duration`);
//! - a call not answered yet whose caller is now bridged (through any Local hops) to a
//!   phone or an outside party was answered in the gap, by that party; one in a ConfBridge
//!   was answered by the room. Its answer is flagged `answered_in_gap`.

use std::sync::Arc;

use ami::Message;
use chrono::{DateTime, TimeDelta, Utc};
use rustc_hash::{FxHashMap, FxHashSet};

use super::{bridge_key, non_empty, Call, Channel, Snapshot, Tracker};
use crate::party::{local_partner, Kind};
use crate::record::Gap;

/// What one reconciliation found (for the log and the metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resync {
    /// The gap it closed, if one was open.
    pub gap: Option<Gap>,
    /// Channels the PBX listed.
    pub listed: usize,
    /// Tracked channels it no longer listed: they hung up in the gap.
    pub ended: usize,
    /// Listed channels the tracker did not know: they joined or started a call.
    pub taken_in: usize,
    /// Calls found answered.
    pub answered: usize,
}

/// One channel as the PBX lists it.
struct Listed<'a> {
    name: &'a str,
    msg: &'a Message,
    uniqueid: (u64, u64),
}

impl Listed<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        non_empty(self.msg.get(key))
    }

    fn is_up(&self) -> bool {
        self.msg.get("ChannelStateDesc") == Some("Up")
    }

    /// Whether this is the channel the tracker holds under the same name (not a namesake
    /// after a PBX restart).
    fn is(&self, chan: &Channel) -> bool {
        self.msg
            .get("Uniqueid")
            .is_none_or(|u| *u == *chan.uniqueid)
    }

    fn bridge(&self) -> Option<&str> {
        self.get("BridgeId")
    }

    /// How long the channel has existed (`Duration: HH:MM:SS`).
    fn age(&self) -> Option<TimeDelta> {
        let mut parts = self.msg.get("Duration")?.split(':');
        let mut seconds = 0i64;
        for _ in 0..3 {
            seconds = seconds * 60 + parts.next()?.trim().parse::<i64>().ok()?;
        }
        Some(TimeDelta::seconds(seconds))
    }
}

/// `1795388277.76` -> (1795388277, 76): the order Asterisk created channels in.
fn uniqueid_order(id: &str) -> (u64, u64) {
    let (epoch, n) = id.split_once('.').unwrap_or((id, "0"));
    (epoch.parse().unwrap_or(0), n.parse().unwrap_or(0))
}

impl Tracker {
    /// The link to the PBX went down at `at` (or pbxlink restarted, its last event received
    /// at `at`): events may be missed until the next `CoreShowChannels` listing, which
    /// closes the gap. The earliest start counts when several pile up.
    pub fn link_down(&mut self, at: DateTime<Utc>) {
        self.gap_from.get_or_insert(at);
    }

    /// A `Status` item: remembers the number the channel was dialed with for the listing
    /// that follows.
    pub(super) fn on_status(&mut self, msg: &Message) {
        if let (Some(channel), Some(dnid)) = (msg.get("Channel"), non_empty(msg.get("DNID"))) {
            self.dialed_ids.insert(channel.to_owned(), dnid.to_owned());
        }
    }

    /// What the last reconciliation found, once: `None` until another one happens.
    pub fn take_resync(&mut self) -> Option<Resync> {
        self.resync.take()
    }

    /// The listing is complete: reconcile (see the module docs).
    pub(super) fn reconcile(&mut self, now: DateTime<Utc>, snapshot: Snapshot) {
        let gap = self.gap_from.take().map(|from| Gap { from, to: now });
        if let Some(gap) = gap {
            // The calls that were going when the gap began (not those begun since the
            // login, whose events were all seen).
            for call in self.calls.values_mut().filter(|c| c.started_at <= gap.from) {
                call.gaps.push(gap);
            }
        }
        let channels_before = self.channels.len();
        let dialed_ids = std::mem::take(&mut self.dialed_ids);
        let mut listed: Vec<Listed> = snapshot
            .listed
            .iter()
            .filter_map(|msg| {
                Some(Listed {
                    name: msg.get("Channel")?,
                    msg,
                    uniqueid: uniqueid_order(msg.get("Uniqueid").unwrap_or("")),
                })
            })
            .collect();
        listed.sort_by_key(|l| l.uniqueid);
        let by_name: FxHashMap<&str, &Listed> = listed.iter().map(|l| (l.name, l)).collect();
        self.end_gone(now, gap, snapshot.since, &by_name);
        let ended = channels_before - self.channels.len();
        // Each call's first channel in the PBX's order is its origin: the one whose Uniqueid
        // is the Linkedid when it is still there. (Once for the listing: per channel it
        // would be quadratic in a listing of thousands.)
        let mut origins: FxHashMap<&str, &Listed> = FxHashMap::default();
        for l in &listed {
            let Some(linkedid) = l.get("Linkedid") else {
                continue;
            };
            let rank = |o: &Listed| (o.get("Uniqueid") != Some(linkedid), o.uniqueid);
            let best = origins.entry(linkedid).or_insert(l);
            if rank(l) < rank(best) {
                *best = l;
            }
        }
        let channels_before = self.channels.len();
        for l in &listed {
            self.take_in(now, gap, l, &origins, &dialed_ids);
        }
        let taken_in = self.channels.len() - channels_before;
        self.fill_from_caller(gap, &by_name);
        let answered = self.answers_in_gap(now, gap, &by_name);
        self.resync = Some(Resync {
            gap,
            listed: listed.len(),
            ended,
            taken_in,
            answered,
        });
    }

    /// Tracked channels the PBX no longer lists hung up while we were away.
    fn end_gone(
        &mut self,
        now: DateTime<Utc>,
        gap: Option<Gap>,
        since: u64,
        listed: &FxHashMap<&str, &Listed>,
    ) {
        let mut gone: Vec<String> = self
            .channels
            .iter()
            .filter(|(name, chan)| {
                chan.seq <= since && !listed.get(name.as_str()).is_some_and(|l| l.is(chan))
            })
            .map(|(name, _)| name.clone())
            .collect();
        gone.sort();
        for name in gone {
            if let Some(chan) = self.channels.remove(&name) {
                self.hang_up_in(now, gap, &name, chan);
            }
        }
    }

    /// `chan` is gone and its Hangup was not seen: it hung up in the open gap, if there is
    /// one, else just now.
    pub(super) fn hang_up_unseen(&mut self, now: DateTime<Utc>, name: &str, chan: Channel) {
        let gap = self.gap_from.map(|from| Gap { from, to: now });
        self.hang_up_in(now, gap, name, chan);
    }

    /// `chan` hung up within `gap`: at its start, the last moment it was known alive (not
    /// before what was seen of its call since). Without a known gap (a listing replayed
    /// from a transcript) there is nothing better than `now`.
    fn hang_up_in(&mut self, now: DateTime<Utc>, gap: Option<Gap>, name: &str, chan: Channel) {
        let call_id = chan.call.clone();
        let at = match (gap, self.calls.get_mut(&call_id)) {
            (Some(gap), Some(call)) => {
                call.ended_in_gap = Some(gap);
                let seen = call.timeline.last().map_or(gap.from, |e| e.at);
                gap.from.max(seen).max(call.answered_at.unwrap_or(gap.from))
            }
            _ => now,
        };
        self.hang_up(at, name, chan);
        // The call goes on with other channels: it did not end in the gap.
        if let Some(call) = self.calls.get_mut(&call_id) {
            call.ended_in_gap = None;
        }
    }

    /// A listed channel the tracker does not know joins its call, or starts it.
    fn take_in(
        &mut self,
        now: DateTime<Utc>,
        gap: Option<Gap>,
        l: &Listed,
        origins: &FxHashMap<&str, &Listed>,
        dialed_ids: &FxHashMap<String, String>,
    ) {
        if let Some(chan) = self.channels.get_mut(l.name) {
            if l.is_up() {
                chan.up_at.get_or_insert(now);
            }
            chan.bridge = l.bridge().map(bridge_key);
            let (chan_call, kind) = (chan.call.clone(), chan.kind.clone());
            match l.get("Linkedid") {
                // Moved to another call in the gap (a pickup): it belongs there now.
                Some(linkedid) if *linkedid != *chan_call && self.calls.contains_key(linkedid) => {
                    self.move_channel(now, l.name, linkedid);
                }
                _ => self.note_party(l.name, &chan_call, &kind),
            }
            return;
        }
        let Some(linkedid) = l.get("Linkedid") else {
            return;
        };
        let kind = self.directory.known(&self.config, l.name);
        if !self.calls.contains_key(linkedid) {
            // Its origin starts it; the other channels join it (they come after it).
            if origins.get(linkedid).is_some_and(|o| o.name != l.name) {
                return;
            }
            let started = now - l.age().unwrap_or_default();
            let to = dialed_ids
                .get(l.name)
                .map(String::as_str)
                .or_else(|| l.get("Exten"))
                .filter(|e| *e != "s");
            self.start_call(
                started,
                linkedid,
                l.name,
                &kind,
                l.get("CallerIDNum").map(str::to_owned),
                l.get("CallerIDName"),
                to,
            );
            if let Some(call) = self.calls.get_mut(linkedid) {
                call.gaps.extend(gap);
                call.started_in_gap = Some(Gap {
                    from: gap.map_or(started, |g| g.from.min(started)),
                    to: now,
                });
                call.note(
                    now,
                    "resync",
                    "call found in progress after a gap".to_owned(),
                );
            }
        }
        let Some(call) = self.calls.get_mut(linkedid) else {
            return;
        };
        self.created += 1;
        call.live += 1;
        call.legs.push(l.name.to_owned());
        let rings = match &kind {
            Kind::Phone(ext)
                if l.msg.get("ChannelStateDesc") == Some("Ringing")
                    && !call.is_caller_side(l.name) =>
            {
                Some(ext.clone())
            }
            _ => None,
        };
        let call_id: Arc<str> = call.id.clone();
        self.note_party(l.name, &call_id, &kind);
        self.channels.insert(
            l.name.to_owned(),
            Channel {
                call: call_id.clone(),
                kind,
                dialed: None,
                caller_num: l.get("CallerIDNum").map(str::to_owned),
                hop: false,
                busy_tone: false,
                up_at: l.is_up().then_some(now),
                seq: self.created,
                uniqueid: l.get("Uniqueid").unwrap_or_default().into(),
                bridge: l.bridge().map(bridge_key),
            },
        );
        if let Some(ext) = rings {
            self.ring(now, &call_id, ext);
        }
    }

    /// What a listed channel tells of its call beyond its own existence: an outside party
    /// not on the caller's side makes the call outbound (its dial may have fallen in the gap).
    fn note_party(&mut self, name: &str, call_id: &str, kind: &Kind) {
        let outside = match kind {
            Kind::Trunk => true,
            Kind::Local { number, .. } => !number.is_empty() && !self.config.is_extension(number),
            _ => false,
        };
        if let Some(call) = self.calls.get_mut(call_id) {
            if outside && !call.is_caller_side(name) {
                call.external = true;
            }
        }
    }

    /// What the listed caller side tells that the events lost in the gap would have: the
    /// caller's number, the number a Dial is ringing (a click-to-call's callee), and that a
    /// dial which ended in the gap while the caller stayed was not answered (not cancelled).
    fn fill_from_caller(&mut self, gap: Option<Gap>, by_name: &FxHashMap<&str, &Listed>) {
        let channels = &self.channels;
        for call in self.calls.values_mut() {
            let Some(caller) = call.caller_sides().find_map(|c| by_name.get(c)) else {
                continue;
            };
            // The dialplan's busy and congestion tones (Newexten, when seen).
            match caller.get("Application") {
                Some(app) if app.eq_ignore_ascii_case("Busy") => call.busy_app = true,
                Some(app) if app.eq_ignore_ascii_case("Congestion") => call.failed_app = true,
                _ => {}
            }
            if call.from.is_none() {
                call.from = caller.get("CallerIDNum").map(str::to_owned);
            }
            if call.originating && caller.is_up() {
                // The click-to-call agent answered in the gap: from now on they wait for
                // the called party.
                call.originating = false;
                call.waiting_from = gap.map_or(call.waiting_from, |g| g.from);
            }
            let dialing = (caller.get("Application") == Some("Dial"))
                .then(|| caller.get("ApplicationData"))
                .flatten()
                .and_then(|d| d.split([',', '&']).next())
                .map(super::dialed_number)
                .filter(|n| !n.is_empty());
            if call.to.is_none() && !call.originating {
                call.to = dialing.map(str::to_owned);
            }
            if let (Some(gap), None, None) = (gap, &call.answered_by, &call.last_dial) {
                // A leg it dialed is gone, the caller is still here and dials no more: the
                // dial ended unanswered (a busy or congestion tone says otherwise).
                let callee_gone = call
                    .legs
                    .iter()
                    .any(|l| !call.is_caller_side(l) && !channels.contains_key(l));
                if callee_gone && dialing.is_none() && !call.busy_app && !call.failed_app {
                    call.last_dial = Some("NOANSWER".to_owned());
                    call.last_dial_end = Some(gap.from);
                }
            }
        }
    }

    /// Calls not answered yet whose caller is now talking to somebody were answered in the
    /// gap; returns how many.
    fn answers_in_gap(
        &mut self,
        now: DateTime<Utc>,
        gap: Option<Gap>,
        by_name: &FxHashMap<&str, &Listed>,
    ) -> usize {
        let mut answered = Vec::new();
        for call in self.calls.values() {
            if call.answered_by.is_some() || call.originating {
                continue;
            }
            let room = call
                .caller_sides()
                .filter_map(|c| by_name.get(c))
                .find(|c| c.get("Application") == Some("ConfBridge"))
                .and_then(|c| c.get("ApplicationData"))
                .and_then(|d| d.split(',').next());
            let party = match room {
                Some(room) => Some((room.to_owned(), false)),
                None => self.bridged_party(call).map(|p| (p, true)),
            };
            if let Some((party, rang)) = party {
                answered.push((call.id.clone(), party, call.started_at, rang));
            }
        }
        answered.sort();
        let count = answered.len();
        for (id, party, started_at, rang) in answered {
            let unseen = gap.unwrap_or(Gap {
                from: started_at,
                to: now,
            });
            self.answer_unseen(now, &id, party, rang);
            if let Some(call) = self.calls.get_mut(&id) {
                call.answered_in_gap = Some(unseen);
                let detail =
                    format!("the answer fell in a gap ({unseen}): seen in the PBX's channel list");
                call.note(now, "gap", detail);
            }
        }
        count
    }

    /// `party` answered `id`, whose dial result was not seen; `rang`: its phone rang first.
    pub(super) fn answer_unseen(
        &mut self,
        now: DateTime<Utc>,
        id: &str,
        party: String,
        rang: bool,
    ) {
        if let Some(call) = self.calls.get_mut(id) {
            if rang && self.config.is_extension(&party) && !call.rang.contains(&party) {
                call.rang.push(party.clone());
            }
        }
        self.answer(now, id, party);
    }

    /// The party the caller of `call` is bridged with, through Local channel pairs: the
    /// phone, or the outside number, it talks to. From the channels' bridges as last known
    /// (the listing, then `BridgeEnter`/`BridgeLeave`).
    pub(super) fn bridged_party(&self, call: &Call) -> Option<String> {
        let bridge_of = |name: &str| self.channels.get(name).and_then(|c| c.bridge);
        let peer_of = |name: &str| {
            let bridge = bridge_of(name)?;
            call.legs
                .iter()
                .map(String::as_str)
                .find(|p| *p != name && !call.is_caller_side(p) && bridge_of(p) == Some(bridge))
        };
        let start = call.caller_sides().find(|c| bridge_of(c).is_some())?;
        let mut at = start.to_owned();
        let mut through_local = None;
        let mut seen = FxHashSet::default();
        while seen.insert(at.clone()) {
            let peer = peer_of(&at)?;
            match self.directory.known(&self.config, peer) {
                Kind::Phone(ext) => return Some(ext),
                Kind::Local { number, .. } => {
                    through_local = Some(number).filter(|n| !n.is_empty());
                    at = local_partner(peer)?;
                    if bridge_of(&at).is_none() {
                        // The far half answered by running an application itself (a
                        // dialplan phone, an outside number played in dialplan), or is gone
                        // already: the Local channel's number is the party, as its DialEnd
                        // ANSWER would have said.
                        return through_local;
                    }
                }
                Kind::Trunk => {
                    let dialed = self.channels.get(peer).and_then(|c| c.dialed.clone());
                    return dialed.or(through_local).or_else(|| call.to.clone());
                }
                Kind::Other => return None,
            }
        }
        None
    }
}
