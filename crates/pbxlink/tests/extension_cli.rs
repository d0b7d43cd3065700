//! `pbxlink extension ...` as a script runs it: the binary against `pbxlink ami serve` of a
//! bare-Asterisk transcript; exit status, the JSON on stdout, the reason on stderr.

mod gateway;

use std::process::Command;

use expect_test::expect;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

#[test]
fn extension_commands_print_json_and_fail_with_a_reason() {
    let transcript = format!("{FIXTURES}/asterisk-22/ami/05_inbound_queue.rx.raw");
    let server = gateway::AmiServer::start(transcript.as_ref(), "127.0.0.1:0", &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pbxlink.toml");
    let text = server.pbx_config("office") + "[extensions]\nstyle = \"asterisk\"\n";
    std::fs::write(&config, text).unwrap();
    let mut report = String::new();
    for args in [
        "forward 204 noanswer +15557654321 --json",
        "pause support 204 --reason lunch --json",
        "forward 204 noanswer 204 --json",
        "dnd 299 on --json",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pbxlink"))
            .arg("--config")
            .arg(&config)
            .arg("extension")
            .args(args.split(' '))
            .env_remove("PBXLINK_CONFIG")
            // The link's own info lines ("AMI link up") are not what is checked here.
            .env("PBXLINK_LOG", "warn")
            .output()
            .unwrap();
        report.push_str(&format!(
            "$ pbxlink extension {args}\nexit {:?}\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        ));
    }
    expect![[r#"
        $ pbxlink extension forward 204 noanswer +15557654321 --json
        exit Some(0)
        {"extension":"204","dnd":false,"unconditional":null,"busy":null,"noanswer":"+15557654321"}
        $ pbxlink extension pause support 204 --reason lunch --json
        exit Some(0)
        {"interface":"Local/204@agents/n","paused":true,"pbx":"office","queue":"support","reason":"lunch"}
        $ pbxlink extension forward 204 noanswer 204 --json
        exit Some(1)
        Error: extension 204 cannot forward to itself: every call would loop
        $ pbxlink extension dnd 299 on --json
        exit Some(1)
        Error: no extension 299 on PBX "office"
    "#]].assert_eq(&report);
}
