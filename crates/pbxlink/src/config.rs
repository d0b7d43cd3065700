//! The pbxlink config file (TOML): PBX connections, data directory, database.
//!
//! Every field has a default, so `pbxlink` runs with no file at all (one PBX on
//! 127.0.0.1:5038, secret from `PBXLINK_AMI_SECRET`). Unknown keys are errors: a typo in
//! `ping_intervall` must not silently fall back to the default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use pbx::{AjamConfig, AuthKind, PbxConfig, Secret};
pub use release::settings::{FreepbxConfig, ReleaseConfig};

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where pbxlink keeps its state (SQLite database, spool).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The call journal database.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// What `pbxlink run` keeps besides the call records.
    #[serde(default)]
    pub journal: JournalConfig,
    /// The PBXs to connect to. None: `pbxlink run` starts the built-in simulated PBX
    /// (demo mode), and the `ami` commands default to 127.0.0.1:5038.
    #[serde(default)]
    pub pbx: Vec<PbxConfig>,
    /// The FastAGI server (`pbxlink agi serve`); see `crate::fastagi::AgiConfig`.
    pub agi: Option<crate::fastagi::AgiConfig>,
    /// The FreePBX module release server (`pbxlink release-server`, `pbxlink release`).
    #[serde(default)]
    pub release: ReleaseConfig,
    /// What `pbxlink freepbx generate|package` writes into the PBX's config.
    #[serde(default)]
    pub freepbx: FreepbxConfig,
    /// CRM connectors (`[[crm]]`); each finished call queues deliveries to every one.
    #[serde(default)]
    pub crm: Vec<delivery::outbox::CrmConfig>,
    /// How the CRM delivery workers pace themselves (`[outbox]`).
    #[serde(default)]
    pub outbox: delivery::outbox::OutboxSettings,
    /// The HTTP API and web UI of `pbxlink run`.
    #[serde(default)]
    pub http: HttpConfig,
    /// The file as written, secrets masked (what the web UI's settings page shows): made
    /// when the file is read, so the unmasked text is never kept.
    #[serde(skip)]
    pub masked_file: toml::Table,
    /// DND and call forwarding (`[extensions]`): FreePBX or bare-Asterisk style, and
    /// extensions the API accepts besides those the PBX reports.
    #[serde(default)]
    pub extensions: pbx::extensions::ExtensionsConfig,
    /// Logging (`[log]`); `--log-format` and `PBXLINK_LOG` override it.
    #[serde(default)]
    pub log: LogConfig,
    /// Scale-out (`[cluster]`): several instances on one PostgreSQL share the PBXs by lease.
    /// Unset: this instance tracks every `[[pbx]]` itself.
    pub cluster: Option<ClusterConfig>,
    /// Seconds `pbxlink run` waits, after SIGTERM/Ctrl-C, for CRM deliveries in flight.
    #[serde(default = "default_shutdown_grace", with = "pbx::settings::seconds")]
    pub shutdown_grace: Duration,
    /// Call recordings (`[recordings]`): WAV -> MP3, signed links, CRM hand-over; unset: off.
    pub recordings: Option<delivery::recordings::RecordingsConfig>,
}

