//! Crash safety of CRM delivery, against the real binary: `pbxlink run` tracks a simulated
//! PBX and delivers every finished call to a webhook CRM that takes its time answering; the
//! process is killed with SIGKILL while requests are in flight, and a second process started
//! on the same database finishes the job.
//!
//! What the CRM sees: a request in flight at the kill reached the CRM (which acted on it), but
//! its answer never reached pbxlink, so the row stayed `in_flight` (or, past the HTTP timeout,
//! went back to wait for a retry). When its lease runs out the second process sends it again,
//! with the same `webhook-id` (the row's idempotency key); the CRM, as Standard Webhooks asks
//! of receivers, recognises the id and acknowledges without acting twice. Delivery is at least once on the wire and exactly once in effect.
//!
//! The second process also resumes the first one's calls in progress from the raw event log;
//! their live events (`call.started`, `call.ringing`...) come out again under the same keys,
//! so none is queued twice.

mod gateway;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use gateway::{eventually, Gateway, Simulator};
use store::{OutboxFilter, OutboxStatus, Store};
use tokio::sync::watch;

const TOKEN: &str = "kill-test-token";
/// Bounds a hung wait; nothing asserts on time.
const LIMIT: Duration = Duration::from_secs(120);

/// A CRM behind a Standard Webhooks endpoint. It acts on a request as soon as it arrives
/// (once per `webhook-id`: a repeat is acknowledged and ignored), then answers at once, or,
/// past `answer_first` requests, only when released: those are the requests whose answers a
/// crash loses.
#[derive(Debug, Default)]
struct FakeCrm {
    answer_first: usize,
    /// `webhook-id` of every request, in arrival order.
    received: Vec<String>,
    /// What the CRM acted on: webhook-id -> event type.
    applied: BTreeMap<String, String>,
    /// Requests held without an answer right now.
    held: usize,
}

type Shared = (Arc<Mutex<FakeCrm>>, watch::Receiver<bool>);

async fn hook(
    State((crm, mut released)): State<Shared>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) else {
        return StatusCode::BAD_REQUEST;
    };
    let event: serde_json::Value = match serde_json::from_str(&body) {
        Ok(event) => event,
        Err(_) => return StatusCode::BAD_REQUEST,
    };
    let hold = {
        let mut crm = crm.lock().unwrap();
        crm.received.push(id.to_owned());
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        crm.applied.entry(id.to_owned()).or_insert(kind);
        let hold = crm.received.len() > crm.answer_first;
        crm.held += usize::from(hold);
        hold
    };
    if hold {
        // A client that goes away (SIGKILL) drops this future; the CRM has acted all the same.
        let _ = released.wait_for(|released| *released).await;
        crm.lock().unwrap().held -= 1;
    }
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_delivery_loses_nothing_and_applies_nothing_twice() {
    let (release, released) = watch::channel(false);
    let crm = Arc::new(Mutex::new(FakeCrm {
        answer_first: 150,
        ..FakeCrm::default()
    }));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state((crm.clone(), released));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let crm_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Calls without end, sent as fast as the gateway reads them.
    let simulator = Simulator::start(&["--fast", "--seed", "4"]);
    let dir = tempfile::tempdir().unwrap();
    // A short lease, so that the second process takes over the killed one's rows quickly.
    let config = format!(
        r#"
        {pbx}
        [outbox]
        lease = 3

        [[crm]]
        kind = "webhook"
        name = "erp"
        url = "{crm_url}"
        secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
        "#,
        pbx = simulator.pbx_config("sim"),
    );
    let first = Gateway::start_in(dir.path(), TOKEN, Some(&config));
    eventually("the CRM holds requests in flight", LIMIT, async || {
        (crm.lock().unwrap().held >= 5).then_some(())
    })
    .await;
    first.kill_hard();
    // No new calls from here on: what the first process journaled is what must be delivered.
    drop(simulator);

    let url = format!(
        "sqlite://{}?mode=rw",
        dir.path().join("data/pbxlink.db").display()
    );
    let store = Store::connect(&url).await.unwrap();
    // Rows the CRM acted on whose answer the database never recorded. Most were in flight at
    // the kill (what a crash loses); on a slow machine a held request may also have outlived
    // the HTTP timeout and been put back for a retry: the same webhook-id goes out again, as it
    // must. A row recorded delivered is never sent again.
    let undelivered: BTreeSet<String> = store
        .list_outbox(&OutboxFilter::default(), 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.status != OutboxStatus::Delivered)
        .map(|row| row.idempotency_key)
        .collect();
    let lost_answers: BTreeSet<String> = {
        let crm = crm.lock().unwrap();
        undelivered
            .iter()
            .filter(|key| crm.applied.contains_key(*key))
            .cloned()
            .collect()
    };
    assert!(
        !lost_answers.is_empty(),
        "the kill did not land mid-delivery"
    );
    release.send(true).unwrap();

    let second = Gateway::start_in(dir.path(), TOKEN, Some(&config));
    eventually("every outbox row is delivered", LIMIT, async || {
        let counts = store.outbox_counts().await.unwrap();
        counts
            .iter()
            .all(|count| count.status == OutboxStatus::Delivered)
            .then_some(())
    })
    .await;
    second.kill_hard();

    let rows = store
        .list_outbox(&OutboxFilter::default(), 100_000)
        .await
        .unwrap();
    let keys: BTreeSet<String> = rows.iter().map(|r| r.idempotency_key.clone()).collect();
    let crm = crm.lock().unwrap();
    let applied: BTreeSet<String> = crm.applied.keys().cloned().collect();
    assert_eq!(
        keys, applied,
        "the CRM acted on exactly the queued deliveries"
    );
    let mut sent: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &crm.received {
        *sent.entry(id).or_default() += 1;
    }
    let resent: BTreeSet<String> = sent
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id.to_string())
        .collect();
    // The requests whose answers were lost, and only those, reached the CRM twice.
    assert_eq!(resent, lost_answers);
    // A live event queued twice would be two rows with one payload (the event, its instant).
    let mut live: BTreeMap<String, usize> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.kind.starts_with("call.") && r.kind != "call.ended")
    {
        *live
            .entry(format!("{} {}", row.kind, row.payload))
            .or_default() += 1;
    }
    let twice: Vec<_> = live.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "live events queued twice: {twice:?}");
    assert!(!live.is_empty(), "no live event was queued");
    let calls = rows.iter().filter(|r| r.kind == "call.ended").count();
    eprintln!(
        "{calls} calls, {} deliveries; {} undelivered at the kill, {} of them acted on by the CRM \
         (received twice, acted on once)",
        rows.len(),
        undelivered.len(),
        lost_answers.len()
    );
    assert!(calls >= 20, "only {calls} calls were journaled");
}
