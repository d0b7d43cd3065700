//! AMI actions: a generic builder (every action is sendable) plus typed constructors for the
//! actions pbxlink uses, laid out field for field as the fixture transcripts show them.

use crate::Message;

/// An AMI action: its name and its fields, in the order they go on the wire.
///
/// An explicit `ActionID` field (set with [`Action::field`]) takes precedence over the one the
/// [`Session`](crate::Session) would generate; it is always written right after `Action:`.
#[derive(Clone, PartialEq, Eq)]
pub struct Action {
    // The `Action: <name>` field first, then the others: one allocation, and the encoder is
    // the message encoder.
    message: Message,
}

/// Where an originated channel goes once answered: a dialplan location or an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginateTarget {
    /// `Context` / `Exten` / `Priority`.
    Exten {
        /// Dialplan context.
        context: String,
        /// Extension in that context.
        exten: String,
        /// Priority (usually 1).
        priority: u32,
    },
    /// `Application` / `Data`.
    Application {
        /// Dialplan application name, e.g. `Playback`.
        application: String,
        /// Its argument string.
        data: String,
    },
}

/// Parameters of `Action: Originate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Originate {
    /// The channel to call first, e.g. `PJSIP/201` or `Local/201@from-internal`.
    pub channel: String,
    /// Where the answered channel goes.
    pub target: OriginateTarget,
    /// `CallerID`, e.g. `"Agent 201" <201>`.
    pub caller_id: Option<String>,
    /// Ring timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// `Async: yes`: respond at once and report the outcome in an `OriginateResponse` event.
    /// Without it Asterisk blocks the whole AMI connection until the call is answered.
    pub asynchronous: bool,
    /// Channel variables, one `Variable: name=value` line each.
    pub variables: Vec<(String, String)>,
}

impl Originate {
    /// Calls `channel`, then sends it to `context`,`exten`,`priority`; asynchronous.
    pub fn exten(channel: &str, context: &str, exten: &str, priority: u32) -> Self {
        Self::with_target(
            channel,
            OriginateTarget::Exten {
                context: context.to_owned(),
                exten: exten.to_owned(),
                priority,
            },
        )
    }

    /// Calls `channel`, then runs `application(data)` on it; asynchronous.
    pub fn application(channel: &str, application: &str, data: &str) -> Self {
        Self::with_target(
            channel,
            OriginateTarget::Application {
                application: application.to_owned(),
                data: data.to_owned(),
            },
        )
    }

    fn with_target(channel: &str, target: OriginateTarget) -> Self {
        Originate {
            channel: channel.to_owned(),
            target,
            caller_id: None,
            timeout_ms: None,
            asynchronous: true,
            variables: Vec::new(),
        }
    }
}

impl Action {
    /// An action with no fields yet.
    pub fn new(name: &str) -> Self {
        Action {
            message: Message::from_pairs([("Action", name)]),
        }
    }

    /// Appends a field; keys may repeat (`Variable:`).
    pub fn field(mut self, key: &str, value: &str) -> Self {
        self.message.push(key, value);
        self
    }

    /// The action name (`Ping`, `Originate`...).
    pub fn name(&self) -> &str {
        self.message.action().unwrap_or_default()
    }

    /// The explicit `ActionID`, when one was set with [`Action::field`].
    pub fn action_id(&self) -> Option<&str> {
        self.message.action_id()
    }

    /// The action as a message (`Action:` first, then the fields as given).
    pub fn as_message(&self) -> &Message {
        &self.message
    }

    /// Encodes the action with `id` as its `ActionID`, written right after `Action:`
    /// (an explicit `ActionID` field is not written twice).
    pub fn encode(&self, id: &str, out: &mut Vec<u8>) {
        let mut wire = Message::from_pairs([("Action", self.name()), ("ActionID", id)]);
        for (k, v) in self.message.iter().skip(1) {
            if !k.eq_ignore_ascii_case("ActionID") {
                wire.push(k, v);
            }
        }
        wire.encode(out);
    }