/// `[http]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Client networks the API and UI answer (`["127.0.0.1/32", "10.0.0.0/8"]`); empty: any.
    #[serde(default)]
    pub allow: Vec<ipnet::IpNet>,
    /// Certificate chain (PEM) of the API listener; with `tls_key` it serves HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Control requests (click-to-call, hangup, transfer, redirect) one token may make per
    /// minute, in bursts up to the same number; default 60.
    pub control_per_minute: Option<std::num::NonZeroU32>,
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (for people) or `json` (one object per line, for log collectors).
    #[serde(default)]
    pub format: LogFormat,
    /// Filter, `tracing` syntax: `info`, `warn,pbxlink=debug`. Default `info`.
    pub level: Option<String>,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[cluster]`: this instance's share of the PBXs (see ARCHITECTURE.md, Scale-out).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This instance's name in the lease table; unique per instance. Default: a random one
    /// per start (a restarted instance then waits for its old leases to lapse).
    #[serde(default = "default_instance_id")]
    pub instance_id: String,
    /// Seconds a lease lasts; renewed every third of it. A dead owner's PBXs are taken over
    /// after at most this long.
    #[serde(default = "default_lease_ttl", with = "pbx::settings::seconds")]
    pub lease_ttl: Duration,
    /// The `[[pbx]]` names this instance may own; empty: all of them.
    #[serde(default)]
    pub pbx: Vec<String>,
}

/// `[journal]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Which raw AMI events go to the event log (for replaying and debugging calls).
    #[serde(default)]
    pub raw_events: RawEvents,
}

/// Which raw AMI events `pbxlink run` writes to the event log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawEvents {
    /// Call events, without RTCP reports and the dialplan trace (`VarSet`, `Newexten`; but
    /// with the few the tracker uses): those are ~80 % of a FreePBX stream and would
    /// multiply the database's size.
    #[default]
    Calls,
    /// Every event that carries a Linkedid.
    All,
    /// None.
    Off,
}

