//! The web UI end to end in headless Chromium, against the real binary: sign in, watch a
//! recorded Asterisk call (a replay AMI server playing a fixture) appear live and end, open
//! its story. Screenshots: `target/test-artifacts/ui_browser/<test>/*.png`.

mod browser;
mod gateway;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use browser::Browser;
use fantoccini::Locator;
use gateway::Gateway;

const TOKEN: &str = "ui-browser-test-token";
const FIXTURE: &str = "../../../shared/fixtures/asterisk-22-pjsip/ami/01_rg_answered.rx.raw";
/// The fixture's one call: Jane (15551234567) calls the DID, ring group 201/202/203, 202 answers.
const CALL_ID: &str = "1795388070.0";

/// `pbxlink ami serve` playing a transcript; killed when dropped.
struct ReplayAmi(Child);

impl Drop for ReplayAmi {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ReplayAmi {
    /// Serves `fixture` on `addr`, one event every `pace_ms`: slow enough for a person (and
    /// the browser) to watch the call ring, be answered and end.
    fn start(fixture: &str, addr: &str, pace_ms: u32) -> ReplayAmi {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(fixture);
        let mut child = Command::new(env!("CARGO_BIN_EXE_pbxlink"))
            .args(["ami", "serve"])
            .arg(&fixture)
            .args([
                "--user",
                "harness",
                "--secret",
                "harness-secret",
                "--listen",
                addr,
            ])
            .args(["--pace-ms", &pace_ms.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let serving = out.next().and_then(Result::ok).unwrap_or_default();
        assert!(
            serving.starts_with("serving"),
            "replay AMI server did not start on {addr} ({}): {serving:?}",
            fixture.display()
        );
        std::thread::spawn(move || out.for_each(drop));
        ReplayAmi(child)
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Signs in with the token form and waits for the live stream to connect.
async fn sign_in_with_token(b: &Browser, base: &str) {
    let c = b.client();
    c.goto(base).await.unwrap();
    b.wait_for("#loginForm").await;
    b.screenshot("login").await;
    c.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    c.find(Locator::Css("#loginForm button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for("#app").await;
    b.wait_for("#conn.connected").await;
}

#[tokio::test]
async fn a_replayed_call_shows_live_then_in_the_journal_with_its_story() {
    let ami = format!("127.0.0.1:{}", free_port());
    // The gateway keeps reconnecting to the not-yet-started PBX: the call is played only once
    // the browser is signed in and listening.
    let config = format!(
        r#"
[[pbx]]
name = "lab"
host = "127.0.0.1"
port = {port}
username = "harness"
secret = "harness-secret"
reconnect_min = 0.1
reconnect_max = 0.2
"#,
        port = ami.rsplit(':').next().unwrap()
    );
    let gw = Gateway::start_with(TOKEN, Some(&config));
    let b = Browser::start("ui_browser/replayed_call").await;
    sign_in_with_token(&b, &gw.base).await;
    b.screenshot("signed-in").await;

    let _pbx = ReplayAmi::start(FIXTURE, &ami, 15);
    let live_row = format!("#liveRows tr[data-id=\"{CALL_ID}\"]");
    let row = b.wait_for(&live_row).await;
    let text = row.text().await.unwrap();
    assert!(text.contains("15551234567"), "live row: {text:?}");
    b.screenshot("live-call").await;
    b.wait_gone(&live_row).await;

    let journal_row = format!("#journalRows tr[data-id=\"{CALL_ID}\"]");
    let row = b.wait_for(&journal_row).await;
    let text = row.text().await.unwrap();
    assert!(
        text.contains("answered") && text.contains("202"),
        "{text:?}"
    );
    row.click().await.unwrap();
    let story = b.wait_for("#story ol.story").await;
    let steps = story.find_all(Locator::Css("li")).await.unwrap();
    assert!(steps.len() >= 3, "a story of {} steps", steps.len());
    b.screenshot("story").await;
    b.close().await;
}

#[tokio::test]
async fn demo_mode_signs_in_from_the_printed_link() {
    let gw = Gateway::start(TOKEN);
    let b = Browser::start("ui_browser/demo").await;
    // The link `pbxlink run` prints: the token in the fragment, dropped from the address bar.
    b.client()
        .goto(&format!("{}/#token={TOKEN}", gw.base))
        .await
        .unwrap();
    b.wait_for("#conn.connected").await;
    let url = b.client().current_url().await.unwrap();
    assert!(!url.as_str().contains(TOKEN), "token left in {url}");
    b.wait_for("#liveRows tr").await;
    b.wait_for("#journalRows tr").await;
    b.screenshot("demo").await;
    b.close().await;
}
