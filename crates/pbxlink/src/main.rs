//! pbxlink: the gateway binary (config, CLI, AMI link, workers, HTTP API, web UI).

use clap::Parser;

mod ajam_client;
mod ami_cli;
mod ami_client;
mod api;
mod calls_cli;
mod cli;
mod config;
mod fastagi;
mod freepbx;
mod http_server;
mod outbox;
mod recordings;
mod release;
mod replay;
mod replay_server;
mod run;
mod simulate;
mod stream_clock;
mod tokens;

fn main() -> anyhow::Result<()> {
    // Logs go to stderr (stdout carries data: JSON lines, tables); `PBXLINK_LOG` or
    // `RUST_LOG` set the filter, `PBXLINK_LOG_FORMAT=json` gives structured logs.
    let filter = tracing_subscriber::EnvFilter::try_from_env("PBXLINK_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("PBXLINK_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    let cli = cli::Cli::parse();
    cli::run(cli)
}
