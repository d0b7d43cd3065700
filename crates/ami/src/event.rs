//! Typed, zero-copy views of the AMI events call tracking and the CRM side use: the event
//! kind, and channel snapshots (`Channel`, `CallerIDNum`... optionally `Dest`-prefixed).
//!
//! Only the events pbxlink acts on get a kind; everything else is [`EventKind::Other`] and
//! still fully readable through [`Message::get`].

use crate::Message;

macro_rules! event_kinds {
    ($($kind:ident),* $(,)?) => {
        /// The `Event:` name, parsed case-insensitively.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $(
                #[doc = concat!("`", stringify!($kind), "`")]
                $kind,
            )*
            /// Any other event. No payload, so the kind stays `Copy` and parsing never
            /// allocates; the name is [`Event::name`].
            Other,
        }

        const KINDS: &[(&str, EventKind)] = &[$((stringify!($kind), EventKind::$kind)),*];
    };
}

event_kinds! {
    Newchannel, Newstate, NewCallerid, NewConnectedLine, Hangup, HangupRequest,
    SoftHangupRequest, DialBegin, DialState, DialEnd, BridgeCreate, BridgeDestroy,
    BridgeEnter, BridgeLeave, BridgeMerge, LocalBridge, LocalOptimizationBegin, LocalOptimizationEnd,
    BlindTransfer, AttendedTransfer, QueueCallerJoin, QueueCallerLeave, QueueCallerAbandon,
    AgentCalled, AgentConnect, AgentRingNoAnswer, AgentComplete, Pickup, MixMonitorStart,
    MixMonitorStop, Hold, Unhold, MusicOnHoldStart, MusicOnHoldStop, ConfbridgeJoin,
    ConfbridgeLeave, VarSet, Newexten, DTMFBegin, DTMFEnd, Cdr, UserEvent,
    ExtensionStatus, DeviceStateChange, QueueMemberStatus, FullyBooted, CoreShowChannel,
    Status, OriginateResponse,
}

impl EventKind {
    /// The kind of event `name` (case-insensitive, as Asterisk's own matching is).
    pub fn parse(name: &str) -> EventKind {
        KINDS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(EventKind::Other, |&(_, k)| k)
    }

    /// The canonical event name; `None` for [`EventKind::Other`].
    pub fn name(self) -> Option<&'static str> {
        KINDS.iter().find(|(_, k)| *k == self).map(|&(n, _)| n)
    }
}

/// Asterisk's channel state (`ChannelState:` number, `ast_channel_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelState {
    /// 0: channel is down and available.
    Down,
    /// 1: reserved.
    Reserved,
    /// 2: off hook.
    OffHook,
    /// 3: digits have been dialed.
    Dialing,
    /// 4: the line is ringing (our side, an outgoing call).
    Ring,
    /// 5: the remote end is ringing.
    Ringing,
    /// 6: answered.
    Up,
    /// 7: busy.
    Busy,
    /// 8: digits dialed while off hook.
    DialingOffhook,
    /// 9: channel has detected an incoming call and is waiting for ring.
    PreRing,
    /// A number this list does not know (a newer Asterisk).
    Unknown(u8),
}

impl ChannelState {
    /// From the `ChannelState:` value; `None` when it is not a number.
    pub fn parse(value: &str) -> Option<ChannelState> {
        Some(match value.trim().parse::<u8>().ok()? {
            0 => ChannelState::Down,
            1 => ChannelState::Reserved,
            2 => ChannelState::OffHook,
            3 => ChannelState::Dialing,
            4 => ChannelState::Ring,
            5 => ChannelState::Ringing,
            6 => ChannelState::Up,
            7 => ChannelState::Busy,
            8 => ChannelState::DialingOffhook,
            9 => ChannelState::PreRing,
            n => ChannelState::Unknown(n),
        })
    }
}

/// An event message with its kind parsed.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// What event this is.
    pub kind: EventKind,
    /// The whole message, for any field without an accessor.
    pub msg: &'a Message,
}

impl<'a> Event<'a> {
    /// `None` when `msg` is not an event (a response or an action).
    pub fn new(msg: &'a Message) -> Option<Self> {
        let name = msg.event()?;
        Some(Event {
            kind: EventKind::parse(name),
            msg,
        })
    }

