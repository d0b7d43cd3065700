//! Recordings end to end in the running binary's demo mode: the simulated PBX writes a
//! MixMonitor WAV, the worker converts it, `GET /api/v1/calls/{id}/recording` hands out a
//! signed link, and the link serves MP3 bytes (with Range) to a client holding no token.

use std::time::Duration;

use serde_json::Value;

mod gateway;
use gateway::Gateway;

const TOKEN: &str = "recordings-test-admin-token";

async fn get(url: &str, token: Option<&str>, range: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_demo_call_recording_plays_through_a_signed_link() {
    let gw = Gateway::start(TOKEN);
    // Demo calls last seconds to a minute; look for a converted one for up to 5 minutes.
    let mut link = None;
    for _ in 0..300 {
        let calls: Value = get(
            &format!("{}/api/v1/calls?limit=100", gw.base),
            Some(TOKEN),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
        for call in calls["calls"].as_array().unwrap() {
            let id = call["id"].as_str().unwrap();
            let url = format!("{}/api/v1/calls/{id}/recording", gw.base);
            let resp = get(&url, Some(TOKEN), None).await;
            if resp.status() == 200 {
                link = Some(resp.json::<Value>().await.unwrap());
                break;
            }
        }
        if link.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let link = link.expect("no demo call got a converted recording");
    // The demo tone is 3 s long.
    assert_eq!(link["duration_ms"], 3000, "{link}");
    let url = link["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/recordings/", gw.base)),
        "{url}"
    );

    let whole = get(url, None, None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "audio/mpeg");
    let bytes = whole.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, link["bytes"].as_u64().unwrap());
    let part = get(url, None, Some("bytes=0-1")).await;
    assert_eq!(part.status(), 206);
    let head = part.bytes().await.unwrap();
    // An MPEG audio frame starts with 11 set sync bits.
    assert_eq!((head[0], head[1] & 0xE0), (0xFF, 0xE0), "{head:?}");

    // One character changed: refused, and nothing of the file is sent.
    let mut tampered = url.as_bytes().to_vec();
    let at = tampered.len() - 6;
    tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(get(&tampered, None, None).await.status(), 403);
}
