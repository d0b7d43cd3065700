//! The amoCRM / Kommo connector, after the amoCRM API v4 docs: finished calls logged with
//! `POST /api/v4/calls`, inbound calls from numbers no card knows turned into unsorted SIP
//! leads (`POST /api/v4/leads/unsorted/sip`), incoming-call notifications (`POST
//! /api/v2/events`, type `phone_call`), signed in with a long-lived token
//! (`Authorization: Bearer`).
//!
//! amoCRM adds a call only to an existing card (contact or company by the last 10 digits of
//! the number, or its single active lead or customer); for any other number the call comes
//! back without an id. The connector then sends the same call as an unsorted SIP lead, whose
//! metadata carries the call, so the manager sees it in the "Incoming leads" column. That
//! decision is taken per delivery at run time (the planner cannot know which numbers amoCRM
//! knows), and remembered only until the unsorted lead is accepted: after a restart the call
//! is simply offered again, which amoCRM again does not attach, so nothing is logged twice.
//!
//! amoCRM has no idempotency keys. A request that reached amoCRM but whose answer was lost
//! (timeout, pbxlink killed in between) is sent again on retry, and amoCRM logs it again; the
//! `uniq` field (the Linkedid) lets a reader spot such a duplicate.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use calls::{CallEvent, CallEventKind, CallRecord, Direction, Disposition};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::delivery::{
    classify_status, clip, lock, Connector, DeliveryError, HttpRequest, HttpResponse, OutboxItem,
    Progress, Step,
};

/// amoCRM's `call_status` values (API v4, "Adding calls").
pub mod call_status {
    /// Had a conversation.
    pub const CONVERSATION: u8 = 4;
    /// Could not get through (no answer, cancelled, failed).
    pub const NOT_PHONED: u8 = 6;
    /// The line was busy.
    pub const BUSY: u8 = 7;
}

/// What the planner needs besides the call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanConfig {
    /// `source` of every call: what amoCRM shows as the call's origin.
    pub source: String,
    /// Extension -> amoCRM user id (`responsible_user_id`, `created_by`, notification target).
    pub users: BTreeMap<String, u64>,
    /// Extension whose user gets calls where no phone rang (IVR hang-ups).
    pub default_extension: Option<String>,
    /// Recordings are served under this URL (`link`); unset: no link.
    pub record_url_base: Option<String>,
    /// Unknown inbound numbers become unsorted SIP leads.
    pub unsorted: bool,
    /// Pipeline for those leads; unset: the account's main one.
    pub pipeline_id: Option<u64>,
    /// Incoming-call notifications for the users whose phones ring ([`ringing`]).
    pub notify: bool,
}

