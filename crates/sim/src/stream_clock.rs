//! The stream clock: when did each event of a recorded AMI stream happen?
//!
//! Transcripts recorded with `timestampevents=no` carry no event times, yet call durations
//! must come out right in replay. Asterisk leaves enough time marks in the stream itself:
//!
//! - `Timestamp:` (timestampevents=yes): exact, used as is;
//! - `EventTV:` (security events) and `SentNTP:` of RTCPSent (the PBX's own clock; an
//!   RTCPReceived carries the far end's clock, so it is not used): exact;
//! - the first RTCPSent of a channel: `SentNTP - SentPackets x 20 ms` is when its media
//!   started, i.e. when the channel was answered (its first `Newstate Up`);
//! - `Uniqueid` `<epoch>.<n>` on `Newchannel`: the channel was created in that second;
//! - `Cdr` events (after the fact): `EndTime` is when the CDR row ended, so the channel's
//!   `Hangup` is no earlier, and an unanswered row ended with its dial's `DialEnd`; an
//!   `AnswerTime` later than the row's `StartTime` is when its channel's dial was answered
//!   (or, for an originated channel already up before dialing, when the channel itself was
//!   answered; a Local `;2` answering shows as its `;1` going up first). Cdr times are PBX
//!   local time without a zone: the offset is calibrated from each row's `UniqueID` epoch
//!   against its `StartTime`.
//!
//! The whole file is known in replay, so this works in two passes: first every event gets
//! the bounds its own marks (and the Cdr rows that point back at it) give, then each event
//! takes the latest lower bound seen so far, capped by the earliest upper bound still ahead
//! (the middle of the two when they are less than a second apart); the events of one burst
//! share one time. The result never goes backwards. On the recorded fixtures a call's
//! duration comes out within 1.5 s of the real one (checked against the `*.timeline.txt`
//! arrival times).

use ami::Message;
use chrono::{DateTime, NaiveDateTime, Utc};
use rustc_hash::FxHashMap;

/// RTP packet time assumed for a channel's first RTCP report (20 ms: the SIP default).
const PTIME_SECONDS: f64 = 0.020;
/// How far a channel's answer may lie from its media start estimated from RTCP.
const MEDIA_SLACK: f64 = 0.1;

