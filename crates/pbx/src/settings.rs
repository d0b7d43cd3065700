//! `[[pbx]]`: how to reach one PBX (AMI over TCP/TLS, AJAM, its CDR) and who is who on it;
//! the binary's config file embeds these, and the clients in this crate are built from them.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use crate::secret::Secret;

/// Environment variable read for the AMI secret when a `[[pbx]]` has neither `secret`
/// nor `secret_env`.
pub const DEFAULT_SECRET_ENV: &str = "PBXLINK_AMI_SECRET";

/// One `[[pbx]]`: an AMI connection (and optionally its AJAM endpoint).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PbxConfig {
    /// Name used in logs, the database and the CLI (`--pbx NAME`).
    #[serde(default = "default_pbx_name")]
    pub name: String,
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// AMI over TLS (Asterisk `manager.conf` `tlsenable`, usually port 5039).
    #[serde(default)]
    pub tls: bool,
    /// PEM file with the CA(s) to trust instead of the built-in web PKI roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any server certificate. For lab setups only; logged as a warning.
    #[serde(default)]
    pub tls_insecure_skip_verify: bool,
    #[serde(default = "default_username")]
    pub username: String,
    /// The secret itself. Prefer `secret_env` so the file can be shared.
    pub secret: Option<Secret>,
    /// Name of the environment variable holding the secret.
    pub secret_env: Option<String>,
    #[serde(default)]
    pub auth: AuthKind,
    /// AMI `Events:` value at login: `on`, `off`, or a class list like `call,agent`.
    #[serde(default = "default_events")]
    pub events: String,
    /// Seconds between keepalive Pings; a Ping unanswered for as long marks the link dead.
    #[serde(default = "default_ping_interval", with = "seconds")]
    pub ping_interval: Duration,
    /// Seconds an action may wait for its response.
    #[serde(default = "default_action_timeout", with = "seconds")]
    pub action_timeout: Duration,
    /// First reconnect delay, in seconds; doubles on each failure up to `reconnect_max`.
    #[serde(default = "default_reconnect_min", with = "seconds")]
    pub reconnect_min: Duration,
    #[serde(default = "default_reconnect_max", with = "seconds")]
    pub reconnect_max: Duration,
    /// Capacity of the event queue between the AMI reader and its consumer.
    #[serde(default = "default_event_queue")]
    pub event_queue: usize,
    /// What the reader does when that queue is full.
    #[serde(default)]
    pub overflow: OverflowPolicy,
    /// AMI over HTTP (`[pbx.ajam]`), for PBXs where only the HTTP port is reachable.
    pub ajam: Option<AjamConfig>,
    /// The PBX's CDR (`[pbx.cdr]`): what happened while the event stream had a gap.
    pub cdr: Option<crate::cdr::CdrConfig>,
    /// `[pbx.tracker]`: who is a phone, where what the PBX says is not enough.
    #[serde(default)]
    pub tracker: TrackerSettings,
}

/// `[pbx.tracker]`: overrides for telling phones from trunks. Not needed on a standard
/// FreePBX or a bare Asterisk whose phones carry their extension as caller ID: the tracker
/// learns that from the PBX (see README, "Who is who").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerSettings {
    /// Fewest and most digits of an extension (default `[2, 6]`).
    pub extension_digits: Option<[usize; 2]>,
    /// Endpoints that are trunks whatever their name or caller ID.
    #[serde(default)]
    pub trunks: Vec<String>,
    /// Endpoint name -> extension, for phones nothing else identifies.
    #[serde(default)]
    pub extensions: std::collections::BTreeMap<String, String>,
}

impl TrackerSettings {
    /// What serde cannot check, by key.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some([fewest, most]) = self.extension_digits {
            if fewest == 0 || fewest > most {
                out.push((
                    "extension_digits",
                    format!("extension_digits [{fewest}, {most}]: need 1 <= fewest <= most"),
                ));
            }
        }
        let config = self.tracker_config();
        for (endpoint, ext) in &self.extensions {
            if !config.is_extension(ext) {
                out.push((
                    "extensions",
                    format!(
                        "extensions: '{ext}' (for {endpoint}) is not an extension: {} to {} digits",
                        config.min_extension_len, config.max_extension_len
                    ),
                ));
            }
        }
        out
    }

    /// The tracker's configuration: these overrides on its defaults.
    pub fn tracker_config(&self) -> calls::TrackerConfig {
        let defaults = calls::TrackerConfig::default();
        let [min_extension_len, max_extension_len] = self
            .extension_digits
            .unwrap_or([defaults.min_extension_len, defaults.max_extension_len]);
        calls::TrackerConfig {
            trunks: self.trunks.clone(),
            min_extension_len,
            max_extension_len,
            extensions: self
                .extensions
                .iter()
                .map(|(endpoint, ext)| (endpoint.clone(), ext.clone()))
                .collect(),
            ..defaults
        }
    }
}

