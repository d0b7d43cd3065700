//! The webhook connector: call events POSTed as JSON to configured URLs, signed per the
//! Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
//!
//! This is how 1C HTTP services and custom CRMs integrate: the receiver recomputes
//! `base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))` and compares.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use calls::{CallEvent, CallRecord};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use serde_json::json;
use sha2::Sha256;

use crate::delivery::{
    classify_status, lock, Connector, DeliveryError, HttpRequest, HttpResponse, OutboxItem,
    Progress, RecordingHandOver, RecordingReady, Step,
};

/// `call.ended`: sent with the finished call's record rather than as a live event.
const CALL_ENDED: &str = "call.ended";

/// `recording.ready`: a call's recording can be fetched.
pub const RECORDING_READY: &str = "recording.ready";

/// Event types a webhook endpoint can subscribe to.
pub const EVENT_TYPES: [&str; 6] = [
    "call.started",
    "call.ringing",
    "call.answered",
    "call.transferred",
    "call.ended",
    "recording.ready",
];

/// A signing secret: `whsec_<base64>` as Standard Webhooks issues them, or any other string,
/// whose bytes are then the key.
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

impl SigningSecret {
    /// Parses a configured secret.
    pub fn parse(secret: &str) -> Result<Self, WebhookConfigError> {
        match secret.strip_prefix("whsec_") {
            Some(encoded) => BASE64
                .decode(encoded)
                .map(Self)
                .map_err(|e| WebhookConfigError::BadSecret(e.to_string())),
            None if secret.is_empty() => Err(WebhookConfigError::BadSecret("empty".into())),
            None => Ok(Self(secret.as_bytes().to_vec())),
        }
    }
}

/// A webhook endpoint configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookConfigError {
    /// The secret is empty or not valid `whsec_` base64.
    #[error("bad webhook secret: {0}")]
    BadSecret(String),
    /// The filter names an event type that does not exist.
    #[error("unknown webhook event type {0:?} (known: {EVENT_TYPES:?})")]
    UnknownEvent(String),
}

/// One webhook endpoint.
#[derive(Debug)]
pub struct Webhook {
    url: String,
    /// Every secret signs each message: during a rotation the receiver accepts either.
    secrets: Vec<SigningSecret>,
    events: Vec<String>,
    /// Calls in progress (`pbx/linkedid`): how many live events each step key was given so
    /// far, so that two events of one type at one instant still get keys of their own.
    live: Mutex<HashMap<String, HashMap<String, u32>>>,
}