    /// `Ping`: keep-alive; answers `Ping: Pong`.
    pub fn ping() -> Self {
        Self::new("Ping")
    }

    /// `Logoff`: Asterisk answers `Response: Goodbye` and closes the connection.
    pub fn logoff() -> Self {
        Self::new("Logoff")
    }

    /// `Originate` a call.
    pub fn originate(o: Originate) -> Self {
        let mut a = Self::new("Originate").field("Channel", &o.channel);
        a = match &o.target {
            OriginateTarget::Exten {
                context,
                exten,
                priority,
            } => a
                .field("Context", context)
                .field("Exten", exten)
                .field("Priority", &priority.to_string()),
            OriginateTarget::Application { application, data } => {
                a.field("Application", application).field("Data", data)
            }
        };
        if let Some(cid) = &o.caller_id {
            a = a.field("CallerID", cid);
        }
        if let Some(t) = o.timeout_ms {
            a = a.field("Timeout", &t.to_string());
        }
        if o.asynchronous {
            a = a.field("Async", "yes");
        }
        for (name, value) in &o.variables {
            a = a.field("Variable", &format!("{name}={value}"));
        }
        a
    }

    /// `Hangup` a channel.
    pub fn hangup(channel: &str) -> Self {
        Self::new("Hangup").field("Channel", channel)
    }

    /// `Command`: a CLI command; its output is in [`ActionResult::output`](crate::ActionResult::output).
    pub fn command(cmd: &str) -> Self {
        Self::new("Command").field("Command", cmd)
    }

    /// `CoreShowChannels`: a list of `CoreShowChannel` events.
    pub fn core_show_channels() -> Self {
        Self::new("CoreShowChannels")
    }

    /// `Status` of every channel: a list of `Status` events.
    pub fn status() -> Self {
        Self::new("Status")
    }

    /// `Status` of one channel, with all its variables.
    pub fn status_of(channel: &str) -> Self {
        Self::status()
            .field("Channel", channel)
            .field("AllVariables", "true")
    }

    /// `CoreSettings`: Asterisk version and limits.
    pub fn core_settings() -> Self {
        Self::new("CoreSettings")
    }

    /// `CoreStatus`: uptime and current call counts.
    pub fn core_status() -> Self {
        Self::new("CoreStatus")
    }

    /// `BridgeList`: a list of `BridgeListItem` events.
    pub fn bridge_list() -> Self {
        Self::new("BridgeList")
    }

    /// `Redirect` a channel to a dialplan location (a blind transfer that works on any
    /// channel, bridged or not).
    pub fn redirect(channel: &str, context: &str, exten: &str, priority: u32) -> Self {
        Self::new("Redirect")
            .field("Channel", channel)
            .field("Context", context)
            .field("Exten", exten)
            .field("Priority", &priority.to_string())
    }

    /// `BlindTransfer` the party bridged with `channel` to `exten@context`.
    pub fn blind_transfer(channel: &str, context: &str, exten: &str) -> Self {
        Self::new("BlindTransfer")
            .field("Channel", channel)
            .field("Context", context)
            .field("Exten", exten)
    }

    /// `Atxfer`: start an attended transfer from `channel` to `exten@context`.
    pub fn atxfer(channel: &str, context: &str, exten: &str) -> Self {
        Self::new("Atxfer")
            .field("Channel", channel)
            .field("Exten", exten)
            .field("Context", context)
    }

    /// `DBGet`: the value comes back as a `DBGetResponse` list item (`Val:`).
    pub fn db_get(family: &str, key: &str) -> Self {
        Self::new("DBGet").field("Family", family).field("Key", key)
    }

    /// `DBPut` a value into the Asterisk database.
    pub fn db_put(family: &str, key: &str, value: &str) -> Self {
        Self::new("DBPut")
            .field("Family", family)
            .field("Key", key)
            .field("Val", value)
    }

    /// `DBDel` a key from the Asterisk database.
    pub fn db_del(family: &str, key: &str) -> Self {
        Self::new("DBDel").field("Family", family).field("Key", key)
    }

