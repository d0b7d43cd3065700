//! Recordings over HTTP against a real worker and store: Range requests, the per-call link
//! (token needed), and links refused when tampered, expired or not links (403s).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{TimeDelta, Utc};
use delivery::recordings::testing::{bench_with, recorded_call_at, tone_wav};
use delivery::recordings::{load_key, Signer};
use tower::ServiceExt as _;

const WEBHOOK: &str = "kind = \"webhook\"\nname = \"erp\"\nurl = \"https://erp.example/hook\"\n";

async fn http(
    app: axum::Router,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Vec<(String, String)>, Vec<u8>) {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let kept = [
        "content-type",
        "content-range",
        "content-length",
        "cache-control",
    ];
    let heads = resp
        .headers()
        .iter()
        .filter(|(k, _)| kept.contains(&k.as_str()))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, heads, body.to_vec())
}

#[tokio::test]
async fn links_serve_ranges_and_refuse_tampering_expiry_and_traversal() {
    let b = bench_with(WEBHOOK).await;
    // The HTTP side uses the real clock: work in the present.
    let now = Utc::now();
    let day = b.monitor.path().join(now.format("%Y/%m/%d").to_string());
    std::fs::create_dir_all(&day).unwrap();
    std::fs::write(day.join("a.wav"), tone_wav(8000, 1, 1.0)).unwrap();
    let call = recorded_call_at("1795388070.0", "a.wav", now);
    b.store.save_call("pbx", &call, &[], now).await.unwrap();
    for t in [0, 3] {
        b.worker
            .step(&b.store, now + TimeDelta::seconds(t))
            .await
            .unwrap();
    }
    let state = crate::api::AppState::new(b.store.clone(), &["tok".to_owned()], Default::default())
        .with_recordings(b.worker.recordings.clone());
    let app = crate::api::app(state);

    let (status, _, body) = http(
        app.clone(),
        "/api/v1/calls/1795388070.0/recording",
        &[("Authorization", "Bearer tok")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let url = answer["url"].as_str().unwrap();
    let path = url.strip_prefix("https://pbx.example").unwrap();
    let (status, heads, whole) = http(app.clone(), path, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(whole.len() as u64, answer["bytes"].as_u64().unwrap());
    let (status, heads_range, part) = http(app.clone(), path, &[("Range", "bytes=100-199")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part, whole[100..200]);
    expect_test::expect![[r#"
        (
            [
                (
                    "content-type",
                    "audio/mpeg",
                ),
                (
                    "content-length",
                    "4032",
                ),
                (
                    "cache-control",
                    "private, max-age=3600",
                ),
            ],
            [
                (
                    "content-type",
                    "audio/mpeg",
                ),
                (
                    "content-range",
                    "bytes 100-199/4032",
                ),
                (
                    "content-length",
                    "100",
                ),
                (
                    "cache-control",
                    "private, max-age=3600",
                ),
            ],
        )
    "#]]
    .assert_debug_eq(&(heads, heads_range));

    // Without a token the per-call link is refused; the download needs none but a valid link.
    let (status, _, _) = http(app.clone(), "/api/v1/calls/1795388070.0/recording", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let token = path.strip_prefix("/recordings/").unwrap();
    // Signed with the worker's own key (kept in the data folder), expired a second ago.
    let signer = Signer::new(load_key(&b.config, b.data.path()).unwrap());
    let expired = signer.token(&token[..64], now - TimeDelta::seconds(1));
    let mut tampered = token.to_owned().into_bytes();
    tampered[10] = if tampered[10] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    let mut refused = Vec::new();
    for uri in [
        format!("/recordings/{expired}"),
        format!("/recordings/{tampered}"),
        "/recordings/..%2F..%2F..%2Fetc%2Fpasswd".to_owned(),
        "/recordings/%2e%2e".to_owned(),
        "/recordings/../../etc/passwd".to_owned(),
        format!("/recordings/{}%2F..%2F..%2Ft.db", &token[..2]),
    ] {
        let (status, _, body) = http(app.clone(), &uri, &[]).await;
        refused.push(format!(
            "{} {}",
            status.as_u16(),
            String::from_utf8_lossy(&body)
        ));
    }
    expect_test::expect![[r#"
        403 {"error":"recording link expired"}
        403 {"error":"recording link signature does not match"}
        403 {"error":"malformed recording link"}
        403 {"error":"malformed recording link"}
        404 
        403 {"error":"malformed recording link"}"#]]
    .assert_eq(&refused.join("\n"));
}
