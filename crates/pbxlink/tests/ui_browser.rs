//! The web UI end to end in headless Chromium, against the real binary: sign in with a
//! password, watch a recorded Asterisk call (a replay AMI server playing a fixture) appear
//! live and end, open its story and play its recording, retry its failed CRM delivery, see
//! the settings with secrets masked, switch to Russian. Screenshots:
//! `target/test-artifacts/ui_browser/<test>/*.png`.

mod browser;
mod gateway;

use std::io::{BufRead, BufReader, Read as _, Write as _};
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

/// A CRM that refuses every delivery for good (HTTP 400): the outbox marks them dead, so the
/// UI offers to retry them. Returns its URL; the thread ends with the test process.
fn refusing_crm() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(&stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let answer = r#"{"error":"unknown portal"}"#;
            let _ = (&stream).write_all(
                format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                )
                .as_bytes(),
            );
        }
    });
    url
}

/// One second of a 440 Hz tone as an 8 kHz 16-bit mono WAV, like a MixMonitor file.
fn tone_wav() -> Vec<u8> {
    let data = 16_000u32;
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    // Chunk size 16, PCM, 1 channel, 8000 Hz, 16000 bytes/s, 2 bytes a frame, 16 bits.
    for (value, width) in [
        (16u32, 4),
        (1, 2),
        (1, 2),
        (8000, 4),
        (16000, 4),
        (2, 2),
        (16, 2),
    ] {
        wav.extend_from_slice(&value.to_le_bytes()[..width]);
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data.to_le_bytes());
    for i in 0..8000 {
        let x = f64::from(i) * 440.0 * std::f64::consts::TAU / 8000.0;
        wav.extend_from_slice(&((x.sin() * 8000.0) as i16).to_le_bytes());
    }
    wav
}

/// With `PBXLINK_UPDATE_DOCS=1`, a screenshot also becomes the README's `docs/<name>`.
fn publish(shot: &std::path::Path, name: &str) {
    if std::env::var_os("PBXLINK_UPDATE_DOCS").is_some_and(|v| v == "1") {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        std::fs::copy(shot, docs.join(name)).unwrap();
    }
}

const USER: &str = "olga";
const PASSWORD: &str = "correct horse battery";

