//! `record_from_cdr` against the ground truth of real Asterisk runs: every call of each
//! fixture directory with a `cdr/` (cdr_csv and cdr_custom Master.csv of the PBX) and an
//! `expected.json`, read from its CDR rows alone as if the whole call fell in a gap.

use std::fs;
use std::path::Path;

use calls::cdr::{read_csv, record_from_cdr};
use calls::{CdrRow, CdrZone, CsvLayout, TrackerConfig};
use expect_test::{expect, Expect};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

/// The `CDR(name)`s of the fixture PBX's cdr_custom.conf mapping, in order.
fn custom_layout(dir: &Path) -> CsvLayout {
    let conf = fs::read_to_string(dir.join("config/pbx/cdr_custom.conf")).unwrap();
    let mapping = conf.lines().find(|l| l.starts_with("Master.csv")).unwrap();
    let names: Vec<&str> = mapping
        .split("CDR(")
        .skip(1)
        .map(|s| s.split(')').next().unwrap())
        .collect();
    CsvLayout::custom(&names).unwrap()
}

fn rows(path: &Path, layout: &CsvLayout) -> Vec<CdrRow> {
    read_csv(fs::File::open(path).unwrap(), layout, CdrZone::Utc)
        .collect::<Result<_, _>>()
        .unwrap()
}

