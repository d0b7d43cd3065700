//! Asterisk Manager Interface (AMI): the wire codec and the session logic, with no sockets.
//!
//! Bytes go in, [`Message`]s come out ([`frame`]); [`Action`]s go in, bytes come out; a
//! [`Session`] does the login and matches responses to actions.
//! Everything that touches a socket or a clock lives in the `pbxlink` binary.

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
