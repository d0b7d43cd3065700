//! What the HTTP edge does to requests before handlers see them: JSON bodies whose errors
//! are JSON like every other API error, and the per-token rate limit of control endpoints.

use std::num::NonZeroU32;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::Digest as _;

use super::{ApiError, AppState};

/// A JSON request body; a malformed one is refused as an [`ApiError`] (JSON), not as
/// axum's plain-text rejection.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// axum's `Query`, refusing a query string it cannot read (`?since=yesterday`) with the API's
/// JSON error rather than axum's plain text.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Control requests per token: a GCRA bucket per credential (keyed by its SHA-256).
#[derive(Debug)]
pub struct ControlLimit(DefaultKeyedRateLimiter<[u8; 32]>);

/// Control requests a token may make per minute when `[http] control_per_minute` is unset.
pub const DEFAULT_CONTROL_PER_MINUTE: NonZeroU32 = NonZeroU32::new(60).expect("not zero");

impl ControlLimit {
    /// `per_minute` requests a minute, in bursts of up to as many.
    pub fn per_minute(per_minute: NonZeroU32) -> Self {
        Self(RateLimiter::keyed(Quota::per_minute(per_minute)))
    }
}

/// The credential a request presents, hashed: the bearer token, else `?access_token=`, else
/// the cookies (a browser session). The token check has run before, so there is one.
fn credential(req: &Request) -> [u8; 32] {
    let headers = req.headers();
    let presented = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .or_else(|| req.uri().query().map(str::as_bytes))
        .or_else(|| headers.get(header::COOKIE).map(HeaderValue::as_bytes))
        .unwrap_or_default();
    sha2::Sha256::digest(presented).into()
}

/// Refuses a control request over its token's rate with 429 and `Retry-After` (seconds).
pub async fn control_rate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match state.control_limit.0.check_key(&credential(&req)) {
        Ok(()) => next.run(req).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many control requests for this token: retry in {seconds} s"),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    async fn state(dir: &tempfile::TempDir) -> AppState {
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let store = store::Store::connect(&url).await.unwrap();
        let tokens = ["token-a".to_owned(), "token-b".to_owned()];
        AppState::new(store, &tokens, HashMap::new())
    }

    /// Status, `Retry-After` and body of a POST.
    async fn post(
        state: &AppState,
        uri: &str,
        token: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> String {
        let mut req = Request::post(uri).header("Authorization", format!("Bearer {token}"));
        if let Some(t) = content_type {
            req = req.header("Content-Type", t);
        }
        let req = req.body(Body::from(body.to_owned())).unwrap();
        let resp = super::super::app(state.clone()).oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| format!(" retry-after={}", v.to_str().unwrap()))
            .unwrap_or_default();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        format!("{status}{retry} {}", String::from_utf8_lossy(&body))
    }

    #[tokio::test]
    async fn control_requests_over_a_tokens_rate_get_429_with_retry_after() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir)
            .await
            .with_control_rate(NonZeroU32::new(3).unwrap());
        let mut shown = Vec::new();
        for token in ["token-a", "token-a", "token-a", "token-a", "token-b"] {
            let answer = post(&state, "/api/v1/calls/1.1/hangup", token, None, "").await;
            shown.push(format!("{token}: {answer}"));
        }
        // 3 a minute: the 4th of token-a waits for the next 20 s slot (19.x s if this test
        // ran slowly: shown rounded up as 20); token-b has its own. Past the limit, the
        // handler's own answer (no such call on no PBX).
        let shown = shown
            .join("\n")
            .replace("=19 ", "=20 ")
            .replace("in 19 s", "in 20 s");
        expect_test::expect![[r#"
            token-a: 404 {"error":"no call \"1.1\" in progress"}
            token-a: 404 {"error":"no call \"1.1\" in progress"}
            token-a: 404 {"error":"no call \"1.1\" in progress"}
            token-a: 429 retry-after=20 {"error":"too many control requests for this token: retry in 20 s"}
            token-b: 404 {"error":"no call \"1.1\" in progress"}"#]].assert_eq(&shown);
    }

    #[tokio::test]
    async fn malformed_json_bodies_get_json_errors() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir).await;
        let json = Some("application/json");
        let shown = [
            post(&state, "/api/v1/calls", "token-a", json, "{not json").await,
            post(
                &state,
                "/api/v1/calls",
                "token-a",
                json,
                r#"{"extension":201}"#,
            )
            .await,
            post(&state, "/api/v1/calls", "token-a", None, "{}").await,
        ];
        expect_test::expect![[r#"
            400 {"error":"Failed to parse the request body as JSON: key must be a string at line 1 column 2"}
            422 {"error":"Failed to deserialize the JSON body into the target type: extension: invalid type: integer `201`, expected a string at line 1 column 16"}
            415 {"error":"Expected request with `Content-Type: application/json`"}"#]].assert_eq(&shown.join("\n"));
    }
}
