//! The subscriber side of bench/api.sh: opens N Server-Sent-Events streams on a running
//! gateway's `/api/v1/events` and measures, for every event every subscriber receives, how long
//! after the event (its `at`, stamped when the gateway read the AMI event behind it) it
//! arrived. Prints one JSON summary: subscribers, events delivered, deliveries/s and the
//! delivery latency percentiles over all subscribers.
//!
//! `cargo run --release -p pbxlink --example sse_fanout -- BASE_URL TOKEN SUBSCRIBERS SECONDS`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// Milliseconds from each event's `at` to its arrival, in the `data:` lines of `text`.
fn latencies(text: &str, arrived: DateTime<Utc>, out: &mut Vec<f64>) {
    for data in text.lines().filter_map(|l| l.strip_prefix("data:")) {
        let at = serde_json::from_str::<serde_json::Value>(data.trim())
            .ok()
            .and_then(|v| {
                v["at"]
                    .as_str()
                    .and_then(|t| t.parse::<DateTime<Utc>>().ok())
            });
        if let Some(at) = at {
            out.push((arrived - at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
        }
    }
}

async fn subscribe(url: String, token: String, until: Instant, all: Arc<Mutex<Vec<f64>>>) -> bool {
    let client = reqwest::Client::new();
    let Ok(mut response) = client.get(&url).bearer_auth(&token).send().await else {
        return false;
    };
    if !response.status().is_success() {
        return false;
    }
    let mut mine = Vec::new();
    // An event may span chunks: keep the unfinished tail until its blank line arrives.
    let mut pending = String::new();
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout(
        until.saturating_duration_since(Instant::now()),
        response.chunk(),
    )
    .await
    {
        let arrived = Utc::now();
        pending.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(end) = pending.rfind("\n\n") {
            latencies(&pending[..end], arrived, &mut mine);
            pending.drain(..end + 2);
        }
    }
    all.lock().unwrap().extend(mine);
    true
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, token, subscribers, seconds] = &args[..] else {
        anyhow::bail!("usage: sse_fanout BASE_URL TOKEN SUBSCRIBERS SECONDS");
    };
    let subscribers: usize = subscribers.parse()?;
    let seconds: f64 = seconds.parse()?;
    let url = format!("{}/api/v1/events", base.trim_end_matches('/'));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let all = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..subscribers)
        .map(|_| tokio::spawn(subscribe(url.clone(), token.clone(), until, all.clone())))
        .collect();
    let mut connected = 0;
    for task in tasks {
        connected += usize::from(task.await?);
    }
    let mut all = all.lock().unwrap();
    all.sort_by(f64::total_cmp);
    println!(
        "{{\"subscribers\":{subscribers},\"connected\":{connected},\"deliveries\":{},\
         \"deliveries_per_s\":{:.0},\"p50_ms\":{:.1},\"p99_ms\":{:.1},\"max_ms\":{:.1}}}",
        all.len(),
        all.len() as f64 / seconds,
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        all.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
