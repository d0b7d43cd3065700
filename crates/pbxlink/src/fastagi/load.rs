//! `pbxlink agi load`: plays Asterisk against any FastAGI server, many sessions at once,
//! to measure sessions/s and session latency (the bench/fastagi.sh driver).
//!
//! Two modes. Closed loop (no `--rate`): `--concurrency` sessions back to back, which finds
//! the server's top sessions/s, but its latency is just concurrency / throughput. Open loop
//! (`--rate`): sessions start on a fixed schedule whatever the server does (at most
//! `--concurrency` at once), and latency counts from the scheduled start, so a server that
//! stalls is charged for every session it held up (no coordinated omission). `--think-ms`
//! makes Asterisk take that long before each reply, so sessions overlap (1,000 connections
//! open at once at a modest rate); the time spent thinking is not counted as latency.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// An open-loop session not done this long after its scheduled start counts as an error.
const SESSION_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The FastAGI server.
    #[arg(long, default_value = "127.0.0.1:4573")]
    connect: SocketAddr,
    /// Script path sent in `agi_network_script`.
    #[arg(long, default_value = "route")]
    script: String,
    /// Sessions in flight at once (open loop: at most).
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Open loop: sessions started per second, on schedule.
    #[arg(long)]
    rate: Option<f64>,
    /// Milliseconds Asterisk waits before each reply (not counted as latency).
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
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

/// What every session shares: where to connect, what to send, what counts as served.
struct Plan {
    addr: SocketAddr,
    env: Vec<u8>,
    think: Duration,
    expected: Option<usize>,
    measure_from: Instant,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    tally: Mutex<Tally>,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: usize,
}

impl Plan {
    /// One session as Asterisk does it, from `begun` (its scheduled start): the
    /// environment, then `200 result=1` per command until the server closes; counted
    /// when it began after the warm-up.
    async fn session(&self, source: Option<IpAddr>, begun: Instant, buf: &mut [u8]) {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
        let outcome = self.exchange(source, buf).await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if begun < self.measure_from {
            return;
        }
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok((n, thought)) if self.expected.is_none_or(|e| e == n) => {
                let latency = begun.elapsed().saturating_sub(thought);
                let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
                tally.latencies_us.push(us);
            }
            _ => tally.errors += 1,
        }
    }

    /// Returns the number of commands and the time spent thinking.
    async fn exchange(
        &self,
        source: Option<IpAddr>,
        buf: &mut [u8],
    ) -> std::io::Result<(usize, Duration)> {
        let mut stream = match source {
            Some(ip) => {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(self.addr).await?
            }
            None => TcpStream::connect(self.addr).await?,
        };
        stream.set_nodelay(true)?;
        stream.write_all(&self.env).await?;
        let (mut commands, mut thought) = (0, Duration::ZERO);
        loop {
            let n = stream.read(buf).await?;
            if n == 0 {
                return Ok((commands, thought));
            }
            if !self.think.is_zero() {
                let before = Instant::now();
                tokio::time::sleep(self.think).await;
                thought += before.elapsed();
            }
            // Commands come one at a time (each waits for its reply), so a read holds whole
            // lines; replies to all of them go out in one write.
            let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
            commands += lines;
            stream.write_all(&b"200 result=1\n".repeat(lines)).await?;
        }
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

/// The source address for connection slot `slot`. The server closes AGI sessions, so its
/// side keeps TIME_WAIT for each one; at thousands of sessions/s one source address reuses
/// its ports within that time and a reused port's SYN is delayed by a second. Spreading
/// slots over 127.0.0.0/8 source addresses keeps every connection's address pair fresh.
fn source(connect: SocketAddr, slot: usize) -> Option<IpAddr> {
    let loopback_v4 = matches!(connect.ip(), IpAddr::V4(ip) if ip.is_loopback());
    loopback_v4.then(|| {
        let [_, _, hi, lo] = u32::try_from(2 + slot).unwrap_or(2).to_be_bytes();
        IpAddr::V4(Ipv4Addr::new(127, 1, hi, lo))
    })
}

/// `--concurrency` workers, each running sessions back to back until `end`.
async fn closed_loop(plan: &Arc<Plan>, concurrency: usize, end: Instant) -> anyhow::Result<()> {
    let workers: Vec<_> = (0..concurrency)
        .map(|slot| {
            let (plan, source) = (plan.clone(), source(plan.addr, slot));
            tokio::spawn(async move {
                let mut buf = vec![0; 4096];
                loop {
                    let begun = Instant::now();
                    if begun >= end {
                        return;
                    }
                    plan.session(source, begun, &mut buf).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.context("load worker failed")?;
    }
    Ok(())
}

/// Sessions started `rate` times a second from `start` until `end`, at most `concurrency`
/// at once. A plain thread keeps the schedule: tokio's timers tick in whole milliseconds,
/// which would add up to a millisecond to every session.
async fn open_loop(
    plan: &Arc<Plan>,
    args: &LoadArgs,
    rate: f64,
    start: Instant,
    end: Instant,
) -> anyhow::Result<()> {
    anyhow::ensure!(rate > 0.0, "--rate must be > 0");
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let runtime = tokio::runtime::Handle::current();
    let (plan, connect, concurrency) = (plan.clone(), args.connect, args.concurrency);
    let (start, end) = (start.into_std(), end.into_std());
    let pacer = std::thread::spawn(move || {
        let mut sessions = Vec::new();
        for i in 0u64.. {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            if due >= end {
                break;
            }
            std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
            let (plan, slots) = (plan.clone(), slots.clone());
            let source = source(connect, i as usize % concurrency);
            let begun = Instant::from_std(due);
            sessions.push(runtime.spawn(async move {
                let session = async {
                    let _slot = slots.acquire().await;
                    plan.session(source, begun, &mut [0; 4096]).await;
                };
                if tokio::time::timeout_at(begun + SESSION_LIMIT, session)
                    .await
                    .is_err()
                    && begun >= plan.measure_from
                {
                    plan.tally.lock().unwrap_or_else(|e| e.into_inner()).errors += 1;
                }
            }));
        }
        sessions
    });
    let sessions = tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the load pacer panicked"))?;
    for session in sessions {
        session.await.context("load session failed")?;
    }
    Ok(())
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be > 0");
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let plan = Arc::new(Plan {
        addr: args.connect,
        env: environment(args.connect, &args.script),
        think: Duration::from_millis(args.think_ms),
        expected: args.commands,
        measure_from,
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        tally: Mutex::default(),
    });
    match args.rate {
        None => closed_loop(&plan, args.concurrency, end).await?,
        Some(rate) => open_loop(&plan, &args, rate, start, end).await?,
    }
    let mut tally = std::mem::take(&mut *plan.tally.lock().unwrap_or_else(|e| e.into_inner()));
    let latencies = &mut tally.latencies_us;
    latencies.sort_unstable();
    let percentile = |p: f64| -> u32 {
        let i = ((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        latencies.get(i).copied().unwrap_or(0)
    };
    let seconds = args.duration;
    let line = serde_json::json!({
        "impl": args.label,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "rate": args.rate,
        "think_ms": args.think_ms,
        "concurrency": args.concurrency,
        "max_in_flight": plan.max_in_flight.load(Ordering::Relaxed),
        "sessions": latencies.len(),
        "errors": tally.errors,
        "seconds": seconds,
        "sessions_per_s": (latencies.len() as f64 / seconds).round(),
        "p50_us": percentile(0.50),
        "p99_us": percentile(0.99),
        "p999_us": percentile(0.999),
        "max_us": latencies.last().copied().unwrap_or(0),
    });
    println!("{line}");
    Ok(())
}
