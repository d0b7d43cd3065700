//! Asterisk Manager Interface (AMI): the wire codec and the session logic, with no sockets.
//!
//! Bytes go in, [`Message`]s come out ([`frame`]); [`Action`]s go in, bytes come out; a
//! [`Session`] does the login and matches responses to actions.
//! Everything that touches a socket or a clock lives in the `pbxlink` binary.
//!
//! ```
//! use ami::{Action, AuthMethod, Credentials, Session, SessionEvent};
//!
//! let creds = Credentials {
//!     username: "admin".into(),
//!     secret: "s3cret".into(),
//!     auth: AuthMethod::Plain,
//!     events: "on".into(),
//! };
//! let mut session = Session::with_id_prefix(creds, "x");
//! let ping = session.send_action(Action::ping()); // queued until logged in
//!
//! session.handle_input(b"Asterisk Call Manager/11.0.0\r\n");
//! let login = session.poll_transmit().unwrap(); // write this to the socket
//! assert!(login.starts_with(b"Action: Login\r\nActionID: x-2\r\nUsername: admin\r\n"));
//!
//! session.handle_input(b"Response: Success\r\nActionID: x-2\r\nMessage: Authentication accepted\r\n\r\n");
//! assert!(session.is_logged_in());
//! assert_eq!(&session.poll_transmit().unwrap()[..], b"Action: Ping\r\nActionID: x-1\r\n\r\n");
//!
//! session.handle_input(b"Response: Success\r\nActionID: x-1\r\nPing: Pong\r\n\r\n");
//! let events: Vec<_> = std::iter::from_fn(|| session.poll_event()).collect();
//! assert!(matches!(&events[..], [
//!     SessionEvent::Greeting(_),
//!     SessionEvent::LoggedIn,
//!     SessionEvent::ActionDone { id, result },
//! ] if *id == ping && result.is_success()));
//! ```

pub mod action;
pub mod ajam;
pub mod event;
pub mod frame;
pub mod message;
pub mod session;

pub use action::{Action, Originate, OriginateTarget};
pub use frame::{Banner, DecodeError, Decoder, Frame};
pub use message::Message;
pub use session::{ActionId, ActionResult, AuthMethod, Credentials, Session, SessionEvent};
