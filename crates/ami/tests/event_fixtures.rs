//! The typed event views read real Asterisk 18/22 events: kinds, channel snapshots and the
//! prefixed snapshots of transfers, dials and pickups.

mod common;

use std::collections::BTreeSet;

use ami::event::{Event, EventKind};
use expect_test::{expect, Expect};

/// Renders the call-flow events of a transcript (the chatty ones left out), one line each.
fn check(relative: &str, expect: Expect) {
    let mut out = String::new();
    for m in common::messages(relative) {
        let Some(e) = Event::new(&m) else { continue };
        let ch = e.channel();
        let line = match e.kind {
            EventKind::Newchannel | EventKind::Newstate => format!(
                "{:?} {} state={:?} cid={:?}/{:?} conn={:?} linked={}",
                e.kind,
                ch.channel().unwrap_or("-"),
                ch.state(),
                ch.caller_id_num(),
                ch.caller_id_name(),
                ch.connected_line_num(),
                ch.linkedid().unwrap_or("-"),
            ),
            EventKind::DialBegin | EventKind::DialEnd => format!(
                "{:?} {} -> {} status={:?}",
                e.kind,
                ch.channel().unwrap_or("(none)"),
                e.dest().channel().unwrap_or("-"),
                e.dial_status(),
            ),
            EventKind::BridgeEnter | EventKind::BridgeLeave => format!(
                "{:?} {} bridge={}",
                e.kind,
                ch.channel().unwrap_or("-"),
                e.bridge_id().unwrap_or("-"),
            ),
            EventKind::Hangup => format!(
                "Hangup {} cause={:?}",
                ch.channel().unwrap_or("-"),
                e.hangup_cause()
            ),
            EventKind::BlindTransfer => format!(
                "BlindTransfer {} moves {} to {:?}",
                e.snapshot("Transferer").channel().unwrap_or("-"),
                e.snapshot("Transferee").channel().unwrap_or("-"),
                e.get("Extension"),
            ),
            EventKind::AttendedTransfer => format!(
                "AttendedTransfer {} + {}: {} -> {}",
                e.snapshot("OrigTransferer").channel().unwrap_or("-"),
                e.snapshot("SecondTransferer").channel().unwrap_or("-"),
                e.snapshot("Transferee").channel().unwrap_or("-"),
                e.snapshot("TransferTarget").channel().unwrap_or("-"),
            ),
            EventKind::Pickup => format!(
                "Pickup {} takes {}",
                ch.channel().unwrap_or("-"),
                e.snapshot("Target").channel().unwrap_or("-"),
            ),
            EventKind::LocalOptimizationBegin | EventKind::LocalOptimizationEnd => format!(
                "{:?} {} / {}",
                e.kind,
                e.snapshot("LocalOne").channel().unwrap_or("-"),
                e.snapshot("LocalTwo").channel().unwrap_or("-"),
            ),
            _ => continue,
        };
        out.push_str(&line);
        out.push('\n');
    }
    expect.assert_eq(&out);
}

