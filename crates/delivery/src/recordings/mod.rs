//! Call recordings: after a call is journaled, find its MixMonitor WAV, wait until it is
//! complete, convert it to MP3, store it by content hash, hand signed links to the API and the
//! CRM connectors (Bitrix24 `attachRecord`, webhook `recording.ready`), delete after retention.
//!
//! The worker is driven by the store (`recordings` table), not by a channel from the journal
//! writer: a restart, or a second pbxlink on the same database, picks up every call whose
//! recording is not done yet.

mod convert;
mod link;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use sha2::Digest as _;
use store::{Recording, RecordingOutcome, Store};

pub use convert::{wav_to_mp3, Converted};
pub use link::{LinkError, Signer};

/// `[recordings]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingsConfig {
    /// Where pbxlink reads the PBX's recordings (the monitor folder, or a mount of it).
    pub dir: PathBuf,
    /// The same folder as the PBX names it in `MIXMONITOR_FILENAME`; default: `dir`.
    pub pbx_dir: Option<PathBuf>,
    /// Where the MP3s are kept; default: `<data_dir>/recordings`.
    pub store_dir: Option<PathBuf>,
    /// Base of the links handed out (`https://pbxlink.example.com`); default: the API's own
    /// `http://<listen>` address.
    pub public_url: Option<String>,
    /// MP3s (and their rows) are deleted this many days after they were made.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Seconds a signed link works.
    #[serde(default = "default_link_ttl")]
    pub link_ttl: u64,
    /// MP3 bitrate, kbit/s.
    #[serde(default = "default_bitrate")]
    pub bitrate: u16,
    /// Environment variable holding the link-signing key; default: a random key kept in
    /// `<data_dir>/recordings.key`.
    pub key_env: Option<String>,
    /// Seconds the file must keep its size before it counts as complete.
    #[serde(default = "default_settle")]
    pub settle: u64,
    /// Seconds to wait for the file to appear before giving up (`missing`).
    #[serde(default = "default_wait")]
    pub wait: u64,
}

fn default_retention_days() -> u32 {
    90
}
fn default_link_ttl() -> u64 {
    7 * 24 * 3600
}
/// MP3 bitrate unless `[recordings] bitrate` says otherwise, kbit/s.
pub const DEFAULT_BITRATE: u16 = 32;

fn default_bitrate() -> u16 {
    DEFAULT_BITRATE
}
fn default_settle() -> u64 {
    2
}
fn default_wait() -> u64 {
    600
}

impl RecordingsConfig {
    /// The defaults for the PBX's recordings in `dir`, as the PBX names that folder too.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            pbx_dir: None,
            store_dir: None,
            public_url: None,
            retention_days: default_retention_days(),
            link_ttl: default_link_ttl(),
            bitrate: default_bitrate(),
            key_env: None,
            settle: default_settle(),
            wait: default_wait(),
        }
    }

    /// Checks values a file can get wrong.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            convert::BITRATES.contains(&self.bitrate),
            "[recordings] bitrate {} is not an MP3 bitrate (one of {:?})",
            self.bitrate,
            convert::BITRATES
        );
        // Calls are looked for within a day of their start; a shorter retention would let a
        // deleted row be found again.
        anyhow::ensure!(
            self.retention_days >= 1,
            "[recordings] retention_days must be at least 1"
        );
        anyhow::ensure!(self.link_ttl > 0, "[recordings] link_ttl must be positive");
        Ok(())
    }
}

/// Calls that started longer ago than this are not looked at for new recordings.
const DISCOVER_WINDOW: TimeDelta = TimeDelta::days(1);
/// How often the worker looks for new calls and due rows.
const POLL: Duration = Duration::from_secs(1);
const BATCH: u32 = 50;
/// How often old recordings are deleted.
const RETENTION_EVERY: TimeDelta = TimeDelta::hours(1);

/// What the API needs: where the MP3s are and how links are made.
#[derive(Debug, Clone)]
pub struct Recordings {
    store_dir: PathBuf,
    signer: Signer,
    public_url: String,
    link_ttl: TimeDelta,
}

/// A signed link and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The full URL.
    pub url: String,
    /// Its expiry.
    pub expires_at: DateTime<Utc>,
}

impl Recordings {
    /// Links signed with `key`, served from `store_dir`, under `public_url`.
    pub fn new(store_dir: PathBuf, key: Vec<u8>, public_url: &str, link_ttl: Duration) -> Self {
        Self {
            store_dir,
            signer: Signer::new(key),
            public_url: public_url.trim_end_matches('/').to_owned(),
            link_ttl: TimeDelta::from_std(link_ttl).unwrap_or(TimeDelta::MAX),
        }
    }

    /// A fresh link to the MP3 named `sha256`.
    pub fn link(&self, sha256: &str, now: DateTime<Utc>) -> Link {
        let expires_at = now + self.link_ttl;
        let token = self.signer.token(sha256, expires_at);
        Link {
            url: format!("{}/recordings/{token}", self.public_url),
            expires_at,
        }
    }