/// The outbox steps (kind, payload) for a finished call: one `call`. Internal calls and
/// calls without an outside number are not sent: amoCRM logs calls against clients.
pub fn plan(record: &CallRecord, config: &PlanConfig) -> Vec<(String, Value)> {
    let phone = match record.direction {
        Direction::Inbound => record.from.as_deref(),
        Direction::Outbound => record.to.as_deref(),
        Direction::Internal => None,
    };
    let Some(phone) = phone.filter(|p| !p.is_empty()) else {
        return Vec::new();
    };
    let direction = match record.direction {
        Direction::Outbound => "outbound",
        _ => "inbound",
    };
    let (call_status, call_result) = match (record.disposition, &record.answered_by) {
        (Disposition::Answered, Some(by)) => {
            (call_status::CONVERSATION, format!("answered by {by}"))
        }
        (Disposition::Answered, None) => (call_status::CONVERSATION, "answered".to_owned()),
        (Disposition::Busy, _) => (call_status::BUSY, "busy".to_owned()),
        (Disposition::NoAnswer, _) => (call_status::NOT_PHONED, "no answer".to_owned()),
        (Disposition::Cancelled, _) => (call_status::NOT_PHONED, "cancelled".to_owned()),
        (Disposition::Failed, _) => (call_status::NOT_PHONED, "failed".to_owned()),
    };
    // The user who took the call, else the first whose phone rang, else the default.
    let user = record
        .answered_by
        .iter()
        .chain(&record.rang)
        .chain(&config.default_extension)
        .find_map(|extension| config.users.get(extension));
    let link = match (&config.record_url_base, &record.recording) {
        (Some(base), Some(file)) => Some(format!("{}/{file}", base.trim_end_matches('/'))),
        _ => None,
    };
    let mut call = json!({
        "direction": direction,
        "uniq": record.id,
        "duration": record.talk_seconds,
        "source": config.source,
        "phone": phone,
        "call_result": call_result,
        "call_status": call_status,
        "created_at": record.started_at.timestamp(),
        "request_id": "0",
    });
    if let Some(link) = &link {
        call["link"] = json!(link);
    }
    if let Some(user) = user {
        call["responsible_user_id"] = json!(user);
        call["created_by"] = json!(user);
    }
    let unsorted = (config.unsorted && record.direction == Direction::Inbound).then(|| {
        let mut lead = json!({
            "source_name": config.source,
            "source_uid": record.id,
            "created_at": record.started_at.timestamp(),
            "metadata": {
                "is_call_event_needed": true,
                "uniq": record.id,
                "duration": record.talk_seconds,
                "service_code": config.source,
                "phone": phone,
                "called_at": record.started_at.timestamp(),
                "from": record.caller_name.as_deref().unwrap_or(phone),
            },
            "_embedded": {
                "leads": [{ "name": format!("Call from {phone}") }],
                "contacts": [{
                    "name": record.caller_name.as_deref().unwrap_or(phone),
                    "custom_fields_values": [{
                        "field_code": "PHONE",
                        "values": [{ "value": phone, "enum_code": "WORK" }],
                    }],
                }],
            },
            "request_id": "0",
        });
        if let Some(link) = &link {
            lead["metadata"]["link"] = json!(link);
        }
        if let Some(pipeline) = config.pipeline_id {
            lead["pipeline_id"] = json!(pipeline);
        }
        lead
    });
    let payload = json!({ "call": call, "unsorted": unsorted });
    vec![("call".to_owned(), payload)]
}

/// The `notify` step for a call ringing `extensions` from `phone`: an incoming-call popup for
/// their amoCRM users (with the client's card, or an offer to create one). `None` when none
/// of them has a user.
pub fn ringing(phone: &str, extensions: &[String], config: &PlanConfig) -> Option<(String, Value)> {
    let users: Vec<u64> = extensions
        .iter()
        .filter_map(|extension| config.users.get(extension).copied())
        .collect();
    (!users.is_empty()).then(|| {
        let event = json!({ "type": "phone_call", "phone_number": phone, "users": users });
        ("notify".to_owned(), json!({ "add": [event] }))
    })
}

/// The plan of calls as they go: an incoming-call notification as phones ring (each
/// extension once per call, so the key `notify:201,202` is the call's only one for them), and
/// the call itself at its end ([`plan`]).
#[derive(Debug)]
pub struct Planner {
    config: PlanConfig,
    /// Inbound calls in progress (`pbx/linkedid`): the caller's number and the extensions
    /// notified so far.
    ringing: HashMap<String, (String, Vec<String>)>,
}

impl Planner {
    /// A planner for an account.
    pub fn new(config: PlanConfig) -> Self {
        Self {
            config,
            ringing: HashMap::new(),
        }
    }