#[test]
fn attended_transfer_asterisk_22() {
    check(
        "asterisk-22-pjsip/ami/14_attended_transfer.rx.raw",
        expect![[r#"
        Newchannel PJSIP/carrier-00000043 state=Some(Ring) cid=Some("15551234567")/Some("Jane Caller") conn=None linked=1795388509.109
        Newchannel PJSIP/201-00000044 state=Some(Down) cid=Some("201")/Some("Alice Anderson") conn=None linked=1795388509.109
        DialBegin PJSIP/carrier-00000043 -> PJSIP/201-00000044 status=None
        Newstate PJSIP/201-00000044 state=Some(Ringing) cid=Some("201")/Some("Alice Anderson") conn=Some("15551234567") linked=1795388509.109
        Newstate PJSIP/201-00000044 state=Some(Up) cid=Some("201")/Some("Alice Anderson") conn=Some("15551234567") linked=1795388509.109
        DialEnd PJSIP/carrier-00000043 -> PJSIP/201-00000044 status=Some("ANSWER")
        Newstate PJSIP/carrier-00000043 state=Some(Up) cid=Some("15551234567")/Some("Jane Caller") conn=Some("201") linked=1795388509.109
        BridgeEnter PJSIP/201-00000044 bridge=bf6d7808-a8cc-46fc-ab2d-d8a1070be258
        BridgeEnter PJSIP/carrier-00000043 bridge=bf6d7808-a8cc-46fc-ab2d-d8a1070be258
        Newchannel Local/203@from-internal-00000015;1 state=Some(Down) cid=None/None conn=None linked=1795388509.109
        Newchannel Local/203@from-internal-00000015;2 state=Some(Ring) cid=None/None conn=None linked=1795388509.109
        BridgeEnter Local/203@from-internal-00000015;1 bridge=adea8d70-6127-403a-8d9b-eb62f6b5bbf7
        BridgeLeave PJSIP/201-00000044 bridge=bf6d7808-a8cc-46fc-ab2d-d8a1070be258
        BridgeEnter PJSIP/201-00000044 bridge=adea8d70-6127-403a-8d9b-eb62f6b5bbf7
        Newchannel PJSIP/203-00000045 state=Some(Down) cid=Some("203")/Some("Carol Chen") conn=None linked=1795388509.109
        DialBegin Local/203@from-internal-00000015;2 -> PJSIP/203-00000045 status=None
        Newstate Local/203@from-internal-00000015;1 state=Some(Ringing) cid=None/None conn=Some("201") linked=1795388509.109
        Newstate PJSIP/203-00000045 state=Some(Ringing) cid=Some("203")/Some("Carol Chen") conn=Some("201") linked=1795388509.109
        Newstate PJSIP/203-00000045 state=Some(Up) cid=Some("203")/Some("Carol Chen") conn=Some("201") linked=1795388509.109
        DialEnd Local/203@from-internal-00000015;2 -> PJSIP/203-00000045 status=Some("ANSWER")
        Newstate Local/203@from-internal-00000015;1 state=Some(Up) cid=Some("203")/Some("Carol Chen") conn=Some("201") linked=1795388509.109
        DialEnd (none) -> Local/203@from-internal-00000015;1 status=Some("ANSWER")
        Newstate Local/203@from-internal-00000015;2 state=Some(Up) cid=Some("201")/Some("Alice Anderson") conn=Some("203") linked=1795388509.109
        BridgeEnter PJSIP/203-00000045 bridge=976636eb-2c30-4da6-83e3-0f2bb8543bbc
        BridgeEnter Local/203@from-internal-00000015;2 bridge=976636eb-2c30-4da6-83e3-0f2bb8543bbc
        BridgeLeave Local/203@from-internal-00000015;1 bridge=adea8d70-6127-403a-8d9b-eb62f6b5bbf7
        BridgeEnter Local/203@from-internal-00000015;1 bridge=bf6d7808-a8cc-46fc-ab2d-d8a1070be258
        BridgeLeave PJSIP/201-00000044 bridge=adea8d70-6127-403a-8d9b-eb62f6b5bbf7
        AttendedTransfer PJSIP/201-00000044 + PJSIP/201-00000044: PJSIP/carrier-00000043 -> Local/203@from-internal-00000015;1
        Hangup PJSIP/201-00000044 cause=Some(16)
        LocalOptimizationBegin Local/203@from-internal-00000015;1 / Local/203@from-internal-00000015;2
        BridgeLeave PJSIP/carrier-00000043 bridge=bf6d7808-a8cc-46fc-ab2d-d8a1070be258
        BridgeLeave Local/203@from-internal-00000015;2 bridge=976636eb-2c30-4da6-83e3-0f2bb8543bbc
        BridgeEnter PJSIP/carrier-00000043 bridge=976636eb-2c30-4da6-83e3-0f2bb8543bbc
        LocalOptimizationEnd Local/203@from-internal-00000015;1 / Local/203@from-internal-00000015;2
        Hangup Local/203@from-internal-00000015;2 cause=Some(16)
        BridgeLeave Local/203@from-internal-00000015;1 bridge=bf6d7808-a8cc-46fc-ab2d-d8a1070be258
        Hangup Local/203@from-internal-00000015;1 cause=Some(16)
        BridgeLeave PJSIP/203-00000045 bridge=976636eb-2c30-4da6-83e3-0f2bb8543bbc
        BridgeLeave PJSIP/carrier-00000043 bridge=976636eb-2c30-4da6-83e3-0f2bb8543bbc
        Hangup PJSIP/203-00000045 cause=Some(16)
        Hangup PJSIP/carrier-00000043 cause=Some(16)
    "#]],
    );
}

#[test]
fn pickup_asterisk_18() {
    check(
        "asterisk-18-pjsip/ami/11_pickup.rx.raw",
        expect![[r#"
        Newchannel PJSIP/carrier-0000001a state=Some(Ring) cid=Some("15551234567")/Some("Jane Caller") conn=None linked=1795390371.267
        Newchannel PJSIP/202-0000001b state=Some(Down) cid=Some("202")/Some("Bob Brown") conn=None linked=1795390371.267
        DialBegin PJSIP/carrier-0000001a -> PJSIP/202-0000001b status=None
        Newstate PJSIP/202-0000001b state=Some(Ringing) cid=Some("202")/Some("Bob Brown") conn=Some("15551234567") linked=1795390371.267
        Newchannel PJSIP/203-0000001c state=Some(Ring) cid=Some("203")/Some("Carol Chen") conn=None linked=1795390375.271
        Newstate PJSIP/203-0000001c state=Some(Up) cid=Some("203")/Some("Carol Chen") conn=Some("15551234567") linked=1795390375.271
        Pickup PJSIP/203-0000001c takes PJSIP/202-0000001b
        DialEnd PJSIP/carrier-0000001a -> PJSIP/203-0000001c status=Some("ANSWER")
        Newstate PJSIP/carrier-0000001a state=Some(Up) cid=Some("15551234567")/Some("Jane Caller") conn=Some("203") linked=1795390371.267
        Hangup PJSIP/202-0000001b cause=Some(16)
        BridgeEnter PJSIP/203-0000001c bridge=bf57afed-3d49-4f47-9541-5f6bd0f6f5de
        BridgeEnter PJSIP/carrier-0000001a bridge=bf57afed-3d49-4f47-9541-5f6bd0f6f5de
        BridgeLeave PJSIP/203-0000001c bridge=bf57afed-3d49-4f47-9541-5f6bd0f6f5de
        BridgeLeave PJSIP/carrier-0000001a bridge=bf57afed-3d49-4f47-9541-5f6bd0f6f5de
        Hangup PJSIP/203-0000001c cause=Some(16)
        Hangup PJSIP/carrier-0000001a cause=Some(16)
    "#]],
    );
}

#[test]
fn blind_transfer_asterisk_22() {
    check(
        "asterisk-22-pjsip/ami/13_blind_transfer.rx.raw",
        expect![[r#"
        Newchannel PJSIP/carrier-0000003c state=Some(Ring) cid=Some("15551234567")/Some("Jane Caller") conn=None linked=1795388463.102
        Newchannel PJSIP/201-0000003d state=Some(Down) cid=Some("201")/Some("Alice Anderson") conn=None linked=1795388463.102
        DialBegin PJSIP/carrier-0000003c -> PJSIP/201-0000003d status=None
        Newstate PJSIP/201-0000003d state=Some(Ringing) cid=Some("201")/Some("Alice Anderson") conn=Some("15551234567") linked=1795388463.102
        Newstate PJSIP/201-0000003d state=Some(Up) cid=Some("201")/Some("Alice Anderson") conn=Some("15551234567") linked=1795388463.102
        DialEnd PJSIP/carrier-0000003c -> PJSIP/201-0000003d status=Some("ANSWER")
        Newstate PJSIP/carrier-0000003c state=Some(Up) cid=Some("15551234567")/Some("Jane Caller") conn=Some("201") linked=1795388463.102
        BridgeEnter PJSIP/201-0000003d bridge=fd1f63d8-d7af-47fe-bbfd-38ce85ff046d
        BridgeEnter PJSIP/carrier-0000003c bridge=fd1f63d8-d7af-47fe-bbfd-38ce85ff046d
        BlindTransfer PJSIP/201-0000003d moves PJSIP/carrier-0000003c to Some("203")
        BridgeLeave PJSIP/carrier-0000003c bridge=fd1f63d8-d7af-47fe-bbfd-38ce85ff046d
        BridgeLeave PJSIP/201-0000003d bridge=fd1f63d8-d7af-47fe-bbfd-38ce85ff046d
        Hangup PJSIP/201-0000003d cause=Some(16)
        Newchannel PJSIP/203-0000003e state=Some(Down) cid=Some("203")/Some("Carol Chen") conn=None linked=1795388463.102
        DialBegin PJSIP/carrier-0000003c -> PJSIP/203-0000003e status=None
        Newstate PJSIP/203-0000003e state=Some(Ringing) cid=Some("203")/Some("Carol Chen") conn=Some("15551234567") linked=1795388463.102
        Newstate PJSIP/203-0000003e state=Some(Up) cid=Some("203")/Some("Carol Chen") conn=Some("15551234567") linked=1795388463.102
        DialEnd PJSIP/carrier-0000003c -> PJSIP/203-0000003e status=Some("ANSWER")
        BridgeEnter PJSIP/203-0000003e bridge=8ab37246-e7dd-45e1-a4db-57c32a58bb1d
        BridgeEnter PJSIP/carrier-0000003c bridge=8ab37246-e7dd-45e1-a4db-57c32a58bb1d
        BridgeLeave PJSIP/203-0000003e bridge=8ab37246-e7dd-45e1-a4db-57c32a58bb1d
        Hangup PJSIP/203-0000003e cause=Some(16)
        BridgeLeave PJSIP/carrier-0000003c bridge=8ab37246-e7dd-45e1-a4db-57c32a58bb1d
        Hangup PJSIP/carrier-0000003c cause=Some(16)
    "#]],
    );
}

/// Which event names in all transcripts have no kind: the list must stay free of anything
/// the call tracker needs.
#[test]
fn events_without_a_kind_across_all_fixtures() {
    let mut other = BTreeSet::new();
    for path in common::all_rx_raw() {
        for f in common::decode_all(&std::fs::read(&path).unwrap()).unwrap() {
            let ami::Frame::Message(m) = f else { continue };
            if let Some(e) = Event::new(&m) {
                if e.kind == EventKind::Other {
                    other.insert(e.name().to_owned());
                }
            }
        }
    }
    expect![[r#"
        {
            "AGIExecEnd",
            "AGIExecStart",
            "BridgeListComplete",
            "BridgeListItem",
            "ConfbridgeEnd",
            "ConfbridgeStart",
            "CoreShowChannelsComplete",
            "HangupHandlerPush",
            "HangupHandlerRun",
            "QueueEntry",
            "QueueMember",
            "QueueParams",
            "QueueStatusComplete",
            "QueueSummary",
            "QueueSummaryComplete",
            "RTCPReceived",
            "RTCPSent",
            "StatusComplete",
            "SuccessfulAuth",
        }
    "#]]
    .assert_debug_eq(&other);
}
