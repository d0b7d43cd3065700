//! Publishing a module tarball (CLI and signed API): check it, store it by SHA-256, record
//! its digests; and the HMAC signature CI systems put on an API publish.

use std::path::Path;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use md5::Digest as _;
use store::{NewRelease, Store};

use super::customize::Digests;
use super::module::{read_tarball, ModuleError};
use crate::ReleaseChannel;

/// Largest tarball accepted (FreePBX modules with assets run to tens of MB).
pub const MAX_TARBALL: usize = 256 << 20;
/// Unix seconds when the request was signed.
pub const TIMESTAMP_HEADER: &str = "x-pbxlink-timestamp";
/// Hex HMAC-SHA256 of [`signed_text`].
pub const SIGNATURE_HEADER: &str = "x-pbxlink-signature";
/// How far a signed request's timestamp may be from the server's clock (replays are refused
/// after that).
const MAX_SKEW_SECONDS: i64 = 300;

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error(
        "{rawname} {version} is already published (versions are never replaced; publish a new one)"
    )]
    Exists { rawname: String, version: String },
    #[error("external location {0:?} is not an absolute https URL")]
    BadLocation(String),
    #[error("storing the tarball: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// How a tarball is published.
#[derive(Debug)]
pub struct Options {
    pub channel: ReleaseChannel,
    /// Serve the file from this https URL (CDN, S3) instead of from pbxlink.
    pub location: Option<String>,
    /// Its minisign signature (checked by the caller against the configured key).
    pub minisig: Option<String>,
}

/// Checks `tgz`, keeps it under `files_dir/<sha256>.tgz` and records the release.
pub async fn publish(
    store: &Store,
    files_dir: &Path,
    tgz: &[u8],
    options: Options,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<NewRelease, PublishError> {
    let Options {
        channel,
        location,
        minisig,
    } = options;
    let module = read_tarball(tgz)?;
    if let Some(url) = &location {
        if !url.starts_with("https://") || url::Url::parse(url).is_err() {
            return Err(PublishError::BadLocation(url.clone()));
        }
    }
    let digests = Digests::of(tgz);
    let release = NewRelease {
        rawname: module.rawname,
        version: module.version,
        channel: super::licensing::channel_name(channel).to_owned(),
        name: module.name,
        publisher: module.publisher,
        license: module.license,
        changelog: module.changelog.map(|c| c.trim().to_owned()),
        depends: module
            .depends
            .map(|d| serde_json::to_string(&d))
            .transpose()
            .ok()
            .flatten(),
        size: digests.size,
        md5: digests.md5,
        sha1: digests.sha1,
        sha256: digests.sha256.clone(),
        location,
        minisig,
    };
    let sha256 = digests.sha256;
    // The file goes in before the row, so a listed release always has its bytes; a temporary
    // name and a rename keep a half-written file from ever being served.
    tokio::fs::create_dir_all(files_dir).await?;
    let path = files_dir.join(format!("{sha256}.tgz"));
    let partial = files_dir.join(format!("{sha256}.tgz.partial"));
    tokio::fs::write(&partial, tgz).await?;
    tokio::fs::rename(&partial, &path).await?;
    if !store.publish_release(&release, actor, now).await? {
        return Err(PublishError::Exists {
            rawname: release.rawname,
            version: release.version,
        });
    }
    Ok(release)
}

/// What is signed: timestamp, channel and the body's SHA-256, one per line.
fn signed_text(timestamp: &str, channel: ReleaseChannel, body: &[u8]) -> String {
    let channel = serde_json::to_value(channel).unwrap_or_default();
    format!(
        "{timestamp}\n{}\n{}",
        channel.as_str().unwrap_or_default(),
        hex::encode(sha2::Sha256::digest(body))
    )
}

fn mac(key: &[u8], timestamp: &str, channel: ReleaseChannel, body: &[u8]) -> Hmac<sha2::Sha256> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(signed_text(timestamp, channel, body).as_bytes());
    mac
}

/// The signature a client sends (what `curl` users compute with `openssl dgst -hmac`).
#[cfg(test)]
fn signature(key: &[u8], timestamp: &str, channel: ReleaseChannel, body: &[u8]) -> String {
    hex::encode(mac(key, timestamp, channel, body).finalize().into_bytes())
}

/// Why a signed request is refused.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")]
    Missing,
    #[error("{TIMESTAMP_HEADER} is not within {MAX_SKEW_SECONDS} s of the server's clock")]
    Stale,
    #[error("bad signature")]
    Bad,
}

/// Checks a request's signature in constant time, and its age.
pub fn verify(
    key: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    channel: ReleaseChannel,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let at: i64 = timestamp.parse().map_err(|_| SignatureError::Stale)?;
    if (now.timestamp() - at).abs() > MAX_SKEW_SECONDS {
        return Err(SignatureError::Stale);
    }
    let signature = hex::decode(signature).map_err(|_| SignatureError::Bad)?;
    mac(key, timestamp, channel, body)
        .verify_slice(&signature)
        .map_err(|_| SignatureError::Bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_body_channel_and_time() {
        let now = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        let ts = "1764000000";
        let sig = signature(b"key", ts, ReleaseChannel::Stable, b"body");
        let check = |key: &[u8], ts: &str, channel, body: &[u8]| {
            verify(key, Some(ts), Some(&sig), channel, body, now).map_err(|e| e.to_string())
        };
        assert_eq!(check(b"key", ts, ReleaseChannel::Stable, b"body"), Ok(()));
        assert_eq!(
            check(b"key", ts, ReleaseChannel::Beta, b"body"),
            Err("bad signature".into())
        );
        assert_eq!(
            check(b"key", ts, ReleaseChannel::Stable, b"other"),
            Err("bad signature".into())
        );
        assert_eq!(
            check(b"other key", ts, ReleaseChannel::Stable, b"body"),
            Err("bad signature".into())
        );
        let replayed = verify(
            b"key",
            Some(ts),
            Some(&sig),
            ReleaseChannel::Stable,
            b"body",
            now + chrono::TimeDelta::seconds(301),
        );
        assert!(matches!(replayed, Err(SignatureError::Stale)));
    }
}
