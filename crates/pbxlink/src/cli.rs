//! Command-line interface: one subcommand per job.

use clap::{Parser, Subcommand};

/// Asterisk/FreePBX to CRM gateway.
#[derive(Debug, Parser)]
#[command(name = "pbxlink", version, about)]
pub struct Cli {
    /// Config file (TOML); without one, built-in defaults apply.
    #[arg(long, global = true, env = "PBXLINK_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Log line format on stderr (default: `[log] format`, else text).
    #[arg(long, global = true, value_enum, env = "PBXLINK_LOG_FORMAT")]
    pub log_format: Option<crate::config::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// `[log]` of the config file, or the defaults when there is none or it does not load
    /// (the command itself then reports why).
    pub fn log_config(&self) -> crate::config::LogConfig {
        crate::config::Config::load_or_default(self.config.as_deref())
            .map(|c| c.log)
            .unwrap_or_default()
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode an AMI transcript and print each message as JSON (a codec check).
    Decode {
        /// Raw AMI transcript (wire format).
        file: std::path::PathBuf,
    },
    /// The call journal: list calls, show one call's story.
    Calls(crate::calls_cli::CallsArgs),
    /// Talk to Asterisk over AMI: ping, send an action, watch events, serve a recording.
    Ami(crate::ami_cli::AmiArgs),
    /// Extensions: show or set DND and call forwarding, pause queue members (over AMI).
    Extension(crate::extensions_cli::ExtensionArgs),
    /// Check the config file and print the effective settings (secrets hidden).
    Config,
    /// Write a commented config file with safe defaults (secrets as env-var references).
    Init(crate::config_check::InitArgs),
    /// Check a config file thoroughly (syntax, values, env secrets, TLS files, CRM settings);
    /// each problem is printed with file:line:col and the line. Exit status 1 if any.
    CheckConfig {
        /// The file (default: --config, else pbxlink.toml).
        path: Option<std::path::PathBuf>,
    },
    /// Run the call tracker over a recorded AMI stream; print one call record per line.
    Replay {
        /// Raw AMI transcript (*.rx.raw) or a JSON array of event objects.
        file: std::path::PathBuf,
        /// Also print the live call events (JSON lines with a "type" field), in order.
        #[arg(long)]
        events: bool,
        /// Track with this `[[pbx]]`'s `[pbx.tracker]` from --config (default: the first).
        #[arg(long)]
        pbx: Option<String>,
    },
    /// Run the gateway: track calls from the configured PBXes (or the built-in demo PBX),
    /// journal them, serve the API and web UI.
    Run(crate::run::RunArgs),
    /// A simulated Asterisk/FreePBX: generated call traffic over AMI, or written to a file.
    Simulate(crate::simulate_cli::SimulateArgs),
    /// FastAGI: serve CRM-driven routing scripts to Asterisk, or load-test a FastAGI server.
    Agi(crate::fastagi::cli::AgiArgs),
    /// Serve FreePBX module updates (what FreePBX's module admin updates from), over TLS.
    ReleaseServer(release::ServerArgs),
    /// FreePBX module releases: publish, list, yank, audit, check a server.
    Release(release::ReleaseArgs),
    /// FreePBX integration: generate (or check) the dialplan hooks and AMI user, build the module.
    Freepbx(release::freepbx::FreepbxArgs),
    /// CRM connectors: check one's connectivity and credentials (`crm test NAME`).
    Crm(crate::outbox_cli::CrmArgs),
    /// CRM outbox: list deliveries (pending, dead, delivered), retry dead ones, purge old ones.
    Outbox(crate::outbox_cli::OutboxArgs),
    /// API tokens: create (scoped read/control/admin), list, revoke.
    Token(crate::tokens::TokenArgs),
    /// Recordings: convert a MixMonitor WAV to MP3 as the recordings worker does (and how fast).
    Recording(crate::recordings_cli::RecordingArgs),
    /// Web UI users (password sign-in): add, list, remove.
    User(crate::users::UserArgs),
}

/// Runs the command, on the process's one tokio runtime.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Decode { file } => {
            use std::io::Write as _;
            let mut buf = bytes::BytesMut::from(&std::fs::read(&file)?[..]);
            let mut dec = ami::Decoder::new();
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            while let Some(frame) = dec.decode(&mut buf)? {
                if let ami::Frame::Message(m) = frame {
                    writeln!(out, "{}", m.to_json())?;
                }
            }
            out.flush()?;
            Ok(())
        }
        Command::Replay { file, events, pbx } => {
            let config = crate::config::Config::load_or_default(cli.config.as_deref())?;
            let tracker = config.pbx(pbx.as_deref())?.tracker.tracker_config();
            sim::replay::run(&file, tracker, events)
        }
        Command::Simulate(args) => crate::simulate_cli::run(args).await,
        Command::Agi(args) => {
            let config = crate::config::Config::load_or_default(cli.config.as_deref())?;
            crate::fastagi::cli::run(&config, args).await
        }
        Command::ReleaseServer(args) => {
            let config = crate::config::Config::load_or_default(cli.config.as_deref())?;
            release::serve(config.release_settings(), args).await
        }
        Command::Release(args) => {
            let config = crate::config::Config::load_or_default(cli.config.as_deref())?;
            release::run(config.release_settings(), args).await
        }
        Command::Freepbx(args) => {
            let config = crate::config::Config::load_or_default(cli.config.as_deref())?;
            release::freepbx::run(config.release_settings(), args).await
        }
        Command::Crm(args) => {
            let config = crate::config::Config::load_or_default(cli.config.as_deref())?;
            crate::outbox_cli::run(&config, args).await
        }
        Command::Outbox(args) => {
            let config = crate::config::Config::load_or_default(cli.config.as_deref())?;
            crate::outbox_cli::run_outbox(&config, args).await
        }
        Command::Run(args) => {
            let config = crate::config::Config::load_or_default(cli.config.as_deref())?;
            crate::run::run(config, args).await
        }
        Command::Ami(args) => crate::ami_cli::run(cli.config.as_deref(), args).await,
        Command::Extension(args) => {
            let config = crate::config::Config::load_or_default(cli.config.as_deref())?;
            crate::extensions_cli::run(&config, args).await
        }
        Command::Init(args) => crate::config_check::init(&args),
        Command::CheckConfig { path } => {
            let path = path
                .or(cli.config)
                .unwrap_or_else(|| crate::config_check::DEFAULT_PATH.into());
            if !crate::config_check::check_config(&path)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Config => {
            let config = crate::config::Config::load_or_default(cli.config.as_deref())?;
            print!("{}", config.summary());
            Ok(())
        }
        Command::Recording(args) => crate::recordings_cli::command(&args),
        Command::Token(args) => {
            let config = crate::config::Config::load_or_default(cli.config.as_deref())?;
            crate::tokens::run(&config, args).await
        }
        Command::User(args) => {
            let config = crate::config::Config::load_or_default(cli.config.as_deref())?;
            crate::users::run(&config, args).await
        }
        Command::Calls(args) => {
            let config = crate::config::Config::load_or_default(cli.config.as_deref())?;
            crate::calls_cli::run(&config, args).await
        }
    }
}