    /// `QueuePause` (or unpause) a member interface, in one queue or (with `None`) all.
    pub fn queue_pause(queue: Option<&str>, interface: &str, paused: bool, reason: &str) -> Self {
        let mut a = Self::new("QueuePause").field("Interface", interface);
        if let Some(q) = queue {
            a = a.field("Queue", q);
        }
        a = a.field("Paused", if paused { "true" } else { "false" });
        if !reason.is_empty() {
            a = a.field("Reason", reason);
        }
        a
    }

    /// `QueueStatus`: `QueueParams`/`QueueMember`/`QueueEntry` list, for one queue or all.
    pub fn queue_status(queue: Option<&str>) -> Self {
        Self::with_optional("QueueStatus", "Queue", queue)
    }

    /// `QueueSummary`: one `QueueSummary` item per queue, for one queue or all.
    pub fn queue_summary(queue: Option<&str>) -> Self {
        Self::with_optional("QueueSummary", "Queue", queue)
    }

    /// `ExtensionStateList`: hint states as `ExtensionStatus` list items.
    pub fn extension_state_list() -> Self {
        Self::new("ExtensionStateList")
    }

    /// `Events`: change the event mask of this connection (`on`, `off`, `call,agent`...).
    pub fn events(mask: &str) -> Self {
        Self::new("Events").field("EventMask", mask)
    }

    fn with_optional(name: &str, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => Self::new(name).field(key, v),
            None => Self::new(name),
        }
    }
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.message.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(action: Action, expect: Expect) {
        let mut out = Vec::new();
        action.encode("id-1", &mut out);
        expect.assert_eq(&String::from_utf8(out).unwrap().replace("\r\n", "\n"));
    }

    #[test]
    fn originate_matches_the_fixture_field_order() {
        let mut o = Originate::exten("Local/15550001000@from-pstn", "pstn-caller", "s", 1);
        o.caller_id = Some("\"Jane Caller\" <15551234567>".into());
        o.timeout_ms = Some(30000);
        o.variables = vec![("IVR_DIGIT".into(), "1".into())];
        check(
            Action::originate(o),
            expect![[r#"
                Action: Originate
                ActionID: id-1
                Channel: Local/15550001000@from-pstn
                Context: pstn-caller
                Exten: s
                Priority: 1
                CallerID: "Jane Caller" <15551234567>
                Timeout: 30000
                Async: yes
                Variable: IVR_DIGIT=1

            "#]],
        );
    }

    #[test]
    fn a_line_break_in_a_value_cannot_add_fields_or_actions() {
        let action = Action::new("Originate")
            .field(
                "CallerID",
                "\"x\r\nAction: Command\r\nCommand: core stop now\" <201>",
            )
            .field("Variable", "A=1\n\nAction: Logoff");
        check(
            action,
            expect![[r#"
                Action: Originate
                ActionID: id-1
                CallerID: "x  Action: Command  Command: core stop now" <201>
                Variable: A=1  Action: Logoff

            "#]],
        );
    }

    #[test]
    fn action_id_is_written_once_right_after_action() {
        check(
            Action::hangup("PJSIP/201-00000001").field("ActionID", "mine"),
            expect![[r#"
                Action: Hangup
                ActionID: id-1
                Channel: PJSIP/201-00000001

            "#]],
        );
    }

    #[test]
    fn application_originate_and_queue_pause() {
        let mut o = Originate::application("Local/201@agents", "Wait", "1");
        o.asynchronous = false;
        check(
            Action::originate(o),
            expect![[r#"
                Action: Originate
                ActionID: id-1
                Channel: Local/201@agents
                Application: Wait
                Data: 1

            "#]],
        );
        check(
            Action::queue_pause(Some("support"), "PJSIP/201", true, "lunch"),
            expect![[r#"
                Action: QueuePause
                ActionID: id-1
                Interface: PJSIP/201
                Queue: support
                Paused: true
                Reason: lunch

            "#]],
        );
    }
}
