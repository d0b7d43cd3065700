//! pbxlink: the gateway binary (config, CLI, AMI link, workers, HTTP API, web UI).

use clap::Parser;

mod ami_cli;
mod api;
mod calls_cli;
mod cli;
mod cluster;
mod config;
mod config_check;
#[cfg(test)]
mod delivery_tests;
mod extensions_cli;
mod fastagi;
mod live;
mod outbox_cli;
mod portal;
mod recordings;
mod recordings_cli;
mod run;
mod simulate_cli;
mod tokens;
mod tracking;
mod users;

fn main() -> anyhow::Result<()> {
    // An error a user made (a bad config, a file that exists) is reported without a
    // backtrace even where RUST_BACKTRACE is set for panics; RUST_LIB_BACKTRACE=1 asks for one.
    // Set before any thread starts.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let cli = cli::Cli::parse();
    init_logs(&cli);
    // One runtime for every command: a command is async where it does I/O, and nothing
    // below `main` makes a runtime of its own.
    let runtime = tokio::runtime::Runtime::new()?;
    match runtime.block_on(cli::run(cli)) {
        // The reader went away (`pbxlink decode FILE | head`): not a failure.
        Err(e) if stdout_closed(&e) => Ok(()),
        done => done,
    }
}

fn stdout_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Logs go to stderr (stdout carries data: JSON lines, tables). Format: `--log-format` (or
/// `PBXLINK_LOG_FORMAT`), else `[log] format`; filter: `PBXLINK_LOG`, else `RUST_LOG`, else
/// `[log] level`, else `info`.
fn init_logs(cli: &cli::Cli) {
    use config::LogFormat;
    let configured = cli.log_config();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PBXLINK_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .ok()
        .or_else(|| {
            configured
                .level
                .and_then(|l| tracing_subscriber::EnvFilter::try_new(l).ok())
        })
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let format = cli.log_format.unwrap_or(configured.format);
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
}
