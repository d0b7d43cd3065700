//! `pbxlink run` with no config: the demo PBX, the journal, the API and click-to-call, end to end
//! through the real binary.

use std::time::Duration;

use serde_json::Value;

mod gateway;
use gateway::{eventually, Gateway};

const TOKEN: &str = "test-admin-token";

/// The journal's calls matching `query`.
async fn calls(gw: &Gateway, query: &str) -> Vec<Value> {
    gw.api(&format!("calls?{query}")).await["calls"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn demo_mode_journals_calls_and_click_to_call_is_answered() {
    let gw = Gateway::start(TOKEN);
    let http = reqwest::Client::new();

    // `ok` once the demo PBX's AMI link is up (`degraded` for the moment before).
    eventually(
        "the health check says ok",
        Duration::from_secs(10),
        async || {
            let health: Value = http
                .get(format!("{}/health", gw.base))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (health["status"] == "ok").then_some(())
        },
    )
    .await;

    let first = eventually(
        "a journaled demo call",
        Duration::from_secs(10),
        async || calls(&gw, "limit=5").await.into_iter().next(),
    )
    .await;
    for field in ["id", "direction", "disposition", "started_at", "timeline"] {
        assert!(!first[field].is_null(), "{field} missing in {first}");
    }

    // Unauthenticated access is refused.
    let status = http
        .get(format!("{}/api/v1/calls", gw.base))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);

    let number = "15559990123";
    let resp = http
        .post(format!("{}/api/v1/calls", gw.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "extension": "201", "number": number }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);

    let call = eventually(
        "the click-to-call record",
        Duration::from_secs(180),
        async || {
            calls(&gw, &format!("number={number}&limit=5"))
                .await
                .into_iter()
                .find(|c| c["from"] == "201" && c["to"] == number)
        },
    )
    .await;
    assert_eq!(call["direction"], "outbound", "{call}");
    assert_eq!(call["disposition"], "answered", "{call}");
    assert_eq!(call["answered_by"], number, "{call}");
}

#[tokio::test]
async fn click_to_call_rejects_bad_numbers_without_calling() {
    let gw = Gateway::start(TOKEN);
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/calls", gw.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "extension": "201", "number": "call me; Hangup()" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("not a phone number"));
}
