//! The Bitrix24 call plan: which `telephony.externalcall.*` steps a call gives, made live from
//! the tracker's call events (register at start, show as phones ring, hide on answer), closed
//! from the final record (finish, attachRecord), and a recording converted after the call
//! attached by its link (attachRecord).
//!
//! The planner is sans-IO and keeps a little state per call in progress (who has a card open);
//! the steps it returns become outbox rows. Every step carries the call's `register`
//! parameters, so a connector that lost the `CALL_ID` (restart) can re-register first: with
//! the same `EXTERNAL_CALL_ID`, user, number, type and line, Bitrix24 answers with the call's
//! existing `CALL_ID` (documented re-registration), so nothing is registered twice.

use std::collections::{BTreeMap, HashMap};

use calls::{CallEvent, CallEventKind, CallRecord, Direction, Disposition, TrackerConfig};
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{json, Value};

use super::UserMap;
use crate::delivery::{RecordingHandOver, RecordingReady, Step};

/// When a user gets the call card on screen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CardMode {
    /// As soon as the user's phone rings (and, for outbound calls, as the user dials).
    #[default]
    OnRing,
    /// Only when the user answers.
    OnAnswer,
    /// Never: the call is still logged in the CRM.
    Never,
}

impl std::str::FromStr for CardMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ring" => Ok(Self::OnRing),
            "answer" => Ok(Self::OnAnswer),
            "never" => Ok(Self::Never),
            other => Err(format!(
                "card mode {other:?}: expected \"ring\", \"answer\" or \"never\""
            )),
        }
    }
}

/// What the planner needs to know about a Bitrix24 portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanConfig {
    /// `CALL_START_DATE` is written in this offset (the portal's time zone).
    pub utc_offset: FixedOffset,
    /// Create a lead for numbers the CRM does not know (register's `CRM_CREATE`).
    pub create_leads: bool,
    /// Extension the call is registered to before (or without) any phone ringing.
    pub default_extension: Option<String>,
    /// Recordings are served under this URL (`{base}/{file name}`); none: no `attachRecord`.
    pub record_url_base: Option<String>,
    /// Card mode of users not in `card_modes`.
    pub card_mode: CardMode,
    /// Card mode per extension.
    pub card_modes: BTreeMap<String, CardMode>,
}

impl PlanConfig {
    fn card(&self, extension: &str) -> CardMode {
        self.card_modes
            .get(extension)
            .copied()
            .unwrap_or(self.card_mode)
    }
}

/// `STATUS_CODE` for `finish`: SIP-like codes Bitrix24 shows as the call's outcome.
pub fn status_code(record: &CallRecord) -> &'static str {
    match (record.disposition, record.direction) {
        (Disposition::Answered, _) => "200",
        (Disposition::NoAnswer, _) => "304",
        // An inbound caller who gave up while it rang is a missed call to call back.
        (Disposition::Cancelled, Direction::Inbound) => "304",
        (Disposition::Cancelled, _) => "603-S",
        (Disposition::Busy, _) => "486",
        (Disposition::Failed, _) => "503",
    }
}

/// What the planner remembers of a call in progress.
#[derive(Debug, Clone)]
struct LiveCall {
    direction: Direction,
    /// The extension that placed the call (outbound and internal calls).
    agent: Option<String>,
    /// The client's number.
    phone: Option<String>,
    /// The DID of an inbound call.
    line: Option<String>,
    started_at: DateTime<Utc>,
    /// The register parameters once registered.
    register: Option<Value>,
    /// Bitrix24's `CALL_ID` of a call Bitrix24 itself started (click-to-call): never registered.
    crm_call_id: Option<String>,
    /// Users with a card open, in order.
    shown: Vec<String>,
    hidden: Vec<String>,
}

