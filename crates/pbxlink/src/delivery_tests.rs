//! Delivery end to end through the binary's parts: the recorded fixture calls replayed
//! (`sim::replay`), queued as `tracking` queues them and delivered by `delivery`'s workers to
//! the fake cloud CRMs (Bitrix24, amoCRM) and a webhook receiver; and Bitrix24's
//! click-to-call (`crate::portal`) through a fake PBX. The outbox's own tests are in
//! `delivery`; these stay here because the click-to-call ones need `portal` and all of them
//! share the fixture helpers.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use calls::{CallEvent, CallRecord, Direction, TrackerConfig};
use delivery::outbox::fake_amocrm;
use delivery::outbox::fake_bitrix24;
use delivery::outbox::testing::{
    amocrm, bitrix24_with, fast_workers, per_call, temp_store, until_delivered,
};
use delivery::outbox::{plan_all, plan_event_all, spawn_workers, Crm, CrmConfig};
use serde_json::Value;
use store::{OutboxFilter, Store};

use crate::portal;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

/// A fixture set replayed through the tracker: live call events and finished calls, in the
/// order the tracker gave them.
#[derive(Clone)]
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
            let msgs = sim::replay::load(&std::fs::read(file).unwrap()).unwrap();
            sim::replay::replay(&msgs, TrackerConfig::default(), true)
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
async fn save_tracked(store: &Store, crms: &[Crm], tracked: &[Tracked]) -> Vec<CallRecord> {
    let mut records = Vec::new();
    for item in tracked {
        let now = chrono::Utc::now();
        match item {
            Tracked::Event(event) => {
                let rows = plan_event_all(crms, "pbx1", event);
                let live = [(event.call_id.as_str(), &rows[..])];
                store.save_journal("pbx1", &live, &[], now).await.unwrap();
            }
            Tracked::Call(record) => {
                let rows = plan_all(crms, "pbx1", record);
                let call = [(record, &rows[..])];
                store.save_journal("pbx1", &[], &call, now).await.unwrap();
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
    let records = save_tracked(&store, std::slice::from_ref(&crm), &tracked).await;
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

/// A webhook receiver: (endpoint, `webhook-id`, body) of every request, in arrival order.
type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

async fn webhook_receiver() -> (Received, String) {
    use axum::extract::{Path as UrlPath, State};
    async fn receive(
        State(received): State<Received>,
        UrlPath(endpoint): UrlPath<String>,
        headers: axum::http::HeaderMap,
        axum::Json(body): axum::Json<Value>,
    ) -> axum::http::StatusCode {
        let id = headers.get("webhook-id").and_then(|v| v.to_str().ok());
        let id = id.unwrap_or_default().to_owned();
        received.lock().unwrap().push((endpoint, id, body));
        axum::http::StatusCode::NO_CONTENT
    }
    let received = Received::default();
    let app = axum::Router::new()
        .route("/{endpoint}", axum::routing::post(receive))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (received, url)
}

/// A webhook connector named `name`, POSTing to `{url}/{name}` the `events` listed.
fn webhook(url: &str, name: &str, events: &str) -> Crm {
    let config: CrmConfig = toml::from_str(&format!(
        r#"
        kind = "webhook"
        name = "{name}"
        url = "{url}/{name}"
        secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
        events = {events}
        "#
    ))
    .unwrap();
    Crm::from_config(&config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_calls_reach_webhooks_as_live_events_then_the_record() {
    let tracked = fixture_calls("asterisk-22-pjsip");
    let (received, url) = webhook_receiver().await;
    let endpoints = || {
        [
            webhook(&url, "all", "[]"),
            webhook(&url, "ended", r#"["call.ended"]"#),
        ]
    };
    let (_dir, store) = temp_store().await;
    let records = save_tracked(&store, &endpoints(), &tracked).await;
    spawn_workers(store.clone(), endpoints().to_vec(), fast_workers("w1")).unwrap();
    until_delivered(&store, &records).await;
    let received = received.lock().unwrap().clone();
    let mut calls: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for (endpoint, _, body) in &received {
        let data = &body["data"];
        let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        let (call, event) = match body["type"].as_str().unwrap() {
            "call.started" => (
                &data["call_id"],
                format!("started({})", text(&data["direction"])),
            ),
            "call.ringing" => (&data["call_id"], format!("ringing({})", data["extensions"])),
            "call.answered" => (&data["call_id"], format!("answered({})", text(&data["by"]))),
            "call.transferred" => {
                let transfer = &data["transfer"];
                let (from, to) = (text(&transfer["from"]), text(&transfer["to"]));
                (&data["call_id"], format!("transferred({from}->{to})"))
            }
            "call.ended" => {
                let disposition = text(&data["call"]["disposition"]);
                (&data["call"]["id"], format!("ended({disposition})"))
            }
            other => (&data["call_id"], other.to_owned()),
        };
        let key = (endpoint.as_str(), call.as_str().unwrap());
        calls.entry(key).or_default().push(event.replace('"', ""));
    }
    let lines: Vec<String> = calls
        .iter()
        .map(|((endpoint, call), events)| format!("{endpoint} {call}: {}", events.join(" ")))
        .collect();
    expect_test::expect![[r#"
        all 1795388070.0: started(inbound) ringing([201]) ringing([201,203]) ringing([201,203,202]) answered(202) ended(answered) recording.ready
        all 1795388102.20: started(inbound) ringing([202]) ringing([202,201]) ringing([202,201,203]) ended(no_answer) recording.ready
        all 1795388145.37: started(inbound) ringing([201]) ended(cancelled) recording.ready
        all 1795388165.41: started(inbound) ringing([201]) ringing([203]) answered(203) ended(answered) recording.ready
        all 1795388209.55: started(inbound) ringing([201]) ringing([203]) ended(no_answer) recording.ready
        all 1795388234.69: started(internal) ringing([202]) answered(202) ended(answered) recording.ready
        all 1795388262.73: started(internal) ringing([204]) ended(busy) recording.ready
        all 1795388277.76: started(internal) answered(15557654321) ended(answered) recording.ready
        all 1795388306.80: started(internal) ended(no_answer) recording.ready
        all 1795388361.84: started(internal) ringing([201]) answered(15557654321) ended(answered) recording.ready
        all 1795388399.88: started(inbound) ringing([202]) answered(203) ended(answered) recording.ready
        all 1795388431.94: started(inbound) answered(15557654321) ended(answered) recording.ready
        all 1795388463.102: started(inbound) ringing([201]) answered(201) transferred(201->203) ringing([203]) ended(answered) recording.ready
        all 1795388509.109: started(inbound) ringing([201]) answered(201) ringing([203]) transferred(201->203) ended(answered) recording.ready
        all 1795388580.120: started(internal) answered(8000) ended(answered) recording.ready
        all 1795388583.123: started(inbound) answered(8000) ended(answered) recording.ready
        all 1795388586.124: started(internal) answered(8000) ended(answered) recording.ready
        ended 1795388070.0: ended(answered)
        ended 1795388102.20: ended(no_answer)
        ended 1795388145.37: ended(cancelled)
        ended 1795388165.41: ended(answered)
        ended 1795388209.55: ended(no_answer)
        ended 1795388234.69: ended(answered)
        ended 1795388262.73: ended(busy)
        ended 1795388277.76: ended(answered)
        ended 1795388306.80: ended(no_answer)
        ended 1795388361.84: ended(answered)
        ended 1795388399.88: ended(answered)
        ended 1795388431.94: ended(answered)
        ended 1795388463.102: ended(answered)
        ended 1795388509.109: ended(answered)
        ended 1795388580.120: ended(answered)
        ended 1795388583.123: ended(answered)
        ended 1795388586.124: ended(answered)"#]].assert_eq(&lines.join("\n"));
    let ids: std::collections::BTreeSet<&str> =
        received.iter().map(|(_, id, _)| id.as_str()).collect();
    let queued = store
        .list_outbox(&OutboxFilter::default(), 10_000)
        .await
        .unwrap()
        .len();
    assert_eq!(
        (ids.len(), received.len()),
        (queued, queued),
        "each row sent once, under its own id"
    );
    // A restarted process replays the calls (`run` resumes them from the raw event log): the
    // same steps under the same keys, so nothing is queued twice.
    save_tracked(&store, &endpoints(), &tracked).await;
    let requeued = store
        .list_outbox(&OutboxFilter::default(), 10_000)
        .await
        .unwrap();
    assert_eq!(requeued.len(), queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_calls_reach_amocrm_as_documented_requests() {
    let tracked = fixture_calls("asterisk-22-pjsip");
    let (fake, url) = fake_amocrm::start("long-lived-token").await;
    {
        let mut fake = fake.lock().unwrap();
        // The number the agents call has a card; the caller's number has none.
        fake.contacts.insert("5557654321".into(), 4021);
        // amoCRM busy for a moment: its rate limit and gateway errors, all retried.
        fake.fail_next.extend([429, 502, 503, 429]);
    }
    let crm = amocrm(&url, "long-lived-token");
    let (_dir, store) = temp_store().await;
    let records = save_tracked(&store, std::slice::from_ref(&crm), &tracked).await;
    spawn_workers(store.clone(), vec![crm], fast_workers("w1")).unwrap();
    until_delivered(&store, &records).await;
    let fake = fake.lock().unwrap();
    assert_eq!(fake.refused, 4, "only the failures asked for");
    let mut calls: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (key, path, body) in &fake.log {
        let call = key.split(':').nth(2).unwrap();
        let request = match path.as_str() {
            "/api/v2/events" => format!("notify({})", body["add"][0]["users"]),
            "/api/v4/calls" => {
                let c = &body[0];
                let link = c["link"].as_str().map(|l| l.rsplit('/').next().unwrap());
                format!(
                    "call({} {} {}s status {} user {} link {})",
                    c["direction"],
                    c["phone"],
                    c["duration"],
                    c["call_status"],
                    c["responsible_user_id"],
                    link.unwrap_or("-"),
                )
            }
            _ => {
                let lead = &body[0];
                format!(
                    "unsorted({} pipeline {})",
                    lead["metadata"]["phone"], lead["pipeline_id"]
                )
            }
        };
        calls
            .entry(call)
            .or_default()
            .push(request.replace('"', ""));
    }
    let lines: Vec<String> = calls
        .iter()
        .map(|(call, requests)| format!("{call}: {}", requests.join(" ")))
        .collect();
    expect_test::expect![[r#"
        1795388070.0: notify([501]) notify([503]) notify([502]) call(inbound 15551234567 7s status 4 user 502 link rg-600-15551234567-20261122-225430-1795388070.0.wav) unsorted(15551234567 pipeline 77)
        1795388102.20: notify([502]) notify([501]) notify([503]) call(inbound 15551234567 0s status 6 user 502 link rg-601-15551234567-20261122-225502-1795388102.20.wav) unsorted(15551234567 pipeline 77)
        1795388145.37: notify([501]) call(inbound 15551234567 0s status 6 user 501 link external-201-15551234567-20261122-225545-1795388145.37.wav) unsorted(15551234567 pipeline 77)
        1795388165.41: notify([501]) notify([503]) call(inbound 15551234567 8s status 4 user 503 link q-600-15551234567-20261122-225608-1795388165.41.wav) unsorted(15551234567 pipeline 77)
        1795388209.55: notify([501]) notify([503]) call(inbound 15551234567 0s status 6 user 501 link q-600-15551234567-20261122-225649-1795388209.55.wav) unsorted(15551234567 pipeline 77)
        1795388277.76: call(outbound 15557654321 8s status 4 user 501 link out-15557654321-201-20261122-225757-1795388277.76.wav)
        1795388306.80: call(outbound 15557650000 0s status 6 user 501 link out-15557650000-201-20261122-225826-1795388306.80.wav)
        1795388361.84: call(outbound 15557654321 11s status 4 user 501 link out-15557654321-201-20261122-225923-1795388361.84.wav)
        1795388399.88: notify([502]) call(inbound 15551234567 5s status 4 user 503 link external-202-15551234567-20261122-225959-1795388399.88.wav) unsorted(15551234567 pipeline 77)
        1795388431.94: call(inbound 15551234567 8s status 4 user 501 link external-201-15551234567-20261122-230031-1795388431.94.wav) unsorted(15551234567 pipeline 77)
        1795388463.102: notify([501]) notify([503]) call(inbound 15551234567 13s status 4 user 501 link external-201-15551234567-20261122-230103-1795388463.102.wav) unsorted(15551234567 pipeline 77)
        1795388509.109: notify([501]) notify([503]) call(inbound 15551234567 25s status 4 user 501 link external-201-15551234567-20261122-230149-1795388509.109.wav) unsorted(15551234567 pipeline 77)
        1795388583.123: call(inbound 15551234567 10s status 4 user 501 link conf-8000-15551234567-20261122-230304-1795388583.123.wav) unsorted(15551234567 pipeline 77)"#]].assert_eq(&lines.join("\n"));
    let mut keys: Vec<(&str, &str)> = fake
        .log
        .iter()
        .map(|(k, p, _)| (k.as_str(), p.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), fake.log.len(), "no request accepted twice");
}

/// The Originates the PBX got, one line each (ActionID left out).
fn originates(actions: &pbx::testing::Actions) -> Vec<String> {
    pbx::testing::sent(actions, &["Originate"])
}

/// The PBX places a click-to-call: a tracked call like any other, its id the Originate's
/// `ChannelId`. Here, a fixture's outbound call to `number` under that id; what Bitrix24 then
/// gets, one line per accepted method.
async fn click_to_call_finished(
    fake: &fake_bitrix24::Fake,
    crm: Crm,
    number: &str,
    id: &str,
) -> Vec<String> {
    let tracked = fixture_calls("asterisk-22-pjsip");
    let linkedid = tracked
        .iter()
        .find_map(|t| match t {
            Tracked::Call(r)
                if r.direction == Direction::Outbound && r.to.as_deref() == Some(number) =>
            {
                Some(r.id.clone())
            }
            _ => None,
        })
        .unwrap();
    let call: Vec<Tracked> = tracked
        .into_iter()
        .filter_map(|t| match t {
            Tracked::Event(mut event) if event.call_id == linkedid => {
                event.call_id = id.to_owned();
                Some(Tracked::Event(event))
            }
            Tracked::Call(mut record) if record.id == linkedid => {
                record.id = id.to_owned();
                Some(Tracked::Call(record))
            }
            _ => None,
        })
        .collect();
    let (_dir, store) = temp_store().await;
    let records = save_tracked(&store, std::slice::from_ref(&crm), &call).await;
    spawn_workers(store.clone(), vec![crm], fast_workers("w1")).unwrap();
    until_delivered(&store, &records).await;
    let fake = fake.lock().unwrap();
    fake.log
        .iter()
        .map(|(method, params)| format!("{method} {params}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_click_to_call_needs_the_application_token_and_is_finished_under_its_call_id() {
    let (fake, url) = fake_bitrix24::start(1e9, 1e9).await;
    let event = fake.lock().unwrap().click_to_call(11, "+1 (555) 765-4321");
    let crm = bitrix24_with(&url, 1000.0, r#"application_token = "app-token""#);
    let (client, actions) = pbx::testing::start(&[]).await;
    let crms: Arc<[Crm]> = Arc::from(vec![crm.clone()]);
    let c2c = portal::ClickToCall::new(crms, HashMap::from([("pbx1".to_owned(), client)]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handler = format!(
        "http://{}/bitrix24/b24/events",
        listener.local_addr().unwrap()
    );
    let app = c2c.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // The event as Bitrix24 POSTs it to the application's handler.
    let post = |token: &str| {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("event", "ONEXTERNALCALLSTART");
        for (name, value) in event.as_object().unwrap() {
            form.append_pair(&format!("data[{name}]"), value.as_str().unwrap());
        }
        form.append_pair("ts", "1795388277");
        form.append_pair("auth[domain]", "acme.bitrix24.ru");
        form.append_pair("auth[application_token]", token);
        let request = reqwest::Client::new()
            .post(&handler)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.finish());
        async move {
            let response = request.send().await.unwrap();
            format!(
                "{} {}",
                response.status().as_u16(),
                response.text().await.unwrap()
            )
        }
    };
    let refused = post("forged").await;
    assert!(
        originates(&actions).is_empty(),
        "a refused event places no call"
    );
    let placed = post("app-token").await;
    let sent = originates(&actions);
    let id = sent[0].split("ChannelId=").nth(1).unwrap().to_owned();
    expect_test::expect![[r#"
        401 {"error":"wrong auth[application_token]"}
        202 {"bitrix24_call_id":"externalCall.1","call_id":"c2c-ID"}
        Action=Originate Channel=PJSIP/201 Context=from-internal Exten=15557654321 Priority=1 CallerID="15557654321" <201> Async=yes Variable=BITRIX24_CALL_ID=externalCall.1 ChannelId=c2c-ID"#]].assert_eq(
        &[refused, placed, sent.join("\n")]
            .join("\n")
            .replace(&id, "c2c-ID"),
    );
    let steps = click_to_call_finished(&fake, crm, "15557654321", &id).await;
    expect_test::expect![[r#"
        telephony.externalcall.finish {"CALL_ID":"externalCall.1","DURATION":8,"RECORD_URL":"https://pbx.example/rec/out-15557654321-201-20261122-225757-1795388277.76.wav","STATUS_CODE":"200","USER_ID":11}
        telephony.externalcall.attachRecord {"CALL_ID":"externalCall.1","FILENAME":"out-15557654321-201-20261122-225757-1795388277.76.wav","RECORD_URL":"https://pbx.example/rec/out-15557654321-201-20261122-225757-1795388277.76.wav"}"#]].assert_eq(&steps.join("\n"));
    assert_eq!(
        fake.lock().unwrap().registered.len(),
        1,
        "only Bitrix24's own registration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_offline_click_to_call_is_polled_placed_once_and_finished() {
    let (fake, url) = fake_bitrix24::start(1e9, 1e9).await;
    {
        let mut fake = fake.lock().unwrap();
        let event = fake.click_to_call(11, "15557654321");
        fake.offline.push((1, event));
    }
    let crm = bitrix24_with(&url, 1000.0, "offline_events_poll = 5");
    let (client, actions) = pbx::testing::start(&[]).await;
    let crms: Arc<[Crm]> = Arc::from(vec![crm.clone()]);
    let c2c = portal::ClickToCall::new(crms, HashMap::from([("pbx1".to_owned(), client)]));
    let http = reqwest::Client::new();
    let polled = [
        c2c.poll_once(&crm, &http).await.unwrap(),
        c2c.poll_once(&crm, &http).await.unwrap(),
    ];
    assert_eq!(
        polled,
        [1, 0],
        "the event was handled, then cleared from the queue"
    );
    assert!(fake.lock().unwrap().offline.is_empty());
    let sent = originates(&actions);
    let id = sent[0].split("ChannelId=").nth(1).unwrap().to_owned();
    expect_test::expect![[r#"Action=Originate Channel=PJSIP/201 Context=from-internal Exten=15557654321 Priority=1 CallerID="15557654321" <201> Async=yes Variable=BITRIX24_CALL_ID=externalCall.1 ChannelId=c2c-ID"#]].assert_eq(&sent.join("\n").replace(&id, "c2c-ID"));
    let steps = click_to_call_finished(&fake, crm, "15557654321", &id).await;
    expect_test::expect![[r#"
        event.offline.get {"clear":0,"filter":{"=EVENT_NAME":"ONEXTERNALCALLSTART"},"limit":50}
        event.offline.clear {"id":["1"],"process_id":"p1"}
        event.offline.get {"clear":0,"filter":{"=EVENT_NAME":"ONEXTERNALCALLSTART"},"limit":50}
        telephony.externalcall.finish {"CALL_ID":"externalCall.1","DURATION":8,"RECORD_URL":"https://pbx.example/rec/out-15557654321-201-20261122-225757-1795388277.76.wav","STATUS_CODE":"200","USER_ID":11}
        telephony.externalcall.attachRecord {"CALL_ID":"externalCall.1","FILENAME":"out-15557654321-201-20261122-225757-1795388277.76.wav","RECORD_URL":"https://pbx.example/rec/out-15557654321-201-20261122-225757-1795388277.76.wav"}"#]].assert_eq(&steps.join("\n"));
    assert_eq!(
        fake.lock().unwrap().registered.len(),
        1,
        "only Bitrix24's own registration"
    );
}
