//! A Bitrix24 portal as a `[[crm]]` connector: built from its section (webhook URL, or OAuth
//! with its token file), REST calls with token renewal, the user map reloads, and what the
//! portal's click-to-call handler (`pbxlink`'s `portal`) needs to place a call for Bitrix24.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use crm::bitrix24::{
    auth, Answer, Auth, Bitrix24, CardMode, OAuthConfig, PlanConfig, Planner, Tokens, UserMap,
};
use crm::DeliveryError;
use serde::Deserialize;
use serde_json::Value;

use super::{lock, secret, Bitrix24Config, Crm};

/// `[crm.oauth]`: a local application (Bitrix24 > Developer resources > Other > Local
/// application) instead of an incoming webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSection {
    /// The portal's REST address (`client_endpoint`), `https://portal.bitrix24.ru/rest/`.
    pub endpoint: String,
    /// The application's code (`client_id`).
    pub client_id: String,
    /// The application's key (`client_secret`).
    pub client_secret: Option<String>,
    /// Environment variable holding it instead.
    pub client_secret_env: Option<String>,
    /// Token renewal URL.
    #[serde(default = "oauth_url")]
    pub token_url: String,
    /// Where the current token pair is kept (read at start, rewritten on every renewal: a
    /// refresh token is spent when used). Made from the two keys below when missing.
    pub token_file: PathBuf,
    /// The first pair, from the application's install (`auth[access_token]` and
    /// `auth[refresh_token]` of ONAPPINSTALL, or the OAuth code exchange).
    pub access_token: Option<String>,
    /// See `access_token`.
    pub refresh_token: Option<String>,
}

fn oauth_url() -> String {
    auth::OAUTH_URL.into()
}

/// What a portal needs besides the connector and the planner.
#[derive(Debug)]
pub(super) struct Link {
    /// OAuth mode: where renewed tokens go.
    token_file: Option<PathBuf>,
    /// Events must carry this `auth[application_token]`; `None`: events are refused.
    application_token: Option<String>,
    /// PBX that places Bitrix24's click-to-calls.
    pbx: Option<String>,
    /// `event.offline.get` polling period.
    offline_poll: Option<Duration>,
}

/// A Bitrix24 `[[crm]]` turned into its parts ([`Crm::bitrix24`]).
#[derive(Debug)]
pub struct Portal {
    /// The connector (also the outbox's).
    pub(super) portal: Arc<Bitrix24>,
    /// Plans calls from their events and records.
    pub(super) planner: Mutex<Planner>,
    /// The configured users; `user.get` adds to them, never removes them.
    pub(super) users: UserMap,
    pub(super) link: Link,
}

impl Portal {
    /// The connector: the portal's REST requests and how to read its answers.
    pub fn connector(&self) -> &Bitrix24 {
        &self.portal
    }

    /// The `auth[application_token]` the application's events must carry; `None`: events
    /// are refused.
    pub fn application_token(&self) -> Option<&str> {
        self.link.application_token.as_deref()
    }

    /// The PBX that places Bitrix24's click-to-calls, when one is named.
    pub fn pbx(&self) -> Option<&str> {
        self.link.pbx.as_deref()
    }

    /// How often `event.offline.get` is polled; `None`: never.
    pub fn offline_poll(&self) -> Option<Duration> {
        self.link.offline_poll
    }

    /// Tells the planner that the call the PBX will give Linkedid key `call` (`pbx/id`) was
    /// started by Bitrix24 under its `CALL_ID` `call_id` (see
    /// [`crm::bitrix24::Planner::crm_originated`]).
    pub fn crm_originated(&self, call: &str, call_id: &str) {
        lock(&self.planner).crm_originated(call, call_id);
    }

    /// Forgets a [`Portal::crm_originated`] mark (the PBX refused the call).
    pub fn forget_originated(&self, call: &str) {
        lock(&self.planner).forget_originated(call);
    }
}

/// Builds the connector, planner and link of a `kind = "bitrix24"` section.
pub(super) fn build(c: &Bitrix24Config) -> anyhow::Result<Portal> {
    let name = &c.name;
    let utc_offset = c
        .utc_offset
        .parse::<chrono::FixedOffset>()
        .with_context(|| format!("crm {name}: bad utc_offset {:?}", c.utc_offset))?;
    let mode = |m: &str| {
        m.parse::<CardMode>()
            .map_err(|e| anyhow::anyhow!("crm {name}: {e}"))
    };
    let card_modes = c
        .cards
        .iter()
        .map(|(ext, m)| Ok((ext.clone(), mode(m)?)))
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
    let (auth, token_file) = match (&c.oauth, &c.webhook_url, &c.webhook_url_env) {
        (Some(oauth), None, None) => {
            let client_secret = secret(
                name,
                "oauth.client_secret",
                oauth.client_secret.as_ref(),
                oauth.client_secret_env.as_ref(),
            )?;
            let tokens = load_tokens(name, oauth)?;
            let config = OAuthConfig {
                endpoint: oauth.endpoint.clone(),
                client_id: oauth.client_id.clone(),
                client_secret,
                token_url: oauth.token_url.clone(),
            };
            (
                Auth::OAuth(auth::OAuth::new(config, tokens)),
                Some(oauth.token_file.clone()),
            )
        }
        (Some(_), _, _) => anyhow::bail!("crm {name}: oauth and webhook_url exclude each other"),
        (None, url, env) => (
            Auth::Webhook(
                secret(name, "webhook_url", url.as_ref(), env.as_ref())?
                    .trim_end_matches('/')
                    .to_owned(),
            ),
            None,
        ),
    };
    let application_token = match (&c.application_token, &c.application_token_env) {
        (None, None) => None,
        (value, env) => Some(secret(
            name,
            "application_token",
            value.as_ref(),
            env.as_ref(),
        )?),
    };
    let portal = Arc::new(Bitrix24::with_auth(auth));
    let users = UserMap::from_pairs(c.users.clone());
    portal.set_users(users.clone());
    let planner = Planner::new(PlanConfig {
        utc_offset,
        create_leads: c.create_leads,
        default_extension: c.default_extension.clone(),
        record_url_base: c.record_url_base.clone(),
        card_mode: mode(&c.card)?,
        card_modes,
    });
    Ok(Portal {
        portal,
        planner: Mutex::new(planner),
        users,
        link: Link {
            token_file,
            application_token,
            pbx: c.pbx.clone(),
            offline_poll: c
                .offline_events_poll
                .filter(|s| *s > 0.0)
                .map(Duration::from_secs_f64),
        },
    })
}

