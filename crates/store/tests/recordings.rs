//! Recording rows (discover, recheck, finish with deliveries, retention) on SQLite and on
//! PostgreSQL (`PBXLINK_TEST_POSTGRES_URL`, set up by `scripts/test`); a fresh database each.

use calls::{CallRecord, Direction, Disposition};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{Connection as _, Executor as _};
use store::{NewOutboxRow, RecordingOutcome, RecordingState, Store};

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_388_070 + seconds, 0).unwrap()
}

fn call(id: &str, started: i64, recording: Option<&str>) -> CallRecord {
    CallRecord {
        id: id.to_owned(),
        direction: Direction::Inbound,
        from: Some("15551234567".into()),
        to: Some("15550001000".into()),
        caller_name: None,
        started_at: at(started),
        answered_at: Some(at(started + 4)),
        ended_at: at(started + 12),
        ring_seconds: 4,
        talk_seconds: 8,
        disposition: Disposition::Answered,
        answered_by: Some("202".into()),
        rang: vec!["202".into()],
        transfers: Vec::new(),
        queue: None,
        recording: recording.map(str::to_owned),
        legs: Vec::new(),
        provenance: Default::default(),
        timeline: Vec::new(),
    }
}

fn ready(sha256: &str) -> RecordingOutcome {
    RecordingOutcome::Ready {
        sha256: sha256.to_owned(),
        bytes: 4096,
        duration_ms: 8000,
    }
}

async fn exercise(store: &Store) {
    for c in [
        call("1.0", 0, Some("/monitor/a.wav")),
        call("2.0", 10, Some("/monitor/b.wav")),
        call("3.0", 20, None),
        call("4.0", -90_000, Some("/monitor/old.wav")),
    ] {
        store.save_call("pbx", &c, &[], at(100)).await.unwrap();
    }
    // Only recent calls with a recording; a second pass adds nothing.
    assert_eq!(
        store.discover_recordings(at(-3600), at(100)).await.unwrap(),
        2
    );
    assert_eq!(
        store.discover_recordings(at(-3600), at(101)).await.unwrap(),
        0
    );
    let due = store.due_recordings(at(100), 10).await.unwrap();
    let ids: Vec<_> = due.iter().map(|r| r.call_id.as_str()).collect();
    assert_eq!(ids, ["1.0", "2.0"]);
    let later = call("5.0", 30, Some("/monitor/c.wav"));
    store.save_call("pbx", &later, &[], at(102)).await.unwrap();
    assert_eq!(
        store.discover_recordings(at(-3600), at(102)).await.unwrap(),
        1
    );
    assert_eq!(due[0].source, "/monitor/a.wav");
    assert_eq!(due[0].state, RecordingState::Pending);

    // A growing file is looked at again later; not due before then.
    store
        .recheck_recording("pbx", "1.0", Some(44), at(105))
        .await
        .unwrap();
    let due = store.due_recordings(at(102), 10).await.unwrap();
    assert_eq!(due.len(), 2);
    let due = store.due_recordings(at(105), 10).await.unwrap();
    assert_eq!(due[2].source_bytes, Some(44));

    // Ready with its deliveries, in one go; finishing twice queues nothing twice.
    let delivery = NewOutboxRow {
        connector: "erp".into(),
        kind: "recording.ready".into(),
        payload: json!({"url": "https://x/recordings/t.mp3"}),
        idempotency_key: "erp:pbx:1.0:recording.ready".into(),
    };
    let same_hash = "ab".repeat(32);
    for _ in 0..2 {
        store
            .finish_recording(
                "pbx",
                "1.0",
                &ready(&same_hash),
                std::slice::from_ref(&delivery),
                at(106),
            )
            .await
            .unwrap();
    }
    let outbox = store.outbox_for_call("pbx", "1.0").await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].kind, "recording.ready");
    let r = store.recording("pbx", "1.0").await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.sha256.as_deref(), r.bytes, r.duration_ms),
        (
            RecordingState::Ready,
            Some(same_hash.as_str()),
            Some(4096),
            Some(8000)
        )
    );
    assert_eq!(r.finished_at, Some(at(106)));
    store
        .finish_recording("pbx", "2.0", &RecordingOutcome::Empty, &[], at(107))
        .await
        .unwrap();
    store
        .finish_recording("pbx", "5.0", &ready(&same_hash), &[], at(107))
        .await
        .unwrap();
    let missing = RecordingOutcome::Missing("no such file".into());
    store
        .finish_recording("pbx", "2.0", &missing, &[], at(108))
        .await
        .unwrap();
    let r = store.recording("pbx", "2.0").await.unwrap().unwrap();
    assert_eq!((r.state, r.error), (RecordingState::Empty, None));
    assert!(store.due_recordings(at(1000), 10).await.unwrap().is_empty());
    assert_eq!(store.recording("pbx", "3.0").await.unwrap(), None);

    // Retention: both rows sharing a file must go before the file may.
    assert_eq!(
        store.expire_recordings(at(101)).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store.recording("pbx", "5.0").await.unwrap().unwrap().state,
        RecordingState::Ready
    );
    assert_eq!(
        store.expire_recordings(at(103)).await.unwrap(),
        vec![same_hash]
    );
    assert_eq!(store.recording("pbx", "1.0").await.unwrap(), None);
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
    let store = Store::connect(&url).await.unwrap();
    exercise(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres() {
    let server = std::env::var("PBXLINK_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "PBXLINK_TEST_POSTGRES_URL is not set: the recording store tests need a PostgreSQL \
             server. Run scripts/test, which starts a throwaway one."
        )
    });
    let name = format!("pbxlink_recordings_{}", rand::random::<u64>());
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&server).await.unwrap();
    admin
        .execute(&*format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path(&name);
    let store = Store::connect(url.as_str()).await.unwrap();
    exercise(&store).await;
    store.close().await;
    admin
        .execute(&*format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}
