//! AJAM client: the AMI action API over Asterisk's HTTP server (`/rawman` or `/mxml`), for
//! PBXs where only the HTTP port is reachable. Events come by `WaitEvent` long polling.
//!
//! The session is the `mansession_id` cookie, kept by reqwest's cookie store. Asterisk
//! forgets an idle session after `httptimeout` (60 s by default) and then answers
//! `Permission denied`; the client logs in again and retries the action once (a denied
//! action was not run, so the retry cannot run anything twice).

use std::time::Duration;

use ami::ajam::{parse_body, request_target, AjamFormat};
use ami::{Action, ActionResult, Message};
use url::Url;

use crate::secret::Secret;

/// Why an AJAM action got no result.
#[derive(Debug, thiserror::Error)]
pub enum AjamClientError {
    #[error("AJAM url {url}: {message}")]
    Url { url: String, message: String },
    /// `source` has its URL stripped: the query of a Login holds the secret.
    #[error("HTTP request to {endpoint} failed: {source}")]
    Http {
        endpoint: String,
        source: reqwest::Error,
    },
    #[error("HTTP status {status} from {endpoint}")]
    Status { endpoint: String, status: u16 },
    #[error(transparent)]
    Body(#[from] ami::ajam::AjamError),
    #[error("empty AJAM response from {0}")]
    Empty(String),
    #[error("authentication failed for user {user} at {endpoint}: {message}")]
    LoginFailed {
        user: String,
        endpoint: String,
        message: String,
    },
    #[error("{action}: permission denied at {endpoint} even after a fresh login")]
    PermissionDenied { action: String, endpoint: String },
}

/// An AJAM session with one Asterisk HTTP server.
#[derive(Debug, Clone)]
pub struct AjamClient {
    http: reqwest::Client,
    /// Scheme, host, port and any `http.conf` prefix, without the endpoint: `http://pbx:8088`.
    base: String,
    format: AjamFormat,
    username: String,
    secret: Secret,
    /// How long a request may take, on top of the time WaitEvent is asked to wait.
    timeout: Duration,
}

impl AjamClient {
    /// A client for `url`, the full endpoint (`http://pbx:8088/rawman` or `.../mxml`); it
    /// logs in on the first action.
    pub fn new(
        url: &str,
        username: &str,
        secret: Secret,
        timeout: Duration,
    ) -> Result<AjamClient, AjamClientError> {
        let bad = |message: &str| AjamClientError::Url {
            url: url.to_owned(),
            message: message.to_owned(),
        };
        let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let path = parsed.path().trim_end_matches('/');
        let (prefix, format) = [AjamFormat::Rawman, AjamFormat::Mxml]
            .into_iter()
            .find_map(|f| path.strip_suffix(f.path()).map(|p| (p, f)))
            .ok_or_else(|| bad("the path must end with /rawman or /mxml"))?;
        let base = format!("{}{prefix}", parsed.origin().ascii_serialization());
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(AjamClient {
            http,
            base,
            format,
            username: username.to_owned(),
            secret,
            timeout,
        })
    }

    fn endpoint(&self) -> String {
        format!("{}{}", self.base, self.format.path())
    }

    /// One HTTP round trip: the messages of the response body. `wait`: how long Asterisk
    /// may hold the request before answering (WaitEvent), on top of the usual timeout.
    async fn request(
        &self,
        action: &Action,
        wait: Duration,
    ) -> Result<Vec<Message>, AjamClientError> {
        let url = format!("{}{}", self.base, request_target(self.format, action, None));
        let http_error = |e: reqwest::Error| AjamClientError::Http {
            endpoint: self.endpoint(),
            source: e.without_url(),
        };
        let response = self
            .http
            .get(url)
            .timeout(self.timeout + wait)
            .send()
            .await
            .map_err(http_error)?;
        if !response.status().is_success() {
            return Err(AjamClientError::Status {
                endpoint: self.endpoint(),
                status: response.status().as_u16(),
            });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.bytes().await.map_err(http_error)?;
        Ok(parse_body(&content_type, &body)?)
    }

    /// Logs in (a new `mansession_id`).
    pub async fn login(&self) -> Result<(), AjamClientError> {
        let login = Action::new("Login")
            .field("Username", &self.username)
            .field("Secret", self.secret.expose());
        let result = self.result(&login, Duration::ZERO).await?;
        if result.is_success() {
            return Ok(());
        }
        Err(AjamClientError::LoginFailed {
            user: self.username.clone(),
            endpoint: self.endpoint(),
            message: result.message().unwrap_or_default().to_owned(),
        })
    }

    /// Sends `action`; logs in first when the session is missing or expired.
    pub async fn send(&self, action: Action) -> Result<ActionResult, AjamClientError> {
        self.send_waiting(action, Duration::ZERO).await
    }

    async fn send_waiting(
        &self,
        action: Action,
        wait: Duration,
    ) -> Result<ActionResult, AjamClientError> {
        let result = self.result(&action, wait).await?;
        if !is_permission_denied(&result) {
            return Ok(result);
        }
        self.login().await?;
        let retry = self.result(&action, wait).await?;
        if is_permission_denied(&retry) {
            return Err(AjamClientError::PermissionDenied {
                action: action.name().to_owned(),
                endpoint: self.endpoint(),
            });
        }
        Ok(retry)
    }

    /// Waits up to `timeout` (Asterisk's side) for events; returns those that came.
    pub async fn wait_event(&self, timeout: Duration) -> Result<Vec<Message>, AjamClientError> {
        let wait = Action::new("WaitEvent").field("Timeout", &timeout.as_secs().to_string());
        let result = self.send_waiting(wait, timeout).await?;
        // WaitEventComplete only marks the end of the poll; it is not a PBX event.
        Ok(result
            .items
            .into_iter()
            .filter(|m| m.event() != Some("WaitEventComplete"))
            .collect())
    }

    /// Ends the AJAM session.
    pub async fn logoff(&self) -> Result<(), AjamClientError> {
        self.result(&Action::logoff(), Duration::ZERO)
            .await
            .map(drop)
    }

    async fn result(
        &self,
        action: &Action,
        wait: Duration,
    ) -> Result<ActionResult, AjamClientError> {
        let messages = self.request(action, wait).await?;
        to_result(messages).ok_or_else(|| AjamClientError::Empty(self.endpoint()))
    }
}

fn is_permission_denied(result: &ActionResult) -> bool {
    !result.is_success() && result.message() == Some("Permission denied")
}

/// One HTTP body as an action result: the response first, then the events that follow it
/// (a list's items, or WaitEvent's events); a list's closing `*Complete` event is split off
/// as in the TCP session.
fn to_result(messages: Vec<Message>) -> Option<ActionResult> {
    let mut messages = messages.into_iter();
    let response = messages.next()?;
    let mut items: Vec<Message> = messages.collect();
    let is_list = response
        .get("EventList")
        .is_some_and(|v| v.eq_ignore_ascii_case("start"));
    let complete = items
        .last()
        .filter(|m| {
            is_list
                && m.get("EventList")
                    .is_some_and(|v| v.eq_ignore_ascii_case("Complete"))
        })
        .is_some()
        .then(|| items.pop())
        .flatten();
    Some(ActionResult {
        response,
        items,
        complete,
    })
}

#[cfg(test)]
mod tests;
