//! AMI session logic, sans-IO: login (plain or MD5 challenge), ActionID assignment and
//! correlation, and folding list responses (`EventList: start` ... `*Complete`) into one result.
//!
//! The caller owns the socket: it feeds received bytes to [`Session::handle_input`], writes
//! what [`Session::poll_transmit`] returns, and reads [`SessionEvent`]s from
//! [`Session::poll_event`]. Nothing here blocks, spawns or reads a clock.

use std::collections::VecDeque;
use std::fmt;

use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};

use crate::{Action, Banner, DecodeError, Decoder, Frame, Message};

/// How the session proves the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `Secret:` in clear text.
    Plain,
    /// `Challenge` first, then `Key: md5(challenge + secret)`: the secret never crosses the wire.
    Md5,
}

/// What [`Session`] logs in with.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `manager.conf` user name.
    pub username: String,
    /// Its secret.
    pub secret: String,
    /// Plain or MD5.
    pub auth: AuthMethod,
    /// `Events:` mask sent with the login (`on`, `off`, `call,agent`...); empty: no `Events:`
    /// line, so Asterisk applies the user's `read` permissions.
    pub events: String,
}

// The secret stays out of logs.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("auth", &self.auth)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// The `ActionID` of a sent action.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActionId(pub String);

impl fmt::Display for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A completed action: the response, plus the items of a list response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    /// The `Response:` message.
    pub response: Message,
    /// For list responses: the events between `EventList: start` and the end of the list.
    pub items: Vec<Message>,
    /// For list responses: the closing event (`CoreShowChannelsComplete`, `ListItems: N`...).
    pub complete: Option<Message>,
}

impl ActionResult {
    /// `Response: Success` (or `Goodbye`/`Follows`, which are successes too).
    pub fn is_success(&self) -> bool {
        self.response.response().is_some_and(|r| {
            ["Success", "Goodbye", "Follows"]
                .iter()
                .any(|ok| ok.eq_ignore_ascii_case(r))
        })
    }

    /// The `Message:` of the response (the error text when it failed).
    pub fn message(&self) -> Option<&str> {
        self.response.get("Message")
    }

    /// `Command` output lines. Both wire forms end up as `Output:` fields: Asterisk 14+ sends
    /// them so, and the decoder rewrites the old `Response: Follows` body into them.
    pub fn output(&self) -> Vec<&str> {
        self.response.get_all("Output").collect()
    }
}

/// What the session reports to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The AMI greeting; the session has queued its login.
    Greeting(Banner),
    /// Login accepted; queued actions are now being transmitted.
    LoggedIn,
    /// Login refused, with Asterisk's message (`Authentication failed`). Asterisk closes the
    /// connection next; queued actions come back from [`Session::connection_lost`].
    LoginFailed {
        /// Asterisk's `Message:`.
        message: String,
    },
    /// An unsolicited event, including `FullyBooted` and events carrying the ActionID of an
    /// action that is already done (`OriginateResponse`).
    Event(Message),
    /// An action got its response (and, for list actions, its whole list).
    ActionDone {
        /// The action's ID.
        id: ActionId,
        /// Its response.
        result: ActionResult,
    },
    /// A response whose ActionID matches no action in flight (e.g. answers to actions sent
    /// on a previous connection); kept rather than dropped.
    UnmatchedResponse(Message),
    /// The decoder skipped bad input; the session carries on.
    Malformed(DecodeError),
}

/// Where the login stands.
#[derive(Debug)]
enum LoginState {
    AwaitingBanner,
    Challenging(ActionId),
    LoggingIn(ActionId),
    LoggedIn,
    Failed,
}

#[derive(Debug)]
struct InFlight {
    id: ActionId,
    action: Action,
    /// Set once the response said `EventList: start`: the list being collected.
    list: Option<ActionResult>,
}

