//! The connector against canned Bitrix24 answers.

use super::*;
use crate::Step;
use calls::{CallRecord, Direction, Disposition};
use chrono::FixedOffset;
use expect_test::{expect, Expect};

fn users() -> UserMap {
    UserMap::from_user_get(&json!([
        {"ID": "11", "UF_PHONE_INNER": "201"},
        {"ID": "12", "UF_PHONE_INNER": "202"},
        {"ID": "13", "UF_PHONE_INNER": ""},
        {"ID": 14, "UF_PHONE_INNER": "200"},
    ]))
    .unwrap()
}

#[test]
fn user_map_skips_users_without_an_inner_phone() {
    expect![[r#"
        UserMap(
            {
                "200": 14,
                "201": 11,
                "202": 12,
            },
        )
    "#]]
    .assert_debug_eq(&users());
    assert_eq!(users().extension_of(12).as_deref(), Some("202"));
    assert!(UserMap::from_user_get(&json!({"error": "expired_token"})).is_err());
}

/// `s` seconds into the test calls.
pub(super) fn at(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
}

/// An inbound test call with a recording (shared with the planner's tests).
pub(super) fn record(
    disposition: Disposition,
    rang: &[&str],
    answered_by: Option<&str>,
) -> CallRecord {
    CallRecord {
        id: "1700000000.7".into(),
        direction: Direction::Inbound,
        from: Some("79161234567".into()),
        to: Some("74951112233".into()),
        caller_name: None,
        started_at: at(0),
        answered_at: answered_by.map(|_| at(10)),
        ended_at: at(70),
        ring_seconds: 10,
        talk_seconds: if answered_by.is_some() { 60 } else { 0 },
        disposition,
        answered_by: answered_by.map(Into::into),
        rang: rang.iter().map(|e| e.to_string()).collect(),
        transfers: Vec::new(),
        queue: None,
        recording: Some("/var/spool/asterisk/monitor/in-1700000000.7.wav".into()),
        legs: Vec::new(),
        provenance: Default::default(),
        timeline: Vec::new(),
    }
}

/// The steps of a call seen only at its end (what a restart leaves).
fn steps(record: &CallRecord) -> Vec<Step> {
    let mut planner = Planner::new(PlanConfig {
        utc_offset: FixedOffset::east_opt(3 * 3600).unwrap(),
        create_leads: true,
        default_extension: None,
        record_url_base: Some("https://pbx.example/rec".into()),
        card_mode: CardMode::OnRing,
        card_modes: BTreeMap::new(),
    });
    planner.on_record(
        "pbx1/1700000000.7",
        record,
        &users(),
        crate::RecordingHandOver::WithCall,
    )
}

fn ok(body: Value) -> HttpResponse {
    HttpResponse {
        status: 200,
        retry_after: None,
        body: body.to_string(),
    }
}

/// Runs a call's steps against `answer`: every request sent, in order.
fn deliver_all(
    connector: &Bitrix24,
    steps: &[Step],
    answer: impl Fn(&HttpRequest) -> HttpResponse,
) -> Vec<String> {
    let mut sent = Vec::new();
    for step in steps {
        let item = OutboxItem {
            call_id: "1700000000.7".into(),
            kind: step.kind.clone(),
            payload: step.payload.clone(),
            idempotency_key: format!("b24:pbx1:1700000000.7:{}", step.key),
        };
        for _ in 0..5 {
            let request = connector.next_request(&item, Utc::now()).unwrap();
            sent.push(format!("{} {}", request.url, request.body));
            let response = answer(&request);
            if connector.on_response(&item, &response).unwrap() == Progress::Delivered {
                break;
            }
        }
    }
    sent
}

fn portal(request: &HttpRequest) -> HttpResponse {
    if request.url.contains("register") {
        ok(json!({"result": {"CALL_ID": "externalCall.abc.1700000000"}}))
    } else {
        ok(json!({"result": true}))
    }
}

#[test]
fn steps_use_the_registered_call_id_and_mapped_users() {
    let connector = Bitrix24::new("https://portal.bitrix24.ru/rest/1/code/");
    connector.set_users(users());
    let steps = steps(&record(Disposition::Answered, &["201", "202"], Some("202")));
    expect![[r#"
        https://portal.bitrix24.ru/rest/1/code/telephony.externalcall.register.json {"CALL_START_DATE":"2023-11-15T01:13:20+03:00","CRM_CREATE":1,"EXTERNAL_CALL_ID":"1700000000.7","LINE_NUMBER":"74951112233","PHONE_NUMBER":"79161234567","SHOW":0,"TYPE":2,"USER_PHONE_INNER":"202"}
        https://portal.bitrix24.ru/rest/1/code/telephony.externalcall.finish.json {"CALL_ID":"externalCall.abc.1700000000","DURATION":60,"RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","STATUS_CODE":"200","USER_ID":12}
        https://portal.bitrix24.ru/rest/1/code/telephony.externalcall.attachRecord.json {"CALL_ID":"externalCall.abc.1700000000","FILENAME":"in-1700000000.7.wav","RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav"}"#]]
    .assert_eq(&deliver_all(&connector, &steps, portal).join("\n"));
    assert!(
        lock(&connector.call_ids).is_empty(),
        "the last step forgets the call"
    );
}

#[test]
fn after_a_restart_a_step_re_registers_first() {
    let connector = Bitrix24::new("https://portal.bitrix24.ru/rest/1/code");
    connector.set_users(users());
    let steps = steps(&record(Disposition::NoAnswer, &["201"], None));
    expect![[r#"
        https://portal.bitrix24.ru/rest/1/code/telephony.externalcall.register.json {"CALL_START_DATE":"2023-11-15T01:13:20+03:00","CRM_CREATE":1,"EXTERNAL_CALL_ID":"1700000000.7","LINE_NUMBER":"74951112233","PHONE_NUMBER":"79161234567","SHOW":0,"TYPE":2,"USER_PHONE_INNER":"201"}
        https://portal.bitrix24.ru/rest/1/code/telephony.externalcall.finish.json {"CALL_ID":"externalCall.abc.1700000000","DURATION":0,"RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","STATUS_CODE":"304","USER_ID":11}
        https://portal.bitrix24.ru/rest/1/code/telephony.externalcall.attachRecord.json {"CALL_ID":"externalCall.abc.1700000000","FILENAME":"in-1700000000.7.wav","RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav"}"#]]
    .assert_eq(&deliver_all(&connector, &steps[1..], portal).join("\n"));
}

#[test]
fn an_expired_token_is_renewed_once_then_the_request_goes_again() {
    let oauth = auth::OAuth::new(
        OAuthConfig {
            endpoint: "https://portal.bitrix24.ru/rest/".into(),
            client_id: "local.1".into(),
            client_secret: "s3cret".into(),
            token_url: auth::OAUTH_URL.into(),
        },
        Tokens {
            access_token: "old".into(),
            refresh_token: "r1".into(),
        },
    );
    let connector = Bitrix24::with_auth(Auth::OAuth(oauth));
    connector.set_users(users());
    let steps = steps(&record(Disposition::NoAnswer, &["201"], None));
    let answer = |request: &HttpRequest| {
        if request.url.starts_with(auth::OAUTH_URL) {
            ok(json!({"access_token": "new", "refresh_token": "r2", "expires_in": 3600}))
        } else if request.body.contains(r#""auth":"old""#) {
            HttpResponse {
                status: 401,
                retry_after: None,
                body: json!({"error": "expired_token", "error_description": "The access token provided has expired."}).to_string(),
            }
        } else {
            portal(request)
        }
    };
    expect![[r#"
        https://portal.bitrix24.ru/rest/telephony.externalcall.register.json {"CALL_START_DATE":"2023-11-15T01:13:20+03:00","CRM_CREATE":1,"EXTERNAL_CALL_ID":"1700000000.7","LINE_NUMBER":"74951112233","PHONE_NUMBER":"79161234567","SHOW":0,"TYPE":2,"USER_PHONE_INNER":"201","auth":"old"}
        https://oauth.bitrix.info/oauth/token/?grant_type=refresh_token&client_id=local.1&client_secret=s3cret&refresh_token=r1 
        https://portal.bitrix24.ru/rest/telephony.externalcall.register.json {"CALL_START_DATE":"2023-11-15T01:13:20+03:00","CRM_CREATE":1,"EXTERNAL_CALL_ID":"1700000000.7","LINE_NUMBER":"74951112233","PHONE_NUMBER":"79161234567","SHOW":0,"TYPE":2,"USER_PHONE_INNER":"201","auth":"new"}
        https://portal.bitrix24.ru/rest/telephony.externalcall.finish.json {"CALL_ID":"externalCall.abc.1700000000","DURATION":0,"RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","STATUS_CODE":"304","USER_ID":11,"auth":"new"}"#]]
    .assert_eq(&deliver_all(&connector, &steps[..2], answer).join("\n"));
    assert_eq!(
        connector.take_renewed_tokens(),
        Some(Tokens {
            access_token: "new".into(),
            refresh_token: "r2".into()
        })
    );
    assert_eq!(connector.take_renewed_tokens(), None, "handed out once");
}

#[test]
fn a_caller_is_the_first_entity_found_with_its_managers_extension() {
    let connector = Bitrix24::new("https://portal.bitrix24.ru/rest/1/code");
    connector.set_users(users());
    let found = json!([
        {"CRM_ENTITY_TYPE": "CONTACT", "CRM_ENTITY_ID": 651, "ASSIGNED_BY_ID": 12, "NAME": "John Doe",
         "ASSIGNED_BY": {"ID": "12", "TIMEMAN_STATUS": "CLOSED", "USER_PHONE_INNER": null,
                         "WORK_PHONE": null, "PERSONAL_PHONE": null, "PERSONAL_MOBILE": "19062195047"}},
        {"CRM_ENTITY_TYPE": "COMPANY", "CRM_ENTITY_ID": 643, "ASSIGNED_BY_ID": 99, "NAME": "Daisy LLC",
         "ASSIGNED_BY": {"ID": "99", "USER_PHONE_INNER": "299"}},
    ]);
    expect![[r#"
        CallerInfo {
            name: Some(
                "John Doe",
            ),
            crm_id: Some(
                "CONTACT:651",
            ),
            responsible_extension: Some(
                "202",
            ),
        }
    "#]]
    .assert_debug_eq(&connector.caller_info(&found));
    let inner = connector.caller_info(&json!([found[1]]));
    assert_eq!(inner.responsible_extension.as_deref(), Some("299"));
    assert_eq!(connector.caller_info(&json!([])), CallerInfo::default());
    expect![[r#"https://portal.bitrix24.ru/rest/1/code/telephony.externalCall.searchCrmEntities.json {"PHONE_NUMBER":"79161234567"}"#]]
        .assert_eq(&{
            let r = connector.search_request("79161234567");
            format!("{} {}", r.url, r.body)
        });
}

fn check_answers(answers: &[(u16, &str)], expect: Expect) {
    let verdicts: Vec<String> = answers
        .iter()
        .map(|(status, body)| {
            let response = HttpResponse {
                status: *status,
                retry_after: None,
                body: body.to_string(),
            };
            format!("{status} {body} => {:?}", check(&response))
        })
        .collect();
    expect.assert_eq(&verdicts.join("\n"));
}

#[test]
fn errors_are_classified() {
    check_answers(
        &[
            (200, r#"{"result":{"CALL_ID":"x"}}"#),
            (
                503,
                r#"{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}"#,
            ),
            (
                401,
                r#"{"error":"expired_token","error_description":"The access token provided has expired."}"#,
            ),
            (
                400,
                r#"{"error":"ERROR_ARGUMENT","error_description":"Argument 'PHONE_NUMBER' is null or empty"}"#,
            ),
            (
                401,
                r#"{"error":"NO_AUTH_FOUND","error_description":"Wrong authorization data"}"#,
            ),
            (502, "<html>Bad Gateway</html>"),
            (404, "Not Found"),
            (200, "{}"),
        ],
        expect![[r#"
            200 {"result":{"CALL_ID":"x"}} => Ok(Object {"CALL_ID": String("x")})
            503 {"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"} => Err(Retriable { reason: "QUERY_LIMIT_EXCEEDED: Too many requests", retry_after: Some(1s) })
            401 {"error":"expired_token","error_description":"The access token provided has expired."} => Err(Retriable { reason: "expired_token: The access token provided has expired.", retry_after: Some(1s) })
            400 {"error":"ERROR_ARGUMENT","error_description":"Argument 'PHONE_NUMBER' is null or empty"} => Err(Permanent { reason: "ERROR_ARGUMENT: Argument 'PHONE_NUMBER' is null or empty" })
            401 {"error":"NO_AUTH_FOUND","error_description":"Wrong authorization data"} => Err(Permanent { reason: "NO_AUTH_FOUND: Wrong authorization data" })
            502 <html>Bad Gateway</html> => Err(Retriable { reason: "HTTP 502: <html>Bad Gateway</html>", retry_after: None })
            404 Not Found => Err(Permanent { reason: "HTTP 404: Not Found" })
            200 {} => Err(Permanent { reason: "answer without result: {}" })"#]],
    );
}
