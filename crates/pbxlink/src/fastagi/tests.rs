//! FastAGI server and handler tests: the recorded Asterisk 22 session byte for byte, the
//! CRM budget on tokio's paused clock, garbage and failing CRMs, hang-ups, limits, webhook.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agi::Command;
use crm::{CallerInfo, CallerLookup, CrmError};
use expect_test::{expect, Expect};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::time::Instant;

use super::handlers::{variables_from_json, CallerId, Lookup, Route, Static, Webhook};
use super::{serve_connection, Agi, AgiError, Handler, Limits, Outcome, Router, Server};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");
const BUDGET: Duration = Duration::from_millis(300);
const LIMITS: Limits = Limits {
    max_connections: 8,
    session_timeout: Duration::from_secs(10),
};

fn fixture(name: &str) -> String {
    let path = PathBuf::from(FIXTURES)
        .join("asterisk-22/fastagi")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} is required: {e}", path.display()))
}

/// An AGI environment for `script` from caller `callerid`.
fn env(script: &str, callerid: &str) -> String {
    format!(
        "agi_network: yes\nagi_network_script: {script}\nagi_channel: PJSIP/trunk-00000001\n\
         agi_uniqueid: 1795354640.49\nagi_callerid: {callerid}\nagi_calleridname: Jane Caller\n\n"
    )
}

/// Plays Asterisk on `peer`: sends `env`, then answers each command with the next of
/// `replies` (then `200 result=1`). Returns the commands, one per line.
async fn asterisk(mut peer: DuplexStream, env: &str, replies: &[&str]) -> String {
    peer.write_all(env.as_bytes()).await.unwrap();
    let mut replies = replies.iter();
    let mut reader = BufReader::new(peer);
    let mut transcript = String::new();
    let mut line = String::new();
    while reader.read_line(&mut line).await.unwrap() > 0 {
        transcript.push_str(&line);
        line.clear();
        let reply = replies.next().copied().unwrap_or("200 result=1\n");
        reader.get_mut().write_all(reply.as_bytes()).await.unwrap();
    }
    transcript
}

/// One session of `router` against a scripted Asterisk: (commands sent, outcome).
async fn play(router: &Router, env: &str, replies: &[&str]) -> (String, Outcome) {
    let (ours, theirs) = tokio::io::duplex(4096);
    let (outcome, transcript) = tokio::join!(
        serve_connection(ours, router, LIMITS),
        asterisk(theirs, env, replies)
    );
    (transcript, outcome)
}

/// The script of the reference server that recorded session_001 (tools/fastagi_server.py).
struct ReferenceRoute;

impl Handler for ReferenceRoute {
    fn handle<'a>(&'a self, agi: &'a mut Agi) -> BoxFuture<'a, Result<(), AgiError>> {
        async move {
            let hello = format!(
                "FastAGI {}: routing call {}",
                agi.env().network_script().unwrap_or_default(),
                agi.env().unique_id().unwrap_or_default()
            );
            agi.command(&Command::Verbose {
                message: &hello,
                level: 1,
            })
            .await?;
            agi.command(&Command::GetVariable {
                name: "CALLERID(num)",
            })
            .await?;
            agi.command(&Command::GetVariable { name: "DID" }).await?;
            agi.set_variable("TARGET", "202").await?;
            agi.command(&Command::Verbose {
                message: "FastAGI: TARGET set to 202",
                level: 1,
            })
            .await
            .map(drop)
        }
        .boxed()
    }
}

#[tokio::test]
async fn recorded_session_001_byte_for_byte() {
    let rx = fixture("session_001.rx.raw");
    let (env, replies) = rx.split_once("\n\n").unwrap();
    let replies: Vec<String> = replies.lines().map(|l| format!("{l}\n")).collect();
    let replies: Vec<&str> = replies.iter().map(String::as_str).collect();
    let router = Router::default().route("route", ReferenceRoute);
    let (sent, outcome) = play(&router, &format!("{env}\n\n"), &replies).await;
    assert_eq!(sent, fixture("session_001.tx.raw"));
    assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
}

