//! The pbxlink side of a Bitrix24 portal: the connector built from `[[crm]]` (webhook URL or
//! OAuth with its token file), REST calls with token renewal, the user map reloads, and
//! Bitrix24's click-to-call (`ONEXTERNALCALLSTART`) pushed to `POST /bitrix24/{name}/events`
//! or polled with `event.offline.get`: the PBX places the call (AMI Originate, as the API's
//! click-to-call) and the planner sends only `finish` for it, under Bitrix24's `CALL_ID`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use crm::bitrix24::events::{self, ExternalCallStart, PostedEvent};
use crm::bitrix24::{
    auth, Answer, Auth, Bitrix24, CardMode, OAuthConfig, PlanConfig, Planner, Tokens, UserMap,
};
use crm::DeliveryError;
use serde::Deserialize;
use serde_json::Value;

use super::{lock, secret, Bitrix24Config, Crm};
use pbx::ami_client::AmiClient;
use web::ApiError;

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
    pub(super) offline_poll: Option<Duration>,
}

/// A Bitrix24 `[[crm]]` turned into its parts.
#[derive(Debug)]
pub(super) struct B24 {
    /// The connector (also the outbox's).
    pub(super) portal: Arc<Bitrix24>,
    /// Plans calls from their events and records.
    pub(super) planner: Mutex<Planner>,
    /// The configured users; `user.get` adds to them, never removes them.
    pub(super) users: UserMap,
    pub(super) link: Link,
}

