//! Crash safety of CRM delivery, against the real binary: `pbxlink run` tracks a simulated
//! PBX and delivers every finished call to a webhook CRM that takes its time answering; the
//! process is killed with SIGKILL while requests are in flight, and a second process started
//! on the same database finishes the job.
//!
//! What the CRM sees: a request in flight at the kill reached the CRM (which acted on it), but
//! its answer never reached pbxlink, so the row stayed `in_flight`. When its lease runs out the
//! second process sends it again, with the same `webhook-id` (the row's idempotency key); the
//! CRM, as Standard Webhooks asks of receivers, recognises the id and acknowledges without
//! acting twice. Delivery is at least once on the wire and exactly once in effect.
//!
//! The second process also resumes the first one's calls in progress from the raw event log;
//! their live events (`call.started`, `call.ringing`...) come out again under the same keys,
//! so none is queued twice.

mod gateway;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use gateway::Gateway;
use store::{OutboxFilter, OutboxStatus, Store};
use tokio::sync::watch;

const TOKEN: &str = "kill-test-token";

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

/// `pbxlink simulate` serving AMI on a free port, killed when dropped.
struct Simulator {
    child: Child,
    port: u16,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Simulator {
    /// Calls without end, sent as fast as the gateway reads them.
    fn start() -> Simulator {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pbxlink"))
            .args([
                "simulate",
                "--listen",
                "127.0.0.1:0",
                "--fast",
                "--seed",
                "4",
            ])
            .env_remove("PBXLINK_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = log
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                let addr = line.strip_prefix("simulated Asterisk AMI on ")?;
                addr.rsplit(':').next()?.parse().ok()
            })
            .expect("pbxlink simulate never said where it listens");
        std::thread::spawn(move || log.for_each(drop));
        Simulator { child, port }
    }
}

/// Polls until `done` holds: a hang guard, not a timing assertion.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..1200 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
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

    let simulator = Simulator::start();
    let dir = tempfile::tempdir().unwrap();
    // A short lease, so that the second process takes over the killed one's rows quickly.
    let config = format!(
        r#"
        [[pbx]]
        name = "sim"
        host = "127.0.0.1"
        port = {port}
        username = "admin"
        secret = "amp111"

        [outbox]
        lease = 3

        [[crm]]
        kind = "webhook"
        name = "erp"
        url = "{crm_url}"
        secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
        "#,
        port = simulator.port,
    );
    let first = Gateway::start_in(dir.path(), TOKEN, Some(&config));
    until("the CRM holds requests in flight", async || {
        crm.lock().unwrap().held >= 5
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
    let in_flight = OutboxFilter {
        status: Some(OutboxStatus::InFlight),
        ..OutboxFilter::default()
    };
    let orphans: BTreeSet<String> = store
        .list_outbox(&in_flight, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.idempotency_key)
        .collect();
    // Rows the CRM acted on whose answer the database never recorded: what a crash loses.
    let lost_answers: BTreeSet<String> = {
        let crm = crm.lock().unwrap();
        orphans
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
    until("every outbox row is delivered", async || {
        let counts = store.outbox_counts().await.unwrap();
        counts
            .iter()
            .all(|count| count.status == OutboxStatus::Delivered)
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
    // The requests whose answers the kill lost, and only those, reached the CRM twice.
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
        "{calls} calls, {} deliveries; {} in flight at the kill, {} of them acted on by the CRM \
         (received twice, acted on once)",
        rows.len(),
        orphans.len(),
        lost_answers.len()
    );
    assert!(calls >= 20, "only {calls} calls were journaled");
}
