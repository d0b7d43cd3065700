//! Presence: what each extension is doing (idle, ringing, in use...), its devices, and its
//! queue memberships with the paused flag, folded from AMI events (sans-IO).
//!
//! Sources, as Asterisk sends them: `ExtensionStatus` (a hint changed; also the items of an
//! `ExtensionStateList`), `DeviceStateChange` (one device of a hint: `PJSIP/201`,
//! `Custom:DND201`), and the queue member events (`QueueMemberStatus`, `QueueMemberPause`,
//! `QueueMemberAdded`/`Removed`, `QueueMember` list items). [`Presence::handle`] returns the
//! extensions whose state changed, so the consumer publishes a change only when there is one.
//!
//! An extension is known once the PBX reports its hint or a queue membership; devices are
//! kept only when a known hint names them, so memory is bounded by the PBX's own hints
//! (every `Local/...` channel also gets `DeviceStateChange` events; those are not kept).

use std::collections::BTreeMap;

use ami::Message;
use serde::{Deserialize, Serialize};

/// The state of an extension's hint (`ast_extension_states`: `Status:` of `ExtensionStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HintState {
    Idle,
    InUse,
    Busy,
    Unavailable,
    Ringing,
    InUseRinging,
    OnHold,
    InUseOnHold,
    /// The hint was removed or deactivated (-1/-2), or a number this list does not know.
    Unknown,
}

impl HintState {
    /// From `Status:` (a bitmask: 1 in use, 2 busy, 4 unavailable, 8 ringing, 16 on hold).
    pub fn from_status(status: &str) -> HintState {
        match status.trim().parse::<i32>() {
            Ok(0) => HintState::Idle,
            Ok(1) => HintState::InUse,
            Ok(2) => HintState::Busy,
            Ok(4) => HintState::Unavailable,
            Ok(8) => HintState::Ringing,
            Ok(9) => HintState::InUseRinging,
            Ok(16) => HintState::OnHold,
            Ok(17) => HintState::InUseOnHold,
            _ => HintState::Unknown,
        }
    }
}

/// One queue the extension is a member of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMembership {
    /// Queue number (`600`).
    pub queue: String,
    /// Member interface, as `QueuePause` takes it (`Local/201@from-queue/n`).
    pub interface: String,
    /// `MemberName`.
    pub name: String,
    /// Paused in this queue.
    pub paused: bool,
    /// Why (`PausedReason`), empty when none was given.
    pub paused_reason: String,
    /// On a queue call now (`InCall: 1`).
    pub in_call: bool,
}

/// What one extension is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionState {
    /// The extension (`Exten` of its hint).
    pub extension: String,
    /// The hint's context (`ext-local` on FreePBX); empty when only a queue names it.
    pub context: String,
    /// The hint (`PJSIP/201&Custom:DND201`); empty when only a queue names it.
    pub hint: String,
    /// The hint's state; `unknown` until the PBX reports it.
    pub state: HintState,
    /// The last reported state of each device of the hint (`PJSIP/201` -> `INUSE`), as
    /// Asterisk names it (`NOT_INUSE`, `INUSE`, `BUSY`, `UNAVAILABLE`, `RINGING`, `ONHOLD`...).
    pub devices: BTreeMap<String, String>,
    /// Queue memberships, by queue.
    pub queues: Vec<QueueMembership>,
}

impl ExtensionState {
    fn new(extension: &str) -> Self {
        ExtensionState {
            extension: extension.to_owned(),
            context: String::new(),
            hint: String::new(),
            state: HintState::Unknown,
            devices: BTreeMap::new(),
            queues: Vec::new(),
        }
    }
}

/// Every known extension's state.
#[derive(Debug, Clone, Default)]
pub struct Presence {
    extensions: BTreeMap<String, ExtensionState>,
}

impl Presence {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every known extension, by number.
    pub fn extensions(&self) -> impl Iterator<Item = &ExtensionState> {
        self.extensions.values()
    }

    /// One extension's state.
    pub fn get(&self, extension: &str) -> Option<&ExtensionState> {
        self.extensions.get(extension)
    }

    /// Folds in one AMI event (or list item); returns the extensions it changed, in their
    /// new state. Any other message changes nothing.
    pub fn handle(&mut self, msg: &Message) -> Vec<ExtensionState> {
        let changed = match source(msg) {
            Some(Source::Hint) => self.on_extension_status(msg),
            Some(Source::Device) => self.on_device_state(msg),
            Some(Source::Member) => self.on_queue_member(msg),
            Some(Source::MemberRemoved) => self.on_queue_member_removed(msg),
            None => Vec::new(),
        };
        changed
            .into_iter()
            .filter_map(|e| self.extensions.get(&e).cloned())
            .collect()
    }

