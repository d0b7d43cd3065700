//! FastAGI: the codec and session logic for Asterisk Gateway Interface sessions, with no sockets.
//!
//! Asterisk connects (`AGI(agi://host:4573/route?x=1)`), sends its `agi_*`
//! [`Environment`], then waits for commands; each [`Command`] gets one [`Reply`]. The
//! [`Session`] keeps that order; the [`decode`] module turns bytes into frames. Sockets,
//! tasks and timeouts live in the `pbxlink` binary.

pub mod command;
pub mod decode;
pub mod env;
pub mod reply;
pub mod session;

pub use command::{Command, EncodeError, TddMode, MAX_COMMAND_LEN};
pub use decode::{DecodeError, Decoder, Frame};
pub use env::Environment;
pub use reply::{Reply, Success};
pub use session::{SendError, Session, SessionError, SessionEvent};