/// Builds the connector, planner and link of a `kind = "bitrix24"` section.
pub(super) fn build(c: &Bitrix24Config) -> anyhow::Result<B24> {
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
    Ok(B24 {
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

/// Calls a REST method: renews the token on the way when it expired, then asks again.
pub(super) async fn call(
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
        let result = call(crm, http, portal, "user.get", &params).await?;
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

/// Who places Bitrix24's click-to-calls: the PBX links, by name.
#[derive(Clone)]
pub struct ClickToCall {
    crms: Arc<[Crm]>,
    pbxes: Arc<HashMap<String, AmiClient>>,
}

impl ClickToCall {
    /// Bitrix24 click-to-calls of `crms` go out through `pbxes`.
    pub fn new(crms: Arc<[Crm]>, pbxes: HashMap<String, AmiClient>) -> Self {
        Self {
            crms,
            pbxes: Arc::new(pbxes),
        }
    }

    /// `POST /bitrix24/{name}/events`: the application's event handler URL.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/bitrix24/{name}/events", post(posted_event))
            .with_state(self.clone())
    }

    /// Starts `event.offline.get` polling for every portal that asks for it.
    pub fn start_polling(&self) {
        for crm in self.crms.iter() {
            if let Some(every) = crm.bitrix24().and_then(|b| b.link.offline_poll) {
                tokio::spawn(self.clone().poll(crm.clone(), every));
            }
        }
    }

    /// Places the call Bitrix24 asks for: the user's phone rings first, then the number
    /// (the API's click-to-call path), and the planner is told the call is Bitrix24's.
    async fn place(&self, crm: &Crm, start: &ExternalCallStart) -> Result<String, ApiError> {
        let bad = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m);
        let b24 = crm
            .bitrix24()
            .ok_or_else(|| bad(format!("{} is not a Bitrix24 portal", crm.name)))?;
        let extension = b24
            .portal
            .users()
            .extension_of(start.user_id)
            .ok_or_else(|| {
                bad(format!(
                    "Bitrix24 user {} has no inner phone (UF_PHONE_INNER) pbxlink knows",
                    start.user_id
                ))
            })?;
        let (pbx, client) = match &b24.link.pbx {
            Some(name) => self
                .pbxes
                .get_key_value(name)
                .ok_or_else(|| bad(format!("no PBX named {name:?}")))?,
            None if self.pbxes.len() == 1 => self.pbxes.iter().next().expect("one PBX"),
            None => {
                return Err(bad(format!(
                    "several PBXes: set pbx in [[crm]] {}",
                    crm.name
                )))
            }
        };
        let call_id = pbx::control::new_click_to_call_id();
        let key = format!("{pbx}/{call_id}");
        lock(&b24.planner).crm_originated(&key, &start.call_id);
        // Bitrix24 sends numbers as the CRM card shows them: `+7 (495) 123-45-67`.
        let number: String = start
            .phone_number
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if number.is_empty() || number.len() > 32 {
            lock(&b24.planner).forget_originated(&key);
            return Err(bad(format!(
                "{:?} is not a phone number",
                start.phone_number
            )));
        }
        let variables = vec![("BITRIX24_CALL_ID".to_owned(), start.call_id.clone())];
        let placed = pbx::control::originate_click_to_call(
            client, &extension, &number, &number, &call_id, variables,
        )
        .await;
        if let Err(error) = placed {
            lock(&b24.planner).forget_originated(&key);
            return Err(error.into());
        }
        tracing::info!(
            crm = crm.name,
            call_id,
            bitrix24_call = start.call_id,
            extension,
            "Bitrix24 click-to-call placed"
        );
        Ok(call_id)
    }

    async fn poll(self, crm: Crm, every: Duration) {
        let http = reqwest::Client::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = self.poll_once(&crm, &http).await {
                tracing::warn!(crm = crm.name, %error, "event.offline.get failed; polling on");
            }
        }
    }

    /// One `event.offline.get` (records reserved, `clear=0`), each event handled, then
    /// `event.offline.clear` of that `process_id`. Records of a batch that fails to clear are
    /// handed out again by Bitrix24, so a call is never lost; a call placed whose clear failed
    /// may be placed twice.
    pub(super) async fn poll_once(
        &self,
        crm: &Crm,
        http: &reqwest::Client,
    ) -> anyhow::Result<usize> {
        let b24 = crm.bitrix24().context("not a Bitrix24 portal")?;
        let get = b24.portal.offline_get_request();
        let params: Value = serde_json::from_str(&get.body).unwrap_or_default();
        let result = call(crm, http, &b24.portal, "event.offline.get", &params).await?;
        let batch = events::offline_events(&result);
        let Some(process_id) = batch.process_id else {
            return Ok(0);
        };
        let mut ids = Vec::new();
        for (id, start) in batch.events {
            match start {
                Ok(start) => {
                    if let Err(error) = self.place(crm, &start).await {
                        tracing::warn!(crm = crm.name, %error, "Bitrix24 click-to-call not placed");
                    }
                }
                Err(error) => tracing::warn!(crm = crm.name, error, "unreadable offline event"),
            }
            ids.push(id);
        }
        let clear = b24.portal.offline_clear_request(&process_id, &ids);
        let params: Value = serde_json::from_str(&clear.body).unwrap_or_default();
        call(crm, http, &b24.portal, "event.offline.clear", &params).await?;
        Ok(ids.len())
    }
}

/// Bitrix24 POSTs its events form-encoded; the application token proves it is the portal.
async fn posted_event(
    State(c2c): State<ClickToCall>,
    UrlPath(name): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let crm = c2c
        .crms
        .iter()
        .find(|crm| crm.name == name && crm.bitrix24().is_some())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no Bitrix24 [[crm]] named {name:?}"),
            )
        })?;
    let b24 = crm.bitrix24().expect("found as Bitrix24");
    let event = PostedEvent::parse(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let expected = b24.link.application_token.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!("[[crm]] {name} has no application_token: events are not taken"),
        )
    })?;
    let given = event.application_token.as_deref().unwrap_or_default();
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong auth[application_token]",
        ));
    }
    let start = event
        .external_call_start()
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let call_id = c2c.place(crm, &start).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "call_id": call_id, "bitrix24_call_id": start.call_id })),
    ))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