/// `[pbx.ajam]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AjamConfig {
    /// Base URL of the rawman endpoint, e.g. `http://pbx:8088/rawman`.
    pub url: String,
}

/// AMI login method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// Challenge/response: the secret never crosses the wire.
    #[default]
    Md5,
    /// `Secret:` in clear (what most AMI libraries do).
    Plain,
}

/// What the AMI reader does when the consumer of events falls behind and the queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// Stop reading the socket until there is room: TCP flow control pushes back on
    /// Asterisk, nothing is lost. Asterisk itself drops a client whose buffer stays full
    /// for `writetimeout`, which shows up here as a reconnect (and a resync), not as a gap.
    #[default]
    Block,
    /// Drop the event that does not fit, count it and log it; the reader keeps pace with
    /// the socket, so action responses and keepalives are never delayed by a slow consumer.
    DropNewest,
}

impl fmt::Debug for PbxConfig {
    // Hand-written only to leave out nothing but the secret's value, which `Secret` hides.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PbxConfig")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_insecure_skip_verify", &self.tls_insecure_skip_verify)
            .field("username", &self.username)
            .field("secret", &self.secret)
            .field("secret_env", &self.secret_env)
            .field("auth", &self.auth)
            .field("events", &self.events)
            .field("ping_interval", &self.ping_interval)
            .field("action_timeout", &self.action_timeout)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("event_queue", &self.event_queue)
            .field("overflow", &self.overflow)
            .field("ajam", &self.ajam)
            .field("cdr", &self.cdr)
            .finish()
    }
}

/// Why a `[[pbx]]` has no AMI secret to log in with.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("pbx '{pbx}': no AMI secret; set `secret` or `secret_env` in the config, or {DEFAULT_SECRET_ENV}")]
    NoSecret { pbx: String },
    #[error("pbx '{pbx}': environment variable {var} (secret_env) is not set")]
    SecretEnvUnset { pbx: String, var: String },
}

impl PbxConfig {
    /// The AMI secret: `secret`, else the variable named by `secret_env`, else
    /// `PBXLINK_AMI_SECRET`. `env` is `std::env::var` in production (a parameter for tests).
    pub fn resolve_secret(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Secret, SecretError> {
        if let Some(s) = &self.secret {
            return Ok(s.clone());
        }
        if let Some(var) = &self.secret_env {
            return env(var)
                .map(Secret::new)
                .ok_or_else(|| SecretError::SecretEnvUnset {
                    pbx: self.name.clone(),
                    var: var.clone(),
                });
        }
        env(DEFAULT_SECRET_ENV)
            .map(Secret::new)
            .ok_or_else(|| SecretError::NoSecret {
                pbx: self.name.clone(),
            })
    }

    /// [`PbxConfig::resolve_secret`] from the process environment.
    pub fn secret_from_env(&self) -> Result<Secret, SecretError> {
        self.resolve_secret(|var| std::env::var(var).ok())
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Durations are written as seconds (`ping_interval = 20`, `reconnect_min = 0.5`).
pub mod seconds {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(|_| {
            serde::de::Error::custom(format!("expected a number of seconds >= 0, found {secs}"))
        })
    }
}

fn default_pbx_name() -> String {
    "default".to_owned()
}
fn default_host() -> String {
    "127.0.0.1".to_owned()
}
fn default_port() -> u16 {
    5038
}
fn default_username() -> String {
    "pbxlink".to_owned()
}
fn default_events() -> String {
    "on".to_owned()
}
fn default_ping_interval() -> Duration {
    Duration::from_secs(20)
}
fn default_action_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_reconnect_min() -> Duration {
    Duration::from_millis(500)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}
fn default_event_queue() -> usize {
    4096
}
