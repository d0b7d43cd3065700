//! Caller lookups over HTTP, sans-IO: a connector builds the request for a phone number and
//! reads the CRM's answer into a [`CallerInfo`]; pbxlink sends the request (and so implements
//! [`crate::CallerLookup`] once for every [`HttpLookup`]). The generic form is
//! [`WebhookLookup`]: a signed POST of the number to any URL.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::delivery::{classify_status, clip, DeliveryError, HttpRequest, HttpResponse};
use crate::webhook::{SigningSecret, Webhook};
use crate::{CallerInfo, CrmError};

/// A CRM that answers "who is calling" with one HTTP request.
pub trait HttpLookup: std::fmt::Debug + Send + Sync {
    /// The request asking about `number`; `now` is for signatures.
    fn lookup_request(&self, number: &str, now: DateTime<Utc>) -> Result<HttpRequest, CrmError>;

    /// What the CRM's answer says; an unknown caller is `Ok` with every field `None`.
    fn lookup_answer(&self, response: &HttpResponse) -> Result<CallerInfo, CrmError>;
}

impl From<DeliveryError> for CrmError {
    fn from(e: DeliveryError) -> Self {
        match e {
            DeliveryError::Retriable { reason, .. } => CrmError::Retriable(reason),
            DeliveryError::Permanent { reason } => CrmError::Permanent(reason),
        }
    }
}

/// The generic lookup: POSTs `{"type": "caller.lookup", "timestamp": ..., "data": {"number":
/// ...}}`, signed like the webhook events (Standard Webhooks headers), and expects a JSON
/// object `{"name", "crm_id", "responsible_extension"}`, each a string, a number or `null`
/// (missing or empty: unknown). Other keys are ignored, so a CRM can answer more.
#[derive(Debug)]
pub struct WebhookLookup {
    url: String,
    signer: Webhook,
}

impl WebhookLookup {
    /// A lookup at `url`, signed with `secrets` (none: unsigned).
    pub fn new(url: impl Into<String>, secrets: Vec<SigningSecret>) -> Self {
        let url = url.into();
        let signer = Webhook::new(url.clone(), secrets, &[])
            .unwrap_or_else(|_| unreachable!("no event filter, nothing to reject"));
        Self { url, signer }
    }
}

impl HttpLookup for WebhookLookup {
    fn lookup_request(&self, number: &str, now: DateTime<Utc>) -> Result<HttpRequest, CrmError> {
        let body = serde_json::json!({
            "type": "caller.lookup",
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "data": { "number": number },
        })
        .to_string();
        let timestamp = now.timestamp();
        // Unique per message (the receiver may drop a replayed id), no state needed.
        let id = format!("lookup_{}", now.timestamp_nanos_opt().unwrap_or(timestamp));
        let signature = self.signer.signature(&id, timestamp, &body);
        let mut headers = vec![
            ("webhook-id".to_owned(), id),
            ("webhook-timestamp".to_owned(), timestamp.to_string()),
        ];
        if !signature.is_empty() {
            headers.push(("webhook-signature".to_owned(), signature));
        }
        Ok(HttpRequest {
            url: self.url.clone(),
            headers,
            body,
        })
    }

    fn lookup_answer(&self, response: &HttpResponse) -> Result<CallerInfo, CrmError> {
        if !(200..=299).contains(&response.status) {
            return Err(
                classify_status(response.status, response.retry_after, &response.body).into(),
            );
        }
        let answer: Value = serde_json::from_str(&response.body).map_err(|e| {
            CrmError::Permanent(format!(
                "answer is not JSON ({e}): {:?}",
                clip(&response.body)
            ))
        })?;
        let Value::Object(fields) = &answer else {
            return Err(CrmError::Permanent(format!(
                "answer is not a JSON object: {}",
                clip(&response.body)
            )));
        };
        let text = |key: &str| match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(CrmError::Permanent(format!(
                "answer field {key:?} is not a string: {other}"
            ))),
        };
        Ok(CallerInfo {
            name: text("name")?,
            crm_id: text("crm_id")?,
            responsible_extension: text("responsible_extension")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn request_is_a_signed_caller_lookup_event() {
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let lookup = WebhookLookup::new("https://crm.example/lookup", vec![secret]);
        let request = lookup
            .lookup_request("15551234567", at(1_795_354_640))
            .unwrap();
        expect![[r#"
            HttpRequest {
                url: "https://crm.example/lookup",
                headers: [
                    (
                        "webhook-id",
                        "lookup_1795354640000000000",
                    ),
                    (
                        "webhook-timestamp",
                        "1795354640",
                    ),
                    (
                        "webhook-signature",
                        "v1,m0VcZlgMbAwj3QuQx4crNXwkTYGfB4bHXhPYPlzIL9c=",
                    ),
                ],
                body: "{\"data\":{\"number\":\"15551234567\"},\"timestamp\":\"2026-11-22T13:37:20Z\",\"type\":\"caller.lookup\"}",
            }
        "#]]
        .assert_debug_eq(&request);
        let unsigned = WebhookLookup::new("http://crm/lookup", Vec::new());
        let request = unsigned.lookup_request("1", at(0)).unwrap();
        assert!(request
            .headers
            .iter()
            .all(|(name, _)| name != "webhook-signature"));
    }

    #[test]
    fn answers_become_caller_info_or_errors() {
        let lookup = WebhookLookup::new("http://crm/lookup", Vec::new());
        let verdicts: Vec<String> = [
            (
                200,
                r#"{"name": "Jane", "crm_id": 42, "responsible_extension": "202", "x": [1]}"#,
            ),
            (200, r#"{"name": "", "crm_id": null}"#),
            (200, r#"{"responsible_extension": {"ext": 202}}"#),
            (200, "[1, 2]"),
            (200, "<html>oops</html>"),
            (503, "busy"),
            (404, "no such route"),
        ]
        .into_iter()
        .map(|(status, body)| {
            let response = HttpResponse {
                status,
                retry_after: None,
                body: body.into(),
            };
            format!("{:?}", lookup.lookup_answer(&response))
        })
        .collect();
        expect![[r#"
            Ok(CallerInfo { name: Some("Jane"), crm_id: Some("42"), responsible_extension: Some("202") })
            Ok(CallerInfo { name: None, crm_id: None, responsible_extension: None })
            Err(Permanent("answer field \"responsible_extension\" is not a string: {\"ext\":202}"))
            Err(Permanent("answer is not a JSON object: [1, 2]"))
            Err(Permanent("answer is not JSON (expected value at line 1 column 1): \"<html>oops</html>\""))
            Err(Retriable("HTTP 503: busy"))
            Err(Permanent("HTTP 404: no such route"))"#]]
        .assert_eq(&verdicts.join("\n"));
    }
}
