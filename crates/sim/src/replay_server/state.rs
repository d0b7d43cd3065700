//! The PBX's state after the first i events of a transcript (live channels, their bridges,
//! the bridges) and the state lists Asterisk 22 answers from it: `CoreShowChannels`,
//! `Status`, `BridgeList`.
//!
//! Every channel event carries the channel's snapshot (the 14-field block a `Newchannel`
//! starts with), so a live channel's latest event is its latest state; `Newexten` adds the
//! running application, a dial marks the dialed channel as Asterisk's dialers do, and
//! `BridgeEnter`/`BridgeLeave` say where it is bridged. Channel ages come from the stream
//! clock (the caller's times), 0 when the stream has no time marks. An incoming channel
//! (created ringing, not a Local one) has the extension it starts at as its DNID, as the SIP
//! channel drivers set it. What the events never carry (codecs, call groups) is answered
//! empty.

use ami::Message;
use chrono::{DateTime, Utc};

pub use crate::responder::ListAnswer;

/// The channel block of every channel event, and of `CoreShowChannel`/`Status` items, in
/// Asterisk's order.
const SNAPSHOT: [&str; 14] = [
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
];
const CHANNEL: usize = 0;
const CONNECTED_NUM: usize = 5;
const CONNECTED_NAME: usize = 6;
const UNIQUEID: usize = 12;

/// The bridge fields of `BridgeCreate`/`BridgeEnter` and of `BridgeListItem`, in order.
const BRIDGE: [&str; 7] = [
    "BridgeUniqueid",
    "BridgeType",
    "BridgeTechnology",
    "BridgeCreator",
    "BridgeName",
    "BridgeNumChannels",
    "BridgeVideoSourceMode",
];
const BRIDGE_ID: usize = 0;
const BRIDGE_COUNT: usize = 5;

/// Whether `msg` can change the state; the rest of a stream (`VarSet`, most of it) need
/// not be kept to rebuild it.
pub fn changes_state(msg: &Message) -> bool {
    matches!(
        msg.event(),
        Some(
            "Newchannel"
                | "Newstate"
                | "NewCallerid"
                | "NewConnectedLine"
                | "NewAccountCode"
                | "Newexten"
                | "Rename"
                | "Hangup"
                | "DialBegin"
                | "BridgeCreate"
                | "BridgeEnter"
                | "BridgeLeave"
                | "BridgeDestroy"
        )
    )
}

/// Channels and bridges alive at one point of the stream.
#[derive(Debug, Clone, Default)]
pub struct PbxState {
    /// In creation order.
    channels: Vec<Channel>,
    /// In creation order; the channel count is read off the channels.
    bridges: Vec<[String; 7]>,
    /// The time of the point in the stream: channel ages are counted to it.
    now: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct Channel {
    snapshot: [String; 14],
    application: String,
    data: String,
    /// `BridgeUniqueid` of the bridge it is in, or empty.
    bridge: String,
    /// The number it was dialed with, when it came in.
    dnid: String,
    created: Option<DateTime<Utc>>,
}

impl PbxState {
    /// Folds in one event that happened `at`.
    pub fn apply(&mut self, at: Option<DateTime<Utc>>, msg: &Message) {
        let Some(event) = msg.event() else {
            return;
        };
        if event == "Newchannel" {
            if msg.get("Uniqueid").is_some() {
                let incoming = msg.get("ChannelStateDesc") == Some("Ring")
                    && !msg.get("Channel").is_some_and(|c| c.starts_with("Local/"));
                let dnid = msg.get("Exten").filter(|_| incoming).unwrap_or_default();
                self.channels.push(Channel {
                    snapshot: SNAPSHOT.map(|k| msg.get(k).unwrap_or_default().to_owned()),
                    application: String::new(),
                    data: String::new(),
                    bridge: String::new(),
                    dnid: dnid.to_owned(),
                    created: at,
                });
            }
            return;
        }
        let channel = self.update(msg, "");
        match event {
            "Hangup" => {
                if let Some(i) = channel {
                    self.channels.remove(i);
                }
            }
            "Rename" => {
                if let (Some(i), Some(name)) = (channel, msg.get("Newname")) {
                    self.channels[i].snapshot[CHANNEL] = name.to_owned();
                }
            }
            "Newexten" => {
                if let Some(i) = channel {
                    // Application/AppData close the event, after the channel block.
                    let c = &mut self.channels[i];
                    c.application = msg.get_last("Application").unwrap_or_default().into();
                    c.data = msg.get_last("AppData").unwrap_or_default().into();
                }
            }
            "DialBegin" => {
                // What Asterisk's dialers set on the channel they call: app_dial, app_queue,
                // and the dial API (Originate, the bridge core's attended-transfer leg).
                let application = match channel {
                    Some(i) if self.channels[i].application == "Queue" => "AppQueue",
                    Some(_) => "AppDial",
                    None => "AppDial2",
                };
                if let Some(dest) = self.update(msg, "Dest") {
                    let c = &mut self.channels[dest];
                    c.application = application.to_owned();
                    c.data = "(Outgoing Line)".to_owned();
                }
            }
            "BridgeCreate" | "BridgeEnter" => {
                let bridge = BRIDGE.map(|k| msg.get(k).unwrap_or_default().to_owned());
                if event == "BridgeEnter" {
                    if let Some(i) = channel {
                        self.channels[i].bridge.clone_from(&bridge[BRIDGE_ID]);
                    }
                }
                if !self
                    .bridges
                    .iter()
                    .any(|b| b[BRIDGE_ID] == bridge[BRIDGE_ID])
                {
                    self.bridges.push(bridge);
                }
            }
            "BridgeLeave" => {
                if let Some(i) = channel {
                    self.channels[i].bridge.clear();
                }
            }
            "BridgeDestroy" => {
                let id = msg.get("BridgeUniqueid").unwrap_or_default();
                self.bridges.retain(|b| b[BRIDGE_ID] != id);
                for c in self.channels.iter_mut().filter(|c| c.bridge == id) {
                    c.bridge.clear();
                }
            }
            _ => {}
        }
    }

