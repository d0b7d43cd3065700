//! `pbxlink replay` over the Local-channel call scenarios of ../shared/fixtures/asterisk-22
//! (no expected.json there): each snapshot below was checked by hand against that set's
//! README (who answered, disposition, durations, transfers, rang, recording). Also: the
//! JSON event-array input and `--events`.

use std::path::PathBuf;
use std::process::Command;

use expect_test::{expect, Expect};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

fn transcript(name: &str) -> PathBuf {
    let path = PathBuf::from(FIXTURES)
        .join("asterisk-22/ami")
        .join(format!("{name}.rx.raw"));
    assert!(path.is_file(), "fixture {} is missing", path.display());
    path
}

fn replay(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pbxlink"))
        .arg("replay")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One line per call: the fields a CRM user judges, then the timeline steps.
fn summary(jsonl: &str) -> String {
    let mut out = String::new();
    for line in jsonl.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
        let list = |k: &str| {
            r[k].as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().unwrap_or("-").to_owned())
                .collect::<Vec<_>>()
                .join(",")
        };
        let transfers: Vec<String> = r["transfers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| format!("{} {}->{}", t["kind"].as_str().unwrap(), t["from"], t["to"]))
            .collect();
        out.push_str(&format!(
            "{} {}->{} {} by={} rang=[{}] transfers=[{}] queue={} ring={}s talk={}s recording={}\n",
            s("direction"),
            s("from"),
            s("to"),
            s("disposition"),
            s("answered_by"),
            list("rang"),
            transfers.join(", "),
            s("queue"),
            r["ring_seconds"],
            r["talk_seconds"],
            if r["recording"].is_string() {
                "yes"
            } else {
                "no"
            },
        ));
        for step in r["timeline"].as_array().into_iter().flatten() {
            let detail = step["detail"].as_str().unwrap_or("");
            // Recording paths carry dates; the step itself is what matters here.
            let detail = if step["what"] == "recording" {
                "recording started"
            } else {
                detail
            };
            out.push_str(&format!("  {}\n", detail));
        }
    }
    out
}

fn check(name: &str, expect: Expect) {
    expect.assert_eq(&summary(&replay(&[transcript(name).as_os_str()])));
}

