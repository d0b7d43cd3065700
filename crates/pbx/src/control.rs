//! Call control: what the HTTP API, the CLI and the Bitrix24 portal ask of the PBX about a
//! call — click-to-call, hangup, transfer, redirect — as AMI actions on the link, each input
//! checked before it reaches an AMI header line. One place, so every caller sends the same
//! actions and refuses the same input.
//!
//! A call's channels are asked of the PBX (`CoreShowChannels`, kept to the call's Linkedid)
//! at the moment of the request: channel names change with every masquerade and transfer, so
//! a copy kept by the caller could be stale by the time the action reaches Asterisk.

use crate::ami_client::{AmiClient, AmiError};

/// Where transfers and redirects dial, as FreePBX's own features do.
pub const DEFAULT_CONTEXT: &str = "from-internal";

/// Why a control request was not carried out. The kinds map to HTTP statuses at the edge.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The request itself is wrong (a destination that is not a number, ...).
    #[error("{0}")]
    BadInput(String),
    /// The call is not in the state the request needs (no channels left, nobody answered).
    #[error("{0}")]
    Conflict(String),
    /// The PBX answered the action with an error; the message says what it refused and why.
    #[error("{0}")]
    Refused(String),
    /// The link could not carry the action.
    #[error(transparent)]
    Link(#[from] AmiError),
}

/// One channel of a call, as `CoreShowChannels` lists it.
#[derive(Debug)]
pub struct Channel {
    pub name: String,
    pub uniqueid: String,
}

impl Channel {
    /// The endpoint the channel belongs to: `101` of `PJSIP/101-0000001a` or
    /// `Local/101@from-queue-00000005;1`.
    pub fn endpoint(&self) -> &str {
        let resource = self.name.split_once('/').map_or("", |(_, r)| r);
        match resource.split_once('@') {
            Some((exten, _)) => exten,
            None => resource.rsplit_once('-').map_or(resource, |(e, _)| e),
        }
    }
}

/// The call's channels on the PBX now.
async fn channels_of(client: &AmiClient, call_id: &str) -> Result<Vec<Channel>, ControlError> {
    let listed = client.send(ami::Action::core_show_channels()).await?;
    let channels = listed
        .items
        .iter()
        .filter(|item| item.get("Linkedid") == Some(call_id))
        .filter_map(|item| {
            Some(Channel {
                name: item.get("Channel")?.to_owned(),
                uniqueid: item.get("Uniqueid")?.to_owned(),
            })
        })
        .collect::<Vec<_>>();
    if channels.is_empty() {
        return Err(ControlError::Conflict(format!(
            "call {call_id:?} has no channels left on the PBX"
        )));
    }
    Ok(channels)
}

/// Where `extension`'s channel is among the call's.
fn leg_of(channels: &[Channel], extension: &str) -> Result<usize, ControlError> {
    channels
        .iter()
        .position(|c| c.endpoint() == extension)
        .ok_or_else(|| {
            ControlError::Conflict(format!("extension {extension:?} is not on this call"))
        })
}

/// Sends `action`; an error answer is [`ControlError::Refused`] with the PBX's reason.
async fn send(client: &AmiClient, action: ami::Action) -> Result<(), ControlError> {
    let result = client.send(action).await?;
    if result.is_success() {
        Ok(())
    } else {
        Err(ControlError::Refused(format!(
            "PBX refused: {}",
            result.message().unwrap_or("no reason given")
        )))
    }
}

/// Ends the call on every channel it has; returns them.
pub async fn hangup(client: &AmiClient, call_id: &str) -> Result<Vec<Channel>, ControlError> {
    let channels = channels_of(client, call_id).await?;
    for channel in &channels {
        send(client, ami::Action::hangup(&channel.name)).await?;
    }
    Ok(channels)
}

/// Blind: the other party goes straight to the target. Attended: the agent talks to it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    Blind,
    Attended,
}

impl TransferKind {
    /// What the action is called in answers and logs.
    pub fn action_name(self) -> &'static str {
        match self {
            TransferKind::Blind => "blind_transfer",
            TransferKind::Attended => "attended_transfer",
        }
    }
}

/// `transferer`'s channel in the call transfers its peer to `target`; returns that channel.
pub async fn transfer(
    client: &AmiClient,
    call_id: &str,
    transferer: &str,
    kind: TransferKind,
    target: &Target<'_>,
) -> Result<Channel, ControlError> {
    let Target { to, context } = *target;
    let mut channels = channels_of(client, call_id).await?;
    let at = leg_of(&channels, transferer)?;
    let leg = &channels[at];
    let action = match kind {
        TransferKind::Blind => ami::Action::blind_transfer(&leg.name, context, to),
        TransferKind::Attended => ami::Action::atxfer(&leg.name, context, to),
    };
    send(client, action).await?;
    Ok(channels.swap_remove(at))
}

