//! pbxlink: the gateway binary (config, CLI, AMI link, workers, HTTP API, web UI).

use clap::Parser;

mod api;
mod calls_cli;
mod cli;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    cli::run(cli)
}