    /// Sets the time the lists are answered at.
    pub fn set_now(&mut self, now: Option<DateTime<Utc>>) {
        self.now = now;
    }

    /// Takes the channel block under `prefix` (`""`, `Dest`) into the live channel it
    /// names; its index, if that channel is alive.
    fn update(&mut self, msg: &Message, prefix: &str) -> Option<usize> {
        let key = |k: &str| format!("{prefix}{k}");
        let i = match msg.get(&key("Uniqueid")) {
            Some(id) => self
                .channels
                .iter()
                .position(|c| c.snapshot[UNIQUEID] == id),
            None => {
                let name = msg.get(&key("Channel"))?;
                self.channels
                    .iter()
                    .position(|c| c.snapshot[CHANNEL] == name)
            }
        }?;
        // A field outside the block (a dial's `DialStatus`) is never taken for one in it:
        // only an event that carries the whole block updates it.
        if msg.get(&key("ChannelState")).is_some() {
            let c = &mut self.channels[i];
            for (field, k) in c.snapshot.iter_mut().zip(SNAPSHOT) {
                if let Some(v) = msg.get(&key(k)) {
                    v.clone_into(field);
                }
            }
        }
        Some(i)
    }

    /// Seconds since the channel was created, as Asterisk counts them (whole seconds).
    fn age(&self, c: &Channel) -> i64 {
        match (c.created, self.now) {
            (Some(created), Some(now)) => (now - created).num_seconds().max(0),
            _ => 0,
        }
    }

    /// `CoreShowChannels`: one `CoreShowChannel` per live channel.
    pub fn core_show_channels(&self, id: &str) -> ListAnswer {
        let items = self
            .channels
            .iter()
            .map(|c| {
                let age = self.age(c);
                let duration = format!("{:02}:{:02}:{:02}", age / 3600, age / 60 % 60, age % 60);
                let mut m = Message::from_pairs([("Event", "CoreShowChannel"), ("ActionID", id)]);
                push_snapshot(&mut m, c);
                for (k, v) in [
                    ("Application", c.application.as_str()),
                    ("ApplicationData", &c.data),
                    ("Duration", &duration),
                    ("BridgeId", &c.bridge),
                ] {
                    m.push(k, v);
                }
                m
            })
            .collect();
        ListAnswer::new(
            id,
            "Channels will follow",
            items,
            "CoreShowChannelsComplete",
        )
    }

