//! `ONEXTERNALCALLSTART`, Bitrix24's click-to-call: a user clicks a number in the CRM, Bitrix24
//! registers the call itself and tells the application, either by POSTing the event to its
//! handler (form-encoded, checked by `auth[application_token]`) or, for a PBX behind NAT, by
//! queueing it for `event.offline.get` polling (`clear=0`, then `event.offline.clear` with the
//! `process_id` once handled, so an event is never lost between fetch and handling).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::Bitrix24;
use crate::delivery::HttpRequest;

/// The event's name.
pub const EXTERNAL_CALL_START: &str = "ONEXTERNALCALLSTART";

/// A click-to-call Bitrix24 asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalCallStart {
    /// Bitrix24's `CALL_ID`: the call is registered already, only `finish` is left.
    pub call_id: String,
    /// The number to call.
    pub phone_number: String,
    /// The user who clicked.
    pub user_id: u64,
    /// The line (`LINE_NUMBER`) the call was asked for, if any.
    pub line_number: Option<String>,
}

impl ExternalCallStart {
    /// Reads the event's `data` fields through `field`.
    fn from_fields<'a>(field: impl Fn(&str) -> Option<&'a str>) -> Result<Self, String> {
        let need = |name: &str| {
            field(name)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{EXTERNAL_CALL_START} without data[{name}]"))
        };
        let user_id = need("USER_ID")?;
        Ok(Self {
            call_id: need("CALL_ID")?.to_owned(),
            phone_number: need("PHONE_NUMBER")?.to_owned(),
            user_id: user_id
                .parse()
                .map_err(|_| format!("data[USER_ID] {user_id:?} is not a user id"))?,
            line_number: need("LINE_NUMBER").ok().map(str::to_owned),
        })
    }
}

/// An event POSTed to the application's handler, as Bitrix24 sends it
/// (`application/x-www-form-urlencoded`, PHP-style `data[...]`, `auth[...]` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedEvent {
    /// `event`, e.g. `ONEXTERNALCALLSTART`.
    pub event: String,
    /// `auth[application_token]`: proves the sender is the portal the application lives on.
    pub application_token: Option<String>,
    fields: HashMap<String, String>,
}

impl PostedEvent {
    /// Parses a form-encoded event body.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let fields: HashMap<String, String> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let event = fields
            .get("event")
            .cloned()
            .ok_or("not a Bitrix24 event: no `event` field")?;
        Ok(Self {
            event,
            application_token: fields.get("auth[application_token]").cloned(),
            fields,
        })
    }

    /// The click-to-call it asks for.
    pub fn external_call_start(&self) -> Result<ExternalCallStart, String> {
        if !self.event.eq_ignore_ascii_case(EXTERNAL_CALL_START) {
            return Err(format!("event {:?} is not handled", self.event));
        }
        ExternalCallStart::from_fields(|name| {
            self.fields
                .get(&format!("data[{name}]"))
                .map(String::as_str)
        })
    }
}

/// One batch of queued offline events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineEvents {
    /// Names the batch for `event.offline.clear`; `None` when the queue was empty.
    pub process_id: Option<String>,
    /// Queue record `ID` and what it asks for (or why it cannot be read).
    pub events: Vec<(String, Result<ExternalCallStart, String>)>,
}

impl Bitrix24 {
    /// `event.offline.get` for queued `ONEXTERNALCALLSTART` events, reserved (`clear=0`)
    /// until [`Bitrix24::offline_clear_request`].
    pub fn offline_get_request(&self) -> HttpRequest {
        self.request(
            "event.offline.get",
            &json!({
                "filter": { "=EVENT_NAME": EXTERNAL_CALL_START },
                "clear": 0,
                "limit": 50,
            }),
        )
    }

    /// `event.offline.clear`: drops the handled records of a batch from the queue.
    pub fn offline_clear_request(&self, process_id: &str, ids: &[String]) -> HttpRequest {
        self.request(
            "event.offline.clear",
            &json!({ "process_id": process_id, "id": ids }),
        )
    }
}