/// The saved pair, else the configured first pair. The file is written at the first renewal
/// (from then on it is the truth); reading the config (`check-config`) writes nothing.
fn load_tokens(name: &str, oauth: &OAuthSection) -> anyhow::Result<Tokens> {
    match std::fs::read(&oauth.token_file) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "crm {name}: unreadable token file {}",
                oauth.token_file.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (Some(access_token), Some(refresh_token)) =
                (&oauth.access_token, &oauth.refresh_token)
            else {
                anyhow::bail!(
                    "crm {name}: no token file {} and no oauth.access_token/refresh_token to start with",
                    oauth.token_file.display()
                );
            };
            Ok(Tokens {
                access_token: access_token.clone(),
                refresh_token: refresh_token.clone(),
            })
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "crm {name}: cannot read token file {}",
                oauth.token_file.display()
            )
        }),
    }
}

/// Writes the pair next to the file and renames it over: a crash leaves the old or the new
/// pair, never half of one. Owner-only permissions: these are credentials.
fn save_tokens(path: &Path, tokens: &Tokens) -> std::io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".new");
    let temp = PathBuf::from(temp);
    let body = serde_json::to_vec_pretty(tokens).map_err(std::io::Error::other)?;
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(&temp)?, &body)?;
    }
    std::fs::rename(&temp, path)
}

impl Link {
    /// Saves tokens the portal renewed, if any. A failed save is logged loudly: the spent
    /// refresh token on disk will not work after a restart.
    pub(super) fn keep_tokens(&self, crm: &str, portal: &Bitrix24) {
        let (Some(path), Some(tokens)) = (&self.token_file, portal.take_renewed_tokens()) else {
            return;
        };
        match save_tokens(path, &tokens) {
            Ok(()) => tracing::info!(crm, "Bitrix24 tokens renewed and saved"),
            Err(error) => tracing::error!(
                crm, %error, file = %path.display(),
                "Bitrix24 tokens renewed but NOT saved: re-authorize the application after a restart"
            ),
        }
    }
}

/// Calls a REST method of the Bitrix24 portal `crm`: renews the token on the way when it
/// expired, then asks again.
pub async fn call(
    crm: &Crm,
    http: &reqwest::Client,
    method: &str,
    params: &Value,
) -> Result<Value, DeliveryError> {
    let portal = crm.bitrix24().ok_or_else(|| {
        DeliveryError::permanent(format!("{} is not a Bitrix24 portal", crm.name))
    })?;
    rest(crm, http, &portal.portal, method, params).await
}

/// [`call`] on the portal's connector.
async fn rest(
    crm: &Crm,
    http: &reqwest::Client,
    portal: &Bitrix24,
    method: &str,
    params: &Value,
) -> Result<Value, DeliveryError> {
    // An expiry, a renewal and the request again; more means the portal refuses the token.
    for _ in 0..3 {
        let request = portal.request(method, params);
        let response = crm.exchange(http, &request, method).await?;
        if let Answer::Result(result) = portal.answer(&response)? {
            return Ok(result);
        }
    }
    Err(DeliveryError::retriable(format!(
        "{method}: the access token keeps expiring"
    )))
}

/// Users per `user.get` page: Bitrix24 lists answer 50 at a time (`start` pages on).
const USERS_PER_PAGE: usize = 50;
/// Pages read at most (a portal of 50,000 users).
const MAX_USER_PAGES: usize = 1_000;

/// `user.get` on top of the configured users, every page of it; the map is replaced only
/// when every page answered.
pub(super) async fn reload_users(
    crm: &Crm,
    http: &reqwest::Client,
    portal: &Bitrix24,
    configured: &UserMap,
) -> Result<String, DeliveryError> {
    let request = portal.users_request();
    let mut params: Value = serde_json::from_str(&request.body).unwrap_or_default();
    let mut users = configured.clone();
    for page in 0..MAX_USER_PAGES {
        if page > 0 {
            // Within Bitrix24's 2 requests a second, beside the deliveries.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        params["start"] = (page * USERS_PER_PAGE).into();
        let result = rest(crm, http, portal, "user.get", &params).await?;
        users.extend(UserMap::from_user_get(&result)?);
        if result.as_array().map_or(0, Vec::len) < USERS_PER_PAGE {
            break;
        }
    }
    let found = users.len();
    portal.set_users(users);
    Ok(format!(
        "user.get answered; {found} users have an inner phone"
    ))
}
