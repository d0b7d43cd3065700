//! `pbxlink extension ...` against the replay AMI server playing real Asterisk 22
//! transcripts (a bare Asterisk with a queue, a FreePBX with hints): what each command
//! prints, the exact AMI actions it sends, and bad input refused before anything changes.

use std::net::SocketAddr;
use std::path::Path;

use clap::Parser;
use expect_test::{expect, Expect};
use sim::replay_server::{ReplayOptions, ReplayServer, Transcript};

use pbx::testing::fields;

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

/// The subcommand's arguments as `pbxlink extension` gets them.
#[derive(Debug, Parser)]
struct Line {
    #[command(flatten)]
    args: ExtensionArgs,
}

/// Runs each command line against a replay server of `transcript` with `[extensions]`
/// `settings`, and checks, per command, what it printed (or its error), whether it
/// connected, and the actions it sent beyond the link's own.
async fn check(transcript: &str, settings: &str, lines: &[&[&str]], expected: Expect) {
    let path = Path::new(FIXTURES).join(transcript);
    let server = ReplayServer::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Transcript::load(&path).unwrap(),
        ReplayOptions::new("harness", "harness-secret"),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let text = format!(
        "[[pbx]]\nname = \"office\"\nhost = \"{}\"\nport = {}\nusername = \"harness\"\n\
         secret = \"harness-secret\"\nping_interval = 3600\n[extensions]\n{settings}",
        addr.ip(),
        addr.port()
    );
    let config = Config::parse(&text, "test").unwrap();
    let mut report = String::new();
    for line in lines {
        report.push_str(&format!(
            "$ pbxlink extension {}\n",
            line.join(" ").escape_debug()
        ));
        let (connections, actions) = (server.connections().len(), server.actions_except_link());
        let mut out = Vec::new();
        let argv = std::iter::once("extension").chain(line.iter().copied());
        let result = match Line::try_parse_from(argv) {
            Ok(parsed) => execute(&config, parsed.args, &mut out).await,
            // clap's first line, without its own "error: ".
            Err(e) => {
                let first = e.to_string().lines().next().unwrap_or_default().to_owned();
                Err(anyhow::anyhow!("{}", first.trim_start_matches("error: ")))
            }
        };
        report.push_str(&String::from_utf8(out).unwrap());
        if let Err(e) = result {
            report.push_str(&format!("error: {e:#}\n"));
        }
        if server.connections().len() == connections {
            report.push_str("  (no connection)\n");
        }
        for action in &server.actions_except_link()[actions.len()..] {
            report.push_str(&format!("  > {}\n", fields(action)));
        }
    }
    expected.assert_eq(&report);
}

