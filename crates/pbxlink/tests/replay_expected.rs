//! `pbxlink replay` against the ground truth of real Asterisk: every transcript listed in
//! every `../shared/fixtures/*/expected.json` and in the project's own recordings,
//! `fixtures/*/expected.json` (bare dialplans, chan_sip; any future set is picked up
//! automatically).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");
/// The project's own recordings from the lab (see each set's README.txt).
const OWN_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");

/// The call records `pbxlink replay` prints for `file`.
fn replay(file: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_pbxlink"))
        .arg("replay")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// What differs between an expected call and a record (empty: exact), as the scorer
/// `../shared/tools/check_expected.py` judges it, plus durations within 3 s.
fn diffs(exp: &Value, rec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["direction", "from", "to", "disposition", "answered_by"] {
        if text(&exp[key]) != text(&rec[key]) {
            out.push(format!("{key}: want {} got {}", exp[key], rec[key]));
        }
    }
    let set = |v: &Value| {
        let mut s: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(text)
            .collect();
        s.sort();
        s
    };
    if set(&exp["rang"]) != set(&rec["rang"]) {
        out.push(format!("rang: want {} got {}", exp["rang"], rec["rang"]));
    }
    let transfers = |v: &Value| -> Vec<_> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|t| (text(&t["kind"]), text(&t["from"]), text(&t["to"])))
            .collect()
    };
    if transfers(&exp["transfers"]) != transfers(&rec["transfers"]) {
        out.push(format!(
            "transfers: want {} got {}",
            exp["transfers"], rec["transfers"]
        ));
    }
    let recorded = |v: &Value| !matches!(v, Value::Null | Value::Bool(false));
    if recorded(&exp["recording"]) != recorded(&rec["recording"]) {
        out.push(format!(
            "recording: want {} got {}",
            exp["recording"], rec["recording"]
        ));
    }
    for key in ["talk_seconds", "ring_seconds"] {
        let want = exp[format!("{key}_approx")].as_f64();
        let got = rec[key].as_f64();
        if let (Some(want), Some(got)) = (want, got) {
            if (want - got).abs() > 3.0 {
                out.push(format!("{key}: want ~{want} got {got}"));
            }
        } else if want.is_some() {
            out.push(format!("{key}: missing"));
        }
    }
    out
}

/// The sets with an expected.json under `root`; at least `least` of them.
fn expected_sets(root: &str, least: usize) -> Vec<PathBuf> {
    let dir = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("fixture directory {root} is missing: {e}"));
    let mut sets: Vec<PathBuf> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    sets.sort();
    assert!(
        sets.len() >= least,
        "expected.json sets missing under {root}"
    );
    sets
}

#[test]
fn every_expected_call_is_exact_and_nothing_is_invented() {
    let mut failures = Vec::new();
    let mut total = 0;
    let sets = expected_sets(FIXTURES, 2)
        .into_iter()
        .chain(expected_sets(OWN_FIXTURES, 2));
    for set in sets {
        let expected: Vec<Value> =
            serde_json::from_slice(&std::fs::read(set.join("expected.json")).unwrap()).unwrap();
        for entry in expected {
            let fixture = set.join(entry["fixture"].as_str().unwrap());
            assert!(fixture.is_file(), "{} is missing", fixture.display());
            let mut left = replay(&fixture);
            for exp in entry["calls"].as_array().unwrap() {
                total += 1;
                // Pair each expected call with the record that differs from it least.
                let best = (0..left.len()).min_by_key(|&i| diffs(exp, &left[i]).len());
                let Some(best) = best else {
                    failures.push(format!("{}: no record for {exp}", fixture.display()));
                    continue;
                };
                let rec = left.remove(best);
                let d = diffs(exp, &rec);
                if !d.is_empty() {
                    failures.push(format!("{}: {}", fixture.display(), d.join("; ")));
                }
            }
            for rec in left {
                failures.push(format!("{}: invented {rec}", fixture.display()));
            }
        }
    }
    assert!(total >= 66, "only {total} expected calls found");
    assert!(
        failures.is_empty(),
        "{} of {total} calls wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
