//! One FastAGI session, server side: waits for the environment, then sends one command at a
//! time and matches each reply to it.

use crate::command::{Command, EncodeError};
use crate::decode::{DecodeError, Decoder, Frame};
use crate::env::Environment;
use crate::reply::Reply;

/// What the session learned from the bytes it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The environment arrived; commands may be sent now.
    Ready(Environment),
    /// The reply to the command in flight; the next one may be sent now.
    Reply(Reply),
    /// The channel hung up. The session goes on: commands get `511` replies from here.
    Hangup,
    /// Input that was skipped (and why); the session goes on.
    Error(SessionError),
}

/// Input that does not fit the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("AGI reply with no command in flight: {0}")]
    UnexpectedReply(Reply),
}

/// Why a command cannot be sent now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the AGI environment has not arrived yet")]
    NotReady,
    #[error("the previous AGI command has no reply yet")]
    ReplyPending,
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingEnvironment,
    Idle,
    AwaitingReply,
}

/// The server side of an AGI session, without I/O: feed it received bytes with
/// [`handle_input`](Session::handle_input), take [`SessionEvent`]s with
/// [`poll_event`](Session::poll_event), and write what [`send`](Session::send) encodes.
///
/// ```
/// use agi::{Command, Reply, Session, SessionEvent};
///
/// let mut session = Session::new();
/// session.handle_input(b"agi_network_script: route?x=1\nagi_callerid: 15551234567\n\n");
/// let Some(SessionEvent::Ready(env)) = session.poll_event() else { panic!() };
/// assert_eq!(env.script_path(), "route");
///
/// let mut out = Vec::new();
/// session.send(&Command::GetVariable { name: "DID" }, &mut out).unwrap();
/// assert_eq!(out, b"GET VARIABLE DID\n");
///
/// session.handle_input(b"200 result=1 (15550001000)\n");
/// let Some(SessionEvent::Reply(Reply::Success(s))) = session.poll_event() else { panic!() };
/// assert_eq!(s.data.as_deref(), Some("15550001000"));
/// ```
#[derive(Debug)]
pub struct Session {
    decoder: Decoder,
    state: State,
    hung_up: bool,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    pub fn new() -> Self {
        Self::with_decoder(Decoder::new())
    }

    /// A session over a decoder with custom bounds.
    pub fn with_decoder(decoder: Decoder) -> Self {
        Session {
            decoder,
            state: State::AwaitingEnvironment,
            hung_up: false,
        }
    }

    /// Bytes received from Asterisk.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        self.decoder.feed(bytes);
    }

    /// The next event from the input so far; `None`: need more input.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        loop {
            let frame = match self.decoder.next_frame()? {
                Ok(frame) => frame,
                Err(e) => return Some(SessionEvent::Error(e.into())),
            };
            match frame {
                Frame::Environment(env) => {
                    self.state = State::Idle;
                    return Some(SessionEvent::Ready(env));
                }
                // The real reply follows; nothing changes until then.
                Frame::Trying => continue,
                Frame::Hangup => {
                    self.hung_up = true;
                    return Some(SessionEvent::Hangup);
                }
                Frame::Reply(reply) if self.state == State::AwaitingReply => {
                    self.state = State::Idle;
                    return Some(SessionEvent::Reply(reply));
                }
                Frame::Reply(reply) => {
                    return Some(SessionEvent::Error(SessionError::UnexpectedReply(reply)))
                }
            }
        }
    }

    /// Encodes `command` into `out` (to be written to the socket) and waits for its reply.
    pub fn send(&mut self, command: &Command<'_>, out: &mut Vec<u8>) -> Result<(), SendError> {
        match self.state {
            State::AwaitingEnvironment => Err(SendError::NotReady),
            State::AwaitingReply => Err(SendError::ReplyPending),
            State::Idle => {
                command.encode(out)?;
                self.state = State::AwaitingReply;
                Ok(())
            }
        }
    }

    /// Asterisk said `HANGUP`.
    pub fn is_hung_up(&self) -> bool {
        self.hung_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_enforced() {
        let mut s = Session::new();
        let mut out = Vec::new();
        assert_eq!(s.send(&Command::Answer, &mut out), Err(SendError::NotReady));
        s.handle_input(b"agi_network: yes\n\n200 result=0\n");
        assert!(matches!(s.poll_event(), Some(SessionEvent::Ready(_))));
        assert!(matches!(
            s.poll_event(),
            Some(SessionEvent::Error(SessionError::UnexpectedReply(_)))
        ));
        s.send(&Command::Answer, &mut out).unwrap();
        assert_eq!(
            s.send(&Command::Noop, &mut out),
            Err(SendError::ReplyPending)
        );
        s.handle_input(b"100 result=0 Trying...\nHANGUP\n");
        assert_eq!(s.poll_event(), Some(SessionEvent::Hangup));
        assert!(s.is_hung_up());
        s.handle_input(b"511 Command Not Permitted on a dead channel or intercept routine\n");
        assert!(matches!(
            s.poll_event(),
            Some(SessionEvent::Reply(Reply::DeadChannel(_)))
        ));
        assert_eq!(s.poll_event(), None);
        assert_eq!(out, b"ANSWER\n");
    }
}