/// The per-connector planner: call events and records in, steps out.
#[derive(Debug)]
pub struct Planner {
    config: PlanConfig,
    calls: HashMap<String, LiveCall>,
    /// Calls Bitrix24 asked for (ONEXTERNALCALLSTART): Linkedid -> Bitrix24's `CALL_ID`.
    crm_originated: HashMap<String, String>,
}

impl Planner {
    /// A planner for a portal.
    pub fn new(config: PlanConfig) -> Self {
        Self {
            config,
            calls: HashMap::new(),
            crm_originated: HashMap::new(),
        }
    }

    /// Marks the call that will get Linkedid `call` as started by Bitrix24 with `call_id`: it
    /// is registered already, so it gets no `register`, and every step names `call_id`.
    /// Call it before the PBX is asked to place the call.
    pub fn crm_originated(&mut self, call: &str, call_id: &str) {
        self.crm_originated
            .insert(call.to_owned(), call_id.to_owned());
    }

    /// Forgets a [`Planner::crm_originated`] mark (the PBX refused the call).
    pub fn forget_originated(&mut self, call: &str) {
        self.crm_originated.remove(call);
    }

    /// Calls in progress the planner keeps state for.
    pub fn calls_in_progress(&self) -> usize {
        self.calls.len()
    }

    /// The steps a live call event gives. `call` names the call uniquely across PBXes
    /// (`pbx/linkedid`); cards go only to extensions that are Bitrix24 users.
    pub fn on_event(&mut self, call: &str, event: &CallEvent, users: &UserMap) -> Vec<Step> {
        let config = &self.config;
        let mut steps = Vec::new();
        match &event.kind {
            CallEventKind::Started {
                direction,
                from,
                to,
            } => {
                // Internal calls are not sent; an extension dialling out looks internal until
                // the outside answers (see `Answered`).
                let (phone, line) = match direction {
                    Direction::Inbound => (from.clone(), to.clone()),
                    Direction::Outbound => (to.clone(), None),
                    Direction::Internal => (None, None),
                };
                let mut live = LiveCall {
                    direction: *direction,
                    agent: from.clone().filter(|_| *direction != Direction::Inbound),
                    phone,
                    line,
                    started_at: event.at,
                    register: None,
                    crm_call_id: self.crm_originated.remove(call),
                    shown: Vec::new(),
                    hidden: Vec::new(),
                };
                let owner = match direction {
                    Direction::Outbound => from.clone(),
                    _ => config.default_extension.clone(),
                };
                if let Some(owner) = owner {
                    steps.extend(live.register(config, call, &owner));
                    if *direction == Direction::Outbound {
                        steps.extend(live.show(config, users, &[owner], CardMode::OnRing));
                    }
                }
                self.calls.insert(call.to_owned(), live);
            }
            CallEventKind::Ringing { extensions } => {
                if let Some(live) = self.calls.get_mut(call).filter(|live| live.is_sent()) {
                    if let Some(first) = extensions.first() {
                        steps.extend(live.register(config, call, first));
                    }
                    steps.extend(live.show(config, users, extensions, CardMode::OnRing));
                }
            }
            CallEventKind::Answered { by: Some(by) } => {
                let Some(live) = self.calls.get_mut(call) else {
                    return steps;
                };
                // An "internal" call answered by an outside number (no user, not shaped like
                // an extension: a conference room or a queue is neither) went outside.
                let outside =
                    users.user(by).is_none() && !TrackerConfig::default().is_extension(by);
                if !live.is_sent() && outside {
                    if let Some(agent) = live.agent.clone() {
                        live.direction = Direction::Outbound;
                        live.phone = Some(by.clone());
                        steps.extend(live.register(config, call, &agent));
                        steps.extend(live.show(
                            config,
                            users,
                            std::slice::from_ref(&agent),
                            CardMode::OnRing,
                        ));
                    }
                }
                if live.is_sent() {
                    // The agent of an outbound call keeps the card, whoever picked up.
                    let keep = live.owner_kept(by);
                    steps.extend(live.show(
                        config,
                        users,
                        std::slice::from_ref(&keep),
                        CardMode::OnAnswer,
                    ));
                    steps.extend(live.hide(&keep));
                }
            }
            CallEventKind::Answered { by: None }
            | CallEventKind::Transferred { .. }
            | CallEventKind::Ended { .. } => {}
        }
        steps
    }

