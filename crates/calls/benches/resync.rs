//! Criterion bench of the reconciliation after a gap (issue 20): a tracker holding 1,000
//! calls in progress is fed the PBX's `Status` + `CoreShowChannels` listing, in which a third
//! of its calls are gone, a third were answered in the gap, a third are unchanged, and 100
//! calls it never saw have begun. `bench/gap.sh` measures the same end to end.

use ami::Message;
use calls::{Tracker, TrackerConfig};
use chrono::{DateTime, TimeDelta, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// Calls the tracker holds when the link drops.
const CALLS: usize = 1_000;
/// Calls that began in the gap: only the listing shows them.
const NEW_IN_GAP: usize = 100;
/// Uniqueid epoch of every channel (`1795388000.N`); N orders channels by creation.
const EPOCH: u64 = 1_795_388_000;

/// What became of a tracked call while the link was down.
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    /// Both channels hung up: the listing does not show them.
    Gone,
    /// It was ringing at the drop; the listing shows both channels up in one bridge.
    AnsweredInGap,
    /// Answered before the drop and still talking.
    Unchanged,
}

fn fate(call: usize) -> Fate {
    match call % 3 {
        0 => Fate::Gone,
        1 => Fate::AnsweredInGap,
        _ => Fate::Unchanged,
    }
}

/// The caller's and callee's extensions, channel names and Uniqueids of call `i`.
struct Legs {
    from: String,
    to: String,
    caller: String,
    callee: String,
    caller_id: String,
    callee_id: String,
}

fn legs(i: usize) -> Legs {
    // Extensions 2000-5999: no two calls share a phone, as with 1,000 real ones.
    let (from, to) = (2000 + 2 * i, 2001 + 2 * i);
    Legs {
        caller: format!("PJSIP/{from}-{i:08x}"),
        callee: format!("PJSIP/{to}-{i:08x}"),
        caller_id: format!("{EPOCH}.{}", 2 * i),
        callee_id: format!("{EPOCH}.{}", 2 * i + 1),
        from: from.to_string(),
        to: to.to_string(),
    }
}

fn msg(pairs: &[(&str, &str)]) -> Message {
    Message::from_pairs(pairs.iter().copied())
}

/// The events that put call `i` in progress: two channels, the dial, and its answer unless
/// the answer is to happen in the gap.
fn call_events(i: usize) -> Vec<Message> {
    let l = legs(i);
    let mut events = vec![
        msg(&[
            ("Event", "Newchannel"),
            ("Channel", &l.caller),
            ("ChannelStateDesc", "Ring"),
            ("CallerIDNum", &l.from),
            ("Exten", &l.to),
            ("Context", "from-internal"),
            ("Uniqueid", &l.caller_id),
            ("Linkedid", &l.caller_id),
        ]),
        msg(&[
            ("Event", "Newchannel"),
            ("Channel", &l.callee),
            ("ChannelStateDesc", "Down"),
            ("CallerIDNum", &l.to),
            ("Exten", "s"),
            ("Context", "from-internal"),
            ("Uniqueid", &l.callee_id),
            ("Linkedid", &l.caller_id),
        ]),
        msg(&[
            ("Event", "DialBegin"),
            ("Channel", &l.caller),
            ("DestChannel", &l.callee),
            ("DialString", &l.to),
        ]),
    ];
    if fate(i) != Fate::AnsweredInGap {
        events.push(msg(&[
            ("Event", "DialEnd"),
            ("Channel", &l.caller),
            ("DestChannel", &l.callee),
            ("DialStatus", "ANSWER"),
        ]));
    }
    events
}

/// One `CoreShowChannel` item: up, in `bridge`, `age` seconds old.
fn listed(channel: &str, uniqueid: &str, linkedid: &str, bridge: &str, age: u32) -> Message {
    let duration = format!("00:{:02}:{:02}", age / 60, age % 60);
    msg(&[
        ("Event", "CoreShowChannel"),
        ("ActionID", "resync-2"),
        ("Channel", channel),
        ("Uniqueid", uniqueid),
        ("Linkedid", linkedid),
        ("ChannelStateDesc", "Up"),
        ("BridgeId", bridge),
        ("Duration", &duration),
    ])
}

