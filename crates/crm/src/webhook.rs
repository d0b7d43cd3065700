//! The webhook connector: call events POSTed as JSON to configured URLs, signed per the
//! Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
//!
//! This is how 1C HTTP services and custom CRMs integrate: the receiver recomputes
//! `base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))` and compares.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use calls::{CallEvent, CallRecord};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::delivery::{
    classify_status, Connector, DeliveryError, HttpRequest, HttpResponse, OutboxItem, Progress,
};

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
#[derive(Debug, Clone)]
pub struct Webhook {
    url: String,
    /// Every secret signs each message: during a rotation the receiver accepts either.
    secrets: Vec<SigningSecret>,
    events: Vec<String>,
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
        })
    }

    /// Whether this endpoint wants `event_type`.
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| e == event_type)
    }

    /// The outbox payloads (kind, data) for a finished call, filtered, in call order: the
    /// live events, then `call.ended` with the record, then `recording.ready`.
    pub fn plan(
        &self,
        record: &CallRecord,
        events: &[CallEvent],
    ) -> Vec<(String, serde_json::Value)> {
        let live = events.iter().filter_map(|event| {
            let data = serde_json::to_value(event).ok()?;
            let kind = data.get("type")?.as_str()?.to_owned();
            // `call.ended` is sent with the full record below instead.
            (kind != "call.ended").then_some((kind, data))
        });
        let ended = (
            "call.ended".to_owned(),
            serde_json::json!({ "call": record }),
        );
        let recording = record.recording.as_ref().map(|file| {
            let data = serde_json::json!({ "call_id": record.id, "recording": file });
            ("recording.ready".to_owned(), data)
        });
        live.chain(std::iter::once(ended))
            .chain(recording)
            .filter(|(kind, _)| self.wants(kind))
            .collect()
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