    /// The step a live call event gives: a notification when phones start ringing for an
    /// inbound call (`notify` on). `call` names the call across PBXes (`pbx/linkedid`).
    pub fn on_event(&mut self, call: &str, event: &CallEvent) -> Option<Step> {
        match &event.kind {
            CallEventKind::Started {
                direction: Direction::Inbound,
                from: Some(phone),
                ..
            } if self.config.notify && !phone.is_empty() => {
                self.ringing
                    .insert(call.to_owned(), (phone.clone(), Vec::new()));
                None
            }
            CallEventKind::Ringing { extensions } => {
                let (phone, notified) = self.ringing.get_mut(call)?;
                let new: Vec<String> = extensions
                    .iter()
                    .filter(|e| !notified.contains(e))
                    .cloned()
                    .collect();
                notified.extend(new.iter().cloned());
                let (kind, payload) = ringing(phone, &new, &self.config)?;
                Some(Step {
                    key: format!("{kind}:{}", new.join(",")),
                    kind,
                    payload,
                })
            }
            CallEventKind::Ended { .. } => {
                self.ringing.remove(call);
                None
            }
            _ => None,
        }
    }

    /// The steps of a finished call ([`plan`]). Its recording goes with it as the call's `link`
    /// (`record_url_base`) however it is handed over ([`crate::RecordingHandOver`]): a logged
    /// call cannot be changed, so a recording converted later gives amoCRM nothing.
    pub fn on_record(&mut self, call: &str, record: &CallRecord) -> Vec<Step> {
        self.ringing.remove(call);
        plan(record, &self.config)
            .into_iter()
            .map(|(kind, payload)| Step::once(&kind, payload))
            .collect()
    }

    /// Calls in progress the planner keeps state for.
    pub fn calls_in_progress(&self) -> usize {
        self.ringing.len()
    }
}

/// An amoCRM account (`https://<subdomain>.amocrm.ru`, `.amocrm.com` or `.kommo.com`).
#[derive(Debug)]
pub struct AmoCrm {
    base_url: String,
    token: String,
    /// Deliveries whose call amoCRM did not attach: their next request is the unsorted lead.
    unattached: Mutex<HashSet<String>>,
}

impl AmoCrm {
    /// A connector for the account at `base_url`, with a long-lived token.
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            token: token.into(),
            unattached: Mutex::default(),
        }
    }

    /// `GET /api/v4/account`: checks the URL and the token at the cost of one cheap request
    /// (`pbxlink crm test`); [`account_answer`] reads the answer.
    pub fn account_request(&self) -> HttpRequest {
        HttpRequest {
            url: format!("{}/api/v4/account", self.base_url),
            headers: self.headers(),
            body: String::new(),
        }
    }

    /// The headers every request carries (the token).
    fn headers(&self) -> Vec<(String, String)> {
        vec![("authorization".to_owned(), format!("Bearer {}", self.token))]
    }

    fn post(&self, path: &str, body: &Value) -> HttpRequest {
        HttpRequest {
            url: format!("{}{path}", self.base_url),
            headers: self.headers(),
            body: body.to_string(),
        }
    }

    fn is_unattached(&self, key: &str) -> bool {
        lock(&self.unattached).contains(key)
    }

    fn set_unattached(&self, key: &str, unattached: bool) {
        let mut set = lock(&self.unattached);
        if unattached {
            set.insert(key.to_owned());
        } else {
            set.remove(key);
        }
    }
}

/// Judges any amoCRM answer: 2xx gives the body as JSON (`null` when empty), the rest an
/// error. 401 is the token (revoked, expired, wrong account): permanent until someone fixes
/// the config. 402 (unpaid account) and 403 (blocked) are permanent too; 429 and 5xx are
/// retried; a 400 says what failed validation.
pub fn check(response: &HttpResponse) -> Result<Value, DeliveryError> {
    let body: Option<Value> = serde_json::from_str(&response.body).ok();
    match response.status {
        200..=299 => Ok(body.unwrap_or(Value::Null)),
        401 => Err(DeliveryError::permanent(format!(
            "token rejected (HTTP 401): check the long-lived token and the account URL: {}",
            clip(&response.body)
        ))),
        400 => {
            let detail = body
                .as_ref()
                .and_then(|b| b.get("validation-errors"))
                .map(|errors| errors.to_string())
                .unwrap_or_else(|| response.body.clone());
            Err(DeliveryError::permanent(format!(
                "rejected as invalid (HTTP 400): {}",
                clip(&detail)
            )))
        }
        status => Err(classify_status(
            status,
            response.retry_after,
            &response.body,
        )),
    }
}