/// Reads an `event.offline.get` result.
pub fn offline_events(result: &Value) -> OfflineEvents {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let events = result["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|record| {
            let id = text(&record["ID"]).unwrap_or_default();
            let data = &record["EVENT_DATA"];
            // The queue may hold the event's fields as they are, or under `data`.
            let data = if data["data"].is_object() {
                &data["data"]
            } else {
                data
            };
            let fields: HashMap<String, String> = data
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), text(v)?)))
                        .collect()
                })
                .unwrap_or_default();
            let start = ExternalCallStart::from_fields(|name| fields.get(name).map(String::as_str));
            (id, start)
        })
        .collect();
    OfflineEvents {
        process_id: text(&result["process_id"]),
        events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn a_posted_event_is_read_as_bitrix24_sends_it() {
        let body = "event=ONEXTERNALCALLSTART&event_handler_id=1055\
            &data%5BPHONE_NUMBER%5D=%2B494951234567&data%5BPHONE_NUMBER_INTERNATIONAL%5D=%2B494951234567\
            &data%5BEXTENSION%5D=&data%5BUSER_ID%5D=1269&data%5BCALL_LIST_ID%5D=0&data%5BLINE_NUMBER%5D=7\
            &data%5BIS_MOBILE%5D=0&data%5BCALL_ID%5D=externalCall.89350264e026dace3f2b14d1f438257c.1773236989\
            &data%5BCRM_ENTITY_TYPE%5D=CONTACT&data%5BCRM_ENTITY_ID%5D=797&ts=1773236988\
            &auth%5Baccess_token%5D=s7p6&auth%5Bdomain%5D=some-domain.bitrix24.com\
            &auth%5Bapplication_token%5D=51610fefc120afg4b628cc82d6298cce";
        let event = PostedEvent::parse(body.as_bytes()).unwrap();
        assert_eq!(
            event.application_token.as_deref(),
            Some("51610fefc120afg4b628cc82d6298cce")
        );
        expect![[r#"
            Ok(
                ExternalCallStart {
                    call_id: "externalCall.89350264e026dace3f2b14d1f438257c.1773236989",
                    phone_number: "+494951234567",
                    user_id: 1269,
                    line_number: Some(
                        "7",
                    ),
                },
            )
        "#]]
        .assert_debug_eq(&event.external_call_start());
        let other = PostedEvent::parse(b"event=ONCRMLEADADD&data%5BFIELDS%5D%5BID%5D=1").unwrap();
        assert!(other.external_call_start().is_err());
        assert!(PostedEvent::parse(b"hello").is_err());
    }

    #[test]
    fn offline_events_are_read_with_their_queue_ids() {
        let result = json!({
            "process_id": "f2c6b6bc0d8b",
            "events": [
                {"ID": "1", "TIMESTAMP_X": "2024-07-18T12:32:31+02:00", "EVENT_NAME": "ONEXTERNALCALLSTART",
                 "EVENT_DATA": {"PHONE_NUMBER": "79161234567", "USER_ID": "11", "CALL_ID": "externalCall.x.1", "LINE_NUMBER": ""},
                 "EVENT_ADDITIONAL": false, "MESSAGE_ID": "1"},
                {"ID": "2", "EVENT_NAME": "ONEXTERNALCALLSTART", "EVENT_DATA": false, "MESSAGE_ID": "2"},
            ]
        });
        expect![[r#"
            OfflineEvents {
                process_id: Some(
                    "f2c6b6bc0d8b",
                ),
                events: [
                    (
                        "1",
                        Ok(
                            ExternalCallStart {
                                call_id: "externalCall.x.1",
                                phone_number: "79161234567",
                                user_id: 11,
                                line_number: None,
                            },
                        ),
                    ),
                    (
                        "2",
                        Err(
                            "ONEXTERNALCALLSTART without data[USER_ID]",
                        ),
                    ),
                ],
            }
        "#]]
        .assert_debug_eq(&offline_events(&result));
    }
}
