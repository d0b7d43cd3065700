//! The CRM side of bench/crm_latency.sh: a webhook receiver that answers 204 at once and
//! measures, for every `call.ended`, how long after the call's last `Hangup` (the record's
//! `ended_at`, stamped by the gateway when it read that AMI event) the request arrived. Each
//! second it prints one line of JSON (requests and calls received in that second); on
//! Ctrl-C, or after `--idle` seconds with no request, a summary with latency percentiles.
//! `--status 400` answers that instead (a CRM refusing everything: the rows go dead).
//!
//! `cargo run --release -p pbxlink --example webhook_sink -- 127.0.0.1:PORT [--idle SECS]
//! [--status CODE]`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use chrono::{DateTime, Utc};

struct Seen {
    /// What every request is answered.
    status: StatusCode,
    requests: u64,
    calls: u64,
    /// Milliseconds from `ended_at` to arrival, one per `call.ended`.
    latencies_ms: Vec<f64>,
    last_request: Option<Instant>,
}

async fn receive(State(seen): State<Arc<Mutex<Seen>>>, body: String) -> StatusCode {
    let arrived = Utc::now();
    let ended_at = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .filter(|v| v["type"] == "call.ended")
        .and_then(|v| {
            v["data"]["call"]["ended_at"]
                .as_str()
                .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        });
    let mut seen = seen.lock().unwrap();
    seen.requests += 1;
    seen.last_request = Some(Instant::now());
    if let Some(ended_at) = ended_at {
        seen.calls += 1;
        let ms = (arrived - ended_at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
        seen.latencies_ms.push(ms);
    }
    seen.status
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || anyhow::anyhow!("usage: webhook_sink ADDR [--idle SECS] [--status CODE]");
    let addr: std::net::SocketAddr = args.first().ok_or_else(usage)?.parse()?;
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let idle = option("--idle")
        .map(|s| s.parse().map(Duration::from_secs_f64))
        .transpose()?;
    let status = option("--status")
        .map(|s| s.parse::<u16>())
        .transpose()?
        .map_or(Ok(StatusCode::NO_CONTENT), StatusCode::from_u16)?;
    let seen = Arc::new(Mutex::new(Seen {
        status,
        requests: 0,
        calls: 0,
        latencies_ms: Vec::new(),
        last_request: None,
    }));
    let app = axum::Router::new()
        .fallback(post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut prev_requests, mut prev_calls) = (0, 0);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let seen = seen.lock().unwrap();
        println!(
            "{{\"t\":{:.0},\"requests\":{},\"calls\":{}}}",
            started.elapsed().as_secs_f64(),
            seen.requests - prev_requests,
            seen.calls - prev_calls
        );
        (prev_requests, prev_calls) = (seen.requests, seen.calls);
        let quiet = seen
            .last_request
            .is_some_and(|at| idle.is_some_and(|i| at.elapsed() > i));
        if quiet {
            break;
        }
    }
    let mut seen = seen.lock().unwrap();
    seen.latencies_ms.sort_by(f64::total_cmp);
    let l = &seen.latencies_ms;
    println!(
        "{{\"summary\":true,\"requests\":{},\"calls\":{},\"p50_ms\":{:.1},\"p90_ms\":{:.1},\
         \"p99_ms\":{:.1},\"max_ms\":{:.1}}}",
        seen.requests,
        seen.calls,
        percentile(l, 50.0),
        percentile(l, 90.0),
        percentile(l, 99.0),
        l.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
