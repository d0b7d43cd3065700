//! The store's behaviour, checked by one suite that runs against SQLite and against a real
//! PostgreSQL (`PBXLINK_TEST_POSTGRES_URL`, set up by `scripts/test`). Every test gets a fresh
//! database.

use std::collections::BTreeSet;

use calls::{
    CallRecord, Direction, Disposition, Gap, Provenance, Source, TimelineEntry, Transfer,
    TransferKind,
};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use expect_test::{expect, Expect};
use serde_json::json;
use sqlx::{Connection as _, Executor as _};
use store::{
    CallFilter, Failure, NewOutboxRow, OutboxFilter, OutboxStatus, Outcome, Purge, RawEvent,
    Requeue, Store, StoreError,
};

/// A fresh database and whatever must be removed with it.
struct TestDb {
    store: Store,
    // Holds the SQLite file until the test ends.
    _dir: Option<tempfile::TempDir>,
    // (server URL, database name) of a PostgreSQL database to drop afterwards.
    postgres: Option<(String, String)>,
}

impl TestDb {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
        Self {
            store: Store::connect(&url).await.unwrap(),
            _dir: Some(dir),
            postgres: None,
        }
    }

    async fn postgres() -> Self {
        let server = std::env::var("PBXLINK_TEST_POSTGRES_URL").unwrap_or_else(|_| {
            panic!(
                "PBXLINK_TEST_POSTGRES_URL is not set: the store tests need a PostgreSQL server. \
                 Run scripts/test, which starts a throwaway one, or point the variable at a \
                 server where this user may CREATE DATABASE."
            )
        });
        let name = format!(
            "pbxlink_test_{}_{}",
            std::process::id(),
            rand::random::<u64>()
        );
        sqlx::any::install_default_drivers();
        let mut admin = sqlx::AnyConnection::connect(&server).await.unwrap();
        admin
            .execute(&*format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&name);
        Self {
            store: Store::connect(url.as_str()).await.unwrap(),
            _dir: None,
            postgres: Some((server, name)),
        }
    }

    async fn finish(self) {
        self.store.close().await;
        if let Some((server, name)) = self.postgres {
            let mut admin = sqlx::AnyConnection::connect(&server).await.unwrap();
            admin
                .execute(&*format!("DROP DATABASE {name} WITH (FORCE)"))
                .await
                .unwrap();
        }
    }
}

/// Runs each listed test once per backend: `sqlite::name` and `postgres::name`.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = super::TestDb::sqlite().await;
                    super::$test(&db.store).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = super::TestDb::postgres().await;
                    super::$test(&db.store).await;
                    db.finish().await;
                }
            )*
        }
    };
}

on_both_backends!(
    round_trip_keeps_every_field,
    saving_again_updates_and_never_duplicates,
    same_id_on_two_pbxes,
    journal_filters,
    journal_pages,
    outbox_concurrent_claims_are_disjoint,
    outbox_lease_and_failures,
    outbox_release_at_shutdown,
    outbox_results_saved_together,
    outbox_list_requeue_purge,
    raw_events_and_retention,
    cdr_backfill_mark_only_moves_on,
    real_call_records_round_trip,
    users_and_sessions,
    pbx_leases_one_owner_at_a_time,
    unfinished_calls_for_a_takeover,
    live_events_between_instances,
);

fn at(seconds: i64) -> DateTime<Utc> {
    // Microseconds included: that is what AMI timestamps carry and what the store keeps.
    Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap()
        + TimeDelta::microseconds(seconds * 1_000_000 + 123_456)
}

/// An answered inbound call with every field set.
fn full_call(id: &str) -> CallRecord {
    CallRecord {
        id: id.to_owned(),
        direction: Direction::Inbound,
        from: Some("+74951234567".to_owned()),
        to: Some("84950000000".to_owned()),
        caller_name: Some("Иван \"Ваня\" O'Brien".to_owned()),
        started_at: at(0),
        answered_at: Some(at(12)),
        ended_at: at(95),
        ring_seconds: 12,
        talk_seconds: 83,
        disposition: Disposition::Answered,
        answered_by: Some("201".to_owned()),
        rang: vec!["201".to_owned(), "202".to_owned()],
        transfers: vec![Transfer {
            kind: TransferKind::Attended,
            from: Some("201".to_owned()),
            to: Some("203".to_owned()),
            at: at(60),
        }],
        queue: Some("sales".to_owned()),
        recording: Some("/var/spool/asterisk/monitor/2026/11/24/in-1.wav".to_owned()),
        legs: vec![
            "PJSIP/trunk-00000001".to_owned(),
            "PJSIP/201-00000002".to_owned(),
        ],
        // Spans a gap in the event stream, repaired from the CDR: every field round-trips.
        provenance: Provenance {
            source: Source::AmiCdr,
            ended_in_gap: Some(Gap {
                from: at(90),
                to: at(110),
            }),
            answered_in_gap: None,
            started_in_gap: None,
            gaps: vec![Gap {
                from: at(90),
                to: at(110),
            }],
        },
        timeline: vec![
            entry(0, "started", "from +74951234567"),
            entry(2, "queue", "sales"),
            entry(3, "ringing", "rang 201, 202"),
            entry(12, "answered", "by 201"),
            entry(95, "hangup", "hung up by caller"),
        ],
    }
}