    /// The closing steps of a finished call (and the whole plan of a call the planner did not
    /// see start: it began before a restart, or looked internal at first). With a recording
    /// handed over [`RecordingHandOver::Later`], its steps wait for [`Planner::on_recording`]:
    /// no `attachRecord` or `RECORD_URL` now, and `finish` of an answered call is not the last
    /// step (the connector keeps the `CALL_ID` the later `attachRecord` needs). Unanswered
    /// calls leave header-only files: nothing follows them.
    pub fn on_record(
        &mut self,
        call: &str,
        record: &CallRecord,
        users: &UserMap,
        hand_over: RecordingHandOver,
    ) -> Vec<Step> {
        let mut steps = self.record_steps(call, record, users);
        if hand_over == RecordingHandOver::Later && record.recording.is_some() {
            steps.retain(|step| step.kind != "attachRecord");
            for Step { kind, payload, .. } in &mut steps {
                if let Some(payload) = payload.as_object_mut() {
                    if kind == "finish" {
                        payload.remove("RECORD_URL");
                    }
                    if record.answered_at.is_some() {
                        payload.remove("last");
                    }
                }
            }
        }
        steps
    }

    /// The step of a recording handed over after its call ([`RecordingHandOver::Later`]):
    /// `attachRecord` of the MP3 by its link, the call's last step. It follows `finish`, whose
    /// `CALL_ID` the connector still holds (a lost one cannot be recovered by registering
    /// again after `finish`). Internal calls get none.
    pub fn on_recording(&self, record: &CallRecord, ready: &RecordingReady<'_>) -> Option<Step> {
        if record.direction == Direction::Internal {
            return None;
        }
        let stem = record
            .recording
            .as_deref()
            .and_then(|f| std::path::Path::new(f).file_stem())
            .map_or_else(|| record.id.clone(), |s| s.to_string_lossy().into_owned());
        let payload = json!({
            "register": null,
            "FILENAME": format!("{stem}.mp3"),
            "RECORD_URL": ready.url,
            "last": true,
        });
        Some(Step::once("attachRecord", payload))
    }

    /// [`Planner::on_record`] with the recording going with the call.
    fn record_steps(&mut self, call: &str, record: &CallRecord, users: &UserMap) -> Vec<Step> {
        let config = &self.config;
        let live = self.calls.remove(call);
        let crm_originated = self.crm_originated.remove(call);
        if record.direction == Direction::Internal && !live.as_ref().is_some_and(LiveCall::is_sent)
        {
            return Vec::new();
        }
        let from_record = LiveCall {
            direction: record.direction,
            agent: record.from.clone(),
            phone: match record.direction {
                Direction::Inbound => record.from.clone(),
                _ => record.to.clone(),
            },
            line: record
                .to
                .clone()
                .filter(|_| record.direction == Direction::Inbound),
            started_at: record.started_at,
            register: None,
            crm_call_id: crm_originated,
            shown: Vec::new(),
            hidden: Vec::new(),
        };
        // A call not registered yet is sent as the record describes it, cards kept.
        let mut live = match live {
            Some(live) if live.is_sent() => live,
            Some(live) => LiveCall {
                shown: live.shown,
                hidden: live.hidden,
                ..from_record
            },
            None => from_record,
        };
        // The record knows best who the call belongs to: who answered (unless it was an
        // outside number, e.g. a forward to a mobile), else whose phone rang first.
        let owner = match record.direction {
            Direction::Inbound => record
                .answered_by
                .as_ref()
                .filter(|by| record.rang.contains(by) || users.user(by).is_some())
                .or(record.rang.first()),
            _ => record.from.as_ref(),
        };
        let Some(owner) = owner.or(config.default_extension.as_ref()).cloned() else {
            return Vec::new();
        };
        let mut steps: Vec<Step> = live.register(config, call, &owner).into_iter().collect();
        if live.register.is_none() && live.crm_call_id.is_none() {
            // No client number: nothing Bitrix24 could log.
            return Vec::new();
        }
        steps.extend(live.hide(&owner));
        let record_url = config
            .record_url_base
            .as_ref()
            .zip(record.recording.as_ref())
            .map(|(base, file)| {
                let name = file.rsplit('/').next().unwrap_or(file);
                (
                    name.to_owned(),
                    format!("{}/{name}", base.trim_end_matches('/')),
                )
            });
        steps.push(live.step(
            "finish",
            "finish",
            json!({
                "extension": owner,
                "DURATION": record.talk_seconds,
                "STATUS_CODE": status_code(record),
                "RECORD_URL": record_url.as_ref().map(|(_, url)| url),
            }),
        ));
        if let Some((name, url)) = record_url {
            steps.push(live.step(
                "attachRecord",
                "attachRecord",
                json!({ "FILENAME": name, "RECORD_URL": url }),
            ));
        }
        if let Some(last) = steps.last_mut() {
            last.payload["last"] = json!(true);
        }
        steps
    }
}

