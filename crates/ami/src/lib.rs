//! Asterisk Manager Interface (AMI): the wire codec and the session logic, with no sockets.
//!
//! Bytes go in, [`Message`]s come out ([`frame`]); actions go in, bytes come out.
//! Everything that touches a socket or a clock lives in the `pbxlink` binary.

pub mod frame;
pub mod message;

pub use frame::{Banner, DecodeError, Decoder, Frame};
pub use message::Message;