#[tokio::test]
async fn bare_asterisk_commands_send_exactly_these_actions_and_bad_input_nothing() {
    check(
        "asterisk-22/ami/05_inbound_queue.rx.raw",
        "style = \"asterisk\"\nknown = [\"5000\"]\n",
        &[
            &["show", "204"],
            &["dnd", "204", "on", "--json"],
            &["forward", "204", "busy", "+15557654321", "--json"],
            &["forward", "5000", "unconditional", "204"],
            &["forward", "204", "busy", "off"],
            &["pause", "support", "204", "--reason", "lunch"],
            &["unpause", "support", "Local/202@agents/n", "--json"],
            // Refused: each says why and changes nothing.
            &["dnd", "299", "on"],
            &["dnd", "2x4", "on"],
            &["forward", "204", "busy", "204"],
            &["forward", "204", "unconditional", "+204"],
            &["forward", "204", "noanswer", "12ab"],
            &["forward", "204", "sideways", "202"],
            &["pause", "support", "299"],
            &["pause", "support", "204", "--reason", "a\nb"],
            &["show", "204", "--pbx", "branch"],
        ],
        expect![[r#"
            $ pbxlink extension show 204
            extension 204 on PBX "office"
            dnd            off
            unconditional  off
            busy           off
            noanswer       off
              > Action=ExtensionStateList
              > Action=QueueStatus
              > Action=DBGet Family=DND Key=204
              > Action=DBGet Family=CF Key=204
              > Action=DBGet Family=CFB Key=204
              > Action=DBGet Family=CFU Key=204
            $ pbxlink extension dnd 204 on --json
            {"extension":"204","dnd":true,"unconditional":null,"busy":null,"noanswer":null}
              > Action=ExtensionStateList
              > Action=QueueStatus
              > Action=DBPut Family=DND Key=204 Val=YES
              > Action=DBGet Family=DND Key=204
              > Action=DBGet Family=CF Key=204
              > Action=DBGet Family=CFB Key=204
              > Action=DBGet Family=CFU Key=204
            $ pbxlink extension forward 204 busy +15557654321 --json
            {"extension":"204","dnd":true,"unconditional":null,"busy":"+15557654321","noanswer":null}
              > Action=ExtensionStateList
              > Action=QueueStatus
              > Action=DBPut Family=CFB Key=204 Val=+15557654321
              > Action=DBGet Family=DND Key=204
              > Action=DBGet Family=CF Key=204
              > Action=DBGet Family=CFB Key=204
              > Action=DBGet Family=CFU Key=204
            $ pbxlink extension forward 5000 unconditional 204
            extension 5000 on PBX "office"
            dnd            off
            unconditional  204
            busy           off
            noanswer       off
              > Action=DBPut Family=CF Key=5000 Val=204
              > Action=DBGet Family=DND Key=5000
              > Action=DBGet Family=CF Key=5000
              > Action=DBGet Family=CFB Key=5000
              > Action=DBGet Family=CFU Key=5000
            $ pbxlink extension forward 204 busy off
            extension 204 on PBX "office"
            dnd            on
            unconditional  off
            busy           off
            noanswer       off
              > Action=ExtensionStateList
              > Action=QueueStatus
              > Action=DBDel Family=CFB Key=204
              > Action=DBGet Family=DND Key=204
              > Action=DBGet Family=CF Key=204
              > Action=DBGet Family=CFB Key=204
              > Action=DBGet Family=CFU Key=204
            $ pbxlink extension pause support 204 --reason lunch
            Local/204@agents/n paused in queue support (lunch)
              > Action=QueueStatus Queue=support
              > Action=QueuePause Interface=Local/204@agents/n Queue=support Paused=true Reason=lunch
            $ pbxlink extension unpause support Local/202@agents/n --json
            {"interface":"Local/202@agents/n","paused":false,"pbx":"office","queue":"support","reason":""}
              > Action=QueueStatus Queue=support
              > Action=QueuePause Interface=Local/202@agents/n Queue=support Paused=false
            $ pbxlink extension dnd 299 on
            error: no extension 299 on PBX "office"
              > Action=ExtensionStateList
              > Action=QueueStatus
            $ pbxlink extension dnd 2x4 on
            error: "2x4" is not an extension number
              (no connection)
            $ pbxlink extension forward 204 busy 204
            error: extension 204 cannot forward to itself: every call would loop
              (no connection)
            $ pbxlink extension forward 204 unconditional +204
            error: extension 204 cannot forward to itself: every call would loop
              (no connection)
            $ pbxlink extension forward 204 noanswer 12ab
            error: "12ab" is not an extension or phone number (digits, optionally a leading +)
              (no connection)
            $ pbxlink extension forward 204 sideways 202
            error: invalid value 'sideways' for '<KIND>': expected unconditional, busy, noanswer
              (no connection)
            $ pbxlink extension pause support 299
            error: no member "299" in queue "support" on PBX "office"
              > Action=QueueStatus Queue=support
            $ pbxlink extension pause support 204 --reason a\nb
            error: reason: at most 80 characters, no control characters
              (no connection)
            $ pbxlink extension show 204 --pbx branch
            error: no [[pbx]] named 'branch' in the config
              (no connection)
        "#]],
    )
    .await;
}

#[tokio::test]
async fn freepbx_style_sets_the_device_states_freepbx_sets() {
    check(
        "asterisk-22-pjsip/ami/04_ivr_queue.rx.raw",
        "",
        &[
            &["dnd", "201", "on"],
            &["dnd", "201", "off", "--json"],
            &["show", "203"],
            &["show", "202"],
        ],
        expect![[r#"
            $ pbxlink extension dnd 201 on
            extension 201 on PBX "office"
            dnd            on
            unconditional  off
            busy           off
            noanswer       off
              > Action=ExtensionStateList
              > Action=DBGet Family=AMPUSER Key=201/device
              > Action=DBPut Family=DND Key=201 Val=YES
              > Action=Setvar Variable=DEVICE_STATE(Custom:DND201) Value=BUSY
              > Action=DBGet Family=DND Key=201
              > Action=DBGet Family=CF Key=201
              > Action=DBGet Family=CFB Key=201
              > Action=DBGet Family=CFU Key=201
            $ pbxlink extension dnd 201 off --json
            {"extension":"201","dnd":false,"unconditional":null,"busy":null,"noanswer":null}
              > Action=ExtensionStateList
              > Action=DBGet Family=AMPUSER Key=201/device
              > Action=DBDel Family=DND Key=201
              > Action=Setvar Variable=DEVICE_STATE(Custom:DND201) Value=UNAVAILABLE
              > Action=DBGet Family=DND Key=201
              > Action=DBGet Family=CF Key=201
              > Action=DBGet Family=CFB Key=201
              > Action=DBGet Family=CFU Key=201
            $ pbxlink extension show 203
            extension 203 on PBX "office"
            dnd            off
            unconditional  off
            busy           off
            noanswer       off
              > Action=ExtensionStateList
              > Action=DBGet Family=DND Key=203
              > Action=DBGet Family=CF Key=203
              > Action=DBGet Family=CFB Key=203
              > Action=DBGet Family=CFU Key=203
            $ pbxlink extension show 202
            error: no extension 202 on PBX "office"
              > Action=ExtensionStateList
              > Action=QueueStatus
        "#]],
    )
    .await;
}