/// The account an [`AmoCrm::account_request`] answer describes, in a line.
pub fn account_answer(response: &HttpResponse) -> Result<String, DeliveryError> {
    let account = check(response)?;
    match (account["id"].as_u64(), account["subdomain"].as_str()) {
        (Some(id), Some(subdomain)) => Ok(format!(
            "account {:?} (id {id}, subdomain {subdomain}) answered",
            account["name"].as_str().unwrap_or_default()
        )),
        _ => Err(DeliveryError::permanent(format!(
            "not an amoCRM account answer (check the URL): {}",
            clip(&response.body)
        ))),
    }
}

/// Whether a `POST /api/v4/calls` answer attached the call (request_id "0") to a card.
fn attached(answer: &Value) -> bool {
    answer["_embedded"]["calls"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|call| call["request_id"] == "0" && call["id"].is_number())
}

impl Connector for AmoCrm {
    fn next_request(
        &self,
        item: &OutboxItem,
        _now: DateTime<Utc>,
    ) -> Result<HttpRequest, DeliveryError> {
        match item.kind.as_str() {
            "call" if self.is_unattached(&item.idempotency_key) => Ok(self.post(
                "/api/v4/leads/unsorted/sip",
                &json!([item.payload["unsorted"]]),
            )),
            "call" => Ok(self.post("/api/v4/calls", &json!([item.payload["call"]]))),
            "notify" => Ok(self.post("/api/v2/events", &item.payload)),
            other => Err(DeliveryError::permanent(format!(
                "amoCRM has no step {other:?}"
            ))),
        }
    }

