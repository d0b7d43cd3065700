//! `pbxlink run` against a bare Asterisk (`pbxlink simulate --style bare`): chan_sip phones
//! named by account (`SIP/7001234201`), a `city` trunk, 9 before outside numbers. The journal
//! names the parties by extension and outside number, as the simulator's ground truth does.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

mod gateway;
use gateway::{eventually, Gateway, Simulator};

const TOKEN: &str = "bare-test-token";
// Bounds a hung test only.
const LIMIT: Duration = Duration::from_secs(120);

/// The fields of a call the journal and the ground truth must agree on.
const COMPARED: [&str; 6] = [
    "direction",
    "from",
    "to",
    "disposition",
    "answered_by",
    "rang",
];

#[tokio::test]
async fn bare_asterisk_calls_are_journaled_with_extensions_as_parties() {
    let dir = tempfile::tempdir().unwrap();
    let transcript = dir.path().join("bare.rx.raw");
    let simulator = Simulator::start(&[
        "--style",
        "bare",
        "--fast",
        "--duration",
        "300",
        "--calls-per-second",
        "1",
        "--seed",
        "5",
        "--write",
        transcript.to_str().unwrap(),
    ]);
    let gateway = Gateway::start_with(TOKEN, Some(&simulator.pbx_config("office")));
    eventually("the PBX ends its calls", LIMIT, async || {
        simulator.said("all calls ended").then_some(())
    })
    .await;
    let truth: BTreeMap<String, Value> =
        std::fs::read_to_string(format!("{}.truth.jsonl", transcript.display()))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|t| (t["linkedid"].as_str().unwrap().to_owned(), t))
            .collect();
    let journal = eventually("every call journaled", LIMIT, async || {
        let journal = gateway.journal().await;
        (journal.len() >= truth.len()).then_some(journal)
    })
    .await;
    assert!(truth.len() > 100, "only {} calls", truth.len());

    let mut wrong = Vec::new();
    for record in &journal {
        let id = record["id"].as_str().unwrap();
        let Some(t) = truth.get(id) else {
            wrong.push(format!("{id}: not a call of the PBX"));
            continue;
        };
        for field in COMPARED {
            if record[field] != t[field] {
                wrong.push(format!(
                    "{id} ({}) {field}: truth {}, journal {}",
                    t["scenario"], t[field], record[field]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty() && journal.len() == truth.len(),
        "{} calls, {} journaled:\n{}",
        truth.len(),
        journal.len(),
        wrong.join("\n")
    );
    // The phones became known from the PBX's own configuration (SIPpeers + SIPshowpeer,
    // read after the channel list at login), and the call story says so.
    let stories =
        serde_json::to_string(&journal.iter().map(|r| &r["timeline"]).collect::<Vec<_>>()).unwrap();
    assert!(
        stories
            .contains("SIP/7001234201 is extension 201: its caller ID in the PBX's configuration"),
        "no call story tells how the phones were known"
    );
}
