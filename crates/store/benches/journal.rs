//! Criterion bench of the store's hot paths: saving a finished call (record, timeline and one
//! outbox row in one transaction), a filtered journal page over 10k calls, and an outbox
//! claim + release. On SQLite always; on PostgreSQL too when `PBXLINK_TEST_POSTGRES_URL` is set
//! (the bench then creates and drops its own database).

use calls::{CallRecord, Direction, Disposition, TimelineEntry};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use sqlx::{Connection as _, Executor as _};
use store::{CallFilter, Failure, NewOutboxRow, Store};
use tokio::runtime::Runtime;

const JOURNAL_SIZE: u64 = 10_000;

fn at(seconds: u64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap() + TimeDelta::seconds(seconds as i64)
}

/// A typical answered queue call: five story steps, two phones rang.
fn call(n: u64) -> CallRecord {
    let extension = format!("{}", 200 + n % 50);
    let step = |s: u64, what: &str| TimelineEntry {
        at: at(n + s),
        what: what.to_owned(),
        detail: format!("{what} {extension}"),
    };
    CallRecord {
        id: format!("1764000000.{n}"),
        direction: Direction::Inbound,
        from: Some(format!("+7495{:07}", n % 5000)),
        to: Some("84950000000".to_owned()),
        caller_name: None,
        started_at: at(n),
        answered_at: Some(at(n + 10)),
        ended_at: at(n + 100),
        ring_seconds: 10,
        talk_seconds: 90,
        disposition: Disposition::Answered,
        answered_by: Some(extension.clone()),
        rang: vec![extension.clone(), "299".to_owned()],
        transfers: Vec::new(),
        queue: Some("sales".to_owned()),
        recording: None,
        legs: vec![
            format!("PJSIP/trunk-{n:08x}"),
            format!("PJSIP/{extension}-{n:08x}"),
        ],
        provenance: Default::default(),
        timeline: vec![
            step(0, "started"),
            step(1, "queue"),
            step(2, "ringing"),
            step(10, "answered"),
            step(100, "hangup"),
        ],
    }
}

fn delivery(n: u64) -> NewOutboxRow {
    NewOutboxRow {
        connector: "webhook".to_owned(),
        kind: "call.ended".to_owned(),
        payload: serde_json::json!({ "call": n }),
        idempotency_key: format!("webhook/{n}"),
    }
}

fn bench_store(c: &mut Criterion, rt: &Runtime, backend: &str, store: &Store) {
    let now = at(10 * JOURNAL_SIZE);
    let lease = TimeDelta::minutes(1);
    rt.block_on(async {
        for n in 0..JOURNAL_SIZE {
            store
                .save_call("pbx", &call(n), &[delivery(n)], at(n))
                .await
                .unwrap();
        }
        // Delivered history: claims must not slow down as it grows.
        loop {
            let rows = store.claim_outbox("setup", 1000, lease, now).await.unwrap();
            if rows.is_empty() {
                break;
            }
            for row in rows {
                store.mark_delivered(row.id, "setup", now).await.unwrap();
            }
        }
    });
    let mut group = c.benchmark_group(format!("store_{backend}"));
    let mut next = JOURNAL_SIZE;
    group.bench_function("save_call", |b| {
        b.iter(|| {
            next += 1;
            rt.block_on(store.save_call("pbx", &call(next), &[delivery(next)], at(next)))
                .unwrap()
        })
    });
    let filter = CallFilter {
        extension: Some("217".to_owned()),
        ..Default::default()
    };
    group.bench_function("list_50_by_extension", |b| {
        b.iter(|| rt.block_on(store.list_calls(&filter, 50, None)).unwrap())
    });
    // The calls saved above left pending rows; each round claims ten and hands them back as
    // due again, so every iteration sees the same backlog and history.
    group.bench_function("claim_10_and_release", |b| {
        b.iter(|| {
            rt.block_on(async {
                let rows = store.claim_outbox("bench", 10, lease, now).await.unwrap();
                let retry = Failure::Retriable {
                    next_attempt_at: now,
                };
                for row in rows {
                    store
                        .mark_failed(row.id, "bench", retry, "bench", now)
                        .await
                        .unwrap();
                }
            })
        })
    });
    group.finish();
}

fn journal(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let sqlite = rt.block_on(Store::connect(&url)).unwrap();
    bench_store(c, &rt, "sqlite", &sqlite);

    if let Ok(server) = std::env::var("PBXLINK_TEST_POSTGRES_URL") {
        let name = format!("pbxlink_bench_{}", std::process::id());
        let admin = |sql: String| {
            rt.block_on(async {
                sqlx::any::install_default_drivers();
                let mut conn = sqlx::AnyConnection::connect(&server).await.unwrap();
                conn.execute(&*sql).await.unwrap();
            })
        };
        admin(format!("CREATE DATABASE {name}"));
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&name);
        let postgres = rt.block_on(Store::connect(url.as_str())).unwrap();
        bench_store(c, &rt, "postgres", &postgres);
        rt.block_on(postgres.close());
        admin(format!("DROP DATABASE {name} WITH (FORCE)"));
    }
}

criterion_group!(benches, journal);
criterion_main!(benches);