    /// `Status` of every live channel, or of the one named (`Err`: Asterisk's message when
    /// there is no such channel).
    pub fn status(&self, id: &str, only: Option<&str>) -> Result<ListAnswer, &'static str> {
        let chosen: Vec<&Channel> = self
            .channels
            .iter()
            .filter(|c| only.is_none_or(|name| c.snapshot[CHANNEL] == name))
            .collect();
        if only.is_some() && chosen.is_empty() {
            return Err("No such channel");
        }
        let items = chosen
            .into_iter()
            .map(|c| {
                let name = &c.snapshot[CHANNEL];
                let tech = name.split_once('/').map_or("", |(t, _)| t);
                let seconds = self.age(c).to_string();
                let mut m = Message::from_pairs([("Event", "Status"), ("Privilege", "Call")]);
                push_snapshot(&mut m, c);
                for (k, v) in [
                    ("Type", tech),
                    ("DNID", &c.dnid),
                    ("EffectiveConnectedLineNum", &c.snapshot[CONNECTED_NUM]),
                    ("EffectiveConnectedLineName", &c.snapshot[CONNECTED_NAME]),
                    ("TimeToHangup", "0"),
                    ("BridgeID", &c.bridge),
                    ("Application", &c.application),
                    ("Data", &c.data),
                    ("Nativeformats", ""),
                    ("Readformat", ""),
                    ("Readtrans", ""),
                    ("Writeformat", ""),
                    ("Writetrans", ""),
                    ("Callgroup", ""),
                    ("Pickupgroup", ""),
                    ("Seconds", &seconds),
                    // Asterisk appends the ActionID to a Status item, last.
                    ("ActionID", id),
                ] {
                    m.push(k, v);
                }
                m
            })
            .collect();
        Ok(
            ListAnswer::new(id, "Channel status will follow", items, "StatusComplete")
                .with_items_count(),
        )
    }

    /// `BridgeList`: one `BridgeListItem` per bridge, with its channel count now.
    pub fn bridge_list(&self, id: &str) -> ListAnswer {
        let items = self
            .bridges
            .iter()
            .map(|b| {
                let count = self
                    .channels
                    .iter()
                    .filter(|c| c.bridge == b[BRIDGE_ID])
                    .count()
                    .to_string();
                let mut m = Message::from_pairs([("Event", "BridgeListItem"), ("ActionID", id)]);
                for (i, (k, v)) in BRIDGE.iter().zip(b).enumerate() {
                    m.push(k, if i == BRIDGE_COUNT { &count } else { v });
                }
                m
            })
            .collect();
        ListAnswer::new(
            id,
            "Bridge listing will follow",
            items,
            "BridgeListComplete",
        )
    }
}