/// One time per message, in the same order.
pub fn reconstruct(msgs: &[Message]) -> Vec<DateTime<Utc>> {
    let mut lo: Vec<Option<f64>> = vec![None; msgs.len()];
    let mut hi: Vec<Option<f64>> = vec![None; msgs.len()];
    let mut first_up: FxHashMap<&str, usize> = FxHashMap::default();
    let mut answered: FxHashMap<(&str, &str), usize> = FxHashMap::default();
    let mut dial_ended: FxHashMap<(&str, &str), usize> = FxHashMap::default();
    let mut hangup: FxHashMap<&str, usize> = FxHashMap::default();
    let mut media_start: FxHashMap<&str, f64> = FxHashMap::default();
    let mut cdrs = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        if let Some(t) = exact_time(m) {
            lo[i] = Some(t);
            hi[i] = Some(t);
        }
        let channel = m.get("Channel").unwrap_or("");
        match m.event() {
            Some("Newchannel") => {
                if let Some(e) = m.get("Uniqueid").and_then(uniqueid_epoch) {
                    lo[i] = Some(lo[i].map_or(e, |t| t.max(e)));
                    hi[i] = Some(hi[i].map_or(e + 1.0, |t| t.min(e + 1.0)));
                }
            }
            Some("Newstate") if m.get("ChannelStateDesc") == Some("Up") => {
                first_up.entry(channel).or_insert(i);
            }
            Some("DialEnd") => {
                if let Some(dest) = m.get("DestChannel") {
                    if m.get("DialStatus") == Some("ANSWER") {
                        answered.entry((channel, dest)).or_insert(i);
                    } else {
                        dial_ended.entry((channel, dest)).or_insert(i);
                    }
                }
            }
            Some("Hangup") => {
                hangup.insert(channel, i);
            }
            Some("Cdr") => cdrs.push(m),
            Some("RTCPSent") => {
                if let (Some(sent), Some(packets)) = (exact_time(m), m.get("SentPackets")) {
                    if let Ok(packets) = packets.parse::<f64>() {
                        media_start
                            .entry(channel)
                            .or_insert(sent - packets * PTIME_SECONDS);
                    }
                }
            }
            _ => {}
        }
    }
    for (channel, start) in media_start {
        if let Some(&i) = first_up.get(channel) {
            lo[i] = Some(lo[i].map_or(start - MEDIA_SLACK, |t| t.max(start - MEDIA_SLACK)));
            hi[i] = Some(hi[i].map_or(start + MEDIA_SLACK, |t| t.min(start + MEDIA_SLACK)));
        }
    }
    let offset = cdr_offset(&cdrs);
    for cdr in cdrs {
        let channel = cdr.get("Channel").unwrap_or("");
        let time = |key| cdr_time(cdr.get(key)?, offset);
        let dest = cdr.get("DestinationChannel").unwrap_or("");
        if let (Some(end), Some(&i)) = (time("EndTime"), hangup.get(channel)) {
            lo[i] = Some(lo[i].map_or(end, |t| t.max(end)));
        }
        if let (Some(end), Some(&i)) = (time("EndTime"), dial_ended.get(&(channel, dest))) {
            if cdr.get("Disposition") != Some("ANSWERED") {
                // An unanswered row ends when its dial does.
                lo[i] = Some(lo[i].map_or(end, |t| t.max(end)));
                hi[i] = Some(hi[i].map_or(end + 1.0, |t| t.min(end + 1.0)));
            }
        }
        let (Some(start), Some(answer)) = (time("StartTime"), time("AnswerTime")) else {
            continue;
        };
        if answer <= start {
            // Already up when this row began: the answer is not an event of this row.
            continue;
        }
        // A Local `;2` answering shows first as its `;1` going up.
        let partner = calls::party::local_partner(channel);
        let candidates = [
            first_up.get(channel),
            partner.as_deref().and_then(|p| first_up.get(p)),
            answered.get(&(channel, dest)),
        ];
        if let Some(&i) = candidates.into_iter().flatten().min() {
            lo[i] = Some(lo[i].map_or(answer, |t| t.max(answer)));
            hi[i] = Some(hi[i].map_or(answer + 1.0, |t| t.min(answer + 1.0)));
        }
    }
    share_within_bursts(msgs, &mut lo, &mut hi);
    let mut ceiling = vec![f64::INFINITY; msgs.len()];
    let mut next = f64::INFINITY;
    for i in (0..msgs.len()).rev() {
        next = hi[i].map_or(next, |h| h.min(next));
        ceiling[i] = next;
    }
    let mut floor = f64::NEG_INFINITY;
    let mut last = f64::NEG_INFINITY;
    let mut out = Vec::with_capacity(msgs.len());
    for i in 0..msgs.len() {
        floor = lo[i].map_or(floor, |l| l.max(floor));
        let ceiling = ceiling[i];
        // Within a second of both bounds (a floored whole second), the middle is the best
        // guess; across a longer gap, events come in bursts right after what woke them.
        let t = if ceiling - floor <= 1.0 {
            (floor + ceiling) / 2.0
        } else {
            floor.min(ceiling)
        };
        let t = if t.is_finite() { t.max(last) } else { 0.0 };
        last = t;
        out.push(DateTime::from_timestamp_millis((t * 1000.0) as i64).unwrap_or_default());
    }
    out
}

/// Asterisk writes events in bursts: something happens (a digit, an answer, a hangup, a
/// timeout) and the dialplan reacts at once. Events of one burst share one time, so a
/// time mark anywhere in the burst (a `Newchannel` late in it) dates all of it.
fn share_within_bursts(msgs: &[Message], lo: &mut [Option<f64>], hi: &mut [Option<f64>]) {
    let mut start = 0;
    for end in 1..=msgs.len() {
        if end < msgs.len() && !starts_burst(&msgs[end]) {
            continue;
        }
        let burst = start..end;
        let blo = lo[burst.clone()].iter().flatten().copied().reduce(f64::max);
        let bhi = hi[burst.clone()].iter().flatten().copied().reduce(f64::min);
        lo[burst.clone()].fill(blo);
        hi[burst].fill(bhi);
        start = end;
    }
}

/// Events that follow a wait (a person or a timer acted) rather than the dialplan.
fn starts_burst(m: &Message) -> bool {
    match m.event() {
        Some("Newchannel") => m.get("Uniqueid") == m.get("Linkedid"),
        Some(
            "DTMFBegin" | "DTMFEnd" | "DialEnd" | "DialState" | "Newstate" | "HangupRequest"
            | "SoftHangupRequest" | "Hangup" | "AgentRingNoAnswer" | "AgentConnect"
            | "AgentComplete" | "QueueCallerAbandon" | "BlindTransfer" | "AttendedTransfer"
            | "Pickup" | "ConfbridgeJoin" | "ConfbridgeLeave" | "Hold" | "Unhold"
            | "OriginateResponse" | "RTCPSent" | "RTCPReceived" | "UserEvent" | "MusicOnHoldStop"
            | "FullyBooted" | "SuccessfulAuth",
        ) => true,
        Some(_) => false,
        // Responses answer actions sent at any time.
        None => true,
    }
}