/// One line per call (`ok` or what differs), then the score.
fn score(dir: &str, file: &str, layout: &CsvLayout) -> String {
    let dir = Path::new(FIXTURES).join(dir);
    let rows = rows(&dir.join("cdr").join(file), layout);
    let expected: Vec<Value> =
        serde_json::from_str(&fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let config = TrackerConfig::default();
    let (mut out, mut good, mut total) = (String::new(), 0, 0);
    for fixture in &expected {
        // The ground truth names each call's Linkedid in its notes, in the calls' order.
        let notes = fixture["notes"].as_str().unwrap();
        let linkedids = notes.split("linkedid ").skip(1).map(|s| {
            s.split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .next()
                .unwrap()
                .trim_end_matches('.')
        });
        for (want, linkedid) in fixture["calls"].as_array().unwrap().iter().zip(linkedids) {
            total += 1;
            let got = record_from_cdr(&rows, linkedid, &config).expect("rows of the call");
            let got = serde_json::to_value(&got).unwrap();
            let wrong: Vec<String> = ["direction", "from", "to", "disposition", "answered_by"]
                .iter()
                .filter(|k| got[**k] != want[**k])
                .map(|k| format!("{k} {} (expected {})", got[*k], want[*k]))
                .collect();
            let name = fixture["fixture"].as_str().unwrap();
            let name = name.trim_start_matches("ami/").trim_end_matches(".rx.raw");
            if wrong.is_empty() {
                good += 1;
                out.push_str(&format!("{name} {linkedid}: ok\n"));
            } else {
                out.push_str(&format!("{name} {linkedid}: {}\n", wrong.join(", ")));
            }
        }
    }
    out.push_str(&format!("score {good}/{total}\n"));
    print!("{out}");
    out
}

fn check(dir: &str, file: &str, layout: &CsvLayout, expect: Expect) {
    expect.assert_eq(&score(dir, file, layout));
}

#[test]
fn asterisk_22_cdr_custom() {
    let dir = "asterisk-22-pjsip";
    let layout = custom_layout(&Path::new(FIXTURES).join(dir));
    check(
        dir,
        "cdr-custom.Master.csv",
        &layout,
        expect![[r#"
        01_rg_answered 1795388070.0: ok
        02_rg_noanswer 1795388102.20: ok
        03_ext_cancel 1795388145.37: ok
        04_ivr_queue 1795388165.41: ok
        05_queue_abandon 1795388209.55: ok
        06_internal_answered 1795388234.69: ok
        07_internal_busy 1795388262.73: ok
        08_outbound_answered 1795388277.76: ok
        09_outbound_noanswer 1795388306.80: ok
        10_click_to_call 1795388361.84: ok
        11_pickup 1795388399.88: ok
        12_cf_unconditional 1795388431.94: ok
        13_blind_transfer 1795388463.102: ok
        14_attended_transfer 1795388509.109: ok
        15_confbridge 1795388580.120: ok
        15_confbridge 1795388583.123: ok
        15_confbridge 1795388586.124: ok
        score 17/17
    "#]],
    );
}

// cdr_csv has no `did` column and `dst` is where the call ended up (a ring group, a queue,
// an extension), so the dialed DID of an inbound call is not in its rows: only `to` differs.
#[test]
fn asterisk_22_cdr_csv() {
    check(
        "asterisk-22-pjsip",
        "cdr-csv.Master.csv",
        &CsvLayout::CdrCsv,
        expect![[r#"
            01_rg_answered 1795388070.0: to "600" (expected "15550001000")
            02_rg_noanswer 1795388102.20: to "601" (expected "15550001001")
            03_ext_cancel 1795388145.37: to "201" (expected "15550001002")
            04_ivr_queue 1795388165.41: to "600" (expected "15550001003")
            05_queue_abandon 1795388209.55: to "600" (expected "15550001004")
            06_internal_answered 1795388234.69: ok
            07_internal_busy 1795388262.73: ok
            08_outbound_answered 1795388277.76: ok
            09_outbound_noanswer 1795388306.80: ok
            10_click_to_call 1795388361.84: ok
            11_pickup 1795388399.88: to "202" (expected "15550001005")
            12_cf_unconditional 1795388431.94: to "201" (expected "15550001002")
            13_blind_transfer 1795388463.102: to "201" (expected "15550001002")
            14_attended_transfer 1795388509.109: to "201" (expected "15550001002")
            15_confbridge 1795388580.120: ok
            15_confbridge 1795388583.123: to "8000" (expected "15550001006")
            15_confbridge 1795388586.124: ok
            score 7/17
        "#]],
    );
}

#[test]
fn asterisk_18_cdr_custom() {
    let dir = "asterisk-18-pjsip";
    let layout = custom_layout(&Path::new(FIXTURES).join(dir));
    check(
        dir,
        "cdr-custom.Master.csv",
        &layout,
        expect![[r#"
        01_rg_answered 1795390190.0: ok
        02_rg_noanswer 1795390208.59: ok
        03_ext_cancel 1795390232.108: ok
        04_ivr_queue 1795390244.118: ok
        05_queue_abandon 1795390269.163: ok
        06_internal_answered 1795390283.197: ok
        07_internal_busy 1795390298.213: ok
        08_outbound_answered 1795390306.224: ok
        09_outbound_noanswer 1795390322.240: ok
        10_click_to_call 1795390350.251: ok
        11_pickup 1795390371.267: ok
        12_cf_unconditional 1795390387.291: ok
        13_blind_transfer 1795390404.322: ok
        14_attended_transfer 1795390425.349: ok
        15_confbridge 1795390458.400: ok
        15_confbridge 1795390461.405: ok
        15_confbridge 1795390464.410: ok
        score 17/17
    "#]],
    );
}

#[test]
fn asterisk_18_cdr_csv() {
    check(
        "asterisk-18-pjsip",
        "cdr-csv.Master.csv",
        &CsvLayout::CdrCsv,
        expect![[r#"
            01_rg_answered 1795390190.0: to "600" (expected "15550001000")
            02_rg_noanswer 1795390208.59: to "601" (expected "15550001001")
            03_ext_cancel 1795390232.108: to "201" (expected "15550001002")
            04_ivr_queue 1795390244.118: to "600" (expected "15550001003")
            05_queue_abandon 1795390269.163: to "600" (expected "15550001004")
            06_internal_answered 1795390283.197: ok
            07_internal_busy 1795390298.213: ok
            08_outbound_answered 1795390306.224: ok
            09_outbound_noanswer 1795390322.240: ok
            10_click_to_call 1795390350.251: ok
            11_pickup 1795390371.267: to "202" (expected "15550001005")
            12_cf_unconditional 1795390387.291: to "201" (expected "15550001002")
            13_blind_transfer 1795390404.322: to "201" (expected "15550001002")
            14_attended_transfer 1795390425.349: to "201" (expected "15550001002")
            15_confbridge 1795390458.400: ok
            15_confbridge 1795390461.405: to "8000" (expected "15550001006")
            15_confbridge 1795390464.410: ok
            score 7/17
        "#]],
    );
}