    fn on_response(
        &self,
        item: &OutboxItem,
        response: &HttpResponse,
    ) -> Result<Progress, DeliveryError> {
        let key = &item.idempotency_key;
        let answer = check(response)?;
        if item.kind != "call" {
            return Ok(Progress::Delivered);
        }
        if self.is_unattached(key) {
            let accepted = answer["_embedded"]["unsorted"][0]["uid"].is_string();
            if !accepted {
                return Err(DeliveryError::retriable(format!(
                    "unsorted lead not acknowledged: {}",
                    clip(&response.body)
                )));
            }
            self.set_unattached(key, false);
            return Ok(Progress::Delivered);
        }
        if attached(&answer) || item.payload["unsorted"].is_null() {
            // Attached; or no card and no unsorted leads wanted: amoCRM has nowhere to keep it.
            return Ok(Progress::Delivered);
        }
        self.set_unattached(key, true);
        Ok(Progress::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calls::{Direction, Disposition};
    use expect_test::{expect, Expect};

    fn config() -> PlanConfig {
        PlanConfig {
            source: "pbxlink".into(),
            users: BTreeMap::from([("201".into(), 501), ("202".into(), 502)]),
            default_extension: Some("202".into()),
            record_url_base: Some("https://pbx.example/rec/".into()),
            unsorted: true,
            pipeline_id: Some(77),
            notify: true,
        }
    }

    fn record(direction: Direction, disposition: Disposition) -> CallRecord {
        let at = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        CallRecord {
            id: "1764000000.7".into(),
            direction,
            from: Some("+74951234567".into()),
            to: Some("84950000000".into()),
            caller_name: None,
            started_at: at,
            answered_at: None,
            ended_at: at,
            ring_seconds: 5,
            talk_seconds: 42,
            disposition,
            answered_by: (disposition == Disposition::Answered).then(|| "201".into()),
            rang: vec!["202".into(), "201".into()],
            transfers: Vec::new(),
            queue: None,
            recording: Some("in-1764000000.7.wav".into()),
            legs: Vec::new(),
            provenance: Default::default(),
            timeline: Vec::new(),
        }
    }

    fn check_plan(record: &CallRecord, config: &PlanConfig, expected: Expect) {
        let steps: Vec<String> = plan(record, config)
            .into_iter()
            .map(|(kind, payload)| format!("{kind}: {payload:#}"))
            .collect();
        expected.assert_eq(&steps.join("\n"));
    }

    #[test]
    fn an_answered_inbound_call_with_its_unsorted_fallback() {
        check_plan(
            &record(Direction::Inbound, Disposition::Answered),
            &config(),
            expect![[r#"
                call: {
                  "call": {
                    "call_result": "answered by 201",
                    "call_status": 4,
                    "created_at": 1764000000,
                    "created_by": 501,
                    "direction": "inbound",
                    "duration": 42,
                    "link": "https://pbx.example/rec/in-1764000000.7.wav",
                    "phone": "+74951234567",
                    "request_id": "0",
                    "responsible_user_id": 501,
                    "source": "pbxlink",
                    "uniq": "1764000000.7"
                  },
                  "unsorted": {
                    "_embedded": {
                      "contacts": [
                        {
                          "custom_fields_values": [
                            {
                              "field_code": "PHONE",
                              "values": [
                                {
                                  "enum_code": "WORK",
                                  "value": "+74951234567"
                                }
                              ]
                            }
                          ],
                          "name": "+74951234567"
                        }
                      ],
                      "leads": [
                        {
                          "name": "Call from +74951234567"
                        }
                      ]
                    },
                    "created_at": 1764000000,
                    "metadata": {
                      "called_at": 1764000000,
                      "duration": 42,
                      "from": "+74951234567",
                      "is_call_event_needed": true,
                      "link": "https://pbx.example/rec/in-1764000000.7.wav",
                      "phone": "+74951234567",
                      "service_code": "pbxlink",
                      "uniq": "1764000000.7"
                    },
                    "pipeline_id": 77,
                    "request_id": "0",
                    "source_name": "pbxlink",
                    "source_uid": "1764000000.7"
                  }
                }"#]],
        );
    }

    #[test]
    fn outbound_and_missed_calls_and_what_is_not_sent() {
        let mut config = config();
        config.record_url_base = None;
        let calls: Vec<Value> = [
            (Direction::Outbound, Disposition::Busy),
            (Direction::Inbound, Disposition::NoAnswer),
            (Direction::Inbound, Disposition::Cancelled),
            (Direction::Outbound, Disposition::Failed),
        ]
        .into_iter()
        .flat_map(|(direction, disposition)| plan(&record(direction, disposition), &config))
        .map(|(_, payload)| {
            let c = &payload["call"];
            json!([
                c["direction"],
                c["phone"],
                c["call_status"],
                c["call_result"],
                c["responsible_user_id"],
                payload["unsorted"].is_object()
            ])
        })
        .collect();
        expect![[r#"[["outbound","84950000000",7,"busy",502,false],["inbound","+74951234567",6,"no answer",502,true],["inbound","+74951234567",6,"cancelled",502,true],["outbound","84950000000",6,"failed",502,false]]"#]].assert_eq(&serde_json::to_string(&calls).unwrap());
        let internal = record(Direction::Internal, Disposition::Answered);
        assert!(plan(&internal, &config).is_empty());
        let mut anonymous = record(Direction::Inbound, Disposition::Answered);
        anonymous.from = None;
        assert!(plan(&anonymous, &config).is_empty());
    }

    #[test]
    fn ringing_notifies_the_users_of_the_ringing_phones() {
        let extensions = ["201".to_owned(), "299".to_owned()];
        let (kind, payload) = ringing("+74951234567", &extensions, &config()).unwrap();
        expect![[
            r#"notify: {"add":[{"phone_number":"+74951234567","type":"phone_call","users":[501]}]}"#
        ]]
        .assert_eq(&format!("{kind}: {payload}"));
        assert_eq!(ringing("1", &["299".to_owned()], &config()), None);
    }

    #[test]
    fn a_ringing_call_notifies_each_user_once_then_logs_the_call() {
        let event = |kind: CallEventKind| CallEvent {
            call_id: "1764000000.7".into(),
            at: DateTime::from_timestamp(1_764_000_000, 0).unwrap(),
            kind,
        };
        let ringing = |extensions: &[&str]| {
            event(CallEventKind::Ringing {
                extensions: extensions.iter().map(|e| e.to_string()).collect(),
            })
        };
        let started = |direction| {
            event(CallEventKind::Started {
                direction,
                from: Some("+74951234567".into()),
                to: Some("84950000000".into()),
            })
        };
        let call = [
            ringing(&["201"]),
            ringing(&["201", "299"]),
            ringing(&["201", "299", "202"]),
            event(CallEventKind::Answered {
                by: Some("202".into()),
            }),
            event(CallEventKind::Ended {
                disposition: Disposition::Answered,
            }),
        ];
        let plan_call = |config: PlanConfig, direction| {
            let mut planner = Planner::new(config);
            let mut steps: Vec<Step> = std::iter::once(started(direction))
                .chain(call.iter().cloned())
                .filter_map(|e| planner.on_event("pbx1/1764000000.7", &e))
                .collect();
            let record = record(direction, Disposition::Answered);
            steps.extend(planner.on_record("pbx1/1764000000.7", &record));
            assert_eq!(planner.calls_in_progress(), 0, "the record closes the call");
            let lines: Vec<String> = steps
                .iter()
                .map(|step| match step.kind.as_str() {
                    "notify" => format!("{} {}", step.key, step.payload),
                    _ => format!(
                        "{} (responsible {})",
                        step.key, step.payload["call"]["responsible_user_id"]
                    ),
                })
                .collect();
            lines.join("\n")
        };
        expect![[r#"
            notify:201 {"add":[{"phone_number":"+74951234567","type":"phone_call","users":[501]}]}
            notify:202 {"add":[{"phone_number":"+74951234567","type":"phone_call","users":[502]}]}
            call (responsible 501)"#]]
        .assert_eq(&plan_call(config(), Direction::Inbound));
        // Nobody is notified of an outbound call, nor with notifications off.
        expect!["call (responsible 501)"].assert_eq(&plan_call(config(), Direction::Outbound));
        let quiet = PlanConfig {
            notify: false,
            ..config()
        };
        expect!["call (responsible 501)"].assert_eq(&plan_call(quiet, Direction::Inbound));
    }

    fn item(payload: Value) -> OutboxItem {
        OutboxItem {
            call_id: "1764000000.7".into(),
            kind: "call".into(),
            payload,
            idempotency_key: "amo:pbx1:1764000000.7:call".into(),
        }
    }

    fn ok(body: Value) -> HttpResponse {
        HttpResponse {
            status: 200,
            retry_after: None,
            body: body.to_string(),
        }
    }

    /// Request path and body, and what the connector made of the answer, step by step.
    fn exchange(amo: &AmoCrm, item: &OutboxItem, answers: &[HttpResponse]) -> Vec<String> {
        let now = DateTime::from_timestamp(0, 0).unwrap();
        answers
            .iter()
            .map(|answer| {
                let request = amo.next_request(item, now).unwrap();
                let path = request.url.trim_start_matches("https://acme.amocrm.ru");
                let auth = &request.headers[0].1;
                let verdict = amo.on_response(item, answer);
                format!("{path} [{auth}] -> {verdict:?}")
            })
            .collect()
    }

    #[test]
    fn a_known_number_is_logged_an_unknown_one_becomes_an_unsorted_lead() {
        let amo = AmoCrm::new("https://acme.amocrm.ru/", "tok");
        let (_, payload) = plan(
            &record(Direction::Inbound, Disposition::Answered),
            &config(),
        )
        .pop()
        .unwrap();
        let item = item(payload);
        let attached = ok(json!({"_total_items": 1, "_embedded": {"calls": [
            {"id": 18006, "entity_id": 4021, "entity_type": "contacts", "account_id": 28805383, "request_id": "0"}
        ]}}));
        let unattached = ok(
            json!({"_total_items": 0, "_embedded": {"calls": []}, "errors": [{"request_id": "0", "title": "Entity not found"}]}),
        );
        let unsorted = ok(json!({"_total_items": 1, "_embedded": {"unsorted": [
            {"uid": "a1fee7c0fc436088e64ba2e8822ba2b3", "account_id": 28805383, "request_id": "0",
             "_embedded": {"leads": [{"id": 7}], "contacts": [{"id": 8}]}}
        ]}}));
        let steps = [
            exchange(&amo, &item, &[attached]),
            exchange(&amo, &item, &[unattached.clone(), unsorted]),
            // Without unsorted leads, an unknown number is done with.
            exchange(
                &amo,
                &OutboxItem {
                    payload: json!({"call": item.payload["call"], "unsorted": null}),
                    ..item.clone()
                },
                &[unattached],
            ),
        ];
        expect![[r#"
            [
                [
                    "/api/v4/calls [Bearer tok] -> Ok(Delivered)",
                ],
                [
                    "/api/v4/calls [Bearer tok] -> Ok(Continue)",
                    "/api/v4/leads/unsorted/sip [Bearer tok] -> Ok(Delivered)",
                ],
                [
                    "/api/v4/calls [Bearer tok] -> Ok(Delivered)",
                ],
            ]
        "#]]
        .assert_debug_eq(&steps);
    }

    #[test]
    fn errors_split_into_token_invalid_and_retriable() {
        let amo = AmoCrm::new("https://acme.amocrm.ru", "tok");
        let item = item(json!({"call": {}, "unsorted": null}));
        let answer = |status: u16, body: Value| HttpResponse {
            status,
            retry_after: (status == 429).then_some(1),
            body: body.to_string(),
        };
        let problem = |status: u16, title: &str, detail: &str| json!({"title": title, "type": "https://httpstatus.es/".to_owned() + &status.to_string(), "status": status, "detail": detail});
        let validation = json!({
            "validation-errors": [{"request_id": "0", "errors": [
                {"code": "NotSupportedChoice", "path": "direction", "detail": "The value you selected is not a valid choice."}
            ]}],
            "title": "Bad Request", "type": "https://httpstatus.es/400", "status": 400,
            "detail": "Request validation failed"
        });
        let verdicts: Vec<String> = [
            answer(401, problem(401, "Unauthorized", "Invalid token")),
            answer(400, validation),
            answer(402, problem(402, "Payment Required", "Account is not paid")),
            answer(429, problem(429, "Too Many Requests", "Too many requests")),
            answer(504, json!("Gateway Timeout")),
        ]
        .iter()
        .map(|response| match amo.on_response(&item, response) {
            Ok(progress) => format!("{}: {progress:?}", response.status),
            Err(error) => format!("{}: {error}", response.status),
        })
        .collect();
        expect![[r#"
            [
                "401: permanent: token rejected (HTTP 401): check the long-lived token and the account URL: {\"detail\":\"Invalid token\",\"status\":401,\"title\":\"Unauthorized\",\"type\":\"https://httpstatus.es/401\"}",
                "400: permanent: rejected as invalid (HTTP 400): [{\"errors\":[{\"code\":\"NotSupportedChoice\",\"detail\":\"The value you selected is not a valid choice.\",\"path\":\"direction\"}],\"request_id\":\"0\"}]",
                "402: permanent: HTTP 402: {\"detail\":\"Account is not paid\",\"status\":402,\"title\":\"Payment Required\",\"type\":\"https://httpstatus.es/402\"}",
                "429: retriable: HTTP 429: {\"detail\":\"Too many requests\",\"status\":429,\"title\":\"Too Many Requests\",\"type\":\"https://httpstatus.es/429\"}",
                "504: retriable: HTTP 504: \"Gateway Timeout\"",
            ]
        "#]].assert_debug_eq(&verdicts);
    }
}