/// A fake CRM: answers `info` after `delay`, counting the questions.
struct FakeCrm {
    delay: Duration,
    answer: Result<CallerInfo, CrmError>,
    asked: AtomicUsize,
}

impl FakeCrm {
    fn new(delay_ms: u64, answer: Result<CallerInfo, CrmError>) -> Arc<FakeCrm> {
        Arc::new(FakeCrm {
            delay: Duration::from_millis(delay_ms),
            answer,
            asked: AtomicUsize::new(0),
        })
    }
}

impl CallerLookup for FakeCrm {
    async fn lookup_caller(&self, _: &str) -> Result<CallerInfo, CrmError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.answer.clone()
    }
}

fn manager(ext: &str) -> Result<CallerInfo, CrmError> {
    Ok(CallerInfo {
        name: Some("Jane \"JJ\" Caller, Acme\nLtd".into()),
        crm_id: Some("CONTACT_42".into()),
        responsible_extension: Some(ext.into()),
    })
}

fn crm_router(crm: &Arc<FakeCrm>) -> Router {
    let lookup = Lookup::new(Some(crm.clone()), BUDGET, Duration::from_secs(60));
    Router::default()
        .route(
            "route",
            Route {
                lookup: lookup.clone(),
                fallback_target: "600".into(),
            },
        )
        .route("callerid", CallerId { lookup })
}

/// Runs `script` for `callerid` and checks the commands and the (virtual) time taken.
async fn check_session(router: &Router, script: &str, callerid: &str, expect: Expect) {
    let started = Instant::now();
    let (sent, outcome) = play(router, &env(script, callerid), &[]).await;
    let took = started.elapsed();
    expect.assert_eq(&format!("{sent}-- {outcome:?} in {took:?}"));
}