/// Sends one channel of the call to `target` in the dialplan: `extension`'s, or by default
/// the caller's (the call's first channel, whose Uniqueid is the Linkedid); returns it.
pub async fn redirect(
    client: &AmiClient,
    call_id: &str,
    extension: Option<&str>,
    target: &Target<'_>,
) -> Result<Channel, ControlError> {
    let Target { to, context } = *target;
    let mut channels = channels_of(client, call_id).await?;
    let at = match extension {
        Some(ext) => leg_of(&channels, ext)?,
        None => channels
            .iter()
            .position(|c| c.uniqueid == call_id)
            .unwrap_or(0),
    };
    send(
        client,
        ami::Action::redirect(&channels[at].name, context, to, 1),
    )
    .await?;
    Ok(channels.swap_remove(at))
}

/// Where a transfer or redirect dials: an extension or number and its dialplan context, both
/// checked before either reaches an AMI header line. Made only by [`Target::checked`], so a
/// caller checks its input (and answers bad input) before it looks for the call.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    to: &'a str,
    context: &'a str,
}

impl<'a> Target<'a> {
    /// `to` in `context` (by default [`DEFAULT_CONTEXT`]), or why not.
    pub fn checked(to: &'a str, context: Option<&'a str>) -> Result<Self, ControlError> {
        let bad = ControlError::BadInput;
        if !is_dialable(to) {
            return Err(bad(format!("{to:?} is not an extension or number")));
        }
        let context = context.unwrap_or(DEFAULT_CONTEXT);
        let valid = !context.is_empty()
            && context.len() <= 79
            && context
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(bad(format!("{context:?} is not a dialplan context")));
        }
        Ok(Target { to, context })
    }
}

/// A fresh click-to-call id. The agent's channel gets it as Uniqueid (`ChannelId`), and as the
/// call's first channel it becomes the Linkedid: the call id is known before the PBX has done
/// anything.
pub fn new_click_to_call_id() -> String {
    format!("c2c-{}", hex::encode(rand::random::<[u8; 8]>()))
}

/// Click-to-call: rings `extension`, which then dials `number` in `from-internal` (as
/// FreePBX's own click-to-call); the call's id is `call_id` (see [`new_click_to_call_id`]).
pub async fn originate_click_to_call(
    client: &AmiClient,
    extension: &str,
    number: &str,
    caller_name: &str,
    call_id: &str,
    variables: Vec<(String, String)>,
) -> Result<(), ControlError> {
    let mut originate =
        ami::Originate::exten(&format!("PJSIP/{extension}"), "from-internal", number, 1);
    originate.caller_id = Some(format!("\"{caller_name}\" <{extension}>"));
    originate.variables = variables;
    let action = ami::Action::originate(originate).field("ChannelId", call_id);
    let result = client.send(action).await?;
    if !result.is_success() {
        return Err(ControlError::Refused(format!(
            "PBX refused the call: {}",
            result.message().unwrap_or("no reason given")
        )));
    }
    Ok(())
}

/// A caller ID name goes inside `"..." <ext>`: no quotes, angle brackets or control
/// characters, at most 80 characters.
pub fn check_caller_name(name: &str) -> Result<(), String> {
    if name.chars().count() > 80 || name.chars().any(|c| c.is_control() || "\"<>".contains(c)) {
        return Err(format!(
            "caller_name {name:?}: at most 80 characters, no quotes, <, > or control characters"
        ));
    }
    Ok(())
}

/// A channel variable as Originate's `Variable: name=value` carries it: an Asterisk variable
/// name (letters, digits, `_`; a leading `_`/`__` makes it inherited) and a value without
/// control characters or commas (Asterisk splits the header on commas).
pub fn check_variable(name: &str, value: &str) -> Result<(), String> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.bytes().any(|b| b != b'_');
    if !name_ok {
        return Err(format!(
            "variable {name:?}: a name is letters, digits and _ (at most 64)"
        ));
    }
    if value.len() > 1024 || value.chars().any(|c| c.is_control() || c == ',') {
        return Err(format!(
            "variable {name}: a value has at most 1024 bytes, no commas or control characters"
        ));
    }
    Ok(())
}

/// An extension or number as a dial string may carry it: digits, `*` and `#`.
pub fn is_dialable(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
}
