//! `pbxlink simulate --write`: the generated AMI stream against real Asterisk transcripts
//! (header names and order per event type), its determinism, and its ground truth against
//! the call tracker (`pbxlink replay`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use expect_test::expect;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

/// Every scenario with the same weight, so a short run shows every shape.
const EVERY_SCENARIO: &str = "inbound_ext=1,inbound_ext_noanswer=1,inbound_ext_cancel=1,\
inbound_ext_busy=1,inbound_dnd=1,ring_group=1,ring_group_noanswer=1,queue=1,queue_abandon=1,\
ivr_queue=1,ivr_ext=1,outbound=1,outbound_noanswer=1,internal=1,internal_busy=1,\
click_to_call=1,pickup=1,call_forward=1,blind_transfer=1,attended_transfer=1,conference=1,\
local_inbound=1,local_inbound_noanswer=1,local_inbound_busy=1,local_click_to_call=1";

fn pbxlink() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pbxlink"))
}

/// Runs `pbxlink simulate --write <dir>/<name> <args>`; returns the transcript path.
fn simulate(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let file = dir.join(name);
    let out = pbxlink()
        .arg("simulate")
        .arg("--write")
        .arg(&file)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    file
}

fn truth_of(file: &Path) -> PathBuf {
    PathBuf::from(format!("{}.truth.jsonl", file.display()))
}

fn messages(raw: &[u8]) -> Vec<ami::Message> {
    let mut buf = bytes::BytesMut::from(raw);
    let mut dec = ami::Decoder::new();
    let mut out = Vec::new();
    while let Some(frame) = dec.decode(&mut buf).unwrap() {
        if let ami::Frame::Message(m) = frame {
            out.push(m);
        }
    }
    out
}

/// Event type -> every header-name sequence seen for it.
fn header_sequences(raw: &[u8]) -> BTreeMap<String, BTreeSet<Vec<String>>> {
    let mut seqs: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
    for m in messages(raw) {
        if let Some(ev) = m.event() {
            let keys = m.iter().map(|(k, _)| k.to_owned()).collect();
            seqs.entry(ev.to_owned()).or_default().insert(keys);
        }
    }
    seqs
}

/// Every `*/ami/*.rx.raw` under the fixtures; panics (fails the test) if there are none.
fn real_transcripts() -> Vec<PathBuf> {
    let root = Path::new(FIXTURES);
    let sets = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("fixtures missing at {}: {e}", root.display()));
    let mut files = Vec::new();
    for set in sets {
        let Ok(ami) = std::fs::read_dir(set.unwrap().path().join("ami")) else {
            continue;
        };
        files.extend(
            ami.map(|f| f.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(".rx.raw")),
        );
    }
    files.sort();
    for needed in ["asterisk-22", "asterisk-22-pjsip", "asterisk-18-pjsip"] {
        assert!(
            files.iter().any(|f| f.starts_with(root.join(needed))),
            "no transcripts in fixture set {needed}"
        );
    }
    files
}

#[test]
fn generated_events_have_the_header_order_of_real_asterisk() {
    let mut real: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
    for f in real_transcripts() {
        for (ev, seqs) in header_sequences(&std::fs::read(&f).unwrap()) {
            real.entry(ev).or_default().extend(seqs);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = simulate(
        dir.path(),
        "every.raw",
        &[
            "--duration",
            "400",
            "--calls-per-second",
            "1",
            "--seed",
            "2",
            "--mix",
            EVERY_SCENARIO,
        ],
    );
    let mine = header_sequences(&std::fs::read(&file).unwrap());

    let mut report = Vec::new();
    for (ev, seqs) in &mine {
        let Some(known) = real.get(ev) else {
            report.push(format!("{ev}: never seen in the fixtures"));
            continue;
        };
        for seq in seqs.difference(known) {
            report.push(format!("{ev}: {}", seq.join(" ")));
        }
    }
    assert!(
        report.is_empty(),
        "header sequences real Asterisk never sent:\n{}",
        report.join("\n")
    );
    let types: Vec<&str> = mine.keys().map(String::as_str).collect();
    expect!["AgentCalled AgentComplete AgentConnect AgentRingNoAnswer AttendedTransfer BlindTransfer BridgeCreate BridgeDestroy BridgeEnter BridgeLeave BridgeMerge Cdr ConfbridgeEnd ConfbridgeJoin ConfbridgeLeave ConfbridgeStart DTMFBegin DTMFEnd DeviceStateChange DialBegin DialEnd DialState ExtensionStatus Hangup HangupHandlerPush HangupHandlerRun HangupRequest Hold LocalBridge LocalOptimizationBegin LocalOptimizationEnd MixMonitorStart MusicOnHoldStart MusicOnHoldStop NewCallerid NewConnectedLine Newchannel Newexten Newstate Pickup QueueCallerAbandon QueueCallerJoin QueueCallerLeave QueueMemberStatus RTCPReceived RTCPSent SoftHangupRequest Unhold UserEvent VarSet"]
    .assert_eq(&types.join(" "));
}

#[test]
fn same_seed_gives_the_same_bytes_another_seed_other_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let args = |seed: &'static str| {
        [
            "--duration",
            "120",
            "--calls-per-second",
            "1",
            "--seed",
            seed,
        ]
    };
    let a = simulate(dir.path(), "a.raw", &args("42"));
    let b = simulate(dir.path(), "b.raw", &args("42"));
    let c = simulate(dir.path(), "c.raw", &args("43"));
    let read = |p: &Path| std::fs::read(p).unwrap();
    assert!(
        read(&a).len() > 100_000,
        "a two-minute run should carry many events"
    );
    assert!(read(&a) == read(&b), "same seed, different transcript");
    assert!(
        read(&truth_of(&a)) == read(&truth_of(&b)),
        "same seed, different ground truth"
    );
    assert!(read(&a) != read(&c), "another seed, same transcript");
}

