//! Tracker behaviour on hand-written event streams, for the cases the recorded fixtures do
//! not show: DND, failed dials, configured trunks, phones not named by their extension,
//! outbound routes that rewrite the number, attaching mid-call, reconnect resync and
//! malformed events. One event per line (`Event k=v k=v`, `~` for a space in a value);
//! line N happens at second N. A line `LinkDown` tells the tracker the link went down
//! ([`Tracker::link_down`]); a record's moments that fell in the gap follow it, in seconds.

use ami::Message;
use calls::{Tracker, TrackerConfig};
use chrono::DateTime;
use expect_test::{expect, Expect};

fn run(config: TrackerConfig, input: &str) -> String {
    let mut tracker = Tracker::new(config);
    let mut out = String::new();
    for (i, line) in input
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let now = DateTime::from_timestamp(i as i64, 0).unwrap();
        if line == "LinkDown" {
            tracker.link_down(now);
            continue;
        }
        let mut words = line.split_whitespace();
        let mut msg = Message::new();
        if let Some(event) = words.next().filter(|w| !w.contains('=')) {
            msg.push("Event", event);
        }
        for kv in words {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            msg.push(k, &v.replace('~', " "));
        }
        tracker.handle(now, &msg);
        while let Some(ev) = tracker.poll_event() {
            out.push_str(&format!(
                "event {}\n",
                serde_json::to_string(&ev.kind).unwrap()
            ));
        }
        while let Some(r) = tracker.poll_record() {
            out.push_str(&format!(
                "record {} {:?} {:?}->{:?} {:?} by={:?} rang={:?} ring={} talk={}",
                r.id,
                r.direction,
                r.from,
                r.to,
                r.disposition,
                r.answered_by,
                r.rang,
                r.ring_seconds,
                r.talk_seconds
            ));
            let p = &r.provenance;
            for gap in &p.gaps {
                let (from, to) = (gap.from.timestamp(), gap.to.timestamp());
                out.push_str(&format!(" gap={from}..{to}"));
            }
            for (what, gap) in [
                ("started", p.started_in_gap),
                ("answered", p.answered_in_gap),
                ("ended", p.ended_in_gap),
            ] {
                if let Some(gap) = gap {
                    let (from, to) = (gap.from.timestamp(), gap.to.timestamp());
                    out.push_str(&format!(" {what}_in_gap={from}..{to}"));
                }
            }
            if p.ended_in_gap.is_some() {
                out.push_str(&format!(" ended_at={}", r.ended_at.timestamp()));
            }
            out.push('\n');
            // Who each party was taken for, and why (when it is not plain from the name).
            for entry in r
                .timeline
                .iter()
                .filter(|e| ["party", "dialed"].contains(&&*e.what))
            {
                out.push_str(&format!("  {}: {}\n", entry.what, entry.detail));
            }
        }
    }
    out.push_str(&format!("in progress: {}\n", tracker.calls_in_progress()));
    out
}

fn check(input: &str, expect: Expect) {
    expect.assert_eq(&run(TrackerConfig::default(), input));
}

