//! `pbxlink agi load`: plays Asterisk against any FastAGI server, many sessions at once,
//! to measure sessions/s and session latency (the bench/fastagi.sh driver).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The FastAGI server.
    #[arg(long, default_value = "127.0.0.1:4573")]
    connect: SocketAddr,
    /// Script path sent in `agi_network_script`.
    #[arg(long, default_value = "route")]
    script: String,
    /// Sessions in flight at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Seconds to run (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of sessions before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Commands a session must carry to count as served.
    #[arg(long)]
    commands: Option<usize>,
    /// Name of the server in the output.
    #[arg(long, default_value = "pbxlink")]
    label: String,
}

/// One session as Asterisk does it: the environment, then `200 result=1` per command until
/// the server closes. Returns the number of commands.
async fn session(
    addr: SocketAddr,
    source: Option<IpAddr>,
    env: &[u8],
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut stream = match source {
        Some(ip) => {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        }
        None => TcpStream::connect(addr).await?,
    };
    stream.set_nodelay(true)?;
    stream.write_all(env).await?;
    let mut commands = 0;
    loop {
        let n = stream.read(buf).await?;
        if n == 0 {
            return Ok(commands);
        }
        // Commands come one at a time (each waits for its reply), so a read holds whole
        // lines; replies to all of them go out in one write.
        let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
        commands += lines;
        stream.write_all(&b"200 result=1\n".repeat(lines)).await?;
    }
}

fn environment(addr: SocketAddr, script: &str) -> Vec<u8> {
    format!(
        "agi_network: yes\nagi_network_script: {script}\nagi_request: agi://{addr}/{script}\n\
         agi_channel: PJSIP/trunk-00000001\nagi_language: en\nagi_type: PJSIP\n\
         agi_uniqueid: 1795354640.49\nagi_version: 22.10.1\nagi_callerid: 15551234567\n\
         agi_calleridname: Jane Caller\nagi_callingpres: 0\nagi_callingani2: 0\n\
         agi_callington: 0\nagi_callingtns: 0\nagi_dnid: 15550001000\nagi_rdnis: unknown\n\
         agi_context: from-pstn\nagi_extension: 15550001000\nagi_priority: 3\n\
         agi_enhanced: 0.0\nagi_accountcode: \nagi_threadid: 139661721589440\n\n"
    )
    .into_bytes()
}

struct WorkerResult {
    latencies_us: Vec<u32>,
    errors: usize,
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let env = std::sync::Arc::new(environment(args.connect, &args.script));
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|worker| {
            // The server closes AGI sessions, so its side keeps TIME_WAIT for each one; at
            // thousands of sessions/s one source address reuses its ports within that time
            // and a reused port's SYN is delayed by a second. Spreading workers over
            // 127.0.0.0/8 source addresses keeps every connection's address pair fresh.
            let loopback_v4 = matches!(args.connect.ip(), IpAddr::V4(ip) if ip.is_loopback());
            let source = loopback_v4.then(|| {
                let [_, _, hi, lo] = u32::try_from(2 + worker).unwrap_or(2).to_be_bytes();
                IpAddr::V4(Ipv4Addr::new(127, 1, hi, lo))
            });
            let env = env.clone();
            let expected = args.commands;
            let addr = args.connect;
            tokio::spawn(async move {
                let mut result = WorkerResult {
                    latencies_us: Vec::new(),
                    errors: 0,
                };
                let mut buf = vec![0; 4096];
                loop {
                    let begun = Instant::now();
                    if begun >= end {
                        return result;
                    }
                    let outcome = session(addr, source, &env, &mut buf).await;
                    if begun < measure_from {
                        continue;
                    }
                    match outcome {
                        Ok(n) if expected.is_none_or(|e| e == n) => result
                            .latencies_us
                            .push(u32::try_from(begun.elapsed().as_micros()).unwrap_or(u32::MAX)),
                        _ => result.errors += 1,
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let r = worker.await.context("load worker failed")?;
        latencies.extend(r.latencies_us);
        errors += r.errors;
    }
    latencies.sort_unstable();
    let percentile = |p: f64| -> u32 {
        let i = ((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        latencies.get(i).copied().unwrap_or(0)
    };
    let seconds = args.duration;
    let line = serde_json::json!({
        "impl": args.label,
        "concurrency": args.concurrency,
        "sessions": latencies.len(),
        "errors": errors,
        "seconds": seconds,
        "sessions_per_s": (latencies.len() as f64 / seconds).round(),
        "p50_us": percentile(0.50),
        "p99_us": percentile(0.99),
        "max_us": latencies.last().copied().unwrap_or(0),
    });
    println!("{line}");
    Ok(())
}
