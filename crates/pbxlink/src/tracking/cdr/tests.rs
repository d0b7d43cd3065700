use super::*;
use chrono::{DateTime, Utc};
use expect_test::expect;

/// The cdr_custom Master.csv of a real Asterisk 22, read as `[pbx.cdr]` would.
fn fixture_source() -> CdrSource {
    CdrSource::new(&pbx::testing::cdr_fixture_config("asterisk-22-pjsip")).unwrap()
}

fn at(hms: &str) -> DateTime<Utc> {
    format!("2026-11-22T{hms}Z").parse().unwrap()
}

#[tokio::test]
async fn calls_inside_the_gap_come_from_the_cdr() {
    // 01 (22:54:30-42), 02 (22:55:02-21) and 03 (22:55:45-51) began and ended in the gap; 02
    // is already journaled; 04 began at 22:56:05, after it.
    let gap = Gap {
        from: at("22:54:20"),
        to: at("22:56:00"),
    };
    let known = |id: &str| std::future::ready(id == "1795388102.20");
    let records = cdr_backfill(&fixture_source(), gap, known, &TrackerConfig::default())
        .await
        .unwrap();
    let lines: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {:?} {:?} {:?}->{:?} {:?} by {:?} ring {} talk {} {:?}",
                r.id,
                r.provenance.source,
                r.direction,
                r.from,
                r.to,
                r.disposition,
                r.answered_by,
                r.ring_seconds,
                r.talk_seconds,
                r.rang
            )
        })
        .collect();
    expect![[r#"
        1795388070.0 Cdr Inbound Some("15551234567")->Some("15550001000") Answered by Some("202") ring 4 talk 8 ["201", "202", "203"]
        1795388145.37 Cdr Inbound Some("15551234567")->Some("15550001002") Cancelled by None ring 6 talk 0 ["201"]"#]]
    .assert_eq(&lines.join("\n"));
}

#[tokio::test]
async fn a_call_that_began_before_the_gap_is_not_the_gap_s() {
    // 01's rows began at 22:54:30: a gap from 22:54:33 holds its end, not the call.
    let gap = Gap {
        from: at("22:54:33"),
        to: at("22:54:50"),
    };
    let known = |_: &str| std::future::ready(false);
    let records = cdr_backfill(&fixture_source(), gap, known, &TrackerConfig::default())
        .await
        .unwrap();
    assert_eq!(records, []);
}