#[test]
fn dnd_is_busy_without_ringing() {
    check(
        "
        Newchannel Channel=PJSIP/201-1 Uniqueid=9.1 Linkedid=9.1 CallerIDNum=201 Exten=204
        Newexten Channel=PJSIP/201-1 Application=Busy AppData=20
        Hangup Channel=PJSIP/201-1 Cause=17
        ",
        expect![[r#"
            event {"type":"call.started","direction":"internal","from":"201","to":"204"}
            event {"type":"call.ended","disposition":"busy"}
            record 9.1 Internal Some("201")->Some("204") Busy by=None rang=[] ring=1 talk=0
            in progress: 0
        "#]],
    );
}

#[test]
fn unreachable_phone_is_failed() {
    check(
        "
        Newchannel Channel=PJSIP/201-1 Uniqueid=9.1 Linkedid=9.1 CallerIDNum=201 Exten=205
        Newchannel Channel=PJSIP/205-2 Uniqueid=9.2 Linkedid=9.1 CallerIDNum=205 Exten=s
        DialBegin Channel=PJSIP/201-1 DestChannel=PJSIP/205-2 DialString=205
        DialEnd Channel=PJSIP/201-1 DestChannel=PJSIP/205-2 DialStatus=CHANUNAVAIL
        Hangup Channel=PJSIP/205-2
        Hangup Channel=PJSIP/201-1
        ",
        expect![[r#"
            event {"type":"call.started","direction":"internal","from":"201","to":"205"}
            event {"type":"call.ringing","extensions":["205"]}
            event {"type":"call.ended","disposition":"failed"}
            record 9.1 Internal Some("201")->Some("205") Failed by=None rang=["205"] ring=3 talk=0
            in progress: 0
        "#]],
    );
}

#[test]
fn configured_trunk_named_like_an_extension() {
    let config = TrackerConfig {
        trunks: vec!["5000".into()],
        ..TrackerConfig::default()
    };
    expect![[r#"
        event {"type":"call.started","direction":"inbound","from":"74951234567","to":"4950000000"}
        event {"type":"call.ringing","extensions":["201"]}
        event {"type":"call.answered","by":"201"}
        event {"type":"call.ended","disposition":"answered"}
        record 9.1 Inbound Some("74951234567")->Some("4950000000") Answered by=Some("201") rang=["201"] ring=3 talk=2
          party: PJSIP/5000 is a trunk: the tracker config
        in progress: 0
    "#]].assert_eq(&run(
        config,
        "
        Newchannel Channel=PJSIP/5000-1 Uniqueid=9.1 Linkedid=9.1 CallerIDNum=74951234567 Exten=4950000000
        Newchannel Channel=PJSIP/201-2 Uniqueid=9.2 Linkedid=9.1 CallerIDNum=201 Exten=s
        DialBegin Channel=PJSIP/5000-1 DestChannel=PJSIP/201-2 DialString=201
        DialEnd Channel=PJSIP/5000-1 DestChannel=PJSIP/201-2 DialStatus=ANSWER
        Hangup Channel=PJSIP/201-2
        Hangup Channel=PJSIP/5000-1
        ",
    ));
}

#[test]
fn attaching_mid_call_invents_nothing() {
    check(
        "
        Newstate Channel=PJSIP/201-1 ChannelStateDesc=Up Uniqueid=9.1 Linkedid=9.1
        DialBegin Channel=PJSIP/201-1 DestChannel=PJSIP/202-2
        DialEnd Channel=PJSIP/201-1 DestChannel=PJSIP/202-2 DialStatus=ANSWER
        Newchannel Channel=Local/203@from-queue-1;1 Uniqueid=9.3 Linkedid=9.1
        BlindTransfer TransfererChannel=PJSIP/202-2 TransfereeChannel=PJSIP/201-1 Extension=203
        Pickup Channel=PJSIP/204-4 TargetChannel=PJSIP/202-2
        Hangup Channel=PJSIP/202-2
        Hangup Channel=PJSIP/201-1
        ",
        expect![[r#"
            in progress: 0
        "#]],
    );
}

#[test]
fn resync_snapshot_ends_channels_that_hung_up_while_away() {
    check(
        "
        Newchannel Channel=PJSIP/201-1 Uniqueid=9.1 Linkedid=9.1 CallerIDNum=201 Exten=202
        Newchannel Channel=PJSIP/202-2 Uniqueid=9.2 Linkedid=9.1 CallerIDNum=202 Exten=s
        DialBegin Channel=PJSIP/201-1 DestChannel=PJSIP/202-2 DialString=202
        DialEnd Channel=PJSIP/201-1 DestChannel=PJSIP/202-2 DialStatus=ANSWER
        Newchannel Channel=PJSIP/203-3 Uniqueid=9.3 Linkedid=9.3 CallerIDNum=203 Exten=204
        Response=Success EventList=start Message=Channels~will~follow
        CoreShowChannel Channel=PJSIP/203-3 Uniqueid=9.3 Linkedid=9.3
        CoreShowChannel Channel=PJSIP/999-9 Uniqueid=8.1 Linkedid=8.1
        Newchannel Channel=PJSIP/205-5 Uniqueid=9.5 Linkedid=9.5 CallerIDNum=205 Exten=201
        CoreShowChannelsComplete ListItems=2
        Hangup Channel=PJSIP/203-3
        Hangup Channel=PJSIP/205-5
        ",
        expect![[r#"
            event {"type":"call.started","direction":"internal","from":"201","to":"202"}
            event {"type":"call.ringing","extensions":["202"]}
            event {"type":"call.answered","by":"202"}
            event {"type":"call.started","direction":"internal","from":"203","to":"204"}
            event {"type":"call.started","direction":"internal","from":"205","to":"201"}
            event {"type":"call.ended","disposition":"answered"}
            event {"type":"call.started","direction":"internal","from":"999","to":null}
            record 9.1 Internal Some("201")->Some("202") Answered by=Some("202") rang=["202"] ring=3 talk=6
            event {"type":"call.ended","disposition":"failed"}
            record 9.3 Internal Some("203")->Some("204") Failed by=None rang=[] ring=6 talk=0
            event {"type":"call.ended","disposition":"failed"}
            record 9.5 Internal Some("205")->Some("201") Failed by=None rang=[] ring=3 talk=0
            in progress: 1
        "#]],
    );
}

#[test]
fn malformed_events_are_ignored() {
    check(
        "
        Newchannel
        Newchannel Channel=PJSIP/201-1
        DialBegin DestChannel=nowhere
        DialEnd Channel= DestChannel= DialStatus=
        Hangup
        VarSet Variable=MIXMONITOR_FILENAME
        Pickup TargetChannel=x
        AttendedTransfer OrigTransfererChannel=y
        ConfbridgeJoin Channel=z Conference=1
        key=only-fields
        Newchannel Channel=Local/weird Uniqueid=1.1 Linkedid=1.1
        Hangup Channel=Local/weird
        ",
        expect![[r#"
            event {"type":"call.started","direction":"internal","from":null,"to":null}
            event {"type":"call.ended","disposition":"cancelled"}
            record 1.1 Internal None->None Cancelled by=None rang=[] ring=1 talk=0
            in progress: 0
        "#]],
    );
}

#[test]
fn ring_group_member_on_dnd_did_not_ring() {
    check(
        "
        Newchannel Channel=PJSIP/carrier-1 Uniqueid=9.1 Linkedid=9.1 CallerIDNum=15551234567 Exten=15550001008
        Newchannel Channel=Local/201#@from-internal-1;1 Uniqueid=9.2 Linkedid=9.1
        Newchannel Channel=Local/201#@from-internal-1;2 Uniqueid=9.3 Linkedid=9.1
        Newchannel Channel=Local/204#@from-internal-2;1 Uniqueid=9.4 Linkedid=9.1
        Newchannel Channel=Local/204#@from-internal-2;2 Uniqueid=9.5 Linkedid=9.1
        DialBegin Channel=PJSIP/carrier-1 DestChannel=Local/201#@from-internal-1;1
        DialBegin Channel=PJSIP/carrier-1 DestChannel=Local/204#@from-internal-2;1
        Newchannel Channel=PJSIP/201-3 Uniqueid=9.6 Linkedid=9.1 CallerIDNum=201
        DialBegin Channel=Local/201#@from-internal-1;2 DestChannel=PJSIP/201-3
        Newstate Channel=Local/201#@from-internal-1;1 ChannelStateDesc=Ringing
        Hangup Channel=Local/204#@from-internal-2;2
        DialEnd Channel=PJSIP/carrier-1 DestChannel=Local/204#@from-internal-2;1 DialStatus=BUSY
        Hangup Channel=Local/204#@from-internal-2;1
        DialEnd Channel=Local/201#@from-internal-1;2 DestChannel=PJSIP/201-3 DialStatus=ANSWER
        DialEnd Channel=PJSIP/carrier-1 DestChannel=Local/201#@from-internal-1;1 DialStatus=ANSWER
        Hangup Channel=PJSIP/carrier-1
        Hangup Channel=Local/201#@from-internal-1;1
        Hangup Channel=Local/201#@from-internal-1;2
        Hangup Channel=PJSIP/201-3
        ",
        expect![[r#"
            event {"type":"call.started","direction":"inbound","from":"15551234567","to":"15550001008"}
            event {"type":"call.ringing","extensions":["201"]}
            event {"type":"call.answered","by":"201"}
            event {"type":"call.ended","disposition":"answered"}
            record 9.1 Inbound Some("15551234567")->Some("15550001008") Answered by=Some("201") rang=["201"] ring=13 talk=5
            in progress: 0
        "#]],
    );
}

mod generated {
    use super::*;
    use proptest::prelude::*;

    const EVENTS: &[&str] = &[
        "Newchannel",
        "Newstate",
        "DialBegin",
        "DialEnd",
        "Hangup",
        "HangupRequest",
        "Pickup",
        "BlindTransfer",
        "AttendedTransfer",
        "ConfbridgeJoin",
        "QueueCallerJoin",
        "QueueCallerAbandon",
        "VarSet",
        "Newexten",
        "DTMFEnd",
        "CoreShowChannel",
        "CoreShowChannelsComplete",
    ];
    const CHANNELS: &[&str] = &[
        "PJSIP/201-1",
        "PJSIP/carrier-2",
        "Local/202@from-queue-3;1",
        "Local/202@from-queue-3;2",
        "Local/15557654321@from-internal-4;2",
        "PJSIP/203-5",
        "",
    ];
    const KEYS: &[&str] = &[
        "Channel",
        "DestChannel",
        "TargetChannel",
        "TransfererChannel",
        "TransfereeChannel",
        "OrigTransfererChannel",
        "TransferTargetChannel",
    ];
    const VALUES: &[&str] = &[
        "ANSWER",
        "BUSY",
        "CANCEL",
        "NOANSWER",
        "Up",
        "Ringing",
        "1.1",
        "1.2",
        "201",
        "*8",
        "MIXMONITOR_FILENAME",
        "BackGround",
        "Received",
    ];
    const PLAIN_KEYS: &[&str] = &[
        "Uniqueid",
        "Linkedid",
        "DialStatus",
        "ChannelStateDesc",
        "Exten",
        "Variable",
        "Application",
        "Value",
        "Direction",
        "Digit",
        "Conference",
        "Queue",
        "Extension",
    ];

    fn event() -> impl Strategy<Value = Message> {
        (
            prop::sample::select(EVENTS),
            prop::collection::vec(
                (prop::sample::select(KEYS), prop::sample::select(CHANNELS)),
                0..4,
            ),
            prop::collection::vec(
                (
                    prop::sample::select(PLAIN_KEYS),
                    prop::sample::select(VALUES),
                ),
                0..6,
            ),
        )
            .prop_map(|(name, chans, fields)| {
                let mut m = Message::new();
                m.push("Event", name);
                for (k, v) in chans.into_iter().chain(fields) {
                    m.push(k, v);
                }
                m
            })
    }

    proptest! {
        #[test]
        fn arbitrary_event_streams_never_panic_and_flush_forgets_everything(
            events in prop::collection::vec(event(), 0..60)
        ) {
            let mut tracker = Tracker::new(TrackerConfig::default());
            for (i, m) in events.iter().enumerate() {
                tracker.handle(DateTime::from_timestamp(i as i64, 0).unwrap(), m);
            }
            tracker.flush(DateTime::from_timestamp(60, 0).unwrap());
            prop_assert_eq!(tracker.calls_in_progress(), 0);
            while let Some(r) = tracker.poll_record() {
                prop_assert!(r.ended_at >= r.started_at);
            }
        }
    }
}

#[test]
fn click_to_call_through_a_local_channel_is_answered_by_the_external_party() {
    // FreePBX-style: Originate Channel=Local/201@from-internal, Exten=<number>.
    check(
        "
        Newchannel Channel=Local/201@from-internal-1;1 Uniqueid=9.1 Linkedid=9.1 Exten=201
        Newchannel Channel=Local/201@from-internal-1;2 Uniqueid=9.2 Linkedid=9.1 Exten=201
        DialBegin DestChannel=Local/201@from-internal-1;1 DialString=201@from-internal
        Newchannel Channel=PJSIP/201-2 Uniqueid=9.3 Linkedid=9.1 CallerIDNum=201
        DialBegin Channel=Local/201@from-internal-1;2 DestChannel=PJSIP/201-2 DialString=201
        Newstate Channel=PJSIP/201-2 ChannelStateDesc=Ringing
        DialEnd Channel=Local/201@from-internal-1;2 DestChannel=PJSIP/201-2 DialStatus=ANSWER
        Newstate Channel=Local/201@from-internal-1;1 ChannelStateDesc=Up
        DialEnd DestChannel=Local/201@from-internal-1;1 DialStatus=ANSWER
        Newchannel Channel=PJSIP/carrier-3 Uniqueid=9.4 Linkedid=9.1
        DialBegin Channel=Local/201@from-internal-1;1 DestChannel=PJSIP/carrier-3 DialString=15557654321@carrier
        DialEnd Channel=Local/201@from-internal-1;1 DestChannel=PJSIP/carrier-3 DialStatus=ANSWER
        Hangup Channel=PJSIP/201-2
        Hangup Channel=Local/201@from-internal-1;2
        Hangup Channel=Local/201@from-internal-1;1
        Hangup Channel=PJSIP/carrier-3
        ",
        expect![[r#"
            event {"type":"call.started","direction":"internal","from":"201","to":null}
            event {"type":"call.ringing","extensions":["201"]}
            event {"type":"call.answered","by":"15557654321"}
            event {"type":"call.ended","disposition":"answered"}
            record 9.1 Outbound Some("201")->Some("15557654321") Answered by=Some("15557654321") rang=["201"] ring=3 talk=4
            in progress: 0
        "#]],
    );
}

#[test]
fn link_gap_answer_seen_in_the_bridges_end_at_the_gap_start() {
    // 201 calls 202 (answered in the gap: the listing shows them bridged); 203 calls 204,
    // which hangs up in the gap: it ends when it was last known alive, not at the reconnect.
    check(
        "
        Newchannel Channel=PJSIP/201-1 Uniqueid=9.1 Linkedid=9.1 CallerIDNum=201 Exten=202
        Newchannel Channel=PJSIP/202-2 Uniqueid=9.2 Linkedid=9.1 CallerIDNum=202 Exten=s
        DialBegin Channel=PJSIP/201-1 DestChannel=PJSIP/202-2 DialString=202
        Newchannel Channel=PJSIP/203-3 Uniqueid=9.3 Linkedid=9.3 CallerIDNum=203 Exten=204
        Newchannel Channel=PJSIP/204-4 Uniqueid=9.4 Linkedid=9.3 CallerIDNum=204 Exten=s
        DialBegin Channel=PJSIP/203-3 DestChannel=PJSIP/204-4 DialString=204
        DialEnd Channel=PJSIP/203-3 DestChannel=PJSIP/204-4 DialStatus=ANSWER
        LinkDown
        Response=Success EventList=start Message=Channels~will~follow
        CoreShowChannel Channel=PJSIP/201-1 Uniqueid=9.1 Linkedid=9.1 ChannelStateDesc=Up BridgeId=b1 Duration=00:00:12
        CoreShowChannel Channel=PJSIP/202-2 Uniqueid=9.2 Linkedid=9.1 ChannelStateDesc=Up BridgeId=b1 Duration=00:00:11
        CoreShowChannelsComplete ListItems=2
        Hangup Channel=PJSIP/202-2
        Hangup Channel=PJSIP/201-1
        ",
        expect![[r#"
            event {"type":"call.started","direction":"internal","from":"201","to":"202"}
            event {"type":"call.ringing","extensions":["202"]}
            event {"type":"call.started","direction":"internal","from":"203","to":"204"}
            event {"type":"call.ringing","extensions":["204"]}
            event {"type":"call.answered","by":"204"}
            event {"type":"call.ended","disposition":"answered"}
            event {"type":"call.answered","by":"202"}
            record 9.3 Internal Some("203")->Some("204") Answered by=Some("204") rang=["204"] ring=3 talk=1 gap=7..11 ended_in_gap=7..11 ended_at=7
            event {"type":"call.ended","disposition":"answered"}
            record 9.1 Internal Some("201")->Some("202") Answered by=Some("202") rang=["202"] ring=11 talk=2 gap=7..11 answered_in_gap=7..11
            in progress: 0
        "#]],
    );
}

#[test]
fn link_gap_calls_that_began_in_it_are_taken_from_the_list() {
    // Nothing was tracked; in the gap a trunk call reached a ring group member through
    // Local channels (203 answered), and 205 started dialing out. The listing names the DID
    // (Status DNID) and the age of each channel; a Local chain leads to the phone.
    check(
        "
        LinkDown
        Response=Success EventList=start Message=Channel~status~will~follow
        Status Channel=PJSIP/carrier-1 DNID=15550001000 Uniqueid=7.1 Linkedid=7.1
        StatusComplete Items=1
        Response=Success EventList=start Message=Channels~will~follow
        CoreShowChannel Channel=PJSIP/carrier-1 Uniqueid=7.1 Linkedid=7.1 CallerIDNum=15551234567 ChannelStateDesc=Up Exten=s BridgeId=b1 Duration=00:00:20
        CoreShowChannel Channel=Local/203#@from-internal-1;1 Uniqueid=7.2 Linkedid=7.1 ChannelStateDesc=Up BridgeId=b1 Duration=00:00:15
        CoreShowChannel Channel=Local/203#@from-internal-1;2 Uniqueid=7.3 Linkedid=7.1 ChannelStateDesc=Up BridgeId=b2 Duration=00:00:15
        CoreShowChannel Channel=PJSIP/203-2 Uniqueid=7.4 Linkedid=7.1 ChannelStateDesc=Up BridgeId=b2 Duration=00:00:15
        CoreShowChannel Channel=PJSIP/205-3 Uniqueid=7.5 Linkedid=7.5 CallerIDNum=205 Exten=15557654321 ChannelStateDesc=Ring Duration=00:00:02
        CoreShowChannel Channel=PJSIP/carrier-4 Uniqueid=7.6 Linkedid=7.5 ChannelStateDesc=Ringing Duration=00:00:01
        CoreShowChannelsComplete ListItems=6
        Hangup Channel=PJSIP/carrier-4
        Hangup Channel=PJSIP/205-3
        Hangup Channel=PJSIP/203-2
        Hangup Channel=Local/203#@from-internal-1;2
        Hangup Channel=Local/203#@from-internal-1;1
        Hangup Channel=PJSIP/carrier-1
        ",
        expect![[r#"
            event {"type":"call.started","direction":"inbound","from":"15551234567","to":"15550001000"}
            event {"type":"call.started","direction":"internal","from":"205","to":"15557654321"}
            event {"type":"call.answered","by":"203"}
            event {"type":"call.ended","disposition":"no_answer"}
            record 7.5 Outbound Some("205")->Some("15557654321") NoAnswer by=None rang=[] ring=3 talk=0 gap=0..11 started_in_gap=0..11
            event {"type":"call.ended","disposition":"answered"}
            record 7.1 Inbound Some("15551234567")->Some("15550001000") Answered by=Some("203") rang=["203"] ring=20 talk=6 gap=0..11 started_in_gap=-9..11 answered_in_gap=0..11
            in progress: 0
        "#]],
    );
}

#[test]
fn pbx_restart_ends_calls_at_the_drop_and_names_are_reused() {
    // The PBX restarts mid-call: the link drops, the new PBX lists no channels, and its
    // first call reuses the old channel name with a new Uniqueid. The old call ends when
    // the link dropped (talk time not stretched by the outage); the new one is its own call.
    check(
        "
        Newchannel Channel=PJSIP/201-1 Uniqueid=9.1 Linkedid=9.1 CallerIDNum=201 Exten=202
        Newchannel Channel=PJSIP/202-2 Uniqueid=9.2 Linkedid=9.1 CallerIDNum=202 Exten=s
        DialBegin Channel=PJSIP/201-1 DestChannel=PJSIP/202-2 DialString=202
        DialEnd Channel=PJSIP/201-1 DestChannel=PJSIP/202-2 DialStatus=ANSWER
        LinkDown
        Newchannel Channel=PJSIP/201-1 Uniqueid=20.1 Linkedid=20.1 CallerIDNum=201 Exten=203
        Response=Success EventList=start Message=Channels~will~follow
        CoreShowChannel Channel=PJSIP/201-1 Uniqueid=20.1 Linkedid=20.1 ChannelStateDesc=Ring Duration=00:00:01
        CoreShowChannelsComplete ListItems=1
        Hangup Channel=PJSIP/201-1
        ",
        expect![[r#"
            event {"type":"call.started","direction":"internal","from":"201","to":"202"}
            event {"type":"call.ringing","extensions":["202"]}
            event {"type":"call.answered","by":"202"}
            event {"type":"call.started","direction":"internal","from":"201","to":"203"}
            event {"type":"call.ended","disposition":"answered"}
            record 9.1 Internal Some("201")->Some("202") Answered by=Some("202") rang=["202"] ring=3 talk=1 gap=4..8 ended_in_gap=4..8 ended_at=4
            event {"type":"call.ended","disposition":"failed"}
            record 20.1 Internal Some("201")->Some("203") Failed by=None rang=[] ring=4 talk=0
            in progress: 0
        "#]],
    );
}

/// A bare dialplan on chan_sip: phones are accounts (`7001234501`, a MAC-like name) whose
/// caller ID is the extension; the city trunk is dialed as `city/<number>`. A phone that
/// withholds its number once is still that phone.
#[test]
fn phones_named_by_account_are_known_by_their_caller_id() {
    check(
        "
        Newchannel Channel=SIP/city-1 ChannelState=4 Uniqueid=9.1 Linkedid=9.1 CallerIDNum=74951234567 Exten=4950000000
        Newchannel Channel=SIP/7001234501-2 ChannelState=0 Uniqueid=9.2 Linkedid=9.1 CallerIDNum=201 Exten=s
        Newchannel Channel=SIP/0004f2a1b2c3-3 ChannelState=0 Uniqueid=9.3 Linkedid=9.1 CallerIDNum=202 Exten=s
        DialBegin Channel=SIP/city-1 DestChannel=SIP/7001234501-2 DialString=7001234501
        DialBegin Channel=SIP/city-1 DestChannel=SIP/0004f2a1b2c3-3 DialString=0004f2a1b2c3
        DialEnd Channel=SIP/city-1 DestChannel=SIP/0004f2a1b2c3-3 DialStatus=ANSWER
        DialEnd Channel=SIP/city-1 DestChannel=SIP/7001234501-2 DialStatus=CANCEL
        Hangup Channel=SIP/7001234501-2
        Hangup Channel=SIP/0004f2a1b2c3-3
        Hangup Channel=SIP/city-1
        Newchannel Channel=SIP/7001234501-4 ChannelState=4 Uniqueid=9.4 Linkedid=9.4 CallerIDNum=201 Exten=98005551212
        Newchannel Channel=SIP/city-5 ChannelState=0 Uniqueid=9.5 Linkedid=9.4 CallerIDNum=4950000000 Exten=s
        DialBegin Channel=SIP/7001234501-4 DestChannel=SIP/city-5 DialString=city/18005551212
        DialEnd Channel=SIP/7001234501-4 DestChannel=SIP/city-5 DialStatus=ANSWER
        Hangup Channel=SIP/city-5
        Hangup Channel=SIP/7001234501-4
        Newchannel Channel=SIP/7001234501-6 ChannelState=4 Uniqueid=9.6 Linkedid=9.6 CallerIDNum=anonymous Exten=202
        Hangup Channel=SIP/7001234501-6
        Newchannel Channel=SIP/7001234501-7 ChannelState=4 Uniqueid=9.7 Linkedid=9.7 CallerIDNum=201 Exten=202
        Hangup Channel=SIP/7001234501-7
        ",
        expect![[r#"
            event {"type":"call.started","direction":"inbound","from":"74951234567","to":"4950000000"}
            event {"type":"call.ringing","extensions":["201"]}
            event {"type":"call.ringing","extensions":["201","202"]}
            event {"type":"call.answered","by":"202"}
            event {"type":"call.ended","disposition":"answered"}
            record 9.1 Inbound Some("74951234567")->Some("4950000000") Answered by=Some("202") rang=["201", "202"] ring=5 talk=4
              party: SIP/7001234501 is extension 201: its channel's own caller ID
              party: SIP/0004f2a1b2c3 is extension 202: its channel's own caller ID
            event {"type":"call.started","direction":"internal","from":"201","to":"98005551212"}
            event {"type":"call.answered","by":"18005551212"}
            event {"type":"call.ended","disposition":"answered"}
            record 9.4 Outbound Some("201")->Some("18005551212") Answered by=Some("18005551212") rang=[] ring=3 talk=2
              party: SIP/7001234501 is extension 201: its channel's own caller ID
              dialed: sent to the trunk as 18005551212
            event {"type":"call.started","direction":"internal","from":"201","to":"202"}
            event {"type":"call.ended","disposition":"failed"}
            record 9.6 Internal Some("201")->Some("202") Failed by=None rang=[] ring=1 talk=0
              party: SIP/7001234501 is extension 201: its channel's own caller ID
            event {"type":"call.started","direction":"internal","from":"201","to":"202"}
            event {"type":"call.ended","disposition":"failed"}
            record 9.7 Internal Some("201")->Some("202") Failed by=None rang=[] ring=1 talk=0
              party: SIP/7001234501 is extension 201: its channel's own caller ID
            in progress: 0
        "#]],
    );
}

/// An endpoint whose first call brought a short caller ID looks like a phone; a second
/// caller proves it a line. Dialing it with a number proves it at once. The PBX's own
/// configuration (`PJSIPShowEndpoint`), read at login, decides before any call.
#[test]
fn a_trunk_is_told_from_a_phone_by_what_it_does_or_what_the_pbx_says() {
    check(
        "
        Newchannel Channel=PJSIP/city-1 ChannelState=4 Uniqueid=9.1 Linkedid=9.1 CallerIDNum=900 Exten=4950000000
        Hangup Channel=PJSIP/city-1
        Newchannel Channel=PJSIP/city-2 ChannelState=4 Uniqueid=9.2 Linkedid=9.2 CallerIDNum=74951234567 Exten=4950000000
        Hangup Channel=PJSIP/city-2
        Newchannel Channel=PJSIP/201-3 ChannelState=4 Uniqueid=9.3 Linkedid=9.3 CallerIDNum=201 Exten=989161234567
        Newchannel Channel=PJSIP/5000-4 ChannelState=0 Uniqueid=9.4 Linkedid=9.3 CallerIDNum=<unknown> Exten=s
        DialBegin Channel=PJSIP/201-3 DestChannel=PJSIP/5000-4 DialString=89161234567@5000
        DialEnd Channel=PJSIP/201-3 DestChannel=PJSIP/5000-4 DialStatus=ANSWER
        Hangup Channel=PJSIP/5000-4
        Hangup Channel=PJSIP/201-3
        EndpointDetail ObjectName=office-gw Callerid=\"Office\"~<4950000001>
        EndpointDetail ObjectName=alice-desk Callerid=\"Alice\"~<201>
        Newchannel Channel=PJSIP/office-gw-5 ChannelState=4 Uniqueid=9.5 Linkedid=9.5 CallerIDNum=301 Exten=201
        Newchannel Channel=PJSIP/alice-desk-6 ChannelState=0 Uniqueid=9.6 Linkedid=9.5 CallerIDNum=<unknown> Exten=s
        DialBegin Channel=PJSIP/office-gw-5 DestChannel=PJSIP/alice-desk-6 DialString=alice-desk
        DialEnd Channel=PJSIP/office-gw-5 DestChannel=PJSIP/alice-desk-6 DialStatus=ANSWER
        Hangup Channel=PJSIP/alice-desk-6
        Hangup Channel=PJSIP/office-gw-5
        ",
        expect![[r#"
            event {"type":"call.started","direction":"internal","from":"900","to":"4950000000"}
            event {"type":"call.ended","disposition":"failed"}
            record 9.1 Internal Some("900")->Some("4950000000") Failed by=None rang=[] ring=1 talk=0
              party: PJSIP/city is extension 900: its channel's own caller ID
            event {"type":"call.started","direction":"inbound","from":"74951234567","to":"4950000000"}
            event {"type":"call.ended","disposition":"failed"}
            record 9.2 Inbound Some("74951234567")->Some("4950000000") Failed by=None rang=[] ring=1 talk=0
              party: PJSIP/city is a trunk: it brought calls from several numbers
            event {"type":"call.started","direction":"internal","from":"201","to":"989161234567"}
            event {"type":"call.answered","by":"89161234567"}
            event {"type":"call.ended","disposition":"answered"}
            record 9.3 Outbound Some("201")->Some("89161234567") Answered by=Some("89161234567") rang=[] ring=3 talk=2
              party: PJSIP/5000 is a trunk: it was dialed with a number
              dialed: sent to the trunk as 89161234567
            event {"type":"call.started","direction":"inbound","from":"301","to":"201"}
            event {"type":"call.ringing","extensions":["201"]}
            event {"type":"call.answered","by":"201"}
            event {"type":"call.ended","disposition":"answered"}
            record 9.5 Inbound Some("301")->Some("201") Answered by=Some("201") rang=["201"] ring=3 talk=2
              party: PJSIP/office-gw is a trunk: its caller ID in the PBX's configuration
              party: PJSIP/alice-desk is extension 201: its caller ID in the PBX's configuration
            in progress: 0
        "#]],
    );
}

/// Directed pickup, whichever of the picker's answer (the caller's `DialEnd`) and the
/// `Pickup` event Asterisk sends first: one call, answered by the picker.
#[test]
fn pickup_is_answered_by_the_picker_in_either_event_order() {
    let call = |first: &str, second: &str| {
        format!(
            "
            Newchannel Channel=PJSIP/trunk-1 ChannelState=4 Uniqueid=9.1 Linkedid=9.1 CallerIDNum=15551234567 Exten=15550001005
            Newchannel Channel=PJSIP/202-2 ChannelState=0 Uniqueid=9.2 Linkedid=9.1 CallerIDNum=202 Exten=s
            DialBegin Channel=PJSIP/trunk-1 DestChannel=PJSIP/202-2 DialString=202
            Newchannel Channel=PJSIP/203-3 ChannelState=4 Uniqueid=9.3 Linkedid=9.3 CallerIDNum=203 Exten=**202
            Newstate Channel=PJSIP/203-3 ChannelStateDesc=Up
            {first}
            {second}
            Hangup Channel=PJSIP/202-2
            HangupRequest Channel=PJSIP/trunk-1
            Hangup Channel=PJSIP/trunk-1
            Hangup Channel=PJSIP/203-3
            "
        )
    };
    let pickup = "Pickup Channel=PJSIP/203-3 TargetChannel=PJSIP/202-2";
    let answer = "DialEnd Channel=PJSIP/trunk-1 DestChannel=PJSIP/203-3 DialStatus=ANSWER";
    let answered = expect![[r#"
        event {"type":"call.started","direction":"inbound","from":"15551234567","to":"15550001005"}
        event {"type":"call.ringing","extensions":["202"]}
        event {"type":"call.answered","by":"203"}
        event {"type":"call.ended","disposition":"answered"}
        record 9.1 Inbound Some("15551234567")->Some("15550001005") Answered by=Some("203") rang=["202"] ring=5 talk=5
        in progress: 0
    "#]];
    check(&call(answer, pickup), answered);
    check(
        &call(pickup, answer),
        expect![[r#"
            event {"type":"call.started","direction":"inbound","from":"15551234567","to":"15550001005"}
            event {"type":"call.ringing","extensions":["202"]}
            event {"type":"call.answered","by":"203"}
            event {"type":"call.ended","disposition":"answered"}
            record 9.1 Inbound Some("15551234567")->Some("15550001005") Answered by=Some("203") rang=["202"] ring=6 talk=4
            in progress: 0
        "#]],
    );
}

/// `cancelled` is the caller giving up while phones rang and the PBX never answered. Once
/// the PBX answered (an IVR) and no person did, the call is `no_answer`, even when the
/// caller hangs up in the menu; a call the PBX itself drops unanswered is `failed`.
#[test]
fn cancelled_only_while_phones_ring_before_the_pbx_answers() {
    check(
        "
        Newchannel Channel=PJSIP/trunk-1 ChannelState=4 Uniqueid=9.1 Linkedid=9.1 CallerIDNum=15551234567 Exten=15550001000
        Newchannel Channel=PJSIP/201-2 ChannelState=0 Uniqueid=9.2 Linkedid=9.1 CallerIDNum=201 Exten=s
        DialBegin Channel=PJSIP/trunk-1 DestChannel=PJSIP/201-2 DialString=201
        HangupRequest Channel=PJSIP/trunk-1
        DialEnd Channel=PJSIP/trunk-1 DestChannel=PJSIP/201-2 DialStatus=CANCEL
        Hangup Channel=PJSIP/201-2
        Hangup Channel=PJSIP/trunk-1
        Newchannel Channel=PJSIP/trunk-3 ChannelState=4 Uniqueid=9.3 Linkedid=9.3 CallerIDNum=15551234567 Exten=15550001000
        Newstate Channel=PJSIP/trunk-3 ChannelStateDesc=Up
        Newexten Channel=PJSIP/trunk-3 Application=BackGround AppData=menu
        Newchannel Channel=PJSIP/201-4 ChannelState=0 Uniqueid=9.4 Linkedid=9.3 CallerIDNum=201 Exten=s
        DialBegin Channel=PJSIP/trunk-3 DestChannel=PJSIP/201-4 DialString=201
        HangupRequest Channel=PJSIP/trunk-3
        DialEnd Channel=PJSIP/trunk-3 DestChannel=PJSIP/201-4 DialStatus=CANCEL
        Hangup Channel=PJSIP/201-4
        Hangup Channel=PJSIP/trunk-3
        Newchannel Channel=PJSIP/trunk-5 ChannelState=4 Uniqueid=9.5 Linkedid=9.5 CallerIDNum=15551234567 Exten=15550001000
        Newstate Channel=PJSIP/trunk-5 ChannelStateDesc=Up
        Newexten Channel=PJSIP/trunk-5 Application=BackGround AppData=menu
        HangupRequest Channel=PJSIP/trunk-5
        Hangup Channel=PJSIP/trunk-5
        Newchannel Channel=PJSIP/trunk-6 ChannelState=4 Uniqueid=9.6 Linkedid=9.6 CallerIDNum=15551234567 Exten=15550009999
        Hangup Channel=PJSIP/trunk-6
        Newchannel Channel=PJSIP/trunk-7 ChannelState=4 Uniqueid=9.7 Linkedid=9.7 CallerIDNum=15551234567 Exten=15550009999
        HangupRequest Channel=PJSIP/trunk-7
        Hangup Channel=PJSIP/trunk-7
        ",
        expect![[r#"
            event {"type":"call.started","direction":"inbound","from":"15551234567","to":"15550001000"}
            event {"type":"call.ringing","extensions":["201"]}
            event {"type":"call.ended","disposition":"cancelled"}
            record 9.1 Inbound Some("15551234567")->Some("15550001000") Cancelled by=None rang=["201"] ring=4 talk=0
            event {"type":"call.started","direction":"inbound","from":"15551234567","to":"15550001000"}
            event {"type":"call.ringing","extensions":["201"]}
            event {"type":"call.ended","disposition":"no_answer"}
            record 9.3 Inbound Some("15551234567")->Some("15550001000") NoAnswer by=None rang=["201"] ring=2 talk=0
            event {"type":"call.started","direction":"inbound","from":"15551234567","to":"15550001000"}
            event {"type":"call.ended","disposition":"no_answer"}
            record 9.5 Inbound Some("15551234567")->Some("15550001000") NoAnswer by=None rang=[] ring=4 talk=0
            event {"type":"call.started","direction":"inbound","from":"15551234567","to":"15550009999"}
            event {"type":"call.ended","disposition":"failed"}
            record 9.6 Inbound Some("15551234567")->Some("15550009999") Failed by=None rang=[] ring=1 talk=0
            event {"type":"call.started","direction":"inbound","from":"15551234567","to":"15550009999"}
            event {"type":"call.ended","disposition":"cancelled"}
            record 9.7 Inbound Some("15551234567")->Some("15550009999") Cancelled by=None rang=[] ring=2 talk=0
            in progress: 0
        "#]],
    );
}

/// An attended transfer done from the phone (SIP REFER with Replaces): the consultation is
/// the phone's own second call, with its own Linkedid. The transfer joins it into the call:
/// one record, the target rang for it, the transfer in order; the consultation ends without
/// a record of its own.
#[test]
fn a_phones_attended_transfer_is_one_call() {
    check(
        "
        Newchannel Channel=SIP/city-1 ChannelState=4 Uniqueid=9.1 Linkedid=9.1 CallerIDNum=74951234567 Exten=4950000000
        Newchannel Channel=SIP/7001234501-2 ChannelState=0 Uniqueid=9.2 Linkedid=9.1 CallerIDNum=201 Exten=s
        DialBegin Channel=SIP/city-1 DestChannel=SIP/7001234501-2 DialString=7001234501
        DialEnd Channel=SIP/city-1 DestChannel=SIP/7001234501-2 DialStatus=ANSWER
        Newchannel Channel=SIP/7001234501-3 ChannelState=4 Uniqueid=9.3 Linkedid=9.3 CallerIDNum=201 Exten=203
        Newchannel Channel=SIP/0004f2a1b2c3-4 ChannelState=0 Uniqueid=9.4 Linkedid=9.3 CallerIDNum=203 Exten=s
        DialBegin Channel=SIP/7001234501-3 DestChannel=SIP/0004f2a1b2c3-4 DialString=0004f2a1b2c3
        DialEnd Channel=SIP/7001234501-3 DestChannel=SIP/0004f2a1b2c3-4 DialStatus=ANSWER
        AttendedTransfer OrigTransfererChannel=SIP/7001234501-2 SecondTransfererChannel=SIP/7001234501-3 TransfereeChannel=SIP/city-1 TransferTargetChannel=SIP/0004f2a1b2c3-4 DestType=Bridge Result=Success
        Hangup Channel=SIP/7001234501-2
        Hangup Channel=SIP/7001234501-3
        HangupRequest Channel=SIP/city-1
        Hangup Channel=SIP/city-1
        Hangup Channel=SIP/0004f2a1b2c3-4
        ",
        expect![[r#"
            event {"type":"call.started","direction":"inbound","from":"74951234567","to":"4950000000"}
            event {"type":"call.ringing","extensions":["201"]}
            event {"type":"call.answered","by":"201"}
            event {"type":"call.started","direction":"internal","from":"201","to":"203"}
            event {"type":"call.ringing","extensions":["203"]}
            event {"type":"call.answered","by":"203"}
            event {"type":"call.ended","disposition":"answered"}
            event {"type":"call.transferred","transfer":{"kind":"attended","from":"201","to":"203","at":"1970-01-01T00:00:08Z"}}
            event {"type":"call.ended","disposition":"answered"}
            record 9.1 Inbound Some("74951234567")->Some("4950000000") Answered by=Some("201") rang=["201", "203"] ring=3 talk=10
              party: SIP/7001234501 is extension 201: its channel's own caller ID
              party: SIP/7001234501 is extension 201: its channel's own caller ID
              party: SIP/0004f2a1b2c3 is extension 203: its channel's own caller ID
            in progress: 0
        "#]],
    );
}
