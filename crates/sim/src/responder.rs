//! What both fake Asterisks answer alike, on one AMI connection: the manager session
//! (Challenge, Login plain or MD5, Logoff, `Permission denied` before login), the framing of
//! responses (`Success`/`Error` with the ActionID, list answers), and the answers whose text
//! is Asterisk's own whoever serves them (Ping, Command, the AstDB's, ExtensionStateList).
//! The simulator ([`crate::simulate`]) and the replay server ([`crate::replay_server`]) each
//! answer the rest from their own PBX: generated calls, or a transcript.

use ami::{Decoder, Frame, Message};
use bytes::BytesMut;
use rand::Rng;

/// Where a response goes when the action carried no ActionID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmptyId {
    /// No `ActionID` header, as Asterisk answers (the simulator).
    Omit,
    /// An empty `ActionID:` header (the replay server).
    Echo,
}

/// What to do with the connection after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    Continue,
    Close,
}

/// What [`Responder::session`] did with an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Session {
    /// Answered (a Challenge, or an action refused before login): carry on.
    Answered,
    /// A Login refused (`Authentication failed`): Asterisk closes the socket.
    Refused,
    /// A Login accepted; `events`: unless it said `Events: off`.
    LoggedIn { events: bool },
    /// Logoff answered (`Goodbye`): close.
    Goodbye,
    /// An action of a logged-in client, not answered: the server's own to answer.
    Action,
}

/// One connection's manager session and the answers waiting to be written.
#[derive(Debug)]
pub(crate) struct Responder {
    /// Encoded answers, to write (and clear) after each action.
    pub out: Vec<u8>,
    empty_id: EmptyId,
    challenge: Option<String>,
    logged_in: bool,
}

impl Responder {
    pub fn new(empty_id: EmptyId) -> Self {
        Responder {
            out: Vec::new(),
            empty_id,
            challenge: None,
            logged_in: false,
        }
    }

    pub fn logged_in(&self) -> bool {
        self.logged_in
    }

    /// Answers the session's own actions (Challenge, Login against `username`/`secret`,
    /// Logoff) and, before login, refuses any other with `Permission denied`.
    pub fn session(&mut self, action: &Message, username: &str, secret: &str) -> Session {
        let id = action.action_id().unwrap_or_default();
        let name = action.action().unwrap_or_default();
        if name.eq_ignore_ascii_case("challenge") {
            let challenge = rand::rng()
                .random_range(100_000_000u32..1_000_000_000)
                .to_string();
            self.success(id, &[("Challenge", &challenge)]);
            self.challenge = Some(challenge);
            Session::Answered
        } else if name.eq_ignore_ascii_case("login") {
            let valid =
                ami::session::login_is_valid(action, username, secret, self.challenge.as_deref());
            if !valid {
                self.error(id, "Authentication failed");
                return Session::Refused;
            }
            self.logged_in = true;
            self.success(id, &[("Message", "Authentication accepted")]);
            Session::LoggedIn {
                events: !action
                    .get("Events")
                    .is_some_and(|e| e.eq_ignore_ascii_case("off")),
            }
        } else if name.eq_ignore_ascii_case("logoff") {
            self.response("Goodbye", id, &[("Message", "Thanks for all the fish.")]);
            Session::Goodbye
        } else if !self.logged_in {
            self.error(id, "Permission denied");
            Session::Answered
        } else {
            Session::Action
        }
    }

    /// A `Response: Success` with `fields` after the ActionID.
    pub fn success(&mut self, id: &str, fields: &[(&str, &str)]) {
        self.response("Success", id, fields);
    }

    /// A `Response: Error` with its `Message`.
    pub fn error(&mut self, id: &str, message: &str) {
        self.response("Error", id, &[("Message", message)]);
    }

    fn response(&mut self, response: &str, id: &str, fields: &[(&str, &str)]) {
        let mut m = Message::from_pairs([("Response", response)]);
        if !id.is_empty() || self.empty_id == EmptyId::Echo {
            m.push("ActionID", id);
        }
        for (k, v) in fields {
            m.push(k, v);
        }
        m.encode(&mut self.out);
    }

    /// A list answer, all of it.
    pub fn list(&mut self, answer: &ListAnswer) {
        for m in answer.messages() {
            m.encode(&mut self.out);
        }
    }

    /// `Ping`: `Pong`, at `micros` since the epoch on the server's clock.
    pub fn pong(&mut self, id: &str, micros: u64) {
        let timestamp = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
        self.success(id, &[("Ping", "Pong"), ("Timestamp", &timestamp)]);
    }

    /// `Command`: `version` for `core show version`, the CLI's complaint for any other.
    pub fn command(&mut self, id: &str, action: &Message, version: &str) {
        let output = match action.get("Command").unwrap_or_default().trim() {
            "core show version" => version.to_owned(),
            other => format!(
                "No such command '{other}' (type 'core show help {other}' for other possible commands)"
            ),
        };
        self.success(
            id,
            &[("Message", "Command output follows"), ("Output", &output)],
        );
    }

    /// `DBGet` as Asterisk's `main/db.c` answers it: the entry (`val`) as a one-item list,
    /// or an error.
    pub fn db_get(&mut self, id: &str, action: &Message, val: Option<&str>) {
        let Some(val) = val else {
            return self.error(id, "Database entry not found");
        };
        let item = Message::from_pairs([
            ("Event", "DBGetResponse"),
            ("Family", action.get("Family").unwrap_or_default()),
            ("Key", action.get("Key").unwrap_or_default()),
            ("Val", val),
            ("ActionID", id),
        ]);
        self.list(&ListAnswer::new(
            id,
            "Result will follow",
            vec![item],
            "DBGetComplete",
        ));
    }