    /// Folds in an `ExtensionStateList` result: every item as an `ExtensionStatus`. Hints
    /// no longer listed keep their last state (a reload may drop and re-add them).
    pub fn resync<'a>(
        &mut self,
        items: impl IntoIterator<Item = &'a Message>,
    ) -> Vec<ExtensionState> {
        items.into_iter().flat_map(|m| self.handle(m)).collect()
    }

    fn on_extension_status(&mut self, msg: &Message) -> Vec<String> {
        let Some(exten) = msg.get("Exten").filter(|e| !e.is_empty()) else {
            return Vec::new();
        };
        let entry = self
            .extensions
            .entry(exten.to_owned())
            .or_insert_with(|| ExtensionState::new(exten));
        let before = entry.clone();
        entry.context = msg.get("Context").unwrap_or_default().to_owned();
        let hint = msg.get("Hint").unwrap_or_default();
        if entry.hint != hint {
            entry.hint = hint.to_owned();
            // Devices the hint no longer names are not this extension's any more.
            let named: Vec<&str> = hint.split('&').collect();
            entry.devices.retain(|d, _| named.contains(&d.as_str()));
        }
        entry.state = HintState::from_status(msg.get("Status").unwrap_or_default());
        changed_if(entry, &before)
    }

    fn on_device_state(&mut self, msg: &Message) -> Vec<String> {
        let (Some(device), Some(state)) = (msg.get("Device"), msg.get("State")) else {
            return Vec::new();
        };
        let mut changed = Vec::new();
        for entry in self.extensions.values_mut() {
            if entry
                .hint
                .split('&')
                .any(|d| d.eq_ignore_ascii_case(device))
                && entry.devices.get(device).map(String::as_str) != Some(state)
            {
                entry.devices.insert(device.to_owned(), state.to_owned());
                changed.push(entry.extension.clone());
            }
        }
        changed
    }

    fn on_queue_member(&mut self, msg: &Message) -> Vec<String> {
        let (Some(queue), Some(interface)) = (msg.get("Queue"), member_interface(msg)) else {
            return Vec::new();
        };
        let Some(exten) = member_extension(msg) else {
            return Vec::new();
        };
        let member = QueueMembership {
            queue: queue.to_owned(),
            interface: interface.to_owned(),
            name: msg
                .get("MemberName")
                .or_else(|| msg.get("Name"))
                .unwrap_or_default()
                .to_owned(),
            paused: msg.get("Paused").is_some_and(|p| p.trim() == "1"),
            paused_reason: msg.get("PausedReason").unwrap_or_default().to_owned(),
            in_call: msg.get("InCall").is_some_and(|p| p.trim() == "1"),
        };
        let entry = self
            .extensions
            .entry(exten.to_owned())
            .or_insert_with(|| ExtensionState::new(exten));
        let before = entry.clone();
        match entry
            .queues
            .iter_mut()
            .find(|q| q.queue == member.queue && q.interface == member.interface)
        {
            Some(q) => *q = member,
            None => {
                entry.queues.push(member);
                entry.queues.sort_by(|a, b| a.queue.cmp(&b.queue));
            }
        }
        changed_if(entry, &before)
    }

    fn on_queue_member_removed(&mut self, msg: &Message) -> Vec<String> {
        let (Some(queue), Some(interface)) = (msg.get("Queue"), msg.get("Interface")) else {
            return Vec::new();
        };
        let Some(entry) = member_extension(msg).and_then(|e| self.extensions.get_mut(e)) else {
            return Vec::new();
        };
        let before = entry.clone();
        entry
            .queues
            .retain(|q| !(q.queue == queue && q.interface == interface));
        changed_if(entry, &before)
    }
}

/// What kind of presence information a message carries.
#[derive(Clone, Copy)]
enum Source {
    Hint,
    Device,
    Member,
    MemberRemoved,
}

const SOURCES: [(&str, Source); 9] = [
    ("ExtensionStatus", Source::Hint),
    ("DeviceStateChange", Source::Device),
    ("QueueMemberStatus", Source::Member),
    ("QueueMemberPause", Source::Member),
    ("QueueMemberAdded", Source::Member),
    ("QueueMember", Source::Member),
    ("QueueMemberPenalty", Source::Member),
    ("QueueMemberRinginuse", Source::Member),
    ("QueueMemberRemoved", Source::MemberRemoved),
];

/// Case-insensitive, without allocating: every AMI event of a busy PBX passes through here.
fn source(msg: &Message) -> Option<Source> {
    let event = msg.event()?;
    SOURCES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(event))
        .map(|&(_, s)| s)
}