fn exact_time(m: &Message) -> Option<f64> {
    if let Some(ts) = m.get("Timestamp") {
        return ts.parse().ok();
    }
    // Only our own PBX's RTCP reports: a received report carries the far end's clock.
    if m.event() == Some("RTCPSent") {
        return m.get("SentNTP")?.parse().ok().filter(|t: &f64| *t > 0.0);
    }
    let tv = m.get("EventTV")?;
    let parsed = DateTime::parse_from_str(tv, "%Y-%m-%dT%H:%M:%S%.f%z").ok()?;
    Some(parsed.timestamp_millis() as f64 / 1000.0)
}

/// `1795388070.12` -> 1795388070 (seconds).
fn uniqueid_epoch(id: &str) -> Option<f64> {
    id.split('.').next()?.parse::<i64>().ok().map(|e| e as f64)
}

/// The PBX's UTC offset: a Cdr row starts no earlier than its channel was created, and the
/// first row of a channel starts in its creation second, so the smallest difference between
/// `StartTime` (read as UTC) and the `UniqueID` epoch, rounded to a quarter hour, is it.
fn cdr_offset(cdrs: &[&Message]) -> f64 {
    cdrs.iter()
        .filter_map(|c| {
            let start = cdr_time(c.get("StartTime")?, 0.0)?;
            Some(start - uniqueid_epoch(c.get("UniqueID")?)?)
        })
        .min_by(f64::total_cmp)
        .map_or(0.0, |d| (d / 900.0).round() * 900.0)
}

fn cdr_time(s: &str, offset: f64) -> Option<f64> {
    let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok()?;
    Some(t.and_utc().timestamp() as f64 - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(events: &[&[(&str, &str)]], expect: Expect) {
        let msgs: Vec<Message> = events
            .iter()
            .map(|e| Message::from_pairs(e.iter().copied()))
            .collect();
        let times: Vec<String> = reconstruct(&msgs)
            .iter()
            .map(|t| t.format("%H:%M:%S%.3f").to_string())
            .collect();
        expect.assert_eq(&times.join(" "));
    }

    #[test]
    fn anchors_from_uniqueid_rtcp_and_cdr() {
        check(
            &[
                &[
                    ("Event", "Newchannel"),
                    ("Channel", "PJSIP/201-1"),
                    ("Uniqueid", "1795388070.0"),
                ],
                &[
                    ("Event", "Newstate"),
                    ("Channel", "PJSIP/201-1"),
                    ("ChannelStateDesc", "Ringing"),
                ],
                &[
                    ("Event", "DialEnd"),
                    ("Channel", "PJSIP/201-1"),
                    ("DestChannel", "PJSIP/202-2"),
                    ("DialStatus", "ANSWER"),
                ],
                &[("Event", "RTCPSent"), ("SentNTP", "1795388080.250000")],
                &[("Event", "Hangup"), ("Channel", "PJSIP/201-1")],
                // PBX local time is UTC+3 here.
                &[
                    ("Event", "Cdr"),
                    ("Channel", "PJSIP/201-1"),
                    ("DestinationChannel", "PJSIP/202-2"),
                    ("StartTime", "2026-11-23 01:54:30"),
                    ("AnswerTime", "2026-11-23 01:54:34"),
                    ("EndTime", "2026-11-23 01:54:42"),
                    ("UniqueID", "1795388070.0"),
                ],
            ],
            expect![[r#"
                22:54:30.500 22:54:30.500 22:54:34.500 22:54:40.250 22:54:42.000 22:54:42.000"#]],
        );
    }

    #[test]
    fn timestamps_win_and_time_never_goes_back() {
        check(
            &[
                &[("Event", "Newexten"), ("Timestamp", "1795388070.500")],
                &[("Event", "VarSet")],
                &[("Event", "Newchannel"), ("Uniqueid", "1795388069.3")],
                &[
                    ("Event", "SuccessfulAuth"),
                    ("EventTV", "2026-11-22T22:54:33.125+0000"),
                ],
            ],
            expect!["22:54:30.250 22:54:30.250 22:54:30.250 22:54:33.125"],
        );
    }
}