impl Webhook {
    /// An endpoint for `url`, signing with `secrets` (none: unsigned), sending the `events`
    /// listed (empty: every type).
    pub fn new(
        url: impl Into<String>,
        secrets: Vec<SigningSecret>,
        events: &[String],
    ) -> Result<Self, WebhookConfigError> {
        if let Some(unknown) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
            return Err(WebhookConfigError::UnknownEvent(unknown.clone()));
        }
        let events = if events.is_empty() {
            EVENT_TYPES.iter().map(|e| e.to_string()).collect()
        } else {
            events.to_vec()
        };
        Ok(Self {
            url: url.into(),
            secrets,
            events,
            live: Mutex::default(),
        })
    }

    /// Whether this endpoint wants `event_type`.
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| e == event_type)
    }

    /// The step a live call event of PBX `pbx` gives (`call.started`, `call.ringing`,
    /// `call.answered`, `call.transferred`, data: the event and `pbx`), if this endpoint wants
    /// it; `call.ended` goes with the record ([`Webhook::plan`]).
    ///
    /// The step key is the type and the instant in microseconds, `call.ringing@1795388070123456`,
    /// with `#2`, `#3`... from the second event of one type at one instant. Microseconds are what
    /// the raw event log keeps, so a call resumed from the log after a restart replays its
    /// events with the same instants, in the same order: the same keys, queued once.
    pub fn plan_event(&self, pbx: &str, event: &CallEvent) -> Option<Step> {
        let mut data = serde_json::to_value(event).ok()?;
        let object = data.as_object_mut()?;
        let kind = object.remove("type")?.as_str()?.to_owned();
        if kind == CALL_ENDED || !self.wants(&kind) {
            return None;
        }
        object.insert("pbx".to_owned(), json!(pbx));
        let base = format!("{kind}@{}", event.at.timestamp_micros());
        let mut live = lock(&self.live);
        let seen = live
            .entry(format!("{pbx}/{}", event.call_id))
            .or_default()
            .entry(base.clone())
            .or_default();
        *seen += 1;
        let key = match *seen {
            1 => base,
            n => format!("{base}#{n}"),
        };
        Some(Step {
            key,
            kind,
            payload: data,
        })
    }

    /// The closing steps of a finished call of PBX `pbx`, filtered: `call.ended` with the
    /// record, then `recording.ready` naming the PBX's file when the call has one and its
    /// recording goes with it (handed over [`RecordingHandOver::Later`], the recordings worker
    /// sends its own with a download link instead: [`Webhook::plan_recording`]).
    pub fn plan(&self, pbx: &str, record: &CallRecord, hand_over: RecordingHandOver) -> Vec<Step> {
        lock(&self.live).remove(&format!("{pbx}/{}", record.id));
        let ended = Step::once(CALL_ENDED, json!({ "call": record, "pbx": pbx }));
        let recording = record
            .recording
            .as_ref()
            .filter(|_| hand_over == RecordingHandOver::WithCall)
            .map(|file| {
                let data = json!({ "call_id": record.id, "pbx": pbx, "recording": file });
                Step::once(RECORDING_READY, data)
            });
        std::iter::once(ended)
            .chain(recording)
            .filter(|step| self.wants(&step.kind))
            .collect()
    }

    /// The `recording.ready` of a recording of PBX `pbx` handed over after its call
    /// ([`RecordingHandOver::Later`]): its download link, expiry, hash, size and length, and
    /// the PBX's file as `source`; `None` when this endpoint does not want it.
    pub fn plan_recording(
        &self,
        pbx: &str,
        record: &CallRecord,
        ready: &RecordingReady<'_>,
    ) -> Option<Step> {
        self.wants(RECORDING_READY).then(|| {
            let payload = json!({
                "call_id": record.id,
                "pbx": pbx,
                "url": ready.url,
                "expires_at": ready.expires_at,
                "sha256": ready.sha256,
                "bytes": ready.bytes,
                "duration_ms": ready.duration_ms,
                "source": record.recording,
            });
            Step::once(RECORDING_READY, payload)
        })
    }

    /// `webhook-signature` for a message: one `v1,<base64>` per secret, space-separated.
    pub fn signature(&self, id: &str, timestamp: i64, body: &str) -> String {
        let signed = format!("{id}.{timestamp}.{body}");
        let signatures: Vec<String> = self
            .secrets
            .iter()
            .map(|secret| {
                // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
                let mut mac = Hmac::<Sha256>::new_from_slice(&secret.0)
                    .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
                mac.update(signed.as_bytes());
                format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
            })
            .collect();
        signatures.join(" ")
    }
}

impl Connector for Webhook {
    fn next_request(
        &self,
        item: &OutboxItem,
        now: DateTime<Utc>,
    ) -> Result<HttpRequest, DeliveryError> {
        let envelope = serde_json::json!({
            "type": item.kind,
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "data": item.payload,
        });
        let body = envelope.to_string();
        // The idempotency key is stable across retries, which is what `webhook-id` must be.
        let id = item.idempotency_key.clone();
        let timestamp = now.timestamp();
        let mut headers = vec![
            ("webhook-id".to_owned(), id.clone()),
            ("webhook-timestamp".to_owned(), timestamp.to_string()),
        ];
        if !self.secrets.is_empty() {
            let signature = self.signature(&id, timestamp, &body);
            headers.push(("webhook-signature".to_owned(), signature));
        }
        Ok(HttpRequest {
            url: self.url.clone(),
            headers,
            body,
        })
    }

