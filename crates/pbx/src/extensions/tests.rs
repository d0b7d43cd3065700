//! The AMI actions each DND, forwarding and queue-pause change sends, in both dialplan
//! styles, and the checks on what a user may set. Through the HTTP API against a real
//! transcript: the binary's `api::extensions` tests.

use expect_test::expect;

use super::*;
use crate::testing::fields;

#[test]
fn the_actions_of_each_change_in_both_styles() {
    let devices = ["201".to_owned(), "201b".to_owned()];
    let mut out = String::new();
    for style in [Style::Freepbx, Style::Asterisk] {
        for (setting, value) in [
            (Setting::Dnd, Some("YES")),
            (Setting::Dnd, None),
            (Setting::Unconditional, Some("15557654321")),
            (Setting::Unconditional, None),
            (Setting::Busy, Some("202")),
            (Setting::NoAnswer, None),
        ] {
            out.push_str(&format!("{style:?} {setting:?} {value:?}:\n"));
            for a in plan(style, "201", setting, value, &devices) {
                out.push_str(&format!("  {}\n", fields(a.as_message())));
            }
        }
    }
    expect![[r#"
        Freepbx Dnd Some("YES"):
          Action=DBPut Family=DND Key=201 Val=YES
          Action=Setvar Variable=DEVICE_STATE(Custom:DEVDND201) Value=BUSY
          Action=Setvar Variable=DEVICE_STATE(Custom:DEVDND201b) Value=BUSY
          Action=Setvar Variable=DEVICE_STATE(Custom:DND201) Value=BUSY
        Freepbx Dnd None:
          Action=DBDel Family=DND Key=201
          Action=Setvar Variable=DEVICE_STATE(Custom:DEVDND201) Value=UNAVAILABLE
          Action=Setvar Variable=DEVICE_STATE(Custom:DEVDND201b) Value=UNAVAILABLE
          Action=Setvar Variable=DEVICE_STATE(Custom:DND201) Value=UNAVAILABLE
        Freepbx Unconditional Some("15557654321"):
          Action=DBPut Family=CF Key=201 Val=15557654321
          Action=Setvar Variable=DEVICE_STATE(Custom:DEVCF201) Value=BUSY
          Action=Setvar Variable=DEVICE_STATE(Custom:DEVCF201b) Value=BUSY
          Action=Setvar Variable=DEVICE_STATE(Custom:CF201) Value=BUSY
        Freepbx Unconditional None:
          Action=DBDel Family=CF Key=201
          Action=Setvar Variable=DEVICE_STATE(Custom:DEVCF201) Value=NOT_INUSE
          Action=Setvar Variable=DEVICE_STATE(Custom:DEVCF201b) Value=NOT_INUSE
          Action=Setvar Variable=DEVICE_STATE(Custom:CF201) Value=NOT_INUSE
        Freepbx Busy Some("202"):
          Action=DBPut Family=CFB Key=201 Val=202
        Freepbx NoAnswer None:
          Action=DBDel Family=CFU Key=201
        Asterisk Dnd Some("YES"):
          Action=DBPut Family=DND Key=201 Val=YES
        Asterisk Dnd None:
          Action=DBDel Family=DND Key=201
        Asterisk Unconditional Some("15557654321"):
          Action=DBPut Family=CF Key=201 Val=15557654321
        Asterisk Unconditional None:
          Action=DBDel Family=CF Key=201
        Asterisk Busy Some("202"):
          Action=DBPut Family=CFB Key=201 Val=202
        Asterisk NoAnswer None:
          Action=DBDel Family=CFU Key=201
    "#]]
    .assert_eq(&out);
}

#[test]
fn known_extensions_and_forwarding_targets() {
    let config = ExtensionsConfig {
        style: Style::Asterisk,
        known: vec!["200-299".into(), "5000".into()],
    };
    let listed: Vec<bool> = ["200", "250", "299", "300", "2000", "5000", "x"]
        .iter()
        .map(|e| config.lists(e))
        .collect();
    assert_eq!(listed, [true, true, true, false, false, true, false]);
    let checked: Vec<String> = ["202", "+74951234567", "201", "+201", "12ab", "+", "", "1;2"]
        .iter()
        .map(|to| match check_target("201", to) {
            Ok(()) => format!("{to}: ok"),
            Err(e) => e,
        })
        .collect();
    expect![[r#"
        [
            "202: ok",
            "+74951234567: ok",
            "extension 201 cannot forward to itself: every call would loop",
            "extension 201 cannot forward to itself: every call would loop",
            "\"12ab\" is not an extension or phone number (digits, optionally a leading +)",
            "\"+\" is not an extension or phone number (digits, optionally a leading +)",
            "\"\" is not an extension or phone number (digits, optionally a leading +)",
            "\"1;2\" is not an extension or phone number (digits, optionally a leading +)",
        ]
    "#]]
    .assert_debug_eq(&checked);
}
