//! Do-not-disturb and call forwarding per extension, kept in the PBX's AstDB where FreePBX
//! keeps them (`DND/<ext>` = `YES`; `CF/<ext>` unconditional, `CFB/<ext>` on busy,
//! `CFU/<ext>` on no answer = the number), read and changed with AMI `DBGet`/`DBPut`/`DBDel`.
//!
//! FreePBX style also sets the device states FreePBX's own modules set (`Custom:DND<ext>`,
//! `Custom:DEVDND<device>` BUSY/UNAVAILABLE; `Custom:CF<ext>`, `Custom:DEVCF<device>`
//! BUSY/NOT_INUSE for unconditional forwarding), so BLF keys and the `*76<ext>`-style hints
//! follow a change made here exactly as one made from the phone or the admin UI. The devices
//! are FreePBX's `AMPUSER/<ext>/device`. Asterisk style changes the AstDB keys only; the
//! dialplan reads them (README, "Forwarding, DND and presence").
//!
//! Every input is checked before anything is sent, so bad input changes nothing. The HTTP
//! API (`api/extensions.rs`) and `pbxlink extension` ([`cli`]) share these checks and actions.

use ami::Action;
use calls::Presence;
use serde::{Deserialize, Serialize};

use crate::ami_client::{AmiClient, AmiError};

/// `[extensions]` of the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionsConfig {
    /// How forwarding and DND are stored.
    #[serde(default)]
    pub style: Style,
    /// Extensions the API accepts besides those the PBX reports hints or queue memberships
    /// for: `"201"` or ranges `"200-299"` (for a bare Asterisk without hints).
    #[serde(default)]
    pub known: Vec<String>,
}

impl ExtensionsConfig {
    /// Whether `extension` is listed in `known`.
    pub fn lists(&self, extension: &str) -> bool {
        let Ok(n) = extension.parse::<u64>() else {
            return false;
        };
        self.known.iter().any(|k| match k.split_once('-') {
            Some((lo, hi)) => {
                // Same width on both ends: `200-299` must not take `2000`.
                lo.len() == extension.len()
                    && lo.parse::<u64>().is_ok_and(|lo| lo <= n)
                    && hi.parse::<u64>().is_ok_and(|hi| n <= hi)
            }
            None => k == extension,
        })
    }
}

/// FreePBX (AstDB + FreePBX's device states) or bare Asterisk (AstDB only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    #[default]
    Freepbx,
    Asterisk,
}

/// What `DND/<ext>` holds while do-not-disturb is on (FreePBX's value).
pub const DND_ON: &str = "YES";

/// One per-extension setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Dnd,
    Unconditional,
    Busy,
    NoAnswer,
}

impl Setting {
    /// The forwarding kinds as the API names them.
    pub const FORWARDS: [(&'static str, Setting); 3] = [
        ("unconditional", Setting::Unconditional),
        ("busy", Setting::Busy),
        ("noanswer", Setting::NoAnswer),
    ];

    /// `unconditional`, `busy` or `noanswer`.
    pub fn forward(kind: &str) -> Option<Setting> {
        Self::FORWARDS
            .iter()
            .find(|(name, _)| *name == kind)
            .map(|&(_, s)| s)
    }

    /// The AstDB family (FreePBX's names).
    pub fn family(self) -> &'static str {
        match self {
            Setting::Dnd => "DND",
            Setting::Unconditional => "CF",
            Setting::Busy => "CFB",
            Setting::NoAnswer => "CFU",
        }
    }

    /// FreePBX's custom device-state prefix and the states for on and off (DND and
    /// unconditional forwarding light BLF keys; the others do not).
    fn device_state(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Setting::Dnd => Some(("DND", "BUSY", "UNAVAILABLE")),
            Setting::Unconditional => Some(("CF", "BUSY", "NOT_INUSE")),
            Setting::Busy | Setting::NoAnswer => None,
        }
    }
}

