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

use super::{non_empty, Call, Channel, Snapshot, Tracker};
use crate::party::{local_partner, Kind};
use crate::record::Gap;

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

    /// The listing is complete: reconcile (see the module docs).
    pub(super) fn reconcile(&mut self, now: DateTime<Utc>, snapshot: Snapshot) {
        let gap = self.gap_from.take().map(|from| Gap { from, to: now });
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
        for l in &listed {
            self.take_in(now, gap, l, &listed, &dialed_ids);
        }
        self.answers_in_gap(now, gap, &listed, &by_name);
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
        listed: &[Listed],
        dialed_ids: &FxHashMap<String, String>,
    ) {
        if let Some(chan) = self.channels.get_mut(l.name) {
            if l.is_up() {
                chan.up_at.get_or_insert(now);
            }
            return;
        }
        let Some(linkedid) = l.get("Linkedid") else {
            return;
        };
        let kind = self.config.classify(l.name);
        if !self.calls.contains_key(linkedid) {
            // The call's first channel in the PBX's order is its origin: the one whose
            // Uniqueid is the Linkedid when it is still there.
            let origin = listed
                .iter()
                .filter(|o| o.get("Linkedid") == Some(linkedid))
                .min_by_key(|o| (o.get("Uniqueid") != Some(linkedid), o.uniqueid));
            if origin.is_some_and(|o| o.name != l.name) {
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
        // An outside party on a call placed from inside: the call is outbound.
        if matches!(kind, Kind::Trunk) && !call.is_caller_side(l.name) {
            call.external = true;
        }
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
            },
        );
        if let Some(ext) = rings {
            self.ring(now, &call_id, ext);
        }
    }

    /// Calls not answered yet whose caller is now talking to somebody were answered in the
    /// gap.
    fn answers_in_gap(
        &mut self,
        now: DateTime<Utc>,
        gap: Option<Gap>,
        listed: &[Listed],
        by_name: &FxHashMap<&str, &Listed>,
    ) {
        let mut bridges: FxHashMap<&str, Vec<&str>> = FxHashMap::default();
        for l in listed {
            if let Some(bridge) = l.bridge() {
                bridges.entry(bridge).or_default().push(l.name);
            }
        }
        // (call, who answered, when the call started, whether that party's phone rang)
        let mut answered: Vec<(Arc<str>, String, DateTime<Utc>, bool)> = Vec::new();
        for call in self.calls.values() {
            if call.answered_by.is_some() || call.originating {
                continue;
            }
            // The caller's side that is in a bridge (of a Local pair, the half that dialed).
            let caller_side = [Some(call.origin.as_str()), call.origin_partner.as_deref()];
            let listed_sides = caller_side
                .into_iter()
                .flatten()
                .filter_map(|c| by_name.get(c));
            let caller = listed_sides
                .clone()
                .find(|c| c.bridge().is_some() || c.get("Application") == Some("ConfBridge"))
                .or_else(|| listed_sides.clone().next());
            let Some(caller) = caller else {
                continue;
            };
            let room = caller.get("Application") == Some("ConfBridge");
            let party = if room {
                caller
                    .get("ApplicationData")
                    .and_then(|d| d.split(',').next())
                    .map(str::to_owned)
            } else {
                self.bridged_party(call, caller.name, by_name, &bridges)
            };
            if let Some(party) = party {
                let rang = !room && self.config.is_extension(&party);
                answered.push((call.id.clone(), party, call.started_at, rang));
            }
        }
        answered.sort();
        for (id, party, started_at, rang) in answered {
            let unseen = gap.unwrap_or(Gap {
                from: started_at,
                to: now,
            });
            if let Some(call) = self.calls.get_mut(&id) {
                // A phone that answered rang first, in the gap.
                if rang && !call.rang.contains(&party) {
                    call.rang.push(party.clone());
                }
            }
            self.answer(now, &id, party);
            if let Some(call) = self.calls.get_mut(&id) {
                call.answered_in_gap = Some(unseen);
            }
        }
    }

    /// The party at the far end of the bridges from `start`, through Local channel pairs:
    /// the phone, or the outside number, the caller talks to.
    fn bridged_party(
        &self,
        call: &Call,
        start: &str,
        by_name: &FxHashMap<&str, &Listed>,
        bridges: &FxHashMap<&str, Vec<&str>>,
    ) -> Option<String> {
        let mut at = start.to_owned();
        let mut through_local = None;
        let mut seen = FxHashSet::default();
        while seen.insert(at.clone()) {
            let bridge = by_name.get(at.as_str())?.bridge()?;
            let peer = bridges
                .get(bridge)?
                .iter()
                .find(|p| **p != at && !call.is_caller_side(p))?;
            match self.config.classify(peer) {
                Kind::Phone(ext) => return Some(ext),
                Kind::Local { number, .. } => {
                    through_local = Some(number).filter(|n| !n.is_empty());
                    at = local_partner(peer)?;
                    if by_name.get(at.as_str())?.bridge().is_none() {
                        // The far half runs an application itself (a dialplan phone).
                        return through_local.filter(|n| self.config.is_extension(n));
                    }
                }
                Kind::Trunk => {
                    let dialed = self.channels.get(*peer).and_then(|c| c.dialed.clone());
                    return dialed.or(through_local).or_else(|| call.to.clone());
                }
                Kind::Other => return None,
            }
        }
        None
    }
}
