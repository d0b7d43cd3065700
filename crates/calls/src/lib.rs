//! Call tracking: a pure state machine that turns the raw AMI event stream into calls.
//!
//! Fed `(now, &ami::Message)`; never reads the clock, never does I/O. Emits high-level
//! [`CallEvent`]s while a call runs and one [`CallRecord`] when it ends.

pub mod record;

pub use record::{
    CallEvent, CallEventKind, CallRecord, Direction, Disposition, TimelineEntry, Transfer,
    TransferKind,
};