impl RawEvents {
    /// Whether `msg` goes to the log.
    pub fn keeps(self, msg: &ami::Message) -> bool {
        match self {
            RawEvents::All => true,
            RawEvents::Off => false,
            RawEvents::Calls => match msg.event() {
                // The dialplan trace only where the tracker uses it (recordings, menus, busy
                // tones): a new owner rebuilds calls in progress from this log (cluster.rs).
                Some("VarSet" | "Newexten") => calls::tracker::tracks(msg),
                Some("RTCPSent" | "RTCPReceived" | "DeviceStateChange") => false,
                _ => true,
            },
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// sqlx URL (`sqlite://...` or `postgres://...`); default: SQLite in `data_dir`.
    pub url: Option<String>,
}

/// Why a config could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error(transparent)]
    Secret(#[from] pbx::SecretError),
    #[error("no [[pbx]] named '{0}' in the config")]
    UnknownPbx(String),
}

/// One thing wrong in a config file: where (a key path) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path to the key at fault (`pbx`, 0, `secret_env`); as deep as is known.
    pub at: Vec<Seg>,
    pub message: String,
}

impl Problem {
    /// A problem at a path of plain keys.
    pub fn at(keys: &[&str], message: impl Into<String>) -> Self {
        Self {
            at: keys.iter().map(|k| Seg::key(k)).collect(),
            message: message.into(),
        }
    }
}

/// One step of a key path: a table key or an index into an array of tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl Seg {
    pub fn key(k: &str) -> Self {
        Self::Key(k.to_owned())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::parse("", "<built-in config>").expect("the empty config is valid")
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// The file at `path`, or the built-in defaults when there is none.
    pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigError> {
        path.map_or_else(|| Ok(Config::default()), Config::load)
    }

    /// Parses config text; `file` names it in error messages.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((0, 0), |span| line_column(text, span.start));
            ConfigError::Parse {
                file: file.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        config.validate(text, file)?;
        if let Ok(table) = text.parse::<toml::Table>() {
            config.masked_file = mask_secrets(table);
        }
        Ok(config)
    }

    /// What the web UI's settings page shows: the effective settings (`pbxlink config`) and
    /// the file as written, secrets masked.
    pub fn settings_view(&self) -> serde_json::Value {
        serde_json::json!({ "effective": self.summary(), "file": self.masked_file })
    }

    /// The first problem [`Config::problems`] finds, located in `text`.
    fn validate(&self, text: &str, file: &str) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            None => Ok(()),
            Some(p) => {
                let (line, column) = locate(text, &p.at);
                Err(ConfigError::Invalid {
                    file: format!("{file}:{line}:{column}"),
                    message: p.message,
                })
            }
        }
    }

    /// What serde cannot check (ranges, names, URL syntax), each with the key at fault.
    /// Pure: `pbxlink check-config` adds the checks that look at files and the environment.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Some(agi) = &self.agi {
            if let Err((key, message)) = agi.validate() {
                out.push(Problem::at(&["agi", key], message));
            }
        }
        if let Some(level) = &self.log.level {
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
                out.push(Problem::at(&["log", "level"], format!("[log] level: {e}")));
            }
        }
        if let Some(cluster) = &self.cluster {
            out.extend(cluster.problems(self));
        }
        if let Some(name) = self.agi.as_ref().and_then(|a| a.lookup.as_ref()) {
            if !self.crm.iter().any(|c| c.name() == name) {
                out.push(Problem::at(
                    &["agi", "lookup"],
                    format!("[agi] lookup: no [[crm]] is named '{name}'"),
                ));
            }
        }
        if let Some(recordings) = &self.recordings {
            if let Err(e) = recordings.validate() {
                out.push(Problem::at(&["recordings"], e.to_string()));
            }
        }
        if !(self.outbox.lease.is_finite() && self.outbox.lease > 0.0) {
            out.push(Problem::at(
                &["outbox", "lease"],
                "[outbox] lease must be a positive number of seconds",
            ));
        }
        if self.outbox.batch == 0 {
            out.push(Problem::at(
                &["outbox", "batch"],
                "[outbox] batch must be at least 1",
            ));
        }
        if self.http.tls_cert.is_some() != self.http.tls_key.is_some() {
            out.push(Problem::at(
                &["http"],
                "[http] tls_cert and tls_key go together: set both or neither",
            ));
        }
        for (i, pbx) in self.pbx.iter().enumerate() {
            let at = |key: &str| vec![Seg::key("pbx"), Seg::Index(i), Seg::key(key)];
            if self.pbx[..i].iter().any(|p| p.name == pbx.name) {
                out.push(Problem {
                    at: at("name"),
                    message: format!("two [[pbx]] are named '{}'", pbx.name),
                });
            }
            let mut problem = |key: &str, message: String| {
                out.push(Problem {
                    at: at(key),
                    message: format!("pbx '{}': {message}", pbx.name),
                })
            };
            if pbx.reconnect_min.is_zero() || pbx.reconnect_min > pbx.reconnect_max {
                problem(
                    "reconnect_min",
                    "need 0 < reconnect_min <= reconnect_max".into(),
                );
            }
            if pbx.ping_interval.is_zero() || pbx.action_timeout.is_zero() {
                problem(
                    "ping_interval",
                    "ping_interval and action_timeout must be > 0".into(),
                );
            }
            if pbx.event_queue == 0 {
                problem("event_queue", "event_queue must be > 0".into());
            }
            if let Some(ajam) = &pbx.ajam {
                if let Err(e) = url::Url::parse(&ajam.url) {
                    problem("ajam", format!("ajam url '{}': {e}", ajam.url));
                }
            }
            for (key, message) in pbx.cdr.iter().flat_map(|c| c.problems()) {
                out.push(Problem {
                    at: vec![
                        Seg::key("pbx"),
                        Seg::Index(i),
                        Seg::key("cdr"),
                        Seg::key(key),
                    ],
                    message: format!("pbx '{}': [pbx.cdr] {message}", pbx.name),
                });
            }
            for (key, message) in pbx.tracker.problems() {
                out.push(Problem {
                    at: vec![
                        Seg::key("pbx"),
                        Seg::Index(i),
                        Seg::key("tracker"),
                        Seg::key(key),
                    ],
                    message: format!("pbx '{}': [pbx.tracker] {message}", pbx.name),
                });
            }
        }
        out
    }

    /// The sqlx database URL: `[database] url`, or SQLite in `data_dir`.
    pub fn database_url(&self) -> String {
        self.database.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("pbxlink.db").display()
            )
        })
    }

    /// The effective settings, one line each, passwords masked (`pbxlink config`).
    pub fn summary(&self) -> String {
        let mut out = format!(
            "data_dir: {}\ndatabase: {}\n",
            self.data_dir.display(),
            mask_password(&self.database_url())
        );
        for p in &self.pbx {
            let secret = match p.secret_from_env() {
                Ok(_) => "set".to_owned(),
                Err(e) => format!("MISSING ({e})"),
            };
            out.push_str(&format!(
                "pbx {}: {}{} user {} auth {:?} events {:?} secret {secret}, ping every {:?}, \
                 reconnect {:?}..{:?}, queue {} ({:?}){}\n",
                p.name,
                p.address(),
                if p.tls { " (TLS)" } else { "" },
                p.username,
                p.auth,
                p.events,
                p.ping_interval,
                p.reconnect_min,
                p.reconnect_max,
                p.event_queue,
                p.overflow,
                p.ajam
                    .as_ref()
                    .map(|a| format!(", AJAM {}", a.url))
                    .unwrap_or_default(),
            ));
        }
        out
    }

    /// The `[[pbx]]` called `name`, or the first one when `name` is `None` (with no
    /// `[[pbx]]` at all: the defaults, 127.0.0.1:5038).
    pub fn pbx(&self, name: Option<&str>) -> Result<PbxConfig, ConfigError> {
        match name {
            Some(n) => self.pbx.iter().find(|p| p.name == n).cloned(),
            None => Some(self.pbx.first().cloned().unwrap_or_else(default_pbx)),
        }
        .ok_or_else(|| ConfigError::UnknownPbx(name.unwrap_or_default().to_owned()))
    }

    /// What the release server and the FreePBX tooling read of this file.
    pub fn release_settings(&self) -> release::Settings {
        release::Settings {
            release: self.release.clone(),
            freepbx: self.freepbx.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url(),
            embedded_database: self.database.url.is_none(),
            pbx: self.pbx.first().cloned().unwrap_or_else(default_pbx),
        }
    }
}

