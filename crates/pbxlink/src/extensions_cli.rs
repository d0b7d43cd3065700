//! `pbxlink extension ...`: read and change an extension's DND and call forwarding, and pause
//! queue members, over AMI from the shell, with the HTTP API's checks and actions.
//!
//! Like the API, a command refuses bad input before sending anything that changes the PBX:
//! a malformed number or a forwarding loop before connecting at all; an extension the PBX
//! does not report (and `[extensions] known` does not list) after reading its hints and
//! queues. Unlike the API, a change made here is not published on `pbxlink run`'s live
//! stream (this is another process); device states it sets still reach BLF keys and presence.

use std::io::Write;

use ami::Action;
use anyhow::Context;
use calls::Presence;
use clap::{Args, Subcommand, ValueEnum};

use crate::config::Config;
use pbx::ami_client::AmiClient;
use pbx::extensions::{
    check_extension, check_known, check_reason, check_target, queue_interface, refused, Forwarding,
    PbxError, Setting, DND_ON,
};

#[derive(Debug, Args)]
pub struct ExtensionArgs {
    /// Name of the `[[pbx]]` in the config (default: the first one).
    #[arg(long, global = true)]
    pbx: Option<String>,
    /// Print the result as one JSON object, as the HTTP API answers it.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: ExtensionCommand,
}