    /// `DBPut` done.
    pub fn db_put(&mut self, id: &str) {
        self.success(id, &[("Message", "Updated database successfully")]);
    }

    /// `DBDel`: the entry was `removed`, or there was none.
    pub fn db_del(&mut self, id: &str, removed: bool) {
        if removed {
            self.success(id, &[("Message", "Key deleted successfully")]);
        } else {
            self.error(id, "Database entry not found");
        }
    }

    /// `ExtensionStateList`: an `ExtensionStatus` per hint, each `(exten, context, hint,
    /// status, status text)`.
    pub fn extension_state_list<'a>(
        &mut self,
        id: &str,
        hints: impl IntoIterator<Item = [&'a str; 5]>,
    ) {
        let items = hints
            .into_iter()
            .map(|[exten, context, hint, status, text]| {
                Message::from_pairs([
                    ("Event", "ExtensionStatus"),
                    ("ActionID", id),
                    ("Exten", exten),
                    ("Context", context),
                    ("Hint", hint),
                    ("Status", status),
                    ("StatusText", text),
                ])
            })
            .collect();
        self.list(&ListAnswer::new(
            id,
            "Extension Statuses will follow",
            items,
            "ExtensionStateListComplete",
        ));
    }
}

/// A list answer as Asterisk sends it: the `Success` response (`EventList: start`), the
/// items, the `*Complete` event with their count.
#[derive(Debug, Clone)]
pub struct ListAnswer {
    pub response: Message,
    pub items: Vec<Message>,
    pub complete: Message,
}

impl ListAnswer {
    pub fn new(id: &str, message: &str, items: Vec<Message>, complete: &str) -> ListAnswer {
        let count = items.len().to_string();
        ListAnswer {
            response: Message::from_pairs([
                ("Response", "Success"),
                ("ActionID", id),
                ("EventList", "start"),
                ("Message", message),
            ]),
            items,
            complete: Message::from_pairs([
                ("Event", complete),
                ("ActionID", id),
                ("EventList", "Complete"),
                ("ListItems", &count),
            ]),
        }
    }

    /// The item count once more, as `Items` (Status's `StatusComplete` has both).
    pub fn with_items_count(mut self) -> ListAnswer {
        let count = self.items.len().to_string();
        self.complete.push("Items", &count);
        self
    }

    /// The response, the items, the Complete event: in the order they go out.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        std::iter::once(&self.response)
            .chain(&self.items)
            .chain(std::iter::once(&self.complete))
    }
}

/// The banner a manager connection starts with.
pub(crate) fn banner(ami_version: &str) -> String {
    format!("Asterisk Call Manager/{ami_version}\r\n")
}

/// The next whole action in `buf`, if any. What does not decode is dropped and the session
/// goes on, as Asterisk does.
pub(crate) fn next_action(decoder: &mut Decoder, buf: &mut BytesMut) -> Option<Message> {
    loop {
        match decoder.decode(buf) {
            Ok(Some(Frame::Message(action))) => return Some(action),
            Ok(Some(Frame::Banner(_))) => {}
            Ok(None) => return None,
            Err(e) => tracing::debug!(error = %e, "fake Asterisk: skipped a bad action"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn answer(empty_id: EmptyId, actions: &[&[(&str, &str)]]) -> (Vec<Session>, String) {
        let mut r = Responder::new(empty_id);
        let steps = actions
            .iter()
            .map(|a| r.session(&Message::from_pairs(a.iter().copied()), "admin", "amp111"))
            .collect();
        (steps, String::from_utf8(r.out).unwrap())
    }

    /// The session, with and without ActionIDs: the simulator leaves an empty one out, as
    /// Asterisk does; the replay server echoes it.
    #[test]
    fn session_and_the_empty_action_id() {
        let actions: &[&[(&str, &str)]] = &[
            &[("Action", "Ping")],
            &[
                ("Action", "Login"),
                ("Username", "admin"),
                ("Secret", "amp111"),
                ("Events", "off"),
            ],
            &[("Action", "Ping"), ("ActionID", "7")],
            &[("Action", "Logoff")],
        ];
        let (steps, omit) = answer(EmptyId::Omit, actions);
        let (_, echo) = answer(EmptyId::Echo, actions);
        expect![[r#"[Answered, LoggedIn { events: false }, Action, Goodbye]"#]]
            .assert_eq(&format!("{steps:?}"));
        expect![[r#"
            Response: Error
            Message: Permission denied

            Response: Success
            Message: Authentication accepted

            Response: Goodbye
            Message: Thanks for all the fish.

        "#]]
        .assert_eq(&omit.replace('\r', ""));
        expect![[r#"
            Response: Error
            ActionID:
            Message: Permission denied

            Response: Success
            ActionID:
            Message: Authentication accepted

            Response: Goodbye
            ActionID:
            Message: Thanks for all the fish.

        "#]]
        .assert_eq(&echo.replace('\r', "").replace(": \n", ":\n"));
        let (steps, _) = answer(
            EmptyId::Omit,
            &[&[
                ("Action", "Login"),
                ("Username", "admin"),
                ("Secret", "nope"),
            ]],
        );
        expect![[r#"[Refused]"#]].assert_eq(&format!("{steps:?}"));
    }
}