/// One AMI connection's protocol state. See the module docs for how to drive it.
#[derive(Debug)]
pub struct Session {
    creds: Credentials,
    id_prefix: String,
    next_id: u64,
    decoder: Decoder,
    rx: BytesMut,
    login: LoginState,
    /// Sent, awaiting their response, in send order (Asterisk answers in order, so on a
    /// repeated explicit ActionID the oldest action is the one answered).
    in_flight: VecDeque<InFlight>,
    /// Waiting for the login to succeed.
    queued: VecDeque<(ActionId, Action)>,
    events: VecDeque<SessionEvent>,
    transmit: VecDeque<Bytes>,
}

/// The MD5 login key: lowercase hex of `md5(challenge + secret)`.
pub fn md5_key(challenge: &str, secret: &str) -> String {
    let mut h = Md5::new();
    h.update(challenge.as_bytes());
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// The server side of a login: whether `login` (an `Action: Login`) carries `username` and
/// either the plain `Secret` or, after a `Challenge` was issued, the MD5 `Key`. Used by the
/// AMI servers pbxlink runs for tests and demos, so they accept exactly what Asterisk does.
pub fn login_is_valid(
    login: &Message,
    username: &str,
    secret: &str,
    challenge: Option<&str>,
) -> bool {
    if login.get("Username") != Some(username) {
        return false;
    }
    let md5 = login
        .get("AuthType")
        .is_some_and(|a| a.eq_ignore_ascii_case("md5"));
    match (challenge, md5) {
        (Some(challenge), true) => login
            .get("Key")
            .is_some_and(|k| k.eq_ignore_ascii_case(&md5_key(challenge, secret))),
        // MD5 without a Challenge first: Asterisk refuses it.
        (None, true) => false,
        (_, false) => login.get("Secret") == Some(secret),
    }
}

impl Session {
    /// A session generating ActionIDs `pbxlink-1`, `pbxlink-2`...
    pub fn new(creds: Credentials) -> Self {
        Self::with_id_prefix(creds, "pbxlink")
    }

    /// A session generating ActionIDs `<prefix>-1`, `<prefix>-2`... (the login takes the
    /// first ones).
    pub fn with_id_prefix(creds: Credentials, prefix: &str) -> Self {
        Session {
            creds,
            id_prefix: prefix.to_owned(),
            next_id: 1,
            decoder: Decoder::new(),
            rx: BytesMut::new(),
            login: LoginState::AwaitingBanner,
            in_flight: VecDeque::new(),
            queued: VecDeque::new(),
            events: VecDeque::new(),
            transmit: VecDeque::new(),
        }
    }

    /// Feeds bytes read from the socket.
    pub fn handle_input(&mut self, data: &[u8]) {
        self.rx.extend_from_slice(data);
        loop {
            match self.decoder.decode(&mut self.rx) {
                Ok(Some(Frame::Banner(b))) => self.on_banner(b),
                Ok(Some(Frame::Message(m))) => self.on_message(m),
                Ok(None) => break,
                Err(e) => self.events.push_back(SessionEvent::Malformed(e)),
            }
        }
    }

    /// The next thing to report, if any.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The next bytes to write to the socket, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    /// Queues `action` (sent at once when logged in, after the login otherwise) and returns
    /// its ActionID: the action's own `ActionID` field if it has one, a fresh one otherwise.
    pub fn send_action(&mut self, action: Action) -> ActionId {
        let id = match action.action_id() {
            Some(explicit) => ActionId(explicit.to_owned()),
            None => self.fresh_id(),
        };
        if self.is_logged_in() {
            self.transmit_action(id.clone(), action);
        } else {
            self.queued.push_back((id.clone(), action));
        }
        id
    }

    /// The connection is gone: returns the actions in flight, then the queued ones, for the
    /// caller to resend or fail, and resets the session for a new connection (ActionIDs keep
    /// counting, so late answers from the old connection cannot be mistaken for new ones).
    pub fn connection_lost(&mut self) -> Vec<(ActionId, Action)> {
        let mut lost: Vec<_> = self.in_flight.drain(..).map(|f| (f.id, f.action)).collect();
        lost.extend(self.queued.drain(..));
        self.decoder = Decoder::new();
        self.rx.clear();
        self.transmit.clear();
        self.login = LoginState::AwaitingBanner;
        lost
    }

    /// True once the login was accepted (and until the connection is lost).
    pub fn is_logged_in(&self) -> bool {
        matches!(self.login, LoginState::LoggedIn)
    }

    fn fresh_id(&mut self) -> ActionId {
        let id = ActionId(format!("{}-{}", self.id_prefix, self.next_id));
        self.next_id += 1;
        id
    }

    fn transmit_action(&mut self, id: ActionId, action: Action) {
        self.transmit_raw(&id, &action);
        self.in_flight.push_back(InFlight {
            id,
            action,
            list: None,
        });
    }

    fn transmit_raw(&mut self, id: &ActionId, action: &Action) {
        let mut out = Vec::new();
        action.encode(&id.0, &mut out);
        self.transmit.push_back(out.into());
    }

    fn on_banner(&mut self, banner: Banner) {
        self.events.push_back(SessionEvent::Greeting(banner));
        if !matches!(self.login, LoginState::AwaitingBanner) {
            return;
        }
        let id = self.fresh_id();
        match self.creds.auth {
            AuthMethod::Plain => {
                let login = self
                    .login_action()
                    .field("Secret", &self.creds.secret.clone());
                self.send_login(id, login);
            }
            AuthMethod::Md5 => {
                let challenge = Action::new("Challenge").field("AuthType", "MD5");
                self.transmit_raw(&id, &challenge);
                self.login = LoginState::Challenging(id);
            }
        }
    }

    /// `Login` with `Username`, to which the caller adds the proof; `Events` goes last.
    fn login_action(&self) -> Action {
        let mut login = Action::new("Login");
        if self.creds.auth == AuthMethod::Md5 {
            login = login.field("AuthType", "MD5");
        }
        login.field("Username", &self.creds.username)
    }

    fn send_login(&mut self, id: ActionId, mut login: Action) {
        if !self.creds.events.is_empty() {
            login = login.field("Events", &self.creds.events);
        }
        self.transmit_raw(&id, &login);
        self.login = LoginState::LoggingIn(id);
    }

    fn on_message(&mut self, msg: Message) {
        if msg.response().is_some() {
            self.on_response(msg);
        } else {
            self.on_event(msg);
        }
    }

    fn on_response(&mut self, msg: Message) {
        let ok = msg
            .response()
            .is_some_and(|r| r.eq_ignore_ascii_case("Success"));
        // Some AMI proxies drop the ActionID of login answers; before login any answer is
        // the login's.
        let for_login = |id: &ActionId| msg.action_id().is_none_or(|a| a == id.0);
        match &self.login {
            LoginState::Challenging(id) if for_login(id) => {
                match msg.get("Challenge").filter(|_| ok) {
                    Some(challenge) => {
                        let key = md5_key(challenge, &self.creds.secret);
                        let login = self.login_action().field("Key", &key);
                        let id = self.fresh_id();
                        self.send_login(id, login);
                    }
                    None => self.login_failed(&msg),
                }
                return;
            }
            LoginState::LoggingIn(id) if for_login(id) => {
                if ok {
                    self.login = LoginState::LoggedIn;
                    self.events.push_back(SessionEvent::LoggedIn);
                    while let Some((id, action)) = self.queued.pop_front() {
                        self.transmit_action(id, action);
                    }
                } else {
                    self.login_failed(&msg);
                }
                return;
            }
            _ => {}
        }
        let Some(pos) = msg.action_id().and_then(|a| {
            self.in_flight
                .iter()
                .position(|f| f.list.is_none() && f.id.0 == a)
        }) else {
            self.events.push_back(SessionEvent::UnmatchedResponse(msg));
            return;
        };
        let result = ActionResult {
            response: msg,
            items: Vec::new(),
            complete: None,
        };
        let starts_list = result
            .response
            .get("EventList")
            .is_some_and(|v| v.eq_ignore_ascii_case("start"));
        if starts_list && result.is_success() {
            self.in_flight[pos].list = Some(result);
        } else {
            self.finish(pos, result);
        }
    }

    fn login_failed(&mut self, msg: &Message) {
        self.login = LoginState::Failed;
        self.events.push_back(SessionEvent::LoginFailed {
            message: msg.get("Message").unwrap_or_default().to_owned(),
        });
    }

    fn on_event(&mut self, msg: Message) {
        let pos = msg.action_id().and_then(|a| {
            self.in_flight
                .iter()
                .position(|f| f.list.is_some() && f.id.0 == a)
        });
        let Some(pos) = pos else {
            self.events.push_back(SessionEvent::Event(msg));
            return;
        };
        let ends_list = msg.get("EventList").is_some_and(|v| {
            v.eq_ignore_ascii_case("Complete") || v.eq_ignore_ascii_case("Cancelled")
        }) || msg.event().is_some_and(ends_with_complete);
        let Some(list) = self.in_flight[pos].list.as_mut() else {
            return;
        };
        if ends_list {
            list.complete = Some(msg);
            if let Some(result) = self.in_flight[pos].list.take() {
                self.finish(pos, result);
            }
        } else {
            list.items.push(msg);
        }
    }

    fn finish(&mut self, pos: usize, result: ActionResult) {
        if let Some(done) = self.in_flight.remove(pos) {
            self.events.push_back(SessionEvent::ActionDone {
                id: done.id,
                result,
            });
        }
    }
}

fn ends_with_complete(name: &str) -> bool {
    const SUFFIX: &str = "Complete";
    name.len() >= SUFFIX.len()
        && name.as_bytes()[name.len() - SUFFIX.len()..].eq_ignore_ascii_case(SUFFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    /// Logs a plain session in, sends `actions`, feeds `rx` (LF line ends, `\n` turned into
    /// CRLF), and renders every event and the final in-flight/queued actions.
    fn check(actions: Vec<Action>, rx: &str, expect: Expect) {
        let mut s = Session::with_id_prefix(
            Credentials {
                username: "u".into(),
                secret: "s".into(),
                auth: AuthMethod::Plain,
                events: "off".into(),
            },
            "t",
        );
        s.handle_input(
            b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: t-1\r\n\r\n",
        );
        for a in actions {
            s.send_action(a);
        }
        s.handle_input(rx.replace('\n', "\r\n").as_bytes());
        let mut out = String::new();
        while let Some(ev) = s.poll_event() {
            out.push_str(&format!("{ev:?}\n"));
        }
        out.push_str(&format!("lost: {:?}\n", s.connection_lost()));
        expect.assert_eq(&out);
    }

    #[test]
    fn old_command_form_and_failed_list_action() {
        check(
            vec![Action::command("core show version"), Action::queue_status(Some("nope"))],
            "Response: Follows\nActionID: t-2\nAsterisk 13.38.3\n--END COMMAND--\n\nResponse: Error\nActionID: t-3\nMessage: No such queue\n\n",
            expect![[r#"
                Greeting(Banner { product: "Asterisk Call Manager", ami_version: "11.0.0" })
                LoggedIn
                ActionDone { id: ActionId("t-2"), result: ActionResult { response: ["Response: Follows", "ActionID: t-2", "Output: Asterisk 13.38.3"], items: [], complete: None } }
                ActionDone { id: ActionId("t-3"), result: ActionResult { response: ["Response: Error", "ActionID: t-3", "Message: No such queue"], items: [], complete: None } }
                lost: []
            "#]],
        );
    }

    #[test]
    fn unfinished_list_and_unanswered_actions_come_back_in_send_order() {
        check(
            vec![Action::ping(), Action::db_get("cidname", "100")],
            "Response: Success\nActionID: t-3\nEventList: start\n\nEvent: DBGetResponse\nActionID: t-3\nVal: x\n\nEvent: Newchannel\n\n",
            expect![[r#"
                Greeting(Banner { product: "Asterisk Call Manager", ami_version: "11.0.0" })
                LoggedIn
                Event(["Event: Newchannel"])
                lost: [(ActionId("t-2"), ["Action: Ping"]), (ActionId("t-3"), ["Action: DBGet", "Family: cidname", "Key: 100"])]
            "#]],
        );
    }
}