#[derive(Debug, Subcommand)]
enum ExtensionCommand {
    /// Show DND and the three forwardings, as stored on the PBX.
    Show { extension: String },
    /// Turn do-not-disturb on or off.
    Dnd {
        extension: String,
        #[arg(value_enum)]
        state: OnOff,
    },
    /// Forward calls (`unconditional`, `busy`, `noanswer`) to NUMBER, or stop (`off`).
    Forward {
        extension: String,
        #[arg(value_parser = parse_kind)]
        kind: Setting,
        /// An extension or phone number (digits, optionally a leading +), or `off`.
        number: String,
    },
    /// Pause a queue member: MEMBER is its extension or its interface (`Local/201@from-queue/n`).
    Pause {
        queue: String,
        member: String,
        /// Why (queue_log and the queue events); at most 80 characters.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Unpause a queue member.
    Unpause { queue: String, member: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

fn parse_kind(kind: &str) -> Result<Setting, String> {
    Setting::forward(kind).ok_or_else(|| {
        let names: Vec<&str> = Setting::FORWARDS.iter().map(|(n, _)| *n).collect();
        format!("expected {}", names.join(", "))
    })
}

pub async fn run(config: &Config, args: ExtensionArgs) -> anyhow::Result<()> {
    execute(config, args, &mut std::io::stdout().lock()).await
}

/// Runs one command, printing its result to `out`.
pub async fn execute(
    config: &Config,
    args: ExtensionArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let plan = plan(&args.command)?;
    let pbx = config.pbx(args.pbx.as_deref())?;
    // The link's own notices (its shutdown) go to `_events`: kept open until the end.
    let (client, _events, _) = crate::ami_cli::connect(&pbx, false)
        .await
        .with_context(|| format!("cannot reach PBX {:?} at {}", pbx.name, pbx.address()))?;
    let done = on_pbx(config, &pbx.name, &client, plan).await;
    client.shutdown().await;
    let printed = match done? {
        Done::Forwarding(f) if args.json => serde_json::to_string(&f)?,
        Done::Forwarding(f) => describe(&pbx.name, &f),
        Done::Paused(p) if args.json => serde_json::to_string(&p)?,
        Done::Paused(p) => {
            let verb = if p.paused { "paused" } else { "unpaused" };
            let why = match p.reason.as_str() {
                "" => String::new(),
                reason => format!(" ({reason})"),
            };
            format!("{} {verb} in queue {}{why}", p.interface, p.queue)
        }
    };
    writeln!(out, "{printed}")?;
    Ok(())
}

/// A command with its input checked, before any connection.
enum Plan<'a> {
    /// Read an extension's settings, after storing `change` (setting, value or clear).
    Forwarding {
        extension: &'a str,
        change: Option<(Setting, Option<&'a str>)>,
    },
    Pause {
        queue: &'a str,
        member: &'a str,
        paused: bool,
        reason: &'a str,
    },
}

/// Checks what can be checked without the PBX.
fn plan(command: &ExtensionCommand) -> anyhow::Result<Plan<'_>> {
    fn forwarding<'a>(
        extension: &'a str,
        change: Option<(Setting, Option<&'a str>)>,
    ) -> Result<Plan<'a>, pbx::extensions::BadInput> {
        check_extension(extension)?;
        Ok(Plan::Forwarding { extension, change })
    }
    Ok(match command {
        ExtensionCommand::Show { extension } => forwarding(extension, None)?,
        ExtensionCommand::Dnd { extension, state } => {
            let value = matches!(state, OnOff::On).then_some(DND_ON);
            forwarding(extension, Some((Setting::Dnd, value)))?
        }
        ExtensionCommand::Forward {
            extension,
            kind,
            number,
        } => {
            let value = (number != "off").then_some(number.as_str());
            let plan = forwarding(extension, Some((*kind, value)))?;
            if let Some(to) = value {
                check_target(extension, to).map_err(anyhow::Error::msg)?;
            }
            plan
        }
        ExtensionCommand::Pause {
            queue,
            member,
            reason,
        } => {
            check_reason(reason)?;
            Plan::Pause {
                queue,
                member,
                paused: true,
                reason,
            }
        }
        ExtensionCommand::Unpause { queue, member } => Plan::Pause {
            queue,
            member,
            paused: false,
            reason: "",
        },
    })
}

enum Done {
    Forwarding(Forwarding),
    Paused(pbx::extensions::QueuePause),
}

async fn on_pbx(
    config: &Config,
    pbx: &str,
    client: &AmiClient,
    plan: Plan<'_>,
) -> anyhow::Result<Done> {
    match plan {
        Plan::Forwarding { extension, change } => {
            let listed = config.extensions.lists(extension);
            let reported = listed || reports(client, extension).await?;
            check_known(&config.extensions, reported, pbx, extension)?;
            let style = config.extensions.style;
            Ok(Done::Forwarding(match change {
                Some((setting, value)) => {
                    pbx::extensions::change(client, style, extension, setting, value).await?
                }
                None => pbx::extensions::read(client, extension).await?,
            }))
        }
        Plan::Pause {
            queue,
            member,
            paused,
            reason,
        } => {
            let mut presence = Presence::new();
            fold(client, &mut presence, Action::queue_status(Some(queue))).await?;
            let interface = queue_interface(&presence, pbx, queue, member)?;
            let done = pbx::extensions::queue_pause(client, pbx, queue, &interface, paused, reason)
                .await?;
            Ok(Done::Paused(done))
        }
    }
}

/// Whether the PBX reports `extension`: a hint (`ExtensionStateList`), else a queue
/// membership (`QueueStatus`), as `pbxlink run`'s presence would know it.
async fn reports(client: &AmiClient, extension: &str) -> Result<bool, PbxError> {
    let mut presence = Presence::new();
    fold(client, &mut presence, Action::extension_state_list()).await?;
    if presence.get(extension).is_none() {
        // Without app_queue Asterisk refuses QueueStatus: then nobody is a queue member.
        match fold(client, &mut presence, Action::queue_status(None)).await {
            Err(PbxError::Refused { .. }) => {}
            other => other?,
        }
    }
    Ok(presence.get(extension).is_some())
}

/// Folds the items of a presence listing into `presence`.
async fn fold(client: &AmiClient, presence: &mut Presence, action: Action) -> Result<(), PbxError> {
    let name = action.name().to_owned();
    let result = client.send(action).await?;
    if !result.is_success() {
        return Err(refused(&name, &result));
    }
    presence.resync(&result.items);
    Ok(())
}

/// The text form: one setting a line.
fn describe(pbx: &str, f: &Forwarding) -> String {
    let target = |t: &Option<String>| t.clone().unwrap_or_else(|| "off".to_owned());
    format!(
        "extension {} on PBX {pbx:?}\n\
         dnd            {}\n\
         unconditional  {}\n\
         busy           {}\n\
         noanswer       {}",
        f.extension,
        if f.dnd { "on" } else { "off" },
        target(&f.unconditional),
        target(&f.busy),
        target(&f.noanswer),
    )
}

#[cfg(test)]
mod tests;
