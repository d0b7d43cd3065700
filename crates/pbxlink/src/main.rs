//! pbxlink: the gateway binary (config, CLI, AMI link, workers, HTTP API, web UI).

use clap::Parser;

mod ajam_client;
mod ami_cli;
mod ami_client;
mod api;
mod calls_cli;
mod cli;
mod config;
mod replay;
mod replay_server;
mod stream_clock;
mod simulate;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    cli::run(cli)
}