/// `pbxlink user add` on the gateway's future database, the password on standard input.
fn add_user(database: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pbxlink"))
        .args([
            "user",
            "add",
            USER,
            "--scope",
            "admin",
            "--database",
            database,
        ])
        .env_remove("PBXLINK_USER_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "pbxlink user add failed");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "added olga (admin)\n");
}

async fn type_into(b: &Browser, css: &str, text: &str) {
    let field = b.wait_for(css).await;
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(b: &Browser, css: &str) {
    b.wait_for(css).await.click().await.unwrap();
}

async fn text_of(b: &Browser, css: &str) -> String {
    b.wait_for(css).await.text().await.unwrap()
}

/// Signs in with the password form (a wrong password first) and waits for the live stream.
async fn sign_in_with_password(b: &Browser, base: &str) {
    b.client().goto(base).await.unwrap();
    type_into(b, "#user", USER).await;
    type_into(b, "#password", "not the password").await;
    click(b, "#passwordForm button").await;
    b.wait_for("#loginError:not(:empty)").await;
    assert_eq!(
        text_of(b, "#loginError").await,
        "Wrong user name or password."
    );
    b.screenshot("login").await;
    type_into(b, "#password", PASSWORD).await;
    click(b, "#passwordForm button").await;
    b.wait_for("#conn.connected").await;
    assert_eq!(text_of(b, "#who").await, "olga (admin)");
}

#[tokio::test]
async fn a_replayed_call_shows_live_then_in_the_journal_with_its_story() {
    let dir = tempfile::tempdir().unwrap();
    let monitor = dir.path().join("monitor");
    // Where MixMonitor wrote the fixture call's recording, under a stand-in monitor folder.
    let wav = monitor.join("2026/11/22/rg-600-15551234567-20261122-225430-1795388070.0.wav");
    std::fs::create_dir_all(wav.parent().unwrap()).unwrap();
    std::fs::write(&wav, tone_wav()).unwrap();
    let database = format!("sqlite://{}/pbxlink.db?mode=rwc", dir.path().display());
    add_user(&database);
    let ami_port = free_port();
    // The gateway keeps reconnecting to the not-yet-started PBX: the call is played only once
    // the browser is signed in and listening.
    let config = format!(
        r#"
[database]
url = "{database}"

[[pbx]]
name = "lab"
host = "127.0.0.1"
port = {ami_port}
username = "harness"
secret = "harness-secret"
reconnect_min = 0.1
reconnect_max = 0.2

[[crm]]
kind = "webhook"
name = "erp"
url = "{crm}"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]

[recordings]
dir = "{monitor}"
pbx_dir = "/var/lab/pbx/spool/monitor"
"#,
        crm = refusing_crm(),
        monitor = monitor.display(),
    );
    let gw = Gateway::start_with(TOKEN, Some(&config));
    let b = Browser::start("ui_browser/replayed_call").await;
    sign_in_with_password(&b, &gw.base).await;
    b.screenshot("signed-in").await;

    let _pbx = ReplayAmi::start(FIXTURE, &format!("127.0.0.1:{ami_port}"), 15);
    let live_row = format!("#liveRows tr[data-id=\"{CALL_ID}\"]");
    let text = text_of(&b, &live_row).await;
    assert!(text.contains("15551234567"), "live row: {text:?}");
    b.screenshot("live-call").await;
    b.wait_gone(&live_row).await;

    let journal_row = format!("#journalRows tr[data-id=\"{CALL_ID}\"]");
    let text = text_of(&b, &journal_row).await;
    assert!(
        text.contains("answered") && text.contains("202"),
        "{text:?}"
    );
    // The recording is converted a moment after the call ends: the story shows the player
    // once it is ready (the story is opened again until then).
    let player = loop {
        click(&b, &journal_row).await;
        b.wait_for("#story ol.story").await;
        b.wait_for("#player:not(:empty)").await;
        if let Ok(p) = b.client().find(Locator::Css("audio#recording")).await {
            break p;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    let steps = b
        .client()
        .find_all(Locator::Css("#story ol.story li"))
        .await
        .unwrap();
    assert!(steps.len() >= 3, "a story of {} steps", steps.len());
    // Play it: the browser fetches the MP3 through the signed link and plays it to the end.
    let played = b
        .client()
        .execute_async(
            "const [audio, done] = arguments; audio.muted = true; \
             audio.onended = () => done(audio.duration); \
             audio.onerror = () => done('error ' + audio.error.code); audio.play();",
            vec![serde_json::to_value(&player).unwrap()],
        )
        .await
        .unwrap();
    let seconds = played
        .as_f64()
        .unwrap_or_else(|| panic!("not played: {played}"));
    assert!((0.9..1.5).contains(&seconds), "played {seconds} s");
    publish(&b.screenshot("story").await, "web-ui-story.png");

    // The CRM refused the call's deliveries: they are dead, and one click queues one again.
    b.client()
        .goto(&format!("{}/#outbox", gw.base))
        .await
        .unwrap();
    let retry = b.wait_for("#outboxRows button.retry").await;
    publish(&b.screenshot("outbox").await, "web-ui-delivery.png");
    retry.click().await.unwrap();
    b.wait_for("#outboxRows td.retried").await;

    b.client()
        .goto(&format!("{}/#settings", gw.base))
        .await
        .unwrap();
    let file = text_of(&b, "#settingsFile").await;
    assert!(file.contains(r#""secret": "***""#), "{file}");
    for secret in ["harness-secret", "MfKQ9r8"] {
        assert!(!file.contains(secret), "{secret} shown: {file}");
    }
    b.screenshot("settings").await;

    // Russian: the page's own texts change, the data does not.
    b.wait_for("#lang")
        .await
        .select_by_value("ru")
        .await
        .unwrap();
    b.client()
        .goto(&format!("{}/#calls", gw.base))
        .await
        .unwrap();
    assert_eq!(text_of(&b, "#view-calls h2").await, "Текущие звонки");
    b.screenshot("calls-ru").await;
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
    click(&b, "#journalRows tr").await;
    b.wait_for("#story ol.story li").await;
    publish(&b.screenshot("demo").await, "web-ui.png");

    // The journal's filters: a past day range shows nothing; answered calls only.
    let search = "#filters button[data-i18n=search]";
    b.client()
        .execute(
            "document.querySelector('[name=fromDay]').value = '2020-01-01';\
             document.querySelector('[name=toDay]').value = '2020-01-02';",
            vec![],
        )
        .await
        .unwrap();
    click(&b, search).await;
    b.wait_gone("#journalRows tr").await;
    b.client()
        .execute(
            "document.querySelector('[name=fromDay]').value = '';\
             document.querySelector('[name=toDay]').value = '';\
             document.querySelector('[name=disposition]').value = 'answered';",
            vec![],
        )
        .await
        .unwrap();
    click(&b, search).await;
    b.wait_for("#journalRows tr td.answered").await;
    let results = b
        .client()
        .execute(
            "return [...document.querySelectorAll('#journalRows tr td:nth-child(5)')]\
             .map(td => td.textContent);",
            vec![],
        )
        .await
        .unwrap();
    let results: Vec<String> = serde_json::from_value(results).unwrap();
    assert!(results.iter().all(|r| r == "answered"), "{results:?}");
    b.screenshot("journal-filtered").await;
    b.close().await;
}
