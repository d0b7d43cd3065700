//! The demo PBX's MixMonitor: the simulated Asterisk writes a short WAV wherever a call's
//! `MIXMONITOR_FILENAME` points (under a folder of its own), so in demo mode recordings take
//! the production path end to end: worker, MP3, signed link, the UI's player. It lives in
//! `simulate` because it is part of the simulated PBX (its server writes the files, its
//! calls name them under [`PBX_DIR`]); the binary only reads [`PBX_DIR`] for its demo
//! `[recordings]`.

use std::path::{Component, Path, PathBuf};

/// Where the simulated PBX names its recordings (FreePBX's monitor folder).
pub const PBX_DIR: &str = "/var/spool/asterisk/monitor";

/// Writes the recording that `event` starts, if it starts one (a `VarSet` of
/// `MIXMONITOR_FILENAME` under [`PBX_DIR`]), as `dir/<path below PBX_DIR>`.
pub fn mixmonitor(dir: &Path, event: &ami::Message) {
    if event.event() != Some("VarSet") || event.get_last("Variable") != Some("MIXMONITOR_FILENAME")
    {
        return;
    }
    let Some(relative) = event
        .get_last("Value")
        .and_then(|file| Path::new(file).strip_prefix(PBX_DIR).ok())
        .filter(|rel| rel.components().all(|c| matches!(c, Component::Normal(_))))
    else {
        return;
    };
    let path = dir.join(relative);
    if let Err(e) = write_tone(&path) {
        tracing::warn!(path = %path.display(), error = %e, "demo PBX: cannot write a recording");
    }
}

/// Three seconds of a two-note chime at 8 kHz, 16-bit mono: what MixMonitor's `.wav` holds.
fn write_tone(path: &PathBuf) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(path, spec)?;
    for n in 0..3 * 8000 {
        let t = f64::from(n) / 8000.0;
        let note = if t % 1.0 < 0.5 { 660.0 } else { 440.0 };
        // Each half second fades out, so the notes do not click.
        let fade = 1.0 - (t % 0.5) * 2.0;
        let v = (t * note * std::f64::consts::TAU).sin() * fade * 6000.0;
        wav.write_sample(v as i16)?;
    }
    wav.finalize()?;
    Ok(())
}
