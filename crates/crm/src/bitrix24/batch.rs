//! Bitrix24's `batch` method: up to 50 REST calls in one request (one of the portal's 2
//! requests a second), as `cmd[key] = "method?query"` with `halt = 0`; the answer carries each
//! command's `result` or `result_error`, split back here into one answer per command so each
//! outbox row keeps its own verdict (retriable or permanent).

use serde_json::{json, Value};

use crate::delivery::{HttpRequest, HttpResponse};

/// Most commands one `batch` may carry (more end with `ERROR_BATCH_LENGTH_EXCEEDED`).
pub const MAX_COMMANDS: usize = 50;

/// The `cmd` object for `requests`, keyed `c0`, `c1`, ...; `None` when one of them is not a
/// REST call on `endpoint` (a token renewal) or there are too many.
pub(super) fn commands(endpoint: &str, requests: &[HttpRequest]) -> Option<Value> {
    if requests.len() > MAX_COMMANDS {
        return None;
    }
    let mut cmd = serde_json::Map::new();
    for (n, request) in requests.iter().enumerate() {
        let method = request
            .url
            .strip_prefix(endpoint)?
            .strip_prefix('/')?
            .strip_suffix(".json")?;
        let mut params: Value = serde_json::from_str(&request.body).ok()?;
        // The batch itself carries the credentials.
        params.as_object_mut()?.remove("auth");
        cmd.insert(
            format!("c{n}"),
            json!(format!("{method}?{}", query(&params))),
        );
    }
    Some(Value::Object(cmd))
}

/// `params` as PHP's `http_build_query` writes them (what Bitrix24 parses): nested keys as
/// `A[B]`, list items as `A[0]`, booleans as 1/0, nulls left out.
pub fn query(params: &Value) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    if let Value::Object(map) = params {
        for (key, value) in map {
            push(&mut out, key, value);
        }
    }
    out.finish()
}

fn push(out: &mut url::form_urlencoded::Serializer<'_, String>, key: &str, value: &Value) {
    match value {
        Value::Null => {}
        Value::Bool(b) => {
            out.append_pair(key, if *b { "1" } else { "0" });
        }
        Value::Number(n) => {
            out.append_pair(key, &n.to_string());
        }
        Value::String(s) => {
            out.append_pair(key, s);
        }
        Value::Array(items) => {
            for (n, item) in items.iter().enumerate() {
                push(out, &format!("{key}[{n}]"), item);
            }
        }
        Value::Object(map) => {
            for (inner, item) in map {
                push(out, &format!("{key}[{inner}]"), item);
            }
        }
    }
}

/// The answer to a batch of `count` commands, as `count` single answers in order. A batch
/// refused whole (rate limit, expired token, 5xx) is that refusal for every command; a
/// command the answer does not mention gets a retriable `ERROR_BATCH_MISSING`.
pub(super) fn split(response: &HttpResponse, count: usize) -> Vec<HttpResponse> {
    let body: Value = serde_json::from_str(&response.body).unwrap_or_default();
    let outer = &body["result"];
    if !(200..300).contains(&response.status) || body.get("error").is_some() || !outer.is_object() {
        return vec![response.clone(); count];
    }
    let answer = |status: u16, body: Value| HttpResponse {
        status,
        retry_after: response.retry_after,
        body: body.to_string(),
    };
    (0..count)
        .map(|n| {
            let key = format!("c{n}");
            // PHP sends an empty map as `[]`, so `.get` on a non-object is simply `None`.
            match (outer["result_error"].get(&key), outer["result"].get(&key)) {
                (Some(error), _) => answer(400, error.clone()),
                (None, Some(result)) => answer(200, json!({ "result": result })),
                (None, None) => answer(
                    503,
                    json!({
                        "error": "ERROR_BATCH_MISSING",
                        "error_description": "the batch answer has no result for this command",
                    }),
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn post(url: &str, body: Value) -> HttpRequest {
        HttpRequest {
            url: url.into(),
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    #[test]
    fn commands_are_method_and_php_style_query() {
        let base = "https://b24.example/rest";
        let cmd = commands(
            base,
            &[
                post(
                    "https://b24.example/rest/telephony.externalcall.show.json",
                    json!({"CALL_ID": "externalCall.1", "USER_ID": [11, 12], "auth": "tok"}),
                ),
                post(
                    "https://b24.example/rest/telephony.externalcall.finish.json",
                    json!({"CALL_ID": "x y&z", "DURATION": 60, "RECORD_URL": null, "F": {"=A": true}}),
                ),
            ],
        );
        expect![[r#"{"c0":"telephony.externalcall.show?CALL_ID=externalCall.1&USER_ID%5B0%5D=11&USER_ID%5B1%5D=12","c1":"telephony.externalcall.finish?CALL_ID=x+y%26z&DURATION=60&F%5B%3DA%5D=1"}"#]]
            .assert_eq(&cmd.unwrap().to_string());
        let renewal = HttpRequest {
            url: "https://oauth.bitrix.info/oauth/token/?grant_type=refresh_token".into(),
            headers: Vec::new(),
            body: String::new(),
        };
        assert_eq!(commands(base, &[renewal]), None);
    }

    #[test]
    fn the_answer_splits_per_command() {
        let ok = HttpResponse {
            status: 200,
            retry_after: None,
            body: json!({"result": {
                "result": {"c0": true},
                "result_error": {"c1": {"error": "ERROR_CORE", "error_description": "Call is not found"}},
                "result_total": [], "result_next": [], "result_time": {}
            }, "time": {}})
            .to_string(),
        };
        let lines: Vec<String> = split(&ok, 3)
            .iter()
            .map(|r| format!("{} {}", r.status, r.body))
            .collect();
        expect![[r#"
            200 {"result":true}
            400 {"error":"ERROR_CORE","error_description":"Call is not found"}
            503 {"error":"ERROR_BATCH_MISSING","error_description":"the batch answer has no result for this command"}"#]]
        .assert_eq(&lines.join("\n"));
        let limited = HttpResponse {
            status: 503,
            retry_after: None,
            body: r#"{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}"#
                .into(),
        };
        assert_eq!(split(&limited, 2), vec![limited.clone(), limited]);
    }
}