impl ClusterConfig {
    /// What makes a takeover impossible or unsafe.
    fn problems(&self, config: &Config) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.lease_ttl < Duration::from_secs(3) {
            out.push(Problem::at(
                &["cluster", "lease_ttl"],
                "[cluster] lease_ttl must be at least 3 seconds",
            ));
        }
        for name in &self.pbx {
            if !config.pbx.iter().any(|p| &p.name == name) {
                out.push(Problem::at(
                    &["cluster", "pbx"],
                    format!("[cluster] pbx: no [[pbx]] is named '{name}'"),
                ));
            }
        }
        if config.journal.raw_events == RawEvents::Off {
            out.push(Problem::at(
                &["journal", "raw_events"],
                "[cluster] needs the raw event log: a new owner finishes the calls in progress \
                 from it (raw_events = \"calls\" or \"all\")",
            ));
        }
        out
    }

    /// Whether this instance may own the PBX called `name`.
    pub fn may_own(&self, name: &str) -> bool {
        self.pbx.is_empty() || self.pbx.iter().any(|p| p == name)
    }
}

/// Keys whose values are secrets, by how their names end (`secret`, `webhook_url`,
/// `license_key`, ...); a `..._env` key names a variable and is shown.
const SECRET_KEY_ENDINGS: &[&str] = &[
    "secret",
    "secrets",
    "password",
    "token",
    "key",
    "webhook_url",
];