fn entry(seconds: i64, what: &str, detail: &str) -> TimelineEntry {
    TimelineEntry {
        at: at(seconds),
        what: what.to_owned(),
        detail: detail.to_owned(),
    }
}

/// A call with only the required fields.
fn bare_call(id: &str, started: i64, disposition: Disposition) -> CallRecord {
    CallRecord {
        id: id.to_owned(),
        direction: Direction::Internal,
        from: None,
        to: None,
        caller_name: None,
        started_at: at(started),
        answered_at: None,
        ended_at: at(started + 30),
        ring_seconds: 30,
        talk_seconds: 0,
        disposition,
        answered_by: None,
        rang: Vec::new(),
        transfers: Vec::new(),
        queue: None,
        recording: None,
        legs: Vec::new(),
        provenance: Default::default(),
        timeline: Vec::new(),
    }
}

fn delivery(key: &str) -> NewOutboxRow {
    NewOutboxRow {
        connector: "webhook".to_owned(),
        kind: "call.ended".to_owned(),
        payload: json!({"key": key, "nested": [1, 2, {"a": null}]}),
        idempotency_key: key.to_owned(),
    }
}

async fn round_trip_keeps_every_field(store: &Store) {
    let full = full_call("1700000000.1");
    let bare = bare_call("1700000000.2", 5, Disposition::Cancelled);
    store.save_call("pbx1", &full, &[], at(100)).await.unwrap();
    store.save_call("pbx1", &bare, &[], at(100)).await.unwrap();

    for call in [full, bare] {
        let stored = store.get_call(&call.id, None).await.unwrap().unwrap();
        assert_eq!(stored.pbx, "pbx1");
        assert_eq!(stored.record, call);
        let named = store.get_call(&call.id, Some("pbx1")).await.unwrap();
        assert_eq!(named.map(|c| c.record), Some(call));
    }
    assert_eq!(store.get_call("nope", None).await.unwrap(), None);
    assert_eq!(
        store.get_call("1700000000.1", Some("pbx2")).await.unwrap(),
        None
    );
}

async fn saving_again_updates_and_never_duplicates(store: &Store) {
    let mut call = full_call("1700000000.1");
    let outbox = [delivery("pbx1/1700000000.1/webhook")];
    store
        .save_call("pbx1", &call, &outbox, at(100))
        .await
        .unwrap();

    call.disposition = Disposition::NoAnswer;
    call.answered_by = None;
    call.timeline.truncate(2);
    let more = [
        delivery("pbx1/1700000000.1/webhook"),
        delivery("pbx1/1700000000.1/crm"),
    ];
    store
        .save_call("pbx1", &call, &more, at(200))
        .await
        .unwrap();

    assert_eq!(store.count_calls(&CallFilter::default()).await.unwrap(), 1);
    let stored = store.get_call(&call.id, None).await.unwrap().unwrap();
    assert_eq!(stored.record, call);
    let queued = store.outbox_for_call("pbx1", &call.id).await.unwrap();
    let keys: Vec<_> = queued
        .iter()
        .map(|r| (r.idempotency_key.as_str(), r.created_at))
        .collect();
    // The first row kept its original creation time: it was not queued a second time.
    assert_eq!(
        keys,
        [
            ("pbx1/1700000000.1/webhook", at(100)),
            ("pbx1/1700000000.1/crm", at(200))
        ]
    );
    assert_eq!(queued[0].payload, outbox[0].payload);
    assert_eq!(queued[0].status, OutboxStatus::Pending);
}

