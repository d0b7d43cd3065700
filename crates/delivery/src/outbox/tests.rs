//! Outbox end to end: planned rows saved with their calls, workers, and fake CRMs (Bitrix24,
//! amoCRM). The recorded fixture calls and Bitrix24's click-to-call go through the binary's
//! replay and portal: their tests are pbxlink's `delivery_tests`.

use std::time::Duration;

use calls::CallRecord;
use serde_json::{json, Value};
use store::Store;

use super::*;

use super::fake_amocrm;
use super::fake_bitrix24::{self, OAuthState};
use super::testing::{
    amocrm, bitrix24_with, fast_workers, per_call, settled, temp_store, until_delivered,
};

fn bitrix24(url: &str) -> Crm {
    bitrix24_with(url, 1000.0, "")
}

async fn save(store: &Store, crm: &Crm, records: &[CallRecord]) -> usize {
    let rows: Vec<_> = records.iter().map(|r| (r, crm.plan("pbx1", r))).collect();
    let refs: Vec<_> = rows.iter().map(|(r, rows)| (*r, rows.as_slice())).collect();
    store
        .save_calls("pbx1", &refs, chrono::Utc::now())
        .await
        .unwrap();
    rows.iter().map(|(_, rows)| rows.len()).sum()
}

fn synthetic(n: usize) -> CallRecord {
    let start = chrono::DateTime::from_timestamp(1_764_000_000 + 60 * n as i64, 0).unwrap();
    CallRecord {
        id: format!("1764000000.{n}"),
        direction: calls::Direction::Inbound,
        from: Some(format!("7916000{n:04}")),
        to: Some("74950000000".into()),
        caller_name: None,
        started_at: start,
        answered_at: Some(start + chrono::TimeDelta::seconds(5)),
        ended_at: start + chrono::TimeDelta::seconds(65),
        ring_seconds: 5,
        talk_seconds: 60,
        disposition: calls::Disposition::Answered,
        answered_by: Some("202".into()),
        rang: vec!["201".into(), "202".into()],
        transfers: Vec::new(),
        queue: None,
        recording: Some(format!("/rec/in-{n}.wav")),
        legs: Vec::new(),
        provenance: Default::default(),
        timeline: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_down_for_100_calls_then_up_delivers_each_step_once_in_call_order() {
    let records: Vec<_> = (0..100).map(synthetic).collect();
    let (fake, url) = fake_bitrix24::start(1e9, 1e9).await;
    fake.lock().unwrap().down = true;
    let crm = bitrix24(&url);
    let (_dir, store) = temp_store().await;
    let planned = save(&store, &crm, &records).await;
    spawn_workers(store.clone(), vec![crm], fast_workers("w1")).unwrap();
    while fake.lock().unwrap().refused < 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let mut fake = fake.lock().unwrap();
        fake.down = false;
        fake.expire_next = 5;
    }
    until_delivered(&store, &records).await;
    let fake = fake.lock().unwrap();
    assert_eq!(fake.log.len(), planned, "every step delivered exactly once");
    assert_eq!(fake.registered.len(), 100, "one Bitrix24 call per PBX call");
    let calls = per_call(&fake);
    assert_eq!(calls.len(), 100);
    // Keys sort by caller number, which is numbered like the calls.
    for (n, steps) in calls.values().enumerate() {
        assert_eq!(
            steps.join(" "),
            format!("register(202) finish(12 200) attachRecord(in-{n}.wav)")
        );
    }
}

#[tokio::test]
async fn crm_test_loads_the_user_map_and_reports_bitrix24_errors() {
    let (fake, url) = fake_bitrix24::start(50.0, 2.0).await;
    let crm = bitrix24(&url);
    let http = reqwest::Client::new();
    let answer = crm.test(&http).await;
    expect_test::expect![[r#"
        Ok(
            "user.get answered; 6 users have an inner phone",
        )
    "#]]
    .assert_debug_eq(&answer);
    fake.lock().unwrap().expire_next = 1;
    let answer = crm.test(&http).await;
    expect_test::expect![[r#"
        Err(
            Retriable {
                reason: "expired_token: The access token provided has expired.",
                retry_after: Some(
                    1s,
                ),
            },
        )
    "#]]
    .assert_debug_eq(&answer);
    // The webhook URL's path is its credential: errors (logged, kept as `last_error`) name
    // the server only.
    let unreachable = bitrix24("http://127.0.0.1:9").test(&http).await;
    expect_test::expect![[r#"
        Err(
            Retriable {
                reason: "http://127.0.0.1:9: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
                retry_after: None,
            },
        )
    "#]].assert_debug_eq(&unreachable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_delivery_loses_nothing_and_registers_nothing_twice() {
    let records: Vec<_> = (0..20).map(synthetic).collect();
    let (fake, url) = fake_bitrix24::start(1e9, 1e9).await;
    let crm = bitrix24(&url);
    let (_dir, store) = temp_store().await;
    let planned = save(&store, &crm, &records).await;
    // The first process claims every row, sends each call's register, and is killed before
    // it can record anything: its rows stay claimed until the lease runs out.
    let lease = chrono::TimeDelta::milliseconds(300);
    let claimed = store
        .claim_outbox("killed", 1000, lease, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(claimed.len(), planned);
    let http = reqwest::Client::new();
    for row in claimed.iter().filter(|row| row.kind == "register") {
        let request = crm
            .connector
            .next_request(&worker::outbox_item(row), chrono::Utc::now())
            .unwrap();
        worker::send(&http, &request, &row.idempotency_key)
            .await
            .unwrap();
    }
    // The restarted process (a fresh connector: no CALL_ID cache) takes over.
    spawn_workers(
        store.clone(),
        vec![bitrix24(&url)],
        fast_workers("restarted"),
    )
    .unwrap();
    until_delivered(&store, &records).await;
    let fake = fake.lock().unwrap();
    assert_eq!(fake.registered.len(), 20, "one Bitrix24 call per PBX call");
    for (n, steps) in per_call(&fake).values().enumerate() {
        assert_eq!(
            steps.join(" "),
            format!("register(202) register(202) finish(12 200) attachRecord(in-{n}.wav)")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens_that_expire_are_renewed_saved_and_survive_a_restart() {
    let records: Vec<_> = (0..20).map(synthetic).collect();
    let (fake, url) = fake_bitrix24::start(1e9, 1e9).await;
    fake.lock().unwrap().oauth = Some(OAuthState {
        client_id: "local.app.1".into(),
        client_secret: "app-secret".into(),
        access: "access-0".into(),
        refresh: "refresh-0".into(),
        lifetime: 2,
        used: 0,
        issued: 0,
    });
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("b24-tokens.json");
    let config: CrmConfig = toml::from_str(&format!(
        r#"
        kind = "bitrix24"
        name = "b24"
        utc_offset = "+03:00"
        users = {{ "201" = 11, "202" = 12 }}
        rate_per_second = 1000
        [oauth]
        endpoint = "{url}/rest/"
        client_id = "local.app.1"
        client_secret = "app-secret"
        token_url = "{url}/oauth/token/"
        token_file = "{}"
        access_token = "access-0"
        refresh_token = "refresh-0"
        "#,
        token_file.display()
    ))
    .unwrap();
    let crm = Crm::from_config(&config).unwrap();
    let (_db, store) = temp_store().await;
    let planned = save(&store, &crm, &records).await;
    spawn_workers(store.clone(), vec![crm], fast_workers("w1")).unwrap();
    until_delivered(&store, &records).await;
    let (issued, access, refresh) = {
        let fake = fake.lock().unwrap();
        assert_eq!(fake.log.len(), planned, "every step delivered exactly once");
        assert_eq!(fake.registered.len(), 20, "one Bitrix24 call per PBX call");
        let oauth = fake.oauth.clone().unwrap();
        (oauth.issued, oauth.access, oauth.refresh)
    };
    assert!(
        issued >= 2,
        "tokens expired and were renewed ({issued} pairs)"
    );
    let saved: Value = serde_json::from_slice(&std::fs::read(&token_file).unwrap()).unwrap();
    assert_eq!(saved["access_token"], json!(access));
    assert_eq!(
        saved["refresh_token"],
        json!(refresh),
        "the pair in use is on disk"
    );
    // A restart reads the file (the configured first pair is spent long ago).
    let restarted = Crm::from_config(&config).unwrap();
    let answer = restarted.test(&reqwest::Client::new()).await;
    assert!(answer.is_ok(), "{answer:?}");
}

#[tokio::test(start_paused = true)]
async fn every_page_of_users_is_read() {
    let (fake, url) = fake_bitrix24::start(1e9, 1e9).await;
    let users: Vec<Value> = (0..120)
        .map(|n| json!({"ID": (1000 + n).to_string(), "UF_PHONE_INNER": (300 + n).to_string()}))
        .collect();
    fake.lock().unwrap().users = json!(users);
    let crm = bitrix24(&url);
    crm.test(&reqwest::Client::new()).await.unwrap();
    let map = crm.bitrix24().unwrap().portal.users();
    assert_eq!(
        [
            map.user("300"),
            map.user("349"),
            map.user("350"),
            map.user("419")
        ],
        [Some(1000), Some(1049), Some(1050), Some(1119)],
        "users past the first page of 50"
    );
}

#[tokio::test]
async fn a_failed_user_reload_keeps_the_map_it_had() {
    let (fake, url) = fake_bitrix24::start(1e9, 1e9).await;
    let crm = bitrix24(&url);
    let http = reqwest::Client::new();
    let users = || crm.bitrix24().unwrap().portal.users();
    crm.test(&http).await.unwrap();
    let loaded = users();
    assert_eq!(loaded.user("206"), Some(16), "user.get added its users");
    fake.lock().unwrap().down = true;
    let down = crm.test(&http).await;
    {
        let mut fake = fake.lock().unwrap();
        fake.down = false;
        fake.users = json!({"unexpected": "shape"});
    }
    let garbled = crm.test(&http).await;
    expect_test::expect![[r#"
        [
            Err(
                Retriable {
                    reason: "INTERNAL_SERVER_ERROR: Service unavailable",
                    retry_after: Some(
                        1s,
                    ),
                },
            ),
            Err(
                Permanent {
                    reason: "user.get: the result is not a user list",
                },
            ),
        ]
    "#]]
    .assert_debug_eq(&[down, garbled]);
    assert_eq!(users(), loaded, "both failures kept the map");
    fake.lock().unwrap().users = json!([{"ID": "18", "UF_PHONE_INNER": "207"}]);
    crm.test(&http).await.unwrap();
    let reloaded = users();
    assert_eq!(
        [
            reloaded.user("207"),
            reloaded.user("206"),
            reloaded.user("205")
        ],
        [Some(18), None, Some(15)],
        "a reload replaces what user.get gave before and keeps the configured users"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_slower_than_the_http_timeout_is_retried_and_the_step_delivered_once() {
    let records = [synthetic(0)];
    let (fake, url) = fake_bitrix24::start(1e9, 1e9).await;
    {
        let mut fake = fake.lock().unwrap();
        fake.slow_next = 1;
        // Far past the workers' timeout: pbxlink gives up on that request long before.
        fake.slow = Duration::from_secs(600);
    }
    let crm = bitrix24(&url);
    let (_dir, store) = temp_store().await;
    save(&store, &crm, &records).await;
    let workers = WorkerConfig {
        http_timeout: Duration::from_secs(2),
        ..fast_workers("w1")
    };
    spawn_workers(store.clone(), vec![crm], workers).unwrap();
    until_delivered(&store, &records).await;
    let rows = store.outbox_for_call("pbx1", &records[0].id).await.unwrap();
    assert_eq!(
        (rows[0].kind.as_str(), rows[0].attempts),
        ("register", 2),
        "the request that timed out was tried again"
    );
    let fake = fake.lock().unwrap();
    assert_eq!(fake.slowed, 1);
    let steps: Vec<String> = per_call(&fake).into_values().map(|s| s.join(" ")).collect();
    assert_eq!(
        steps,
        ["register(202) finish(12 200) attachRecord(in-0.wav)"],
        "each step reached Bitrix24 once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amocrm_refusing_the_token_is_a_dead_letter_and_crm_test_says_why() {
    let (fake, url) = fake_amocrm::start("long-lived-token").await;
    let http = reqwest::Client::new();
    let revoked = amocrm(&url, "revoked");
    let answers = [
        amocrm(&url, "long-lived-token").test(&http).await,
        revoked.test(&http).await,
    ];
    expect_test::expect![[r#"
        [
            Ok(
                "account \"Acme\" (id 28805383, subdomain acme) answered",
            ),
            Err(
                Permanent {
                    reason: "token rejected (HTTP 401): check the long-lived token and the account URL: {\"detail\":\"Invalid token\",\"status\":401,\"title\":\"Unauthorized\",\"type\":\"https://httpstatus.es/401\"}",
                },
            ),
        ]
    "#]].assert_debug_eq(&answers);
    // Retrying cannot help until someone fixes the config: the delivery dies at once.
    let records = [synthetic(0)];
    let (_dir, store) = temp_store().await;
    save(&store, &revoked, &records).await;
    spawn_workers(store.clone(), vec![revoked], fast_workers("w1")).unwrap();
    let rows: Vec<String> = settled(&store, &records)
        .await
        .iter()
        .map(|r| {
            format!(
                "{} {:?} after {}: {}",
                r.kind,
                r.status,
                r.attempts,
                r.last_error.as_deref().unwrap_or_default()
            )
        })
        .collect();
    expect_test::expect![[r#"call Dead after 1: permanent: token rejected (HTTP 401): check the long-lived token and the account URL: {"detail":"Invalid token","status":401,"title":"Unauthorized","type":"https://httpstatus.es/401"}"#]].assert_eq(&rows.join("\n"));
    let accepted: Vec<String> = fake
        .lock()
        .unwrap()
        .log
        .iter()
        .map(|(_, path, _)| path.clone())
        .collect();
    assert_eq!(
        accepted,
        ["/api/v4/account"],
        "only the good token's check got through"
    );
}

#[test]
fn amocrm_config_mistakes_are_named() {
    let errors: Vec<String> = [
        "url = \"example.amocrm.ru\"\ntoken = \"t\"",
        "url = \"https://example.amocrm.ru\"",
        "url = \"https://example.amocrm.ru\"\ntoken_env = \"PBXLINK_TEST_NEVER_SET\"",
        "url = \"https://example.amocrm.ru\"\ntoken = \" \"",
    ]
    .iter()
    .map(|keys| {
        let config = format!("kind = \"amocrm\"\nname = \"amo\"\n{keys}");
        let config: CrmConfig = toml::from_str(&config).unwrap();
        format!("{:#}", Crm::from_config(&config).unwrap_err())
    })
    .collect();
    expect_test::expect![[r#"
        crm amo: url "example.amocrm.ru" is not the account's address, e.g. https://example.amocrm.ru
        crm amo: set token or token_env
        crm amo: $PBXLINK_TEST_NEVER_SET is not set: environment variable not found
        crm amo: the token is empty"#]].assert_eq(&errors.join("\n"));
}
