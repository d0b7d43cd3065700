//! What the recordings tests share (here and in crates above, with the `testing` feature): a
//! tone as MixMonitor writes it, a recorded call, and a store + monitor folder + worker bench.

use std::io::Cursor;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use store::Store;

use super::{RecordingsConfig, Worker};
use crate::outbox::{Crm, CrmConfig};

/// A WAV of a 440 Hz tone, `seconds` long, as MixMonitor would write it (16-bit PCM).
pub fn tone_wav(rate: u32, channels: u16, seconds: f64) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut out, spec).unwrap();
    let frames = (f64::from(rate) * seconds) as u32;
    for n in 0..frames {
        let t = f64::from(n) / f64::from(rate);
        let v = ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16;
        for _ in 0..channels {
            writer.write_sample(v).unwrap();
        }
    }
    writer.finalize().unwrap();
    out.into_inner()
}

/// A store, a monitor folder and a worker with one connector over them.
#[derive(Debug)]
pub struct Bench {
    pub store: Store,
    pub worker: Worker,
    pub monitor: tempfile::TempDir,
    /// The data directory (the link key is kept there).
    pub data: tempfile::TempDir,
    pub config: RecordingsConfig,
}

/// The bench with the `[[crm]]` section `crm`.
pub async fn bench_with(crm: &str) -> Bench {
    let data = tempfile::tempdir().unwrap();
    let monitor = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db?mode=rwc", data.path().display());
    let store = Store::connect(&url).await.unwrap();
    let config: RecordingsConfig = toml::from_str(&format!(
        "dir = {:?}\npbx_dir = \"/var/spool/asterisk/monitor\"\n\
         public_url = \"https://pbx.example/\"\nretention_days = 30\n",
        monitor.path().display().to_string()
    ))
    .unwrap();
    let crm: CrmConfig = toml::from_str(crm).unwrap();
    let mut crm = Crm::from_config(&crm).unwrap();
    crm.recordings_follow = true;
    let worker =
        Worker::from_config(&config, data.path(), "http://unused", Arc::from(vec![crm])).unwrap();
    Bench {
        store,
        worker,
        monitor,
        data,
        config,
    }
}

/// A recorded, answered inbound call of `started`, its recording `file` in the day folder
/// FreePBX uses.
pub fn recorded_call_at(id: &str, file: &str, started: DateTime<Utc>) -> calls::CallRecord {
    calls::CallRecord {
        id: id.to_owned(),
        direction: calls::Direction::Inbound,
        from: Some("15551234567".into()),
        to: Some("15550001000".into()),
        caller_name: None,
        started_at: started,
        answered_at: Some(started + TimeDelta::seconds(4)),
        ended_at: started + TimeDelta::seconds(12),
        ring_seconds: 4,
        talk_seconds: 8,
        disposition: calls::Disposition::Answered,
        answered_by: Some("202".into()),
        rang: vec!["202".into()],
        transfers: Vec::new(),
        queue: None,
        recording: Some(format!(
            "/var/spool/asterisk/monitor/{}/{file}",
            started.format("%Y/%m/%d")
        )),
        legs: Vec::new(),
        provenance: Default::default(),
        timeline: Vec::new(),
    }
}
