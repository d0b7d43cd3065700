//! WAV (what MixMonitor writes) to MP3 (what CRMs and browsers play), in process: `hound`
//! reads the WAV, LAME (`mp3lame-encoder`) encodes. Mono out: a call recording is one mixed
//! channel, and stereo input is mixed down.

use std::io::Read;

use mp3lame_encoder::{Bitrate, Builder, FlushNoGap, MonoPcm};

/// What a conversion produced.
#[derive(Debug)]
pub enum Converted {
    /// MP3 bytes and the audio's length.
    Mp3 {
        /// The MP3 file.
        bytes: Vec<u8>,
        /// Length of the audio, in milliseconds.
        duration_ms: u64,
    },
    /// The WAV holds no samples (a call never bridged leaves a header-only file).
    Empty,
}

/// Why a file cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Not a WAV, or a WAV codec other than PCM/float (MixMonitor's `.WAV` is GSM, `.ulaw`
    /// is not WAV at all).
    #[error("not a PCM WAV file (record with MixMonitor's .wav or .wav16 format): {0}")]
    Format(#[from] hound::Error),
    /// The encoder refused the parameters or the data.
    #[error("MP3 encoder: {0}")]
    Encoder(String),
}

/// The MP3 bitrates LAME takes, in kbit/s (config validation lists them).
pub const BITRATES: [u16; 16] = [
    8, 16, 24, 32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
];

fn bitrate(kbps: u16) -> Option<Bitrate> {
    use Bitrate::*;
    let all = [
        Kbps8, Kbps16, Kbps24, Kbps32, Kbps40, Kbps48, Kbps64, Kbps80, Kbps96, Kbps112, Kbps128,
        Kbps160, Kbps192, Kbps224, Kbps256, Kbps320,
    ];
    BITRATES
        .iter()
        .zip(all)
        .find(|(k, _)| **k == kbps)
        .map(|(_, b)| b)
}

/// Converts a WAV stream to MP3 at `kbps`.
pub fn wav_to_mp3(wav: impl Read, kbps: u16) -> Result<Converted, ConvertError> {
    let mut reader = hound::WavReader::new(wav)?;
    let spec = reader.spec();
    let samples = mono_samples(&mut reader)?;
    if samples.is_empty() {
        return Ok(Converted::Empty);
    }
    let encoder_error = |e: &dyn std::fmt::Display| ConvertError::Encoder(e.to_string());
    let mut builder = Builder::new().ok_or_else(|| encoder_error(&"cannot start LAME"))?;
    builder.set_num_channels(1).map_err(|e| encoder_error(&e))?;
    builder
        .set_sample_rate(spec.sample_rate)
        .map_err(|e| encoder_error(&e))?;
    let rate = bitrate(kbps).ok_or_else(|| encoder_error(&format!("no {kbps} kbit/s bitrate")))?;
    builder.set_brate(rate).map_err(|e| encoder_error(&e))?;
    builder
        .set_quality(mp3lame_encoder::Quality::Good)
        .map_err(|e| encoder_error(&e))?;
    let mut encoder = builder.build().map_err(|e| encoder_error(&e))?;
    // Room for everything plus the final flush (LAME wants 7200 bytes for it).
    let mut mp3 =
        Vec::with_capacity(mp3lame_encoder::max_required_buffer_size(samples.len()) + 7200);
    encoder
        .encode_to_vec(MonoPcm(&samples), &mut mp3)
        .map_err(|e| encoder_error(&e))?;
    encoder
        .flush_to_vec::<FlushNoGap>(&mut mp3)
        .map_err(|e| encoder_error(&e))?;
    let duration_ms = samples.len() as u64 * 1000 / u64::from(spec.sample_rate);
    Ok(Converted::Mp3 {
        bytes: mp3,
        duration_ms,
    })
}

/// Every frame as one 16-bit sample: channels averaged, other depths scaled to 16 bits.
fn mono_samples<R: Read>(reader: &mut hound::WavReader<R>) -> Result<Vec<i16>, hound::Error> {
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let wide: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .map(|s| s.map(|v| v * 32767.0))
            .collect::<Result<_, _>>()?,
        hound::SampleFormat::Int => {
            let shift = i32::from(spec.bits_per_sample) - 16;
            reader
                .samples::<i32>()
                .map(|s| {
                    s.map(|v| match shift {
                        s if s > 0 => (v >> s) as f32,
                        s => (v << -s) as f32,
                    })
                })
                .collect::<Result<_, _>>()?
        }
    };
    Ok(wide
        .chunks_exact(channels)
        .map(|frame| {
            let mean = frame.iter().sum::<f32>() / channels as f32;
            mean.clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
        })
        .collect())
}