impl LiveCall {
    /// Whether the call goes to Bitrix24 (not an internal one, or Bitrix24 started it).
    fn is_sent(&self) -> bool {
        self.direction != Direction::Internal || self.crm_call_id.is_some()
    }

    /// `register` to `owner`, once (nothing for a call Bitrix24 started itself).
    fn register(&mut self, config: &PlanConfig, call: &str, owner: &str) -> Option<Step> {
        if self.register.is_some() || self.crm_call_id.is_some() {
            return None;
        }
        let phone = self.phone.as_ref()?;
        let started = self.started_at.with_timezone(&config.utc_offset);
        let type_code = if self.direction == Direction::Inbound {
            2
        } else {
            1
        };
        self.register = Some(json!({
            "USER_PHONE_INNER": owner,
            "PHONE_NUMBER": phone,
            "TYPE": type_code,
            "CALL_START_DATE": started.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            "CRM_CREATE": u8::from(config.create_leads),
            "SHOW": 0,
            "LINE_NUMBER": self.line,
            "EXTERNAL_CALL_ID": call.rsplit('/').next().unwrap_or(call),
        }));
        Some(self.step("register", "register", json!({})))
    }

    /// `show` for those of `extensions` whose card mode is `when` and who have no card yet.
    fn show(
        &mut self,
        config: &PlanConfig,
        users: &UserMap,
        extensions: &[String],
        when: CardMode,
    ) -> Option<Step> {
        let new: Vec<String> = extensions
            .iter()
            .filter(|e| config.card(e) == when && !self.shown.contains(e))
            .filter(|e| users.user(e).is_some())
            .cloned()
            .collect();
        if new.is_empty() || (self.register.is_none() && self.crm_call_id.is_none()) {
            return None;
        }
        self.shown.extend(new.iter().cloned());
        Some(self.step(
            &format!("show:{}", new.join(",")),
            "show",
            json!({ "extensions": new }),
        ))
    }

    /// The user whose card stays when `by` answers: `by`, or the agent of an outbound call.
    fn owner_kept(&self, by: &str) -> String {
        match (&self.register, self.direction) {
            (Some(register), Direction::Outbound) => register["USER_PHONE_INNER"]
                .as_str()
                .unwrap_or(by)
                .to_owned(),
            _ => by.to_owned(),
        }
    }

