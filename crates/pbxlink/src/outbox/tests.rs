//! Outbox end to end: planned rows saved with their calls, workers, and a fake Bitrix24.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use calls::{CallEvent, CallRecord, TrackerConfig};
use serde_json::{json, Value};
use store::{OutboxStatus, Store};

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

use super::fake_bitrix24::{self, FakeBitrix24, OAuthState};

fn bitrix24(url: &str) -> Crm {
    bitrix24_with(url, 1000.0, "")
}

/// A Bitrix24 connector to the fake at `url`, `rate` requests a second, more config `extra`.
fn bitrix24_with(url: &str, rate: f64, extra: &str) -> Crm {
    let config: CrmConfig = toml::from_str(&format!(
        r#"
        kind = "bitrix24"
        name = "b24"
        webhook_url = "{url}/rest/1/code"
        utc_offset = "+03:00"
        default_extension = "201"
        record_url_base = "https://pbx.example/rec"
        users = {{ "201" = 11, "202" = 12, "203" = 13, "204" = 14, "205" = 15 }}
        rate_per_second = {rate}
        {extra}
        "#
    ))
    .unwrap();
    Crm::from_config(&config).unwrap()
}

fn fast_workers(owner: &str) -> WorkerConfig {
    WorkerConfig {
        idle: Duration::from_millis(20),
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(200),
        ..WorkerConfig::new(owner)
    }
}

async fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("pbxlink.db").display()
    );
    (dir, Store::connect(&url).await.unwrap())
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

