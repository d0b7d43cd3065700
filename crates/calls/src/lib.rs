//! Call tracking: a pure state machine that turns the raw AMI event stream into calls.
//!
//! Fed `(now, &ami::Message)`; never reads the clock, never does I/O. Emits high-level
//! [`CallEvent`]s while a call runs and one [`CallRecord`] when it ends.
//!
//! # Invariants
//!
//! - **A call is a Linkedid conversation**, as a CRM user sees it: a transferred call stays
//!   one call; ring group / queue member legs, Local channel halves and the attended-transfer
//!   consult leg are legs of it. A call starts at the `Newchannel` whose Uniqueid equals its
//!   Linkedid and ends when its last channel hangs up. Exceptions that follow the real
//!   signals: a Pickup moves the picker's channel into the picked-up call (the picker's
//!   own Linkedid never becomes a call); in a ConfBridge every participant is its own call.
//! - **Parties are learned from the PBX, never from context names** ([`party::Directory`]):
//!   a SIP/IAX2 endpoint is a phone when the config maps it, when the PBX's configuration
//!   gives it an extension as caller ID (`PJSIPShowEndpoint`, `SIPshowpeer`, read at login),
//!   when its name is an extension (`PJSIP/201-…`), or when its channels carry an extension
//!   as their own caller ID (`SIP/7001234501-…` with caller ID 201); it is a trunk when the
//!   config says so, when it is dialed with a number (`15551234567@carrier`), or when it
//!   brings calls from several numbers. A trunk's party is the number it was dialed with
//!   (`DialString`) or its caller ID; `Local/201#@…`/`Local/203@from-queue` stand for 201/203.
//!   Every identification not plain from the name is written in the call story ("party").
//!   A Local `;1` whose `;2` dials onwards is only a hop; the phone it dials is the party.
//! - **Who answered** is the first party whose dial ended `ANSWER` (the picker for a pickup,
//!   the external number for an outbound or forwarded call, the room for a conference).
//!   The PBX answering for an IVR, a queue or an announcement is not a person answering.
//! - **Durations**: ring time is the caller's wait for a person, so IVR menu time does
//!   not count (the menu ends when the caller is dialed on or joins a queue), nor does the
//!   click-to-call agent's own ringing (the originate leg); a conference answers at once
//!   and its talk time is the time in the room.
//! - **Rang** lists the phones dialed for the call (a SIP phone that answers 486 was dialed,
//!   so it rang), in order; the click-to-call agent leg rings first.
//! - **Only the PBX's word fills a gap**: events of channels whose call start was not seen
//!   (attached mid-call, lost events) are ignored, so no record is ever invented from them.
//!   The channel list read after each login (`Status`, then `CoreShowChannels`) is the PBX's
//!   own account, and the tracker reconciles with it (`tracker/resync.rs`): tracked channels
//!   it no longer lists hung up in the gap, listed channels join their call or start it (a
//!   call found in progress), a caller now bridged to a party was answered by it. Whatever
//!   fell in a gap is flagged on the record (`started_in_gap`, `answered_in_gap`,
//!   `ended_in_gap` with the gap's bounds), and a call that ended in a gap ends at the gap's
//!   start (the last moment it was known alive): an outage never lengthens a call.
//! - **Bounded memory**: a channel is forgotten at its Hangup, a call when it ends.
//!
//! Deliberately not done: no clock (every entry point takes `now`), no I/O, no deadlines
//! (a call ends on its last Hangup; trailing `Cdr` events are not needed), no parsing of
//! `Cdr` events.

pub mod active;
pub mod cdr;
pub mod party;
pub mod presence;
pub mod record;
pub mod tracker;

pub use active::{ActiveCall, ActiveCalls};
pub use cdr::{CdrRow, CdrZone, CsvLayout};
pub use party::{Directory, Kind, Rule, TrackerConfig};
pub use presence::{ExtensionState, HintState, Presence, QueueMembership};
pub use record::{
    CallEvent, CallEventKind, CallRecord, Direction, Disposition, Gap, Provenance, Source,
    TimelineEntry, Transfer, TransferKind,
};
pub use tracker::{Resync, Tracker};