    /// The `Event:` value as sent.
    pub fn name(&self) -> &'a str {
        self.msg.event().unwrap_or_default()
    }

    /// Any field, case-insensitively.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.msg.get(key)
    }

    /// The event's own channel (`Channel`, `Uniqueid`...).
    pub fn channel(&self) -> ChannelSnapshot<'a> {
        self.snapshot("")
    }

    /// The called channel of `DialBegin`/`DialState`/`DialEnd` and the agent channel of the
    /// `Agent*` queue events (`DestChannel`, `DestUniqueid`...).
    pub fn dest(&self) -> ChannelSnapshot<'a> {
        self.snapshot("Dest")
    }

    /// The channel whose fields carry `prefix`: `Transferer`/`Transferee` (`BlindTransfer`),
    /// `OrigTransferer`/`SecondTransferer`/`TransferTarget`/`Transferee`
    /// (`AttendedTransfer`), `LocalOne`/`LocalTwo` (`LocalBridge`, `LocalOptimization*`),
    /// `Target` (`Pickup`)...
    pub fn snapshot(&self, prefix: &'static str) -> ChannelSnapshot<'a> {
        ChannelSnapshot {
            msg: self.msg,
            prefix,
        }
    }

    /// `Cause` of `Hangup`/`HangupRequest` (Q.850: 16 normal clearing, 17 busy, 19 no answer...).
    pub fn hangup_cause(&self) -> Option<u16> {
        self.get("Cause")?.trim().parse().ok()
    }

    /// `DialStatus` of `DialEnd`/`DialState` (`ANSWER`, `BUSY`, `NOANSWER`, `CANCEL`...).
    pub fn dial_status(&self) -> Option<&'a str> {
        self.get("DialStatus")
    }

    /// The bridge of `BridgeEnter`/`BridgeLeave`/`BridgeCreate`... (`BridgeUniqueid`), or of a
    /// `CoreShowChannel`/`Status` list item (`BridgeId`).
    pub fn bridge_id(&self) -> Option<&'a str> {
        self.get("BridgeUniqueid")
            .or_else(|| self.get("BridgeId"))
            .filter(|b| !b.is_empty())
    }

    /// `VarSet`: `(Variable, Value)`.
    pub fn variable(&self) -> Option<(&'a str, &'a str)> {
        Some((self.get("Variable")?, self.get("Value").unwrap_or_default()))
    }

    /// `Queue` of the queue events.
    pub fn queue(&self) -> Option<&'a str> {
        self.get("Queue")
    }
}

/// One channel's snapshot inside an event, read through a field-name prefix, borrowing from
/// the message.
#[derive(Debug, Clone, Copy)]
pub struct ChannelSnapshot<'a> {
    msg: &'a Message,
    prefix: &'static str,
}

impl<'a> ChannelSnapshot<'a> {
    /// `<prefix><key>`, case-insensitively, without building the joined key.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        let (p, k) = (self.prefix.as_bytes(), key.as_bytes());
        self.msg
            .iter()
            .find(|(name, _)| {
                let name = name.as_bytes();
                name.len() == p.len() + k.len()
                    && name[..p.len()].eq_ignore_ascii_case(p)
                    && name[p.len()..].eq_ignore_ascii_case(k)
            })
            .map(|(_, v)| v)
    }

    /// Channel name, e.g. `PJSIP/201-0000001f`.
    pub fn channel(&self) -> Option<&'a str> {
        self.get("Channel")
    }

    /// Parsed `ChannelState`.
    pub fn state(&self) -> Option<ChannelState> {
        ChannelState::parse(self.get("ChannelState")?)
    }

    /// Caller number; `None` when Asterisk has none (it sends `<unknown>` or nothing).
    pub fn caller_id_num(&self) -> Option<&'a str> {
        self.known("CallerIDNum")
    }

    /// Caller name; `None` when unknown.
    pub fn caller_id_name(&self) -> Option<&'a str> {
        self.known("CallerIDName")
    }

    /// Connected line (the other party as this channel sees it) number; `None` when unknown.
    pub fn connected_line_num(&self) -> Option<&'a str> {
        self.known("ConnectedLineNum")
    }

    /// Connected line name; `None` when unknown.
    pub fn connected_line_name(&self) -> Option<&'a str> {
        self.known("ConnectedLineName")
    }

    /// Dialplan context.
    pub fn context(&self) -> Option<&'a str> {
        self.get("Context")
    }

    /// Dialplan extension.
    pub fn exten(&self) -> Option<&'a str> {
        self.get("Exten")
    }

    /// `Uniqueid`: this channel's ID.
    pub fn uniqueid(&self) -> Option<&'a str> {
        self.get("Uniqueid")
    }

    /// `Linkedid`: the ID shared by every channel of one call (the oldest channel's Uniqueid).
    pub fn linkedid(&self) -> Option<&'a str> {
        self.get("Linkedid")
    }

    /// `AccountCode`; `None` when empty.
    pub fn account_code(&self) -> Option<&'a str> {
        self.get("AccountCode").filter(|v| !v.is_empty())
    }

    // Asterisk writes `<unknown>` for an absent caller ID; an empty value means the same.
    fn known(&self, key: &str) -> Option<&'a str> {
        self.get(key).filter(|v| !v.is_empty() && *v != "<unknown>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_case_insensitively_and_round_trip() {
        assert_eq!(EventKind::parse("dtmfend"), EventKind::DTMFEnd);
        assert_eq!(EventKind::parse("NEWCHANNEL"), EventKind::Newchannel);
        assert_eq!(EventKind::parse("RTCPSent"), EventKind::Other);
        for &(name, kind) in KINDS {
            assert_eq!(kind.name(), Some(name));
        }
        assert_eq!(EventKind::Other.name(), None);
    }

    #[test]
    fn snapshot_prefix_never_slices_inside_a_character() {
        let m = Message::from_pairs([("Event", "DialBegin"), ("Dé", "x"), ("DestExten", "201")]);
        let e = Event::new(&m).unwrap();
        assert_eq!(e.dest().exten(), Some("201"));
        assert_eq!(e.snapshot("D").get("é"), Some("x"));
        assert_eq!(e.snapshot("Dest").channel(), None);
    }
}
