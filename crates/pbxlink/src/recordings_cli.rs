//! `pbxlink recording convert`: the recordings worker's encoder (`delivery::recordings`) from
//! the command line.

use std::path::PathBuf;

use anyhow::Context as _;
use delivery::recordings::{wav_to_mp3, Converted, DEFAULT_BITRATE};

/// `pbxlink recording ...`.
#[derive(Debug, clap::Args)]
pub struct RecordingArgs {
    #[command(subcommand)]
    command: RecordingCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RecordingCommand {
    /// Convert a WAV to MP3 with the worker's encoder; print the audio length, the MP3 size
    /// and the speed (times real time).
    Convert {
        /// MixMonitor WAV (PCM, any rate, mono or stereo).
        wav: PathBuf,
        /// Where to write the MP3.
        mp3: PathBuf,
        /// MP3 bitrate, kbit/s.
        #[arg(long, default_value_t = DEFAULT_BITRATE)]
        bitrate: u16,
    },
}

/// Runs `pbxlink recording ...`.
pub fn command(args: &RecordingArgs) -> anyhow::Result<()> {
    let RecordingCommand::Convert { wav, mp3, bitrate } = &args.command;
    let file = std::fs::File::open(wav).with_context(|| format!("opening {}", wav.display()))?;
    let started = std::time::Instant::now();
    let converted = wav_to_mp3(std::io::BufReader::new(file), *bitrate)
        .with_context(|| format!("converting {}", wav.display()))?;
    let took = started.elapsed();
    let Converted::Mp3 { bytes, duration_ms } = converted else {
        anyhow::bail!("{}: no audio (a header-only file)", wav.display());
    };
    std::fs::write(mp3, &bytes).with_context(|| format!("writing {}", mp3.display()))?;
    let audio = duration_ms as f64 / 1000.0;
    println!(
        "{}: {audio:.1} s of audio -> {} ({} bytes, {bitrate} kbit/s) in {:.3} s: {:.0}x real time",
        wav.display(),
        mp3.display(),
        bytes.len(),
        took.as_secs_f64(),
        audio / took.as_secs_f64().max(1e-9)
    );
    Ok(())
}