    fn on_response(
        &self,
        _item: &OutboxItem,
        response: &HttpResponse,
    ) -> Result<Progress, DeliveryError> {
        match response.status {
            200..=299 => Ok(Progress::Delivered),
            status => Err(classify_status(
                status,
                response.retry_after,
                &response.body,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn hook(secrets: &[&str], events: &[&str]) -> Webhook {
        let secrets = secrets
            .iter()
            .map(|s| SigningSecret::parse(s).unwrap())
            .collect();
        let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        Webhook::new("https://erp.example/hs/pbx/event", secrets, &events).unwrap()
    }

    #[test]
    fn signature_matches_the_standard_webhooks_reference_vector() {
        // The example from the Standard Webhooks specification and its reference libraries.
        let webhook = hook(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], &[]);
        let body = r#"{"test": 2432232314}"#;
        expect![[r#"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="#]]
            .assert_eq(&webhook.signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body));
    }

    #[test]
    fn rotation_signs_with_every_secret() {
        let webhook = hook(
            &["old-secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            &[],
        );
        let signature = webhook.signature("id", 1, "{}");
        assert_eq!(signature.split(' ').count(), 2, "{signature}");
    }

    fn check_request(webhook: &Webhook, expect: Expect) {
        let item = OutboxItem {
            call_id: "1700000000.1".into(),
            kind: "call.ended".into(),
            payload: serde_json::json!({"call": {"id": "1700000000.1"}}),
            idempotency_key: "webhook:erp:1700000000.1:call.ended".into(),
        };
        let now = DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        let request = webhook.next_request(&item, now).unwrap();
        expect.assert_debug_eq(&request);
    }

    #[test]
    fn requests_carry_id_timestamp_and_signature() {
        check_request(
            &hook(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], &[]),
            expect![[r#"
                HttpRequest {
                    url: "https://erp.example/hs/pbx/event",
                    headers: [
                        (
                            "webhook-id",
                            "webhook:erp:1700000000.1:call.ended",
                        ),
                        (
                            "webhook-timestamp",
                            "1700000100",
                        ),
                        (
                            "webhook-signature",
                            "v1,2LpLWMCMTmkxshoii1aq2N8QMzPqUmIL9yF0O7RlxK4=",
                        ),
                    ],
                    body: "{\"data\":{\"call\":{\"id\":\"1700000000.1\"}},\"timestamp\":\"2023-11-14T22:15:00Z\",\"type\":\"call.ended\"}",
                }
            "#]],
        );
        check_request(
            &hook(&[], &[]),
            expect![[r#"
            HttpRequest {
                url: "https://erp.example/hs/pbx/event",
                headers: [
                    (
                        "webhook-id",
                        "webhook:erp:1700000000.1:call.ended",
                    ),
                    (
                        "webhook-timestamp",
                        "1700000100",
                    ),
                ],
                body: "{\"data\":{\"call\":{\"id\":\"1700000000.1\"}},\"timestamp\":\"2023-11-14T22:15:00Z\",\"type\":\"call.ended\"}",
            }
        "#]],
        );
    }

    fn at(micros: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(1_795_388_070_000_000 + micros).unwrap()
    }

    /// A ring group call: phones ring, two ringing events share an instant (as they can in a
    /// replay, whose clock comes from the stream), one phone answers and transfers, the call
    /// ends; it had a recording.
    fn ring_group_call() -> (Vec<CallEvent>, CallRecord) {
        use calls::{CallEventKind as K, Direction, Disposition, Transfer, TransferKind};
        let ringing = |extensions: &[&str]| K::Ringing {
            extensions: extensions.iter().map(|e| e.to_string()).collect(),
        };
        let events = [
            (
                0,
                K::Started {
                    direction: Direction::Inbound,
                    from: Some("15551234567".into()),
                    to: Some("15550001000".into()),
                },
            ),
            (0, ringing(&["201"])),
            (1_500_250, ringing(&["201", "202"])),
            (1_500_250, ringing(&["201", "202", "203"])),
            (
                4_000_000,
                K::Answered {
                    by: Some("202".into()),
                },
            ),
            (
                9_000_000,
                K::Transferred {
                    transfer: Transfer {
                        kind: TransferKind::Blind,
                        from: Some("202".into()),
                        to: Some("204".into()),
                        at: at(9_000_000),
                    },
                },
            ),
            (
                30_000_000,
                K::Ended {
                    disposition: Disposition::Answered,
                },
            ),
        ];
        let events = events
            .into_iter()
            .map(|(micros, kind)| CallEvent {
                call_id: "1795388070.0".into(),
                at: at(micros),
                kind,
            })
            .collect();
        let record: CallRecord = serde_json::from_value(json!({
            "id": "1795388070.0", "direction": "inbound", "from": "15551234567",
            "to": "15550001000", "caller_name": null, "started_at": at(0),
            "answered_at": at(4_000_000), "ended_at": at(30_000_000), "ring_seconds": 4,
            "talk_seconds": 26, "disposition": "answered", "answered_by": "204",
            "rang": ["201", "202", "203"], "transfers": [], "queue": null,
            "recording": "rg-600-15551234567.wav", "legs": [], "timeline": [],
        }))
        .unwrap();
        (events, record)
    }

    /// Every step an endpoint gets for the call: its kind, or its key and payload (`full`).
    fn plan_call(webhook: &Webhook, full: bool) -> Vec<String> {
        let (events, record) = ring_group_call();
        let mut steps: Vec<Step> = events
            .iter()
            .filter_map(|e| webhook.plan_event("pbx1", e))
            .collect();
        steps.extend(webhook.plan("pbx1", &record, RecordingHandOver::WithCall));
        let steps: Vec<String> = steps
            .into_iter()
            .map(|step| match full {
                true => format!("{} {}", step.key, step.payload),
                false => step.kind,
            })
            .collect();
        assert!(lock(&webhook.live).is_empty(), "the record closes the call");
        steps
    }

    #[test]
    fn live_events_get_keys_of_their_own_that_a_replay_gives_again() {
        let webhook = hook(&[], &[]);
        let steps = plan_call(&webhook, true);
        expect![[r#"
            call.started@1795388070000000 {"at":"2026-11-22T22:54:30Z","call_id":"1795388070.0","direction":"inbound","from":"15551234567","pbx":"pbx1","to":"15550001000"}
            call.ringing@1795388070000000 {"at":"2026-11-22T22:54:30Z","call_id":"1795388070.0","extensions":["201"],"pbx":"pbx1"}
            call.ringing@1795388071500250 {"at":"2026-11-22T22:54:31.500250Z","call_id":"1795388070.0","extensions":["201","202"],"pbx":"pbx1"}
            call.ringing@1795388071500250#2 {"at":"2026-11-22T22:54:31.500250Z","call_id":"1795388070.0","extensions":["201","202","203"],"pbx":"pbx1"}
            call.answered@1795388074000000 {"at":"2026-11-22T22:54:34Z","by":"202","call_id":"1795388070.0","pbx":"pbx1"}
            call.transferred@1795388079000000 {"at":"2026-11-22T22:54:39Z","call_id":"1795388070.0","pbx":"pbx1","transfer":{"at":"2026-11-22T22:54:39Z","from":"202","kind":"blind","to":"204"}}
            call.ended {"call":{"answered_at":"2026-11-22T22:54:34Z","answered_by":"204","caller_name":null,"direction":"inbound","disposition":"answered","ended_at":"2026-11-22T22:55:00Z","from":"15551234567","id":"1795388070.0","legs":[],"queue":null,"rang":["201","202","203"],"recording":"rg-600-15551234567.wav","ring_seconds":4,"source":"ami","started_at":"2026-11-22T22:54:30Z","talk_seconds":26,"timeline":[],"to":"15550001000","transfers":[]},"pbx":"pbx1"}
            recording.ready {"call_id":"1795388070.0","pbx":"pbx1","recording":"rg-600-15551234567.wav"}"#]]
        .assert_eq(&steps.join("\n"));
        // Planned again, by this endpoint or by a restarted process replaying the call from the
        // raw event log: the same keys, which the outbox then queues only once.
        assert_eq!(plan_call(&webhook, true), steps);
        assert_eq!(plan_call(&hook(&[], &[]), true), steps);
    }

    #[test]
    fn the_event_filter_picks_what_an_endpoint_gets() {
        let filtered: Vec<String> = [
            &["call.ended"][..],
            &["call.ringing", "recording.ready"],
            &["call.answered", "call.transferred"],
            &[],
        ]
        .iter()
        .map(|events| {
            format!(
                "{events:?}: {}",
                plan_call(&hook(&[], events), false).join(", ")
            )
        })
        .collect();
        expect![[r#"
            ["call.ended"]: call.ended
            ["call.ringing", "recording.ready"]: call.ringing, call.ringing, call.ringing, recording.ready
            ["call.answered", "call.transferred"]: call.answered, call.transferred
            []: call.started, call.ringing, call.ringing, call.ringing, call.answered, call.transferred, call.ended, recording.ready"#]]
        .assert_eq(&filtered.join("\n"));
    }

    /// A recording handed over after the call: what the record leaves for it, and the
    /// `recording.ready` the converted recording then gives, per endpoint and call.
    #[test]
    fn a_recording_handed_over_later_is_ready_with_its_link() {
        let (_, recorded) = ring_group_call();
        let mut unrecorded = recorded.clone();
        unrecorded.recording = None;
        let ready = RecordingReady {
            url: "https://pbxlink.example/recordings/abc.1795990000.mac",
            expires_at: at(604_800_000_000),
            sha256: "abc",
            bytes: 4032,
            duration_ms: 26_000,
        };
        let (all, ended) = (hook(&[], &[]), hook(&[], &["call.ended"]));
        let later = RecordingHandOver::Later;
        let cases = [
            ("all events", &all, &recorded, later),
            ("call.ended only", &ended, &recorded, later),
            ("not recorded", &all, &unrecorded, later),
            (
                "with the call",
                &all,
                &recorded,
                RecordingHandOver::WithCall,
            ),
        ];
        let mut lines = Vec::new();
        for (case, webhook, record, hand_over) in cases {
            let steps = webhook.plan("pbx1", record, hand_over);
            let later = (hand_over == later)
                .then(|| webhook.plan_recording("pbx1", record, &ready))
                .flatten();
            lines.push(format!("{case}:"));
            for step in steps.into_iter().chain(later) {
                let shown = match step.kind.as_str() {
                    CALL_ENDED => String::new(),
                    _ => step.payload.to_string(),
                };
                lines.push(format!("  {} {shown}", step.key).trim_end().to_owned());
            }
        }
        expect![[r#"
            all events:
              call.ended
              recording.ready {"bytes":4032,"call_id":"1795388070.0","duration_ms":26000,"expires_at":"2026-11-29T22:54:30Z","pbx":"pbx1","sha256":"abc","source":"rg-600-15551234567.wav","url":"https://pbxlink.example/recordings/abc.1795990000.mac"}
            call.ended only:
              call.ended
            not recorded:
              call.ended
              recording.ready {"bytes":4032,"call_id":"1795388070.0","duration_ms":26000,"expires_at":"2026-11-29T22:54:30Z","pbx":"pbx1","sha256":"abc","source":null,"url":"https://pbxlink.example/recordings/abc.1795990000.mac"}
            with the call:
              call.ended
              recording.ready {"call_id":"1795388070.0","pbx":"pbx1","recording":"rg-600-15551234567.wav"}"#]].assert_eq(&lines.join("\n"));
    }

    #[test]
    fn bad_configuration_is_refused() {
        let unknown = Webhook::new("u", vec![], &["call.exploded".into()]).unwrap_err();
        expect![[r#"unknown webhook event type "call.exploded" (known: ["call.started", "call.ringing", "call.answered", "call.transferred", "call.ended", "recording.ready"])"#]].assert_eq(&unknown.to_string());
        let secret = SigningSecret::parse("whsec_!!").unwrap_err();
        expect!["bad webhook secret: Invalid symbol 33, offset 0."].assert_eq(&secret.to_string());
    }

    #[test]
    fn responses_are_classified() {
        let webhook = hook(&[], &[]);
        let item = OutboxItem {
            call_id: "c".into(),
            kind: "call.ended".into(),
            payload: serde_json::Value::Null,
            idempotency_key: "k".into(),
        };
        let answer = |status| {
            let response = HttpResponse {
                status,
                retry_after: None,
                body: "no".into(),
            };
            format!("{:?}", webhook.on_response(&item, &response))
        };
        expect![[r#"
            Ok(Delivered)
            Err(Permanent { reason: "HTTP 400: no" })
            Err(Retriable { reason: "HTTP 503: no", retry_after: None })"#]]
        .assert_eq(&[answer(204), answer(400), answer(503)].join("\n"));
    }
}