/// The fields of a call both sides must agree on.
const COMPARED: [&str; 7] = [
    "direction",
    "from",
    "to",
    "disposition",
    "answered_by",
    "rang",
    "transfers",
];

// Transfers compared by kind, from and to (the tracker also knows when).
fn comparable(call: &Value, field: &str) -> Value {
    match field {
        "transfers" => call[field]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| serde_json::json!([t["kind"], t["from"], t["to"]]))
                    .collect()
            })
            .unwrap_or(Value::Null),
        _ => call[field].clone(),
    }
}

#[test]
fn tracker_reproduces_the_ground_truth_of_10000_calls() {
    tracker_reproduces_the_ground_truth("freepbx");
}

/// The same on a bare Asterisk: phones named by account (the tracker knows them by the
/// caller ID of their channels), a trunk dialed `city/<number>`, 9 before outside numbers.
#[test]
fn tracker_reproduces_the_ground_truth_of_10000_bare_asterisk_calls() {
    tracker_reproduces_the_ground_truth("bare");
}

/// 10,000 calls of `style` (`--style`): every field of [`COMPARED`] as the truth says.
fn tracker_reproduces_the_ground_truth(style: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut calls = 0;
    let mut mismatches: BTreeMap<(String, &str), (usize, String)> = BTreeMap::new();
    for seed in 1.. {
        if calls >= 10_000 {
            break;
        }
        // Odd seeds: the default office mix; even seeds: every shape equally often.
        let mix = if seed % 2 == 1 {
            vec![]
        } else {
            vec!["--mix", EVERY_SCENARIO]
        };
        let seed = seed.to_string();
        let mut args = vec![
            "--duration",
            "150",
            "--calls-per-second",
            "4",
            "--concurrency",
            "40",
            "--seed",
            &seed,
            "--style",
            style,
        ];
        args.extend(mix);
        let file = simulate(dir.path(), "run.raw", &args);
        let out = pbxlink().arg("replay").arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "replay failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let records: BTreeMap<String, Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|r| Some((r["id"].as_str()?.to_owned(), r)))
            .collect();
        for line in std::fs::read_to_string(truth_of(&file)).unwrap().lines() {
            let truth: Value = serde_json::from_str(line).unwrap();
            calls += 1;
            let scenario = truth["scenario"].as_str().unwrap_or_default().to_owned();
            let record = records.get(truth["linkedid"].as_str().unwrap_or_default());
            for field in COMPARED {
                let (want, got) = (
                    comparable(&truth, field),
                    record.map(|r| comparable(r, field)),
                );
                if got.as_ref() != Some(&want) {
                    let entry = mismatches
                        .entry((scenario.clone(), field))
                        .or_insert((0, String::new()));
                    entry.0 += 1;
                    if entry.1.is_empty() {
                        entry.1 = format!(
                            "seed {seed} call {}: truth {want}, tracker {}",
                            truth["linkedid"],
                            got.map_or("no record".into(), |g| g.to_string())
                        );
                    }
                }
            }
        }
        std::fs::remove_file(&file).unwrap();
    }
    let report: Vec<String> = mismatches
        .iter()
        .map(|((s, f), (n, ex))| format!("{s}.{f}: {n} calls, e.g. {ex}"))
        .collect();
    assert!(
        report.is_empty(),
        "{calls} {style} calls, tracker disagrees with the ground truth:\n{}",
        report.join("\n")
    );
}
