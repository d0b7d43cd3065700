//! The API's operational side against the real binary: what `/metrics` shows of the AMI link,
//! the calls and the CRM outbox; tokens made and revoked with `pbxlink token`; and no secret
//! of the config, of a sign-in or of a request ever reaching the log.

mod gateway;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use expect_test::expect;
use gateway::{AmiServer, Gateway};

const TOKEN: &str = "ops-test-admin-token-5b1f0c";

/// A recorded Asterisk 22 call (ring group, answered), served by `pbxlink ami serve`.
fn transcript() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/asterisk-22-pjsip/ami/01_rg_answered.rx.raw")
}

/// Nothing listens on port 1 of loopback: every delivery there fails (retriably).
const UNREACHABLE: &str = "http://127.0.0.1:1";

/// A webhook receiver on loopback that accepts everything; returns its URL.
async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// `pbxlink ARGS` in `dir` (whose `./data` is the gateway's database).
fn pbxlink(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pbxlink"))
        .args(args)
        .current_dir(dir)
        .env_remove("PBXLINK_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of the Prometheus sample `name` whose labels include `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            let labelled = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ((rest.is_empty() || rest.starts_with('{')) && labelled)
                .then(|| value.parse().ok())
                .flatten()
        })
}

#[tokio::test]
async fn metrics_show_the_ami_link_calls_and_each_connectors_outbox() {
    let ami = AmiServer::start(&transcript(), "127.0.0.1:0", &[]);
    let config = format!(
        "{}\n[[crm]]\nkind = \"webhook\"\nname = \"erp\"\nurl = \"{}\"\n\n\
         [[crm]]\nkind = \"webhook\"\nname = \"down\"\nurl = \"{UNREACHABLE}/hook\"\n",
        ami.pbx_config("office"),
        receiver().await
    );
    let gw = Gateway::start_with(TOKEN, Some(&config));
    let http = reqwest::Client::new();
    let scrape = async || {
        http.get(format!("{}/metrics", gw.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // Until the recorded call has ended, reached `erp`, failed at `down`, and the gauges (read
    // from the database every 10 s) count `down`'s rows as waiting.
    let deadline = Instant::now() + Duration::from_secs(120);
    let text = loop {
        let text = scrape().await;
        let down = |name, extra: &[(&str, &str)]| {
            let labels = [&[("crm", "down")], extra].concat();
            sample(&text, name, &labels).unwrap_or(0.0)
        };
        let waiting = down("pbxlink_outbox_rows", &[("state", "pending")])
            + down("pbxlink_outbox_rows", &[("state", "in_flight")]);
        let done = sample(&text, "pbxlink_ami_connected", &[("pbx", "office")]) == Some(1.0)
            && sample(&text, "pbxlink_ami_events_total", &[("pbx", "office")]) > Some(0.0)
            && sample(&text, "pbxlink_outbox_delivered_total", &[("crm", "erp")]) >= Some(1.0)
            && down(
                "pbxlink_outbox_delivery_errors_total",
                &[("kind", "retriable")],
            ) >= 1.0
            && waiting >= 1.0;
        if done {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never got there:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut names: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("pbxlink_"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    names.sort();
    names.dedup();
    expect![[r#"
        pbxlink_active_calls
        pbxlink_ami_connected
        pbxlink_ami_events_total
        pbxlink_calls_journaled_total
        pbxlink_journal_errors_total
        pbxlink_outbox_delivered_total
        pbxlink_outbox_delivery_errors_total
        pbxlink_outbox_rows
        pbxlink_raw_events_dropped_total"#]]
    .assert_eq(&names.join("\n"));
    // Every connector has every series from the start, even those still at 0.
    let mut outbox: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("pbxlink_outbox_"))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series))
        .collect();
    outbox.sort();
    expect![[r#"
        pbxlink_outbox_delivered_total{crm="down"}
        pbxlink_outbox_delivered_total{crm="erp"}
        pbxlink_outbox_delivery_errors_total{crm="down",kind="permanent"}
        pbxlink_outbox_delivery_errors_total{crm="down",kind="retriable"}
        pbxlink_outbox_delivery_errors_total{crm="erp",kind="permanent"}
        pbxlink_outbox_delivery_errors_total{crm="erp",kind="retriable"}
        pbxlink_outbox_rows{crm="down",state="dead"}
        pbxlink_outbox_rows{crm="down",state="in_flight"}
        pbxlink_outbox_rows{crm="down",state="pending"}
        pbxlink_outbox_rows{crm="erp",state="dead"}
        pbxlink_outbox_rows{crm="erp",state="in_flight"}
        pbxlink_outbox_rows{crm="erp",state="pending"}"#]]
    .assert_eq(&outbox.join("\n"));
}

/// `pbxlink token list` with the creation times left out.
fn token_list(dir: &Path) -> String {
    let listed = stdout_of(&pbxlink(dir, &["token", "list"], &[]));
    listed
        .lines()
        .map(|line| {
            let columns: Vec<&str> = line.split('\t').collect();
            let state = columns[4].split(' ').next().unwrap_or_default();
            format!("{} {} {} {state}", columns[0], columns[1], columns[3])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_token_made_with_the_cli_works_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), TOKEN, None);
    let created = stdout_of(&pbxlink(
        dir.path(),
        &["token", "create", "--name", "grafana", "--scope", "read"],
        &[],
    ));
    let field = |name: &str| {
        created
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {created}"))
            .to_owned()
    };
    let (id, token) = (field("id:"), field("token:"));
    assert!(token.starts_with("pbxl_"), "{created}");

    let http = reqwest::Client::new();
    let status = async |method: reqwest::Method, path: &str| {
        http.request(method, format!("{}{path}", gw.base))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "extension": "201", "number": "15550001111" }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let mut shown = vec![format!(
        "read: calls {} metrics {}; place a call {}",
        status(reqwest::Method::GET, "/api/v1/calls").await,
        status(reqwest::Method::GET, "/metrics").await,
        status(reqwest::Method::POST, "/api/v1/calls").await,
    )];
    shown.push(token_list(dir.path()).replace(&id, "ID"));
    let revoked = stdout_of(&pbxlink(dir.path(), &["token", "revoke", &id], &[]));
    shown.push(revoked.trim().replace(&id, "ID"));
    shown.push(format!(
        "revoked: calls {} metrics {}",
        status(reqwest::Method::GET, "/api/v1/calls").await,
        status(reqwest::Method::GET, "/metrics").await,
    ));
    shown.push(token_list(dir.path()).replace(&id, "ID"));
    let again = pbxlink(dir.path(), &["token", "revoke", &id], &[]);
    shown.push(format!(
        "revoke again: {:?} {}",
        again.status.code(),
        String::from_utf8_lossy(&again.stderr)
            .trim()
            .replace(&id, "ID")
    ));
    expect![[r#"
        read: calls 200 metrics 200; place a call 403
        ID read grafana active
        revoked ID
        revoked: calls 401 metrics 401
        ID read grafana revoked
        revoke again: Some(1) Error: no active token "ID""#]]
    .assert_eq(&shown.join("\n"));
}

/// Secrets the gateway is given, and where: none may show up in its log.
const AMI_SECRET: &str = "replay-secret"; // `AmiServer`'s
const B24_WEBHOOK_CODE: &str = "b24hook7c1d9e2f";
const B24_APP_TOKEN: &str = "b24app0a9b8c7d";
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PASSWORD: &str = "olga-pass-3e9f1a";

#[tokio::test]
async fn no_secret_reaches_the_log() {
    let ami = AmiServer::start(&transcript(), "127.0.0.1:0", &[]);
    // The CRMs cannot be reached: their failures are logged, with URLs, on the error path.
    let config = format!(
        "[log]\nlevel = \"debug\"\n\n{}\n\
         [[crm]]\nkind = \"bitrix24\"\nname = \"b24\"\n\
         webhook_url = \"{UNREACHABLE}/rest/1/{B24_WEBHOOK_CODE}/\"\n\
         application_token = \"{B24_APP_TOKEN}\"\n\n\
         [[crm]]\nkind = \"webhook\"\nname = \"erp\"\nurl = \"{UNREACHABLE}/hook\"\n\
         secrets = [\"{WEBHOOK_SECRET}\"]\n",
        ami.pbx_config("office")
    );
    assert!(config.contains(AMI_SECRET), "{config}");
    let dir = tempfile::tempdir().unwrap();
    // The gateway's database, made by the CLI before the gateway starts.
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let added = pbxlink(
        dir.path(),
        &[
            "user",
            "add",
            "olga",
            "--scope",
            "admin",
            "--extension",
            "201",
        ],
        &[("PBXLINK_USER_PASSWORD", PASSWORD)],
    );
    stdout_of(&added);
    let gw = Gateway::start_in(dir.path(), TOKEN, Some(&config));
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", gw.base);

    let login = async |password: &str| {
        http.post(api("/api/v1/login"))
            .json(&serde_json::json!({ "user": "olga", "password": password }))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(login("not-her-password").await.status(), 401);
    let session: serde_json::Value = login(PASSWORD).await.json().await.unwrap();
    let session = session["token"].as_str().unwrap().to_owned();
    for token in [TOKEN, &session] {
        for path in [
            "/api/v1/calls",
            "/api/v1/settings",
            "/api/v1/outbox",
            "/metrics",
        ] {
            let resp = http.get(api(path)).bearer_auth(token).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
        }
    }
    // The stream's token may come in the query (EventSource); a wrong one is refused.
    let stream = http
        .get(api(&format!(
            "/api/v1/events?user=olga&access_token={session}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    drop(stream);
    let wrong = http
        .get(api("/api/v1/calls"))
        .bearer_auth(format!("{TOKEN}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // The recorded call ends, is journaled and fails at both CRMs at least once.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let outbox: serde_json::Value = http
            .get(api("/api/v1/outbox?state=pending"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let failed = |crm: &str| {
            outbox["rows"]
                .as_array()
                .unwrap()
                .iter()
                .any(|row| row["crm"] == crm && row["last_error"].is_string())
        };
        if failed("b24") && failed("erp") {
            break;
        }
        assert!(Instant::now() < deadline, "no failed deliveries: {outbox}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let log = gw.log();
    assert!(log.len() > 10, "hardly any log: {log:#?}");
    let secrets = [
        AMI_SECRET,
        B24_WEBHOOK_CODE,
        B24_APP_TOKEN,
        WEBHOOK_SECRET,
        PASSWORD,
        TOKEN,
        &session,
    ];
    let leaks: Vec<(&str, &String)> = secrets
        .iter()
        .flat_map(|secret| {
            log.iter()
                .filter(move |line| line.contains(secret))
                .map(move |line| (*secret, line))
        })
        .collect();
    assert!(leaks.is_empty(), "secrets in the log: {leaks:#?}");
}
