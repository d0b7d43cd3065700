//! Password sign-in for the web UI: `POST /login` trades a user name and password for a
//! session token (used like an API token, ends after [`SESSION_TTL`]), `POST /logout` ends
//! it, `GET /me` says who a token belongs to. Failed attempts slow down the next ones.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{TimeDelta, Utc};
use serde::Deserialize;

use super::{ApiError, AppState, Caller};
use crate::users::{hash_password, verify_password};
use web::tokens::{digest, new_secret, Scope};

/// How long a session lasts: a working day and a bit, so a shift never signs in twice.
pub(super) const SESSION_TTL: TimeDelta = TimeDelta::hours(12);
/// Failed attempts per user name that cost nothing (typos).
const FREE_FAILURES: u32 = 3;
/// Past those, each failure doubles the wait before the next attempt, up to this.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// A user name's failures are forgotten this long after the last one (when the table is big).
const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Names tracked before old ones are forgotten: guessing random names cannot fill memory.
const MAX_TRACKED: usize = 10_000;

/// Checked when the user does not exist, so that an unknown name takes as long to refuse as
/// a wrong password: response times do not tell which names exist.
static UNKNOWN_USER_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password("no user has this password"));

/// Failed sign-ins by user name (in memory: a restart forgives, which costs an attacker
/// far more than it gains).
#[derive(Debug, Default)]
pub(super) struct Throttle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Throttle {
    /// How long `user` must still wait before trying again, if at all.
    fn wait(&self, user: &str, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().expect("throttle lock poisoned");
        let &(count, last) = failures.get(user)?;
        let over = count.checked_sub(FREE_FAILURES)?;
        let delay = Duration::from_secs(1u64 << over.min(16)).min(MAX_WAIT);
        (last + delay)
            .checked_duration_since(now)
            .filter(|wait| !wait.is_zero())
    }

    fn failed(&self, user: &str, now: Instant) {
        let mut failures = self.failures.lock().expect("throttle lock poisoned");
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
        }
        let entry = failures.entry(user.to_owned()).or_insert((0, now));
        *entry = (entry.0 + 1, now);
    }

    fn succeeded(&self, user: &str) {
        self.failures
            .lock()
            .expect("throttle lock poisoned")
            .remove(user);
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Login {
    user: String,
    password: String,
}

/// `POST /api/v1/login`: `{"user","password"}` -> `{"token","user","scope","expires_at"}`.
/// One answer for an unknown user and a wrong password (401); 429 with `Retry-After` while
/// the name is throttled.
pub(super) async fn login(
    State(state): State<AppState>,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(Login { user, password }) =
        body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    if let Some(wait) = state.throttle.wait(&user, Instant::now()) {
        let secs = wait.as_secs().max(1);
        let error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed sign-ins for this user: try again in {secs} s"),
        );
        return Ok(([(header::RETRY_AFTER, secs.to_string())], error).into_response());
    }
    let stored = state.store.user(&user).await?;
    let hash = stored
        .as_ref()
        .map_or_else(|| UNKNOWN_USER_HASH.clone(), |u| u.password_hash.clone());
    // argon2 is deliberately slow: off the async workers.
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // A stored scope this version does not know grants nothing (fail closed).
    let scope = stored.as_ref().and_then(|u| Scope::from_stored(&u.scope));
    let (true, Some(scope)) = (matches, scope) else {
        state.throttle.failed(&user, Instant::now());
        tracing::warn!(user, "failed web UI sign-in");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password",
        ));
    };
    state.throttle.succeeded(&user);
    let token = new_secret();
    let now = Utc::now();
    let expires_at = now + SESSION_TTL;
    state
        .store
        .open_session(&hex::encode(digest(&token)), &user, now, expires_at)
        .await?;
    tracing::info!(user, "web UI sign-in");
    let body = serde_json::json!({
        "token": token, "user": user, "scope": scope.as_str(), "expires_at": expires_at,
    });
    Ok(Json(body).into_response())
}

/// `POST /api/v1/logout`: ends the session of the token presented (an API token is left
/// as it is: `pbxlink token revoke` ends those).
pub(super) async fn logout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<StatusCode, ApiError> {
    if let Some(session) = &caller.session {
        state.store.close_session(session).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/me`: the scope of the token presented and, for a session, its user.
pub(super) async fn me(Extension(caller): Extension<Caller>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "scope": caller.scope.as_str(), "user": caller.user }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_past_the_free_ones_double_the_wait_and_success_forgives() {
        let t = Throttle::default();
        let start = Instant::now();
        let mut waits = Vec::new();
        for i in 0..7 {
            t.failed("olga", start);
            waits.push(format!("{}: {:?}", i + 1, t.wait("olga", start)));
        }
        expect_test::expect![[r#"
            1: None
            2: None
            3: Some(1s)
            4: Some(2s)
            5: Some(4s)
            6: Some(8s)
            7: Some(16s)"#]]
        .assert_eq(&waits.join("\n"));
        assert_eq!(t.wait("olga", start + Duration::from_secs(16)), None);
        assert_eq!(t.wait("ivan", start), None, "per user name");
        t.succeeded("olga");
        assert_eq!(t.wait("olga", start), None);
    }
}