#[tokio::test(start_paused = true)]
async fn route_asks_the_crm_then_the_cache() {
    let crm = FakeCrm::new(40, manager("202"));
    let router = crm_router(&crm);
    check_session(
        &router,
        "route?x=1",
        "15551234567",
        expect![[r#"
            SET VARIABLE PBXLINK_TARGET 202
            SET VARIABLE PBXLINK_CALLER_NAME "Jane \"JJ\" Caller, Acme Ltd"
            SET VARIABLE PBXLINK_CRM_ID CONTACT_42
            SET VARIABLE PBXLINK_ROUTE_STATUS ok
            -- Done in 40ms"#]],
    )
    .await;
    check_session(
        &router,
        "callerid",
        "15551234567",
        expect![[r#"
            SET VARIABLE CALLERID(name) "Jane \"JJ\" Caller, Acme Ltd"
            SET VARIABLE PBXLINK_CRM_ID CONTACT_42
            SET VARIABLE PBXLINK_CALLERID_STATUS cache
            -- Done in 0ns"#]],
    )
    .await;
    assert_eq!(crm.asked.load(Ordering::SeqCst), 1);
    check_session(
        &router,
        "route",
        "unknown",
        expect![[r#"
            SET VARIABLE PBXLINK_TARGET 600
            SET VARIABLE PBXLINK_ROUTE_STATUS fallback
            -- Done in 0ns"#]],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn slow_crm_gives_the_fallback_within_budget_and_fills_the_cache_later() {
    let crm = FakeCrm::new(5_000, manager("202"));
    let router = crm_router(&crm);
    let started = Instant::now();
    check_session(
        &router,
        "route",
        "15551234567",
        expect![[r#"
            SET VARIABLE PBXLINK_TARGET 600
            SET VARIABLE PBXLINK_ROUTE_STATUS timeout
            -- Done in 300ms"#]],
    )
    .await;
    assert!(started.elapsed() <= BUDGET + Duration::from_millis(20));
    // The late answer lands in the cache, so the caller's next call is routed right away.
    tokio::time::sleep(Duration::from_secs(5)).await;
    check_session(
        &router,
        "route",
        "15551234567",
        expect![[r#"
            SET VARIABLE PBXLINK_TARGET 202
            SET VARIABLE PBXLINK_CALLER_NAME "Jane \"JJ\" Caller, Acme Ltd"
            SET VARIABLE PBXLINK_CRM_ID CONTACT_42
            SET VARIABLE PBXLINK_ROUTE_STATUS cache
            -- Done in 0ns"#]],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn garbage_or_failing_crm_gives_error_and_the_fallback() {
    for answer in [
        manager("202\nEXEC Dial evil"),
        manager(""),
        Err(CrmError::Permanent("answer is not JSON".into())),
        Err(CrmError::Retriable("HTTP 503".into())),
    ] {
        let crm = FakeCrm::new(10, answer);
        check_session(
            &crm_router(&crm),
            "route",
            "15551234567",
            expect![[r#"
                SET VARIABLE PBXLINK_TARGET 600
                SET VARIABLE PBXLINK_ROUTE_STATUS error
                -- Done in 10ms"#]],
        )
        .await;
        check_session(
            &crm_router(&crm),
            "callerid",
            "15551234567",
            expect![[r#"
                SET VARIABLE PBXLINK_CALLERID_STATUS error
                -- Done in 10ms"#]],
        )
        .await;
    }
}

#[tokio::test(start_paused = true)]
async fn unknown_script_and_rejected_command_are_reported_to_the_dialplan() {
    let router = Router::default().route(
        "static",
        Static {
            variables: [("A".to_owned(), "1".to_owned())].into(),
        },
    );
    check_session(
        &router,
        "nope?x=1",
        "1",
        expect![[r#"
            VERBOSE "pbxlink FastAGI nope: unknown FastAGI script 'nope' (this server has: static)" 1
            SET VARIABLE PBXLINK_AGI_ERROR "unknown FastAGI script 'nope' (this server has: static)"
            -- Failed(Handler("unknown FastAGI script 'nope' (this server has: static)")) in 0ns"#]],
    )
    .await;
    let (sent, outcome) = play(
        &router,
        &env("static", "1"),
        &["520-Invalid command syntax.  Proper usage follows:\n Usage: SET VARIABLE\n520 End of proper usage.\n"],
    )
    .await;
    expect![[r#"
        SET VARIABLE A 1
        VERBOSE "pbxlink FastAGI static: Asterisk rejected `SET VARIABLE A 1`: 520 Invalid command syntax.  Proper usage follows:  Usage: SET VARIABLE End of proper usage." 1
        SET VARIABLE PBXLINK_AGI_ERROR "Asterisk rejected `SET VARIABLE A 1`: 520 Invalid command syntax.  Proper usage follows:  Usage: SET VARIABLE End of proper usage."
    "#]]
    .assert_eq(&sent);
    assert!(matches!(
        outcome,
        Outcome::Failed(AgiError::Rejected { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn hangup_mid_session_frees_the_session() {
    let router = crm_router(&FakeCrm::new(0, manager("202")));
    // Asterisk closes the socket while a reply is awaited.
    let (ours, theirs) = tokio::io::duplex(4096);
    let hang_up = async {
        let mut reader = BufReader::new(theirs);
        reader
            .get_mut()
            .write_all(env("route", "15551234567").as_bytes())
            .await
            .unwrap();
        let mut first = String::new();
        reader.read_line(&mut first).await.unwrap();
        drop(reader);
        first
    };
    let (outcome, first) = tokio::join!(serve_connection(ours, &router, LIMITS), hang_up);
    assert_eq!(first, "SET VARIABLE PBXLINK_TARGET 202\n");
    assert!(matches!(outcome, Outcome::Closed), "{outcome:?}");

    // HANGUP, then 511 for the next command: the handler stops, no error report.
    let (sent, outcome) = play(
        &router,
        &env("route", "15551234567"),
        &[
            "HANGUP\n200 result=1\n",
            "511 Command Not Permitted on a dead channel or intercept routine\n",
        ],
    )
    .await;
    expect![[r#"
        SET VARIABLE PBXLINK_TARGET 202
        SET VARIABLE PBXLINK_CALLER_NAME "Jane \"JJ\" Caller, Acme Ltd"
    "#]]
    .assert_eq(&sent);
    assert!(matches!(outcome, Outcome::Closed), "{outcome:?}");
}

#[tokio::test(start_paused = true)]
async fn silent_asterisk_hits_the_session_timeout() {
    let router = crm_router(&FakeCrm::new(0, manager("202")));
    let (ours, mut theirs) = tokio::io::duplex(4096);
    theirs.write_all(b"agi_network: yes\n").await.unwrap();
    let started = Instant::now();
    let outcome = serve_connection(ours, &router, LIMITS).await;
    assert!(matches!(outcome, Outcome::TimedOut), "{outcome:?}");
    assert_eq!(started.elapsed(), LIMITS.session_timeout);
}

/// A handler that waits for the test to let it finish.
struct Gate(Arc<tokio::sync::Notify>);

impl Handler for Gate {
    fn handle<'a>(&'a self, _: &'a mut Agi) -> BoxFuture<'a, Result<(), AgiError>> {
        async move {
            self.0.notified().await;
            Ok(())
        }
        .boxed()
    }
}

/// Reads a connection to its end: what the server sent before closing.
async fn session_over_tcp(addr: std::net::SocketAddr, script: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(env(script, "1").as_bytes()).await.unwrap();
    asterisk_tcp(stream).await
}

async fn asterisk_tcp(stream: tokio::net::TcpStream) -> String {
    let mut reader = BufReader::new(stream);
    let mut transcript = String::new();
    let mut line = String::new();
    while reader.read_line(&mut line).await.unwrap_or(0) > 0 {
        transcript.push_str(&line);
        line.clear();
        let _ = reader.get_mut().write_all(b"200 result=1\n").await;
    }
    transcript
}

/// Waits (with no time limit of its own) until `cond` holds.
async fn until(cond: impl Fn() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn tcp_server_limits_connections_and_drains_on_shutdown() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let router = Router::default().route("wait", Gate(gate.clone())).route(
        "static",
        Static {
            variables: [("A".to_owned(), "1".to_owned())].into(),
        },
    );
    let server = Server::new(
        router,
        Limits {
            max_connections: 1,
            session_timeout: Duration::from_secs(30),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener, async { drop(stopped.await) }).await }
    });

    let waiting = tokio::spawn(session_over_tcp(addr, "wait"));
    until(|| server.active_sessions() == 1).await;
    // Over the limit: closed at once, nothing sent.
    assert_eq!(session_over_tcp(addr, "static").await, "");

    // Shutdown waits for the running session.
    stop.send(()).unwrap();
    gate.notify_one();
    assert_eq!(waiting.await.unwrap(), "");
    serving.await.unwrap();
    assert_eq!(server.active_sessions(), 0);
}

#[tokio::test]
async fn tcp_hangup_frees_the_slot() {
    let server = Server::new(
        crm_router(&FakeCrm::new(0, manager("202"))),
        Limits {
            max_connections: 1,
            session_timeout: Duration::from_secs(30),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener, std::future::pending()).await }
    });
    // Asterisk hangs up after the first command.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(env("route", "15551234567").as_bytes())
        .await
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    assert_eq!(server.active_sessions(), 1);
    drop(reader);
    until(|| server.active_sessions() == 0).await;
    // The slot serves the next call in full.
    expect![[r#"
        SET VARIABLE PBXLINK_TARGET 202
        SET VARIABLE PBXLINK_CALLER_NAME "Jane \"JJ\" Caller, Acme Ltd"
        SET VARIABLE PBXLINK_CRM_ID CONTACT_42
        SET VARIABLE PBXLINK_ROUTE_STATUS ok
    "#]]
    .assert_eq(&session_over_tcp(addr, "route").await);
}

fn check_json(body: &str, expect: Expect) {
    let out = match variables_from_json(body.as_bytes()) {
        Ok(vars) => vars
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => format!("error: {e}"),
    };
    expect.assert_eq(&out);
}

#[test]
fn webhook_answers_to_variables() {
    check_json(
        r#"{"app": "Dial", "num": 202, "time": "20", "vip": true, "note": null, "tags": ["a"]}"#,
        expect![[
            r#"PBXLINK_APP=Dial PBXLINK_NOTE= PBXLINK_NUM=202 PBXLINK_TAGS=["a"] PBXLINK_TIME=20 PBXLINK_VIP=true"#
        ]],
    );
    check_json(
        r#"{"name": "two\nlines"}"#,
        expect!["PBXLINK_NAME=two lines"],
    );
    check_json(
        "<html>502 Bad Gateway</html>",
        expect![[
            r#"error: answer is not JSON (expected value at line 1 column 1): "<html>502 Bad Gateway</html>""#
        ]],
    );
    check_json("[1]", expect!["error: answer is not a JSON object: [1]"]);
    check_json(
        r#"{"bad key": 1}"#,
        expect![[r#"error: answer key "bad key" is not a variable name"#]],
    );
}

/// A local HTTP endpoint answering every POST with `body`; returns its URL.
async fn webhook_endpoint(body: &'static str) -> String {
    let app = axum::Router::new().route("/agi", axum::routing::post(move || async move { body }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/agi")
}

#[tokio::test]
async fn webhook_posts_the_environment_and_maps_the_answer() {
    for (body, expect) in [
        (
            r#"{"app": "Dial", "num": "202", "time": 20}"#,
            expect![[r#"
                SET VARIABLE PBXLINK_APP Dial
                SET VARIABLE PBXLINK_NUM 202
                SET VARIABLE PBXLINK_TIME 20
                SET VARIABLE PBXLINK_WEBHOOK_STATUS ok
            "#]],
        ),
        (
            "garbage",
            expect![[r#"
                SET VARIABLE PBXLINK_TARGET 600
                SET VARIABLE PBXLINK_WEBHOOK_STATUS error
            "#]],
        ),
    ] {
        let router = Router::default().route(
            "webhook",
            Webhook {
                client: reqwest::Client::new(),
                url: webhook_endpoint(body).await,
                budget: Duration::from_secs(5),
                fallback_target: "600".into(),
            },
        );
        let (sent, outcome) = play(&router, &env("webhook", "15551234567"), &[]).await;
        expect.assert_eq(&sent);
        assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
    }
}

/// A fake CRM behind `[agi] lookup`: answers caller.lookup POSTs per number (`15550000001`
/// garbage, `15550000002` never), recording each request's signature header and body.
async fn lookup_endpoint(seen: Arc<std::sync::Mutex<Vec<String>>>) -> String {
    let answer = move |headers: axum::http::HeaderMap, body: String| async move {
        let signed = headers.contains_key("webhook-signature");
        seen.lock().unwrap().push(format!("signed={signed} {body}"));
        let number = serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"]["number"]
            .as_str()
            .unwrap()
            .to_owned();
        match number.as_str() {
            "15550000001" => "<html>502 Bad Gateway</html>".to_owned(),
            "15550000002" => std::future::pending().await,
            _ => r#"{"name": "Acme Ltd", "crm_id": 42, "responsible_extension": "202"}"#.to_owned(),
        }
    };
    let app = axum::Router::new().route("/lookup", axum::routing::post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/lookup")
}

/// The FastAGI router a config file describes, with its `[[crm]]` connectors built.
fn configured_router(toml: &str) -> anyhow::Result<Router> {
    let config = crate::config::Config::parse(toml, "test.toml")?;
    let crms = config
        .crm
        .iter()
        .map(delivery::outbox::Crm::from_config)
        .collect::<anyhow::Result<Vec<_>>>()?;
    super::cli::router(config.agi.as_ref().unwrap(), &crms)
}

fn lookup_config(url: &str) -> String {
    format!(
        "[agi]\nlookup = \"hooks\"\nbudget_ms = 300\nfallback_target = \"600\"\n\
         [[crm]]\nkind = \"webhook\"\nname = \"hooks\"\nurl = \"{url}/events\"\n\
         secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\nlookup_url = \"{url}\"\n"
    )
}

#[tokio::test]
async fn route_and_callerid_ask_the_configured_crm_over_http() {
    let seen = Arc::default();
    let router =
        configured_router(&lookup_config(&lookup_endpoint(Arc::clone(&seen)).await)).unwrap();
    let mut transcript = String::new();
    for (script, number) in [
        ("route", "15551234567"),
        ("callerid", "15551234567"),
        ("route", "15550000001"),
        ("callerid", "15550000002"),
    ] {
        let (sent, outcome) = play(&router, &env(script, number), &[]).await;
        transcript += &format!("{script} {number}:\n{sent}-- {outcome:?}\n");
    }
    expect![[r#"
        route 15551234567:
        SET VARIABLE PBXLINK_TARGET 202
        SET VARIABLE PBXLINK_CALLER_NAME "Acme Ltd"
        SET VARIABLE PBXLINK_CRM_ID 42
        SET VARIABLE PBXLINK_ROUTE_STATUS ok
        -- Done
        callerid 15551234567:
        SET VARIABLE CALLERID(name) "Acme Ltd"
        SET VARIABLE PBXLINK_CRM_ID 42
        SET VARIABLE PBXLINK_CALLERID_STATUS cache
        -- Done
        route 15550000001:
        SET VARIABLE PBXLINK_TARGET 600
        SET VARIABLE PBXLINK_ROUTE_STATUS error
        -- Done
        callerid 15550000002:
        SET VARIABLE PBXLINK_CALLERID_STATUS timeout
        -- Done
    "#]]
    .assert_eq(&transcript);
    // The cached caller was asked once; every question was signed.
    expect![[r#"
        signed=true {"data":{"number":"15551234567"},"timestamp":"<t>","type":"caller.lookup"}
        signed=true {"data":{"number":"15550000001"},"timestamp":"<t>","type":"caller.lookup"}
        signed=true {"data":{"number":"15550000002"},"timestamp":"<t>","type":"caller.lookup"}
    "#]]
    .assert_eq(
        &seen
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                let at = line.find("\"timestamp\":\"").unwrap() + 13;
                let end = at + line[at..].find('"').unwrap();
                format!("{}<t>{}\n", &line[..at], &line[end..])
            })
            .collect::<String>(),
    );
}

#[tokio::test(start_paused = true)]
async fn crm_over_http_slower_than_budget_gives_the_fallback_within_budget() {
    let router = configured_router(&lookup_config(&lookup_endpoint(Arc::default()).await)).unwrap();
    check_session(
        &router,
        "route",
        "15550000002",
        expect![[r#"
            SET VARIABLE PBXLINK_TARGET 600
            SET VARIABLE PBXLINK_ROUTE_STATUS timeout
            -- Done in 300ms"#]],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn webhook_slower_than_budget_gives_the_fallback_within_budget() {
    let app = axum::Router::new().route(
        "/agi",
        axum::routing::post(std::future::pending::<&'static str>),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let toml = format!(
        "[agi]\nbudget_ms = 300\nfallback_target = \"600\"\nwebhook_url = \"http://{addr}/agi\"\n"
    );
    check_session(
        &configured_router(&toml).unwrap(),
        "webhook",
        "15551234567",
        expect![[r#"
            SET VARIABLE PBXLINK_TARGET 600
            SET VARIABLE PBXLINK_WEBHOOK_STATUS timeout
            -- Done in 300ms"#]],
    )
    .await;
}

#[test]
fn lookup_must_name_a_crm_that_can_look_up() {
    let url = "http://127.0.0.1:9/lookup";
    let errors: Vec<String> = [
        lookup_config(url).replace("lookup = \"hooks\"", "lookup = \"nope\""),
        lookup_config(url).replace("lookup_url = ", "# lookup_url = "),
    ]
    .iter()
    .map(|toml| format!("{:#}", configured_router(toml).unwrap_err()))
    .collect();
    expect![[r#"
        test.toml:2:10: [agi] lookup: no [[crm]] is named 'nope'
        [agi] lookup: crm 'hooks' does no caller lookups (a webhook needs lookup_url)"#]]
    .assert_eq(&errors.join("\n"));
}
