//! `pbxlink simulate`: a simulated Asterisk/FreePBX. A deterministic generator of realistic
//! AMI call traffic (demo mode, load source, ground truth for the tracker) and an AMI server
//! that streams it and answers the actions a CRM gateway sends.

mod call;
mod directory;
mod generator;
mod scenario;
mod server;
mod wire;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

pub use generator::{Generator, Options};
pub use scenario::Scenario;
pub use server::{start, ServerOptions, SimulatorHandle};

/// The banner real Asterisk 22 sends first.
pub const BANNER: &str = "Asterisk Call Manager/11.0.0\r\n";

/// `pbxlink simulate` arguments.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Mean new calls per second (Poisson arrivals).
    #[arg(long, default_value_t = 0.5)]
    calls_per_second: f64,
    /// Most calls up at the same time.
    #[arg(long, default_value_t = 20)]
    concurrency: usize,
    /// Seconds of virtual time during which calls start (default: forever when serving,
    /// 60 with --write alone).
    #[arg(long)]
    duration: Option<f64>,
    /// Random seed: the same seed gives the same byte stream.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Phone extensions, e.g. "201-220" or "201-205,300".
    #[arg(long, default_value = "201-220")]
    extensions: String,
    /// Scenario weights, e.g. "inbound_ext=5,queue=2" (others then 0); default: an office mix.
    #[arg(long)]
    mix: Option<String>,
    /// Serve AMI on this address (e.g. 127.0.0.1:5038).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// AMI user name clients must log in with.
    #[arg(long, default_value = "admin")]
    username: String,
    /// AMI secret.
    #[arg(long, default_value = "amp111")]
    secret: String,
    /// Write the transcript (rx.raw wire bytes) to FILE and the ground truth to FILE.truth.jsonl.
    #[arg(long)]
    write: Option<PathBuf>,
    /// Send events as fast as the client reads (timestamps stay virtual) instead of in real time.
    #[arg(long)]
    fast: bool,
}

/// Runs `pbxlink simulate`.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let mut opts = Options {
        calls_per_second: args.calls_per_second,
        concurrency: args.concurrency,
        duration_secs: args.duration,
        seed: args.seed,
        extensions: parse_extensions(&args.extensions)?,
        ..Options::default()
    };
    if let Some(mix) = &args.mix {
        opts.mix = parse_mix(mix)?;
    }
    match (&args.listen, &args.write) {
        (None, None) => bail!("nothing to do: give --listen ADDR, --write FILE or both"),
        (None, Some(file)) => {
            opts.duration_secs.get_or_insert(60.0);
            let stats = write_transcript(Generator::new(opts), file)?;
            eprintln!("{stats}");
            Ok(())
        }
        (Some(addr), write) => {
            // Served calls carry today's timestamps; only a written-only transcript is pinned.
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            opts.start_ms = now.as_millis() as u64;
            let server = ServerOptions {
                username: args.username,
                secret: args.secret,
                fast: args.fast,
                write: write.clone(),
            };
            tokio::runtime::Runtime::new()?.block_on(async {
                let handle = start(*addr, opts, server).await?;
                eprintln!("simulated Asterisk AMI on {}", handle.local_addr());
                handle.wait().await;
                Ok(())
            })
        }
    }
}

/// What a written transcript holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    pub calls: usize,
    pub events: usize,
    pub bytes: usize,
}

impl std::fmt::Display for WriteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} calls, {} events, {} bytes",
            self.calls, self.events, self.bytes
        )
    }
}

/// Runs `gen` to the end: the wire bytes to `file` (banner first, like an rx.raw) and one
/// ground-truth JSON line per call to `file.truth.jsonl`.
pub fn write_transcript(mut gen: Generator, file: &Path) -> anyhow::Result<WriteStats> {
    let open = |p: &Path| -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
        Ok(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        ))
    };
    let mut raw = open(file)?;
    let mut truth = open(&truth_path(file))?;
    raw.write_all(BANNER.as_bytes())?;
    let mut stats = WriteStats {
        calls: 0,
        events: 0,
        bytes: BANNER.len(),
    };
    let mut buf = Vec::new();
    while let Some((_, m)) = gen.next_event() {
        buf.clear();
        m.encode(&mut buf);
        raw.write_all(&buf)?;
        stats.events += 1;
        stats.bytes += buf.len();
        for t in gen.take_finished() {
            serde_json::to_writer(&mut truth, &t)?;
            truth.write_all(b"\n")?;
            stats.calls += 1;
        }
    }
    raw.flush()?;
    truth.flush()?;
    Ok(stats)
}

/// `FILE.truth.jsonl` beside `FILE`.
pub fn truth_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".truth.jsonl");
    PathBuf::from(name)
}

/// "201-220,300" -> ["201", ..., "220", "300"].
pub fn parse_extensions(spec: &str) -> anyhow::Result<Vec<String>> {
    let mut exts = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (u32, u32) = (
            lo.trim()
                .parse()
                .with_context(|| format!("bad extension {lo:?}"))?,
            hi.trim()
                .parse()
                .with_context(|| format!("bad extension {hi:?}"))?,
        );
        if hi < lo || hi - lo > 10_000 {
            bail!("bad extension range {part:?}");
        }
        exts.extend((lo..=hi).map(|e| e.to_string()));
    }
    if exts.is_empty() {
        bail!("no extensions in {spec:?}");
    }
    Ok(exts)
}

/// "inbound_ext=5,queue=2" -> weights; scenarios not named get 0.
pub fn parse_mix(spec: &str) -> anyhow::Result<Vec<(Scenario, u32)>> {
    let mut mix = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
        let Some(s) = Scenario::from_name(name.trim()) else {
            let known: Vec<&str> = Scenario::DEFAULT_MIX
                .iter()
                .map(|(s, _)| s.name())
                .collect();
            bail!("unknown scenario {name:?}; known: {}", known.join(", "));
        };
        mix.push((
            s,
            weight
                .trim()
                .parse()
                .with_context(|| format!("bad weight in {part:?}"))?,
        ));
    }
    if mix.iter().all(|(_, w)| *w == 0) {
        bail!("the mix {spec:?} has no positive weight");
    }
    Ok(mix)
}