/// An extension's DND and forwarding, as stored on the PBX.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarding {
    pub extension: String,
    pub dnd: bool,
    /// Where every call goes (`CF`).
    pub unconditional: Option<String>,
    /// Where calls go when the extension is busy (`CFB`).
    pub busy: Option<String>,
    /// Where calls go when it does not answer (`CFU`).
    pub noanswer: Option<String>,
}

/// Checks a forwarding target: an extension or a phone number, digits with an optional
/// leading `+`, not the extension itself. The error is the message for the client.
pub fn check_target(extension: &str, to: &str) -> Result<(), String> {
    let digits = to.strip_prefix('+').unwrap_or(to);
    if digits.is_empty() || digits.len() > 32 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{to:?} is not an extension or phone number (digits, optionally a leading +)"
        ));
    }
    if digits == extension {
        return Err(format!(
            "extension {extension} cannot forward to itself: every call would loop"
        ));
    }
    Ok(())
}

/// Whether `s` can be an extension number (checked before it is looked up anywhere).
pub fn is_extension(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Input refused before the PBX hears of it; the message is for the client.
#[derive(Debug, thiserror::Error)]
pub enum BadInput {
    #[error("{0:?} is not an extension number")]
    Malformed(String),
    #[error("no extension {extension} on PBX {pbx:?}")]
    Unknown { extension: String, pbx: String },
    #[error("no member {member:?} in queue {queue:?} on PBX {pbx:?}")]
    NotMember {
        member: String,
        queue: String,
        pbx: String,
    },
    #[error("reason: at most 80 characters, no control characters")]
    Reason,
}

/// Checks the form of an extension number.
pub fn check_extension(extension: &str) -> Result<(), BadInput> {
    match is_extension(extension) {
        true => Ok(()),
        false => Err(BadInput::Malformed(extension.to_owned())),
    }
}

/// Checks that `extension` is one of `pbx`'s: `reported` by the PBX (a hint or a queue
/// membership) or listed in `[extensions] known`.
pub fn check_known(
    config: &ExtensionsConfig,
    reported: bool,
    pbx: &str,
    extension: &str,
) -> Result<(), BadInput> {
    match reported || config.lists(extension) {
        true => Ok(()),
        false => Err(BadInput::Unknown {
            extension: extension.to_owned(),
            pbx: pbx.to_owned(),
        }),
    }
}

/// Checks a queue pause reason (it goes into `queue_log` and the queue events).
pub fn check_reason(reason: &str) -> Result<(), BadInput> {
    match reason.len() > 80 || reason.chars().any(char::is_control) {
        true => Err(BadInput::Reason),
        false => Ok(()),
    }
}

/// The interface of `member` (an extension or the interface itself) in `queue`, as the
/// PBX reported it: only a reported membership, so the interface is exactly Asterisk's.
pub fn queue_interface(
    presence: &Presence,
    pbx: &str,
    queue: &str,
    member: &str,
) -> Result<String, BadInput> {
    presence
        .extensions()
        .flat_map(|s| s.queues.iter().map(move |m| (s, m)))
        .find(|(s, m)| m.queue == queue && (s.extension == member || m.interface == member))
        .map(|(_, m)| m.interface.clone())
        .ok_or_else(|| BadInput::NotMember {
            member: member.to_owned(),
            queue: queue.to_owned(),
            pbx: pbx.to_owned(),
        })
}

/// The actions that store `value` (`None`: clear) for `setting`, in order: the AstDB key,
/// then (FreePBX style) the device states FreePBX sets, for the extension and each of its
/// `devices`.
pub fn plan(
    style: Style,
    extension: &str,
    setting: Setting,
    value: Option<&str>,
    devices: &[String],
) -> Vec<Action> {
    let family = setting.family();
    let mut actions = vec![match value {
        Some(v) => Action::db_put(family, extension, v),
        None => Action::db_del(family, extension),
    }];
    if let (Style::Freepbx, Some((prefix, on, off))) = (style, setting.device_state()) {
        let state = if value.is_some() { on } else { off };
        let device_state = |custom: String| {
            Action::new("Setvar")
                .field("Variable", &format!("DEVICE_STATE(Custom:{custom})"))
                .field("Value", state)
        };
        actions.extend(
            devices
                .iter()
                .map(|d| device_state(format!("DEV{prefix}{d}"))),
        );
        actions.push(device_state(format!("{prefix}{extension}")));
    }
    actions
}

/// Why a read or a change did not go through.
#[derive(Debug, thiserror::Error)]
pub enum PbxError {
    #[error(transparent)]
    Ami(#[from] AmiError),
    #[error("PBX refused {action}: {message}")]
    Refused { action: String, message: String },
}

/// Reads an extension's DND and forwarding (four `DBGet`s).
pub async fn read(client: &AmiClient, extension: &str) -> Result<Forwarding, PbxError> {
    let get = |setting: Setting| db_get(client, setting.family(), extension);
    Ok(Forwarding {
        extension: extension.to_owned(),
        dnd: get(Setting::Dnd).await?.is_some_and(|v| !v.is_empty()),
        unconditional: get(Setting::Unconditional).await?,
        busy: get(Setting::Busy).await?,
        noanswer: get(Setting::NoAnswer).await?,
    })
}

/// Stores `value` (`None`: clears) for `setting` and reads the result back. The input must
/// have been checked ([`check_target`], a known extension).
pub async fn change(
    client: &AmiClient,
    style: Style,
    extension: &str,
    setting: Setting,
    value: Option<&str>,
) -> Result<Forwarding, PbxError> {
    let devices = match (style, setting.device_state()) {
        (Style::Freepbx, Some(_)) => db_get(client, "AMPUSER", &format!("{extension}/device"))
            .await?
            .map(|d| {
                d.split('&')
                    .filter(|d| !d.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    for action in plan(style, extension, setting, value, &devices) {
        let name = action.name().to_owned();
        let result = client.send(action).await?;
        // Clearing what is not set is done already.
        let cleared_already = name == "DBDel" && not_found(&result);
        if !result.is_success() && !cleared_already {
            return Err(refused(&name, &result));
        }
    }
    read(client, extension).await
}

/// A queue member paused or unpaused (fields in the order the API has always sent them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuePause {
    pub interface: String,
    pub paused: bool,
    pub pbx: String,
    pub queue: String,
    pub reason: String,
}

/// Pauses (or unpauses) `interface` in `queue`; the input must have been checked
/// ([`check_reason`], [`queue_interface`]).
pub async fn queue_pause(
    client: &AmiClient,
    pbx: &str,
    queue: &str,
    interface: &str,
    paused: bool,
    reason: &str,
) -> Result<QueuePause, PbxError> {
    let result = client
        .send(Action::queue_pause(Some(queue), interface, paused, reason))
        .await?;
    if !result.is_success() {
        return Err(refused("QueuePause", &result));
    }
    Ok(QueuePause {
        interface: interface.to_owned(),
        paused,
        pbx: pbx.to_owned(),
        queue: queue.to_owned(),
        reason: reason.to_owned(),
    })
}

/// One AstDB value; `None` when the key is not there.
async fn db_get(client: &AmiClient, family: &str, key: &str) -> Result<Option<String>, PbxError> {
    let result = client.send(Action::db_get(family, key)).await?;
    if !result.is_success() {
        return match not_found(&result) {
            true => Ok(None),
            false => Err(refused("DBGet", &result)),
        };
    }
    Ok(result
        .items
        .iter()
        .find_map(|item| item.get("Val"))
        .map(str::to_owned))
}

/// The error for an action the PBX answered with `Response: Error`.
pub fn refused(action: &str, result: &ami::ActionResult) -> PbxError {
    PbxError::Refused {
        action: action.to_owned(),
        message: result.message().unwrap_or("no reason given").to_owned(),
    }
}

/// Asterisk's answer to DBGet/DBDel of a key that is not there.
fn not_found(result: &ami::ActionResult) -> bool {
    result.message() == Some("Database entry not found")
}

#[cfg(test)]
mod tests;