    /// The stored file a link token opens, if the link is valid at `now`.
    pub fn open(&self, token: &str, now: DateTime<Utc>) -> Result<PathBuf, LinkError> {
        let sha256 = self.signer.verify(token, now)?;
        Ok(self.path_of(&sha256))
    }

    /// `<store_dir>/<first two hex digits>/<sha256>.mp3`: no folder grows too large.
    fn path_of(&self, sha256: &str) -> PathBuf {
        self.store_dir
            .join(&sha256[..2])
            .join(format!("{sha256}.mp3"))
    }

    /// Stores MP3 bytes under their hash (atomically: written aside, then renamed); returns
    /// the hash. Storing the same bytes twice keeps one file.
    fn put(&self, mp3: &[u8]) -> std::io::Result<String> {
        let sha256 = hex::encode(sha2::Sha256::digest(mp3));
        let path = self.path_of(&sha256);
        if !path.exists() {
            let dir = path.parent().unwrap_or(&self.store_dir);
            std::fs::create_dir_all(dir)?;
            let aside = dir.join(format!(".{sha256}.{:08x}.tmp", rand::random::<u32>()));
            std::fs::write(&aside, mp3)?;
            std::fs::rename(&aside, &path)?;
        }
        Ok(sha256)
    }

    fn remove(&self, sha256: &str) {
        if let Err(e) = std::fs::remove_file(self.path_of(sha256)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(sha256, error = %e, "cannot delete an expired recording");
            }
        }
    }
}