/// Whether `msg` can change presence (a cheap test before taking any lock).
pub fn concerns(msg: &Message) -> bool {
    source(msg).is_some()
}

fn changed_if(entry: &ExtensionState, before: &ExtensionState) -> Vec<String> {
    if entry == before {
        Vec::new()
    } else {
        vec![entry.extension.clone()]
    }
}

/// The member's interface: `Interface` of the events, `Location` of a `QueueStatus` item.
fn member_interface(msg: &Message) -> Option<&str> {
    msg.get("Interface").or_else(|| msg.get("Location"))
}

/// The extension a queue member stands for: `hint:201@ext-local` (FreePBX's state
/// interface), else the interface `Local/201@from-queue/n` or `PJSIP/201`.
fn member_extension(msg: &Message) -> Option<&str> {
    let from_hint = msg
        .get("StateInterface")
        .and_then(|s| s.strip_prefix("hint:"))
        .and_then(|s| s.split('@').next());
    let from_interface = || {
        let resource = member_interface(msg)?.split_once('/')?.1;
        resource.split(['@', '/']).next()
    };
    from_hint
        .or_else(from_interface)
        .filter(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use expect_test::expect;
    use std::path::Path;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

    fn messages(rel: &str) -> Vec<Message> {
        let path = Path::new(FIXTURES).join(rel);
        let raw = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("fixture missing: {}: {e}", path.display()));
        let mut buf = BytesMut::from(&raw[..]);
        let mut decoder = ami::Decoder::new();
        let mut out = Vec::new();
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            if let ami::Frame::Message(m) = frame {
                out.push(m);
            }
        }
        out
    }

    fn line(s: &ExtensionState) -> String {
        let devices: Vec<String> = s.devices.iter().map(|(d, v)| format!("{d}={v}")).collect();
        let queues: Vec<String> = s
            .queues
            .iter()
            .map(|q| {
                format!(
                    "{}{}{}",
                    q.queue,
                    if q.paused { " paused" } else { "" },
                    if q.in_call { " in-call" } else { "" }
                )
            })
            .collect();
        format!(
            "{} {:?} [{}] queues [{}]",
            s.extension,
            s.state,
            devices.join(" "),
            queues.join(", ")
        )
    }

    /// The changes one real transcript produces, in order.
    fn changes(rel: &str) -> String {
        let mut presence = Presence::new();
        let mut out = Vec::new();
        for m in messages(rel) {
            out.extend(presence.handle(&m).iter().map(line));
        }
        out.join("\n")
    }

    #[test]
    fn a_queue_call_rings_then_talks_then_frees_the_agent() {
        expect![[r#"
            201 Ringing [] queues []
            201 Ringing [PJSIP/201=RINGING] queues []
            201 Ringing [PJSIP/201=RINGING] queues [601]
            201 Ringing [PJSIP/201=RINGING] queues [600, 601]
            201 Ringing [PJSIP/201=NOT_INUSE] queues [600, 601]
            201 Idle [PJSIP/201=NOT_INUSE] queues [600, 601]
            203 Ringing [] queues []
            203 Ringing [PJSIP/203=RINGING] queues []
            203 Ringing [PJSIP/203=RINGING] queues [600]
            203 Ringing [PJSIP/203=INUSE] queues [600]
            203 InUse [PJSIP/203=INUSE] queues [600]
            203 InUse [PJSIP/203=INUSE] queues [600 in-call]
            203 Idle [PJSIP/203=INUSE] queues [600 in-call]
            203 Idle [PJSIP/203=INUSE] queues [600]
            203 Idle [PJSIP/203=NOT_INUSE] queues [600]"#]]
        .assert_eq(&changes("asterisk-22-pjsip/ami/04_ivr_queue.rx.raw"));
    }

    #[test]
    fn every_real_transcript_folds_without_surprises() {
        let mut out = String::new();
        for set in ["asterisk-22", "asterisk-22-pjsip", "asterisk-18-pjsip"] {
            let dir = Path::new(FIXTURES).join(set).join("ami");
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("fixture directory missing: {}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(".rx.raw"))
                .collect();
            files.sort();
            let (mut events, mut changes) = (0, 0);
            let mut last = BTreeMap::new();
            for f in &files {
                let mut presence = Presence::new();
                for m in messages(&f.strip_prefix(FIXTURES).unwrap().to_string_lossy()) {
                    let kind = m.event().unwrap_or_default();
                    if ["ExtensionStatus", "DeviceStateChange", "QueueMemberStatus"].contains(&kind)
                    {
                        events += 1;
                    }
                    changes += presence.handle(&m).len();
                }
                for s in presence.extensions() {
                    last.insert(s.extension.clone(), line(s));
                }
            }
            out.push_str(&format!(
                "{set}: {events} presence events -> {changes} changes; at the end:\n"
            ));
            for l in last.values() {
                out.push_str(&format!("  {l}\n"));
            }
        }
        expect![[r#"
            asterisk-22: 126 presence events -> 4 changes; at the end:
              202 Unknown [] queues [support]
              204 Unknown [] queues [support]
            asterisk-22-pjsip: 291 presence events -> 153 changes; at the end:
              201 Idle [PJSIP/201=NOT_INUSE] queues [600, 601]
              202 Idle [PJSIP/202=NOT_INUSE] queues [601]
              203 Idle [PJSIP/203=NOT_INUSE] queues [600]
            asterisk-18-pjsip: 291 presence events -> 152 changes; at the end:
              201 Idle [PJSIP/201=NOT_INUSE] queues [600, 601]
              202 Idle [PJSIP/202=NOT_INUSE] queues [601]
              203 Idle [PJSIP/203=NOT_INUSE] queues [600]
        "#]]
        .assert_eq(&out);
    }

    #[test]
    fn a_paused_member_and_a_resync_report_only_real_changes() {
        let event = |pairs: &[(&str, &str)]| Message::from_pairs(pairs.iter().copied());
        let mut p = Presence::new();
        let status = |status: &str, text: &str| {
            event(&[
                ("Event", "ExtensionStatus"),
                ("Exten", "201"),
                ("Context", "ext-local"),
                ("Hint", "PJSIP/201&Custom:DND201"),
                ("Status", status),
                ("StatusText", text),
            ])
        };
        let pause = |paused: &str, reason: &str| {
            event(&[
                ("Event", "QueueMemberPause"),
                ("Queue", "600"),
                ("MemberName", "Alice Anderson"),
                ("Interface", "Local/201@from-queue/n"),
                ("StateInterface", "hint:201@ext-local"),
                ("Paused", paused),
                ("PausedReason", reason),
                ("InCall", "0"),
            ])
        };
        let mut out = Vec::new();
        for m in [
            status("0", "Idle"),
            status("0", "Idle"), // no change: nothing reported
            pause("1", "lunch"),
            event(&[
                ("Event", "DeviceStateChange"),
                ("Device", "Custom:DND201"),
                ("State", "BUSY"),
            ]),
            event(&[
                ("Event", "DeviceStateChange"),
                ("Device", "Local/201@from-queue"), // in no hint: not kept
                ("State", "INUSE"),
            ]),
            status("2", "Busy"),
            pause("0", ""),
            event(&[
                ("Event", "QueueMemberRemoved"),
                ("Queue", "600"),
                ("Interface", "Local/201@from-queue/n"),
                ("StateInterface", "hint:201@ext-local"),
            ]),
        ] {
            out.extend(p.handle(&m).iter().map(line));
        }
        // What a `QueueStatus` lists (`Location`, `Name`) after a reconnect, and the hints.
        let resync = [
            status("2", "Busy"),
            status("4", "Unavailable"),
            event(&[
                ("Event", "QueueMember"),
                ("Queue", "601"),
                ("Name", "Alice Anderson"),
                ("Location", "Local/201@from-queue/n"),
                ("StateInterface", "hint:201@ext-local"),
                ("Paused", "1"),
                ("PausedReason", "meeting"),
            ]),
        ];
        out.push("resync:".into());
        out.extend(p.resync(&resync).iter().map(line));
        expect![[r#"
            201 Idle [] queues []
            201 Idle [] queues [600 paused]
            201 Idle [Custom:DND201=BUSY] queues [600 paused]
            201 Busy [Custom:DND201=BUSY] queues [600 paused]
            201 Busy [Custom:DND201=BUSY] queues [600]
            201 Busy [Custom:DND201=BUSY] queues []
            resync:
            201 Unavailable [Custom:DND201=BUSY] queues []
            201 Unavailable [Custom:DND201=BUSY] queues [601 paused]"#]]
        .assert_eq(&out.join("\n"));
        let json = serde_json::to_string(p.get("201").unwrap()).unwrap();
        expect![[r#"{"extension":"201","context":"ext-local","hint":"PJSIP/201&Custom:DND201","state":"unavailable","devices":{"Custom:DND201":"BUSY"},"queues":[{"queue":"601","interface":"Local/201@from-queue/n","name":"Alice Anderson","paused":true,"paused_reason":"meeting","in_call":false}]}"#]].assert_eq(&json);
    }
}