/// What the PBX answers at the login after the gap: `Status` (the number each surviving
/// caller dialed) then `CoreShowChannels`.
fn listing() -> Vec<Message> {
    // (caller, callee, Uniqueids, bridge) of every call the PBX still has, oldest first.
    let mut up = Vec::new();
    for i in (0..CALLS).filter(|&i| fate(i) != Fate::Gone) {
        let l = legs(i);
        up.push((l.caller, l.callee, l.caller_id, l.callee_id, l.to));
    }
    for n in 0..NEW_IN_GAP {
        let i = CALLS + n;
        let l = legs(i);
        up.push((l.caller, l.callee, l.caller_id, l.callee_id, l.to));
    }
    let mut out = vec![msg(&[
        ("Response", "Success"),
        ("ActionID", "resync-1"),
        ("EventList", "start"),
        ("Message", "Channel status will follow"),
    ])];
    for (caller, _, caller_id, _, dialed) in &up {
        out.push(msg(&[
            ("Event", "Status"),
            ("ActionID", "resync-1"),
            ("Channel", caller),
            ("DNID", dialed),
            ("Uniqueid", caller_id),
            ("Linkedid", caller_id),
        ]));
    }
    let items = (2 * up.len()).to_string();
    out.push(msg(&[
        ("Event", "StatusComplete"),
        ("ActionID", "resync-1"),
        ("Items", &up.len().to_string()),
    ]));
    out.push(msg(&[
        ("Response", "Success"),
        ("ActionID", "resync-2"),
        ("EventList", "start"),
        ("Message", "Channels will follow"),
    ]));
    for (n, (caller, callee, caller_id, callee_id, _)) in up.iter().enumerate() {
        let bridge = format!("bridge-{n:05}");
        out.push(listed(caller, caller_id, caller_id, &bridge, 90));
        out.push(listed(callee, callee_id, caller_id, &bridge, 85));
    }
    out.push(msg(&[
        ("Event", "CoreShowChannelsComplete"),
        ("ActionID", "resync-2"),
        ("EventList", "Complete"),
        ("ListItems", &items),
    ]));
    out
}

/// A tracker holding `CALLS` calls, its link down since `down`.
fn tracker_in_gap(events: &[Message], start: DateTime<Utc>, down: DateTime<Utc>) -> Tracker {
    let mut tracker = Tracker::new(TrackerConfig::default());
    for m in events {
        tracker.handle(start, m);
    }
    while tracker.poll_event().is_some() {}
    assert_eq!(tracker.calls_in_progress(), CALLS);
    tracker.link_down(down);
    tracker
}

fn resync(c: &mut Criterion) {
    let events: Vec<Message> = (0..CALLS).flat_map(call_events).collect();
    let listing = listing();
    let start = DateTime::from_timestamp(EPOCH as i64, 0).expect("valid epoch");
    let (down, login) = (
        start + TimeDelta::seconds(60),
        start + TimeDelta::seconds(90),
    );

    // The bench is only worth its number if the listing does what it says.
    let mut tracker = tracker_in_gap(&events, start, down);
    for m in &listing {
        tracker.handle(login, m);
    }
    let found = tracker.take_resync().expect("the listing reconciles");
    assert_eq!(found.ended, 2 * CALLS.div_ceil(3));
    assert_eq!(found.taken_in, 2 * NEW_IN_GAP);
    // The calls that began in the gap are bridged too: answered in it.
    assert_eq!(found.answered, CALLS / 3 + NEW_IN_GAP);
    assert_eq!(
        tracker.calls_in_progress(),
        CALLS - CALLS.div_ceil(3) + NEW_IN_GAP
    );

    let mut group = c.benchmark_group("resync");
    group.throughput(Throughput::Elements(CALLS as u64));
    group.sample_size(30);
    group.bench_function("listing_after_gap_1000_calls", |b| {
        b.iter_batched(
            || tracker_in_gap(&events, start, down),
            |mut tracker| {
                for m in &listing {
                    tracker.handle(login, m);
                }
                // The records and live events it gives are part of the work.
                while tracker.poll_event().is_some() {}
                while tracker.poll_record().is_some() {}
                (tracker.take_resync(), tracker)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, resync);
criterion_main!(benches);
