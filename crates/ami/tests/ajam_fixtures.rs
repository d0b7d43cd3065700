//! Every recorded AJAM response of Asterisk 22 parses: `/rawman` and `/mxml` bodies into
//! messages with no error, `/manager` HTML recognised as not AMI.

mod common;

use ami::ajam::{self, AjamError};
use expect_test::expect;

/// Splits a `curl -i` capture into its `Content-type` and its body, checking `Content-Length`.
fn split_http(raw: &[u8]) -> (String, &[u8]) {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP head ends with a blank line");
    let head = std::str::from_utf8(&raw[..head_end]).unwrap();
    let body = &raw[head_end + 4..];
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let len: usize = header("Content-Length").unwrap().parse().unwrap();
    assert_eq!(len, body.len(), "Content-Length");
    (header("Content-type").unwrap(), body)
}

#[test]
fn every_ajam_capture_parses() {
    let dir = common::fixtures_dir().join("asterisk-22/ajam");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".http"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 30,
        "expected the 31 AJAM captures, found {}",
        names.len()
    );
    let mut out = String::new();
    for name in names {
        let raw = std::fs::read(dir.join(&name)).unwrap();
        let (content_type, body) = split_http(&raw);
        let line = match ajam::parse_body(&content_type, body) {
            Ok(messages) => {
                let first = messages
                    .first()
                    .map(|m| format!("{:?}", m.iter().next().unwrap()));
                let events = messages.iter().filter(|m| m.event().is_some()).count();
                format!(
                    "{} messages ({events} events), first {}",
                    messages.len(),
                    first.unwrap_or_default()
                )
            }
            Err(AjamError::NotAjam(ct)) => format!("not AMI ({ct})"),
            Err(e) => panic!("{name}: {e}"),
        };
        out.push_str(&format!("{name}: {line}\n"));
    }
    expect![[r#"
        01_rawman_login.http: 1 messages (0 events), first ("Response", "Success")
        02_rawman_ping.http: 1 messages (0 events), first ("Response", "Success")
        03_rawman_coresettings.http: 1 messages (0 events), first ("Response", "Success")
        04_rawman_originate.http: 1 messages (0 events), first ("Response", "Success")
        05_rawman_coreshowchannels.http: 6 messages (5 events), first ("Response", "Success")
        06_rawman_waitevent_01.http: 120 messages (119 events), first ("Response", "Success")
        06_rawman_waitevent_02.http: 2 messages (1 events), first ("Response", "Success")
        06_rawman_waitevent_03.http: 3 messages (2 events), first ("Response", "Success")
        06_rawman_waitevent_04.http: 39 messages (38 events), first ("Response", "Success")
        06_rawman_waitevent_final.http: 2 messages (1 events), first ("Response", "Success")
        07_rawman_logoff.http: 1 messages (0 events), first ("Response", "Goodbye")
        08_rawman_ping_after_logoff.http: 1 messages (0 events), first ("Response", "Error")
        11_mxml_login.http: 1 messages (0 events), first ("response", "Success")
        12_mxml_ping.http: 1 messages (0 events), first ("response", "Success")
        13_mxml_coresettings.http: 1 messages (0 events), first ("response", "Success")
        14_mxml_originate.http: 1 messages (0 events), first ("response", "Success")
        15_mxml_waitevent_01.http: 41 messages (40 events), first ("response", "Success")
        15_mxml_waitevent_02.http: 7 messages (6 events), first ("response", "Success")
        15_mxml_waitevent_03.http: 3 messages (2 events), first ("response", "Success")
        15_mxml_waitevent_04.http: 3 messages (2 events), first ("response", "Success")
        15_mxml_waitevent_05.http: 3 messages (2 events), first ("response", "Success")
        15_mxml_waitevent_06.http: 60 messages (59 events), first ("response", "Success")
        15_mxml_waitevent_07.http: 3 messages (2 events), first ("response", "Success")
        15_mxml_waitevent_08.http: 3 messages (2 events), first ("response", "Success")
        15_mxml_waitevent_09.http: 24 messages (23 events), first ("response", "Success")
        15_mxml_waitevent_final.http: 2 messages (1 events), first ("response", "Success")
        16_mxml_logoff.http: 1 messages (0 events), first ("response", "Goodbye")
        21_manager_login.http: not AMI (text/html)
        22_manager_ping.http: not AMI (text/html)
        23_manager_logoff.http: not AMI (text/html)
        31_rawman_bad_login.http: 1 messages (0 events), first ("Response", "Error")
        32_rawman_no_session_ping.http: 1 messages (0 events), first ("Response", "Error")
    "#]]
    .assert_eq(&out);
}

/// The same WaitEvent answer reads the same in both formats, apart from key case.
#[test]
fn rawman_and_mxml_carry_the_same_fields() {
    let fields = |name: &str| {
        let raw = common::read(&format!("asterisk-22/ajam/{name}"));
        let (ct, body) = split_http(&raw);
        let messages = ajam::parse_body(&ct, body).unwrap();
        let m = messages
            .iter()
            .find(|m| m.event() == Some("Newchannel"))
            .unwrap()
            .clone();
        m.iter()
            .map(|(k, _)| k.to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        fields("06_rawman_waitevent_01.http"),
        fields("15_mxml_waitevent_01.http")
    );
}
