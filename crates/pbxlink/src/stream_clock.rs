//! The stream clock: when did each event of a recorded AMI stream happen?
//!
//! Transcripts recorded with `timestampevents=no` carry no event times, yet call durations
//! must come out right in replay. Asterisk leaves enough time marks in the stream itself:
//!
//! - `Timestamp:` (timestampevents=yes): exact, used as is;
//! - `EventTV:` (security events) and `SentNTP:` (RTCPSent/RTCPReceived): exact;
//! - `Uniqueid` `<epoch>.<n>` on `Newchannel`: the channel was created in that second;
//! - `Cdr` events (after the fact): `EndTime` is when the CDR row ended, so the channel's
//!   `Hangup` is no earlier; an `AnswerTime` later than the row's `StartTime` is when its
//!   channel's dial was answered (or, for an originated channel already up before dialing,
//!   when the channel itself was answered). Cdr times are PBX local time without a zone:
//!   the offset is calibrated from each row's `UniqueID` epoch against its `StartTime`.
//!
//! The whole file is known in replay, so this works in two passes: first every event gets
//! the bounds its own marks (and the Cdr rows that point back at it) give, then each event
//! takes the latest lower bound seen so far, capped by the earliest upper bound still ahead.
//! The result never goes backwards. Second-resolution marks are floored, so a duration is
//! off by at most about a second.

use ami::Message;
use chrono::{DateTime, NaiveDateTime, Utc};
use rustc_hash::FxHashMap;

/// One time per message, in the same order.
pub fn reconstruct(msgs: &[Message]) -> Vec<DateTime<Utc>> {
    let mut lo: Vec<Option<f64>> = vec![None; msgs.len()];
    let mut hi: Vec<Option<f64>> = vec![None; msgs.len()];
    let mut first_up: FxHashMap<&str, usize> = FxHashMap::default();
    let mut answered: FxHashMap<(&str, &str), usize> = FxHashMap::default();
    let mut hangup: FxHashMap<&str, usize> = FxHashMap::default();
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
            Some("DialEnd") if m.get("DialStatus") == Some("ANSWER") => {
                if let Some(dest) = m.get("DestChannel") {
                    answered.entry((channel, dest)).or_insert(i);
                }
            }
            Some("Hangup") => {
                hangup.insert(channel, i);
            }
            Some("Cdr") => cdrs.push(m),
            _ => {}
        }
    }
    let offset = cdr_offset(&cdrs);
    for cdr in cdrs {
        let channel = cdr.get("Channel").unwrap_or("");
        let time = |key| cdr_time(cdr.get(key)?, offset);
        if let (Some(end), Some(&i)) = (time("EndTime"), hangup.get(channel)) {
            lo[i] = Some(lo[i].map_or(end, |t| t.max(end)));
        }
        let (Some(start), Some(answer)) = (time("StartTime"), time("AnswerTime")) else {
            continue;
        };
        if answer <= start {
            // Already up when this row began: the answer is not an event of this row.
            continue;
        }
        let dest = cdr.get("DestinationChannel").unwrap_or("");
        let candidates = [first_up.get(channel), answered.get(&(channel, dest))];
        if let Some(&i) = candidates.into_iter().flatten().min() {
            lo[i] = Some(lo[i].map_or(answer, |t| t.max(answer)));
            hi[i] = Some(hi[i].map_or(answer + 1.0, |t| t.min(answer + 1.0)));
        }
    }
    let mut ceiling = vec![f64::INFINITY; msgs.len()];
    let mut next = f64::INFINITY;
    for i in (0..msgs.len()).rev() {
        next = hi[i].map_or(next, |h| h.min(next));
        ceiling[i] = next;
    }
    let mut floor = f64::NEG_INFINITY;
    let mut out = Vec::with_capacity(msgs.len());
    for i in 0..msgs.len() {
        floor = lo[i].map_or(floor, |l| l.max(floor));
        let t = floor.min(ceiling[i]);
        let t = if t.is_finite() { t } else { 0.0 };
        out.push(DateTime::from_timestamp_millis((t * 1000.0) as i64).unwrap_or_default());
    }
    out
}

fn exact_time(m: &Message) -> Option<f64> {
    if let Some(ts) = m.get("Timestamp") {
        return ts.parse().ok();
    }
    if let Some(ntp) = m.get("SentNTP") {
        return ntp.parse().ok().filter(|t: &f64| *t > 0.0);
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
            expect![
                "22:54:30.000 22:54:30.000 22:54:34.000 22:54:40.250 22:54:42.000 22:54:42.000"
            ],
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
            expect!["22:54:30.000 22:54:30.000 22:54:30.000 22:54:33.125"],
        );
    }
}