#[test]
fn inbound_answered() {
    check(
        "01_inbound_answered",
        expect![[r#"
        inbound 15551234567->15550001000 answered by=201 rang=[201] transfers=[] queue=- ring=2s talk=7s recording=yes
          call to 15550001000
          recording started
          entered IVR
          pressed 1
          rang 201
          answered by 201
          hung up by callee
    "#]],
    );
}

#[test]
fn inbound_noanswer() {
    check(
        "02_inbound_noanswer",
        expect![[r#"
        inbound 15551234567->15550001000 no_answer by=- rang=[204] transfers=[] queue=- ring=20s talk=0s recording=yes
          call to 15550001000
          recording started
          entered IVR
          pressed 2
          rang 204
          hung up by caller
    "#]],
    );
}

#[test]
fn inbound_busy() {
    check(
        "03_inbound_busy",
        expect![[r#"
        inbound 15551234567->15550001000 busy by=- rang=[205] transfers=[] queue=- ring=0s talk=0s recording=yes
          call to 15550001000
          recording started
          entered IVR
          pressed 3
          hung up by caller
    "#]],
    );
}

#[test]
fn click_to_call() {
    check(
        "04_click_to_call",
        expect![[r#"
            outbound 201->15557654321 answered by=15557654321 rang=[201] transfers=[] queue=- ring=3s talk=13s recording=yes
              call from 201
              rang 201
              recording started
              answered by 15557654321
              hung up by caller
        "#]],
    );
}

#[test]
fn inbound_queue() {
    check(
        "05_inbound_queue",
        expect![[r#"
        inbound 15551234567->15550001000 answered by=202 rang=[204,202] transfers=[] queue=support ring=8s talk=8s recording=yes
          call to 15550001000
          recording started
          entered IVR
          pressed 4
          joined queue support
          rang 204
          rang 202
          answered by 202
          hung up by callee
    "#]],
    );
}

#[test]
fn blind_transfer_by_ami_action() {
    check(
        "06_blind_transfer_ami",
        expect![[r#"
        inbound 15551234567->15550001000 answered by=201 rang=[201,203] transfers=[blind "201"->"203"] queue=- ring=2s talk=17s recording=yes
          call to 15550001000
          recording started
          entered IVR
          pressed 1
          rang 201
          answered by 201
          blind transfer from 201 to 203
          rang 203
          answered by 203
          hung up by callee
    "#]],
    );
}

#[test]
fn redirect_is_a_blind_transfer() {
    check(
        "06b_redirect_transfer",
        expect![[r#"
        inbound 15551234567->15550001000 answered by=201 rang=[201,203] transfers=[blind "201"->"203"] queue=- ring=2s talk=16s recording=yes
          call to 15550001000
          recording started
          entered IVR
          pressed 1
          rang 201
          answered by 201
          blind transfer from 201 to 203
          rang 203
          answered by 203
          hung up by callee
    "#]],
    );
}

#[test]
fn blind_transfer_by_dtmf_feature() {
    check(
        "06c_blind_transfer_dtmf",
        expect![[r#"
        inbound 15551234567->15550001000 answered by=201 rang=[201,203] transfers=[blind "201"->"203"] queue=- ring=2s talk=18s recording=yes
          call to 15550001000
          recording started
          entered IVR
          pressed 1
          rang 201
          answered by 201
          blind transfer from 201 to 203
          rang 203
          answered by 203
          hung up by callee
    "#]],
    );
}

#[test]
fn attended_transfer() {
    check(
        "07_attended_transfer",
        expect![[r#"
        inbound 15551234567->15550001000 answered by=201 rang=[201,203] transfers=[attended "201"->"203"] queue=- ring=2s talk=19s recording=yes
          call to 15550001000
          recording started
          entered IVR
          pressed 1
          rang 201
          answered by 201
          rang 203
          answered by 203
          attended transfer from 201 to 203
          hung up by callee
    "#]],
    );
}

#[test]
fn inbound_routed_by_fastagi() {
    check(
        "08_inbound_fastagi",
        expect![[r#"
        inbound 15551234567->15550001000 answered by=202 rang=[202] transfers=[] queue=- ring=2s talk=8s recording=yes
          call to 15550001000
          recording started
          entered IVR
          pressed 5
          rang 202
          answered by 202
          hung up by callee
    "#]],
    );
}

#[test]
fn a_connection_attached_mid_call_takes_the_call_from_the_pbx_lists() {
    // Events: off, CoreShowChannels/Status lists of a call whose start this connection
    // never saw: the PBX lists it, so it is real; it is taken in (answered by 201 through
    // the Local pair's bridge), its start flagged as unseen, and ends with the input.
    check(
        "01_inbound_answered.snapshot",
        expect![[r#"
        inbound 15551234567->15550001000 answered by=201 rang=[201] transfers=[] queue=- ring=5s talk=0s recording=no
          call from 15551234567 to 15550001000
          call found in progress after a gap
          answered by 201
          the answer fell in a gap (between 23:59:55 and 00:00:00): seen in the PBX's channel list
    "#]],
    );
}

#[test]
fn json_event_array_gives_the_same_records_as_the_wire_transcript() {
    let raw = transcript("06_blind_transfer_ami");
    let mut buf = bytes::BytesMut::from(&std::fs::read(&raw).unwrap()[..]);
    let mut dec = ami::Decoder::new();
    let mut events = Vec::new();
    while let Some(frame) = dec.decode(&mut buf).unwrap() {
        if let ami::Frame::Message(m) = frame {
            events.push(m.to_json());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("events.json");
    std::fs::write(&json, serde_json::to_vec_pretty(&events).unwrap()).unwrap();
    assert_eq!(replay(&[json.as_os_str()]), replay(&[raw.as_os_str()]));
}

#[test]
fn events_flag_prints_the_live_call_events_in_order() {
    let out = replay(&[
        transcript("07_attended_transfer").as_os_str(),
        "--events".as_ref(),
    ]);
    let kinds: Vec<String> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["type"].as_str().unwrap_or("record").to_owned()
        })
        .collect();
    expect![[r#"
        call.started
        call.ringing
        call.answered
        call.ringing
        call.transferred
        call.ended
        record"#]]
    .assert_eq(&kinds.join("\n"));
}

/// A phone nothing in the stream names (an endpoint without an extension as caller ID):
/// `[pbx.tracker] extensions` of the config's PBX says who it is.
#[test]
fn replay_takes_the_tracker_overrides_of_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let events = serde_json::json!([
        {"Event": "Newchannel", "Channel": "PJSIP/city-00000001", "ChannelState": "4",
         "CallerIDNum": "74951234567", "Exten": "4950000000",
         "Uniqueid": "9.1", "Linkedid": "9.1"},
        {"Event": "Newchannel", "Channel": "PJSIP/frontdesk-00000002", "ChannelState": "0",
         "CallerIDNum": "<unknown>", "Exten": "s", "Uniqueid": "9.2", "Linkedid": "9.1"},
        {"Event": "DialBegin", "Channel": "PJSIP/city-00000001",
         "DestChannel": "PJSIP/frontdesk-00000002", "DialString": "frontdesk"},
        {"Event": "DialEnd", "Channel": "PJSIP/city-00000001",
         "DestChannel": "PJSIP/frontdesk-00000002", "DialStatus": "ANSWER"},
        {"Event": "Hangup", "Channel": "PJSIP/frontdesk-00000002"},
        {"Event": "Hangup", "Channel": "PJSIP/city-00000001"}
    ]);
    let json = dir.path().join("events.json");
    std::fs::write(&json, events.to_string()).unwrap();
    let config = dir.path().join("pbxlink.toml");
    std::fs::write(
        &config,
        "[[pbx]]\nname = \"office\"\n[pbx.tracker]\nextensions = { frontdesk = \"200\" }\n",
    )
    .unwrap();
    let answered_by = |args: &[&std::ffi::OsStr]| {
        let out = replay(args);
        let record: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        record["answered_by"].clone()
    };
    assert_eq!(answered_by(&[json.as_os_str()]), "frontdesk");
    let with_config = [
        json.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
        "--pbx".as_ref(),
        "office".as_ref(),
    ];
    assert_eq!(answered_by(&with_config), "200");
}
