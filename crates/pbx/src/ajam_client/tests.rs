//! The AJAM client against a small HTTP server that answers with the bytes Asterisk 22 sent
//! (`asterisk-22/ajam/*.http`): login and its cookie, actions, WaitEvent polls, a bad login,
//! a request without a session.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Response, Uri};
use expect_test::expect;

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");
const SECRET: &str = "harness-secret";

/// One recorded HTTP response.
struct Capture {
    content_type: String,
    set_cookie: String,
    body: Vec<u8>,
}

fn capture(name: &str) -> Capture {
    let path = Path::new(FIXTURES).join(format!("asterisk-22/ajam/{name}.http"));
    let raw =
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixture missing: {}: {e}", path.display()));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP head and body");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(": ")
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v.to_owned())
            .unwrap_or_default()
    };
    Capture {
        content_type: header("Content-type"),
        set_cookie: header("Set-Cookie"),
        body: raw[split + 4..].to_vec(),
    }
}

/// The `mansession_id` value of a cookie header, quotes or not.
fn session_id(cookie: &str) -> Option<String> {
    cookie.split(';').find_map(|part| {
        part.trim()
            .strip_prefix("mansession_id=")
            .map(|v| v.trim_matches('"').to_owned())
    })
}

#[derive(Default)]
struct FakeAsterisk {
    /// The session a login created.
    session: Option<String>,
    /// When set, logins succeed but are not remembered (an Asterisk that keeps denying).
    amnesia: bool,
    polls: usize,
    /// `action` of every request, in order.
    log: Vec<String>,
}

async fn answer(
    State(state): State<Arc<Mutex<FakeAsterisk>>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let mxml = uri.path().ends_with("/mxml");
    let action = param("action").unwrap_or_default().to_ascii_lowercase();
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(session_id);
    let mut s = state.lock().unwrap();
    s.log.push(action.clone());
    let logged_in = s.session.is_some() && cookie == s.session;
    let name = match (action.as_str(), mxml) {
        ("login", _) if param("Secret") != Some(SECRET) => "31_rawman_bad_login".to_owned(),
        ("login", false) => "01_rawman_login".to_owned(),
        ("login", true) => "11_mxml_login".to_owned(),
        _ if !logged_in => "32_rawman_no_session_ping".to_owned(),
        ("logoff", false) => "07_rawman_logoff".to_owned(),
        ("ping", false) => "02_rawman_ping".to_owned(),
        ("ping", true) => "12_mxml_ping".to_owned(),
        ("coresettings", false) => "03_rawman_coresettings".to_owned(),
        ("coreshowchannels", false) => "05_rawman_coreshowchannels".to_owned(),
        ("waitevent", _) => {
            s.polls += 1;
            let (prefix, polls) = if mxml {
                ("15_mxml", 9)
            } else {
                ("06_rawman", 4)
            };
            match s.polls {
                n if n <= polls => format!("{prefix}_waitevent_{n:02}"),
                _ => format!("{prefix}_waitevent_final"),
            }
        }
        other => panic!("no capture for {other:?}"),
    };
    let c = capture(&name);
    if action == "login" && name != "31_rawman_bad_login" && !s.amnesia {
        s.session = session_id(&c.set_cookie);
    }
    if action == "logoff" {
        s.session = None;
    }
    Response::builder()
        .header(header::CONTENT_TYPE, c.content_type)
        .header(header::SET_COOKIE, c.set_cookie)
        .body(Body::from(c.body))
        .unwrap()
}

async fn fake_asterisk(state: FakeAsterisk) -> (String, Arc<Mutex<FakeAsterisk>>) {
    let state = Arc::new(Mutex::new(state));
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, state)
}

fn client(url: &str, secret: &str) -> AjamClient {
    AjamClient::new(url, "harness", Secret::new(secret), Duration::from_secs(20)).unwrap()
}

#[tokio::test]
async fn rawman_session_actions_lists_and_event_polls() {
    let (base, state) = fake_asterisk(FakeAsterisk::default()).await;
    let ajam = client(&format!("{base}/rawman"), SECRET);

    // No session yet: Asterisk denies, the client logs in and retries.
    let pong = ajam.send(Action::ping()).await.unwrap();
    assert_eq!(pong.response.get("Ping"), Some("Pong"));
    let settings = ajam.send(Action::core_settings()).await.unwrap();
    assert_eq!(settings.response.get("AsteriskVersion"), Some("22.10.1"));
    let channels = ajam.send(Action::core_show_channels()).await.unwrap();
    assert_eq!(channels.items.len(), 4);
    assert_eq!(channels.complete.unwrap().get("ListItems"), Some("4"));

    let mut polls = Vec::new();
    for _ in 0..5 {
        let events = ajam.wait_event(Duration::from_secs(3)).await.unwrap();
        polls.push((
            events.len(),
            events.last().and_then(|e| e.event()).map(str::to_owned),
        ));
    }
    expect![[r#"
        [
            (
                118,
                Some(
                    "Newexten",
                ),
            ),
            (
                0,
                None,
            ),
            (
                1,
                Some(
                    "Cdr",
                ),
            ),
            (
                37,
                Some(
                    "DeviceStateChange",
                ),
            ),
            (
                0,
                None,
            ),
        ]
    "#]]
    .assert_debug_eq(&polls);
    ajam.logoff().await.unwrap();
    expect![[r#"
        [
            "ping",
            "login",
            "ping",
            "coresettings",
            "coreshowchannels",
            "waitevent",
            "waitevent",
            "waitevent",
            "waitevent",
            "waitevent",
            "logoff",
        ]
    "#]]
    .assert_debug_eq(&state.lock().unwrap().log);
}

#[tokio::test]
async fn mxml_ping_and_events() {
    let (base, _) = fake_asterisk(FakeAsterisk::default()).await;
    let ajam = client(&format!("{base}/mxml"), SECRET);
    ajam.login().await.unwrap();
    let pong = ajam.send(Action::ping()).await.unwrap();
    assert_eq!(pong.response.get("Ping"), Some("Pong"));
    let first = ajam.wait_event(Duration::from_secs(3)).await.unwrap();
    let names: Vec<_> = first.iter().take(3).filter_map(|m| m.event()).collect();
    expect![[r#"
        [
            "SuccessfulAuth",
            "Newchannel",
            "Newchannel",
        ]
    "#]]
    .assert_debug_eq(&names);
}

#[tokio::test]
async fn bad_login_and_persistent_denial_are_clear_errors() {
    let (base, _) = fake_asterisk(FakeAsterisk::default()).await;
    let err = client(&format!("{base}/rawman"), "wrong")
        .send(Action::ping())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("authentication failed for user harness at {base}/rawman: Authentication failed")
    );

    let (base, _) = fake_asterisk(FakeAsterisk {
        amnesia: true,
        ..FakeAsterisk::default()
    })
    .await;
    let err = client(&format!("{base}/rawman"), SECRET)
        .send(Action::ping())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Ping: permission denied at {base}/rawman even after a fresh login")
    );
}

#[test]
fn url_must_name_an_ajam_endpoint() {
    let err = AjamClient::new(
        "http://pbx:8088/manager",
        "u",
        Secret::new("s"),
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "AJAM url http://pbx:8088/manager: the path must end with /rawman or /mxml"
    );
}