/// The signing key: from `key_env`, else `<data_dir>/recordings.key` (made on first use,
/// readable by pbxlink's user only), so links survive a restart.
pub fn load_key(config: &RecordingsConfig, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(var) = &config.key_env {
        let key = std::env::var(var).with_context(|| format!("[recordings] ${var} is not set"))?;
        anyhow::ensure!(
            key.len() >= 16,
            "[recordings] ${var}: the key needs at least 16 characters"
        );
        return Ok(key.into_bytes());
    }
    let path = data_dir.join("recordings.key");
    match std::fs::read_to_string(&path) {
        Ok(hex_key) => hex::decode(hex_key.trim())
            .with_context(|| format!("{}: not a hex key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            write_private(&path, &hex::encode(key))?;
            Ok(key.to_vec())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// The worker's settings.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Links, storage.
    pub recordings: Arc<Recordings>,
    /// The PBX's recordings folder here.
    pub dir: PathBuf,
    /// The same folder as the PBX names it.
    pub pbx_dir: PathBuf,
    /// MP3 bitrate.
    pub bitrate: u16,
    /// How long a file must keep its size.
    pub settle: TimeDelta,
    /// How long to wait for a file to appear.
    pub wait: TimeDelta,
    /// Age at which recordings are deleted.
    pub retention: TimeDelta,
    /// The connectors that get the recordings.
    pub crms: Arc<[crate::outbox::Crm]>,
}

impl Worker {
    /// The worker for `config`, storing under `data_dir` unless told otherwise.
    pub fn from_config(
        config: &RecordingsConfig,
        data_dir: &Path,
        default_public_url: &str,
        crms: Arc<[crate::outbox::Crm]>,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        let store_dir = config
            .store_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("recordings"));
        let key = load_key(config, data_dir)?;
        let public_url = config.public_url.as_deref().unwrap_or(default_public_url);
        let secs = |s: u64| TimeDelta::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000));
        Ok(Self {
            recordings: Arc::new(Recordings::new(
                store_dir,
                key,
                public_url,
                Duration::from_secs(config.link_ttl),
            )),
            dir: config.dir.clone(),
            pbx_dir: config.pbx_dir.clone().unwrap_or_else(|| config.dir.clone()),
            bitrate: config.bitrate,
            settle: secs(config.settle),
            wait: secs(config.wait),
            retention: TimeDelta::days(i64::from(config.retention_days)),
            crms,
        })
    }

    /// Runs forever: new calls, due rows, retention. A database error is logged and retried.
    pub async fn run(self, store: Store) {
        let mut last_retention: Option<DateTime<Utc>> = None;
        loop {
            let now = Utc::now();
            if last_retention.is_none_or(|at| now - at >= RETENTION_EVERY) {
                last_retention = Some(now);
                if let Err(e) = self.expire(&store, now).await {
                    tracing::error!(error = %e, "recordings retention failed; retrying later");
                }
            }
            match self.step(&store, now).await {
                // A full batch: more may be due at once.
                Ok(n) if n == BATCH as usize => continue,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "recordings worker: database error"),
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One round: registers new calls and looks at every due row; returns how many it saw.
    pub async fn step(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<usize, store::StoreError> {
        store
            .discover_recordings(now - DISCOVER_WINDOW, now)
            .await?;
        let due = store.due_recordings(now, BATCH).await?;
        for row in &due {
            self.look_at(store, row, now).await?;
        }
        Ok(due.len())
    }

    /// Deletes recordings past retention, rows first (a link to a deleted row is dead).
    pub async fn expire(&self, store: &Store, now: DateTime<Utc>) -> Result<(), store::StoreError> {
        for sha256 in store.expire_recordings(now - self.retention).await? {
            self.recordings.remove(&sha256);
        }
        Ok(())
    }

    async fn look_at(
        &self,
        store: &Store,
        row: &Recording,
        now: DateTime<Utc>,
    ) -> Result<(), store::StoreError> {
        let call = store.get_call(&row.call_id, Some(&row.pbx)).await?;
        let Some(call) = call else {
            let outcome = RecordingOutcome::Missing("the call is not in the journal".into());
            return store
                .finish_recording(&row.pbx, &row.call_id, &outcome, &[], now)
                .await;
        };
        let found = locate(
            &self.dir,
            &self.pbx_dir,
            &row.source,
            call.record.started_at,
        )
        .and_then(|path| Some((std::fs::metadata(&path).ok()?.len(), path)));
        let outcome = match found {
            None if now - row.created_at >= self.wait => RecordingOutcome::Missing(format!(
                "{} not found under {}",
                row.source,
                self.dir.display()
            )),
            None => {
                let next = now + self.settle;
                return store
                    .recheck_recording(&row.pbx, &row.call_id, None, next)
                    .await;
            }
            // Still growing, or seen for the first time: MixMonitor may still be writing.
            Some((size, _)) if row.source_bytes != Some(size) => {
                let next = now + self.settle;
                return store
                    .recheck_recording(&row.pbx, &row.call_id, Some(size), next)
                    .await;
            }
            Some((_, path)) => self.convert(path).await,
        };
        let outbox = match &outcome {
            RecordingOutcome::Ready {
                sha256,
                bytes,
                duration_ms,
            } => {
                let link = self.recordings.link(sha256, now);
                let ready = crate::outbox::RecordingReady {
                    url: &link.url,
                    expires_at: link.expires_at,
                    sha256,
                    bytes: *bytes,
                    duration_ms: *duration_ms,
                };
                crate::outbox::plan_recording(&self.crms, &row.pbx, &call.record, &ready)
            }
            _ => Vec::new(),
        };
        if let RecordingOutcome::Missing(why) | RecordingOutcome::Failed(why) = &outcome {
            tracing::warn!(
                pbx = row.pbx,
                call = row.call_id,
                why,
                "recording not converted"
            );
        }
        let saved = store
            .finish_recording(&row.pbx, &row.call_id, &outcome, &outbox, now)
            .await;
        if saved.is_ok() && !outbox.is_empty() {
            crate::outbox::rows_queued(&self.crms);
        }
        saved
    }

    /// Converts and stores one WAV, off the async threads (LAME is CPU work).
    async fn convert(&self, path: PathBuf) -> RecordingOutcome {
        let recordings = self.recordings.clone();
        let bitrate = self.bitrate;
        let job = move || -> Result<RecordingOutcome, String> {
            let file =
                std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            match wav_to_mp3(std::io::BufReader::new(file), bitrate) {
                Ok(Converted::Empty) => Ok(RecordingOutcome::Empty),
                Ok(Converted::Mp3 { bytes, duration_ms }) => {
                    let sha256 = recordings
                        .put(&bytes)
                        .map_err(|e| format!("storing the MP3: {e}"))?;
                    Ok(RecordingOutcome::Ready {
                        sha256,
                        bytes: bytes.len() as u64,
                        duration_ms,
                    })
                }
                Err(e) => Err(format!("{}: {e}", path.display())),
            }
        };
        match tokio::task::spawn_blocking(job).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(why)) => RecordingOutcome::Failed(why),
            Err(e) => RecordingOutcome::Failed(format!("conversion crashed: {e}")),
        }
    }
}

/// Where the PBX's file `source` is here: its path under `pbx_dir` moved to `dir`, else its
/// name under `dir/YYYY/MM/DD/` (FreePBX's layout; the PBX's local date may differ from UTC
/// by a day) or `dir` itself. A name that would leave `dir` (`..`) is never followed.
pub fn locate(dir: &Path, pbx_dir: &Path, source: &str, started: DateTime<Utc>) -> Option<PathBuf> {
    let source = Path::new(source);
    let relative = source
        .strip_prefix(pbx_dir)
        .ok()
        .or_else(|| source.is_relative().then_some(source));
    let name = Path::new(source.file_name()?);
    let dated = [-1, 0, 1].map(|days| {
        let day = started + TimeDelta::days(days);
        dir.join(day.format("%Y/%m/%d").to_string()).join(name)
    });
    relative
        .filter(|rel| rel.components().all(|c| matches!(c, Component::Normal(_))))
        .map(|rel| dir.join(rel))
        .into_iter()
        .chain(dated)
        .chain([dir.join(name)])
        .find(|path| path.is_file())
}
