//! Header shapes of the AMI events Asterisk 22 sends: one builder per header block, so every
//! event the simulator emits has exactly the field names and order seen in the real transcripts.

use ami::Message;

/// `ChannelState` numbers of Asterisk's `ast_channel_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChanState {
    Down,
    Ring,
    Ringing,
    Up,
    Busy,
}

impl ChanState {
    fn code_and_desc(self) -> (&'static str, &'static str) {
        match self {
            ChanState::Down => ("0", "Down"),
            ChanState::Ring => ("4", "Ring"),
            ChanState::Ringing => ("5", "Ringing"),
            ChanState::Up => ("6", "Up"),
            ChanState::Busy => ("7", "Busy"),
        }
    }
}

/// What Asterisk knows about one channel at the moment an event is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chan {
    pub name: String,
    pub state: ChanState,
    pub cid_num: String,
    pub cid_name: String,
    pub conn_num: String,
    pub conn_name: String,
    pub context: String,
    pub exten: String,
    pub priority: u32,
    pub uniqueid: String,
    pub linkedid: String,
}

/// Asterisk's spelling of an unset caller ID field.
pub const UNKNOWN: &str = "<unknown>";

impl Chan {
    /// Appends the 14-field channel block, each key prefixed (`""`, `Dest`, `Transferee`, ...).
    pub fn block(&self, prefix: &str, m: &mut Message) {
        let (code, desc) = self.state.code_and_desc();
        let priority = self.priority.to_string();
        let fields: [(&str, &str); 14] = [
            ("Channel", &self.name),
            ("ChannelState", code),
            ("ChannelStateDesc", desc),
            ("CallerIDNum", &self.cid_num),
            ("CallerIDName", &self.cid_name),
            ("ConnectedLineNum", &self.conn_num),
            ("ConnectedLineName", &self.conn_name),
            ("Language", "en"),
            ("AccountCode", ""),
            ("Context", &self.context),
            ("Exten", &self.exten),
            ("Priority", &priority),
            ("Uniqueid", &self.uniqueid),
            ("Linkedid", &self.linkedid),
        ];
        for (k, v) in fields {
            m.push(&format!("{prefix}{k}"), v);
        }
    }
}

/// A bridge as the `Bridge*` header block describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub uniqueid: String,
    pub kind: BridgeKind,
    pub num_channels: usize,
}

/// Two-party basic bridge or a ConfBridge softmix bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeKind {
    Basic,
    Conference,
}

impl Bridge {
    /// Appends the 7-field bridge block with a key prefix (`""`, `To`, `From`, `Orig`, ...).
    pub fn block(&self, prefix: &str, m: &mut Message) {
        let (kind, tech, creator, name) = match self.kind {
            BridgeKind::Basic => ("basic", "simple_bridge", UNKNOWN, UNKNOWN),
            BridgeKind::Conference => ("base", "softmix", "ConfBridge", "8000"),
        };
        let n = self.num_channels.to_string();
        let fields: [(&str, &str); 7] = [
            ("BridgeUniqueid", &self.uniqueid),
            ("BridgeType", kind),
            ("BridgeTechnology", tech),
            ("BridgeCreator", creator),
            ("BridgeName", name),
            ("BridgeNumChannels", &n),
            ("BridgeVideoSourceMode", "none"),
        ];
        for (k, v) in fields {
            m.push(&format!("{prefix}{k}"), v);
        }
    }
}

/// `Event:` and `Privilege:`, the first two fields of every unsolicited event.
pub fn event(name: &str) -> Message {
    let mut m = Message::new();
    m.push("Event", name);
    m.push("Privilege", privilege(name));
    m
}

// The class list Asterisk prints per event type (manager.conf read classes + "all").
fn privilege(event: &str) -> &'static str {
    match event {
        "VarSet" | "Newexten" | "HangupHandlerPush" | "HangupHandlerRun" => "dialplan,all",
        "Cdr" => "cdr,all",
        "DTMFBegin" | "DTMFEnd" => "dtmf,all",
        "RTCPSent" | "RTCPReceived" => "reporting,all",
        "FullyBooted" => "system,all",
        "SuccessfulAuth" => "security,all",
        e if e.starts_with("Queue") || e.starts_with("Agent") => "agent,all",
        _ => "call,all",
    }
}

/// An event about one channel: `Event`, `Privilege`, then the channel block.
pub fn chan_event(name: &str, c: &Chan) -> Message {
    let mut m = event(name);
    c.block("", &mut m);
    m
}

impl Chan {
    /// The channel block of an event (`Channel` ... `Linkedid`), if it has one.
    pub fn from_message(m: &Message) -> Option<Chan> {
        let name = m.get("Channel")?;
        let uniqueid = m.get("Uniqueid")?;
        let state = match m.get("ChannelState")? {
            "4" => ChanState::Ring,
            "5" => ChanState::Ringing,
            "6" => ChanState::Up,
            "7" => ChanState::Busy,
            _ => ChanState::Down,
        };
        let field = |k: &str| m.get(k).unwrap_or_default().to_owned();
        Some(Chan {
            name: name.to_owned(),
            state,
            cid_num: field("CallerIDNum"),
            cid_name: field("CallerIDName"),
            conn_num: field("ConnectedLineNum"),
            conn_name: field("ConnectedLineName"),
            context: field("Context"),
            exten: field("Exten"),
            priority: m.get("Priority").and_then(|p| p.parse().ok()).unwrap_or(1),
            uniqueid: uniqueid.to_owned(),
            linkedid: field("Linkedid"),
        })
    }
}