fn push_snapshot(m: &mut Message, c: &Channel) {
    for (k, v) in SNAPSHOT.iter().zip(&c.snapshot) {
        m.push(k, v);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use expect_test::expect;

    use super::*;
    use crate::replay_server::Transcript;

    const AMI: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/asterisk-22/ami"
    );

    /// The model's answers against a real Asterisk 22's, at the point of the stream where
    /// it answered: (transcript, the ActionID whose answer marks the point, the transcript
    /// holding the recorded answer, the action). The snapshot connection ran during the
    /// same call, a moment later.
    const RECORDED: [(&str, &str, &str, &str); 3] = [
        (
            "01_inbound_answered",
            "01-coreshowchannels",
            "01_inbound_answered",
            "coreshowchannels",
        ),
        (
            "01_inbound_answered",
            "01-status",
            "01_inbound_answered",
            "status",
        ),
        (
            "01_inbound_answered",
            "01-coreshowchannels",
            "01_inbound_answered.snapshot",
            "bridgelist",
        ),
    ];

    fn load(name: &str) -> Transcript {
        Transcript::load(&Path::new(AMI).join(format!("{name}.rx.raw"))).unwrap()
    }

    /// How many events the stream had sent when the answer to `id` began.
    fn events_before(name: &str, id: &str) -> usize {
        let raw = std::fs::read(Path::new(AMI).join(format!("{name}.rx.raw"))).unwrap();
        let msgs = crate::replay::load(&raw).unwrap();
        let answer = msgs
            .iter()
            .position(|m| m.response().is_some() && m.action_id() == Some(id))
            .unwrap();
        msgs[..answer]
            .iter()
            .filter(|m| m.event().is_some() && m.action_id().is_none())
            .count()
    }

    fn keys(m: &Message) -> Vec<&str> {
        m.iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn state_lists_match_what_asterisk_answered() {
        let mut out = String::new();
        for (name, at, recorded_in, action) in RECORDED {
            let n = events_before(name, at);
            let state = load(name).state_after(n);
            let recorded = load(recorded_in).lists[action].clone();
            let id = recorded.response.action_id().unwrap_or_default();
            let model = match action {
                "coreshowchannels" => state.core_show_channels(id),
                "status" => state.status(id, None).unwrap(),
                _ => state.bridge_list(id),
            };
            out.push_str(&format!("{action} after {n} events ({recorded_in}):\n"));
            let mut lines = vec![
                (recorded.response == model.response).then_some("response same"),
                (recorded.complete == model.complete).then_some("complete same"),
            ];
            lines.retain(Option::is_some);
            out.push_str(&format!(
                "  {}\n",
                lines.into_iter().flatten().collect::<Vec<_>>().join(", ")
            ));
            for want in &recorded.items {
                let key = ["Channel", "BridgeUniqueid"]
                    .into_iter()
                    .find_map(|k| want.get(k))
                    .unwrap_or_default();
                let Some(got) = model.items.iter().find(|m| {
                    ["Channel", "BridgeUniqueid"]
                        .iter()
                        .any(|k| m.get(k) == Some(key))
                }) else {
                    out.push_str(&format!("  {key}: missing\n"));
                    continue;
                };
                let differ: Vec<String> = want
                    .iter()
                    .filter(|(k, v)| got.get(k) != Some(v))
                    .map(|(k, v)| format!("{k} {v:?}/{:?}", got.get(k).unwrap_or_default()))
                    .collect();
                out.push_str(&format!(
                    "  {key}: {}, {}\n",
                    if keys(want) == keys(got) {
                        "same headers"
                    } else {
                        "OTHER HEADERS"
                    },
                    if differ.is_empty() {
                        "same values".to_owned()
                    } else {
                        format!("differ (real/model): {}", differ.join(", "))
                    }
                ));
            }
            out.push_str(&format!(
                "  {} items, {} recorded\n",
                model.items.len(),
                recorded.items.len()
            ));
        }
        expect![[r#"
            coreshowchannels after 116 events (01_inbound_answered):
              response same, complete same
              Local/201@agents-00000001;1: same headers, differ (real/model): Duration "00:00:03"/"00:00:02"
              Local/201@agents-00000001;2: same headers, differ (real/model): Duration "00:00:03"/"00:00:02"
              Local/15550001000@from-pstn-00000000;2: same headers, differ (real/model): Duration "00:00:05"/"00:00:03"
              Local/15550001000@from-pstn-00000000;1: same headers, differ (real/model): Duration "00:00:05"/"00:00:03"
              4 items, 4 recorded
            status after 116 events (01_inbound_answered):
              response same, complete same
              Local/201@agents-00000001;1: same headers, differ (real/model): Nativeformats "(slin)"/"", Readformat "slin"/"", Writeformat "slin"/"", Callgroup "0"/"", Pickupgroup "0"/"", Seconds "3"/"2"
              Local/201@agents-00000001;2: same headers, differ (real/model): Nativeformats "(slin)"/"", Readformat "slin"/"", Writeformat "gsm"/"", Writetrans "(gsm@8000)->(slin@8000)"/"", Callgroup "0"/"", Pickupgroup "0"/"", Seconds "3"/"2"
              Local/15550001000@from-pstn-00000000;2: same headers, differ (real/model): Nativeformats "(slin)"/"", Readformat "slin"/"", Writeformat "slin"/"", Callgroup "0"/"", Pickupgroup "0"/"", Seconds "5"/"3"
              Local/15550001000@from-pstn-00000000;1: same headers, differ (real/model): Nativeformats "(slin)"/"", Readformat "slin"/"", Writeformat "slin"/"", Callgroup "0"/"", Pickupgroup "0"/"", Seconds "5"/"3"
              4 items, 4 recorded
            bridgelist after 116 events (01_inbound_answered.snapshot):
              response same, complete same
              8079a2e8-9f3c-443f-8c83-9d0575150085: same headers, same values
              1 items, 1 recorded
        "#]].assert_eq(&out);
    }
}
