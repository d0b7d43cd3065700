//! `[release]` and `[freepbx]`: the release server's address and TLS, the FreePBX module's
//! names and addresses; and what else of the whole config file this product reads.

use std::path::PathBuf;

use serde::Deserialize;

/// What the release server and the FreePBX tooling read of the config file: their own
/// sections, and where pbxlink keeps its data.
#[derive(Debug, Clone)]
pub struct Settings {
    pub release: ReleaseConfig,
    pub freepbx: FreepbxConfig,
    /// `data_dir`: the self-signed certificate and, by default, the release files go there.
    pub data_dir: PathBuf,
    /// The journal's database (sqlx URL).
    pub database_url: String,
    /// Whether that database is the embedded SQLite in `data_dir` (which must then exist).
    pub embedded_database: bool,
    /// The PBX the FreePBX module is for (the first `[[pbx]]`): its AMI secret goes into
    /// the generated AMI user.
    pub pbx: pbx::PbxConfig,
}

/// `[release]`: where the release server listens, its TLS files and its public address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseConfig {
    #[serde(default = "default_release_listen")]
    pub listen: std::net::SocketAddr,
    /// The https base URL FreePBX reaches the server at (download `location`s start with it).
    /// Default: `https://<listen address>`.
    pub public_url: Option<String>,
    /// PEM certificate chain and private key for TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP, for a TLS-terminating proxy in front (then `public_url` is required).
    #[serde(default)]
    pub plain_http: bool,
    /// Where published tarballs are kept (by SHA-256); default `<data_dir>/releases`.
    pub files_dir: Option<PathBuf>,
    /// Environment variable holding the HMAC key of the publish API (unset: API disabled).
    #[serde(default = "default_publish_secret_env")]
    pub publish_secret_env: String,
    /// Minisign public key (base64 `RW...` or a .pub file) that signed releases must match.
    pub minisign_pubkey: Option<String>,
}

impl Default for ReleaseConfig {
    fn default() -> Self {
        toml::from_str("").expect("every ReleaseConfig field has a default")
    }
}

/// A release channel: `beta` followers are offered beta and stable releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseChannel {
    Stable,
    Beta,
}

/// `[freepbx]`: the addresses and names the generated dialplan and AMI user use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreepbxConfig {
    /// The address pbxlink connects from (the AMI user's only `permit`).
    #[serde(default = "default_gateway_ip")]
    pub gateway_ip: std::net::IpAddr,
    /// The FastAGI server asked for CRM routing, `agi://host:port`.
    #[serde(default = "default_agi_url")]
    pub agi_url: String,
    /// The AMI user written to `manager_custom.conf`.
    #[serde(default = "default_username")]
    pub ami_user: String,
    /// Where MixMonitor writes recordings.
    #[serde(default = "default_recordings_dir")]
    pub recordings_dir: String,
    /// Module name of the packaged integration.
    #[serde(default = "default_username")]
    pub rawname: String,
    /// Release server base URL for the packaged `<updateurl>` (`https://host` or
    /// `https://host/c/TOKEN`); none: the package carries no update URL.
    pub update_url: Option<String>,
}

impl Default for FreepbxConfig {
    fn default() -> Self {
        toml::from_str("").expect("every FreepbxConfig field has a default")
    }
}

fn default_agi_url() -> String {
    "agi://127.0.0.1:4573".to_owned()
}
fn default_gateway_ip() -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, 1])
}
fn default_publish_secret_env() -> String {
    "PBXLINK_PUBLISH_SECRET".to_owned()
}
fn default_recordings_dir() -> String {
    "/var/spool/asterisk/monitor/pbxlink".to_owned()
}
fn default_release_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 8443))
}
/// The AMI user FreePBX gets and the module's name: the product's own name.
fn default_username() -> String {
    "pbxlink".to_owned()
}