/// A parsed config file with every secret replaced by `"***"` and passwords taken out of URLs.
fn mask_secrets(table: toml::Table) -> toml::Table {
    fn mask(key: &str, value: toml::Value) -> toml::Value {
        let lower = key.to_ascii_lowercase();
        match value {
            _ if SECRET_KEY_ENDINGS.iter().any(|end| lower.ends_with(end)) => "***".into(),
            toml::Value::String(s) => mask_password(&s).into(),
            toml::Value::Table(t) => mask_secrets(t).into(),
            toml::Value::Array(a) => a
                .into_iter()
                .map(|v| mask(key, v))
                .collect::<Vec<_>>()
                .into(),
            other => other,
        }
    }
    table
        .into_iter()
        .map(|(k, v)| {
            let v = mask(&k, v);
            (k, v)
        })
        .collect()
}

/// `url` with its password, if any, replaced by `***`.
fn mask_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            // Only fails for URLs that cannot have a password, which this one has.
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}
fn default_instance_id() -> String {
    format!("pbxlink-{}", hex::encode(rand::random::<[u8; 4]>()))
}
fn default_lease_ttl() -> Duration {
    Duration::from_secs(15)
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_pbx() -> PbxConfig {
    toml::from_str("").expect("every PbxConfig field has a default")
}

/// 1-based line and column of a byte offset, as editors show them.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Line and column of the key at `at` (or of its deepest part present in the file: a key
/// left at its default points at its section).
pub fn locate(text: &str, at: &[Seg]) -> (usize, usize) {
    line_column(text, offset_of(text, at))
}

/// The byte offset of [`locate`]'s key.
pub fn offset_of(text: &str, at: &[Seg]) -> usize {
    use toml_edit::{Item, TableLike};
    let Ok(doc) = toml_edit::ImDocument::parse(text) else {
        return 0;
    };
    let mut table: &dyn TableLike = doc.as_table();
    let mut best = 0;
    let mut segs = at.iter().peekable();
    while let Some(Seg::Key(k)) = segs.next() {
        let Some(item) = table.get(k) else { break };
        best = item.span().map_or(best, |s| s.start);
        match (item, segs.peek()) {
            (Item::ArrayOfTables(array), Some(Seg::Index(i))) => {
                let Some(t) = array.get(*i) else { break };
                segs.next();
                best = t.span().map_or(best, |s| s.start);
                table = t;
            }
            _ => match item.as_table_like() {
                Some(t) => table = t,
                None => break,
            },
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    /// Shows the sections this module reads itself (other sections have their own tests).
    fn check(text: &str, expect: Expect) {
        let out = match Config::parse(text, "pbxlink.toml") {
            Ok(c) => format!("{:#?}", (&c.data_dir, &c.database, &c.pbx)),
            Err(e) => format!("error: {e}"),
        };
        expect.assert_eq(&out);
    }

    #[test]
    fn full_config_and_secret_is_hidden() {
        check(
            r#"
data_dir = "/var/lib/pbxlink"
[database]
url = "postgres://pbxlink@db/pbxlink"
[[pbx]]
name = "office"
host = "pbx.example.com"
port = 5039
tls = true
tls_ca_file = "/etc/pbxlink/ca.pem"
username = "crm"
secret = "s3cret"
auth = "plain"
events = "call,agent"
ping_interval = 5
reconnect_min = 0.25
reconnect_max = 10
overflow = "drop_newest"
[pbx.ajam]
url = "http://pbx.example.com:8088/rawman"
"#,
            expect![[r#"
                (
                    "/var/lib/pbxlink",
                    DatabaseConfig {
                        url: Some(
                            "postgres://pbxlink@db/pbxlink",
                        ),
                    },
                    [
                        PbxConfig {
                            name: "office",
                            host: "pbx.example.com",
                            port: 5039,
                            tls: true,
                            tls_ca_file: Some(
                                "/etc/pbxlink/ca.pem",
                            ),
                            tls_insecure_skip_verify: false,
                            username: "crm",
                            secret: Some(
                                ***,
                            ),
                            secret_env: None,
                            auth: Plain,
                            events: "call,agent",
                            ping_interval: 5s,
                            action_timeout: 10s,
                            reconnect_min: 250ms,
                            reconnect_max: 10s,
                            event_queue: 4096,
                            overflow: DropNewest,
                            ajam: Some(
                                AjamConfig {
                                    url: "http://pbx.example.com:8088/rawman",
                                },
                            ),
                            cdr: None,
                        },
                    ],
                )"#]],
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        check(
            "[[pbx]]\nname = \"a\"\nport = \"5038\"\n",
            expect!["error: pbxlink.toml:3:8: invalid type: string \"5038\", expected u16"],
        );
        check(
            "[[pbx]]\nping_intervall = 5\n",
            expect!["error: pbxlink.toml:2:1: unknown field `ping_intervall`, expected one of `name`, `host`, `port`, `tls`, `tls_ca_file`, `tls_insecure_skip_verify`, `username`, `secret`, `secret_env`, `auth`, `events`, `ping_interval`, `action_timeout`, `reconnect_min`, `reconnect_max`, `event_queue`, `overflow`, `ajam`, `cdr`, `tracker`"],
        );
        check(
            "[[pbx]]\nauth = \"sha1\"\n",
            expect!["error: pbxlink.toml:2:8: unknown variant `sha1`, expected `md5` or `plain`"],
        );
        check(
            "[[pbx]]\nreconnect_min = 5\nreconnect_max = 1\n",
            expect![
                "error: pbxlink.toml:2:17: pbx 'default': need 0 < reconnect_min <= reconnect_max"
            ],
        );
        check(
            "[[pbx]]\n[[pbx]]\n",
            expect!["error: pbxlink.toml:2:1: two [[pbx]] are named 'default'"],
        );
    }

    #[test]
    fn defaults_without_a_file() {
        let c = Config::default();
        assert_eq!(c.database_url(), "sqlite://./data/pbxlink.db?mode=rwc");
        let pbx = c.pbx(None).unwrap();
        assert_eq!(pbx.address(), "127.0.0.1:5038");
        assert_eq!(pbx.auth, AuthKind::Md5);
        assert_eq!(pbx.overflow, pbx::OverflowPolicy::Block);
        assert!(matches!(c.pbx(Some("x")), Err(ConfigError::UnknownPbx(_))));
    }

    #[test]
    fn summary_masks_passwords() {
        let c = Config::parse(
            "[database]\nurl = \"postgres://pbx:hunter2@db/pbxlink\"\n[[pbx]]\nsecret = \"s3cret\"\n",
            "t",
        )
        .unwrap();
        expect![[r#"
            data_dir: ./data
            database: postgres://pbx:***@db/pbxlink
            pbx default: 127.0.0.1:5038 user pbxlink auth Md5 events "on" secret set, ping every 20s, reconnect 500ms..30s, queue 4096 (Block)
        "#]].assert_eq(&c.summary());
    }

    #[test]
    fn secret_sources_in_order() {
        let env = |var: &str| (var == "MY_SECRET").then(|| "from-env".to_owned());
        let pbx = |text: &str| Config::parse(text, "t").unwrap().pbx.remove(0);
        let show = |r: Result<Secret, pbx::SecretError>| match r {
            Ok(s) => s.expose().to_owned(),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            show(pbx("[[pbx]]\nsecret = \"x\"\nsecret_env = \"MY_SECRET\"").resolve_secret(env)),
            "x"
        );
        assert_eq!(
            show(pbx("[[pbx]]\nsecret_env = \"MY_SECRET\"").resolve_secret(env)),
            "from-env"
        );
        assert_eq!(
            show(pbx("[[pbx]]\nsecret_env = \"OTHER\"").resolve_secret(env)),
            "pbx 'default': environment variable OTHER (secret_env) is not set"
        );
        assert_eq!(
            show(pbx("[[pbx]]").resolve_secret(|_| None)),
            "pbx 'default': no AMI secret; set `secret` or `secret_env` in the config, or PBXLINK_AMI_SECRET"
        );
    }
}
