//! What the tests of delivery (here and in crates above, with the `testing` feature) share:
//! connectors to the fake CRMs, fast workers, a throwaway store, and waiting for rows to
//! settle.

use std::collections::BTreeMap;
use std::time::Duration;

use calls::CallRecord;
use store::{OutboxStatus, Store};

use super::fake_bitrix24::FakeBitrix24;
use super::{Crm, CrmConfig, WorkerConfig};

/// A Bitrix24 connector to the fake at `url`, `rate` requests a second, more config `extra`.
pub fn bitrix24_with(url: &str, rate: f64, extra: &str) -> Crm {
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

/// Workers that poll and back off in milliseconds, so tests finish fast.
pub fn fast_workers(owner: &str) -> WorkerConfig {
    WorkerConfig {
        idle: Duration::from_millis(20),
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(200),
        ..WorkerConfig::new(owner)
    }
}

/// A fresh SQLite store in a directory dropped with the returned guard.
pub async fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("pbxlink.db").display()
    );
    (dir, Store::connect(&url).await.unwrap())
}

/// Waits until no row of `records` is open (a hang guard, not a timing assert): their rows.
pub async fn settled(store: &Store, records: &[CallRecord]) -> Vec<store::OutboxRow> {
    for _ in 0..6000 {
        let mut rows = Vec::new();
        for record in records {
            rows.extend(store.outbox_for_call("pbx1", &record.id).await.unwrap());
        }
        let done =
            |r: &store::OutboxRow| matches!(r.status, OutboxStatus::Delivered | OutboxStatus::Dead);
        if rows.iter().all(done) {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("outbox rows still open after 5 minutes");
}

/// Waits until every row of `records` is delivered.
pub async fn until_delivered(store: &Store, records: &[CallRecord]) {
    let rows = settled(store, records).await;
    let dead: Vec<_> = rows
        .iter()
        .filter(|r| r.status == OutboxStatus::Dead)
        .collect();
    assert!(dead.is_empty(), "dead letters: {dead:?}");
}

/// The fake's log as one line per Bitrix24 call: `linkedid: method(USER_ID/STATUS) ...`.
pub fn per_call(fake: &FakeBitrix24) -> BTreeMap<String, Vec<String>> {
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

/// The amoCRM connector for the fake at `url`, signed in with `token`.
pub fn amocrm(url: &str, token: &str) -> Crm {
    let config: CrmConfig = toml::from_str(&format!(
        r#"
        kind = "amocrm"
        name = "amo"
        url = "{url}"
        token = "{token}"
        users = {{ "201" = 501, "202" = 502, "203" = 503 }}
        default_extension = "201"
        record_url_base = "https://pbx.example/rec"
        unsorted = true
        pipeline_id = 77
        rate_per_second = 1000
        "#
    ))
    .unwrap();
    Crm::from_config(&config).unwrap()
}