async fn same_id_on_two_pbxes(store: &Store) {
    let one = bare_call("1700000000.7", 0, Disposition::Busy);
    let two = bare_call("1700000000.7", 9, Disposition::Failed);
    store.save_call("pbx1", &one, &[], at(100)).await.unwrap();
    store.save_call("pbx2", &two, &[], at(100)).await.unwrap();

    assert_eq!(store.count_calls(&CallFilter::default()).await.unwrap(), 2);
    let err = store.get_call("1700000000.7", None).await.unwrap_err();
    assert!(matches!(err, StoreError::Ambiguous { .. }), "{err}");
    expect!["call 1700000000.7 exists on several PBXes (pbx1, pbx2); name the PBX"]
        .assert_eq(&err.to_string());
    let two_back = store
        .get_call("1700000000.7", Some("pbx2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(two_back.record, two);
}

/// One call of the filter tests: id, start second, from, to, answered_by, rang, how it ended.
type JournalRow = (
    &'static str,
    i64,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
    Disposition,
);

/// The calls the filter tests look at.
fn journal() -> Vec<CallRecord> {
    let rows: [JournalRow; 6] = [
        (
            "a",
            0,
            "+7111",
            "800",
            Some("201"),
            &["201"],
            Disposition::Answered,
        ),
        (
            "b",
            60,
            "+7222",
            "800",
            None,
            &["201", "202"],
            Disposition::NoAnswer,
        ),
        (
            "c",
            120,
            "201",
            "+7111",
            Some("+7111"),
            &[],
            Disposition::Answered,
        ),
        ("d", 180, "202", "203", None, &["203"], Disposition::Busy),
        (
            "e",
            240,
            "+7333",
            "800",
            Some("2021"),
            &["2021"],
            Disposition::Answered,
        ),
        ("f", 300, "+7_1%", "800", None, &[], Disposition::Cancelled),
    ];
    rows.into_iter()
        .map(
            |(id, start, from, to, answered_by, rang, disposition)| CallRecord {
                from: Some(from.to_owned()),
                to: Some(to.to_owned()),
                answered_by: answered_by.map(str::to_owned),
                rang: rang.iter().map(|e| e.to_string()).collect(),
                ..bare_call(id, start, disposition)
            },
        )
        .collect()
}

async fn journal_filters(store: &Store) {
    for call in journal() {
        store.save_call("pbx1", &call, &[], at(1000)).await.unwrap();
    }
    let check = |filter: CallFilter, expected: Expect| async move {
        let page = store.list_calls(&filter, 100, None).await.unwrap();
        let ids: Vec<_> = page.calls.iter().map(|c| c.record.id.as_str()).collect();
        let count = store.count_calls(&filter).await.unwrap();
        expected.assert_eq(&format!("{} ({count})", ids.join(" ")));
    };
    check(CallFilter::default(), expect!["f e d c b a (6)"]).await;
    let since = CallFilter {
        since: Some(at(60)),
        ..Default::default()
    };
    check(since, expect!["f e d c b (5)"]).await;
    let window = CallFilter {
        since: Some(at(60)),
        until: Some(at(180)),
        ..Default::default()
    };
    check(window, expect!["c b (2)"]).await;
    let number = CallFilter {
        number: Some("+7111".into()),
        ..Default::default()
    };
    check(number, expect!["c a (2)"]).await;
    // LIKE wildcards in the input match only themselves.
    let wild = CallFilter {
        number: Some("+7_1%".into()),
        ..Default::default()
    };
    check(wild, expect!["f (1)"]).await;
    let ext = CallFilter {
        extension: Some("201".into()),
        ..Default::default()
    };
    // Placed by 201 (c), answered by it (a), rang it (b).
    check(ext, expect!["c b a (3)"]).await;
    let ext_rang = CallFilter {
        extension: Some("203".into()),
        ..Default::default()
    };
    check(ext_rang, expect!["d (1)"]).await;
    let ext_wild = CallFilter {
        extension: Some("20%".into()),
        ..Default::default()
    };
    check(ext_wild, expect![" (0)"]).await;
    let answered = CallFilter {
        disposition: Some(Disposition::Answered),
        ..Default::default()
    };
    check(answered, expect!["e c a (3)"]).await;
    let combined = CallFilter {
        number: Some("800".into()),
        extension: Some("201".into()),
        disposition: Some(Disposition::NoAnswer),
        ..Default::default()
    };
    check(combined, expect!["b (1)"]).await;
}

async fn journal_pages(store: &Store) {
    for call in journal() {
        store.save_call("pbx1", &call, &[], at(1000)).await.unwrap();
    }
    // Same start time on two PBXes: the cursor must still split them correctly.
    store
        .save_call(
            "pbx2",
            &bare_call("c", 120, Disposition::Failed),
            &[],
            at(1000),
        )
        .await
        .unwrap();

    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_calls(&CallFilter::default(), 2, cursor.as_deref())
            .await
            .unwrap();
        pages.push(
            page.calls
                .iter()
                .map(|c| format!("{}/{}", c.pbx, c.record.id))
                .collect::<Vec<_>>(),
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    expect![[r#"
        [
            [
                "pbx1/f",
                "pbx1/e",
            ],
            [
                "pbx1/d",
                "pbx2/c",
            ],
            [
                "pbx1/c",
                "pbx1/b",
            ],
            [
                "pbx1/a",
            ],
        ]
    "#]]
    .assert_debug_eq(&pages);

    let err = store
        .list_calls(&CallFilter::default(), 2, Some("garbage"))
        .await
        .unwrap_err();
    expect![[r#"invalid page cursor "garbage""#]].assert_eq(&err.to_string());
}

async fn outbox_concurrent_claims_are_disjoint(store: &Store) {
    const CALLS: usize = 40;
    const ROWS_PER_CALL: usize = 5;
    for n in 0..CALLS {
        let call = bare_call(&format!("1700000000.{n}"), n as i64, Disposition::Answered);
        let rows: Vec<_> = (0..ROWS_PER_CALL)
            .map(|r| delivery(&format!("{}/{r}", call.id)))
            .collect();
        store.save_call("pbx1", &call, &rows, at(0)).await.unwrap();
    }

    let worker = |owner: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut claimed = Vec::new();
            loop {
                let batch = store
                    .claim_outbox(owner, 7, TimeDelta::minutes(5), at(10))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return claimed;
                }
                for row in &batch {
                    assert_eq!(row.lease_owner.as_deref(), Some(owner));
                    assert_eq!(row.status, OutboxStatus::InFlight);
                    assert_eq!(row.attempts, 1);
                }
                claimed.extend(batch.into_iter().map(|row| row.id));
            }
        })
    };
    let (a, b) = (worker("worker-a"), worker("worker-b"));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());

    let a_ids: BTreeSet<_> = a.iter().copied().collect();
    let b_ids: BTreeSet<_> = b.iter().copied().collect();
    assert_eq!(a_ids.len(), a.len(), "worker a got a row twice");
    assert_eq!(b_ids.len(), b.len(), "worker b got a row twice");
    assert!(
        a_ids.is_disjoint(&b_ids),
        "both workers claimed {:?}",
        a_ids.intersection(&b_ids)
    );
    assert_eq!(a.len() + b.len(), CALLS * ROWS_PER_CALL);
}

/// A stopping worker hands back what it claimed but never tried: due again at once, for
/// anyone, its attempt not counted; a row it no longer holds is left alone.
async fn outbox_release_at_shutdown(store: &Store) {
    let call = bare_call("1700000000.2", 0, Disposition::Answered);
    store
        .save_call("pbx1", &call, &[delivery("r1"), delivery("r2")], at(0))
        .await
        .unwrap();
    let lease = TimeDelta::seconds(300);
    let claimed = store.claim_outbox("w1", 10, lease, at(1)).await.unwrap();
    let ids: Vec<i64> = claimed.iter().map(|r| r.id).collect();
    assert!(store.mark_delivered(ids[0], "w1", at(2)).await.unwrap());
    assert!(
        !store.release_outbox(ids[0], "w1", at(2)).await.unwrap(),
        "delivered stays delivered"
    );
    assert!(
        !store.release_outbox(ids[1], "w2", at(2)).await.unwrap(),
        "not w2's row"
    );
    assert!(store.release_outbox(ids[1], "w1", at(2)).await.unwrap());
    let again = store.claim_outbox("w2", 10, lease, at(3)).await.unwrap();
    assert_eq!(again.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[1]]);
    assert_eq!(
        again[0].attempts, 1,
        "the released claim was not an attempt"
    );
}

/// A worker's results in one transaction: delivered, retried, dead and handed-back rows
/// each end as they should; a row the worker no longer holds is not counted or changed. A
/// later step of the call waits for an earlier one still in backoff.
async fn outbox_results_saved_together(store: &Store) {
    let call = bare_call("1700000000.3", 0, Disposition::Answered);
    let rows: Vec<_> = ["s1", "s2", "s3", "s4", "s5"].map(delivery).into();
    store.save_call("pbx1", &call, &rows, at(0)).await.unwrap();
    let lease = TimeDelta::seconds(30);
    let ids: Vec<i64> = store
        .claim_outbox("w1", 10, lease, at(1))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    let retry = Failure::Retriable {
        next_attempt_at: at(60),
    };
    let results = [
        (ids[0], Outcome::Delivered),
        (ids[1], Outcome::Delivered),
        (
            ids[2],
            Outcome::Failed {
                failure: retry,
                error: "HTTP 503".into(),
            },
        ),
        (
            ids[3],
            Outcome::Failed {
                failure: Failure::Permanent,
                error: "HTTP 400".into(),
            },
        ),
        (ids[4], Outcome::Released),
    ];
    assert_eq!(store.finish_outbox("w1", &results, at(2)).await.unwrap(), 5);
    assert_eq!(
        store.finish_outbox("w1", &results, at(3)).await.unwrap(),
        0,
        "not held any more"
    );
    let connector = rows[0].connector.as_str();
    let open = store
        .open_steps_before(&[
            (connector, "pbx1", &call.id, ids[2]),
            (connector, "pbx1", &call.id, ids[4]),
            ("elsewhere", "pbx1", &call.id, ids[4]),
            (connector, "pbx2", &call.id, ids[4]),
        ])
        .await
        .unwrap();
    // Delivered steps hold nobody; the retried one holds what follows, of its connector and
    // PBX only.
    assert_eq!(open, [None, Some(at(60)), None, None]);
    let states: Vec<String> = store
        .outbox_for_call("pbx1", &call.id)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {:?} {} {:?}",
                r.idempotency_key, r.status, r.attempts, r.last_error
            )
        })
        .collect();
    expect![[r#"
        s1 Delivered 1 None
        s2 Delivered 1 None
        s3 Pending 1 Some("HTTP 503")
        s4 Dead 1 Some("HTTP 400")
        s5 Pending 0 None"#]]
    .assert_eq(&states.join("\n"));
}

async fn outbox_lease_and_failures(store: &Store) {
    let call = bare_call("1700000000.1", 0, Disposition::Answered);
    let rows = [delivery("k1"), delivery("k2"), delivery("k3")];
    store.save_call("pbx1", &call, &rows, at(0)).await.unwrap();
    let lease = TimeDelta::seconds(30);

    let claimed = store.claim_outbox("w1", 10, lease, at(1)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert_eq!(claimed[0].lease_until, Some(at(31)));
    let ids: Vec<i64> = claimed.iter().map(|r| r.id).collect();

    // While the lease runs, nobody else gets the rows.
    assert!(store
        .claim_outbox("w2", 10, lease, at(20))
        .await
        .unwrap()
        .is_empty());

    assert!(store.mark_delivered(ids[0], "w1", at(200)).await.unwrap());
    let retry = Failure::Retriable {
        next_attempt_at: at(100),
    };
    assert!(store
        .mark_failed(ids[1], "w1", retry, "HTTP 503", at(2))
        .await
        .unwrap());
    assert!(store
        .mark_failed(ids[2], "w1", Failure::Permanent, "HTTP 400", at(2))
        .await
        .unwrap());
    // A worker that no longer holds the lease changes nothing.
    assert!(!store.mark_delivered(ids[1], "w2", at(200)).await.unwrap());

    // Not due before next_attempt_at, due after; delivered and dead rows never come back.
    assert!(store
        .claim_outbox("w2", 10, lease, at(99))
        .await
        .unwrap()
        .is_empty());
    let again = store.claim_outbox("w2", 10, lease, at(100)).await.unwrap();
    assert_eq!(again.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[1]]);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].last_error.as_deref(), Some("HTTP 503"));

    // w2 dies: once its lease ends, w3 takes the row over and w2's late report is refused.
    assert!(store
        .claim_outbox("w3", 10, lease, at(129))
        .await
        .unwrap()
        .is_empty());
    let taken = store.claim_outbox("w3", 10, lease, at(130)).await.unwrap();
    assert_eq!(taken.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[1]]);
    assert!(!store.mark_delivered(ids[1], "w2", at(200)).await.unwrap());
    assert!(store.mark_delivered(ids[1], "w3", at(200)).await.unwrap());

    let states: Vec<_> = store
        .outbox_for_call("pbx1", &call.id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.idempotency_key,
                r.status,
                r.attempts,
                r.last_error,
                r.lease_owner,
            )
        })
        .collect();
    expect![[r#"
        [
            (
                "k1",
                Delivered,
                1,
                None,
                None,
            ),
            (
                "k2",
                Delivered,
                3,
                None,
                None,
            ),
            (
                "k3",
                Dead,
                1,
                Some(
                    "HTTP 400",
                ),
                None,
            ),
        ]
    "#]]
    .assert_debug_eq(&states);
}

/// What the operator commands (`pbxlink outbox list|retry|purge`) see and change.
async fn outbox_list_requeue_purge(store: &Store) {
    // Two calls, two connectors: per call a "b24" row and a "hook" row.
    for (n, second) in [(1, 0), (2, 1)] {
        let call = bare_call(&format!("1700000000.{n}"), second, Disposition::Answered);
        let rows = ["b24", "hook"].map(|connector| NewOutboxRow {
            connector: connector.to_owned(),
            ..delivery(&format!("{connector}/{n}"))
        });
        store
            .save_call("pbx1", &call, &rows, at(second))
            .await
            .unwrap();
    }
    let lease = TimeDelta::seconds(30);
    // b24/1 delivered at 10, hook/1 dead at 10, b24/2 delivered at 50, hook/2 dead at 50.
    for (now, outcome) in [(10, 0), (50, 1)] {
        let claimed = store.claim_outbox("w", 2, lease, at(now)).await.unwrap();
        assert_eq!(claimed.len(), 2, "{claimed:?}");
        for row in claimed {
            let done = if row.connector == "b24" {
                store.mark_delivered(row.id, "w", at(now)).await
            } else {
                store
                    .mark_failed(row.id, "w", Failure::Permanent, "HTTP 400", at(now))
                    .await
            };
            assert!(done.unwrap(), "{outcome}");
        }
    }
    let show = |rows: Vec<store::OutboxRow>| -> Vec<String> {
        rows.iter()
            .map(|r| {
                let finished = r.finished_at.map(|t| (t - at(0)).num_seconds());
                format!(
                    "{} {:?} attempts={} finished={finished:?} error={:?}",
                    r.idempotency_key, r.status, r.attempts, r.last_error
                )
            })
            .collect()
    };
    let list =
        |filter: OutboxFilter| async move { show(store.list_outbox(&filter, 10).await.unwrap()) };

    let check = |actual: Vec<String>, expected: Expect| expected.assert_debug_eq(&actual);
    check(
        list(OutboxFilter::default()).await,
        expect![[r#"
            [
                "hook/2 Dead attempts=1 finished=Some(50) error=Some(\"HTTP 400\")",
                "b24/2 Delivered attempts=1 finished=Some(50) error=None",
                "hook/1 Dead attempts=1 finished=Some(10) error=Some(\"HTTP 400\")",
                "b24/1 Delivered attempts=1 finished=Some(10) error=None",
            ]
        "#]],
    );
    let dead = OutboxFilter {
        status: Some(OutboxStatus::Dead),
        ..Default::default()
    };
    check(
        list(dead.clone()).await,
        expect![[r#"
            [
                "hook/2 Dead attempts=1 finished=Some(50) error=Some(\"HTTP 400\")",
                "hook/1 Dead attempts=1 finished=Some(10) error=Some(\"HTTP 400\")",
            ]
        "#]],
    );
    let first_page = store
        .list_outbox(&OutboxFilter::default(), 3)
        .await
        .unwrap();
    let next_page = OutboxFilter {
        before_id: first_page.last().map(|r| r.id),
        ..Default::default()
    };
    check(
        list(next_page).await,
        expect![[r#"
            [
                "b24/1 Delivered attempts=1 finished=Some(10) error=None",
            ]
        "#]],
    );
    check(
        list(OutboxFilter {
            connector: Some("b24".into()),
            call_id: Some("1700000000.2".into()),
            ..Default::default()
        })
        .await,
        expect![[r#"
            [
                "b24/2 Delivered attempts=1 finished=Some(50) error=None",
            ]
        "#]],
    );
    let counts: Vec<_> = store
        .outbox_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|c| format!("{} {:?} {}", c.connector, c.status, c.rows))
        .collect();
    expect![[r#"["b24 Delivered 2", "hook Dead 2"]"#]].assert_eq(&format!("{counts:?}"));
    let open: Vec<_> = store
        .open_outbox_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|c| format!("{} {:?} {}", c.connector, c.status, c.rows))
        .collect();
    expect![[r#"["hook Dead 2"]"#]].assert_eq(&format!("{open:?}"));

    // Requeue: one dead row by id; a delivered row is not dead, so nothing happens to it.
    let hook1 = store.list_outbox(&dead, 10).await.unwrap()[1].id;
    let b24_2 = first_page[1].id;
    assert_eq!(
        store
            .requeue_outbox(&Requeue::Row(b24_2), at(60))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .requeue_outbox(&Requeue::Row(hook1), at(60))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .requeue_outbox(&Requeue::Row(hook1), at(60))
            .await
            .unwrap(),
        0
    );
    let requeued = store.claim_outbox("w2", 10, lease, at(60)).await.unwrap();
    assert_eq!(requeued.len(), 1);
    assert_eq!(requeued[0].idempotency_key, "hook/1");
    assert_eq!(requeued[0].attempts, 1, "attempts start again");
    assert_eq!(
        requeued[0].created_at,
        at(60),
        "the dead-letter clock restarts"
    );
    assert_eq!(requeued[0].finished_at, None);
    assert_eq!(requeued[0].last_error.as_deref(), Some("HTTP 400"));
    assert!(store
        .mark_delivered(requeued[0].id, "w2", at(61))
        .await
        .unwrap());
    // Every dead row of another connector: none.
    let other = Requeue::AllDead {
        connector: Some("b24".into()),
    };
    assert_eq!(store.requeue_outbox(&other, at(70)).await.unwrap(), 0);
    let all = Requeue::AllDead { connector: None };
    assert_eq!(store.requeue_outbox(&all, at(70)).await.unwrap(), 1);
    let taken = store.claim_outbox("w2", 10, lease, at(70)).await.unwrap();
    assert_eq!(taken.len(), 1);
    store
        .mark_failed(taken[0].id, "w2", Failure::Permanent, "HTTP 422", at(71))
        .await
        .unwrap();

    // Purge: delivered before 55 s (b24/1 at 10, b24/2 at 50; hook/1 at 61 stays), then dead.
    let old = Purge::DeliveredBefore {
        cutoff: at(55),
        connector: None,
    };
    assert_eq!(store.purge_outbox(&old).await.unwrap(), 2);
    let dead_b24 = Purge::Dead {
        connector: Some("b24".into()),
    };
    assert_eq!(store.purge_outbox(&dead_b24).await.unwrap(), 0);
    assert_eq!(
        store
            .purge_outbox(&Purge::Dead { connector: None })
            .await
            .unwrap(),
        1
    );
    check(
        list(OutboxFilter::default()).await,
        expect![[r#"
            [
                "hook/1 Delivered attempts=1 finished=Some(61) error=None",
            ]
        "#]],
    );
}

async fn cdr_backfill_mark_only_moves_on(store: &Store) {
    assert_eq!(store.cdr_backfilled_to("pbx1").await.unwrap(), None);
    store.set_cdr_backfilled_to("pbx1", at(20)).await.unwrap();
    // A backfill finishing late, on an earlier gap, leaves the later mark.
    store.set_cdr_backfilled_to("pbx1", at(10)).await.unwrap();
    assert_eq!(store.cdr_backfilled_to("pbx1").await.unwrap(), Some(at(20)));
    store.set_cdr_backfilled_to("pbx1", at(30)).await.unwrap();
    assert_eq!(store.cdr_backfilled_to("pbx1").await.unwrap(), Some(at(30)));
    assert_eq!(store.cdr_backfilled_to("pbx2").await.unwrap(), None);
}

async fn raw_events_and_retention(store: &Store) {
    let event = |seq: u64, second: i64, linkedid: Option<&str>| RawEvent {
        pbx: "pbx1".to_owned(),
        seq,
        received_at: at(second),
        event: "Newchannel".to_owned(),
        linkedid: linkedid.map(str::to_owned),
        message: json!({"Event": "Newchannel", "Channel": format!("PJSIP/201-{seq:08x}")}),
    };
    let events = [
        event(1, 0, Some("L1")),
        event(2, 10, None),
        event(3, 20, Some("L1")),
        event(4, 30, Some("L2")),
    ];
    assert_eq!(store.last_event_at("pbx1").await.unwrap(), None);
    store.append_events(&events).await.unwrap();

    assert_eq!(
        store.events_for_call("pbx1", "L1").await.unwrap(),
        [events[0].clone(), events[2].clone()]
    );
    assert_eq!(store.last_event_at("pbx1").await.unwrap(), Some(at(30)));
    assert_eq!(store.last_event_at("pbx2").await.unwrap(), None);
    assert_eq!(store.purge_events(at(20)).await.unwrap(), 2);
    assert_eq!(
        store.events_for_call("pbx1", "L1").await.unwrap(),
        [events[2].clone()]
    );
    assert_eq!(store.purge_events(at(20)).await.unwrap(), 0);
}

/// Every call the tracker finds in the real Asterisk transcripts comes back from the store
/// exactly as it was saved.
async fn real_call_records_round_trip(store: &Store) {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");
    let mut saved = 0;
    for set in ["asterisk-22-pjsip", "asterisk-18-pjsip"] {
        let dir = std::path::Path::new(fixtures).join(set).join("ami");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("fixture directory {} is missing: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().ends_with(".rx.raw"))
            .collect();
        files.sort();
        for file in files {
            // Transcripts from different runs may reuse Linkedids: one PBX name per file.
            let pbx = format!("{set}/{}", file.file_name().unwrap().to_string_lossy());
            for record in track(&file) {
                store
                    .save_call(&pbx, &record, &[], record.ended_at)
                    .await
                    .unwrap();
                let back = store.get_call(&record.id, Some(&pbx)).await.unwrap();
                assert_eq!(back.map(|c| c.record), Some(record), "{pbx}");
                saved += 1;
            }
        }
    }
    assert!(saved >= 34, "only {saved} calls in the fixtures");
    assert_eq!(
        store.count_calls(&CallFilter::default()).await.unwrap(),
        saved
    );
}

/// The call records of one raw AMI transcript, one millisecond per message.
fn track(file: &std::path::Path) -> Vec<CallRecord> {
    let mut buf = bytes::BytesMut::from(&std::fs::read(file).unwrap()[..]);
    let mut decoder = ami::Decoder::new();
    let mut tracker = calls::Tracker::new(calls::TrackerConfig::default());
    let mut now = at(0);
    while let Some(frame) = decoder.decode(&mut buf).unwrap() {
        if let ami::Frame::Message(message) = frame {
            now += TimeDelta::milliseconds(1);
            tracker.handle(now, &message);
        }
    }
    tracker.flush(now);
    std::iter::from_fn(|| tracker.poll_record()).collect()
}

/// Users keep their hash; a session works until it expires, its user signs out or is removed,
/// and always carries the user's current scope.
async fn users_and_sessions(store: &Store) {
    let user = |name: &str, scope: &str| store::User {
        name: name.into(),
        scope: scope.into(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt${name}"),
        extension: (name == "olga").then(|| "201".to_owned()),
        created_at: at(0),
    };
    assert!(store.add_user(&user("olga", "admin")).await.unwrap());
    assert!(store.add_user(&user("ivan", "read")).await.unwrap());
    assert!(!store.add_user(&user("olga", "read")).await.unwrap());
    assert_eq!(
        store.user("olga").await.unwrap(),
        Some(user("olga", "admin"))
    );
    assert_eq!(store.user("nobody").await.unwrap(), None);
    let names: Vec<String> = store
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| format!("{} {}", u.name, u.scope))
        .collect();
    assert_eq!(names, ["ivan read", "olga admin"]);

    store
        .open_session("s1", "olga", at(0), at(60))
        .await
        .unwrap();
    store
        .open_session("s2", "ivan", at(0), at(60))
        .await
        .unwrap();
    store
        .open_session("s3", "ivan", at(0), at(60))
        .await
        .unwrap();
    let s1 = store.session_by_hash("s1", at(59)).await.unwrap().unwrap();
    assert_eq!((s1.user.as_str(), s1.scope.as_str()), ("olga", "admin"));
    assert_eq!(s1.expires_at, at(60));
    assert_eq!(store.session_by_hash("s1", at(60)).await.unwrap(), None);
    assert_eq!(store.session_by_hash("nope", at(1)).await.unwrap(), None);
    // Signing out ends that session only.
    assert!(store.close_session("s2").await.unwrap());
    assert!(!store.close_session("s2").await.unwrap());
    assert!(store.session_by_hash("s3", at(1)).await.unwrap().is_some());
    // Removing the user ends the rest.
    assert!(store.remove_user("ivan").await.unwrap());
    assert!(!store.remove_user("ivan").await.unwrap());
    assert_eq!(store.session_by_hash("s3", at(1)).await.unwrap(), None);
    // Opening a session clears the expired ones.
    store
        .open_session("s4", "olga", at(61), at(120))
        .await
        .unwrap();
    assert!(!store.close_session("s1").await.unwrap());
}

/// Scale-out: a PBX's lease has one owner at a time; another instance gets it only after it
/// expired or was released.
async fn pbx_leases_one_owner_at_a_time(store: &Store) {
    let ttl = TimeDelta::seconds(15);
    assert!(store
        .acquire_lease("office", "a", ttl, at(0))
        .await
        .unwrap());
    assert!(!store
        .acquire_lease("office", "b", ttl, at(1))
        .await
        .unwrap());
    // Renewed by its owner: still a's at 15 s, after the first expiry.
    assert!(store
        .acquire_lease("office", "a", ttl, at(10))
        .await
        .unwrap());
    assert!(!store
        .acquire_lease("office", "b", ttl, at(20))
        .await
        .unwrap());
    assert!(store
        .acquire_lease("branch", "b", ttl, at(20))
        .await
        .unwrap());
    // a stops renewing (killed): b takes over once the lease has lapsed.
    assert!(store
        .acquire_lease("office", "b", ttl, at(26))
        .await
        .unwrap());
    assert!(!store
        .acquire_lease("office", "a", ttl, at(27))
        .await
        .unwrap());
    // A release hands it over at once; releasing someone else's lease does nothing.
    store.release_lease("office", "a").await.unwrap();
    store.release_lease("branch", "b").await.unwrap();
    assert!(store
        .acquire_lease("branch", "a", ttl, at(28))
        .await
        .unwrap());
    let leases: Vec<_> = store
        .leases()
        .await
        .unwrap()
        .into_iter()
        .map(|l| {
            (
                l.pbx,
                l.owner,
                l.since == at(26) || l.since == at(28),
                l.expires_at,
            )
        })
        .collect();
    assert_eq!(
        leases,
        [
            ("branch".to_owned(), "a".to_owned(), true, at(43)),
            ("office".to_owned(), "b".to_owned(), true, at(41)),
        ]
    );
}

/// The events of calls not (yet) in the journal, within the window, in arrival order: what a
/// new owner replays.
async fn unfinished_calls_for_a_takeover(store: &Store) {
    let event = |pbx: &str, seq: u64, linkedid: Option<&str>| RawEvent {
        pbx: pbx.to_owned(),
        seq,
        received_at: at(seq as i64),
        event: "Newchannel".to_owned(),
        linkedid: linkedid.map(str::to_owned),
        message: json!({"Event": "Newchannel", "Seq": seq}),
    };
    store
        .append_events(&[
            event("pbx1", 1, Some("old")),
            event("pbx1", 2, Some("done")),
            event("pbx1", 3, Some("open")),
            event("pbx1", 4, None),
            event("pbx2", 5, Some("open")),
            event("pbx1", 6, Some("done")),
            event("pbx1", 7, Some("open")),
        ])
        .await
        .unwrap();
    store
        .save_call(
            "pbx1",
            &bare_call("done", 0, Disposition::Answered),
            &[],
            at(8),
        )
        .await
        .unwrap();
    let seqs: Vec<u64> = store
        .unfinished_call_events("pbx1", at(2))
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [3, 7]);
}

/// PostgreSQL: NOTIFYs from one store reach a LISTEN of another (two instances), in order,
/// a batch in one round trip. SQLite has a single instance: no listener, and notify is a
/// no-op.
async fn live_events_between_instances(store: &Store) {
    let batch: Vec<String> = (1..=3).map(|n| format!("{{\"call\":\"{n}\"}}")).collect();
    let Some(mut listener) = store.listen(store::LIVE_CHANNEL).await.unwrap() else {
        store.notify(store::LIVE_CHANNEL, &batch).await.unwrap();
        return;
    };
    store.notify(store::LIVE_CHANNEL, &batch).await.unwrap();
    store.notify(store::LIVE_CHANNEL, &[]).await.unwrap();
    for want in &batch {
        assert_eq!(&listener.recv().await.unwrap(), want);
    }
}