    /// `hide` for every open card but `keep`'s.
    fn hide(&mut self, keep: &str) -> Option<Step> {
        let others: Vec<String> = self
            .shown
            .iter()
            .filter(|e| *e != keep && !self.hidden.contains(e))
            .cloned()
            .collect();
        if others.is_empty() {
            return None;
        }
        self.hidden.extend(others.iter().cloned());
        Some(self.step(
            &format!("hide:{}", others.join(",")),
            "hide",
            json!({ "extensions": others }),
        ))
    }

    fn step(&self, key: &str, kind: &str, extra: Value) -> Step {
        let mut payload = json!({ "register": self.register });
        if let Some(call_id) = &self.crm_call_id {
            payload["CALL_ID"] = json!(call_id);
        }
        if let (Some(payload), Value::Object(extra)) = (payload.as_object_mut(), extra) {
            payload.extend(extra);
        }
        Step {
            key: key.to_owned(),
            kind: kind.to_owned(),
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    use crate::bitrix24::tests::{at, record};

    pub(crate) fn config() -> PlanConfig {
        PlanConfig {
            utc_offset: FixedOffset::east_opt(3 * 3600).unwrap(),
            create_leads: true,
            default_extension: None,
            record_url_base: Some("https://pbx.example/rec/".into()),
            card_mode: CardMode::OnRing,
            card_modes: BTreeMap::from([("203".to_owned(), CardMode::OnAnswer)]),
        }
    }

    fn event(s: i64, kind: CallEventKind) -> CallEvent {
        CallEvent {
            call_id: "1700000000.7".into(),
            at: at(s),
            kind,
        }
    }

    fn ringing(extensions: &[&str]) -> CallEventKind {
        CallEventKind::Ringing {
            extensions: extensions.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn started(direction: Direction) -> CallEventKind {
        CallEventKind::Started {
            direction,
            from: Some("79161234567".into()),
            to: Some("74951112233".into()),
        }
    }

    fn users() -> UserMap {
        UserMap::from_pairs([
            ("201".to_owned(), 11),
            ("202".to_owned(), 12),
            ("203".to_owned(), 13),
        ])
    }

    /// Runs events then the record through a planner; one line per step, the register
    /// parameters shown once.
    fn check(planner: &mut Planner, events: &[CallEventKind], record: &CallRecord, expect: Expect) {
        let mut steps = Vec::new();
        for (n, kind) in events.iter().enumerate() {
            let event = event(n as i64, kind.clone());
            steps.extend(planner.on_event("pbx1/1700000000.7", &event, &users()));
        }
        steps.extend(planner.on_record(
            "pbx1/1700000000.7",
            record,
            &users(),
            RecordingHandOver::WithCall,
        ));
        let lines: Vec<String> = steps
            .into_iter()
            .map(|mut step| {
                if step.kind != "register" {
                    step.payload.as_object_mut().unwrap().remove("register");
                }
                format!("{} {}", step.key, step.payload)
            })
            .collect();
        expect.assert_eq(&lines.join("\n"));
        assert_eq!(planner.calls_in_progress(), 0, "the record closes the call");
    }

    #[test]
    fn ring_group_cards_follow_the_phones_and_the_answer() {
        check(
            &mut Planner::new(config()),
            &[
                started(Direction::Inbound),
                ringing(&["201"]),
                ringing(&["201", "203"]),
                ringing(&["201", "203", "202"]),
                CallEventKind::Answered {
                    by: Some("203".into()),
                },
            ],
            &record(Disposition::Answered, &["201", "203", "202"], Some("203")),
            expect![[r#"
                register {"register":{"CALL_START_DATE":"2023-11-15T01:13:20+03:00","CRM_CREATE":1,"EXTERNAL_CALL_ID":"1700000000.7","LINE_NUMBER":"74951112233","PHONE_NUMBER":"79161234567","SHOW":0,"TYPE":2,"USER_PHONE_INNER":"201"}}
                show:201 {"extensions":["201"]}
                show:202 {"extensions":["202"]}
                show:203 {"extensions":["203"]}
                hide:201,202 {"extensions":["201","202"]}
                finish {"DURATION":60,"RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","STATUS_CODE":"200","extension":"203"}
                attachRecord {"FILENAME":"in-1700000000.7.wav","RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","last":true}"#]],
        );
    }

    #[test]
    fn missed_call_hides_every_card_but_the_owners() {
        check(
            &mut Planner::new(config()),
            &[
                started(Direction::Inbound),
                ringing(&["201", "202"]),
                CallEventKind::Ended {
                    disposition: Disposition::NoAnswer,
                },
            ],
            &record(Disposition::NoAnswer, &["201", "202"], None),
            expect![[r#"
                register {"register":{"CALL_START_DATE":"2023-11-15T01:13:20+03:00","CRM_CREATE":1,"EXTERNAL_CALL_ID":"1700000000.7","LINE_NUMBER":"74951112233","PHONE_NUMBER":"79161234567","SHOW":0,"TYPE":2,"USER_PHONE_INNER":"201"}}
                show:201,202 {"extensions":["201","202"]}
                hide:202 {"extensions":["202"]}
                finish {"DURATION":0,"RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","STATUS_CODE":"304","extension":"201"}
                attachRecord {"FILENAME":"in-1700000000.7.wav","RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","last":true}"#]],
        );
    }

    #[test]
    fn default_extension_registers_at_start_and_ivr_hang_ups_go_to_it() {
        let mut config = config();
        config.default_extension = Some("200".into());
        config.record_url_base = None;
        check(
            &mut Planner::new(config),
            &[started(Direction::Inbound)],
            &record(Disposition::Cancelled, &[], None),
            expect![[r#"
                register {"register":{"CALL_START_DATE":"2023-11-15T01:13:20+03:00","CRM_CREATE":1,"EXTERNAL_CALL_ID":"1700000000.7","LINE_NUMBER":"74951112233","PHONE_NUMBER":"79161234567","SHOW":0,"TYPE":2,"USER_PHONE_INNER":"200"}}
                finish {"DURATION":0,"RECORD_URL":null,"STATUS_CODE":"304","extension":"200","last":true}"#]],
        );
    }

    #[test]
    fn never_mode_users_get_no_card_and_a_call_seen_only_at_its_end_is_still_logged() {
        let mut config = config();
        config.card_mode = CardMode::Never;
        config.record_url_base = None;
        check(
            &mut Planner::new(config),
            &[],
            &record(Disposition::Answered, &["201", "202"], Some("202")),
            expect![[r#"
                register {"register":{"CALL_START_DATE":"2023-11-15T01:13:20+03:00","CRM_CREATE":1,"EXTERNAL_CALL_ID":"1700000000.7","LINE_NUMBER":"74951112233","PHONE_NUMBER":"79161234567","SHOW":0,"TYPE":2,"USER_PHONE_INNER":"202"}}
                finish {"DURATION":60,"RECORD_URL":null,"STATUS_CODE":"200","extension":"202","last":true}"#]],
        );
    }

    #[test]
    fn a_call_bitrix24_started_is_finished_with_its_call_id_and_never_registered() {
        let mut planner = Planner::new(config());
        planner.crm_originated("pbx1/1700000000.7", "externalCall.b24.1");
        let mut outbound = record(Disposition::Answered, &["201"], Some("15550001111"));
        outbound.direction = Direction::Outbound;
        outbound.from = Some("201".into());
        outbound.to = Some("15550001111".into());
        outbound.recording = None;
        check(
            &mut planner,
            &[
                started(Direction::Internal),
                ringing(&["201"]),
                CallEventKind::Answered {
                    by: Some("201".into()),
                },
            ],
            &outbound,
            expect![[r#"
                show:201 {"CALL_ID":"externalCall.b24.1","extensions":["201"]}
                finish {"CALL_ID":"externalCall.b24.1","DURATION":60,"RECORD_URL":null,"STATUS_CODE":"200","extension":"201","last":true}"#]],
        );
    }

    #[test]
    fn internal_calls_are_not_sent() {
        let mut internal = record(Disposition::Answered, &["202"], Some("202"));
        internal.direction = Direction::Internal;
        check(
            &mut Planner::new(config()),
            &[started(Direction::Internal), ringing(&["202"])],
            &internal,
            expect![[""]],
        );
    }

    /// A recording handed over after the call: what the call's own steps leave for it, and
    /// the step the converted recording then gives, per kind of call.
    #[test]
    fn a_recording_handed_over_later_is_attached_by_its_link_as_the_last_step() {
        let answered = record(Disposition::Answered, &["201"], Some("201"));
        let missed = record(Disposition::NoAnswer, &["201"], None);
        let mut unrecorded = answered.clone();
        unrecorded.recording = None;
        let mut internal = answered.clone();
        internal.direction = Direction::Internal;
        let no_base = PlanConfig {
            record_url_base: None,
            ..config()
        };
        let ready = RecordingReady {
            url: "https://pbxlink.example/recordings/abc.1795990000.mac",
            expires_at: at(604_800),
            sha256: "abc",
            bytes: 4032,
            duration_ms: 2000,
        };
        let later = RecordingHandOver::Later;
        let cases = [
            ("answered", config(), &answered, later),
            ("answered, no base", no_base.clone(), &answered, later),
            ("missed", config(), &missed, later),
            ("missed, no base", no_base, &missed, later),
            ("not recorded", config(), &unrecorded, later),
            ("internal", config(), &internal, later),
            (
                "with the call",
                config(),
                &answered,
                RecordingHandOver::WithCall,
            ),
        ];
        let mut lines = Vec::new();
        for (case, config, record, hand_over) in cases {
            let mut planner = Planner::new(config);
            let steps = planner.on_record("pbx1/1700000000.7", record, &users(), hand_over);
            let later = (hand_over == RecordingHandOver::Later)
                .then(|| planner.on_recording(record, &ready))
                .flatten();
            lines.push(format!("{case}:"));
            for mut step in steps.into_iter().chain(later) {
                if step.kind == "register" {
                    continue;
                }
                step.payload.as_object_mut().unwrap().remove("register");
                lines.push(format!("  {} {}", step.key, step.payload));
            }
        }
        expect![[r#"
            answered:
              finish {"DURATION":60,"STATUS_CODE":"200","extension":"201"}
              attachRecord {"FILENAME":"in-1700000000.7.mp3","RECORD_URL":"https://pbxlink.example/recordings/abc.1795990000.mac","last":true}
            answered, no base:
              finish {"DURATION":60,"STATUS_CODE":"200","extension":"201"}
              attachRecord {"FILENAME":"in-1700000000.7.mp3","RECORD_URL":"https://pbxlink.example/recordings/abc.1795990000.mac","last":true}
            missed:
              finish {"DURATION":0,"STATUS_CODE":"304","extension":"201"}
              attachRecord {"FILENAME":"in-1700000000.7.mp3","RECORD_URL":"https://pbxlink.example/recordings/abc.1795990000.mac","last":true}
            missed, no base:
              finish {"DURATION":0,"STATUS_CODE":"304","extension":"201","last":true}
              attachRecord {"FILENAME":"in-1700000000.7.mp3","RECORD_URL":"https://pbxlink.example/recordings/abc.1795990000.mac","last":true}
            not recorded:
              finish {"DURATION":60,"RECORD_URL":null,"STATUS_CODE":"200","extension":"201","last":true}
              attachRecord {"FILENAME":"1700000000.7.mp3","RECORD_URL":"https://pbxlink.example/recordings/abc.1795990000.mac","last":true}
            internal:
            with the call:
              finish {"DURATION":60,"RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","STATUS_CODE":"200","extension":"201"}
              attachRecord {"FILENAME":"in-1700000000.7.wav","RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","last":true}"#]]
        .assert_eq(&lines.join("\n"));
    }
}