/// Waits until every row of `records` is delivered (a hang guard, not a timing assert).
async fn until_delivered(store: &Store, records: &[CallRecord]) {
    for _ in 0..6000 {
        let mut open = 0;
        for record in records {
            let rows = store.outbox_for_call("pbx1", &record.id).await.unwrap();
            let dead: Vec<_> = rows
                .iter()
                .filter(|r| r.status == OutboxStatus::Dead)
                .collect();
            assert!(dead.is_empty(), "dead letters: {dead:?}");
            open += rows
                .iter()
                .filter(|r| r.status != OutboxStatus::Delivered)
                .count();
        }
        if open == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("outbox rows still open after 5 minutes");
}

/// The fake's log as one line per Bitrix24 call: `linkedid: method(USER_ID/STATUS) ...`.
fn per_call(fake: &FakeBitrix24) -> BTreeMap<String, Vec<String>> {
    let mut calls: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (method, params) in &fake.log {
        let step = method.trim_start_matches("telephony.externalcall.");
        let detail = match step {
            "register" => format!("{}", params["USER_PHONE_INNER"]),
            "finish" => format!("{} {}", params["USER_ID"], params["STATUS_CODE"]),
            "attachRecord" => format!("{}", params["FILENAME"]),
            _ => format!("{}", params["USER_ID"]),
        };
        let id = params["CALL_ID"].as_str().unwrap_or_default();
        let key = if step == "register" {
            // The phone number and start date name the PBX call.
            format!("{} {}", params["PHONE_NUMBER"], params["CALL_START_DATE"])
        } else {
            let register = &fake.registered[id];
            format!(
                "{} {}",
                register["PHONE_NUMBER"], register["CALL_START_DATE"]
            )
        };
        calls
            .entry(key)
            .or_default()
            .push(format!("{step}({})", detail.replace('"', "")));
    }
    calls
}

/// A fixture set replayed through the tracker: live call events and finished calls, in the
/// order the tracker gave them.
enum Tracked {
    Event(CallEvent),
    Call(CallRecord),
}

fn fixture_calls(set: &str) -> Vec<Tracked> {
    let dir = Path::new(FIXTURES).join(set).join("ami");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixture directory {} is missing: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".rx.raw"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no transcripts in {}", dir.display());
    files
        .iter()
        .flat_map(|file| {
            let msgs = crate::replay::load(&std::fs::read(file).unwrap()).unwrap();
            crate::replay::replay(&msgs, TrackerConfig::default(), true)
        })
        .map(|line| {
            let value: Value = serde_json::from_str(&line).unwrap();
            if value.get("type").is_some() {
                Tracked::Event(serde_json::from_value(value).unwrap())
            } else {
                Tracked::Call(serde_json::from_value(value).unwrap())
            }
        })
        .collect()
}

/// Queues what the tracker gave as `run` does: live steps as events come, the rest with
/// each call; returns the finished calls.
async fn save_tracked(store: &Store, crm: &Crm, tracked: &[Tracked]) -> Vec<CallRecord> {
    let mut records = Vec::new();
    for item in tracked {
        match item {
            Tracked::Event(event) => {
                let rows = crm.plan_event("pbx1", event);
                let live = [(event.call_id.as_str(), &rows[..])];
                store
                    .save_journal("pbx1", &live, &[], chrono::Utc::now())
                    .await
                    .unwrap();
            }
            Tracked::Call(record) => {
                save(store, crm, std::slice::from_ref(record)).await;
                records.push(record.clone());
            }
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_calls_reach_bitrix24_live_as_the_documented_sequence() {
    let tracked = fixture_calls("asterisk-22-pjsip");
    let (fake, url) = fake_bitrix24::start(50.0, 2.0).await;
    // Bitrix24's own pace: 2 requests a second; batches carry the steps waiting together.
    let crm = bitrix24_with(&url, 2.0, r#"cards = { "203" = "answer" }"#);
    let (_dir, store) = temp_store().await;
    let records = save_tracked(&store, &crm, &tracked).await;
    spawn_workers(store.clone(), vec![crm], fast_workers("w1")).unwrap();
    until_delivered(&store, &records).await;
    let fake = fake.lock().unwrap();
    let lines: Vec<String> = per_call(&fake)
        .into_iter()
        .map(|(call, steps)| format!("{call}: {}", steps.join(" ")))
        .collect();
    expect_test::expect![[r#"
        "15551234567" "2026-11-23T01:54:30+03:00": register(201) show([11]) show([12]) hide([11]) finish(12 200) attachRecord(rg-600-15551234567-20261122-225430-1795388070.0.wav)
        "15551234567" "2026-11-23T01:55:02+03:00": register(201) show([12]) show([11]) hide([11]) finish(12 304) attachRecord(rg-601-15551234567-20261122-225502-1795388102.20.wav)
        "15551234567" "2026-11-23T01:55:45+03:00": register(201) show([11]) finish(11 304) attachRecord(external-201-15551234567-20261122-225545-1795388145.37.wav)
        "15551234567" "2026-11-23T01:56:05+03:00": register(201) show([11]) show([13]) hide([11]) finish(13 200) attachRecord(q-600-15551234567-20261122-225608-1795388165.41.wav)
        "15551234567" "2026-11-23T01:56:49+03:00": register(201) show([11]) finish(11 304) attachRecord(q-600-15551234567-20261122-225649-1795388209.55.wav)
        "15551234567" "2026-11-23T01:59:59+03:00": register(201) show([12]) show([13]) hide([12]) finish(13 200) attachRecord(external-202-15551234567-20261122-225959-1795388399.88.wav)
        "15551234567" "2026-11-23T02:00:31+03:00": register(201) finish(11 200) attachRecord(external-201-15551234567-20261122-230031-1795388431.94.wav)
        "15551234567" "2026-11-23T02:01:03+03:00": register(201) show([11]) finish(11 200) attachRecord(external-201-15551234567-20261122-230103-1795388463.102.wav)
        "15551234567" "2026-11-23T02:01:49+03:00": register(201) show([11]) finish(11 200) attachRecord(external-201-15551234567-20261122-230149-1795388509.109.wav)
        "15551234567" "2026-11-23T02:03:03+03:00": register(201) finish(11 200) attachRecord(conf-8000-15551234567-20261122-230304-1795388583.123.wav)
        "15557650000" "2026-11-23T01:58:26+03:00": register(201) finish(11 304) attachRecord(out-15557650000-201-20261122-225826-1795388306.80.wav)
        "15557654321" "2026-11-23T01:57:57+03:00": register(201) show([11]) finish(11 200) attachRecord(out-15557654321-201-20261122-225757-1795388277.76.wav)
        "15557654321" "2026-11-23T01:59:21+03:00": register(201) show([11]) finish(11 200) attachRecord(out-15557654321-201-20261122-225923-1795388361.84.wav)"#]].assert_eq(&lines.join("\n"));
    assert_eq!(fake.refused, 0, "batches kept within 2 requests a second");
    assert!(fake.batches > 0, "steps waiting together went in one batch");
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
    let unreachable = bitrix24("http://127.0.0.1:9").test(&http).await;
    assert!(
        matches!(unreachable, Err(crm::DeliveryError::Retriable { .. })),
        "{unreachable:?}"
    );
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
