//! `pbxlink simulate`: its arguments, and the run that hands them to the simulated Asterisk
//! ([`sim::simulate`]): serve it over AMI, write its transcript, or both.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;
use sim::simulate::{
    parse_extensions, parse_mix, start, write_transcript, Generator, Options, ServerOptions, Style,
};

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
    /// 60 with --write alone). A server then says "all calls ended" once they have, and
    /// stays up, idle.
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
    /// Play the calls this many times faster than real time (without --fast): the PBX goes
    /// on at that pace whether a client reads or not.
    #[arg(long, default_value_t = 1.0, value_parser = parse_speed)]
    speed: f64,
    /// Also append a cdr_csv Master.csv row (with the Linkedid) to FILE for each CDR row,
    /// as Asterisk's cdr_csv does: what `[pbx.cdr] kind = "csv"` reads.
    #[arg(long, value_name = "FILE")]
    cdr: Option<PathBuf>,
    /// What kind of PBX: "freepbx" (PJSIP endpoints named by extension, FreePBX's dialplan)
    /// or "bare" (a plain Asterisk: chan_sip phones named by account, a `city` trunk, its
    /// own contexts, 9 before outside numbers).
    #[arg(long, default_value = "freepbx", value_parser = parse_style)]
    style: Style,
}

/// Runs `pbxlink simulate`.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let mut opts = Options {
        calls_per_second: args.calls_per_second,
        concurrency: args.concurrency,
        duration_secs: args.duration,
        seed: args.seed,
        extensions: parse_extensions(&args.extensions)?,
        style: args.style,
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
                speed: args.speed,
                write: write.clone(),
                monitor_dir: None,
                cdr: args.cdr,
            };
            let mut handle = start(*addr, opts, server).await?;
            eprintln!("simulated Asterisk AMI on {}", handle.local_addr());
            handle.wait().await;
            // An idle PBX, as after a working day: its clients keep their connections and
            // read the last events (ground truth written, for whoever compares), rather
            // than lose them to a process that exits under them.
            eprintln!("all calls ended");
            std::future::pending::<anyhow::Result<()>>().await
        }
    }
}

fn parse_style(s: &str) -> Result<Style, String> {
    Style::from_name(s).ok_or_else(|| format!("expected freepbx or bare, got '{s}'"))
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(speed) if speed.is_finite() && speed > 0.0 => Ok(speed),
        _ => Err(format!("expected a positive number, got '{s}'")),
    }
}
