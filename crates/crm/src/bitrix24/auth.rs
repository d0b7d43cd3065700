//! OAuth for a Bitrix24 local application: the access token goes in every request's `auth`
//! parameter; on `expired_token` the refresh token buys a new pair at the authorization server
//! (`GET https://oauth.bitrix.info/oauth/token/?grant_type=refresh_token&client_id=...&
//! client_secret=...&refresh_token=...`), the request is sent again with the new token, and
//! the new pair is handed out once ([`OAuth::take_renewed`]) for pbxlink to save: the old
//! refresh token is spent.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lock;
use crate::delivery::HttpRequest;

/// Default authorization server.
pub const OAUTH_URL: &str = "https://oauth.bitrix.info/oauth/token/";

/// An access/refresh token pair.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Goes with every REST call; lives an hour.
    pub access_token: String,
    /// Buys the next pair; lives 180 days, spent when used.
    pub refresh_token: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs.
        f.write_str("Tokens { .. }")
    }
}

/// A local application's settings.
#[derive(Clone)]
pub struct OAuthConfig {
    /// The portal's REST address, `https://portal.bitrix24.ru/rest` (the `client_endpoint`).
    pub endpoint: String,
    /// The application's code (`client_id`).
    pub client_id: String,
    /// The application's secret key (`client_secret`).
    pub client_secret: String,
    /// The authorization server's token URL ([`OAUTH_URL`]).
    pub token_url: String,
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

/// Error codes of the authorization server (a failed renewal).
const RENEWAL_ERRORS: [&str; 6] = [
    "invalid_grant",
    "invalid_client",
    "invalid_request",
    "unauthorized_client",
    "PAYMENT_REQUIRED",
    "NO_AUTH_FOUND",
];

#[derive(Debug)]
struct State {
    tokens: Tokens,
    /// An `expired_token` was seen: the next request renews first.
    due: bool,
    /// Renewed since the last [`OAuth::take_renewed`].
    renewed: bool,
}

/// The OAuth side of a connector.
#[derive(Debug)]
pub struct OAuth {
    config: OAuthConfig,
    state: Mutex<State>,
}

impl OAuth {
    /// Starts from `tokens` (the saved pair, or the first one from the application's install).
    pub fn new(mut config: OAuthConfig, tokens: Tokens) -> Self {
        config.endpoint = config.endpoint.trim_end_matches('/').to_owned();
        Self {
            config,
            state: Mutex::new(State {
                tokens,
                due: false,
                renewed: false,
            }),
        }
    }

    pub(super) fn endpoint(&self) -> &str {
        &self.config.endpoint
    }

    pub(super) fn access_token(&self) -> String {
        lock(&self.state).tokens.access_token.clone()
    }

    /// The token just failed with `expired_token`.
    pub(super) fn expired(&self) {
        lock(&self.state).due = true;
    }

    /// The renewal request, when one is due. One goes out per expiry: requests that met the
    /// expiry too go again with the old token and meet it again, or find the new one; a
    /// renewal lost on the way is due again at the next `expired_token`.
    pub(super) fn renewal_request(&self) -> Option<HttpRequest> {
        let mut state = lock(&self.state);
        if !std::mem::take(&mut state.due) {
            return None;
        }
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("client_secret", &self.config.client_secret)
            .append_pair("refresh_token", &state.tokens.refresh_token)
            .finish();
        let separator = if self.config.token_url.contains('?') {
            '&'
        } else {
            '?'
        };
        // An empty body makes it a GET, as the authorization server documents it.
        Some(HttpRequest {
            url: format!("{}{separator}{query}", self.config.token_url),
            headers: Vec::new(),
            body: String::new(),
        })
    }

    /// Takes a renewal answer (`access_token` + `refresh_token`); false for any other body.
    pub(super) fn take_renewal_answer(&self, body: &Value) -> bool {
        let (Some(access), Some(refresh)) = (
            body["access_token"].as_str(),
            body["refresh_token"].as_str(),
        ) else {
            return false;
        };
        let mut state = lock(&self.state);
        state.tokens = Tokens {
            access_token: access.to_owned(),
            refresh_token: refresh.to_owned(),
        };
        state.due = false;
        state.renewed = true;
        true
    }

    /// Whether error `code` is the authorization server's (a failed renewal, or credentials
    /// Bitrix24 no longer takes); if so, a renewal is due again.
    pub(super) fn renewal_failed(&self, code: &str) -> bool {
        let failed = RENEWAL_ERRORS.contains(&code);
        if failed {
            lock(&self.state).due = true;
        }
        failed
    }

    /// The pair renewed since the last call, once.
    pub(super) fn take_renewed(&self) -> Option<Tokens> {
        let mut state = lock(&self.state);
        std::mem::take(&mut state.renewed).then(|| state.tokens.clone())
    }
}
