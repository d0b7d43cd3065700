//! `pbxlink crm test NAME`: checks a configured CRM's connectivity and credentials.

use anyhow::Context as _;

use super::Crm;
use crate::config::Config;

/// `pbxlink crm ...`.
#[derive(Debug, clap::Args)]
pub struct CrmArgs {
    #[command(subcommand)]
    command: CrmCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CrmCommand {
    /// Send one harmless request to the `[[crm]]` named NAME and report what it answered.
    Test {
        /// The connector's `name` in the config file.
        name: String,
    },
}

/// Runs a `pbxlink crm` command.
pub fn run(config: &Config, args: CrmArgs) -> anyhow::Result<()> {
    let CrmCommand::Test { name } = args.command;
    let known: Vec<&str> = config.crm.iter().map(|c| c.name()).collect();
    let section = config
        .crm
        .iter()
        .find(|c| c.name() == name)
        .with_context(|| format!("no [[crm]] named {name:?} (configured: {known:?})"))?;
    let crm = Crm::from_config(section)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()?;
    match runtime.block_on(crm.test(&http)) {
        Ok(outcome) => {
            println!("{name}: ok: {outcome}");
            Ok(())
        }
        Err(error) => anyhow::bail!("{name}: {error}"),
    }
}
