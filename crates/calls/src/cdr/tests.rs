use super::*;
use expect_test::{expect, Expect};

/// cdr_csv rows of a real call (asterisk-22-pjsip 01_rg_answered): ring group 600 rings 201,
/// 202 and 203 over Local channels; 202 answers at 22:54:34; the caller hangs up at 22:54:42.
const RG_ANSWERED: &str = r#""","15551234567","201#","from-internal","""Jane Caller"" <15551234567>","Local/201#@from-internal-00000000;2","PJSIP/201-00000001","Dial","PJSIP/201/sip:201@127.0.0.1:5070,,Ttrb(func-apply-sipheaders^s^1)","2026-11-22 22:54:30",,"2026-11-22 22:54:34",4,0,"NO ANSWER","DOCUMENTATION","1795388070.2","","","1795388070.0",2
"","15551234567","600","ext-group","""Jane Caller"" <15551234567>","PJSIP/carrier-00000000","Local/201#@from-internal-00000000;1","Dial","Local/201#@from-internal/n&Local/202#@from-internal/n&Local/203#@from-internal/","2026-11-22 22:54:30",,"2026-11-22 22:54:34",4,0,"NO ANSWER","DOCUMENTATION","1795388070.0","","","1795388070.0",0
"","15551234567","600","ext-group","""Jane Caller"" <15551234567>","PJSIP/carrier-00000000","Local/202#@from-internal-00000001;1","Dial","Local/201#@from-internal/n&Local/202#@from-internal/n&Local/203#@from-internal/","2026-11-22 22:54:30","2026-11-22 22:54:34","2026-11-22 22:54:42",12,8,"ANSWERED","DOCUMENTATION","1795388070.0","","","1795388070.0",7
"","15551234567","202#","from-internal","""Jane Caller"" <15551234567>","Local/202#@from-internal-00000001;2","PJSIP/202-00000003","Dial","PJSIP/202/sip:202@127.0.0.1:5070,,Ttrb(func-apply-sipheaders^s^1)","2026-11-22 22:54:30","2026-11-22 22:54:34","2026-11-22 22:54:42",12,8,"ANSWERED","DOCUMENTATION","1795388070.4","","","1795388070.0",4
"#;
const CALL: &str = "1795388070.0";

fn rows() -> Vec<CdrRow> {
    read_csv(RG_ANSWERED.as_bytes(), &CsvLayout::CdrCsv, CdrZone::Utc)
        .collect::<Result<_, _>>()
        .unwrap()
}

fn at(hms: &str) -> DateTime<Utc> {
    format!("2026-11-22T{hms}Z").parse().unwrap()
}

fn gap(from: &str, to: &str) -> Option<Gap> {
    Some(Gap {
        from: at(from),
        to: at(to),
    })
}

/// The record as the tracker makes it of this call, with pbxlink's clock 0.3 s ahead of
/// the PBX's.
fn tracked() -> CallRecord {
    let mut record = record_from_cdr(&rows(), CALL, &TrackerConfig::default()).unwrap();
    record.started_at = at("22:54:30.300");
    record.provenance.source = Source::Ami;
    record
}

/// What a repair changed, one field a line.
fn check_repair(record: CallRecord, expect: Expect) {
    let repaired = repair(record.clone(), &rows(), &TrackerConfig::default());
    let (before, after) = (
        serde_json::to_value(&record).unwrap(),
        serde_json::to_value(&repaired).unwrap(),
    );
    let mut out = String::new();
    for (key, value) in after.as_object().unwrap() {
        if before[key] != *value {
            out.push_str(&format!("{key}: {value}\n"));
        }
    }
    expect.assert_eq(&out);
}

#[test]
fn cdr_csv_line() {
    let row = &rows()[2];
    expect![[r#"
        CdrRow { start: 2026-11-22T22:54:30Z, answer: Some(2026-11-22T22:54:34Z), end: 2026-11-22T22:54:42Z, clid: "\"Jane Caller\" <15551234567>", src: "15551234567", dst: "600", dcontext: "ext-group", channel: "PJSIP/carrier-00000000", dstchannel: "Local/202#@from-internal-00000001;1", lastapp: "Dial", lastdata: "Local/201#@from-internal/n&Local/202#@from-internal/n&Local/203#@from-internal/", duration: 12, billsec: 8, disposition: "ANSWERED", amaflags: "DOCUMENTATION", accountcode: "", uniqueid: "1795388070.0", userfield: "", peeraccount: "", linkedid: "1795388070.0", sequence: 7, did: "", recordingfile: "", cnum: "", cnam: "" }"#]]
    .assert_eq(&format!("{row:?}"));
}

#[test]
fn bad_lines_are_errors_with_their_line() {
    let text = "\"a\",\"b\"\n";
    let errors: Vec<_> = read_csv(text.as_bytes(), &CsvLayout::CdrCsv, CdrZone::Utc).collect();
    expect![[r#"
        [Err("line 1: cdr_csv line of 2 fields; pbxlink needs the Linkedid (cdr.conf [csv] newcdrcolumns = yes)")]"#]]
    .assert_eq(&format!("{errors:?}"));
    expect![[r#"Err("columns lack 'linkedid'")"#]].assert_eq(&format!(
        "{:?}",
        CsvLayout::custom(&["start", "end", "channel", "dstchannel", "disposition"])
    ));
    expect![[r#"Err("unknown CDR column 'calltime'")"#]]
        .assert_eq(&format!("{:?}", CsvLayout::custom(&["calltime"])));
}

#[test]
fn freepbx_rows_derive_answer_and_end() {
    let mut row = CdrRow {
        start: at("22:54:30"),
        duration: 12,
        billsec: 8,
        disposition: "ANSWERED".into(),
        ..CdrRow::default()
    };
    row.derive_answer_and_end();
    assert_eq!(
        (row.answer, row.end),
        (Some(at("22:54:34")), at("22:54:42"))
    );
}

#[test]
fn zones() {
    let t = NaiveDateTime::parse_from_str("2026-11-22 22:54:30", "%Y-%m-%d %H:%M:%S").unwrap();
    let moscow = CdrZone::Fixed(FixedOffset::east_opt(3 * 3600).unwrap());
    assert_eq!(moscow.to_utc(t), Some(at("19:54:30")));
    assert_eq!(
        CdrZone::Utc.parse("1795388070.5"),
        Ok(Some(at("22:54:30.500")))
    );
}

#[test]
fn end_and_answer_in_the_gap() {
    // The link dropped while 202's phone rang; the call was answered and ended unseen.
    let mut record = tracked();
    record.disposition = Disposition::NoAnswer;
    record.answered_at = None;
    record.answered_by = None;
    record.ended_at = at("22:54:33");
    record.talk_seconds = 0;
    record.ring_seconds = 2;
    record.provenance.ended_in_gap = gap("22:54:33", "22:54:50");
    check_repair(
        record,
        expect![[r#"
            answered_at: "2026-11-22T22:54:34.300Z"
            answered_by: "202"
            disposition: "answered"
            ended_at: "2026-11-22T22:54:42.300Z"
            ring_seconds: 4
            source: "ami_cdr"
            talk_seconds: 8
            timeline: [{"at":"2026-11-22T22:54:30Z","detail":"from the PBX's CDR","what":"started"},{"at":"2026-11-22T22:54:34Z","detail":"202","what":"answered"},{"at":"2026-11-22T22:54:42Z","detail":"","what":"hangup"},{"at":"2026-11-22T22:54:42.300Z","detail":"from the PBX's CDR: ended 22:54:42, answered 22:54:34 by 202","what":"cdr"}]
        "#]],
    );
}

#[test]
fn answer_in_the_gap_moves_only_the_answer() {
    // Seen answered only after the reconnect at :40, with 5 s of (IVR-free) ringing then.
    let mut record = tracked();
    record.answered_at = at("22:54:40").into();
    record.answered_by = None;
    record.ring_seconds = 10;
    record.talk_seconds = 2;
    record.ended_at = at("22:54:42.300");
    record.provenance.answered_in_gap = gap("22:54:31", "22:54:40");
    check_repair(
        record,
        expect![[r#"
            answered_at: "2026-11-22T22:54:34.300Z"
            answered_by: "202"
            ring_seconds: 5
            source: "ami_cdr"
            talk_seconds: 8
            timeline: [{"at":"2026-11-22T22:54:30Z","detail":"from the PBX's CDR","what":"started"},{"at":"2026-11-22T22:54:34Z","detail":"202","what":"answered"},{"at":"2026-11-22T22:54:42Z","detail":"","what":"hangup"},{"at":"2026-11-22T22:54:42.300Z","detail":"from the PBX's CDR: answered 22:54:34 by 202","what":"cdr"}]
        "#]],
    );
}

#[test]
fn a_gap_opened_late_takes_what_the_cdr_puts_after_the_last_moment_seen() {
    // Seen ringing from :30 only; events read late opened the gap at :44, after the call
    // had been answered and had ended.
    let mut record = tracked();
    record.disposition = Disposition::NoAnswer;
    record.answered_at = None;
    record.answered_by = None;
    record.timeline.truncate(1);
    record.ended_at = at("22:54:44");
    record.talk_seconds = 0;
    record.provenance.ended_in_gap = gap("22:54:44", "22:54:50");
    check_repair(
        record,
        expect![[r#"
            answered_at: "2026-11-22T22:54:44Z"
            answered_by: "202"
            disposition: "answered"
            ring_seconds: 13
            source: "ami_cdr"
            timeline: [{"at":"2026-11-22T22:54:30Z","detail":"from the PBX's CDR","what":"started"},{"at":"2026-11-22T22:54:44Z","detail":"from the PBX's CDR: ended 22:54:44, answered 22:54:44 by 202","what":"cdr"}]
        "#]],
    );
}

#[test]
fn a_first_answer_in_a_gap_before_the_one_seen() {
    // 202 answered in a gap and transferred the call to 203, whose answer at :40 was seen.
    let mut record = tracked();
    record.answered_at = at("22:54:40").into();
    record.answered_by = Some("203".into());
    record.ring_seconds = 10;
    record.timeline.truncate(1);
    record.provenance.gaps = vec![gap("22:54:32", "22:54:39").unwrap()];
    check_repair(
        record,
        expect![[r#"
        answered_at: "2026-11-22T22:54:34.300Z"
        answered_by: "202"
        ring_seconds: 5
        source: "ami_cdr"
        talk_seconds: 7
        timeline: [{"at":"2026-11-22T22:54:30Z","detail":"from the PBX's CDR","what":"started"},{"at":"2026-11-22T22:54:42Z","detail":"from the PBX's CDR: answered 22:54:34 by 202","what":"cdr"}]
    "#]],
    );
}

#[test]
fn rows_that_disagree_with_the_gap_change_nothing() {
    // The CDR's end (22:54:42) is before the gap the tracker names and before it last saw
    // the call (a hold at :45): keep what it saw.
    let mut record = tracked();
    record.timeline.push(TimelineEntry {
        at: at("22:54:45"),
        what: "hold".into(),
        detail: String::new(),
    });
    record.provenance.ended_in_gap = gap("22:54:50", "22:55:10");
    check_repair(record.clone(), expect![""]);
    // No rows of the call: nothing to take.
    record.id = "1795388999.1".into();
    record.provenance.ended_in_gap = gap("22:54:40", "22:55:10");
    check_repair(record, expect![""]);
}
