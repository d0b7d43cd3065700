//! What the tracker produces: the call record (one per call) and the live call events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who called whom, from the PBX's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the outside world (a trunk / DID) into the PBX.
    Inbound,
    /// From an extension out through a trunk (including click-to-call).
    Outbound,
    /// Between extensions (and to PBX features such as conferences).
    Internal,
}

/// How the call ended, as a CRM user understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// A person (or the external party) answered.
    Answered,
    /// Rang, nobody answered (including queue abandon after ringing and ring-group timeout).
    NoAnswer,
    /// The callee was busy (486 / DND).
    Busy,
    /// The call failed (congestion, unreachable, bad number).
    Failed,
    /// The caller hung up while it was ringing.
    Cancelled,
}

/// Blind or attended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// The transferrer sent the call on without talking to the target first.
    Blind,
    /// The transferrer consulted the target, then joined the two.
    Attended,
}

/// One transfer within a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Blind or attended.
    pub kind: TransferKind,
    /// Extension (or number) that transferred the call.
    pub from: Option<String>,
    /// Extension (or number) the call went to.
    pub to: Option<String>,
    /// When the transfer happened.
    pub at: DateTime<Utc>,
}

/// One step of the call story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Machine-readable step (`started`, `ivr`, `dtmf`, `queue`, `ringing`, `answered`,
    /// `transferred`, `hangup`, `recording`, ...).
    pub what: String,
    /// Human-readable detail ("pressed 2", "rang 201", "hung up by caller").
    pub detail: String,
}

/// The finished call: what lands in the journal and the CRM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The call's Linkedid (stable across all legs of the call).
    pub id: String,
    /// Inbound, outbound or internal.
    pub direction: Direction,
    /// Caller number (external number for inbound, extension for outbound/internal).
    pub from: Option<String>,
    /// Dialed number: the DID for inbound, the number dialed for outbound/internal.
    pub to: Option<String>,
    /// Caller name when known.
    pub caller_name: Option<String>,
    /// When the first channel of the call appeared.
    pub started_at: DateTime<Utc>,
    /// When a person first answered (not an IVR or announcement).
    pub answered_at: Option<DateTime<Utc>>,
    /// When the last channel hung up.
    pub ended_at: DateTime<Utc>,
    /// Seconds the caller waited for a person: from the start (or from leaving the IVR
    /// menu) to the answer; when unanswered, to the end of the last dial (not of the
    /// announcement that may follow it).
    pub ring_seconds: u64,
    /// Seconds from the answer (for a conference: from joining the room) to the end.
    pub talk_seconds: u64,
    /// How it ended.
    pub disposition: Disposition,
    /// Extension (or external number) that answered first.
    pub answered_by: Option<String>,
    /// Extensions whose phones really rang, in order.
    pub rang: Vec<String>,
    /// Transfers, in order.
    pub transfers: Vec<Transfer>,
    /// Queue the call went through, if any.
    pub queue: Option<String>,
    /// MixMonitor file, if the call was recorded.
    pub recording: Option<String>,
    /// Channel names of every leg.
    pub legs: Vec<String>,
    /// The call story.
    pub timeline: Vec<TimelineEntry>,
    /// Where the record comes from, and which of its moments pbxlink did not see.
    #[serde(flatten)]
    pub provenance: Provenance,
}

/// Where a call record comes from, and what of the call happened while pbxlink was not
/// receiving the PBX's events (a pbxlink restart, an AMI link drop, a PBX restart). A time
/// that fell in such a gap is known only within its bounds; the record says so instead of
/// stretching the call to the reconnect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// What the record was built from.
    #[serde(default)]
    pub source: Source,
    /// Every gap in the event stream while the call was in progress: what happened in
    /// them (a transfer, a second ring) is not in the story. The three fields below say which
    /// of the call's moments fell in one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
    /// The call began inside this gap (or before pbxlink first listened): it was found in
    /// progress in the PBX's channel list, `started_at` is what the PBX says of the channel's
    /// age, and what happened before the listing is not in the timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_in_gap: Option<Gap>,
    /// The call ended inside this gap: `ended_at` is `from`, the last moment the call was
    /// known alive, so talk time is never inflated by the outage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_in_gap: Option<Gap>,
    /// The call was answered inside this gap: `answered_at` is `to`, the first moment it was
    /// seen answered (the talk time counts only what is certain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_in_gap: Option<Gap>,
}

/// What a call record was built from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The PBX's AMI events (with the state lists read at each login).
    #[default]
    Ami,
    /// AMI events, with what fell in a gap (answer, end, who answered) taken from the
    /// PBX's CDR.
    AmiCdr,
    /// The PBX's CDR alone: the call began and ended while pbxlink was not listening.
    Cdr,
}

/// A stretch of time in which pbxlink received none of the PBX's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// The last moment events were still received.
    pub from: DateTime<Utc>,
    /// When the PBX's state was read again (the state lists after the login).
    pub to: DateTime<Utc>,
}

/// `between 10:04:08 and 10:04:09`: the bounds as the call story says them.
impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (from, to) = (self.from.format("%H:%M:%S"), self.to.format("%H:%M:%S"));
        write!(f, "between {from} and {to}")
    }
}

impl Gap {
    /// Whether `at` lies within the gap (bounds included).
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from <= at && at <= self.to
    }
}

/// What a live call event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum CallEventKind {
    /// A new call appeared.
    #[serde(rename = "call.started")]
    Started {
        /// Inbound, outbound or internal (best knowledge at start).
        direction: Direction,
        /// Caller.
        from: Option<String>,
        /// Dialed number.
        to: Option<String>,
    },
    /// These extensions are ringing now.
    #[serde(rename = "call.ringing")]
    Ringing {
        /// Extensions ringing (all at once for ring groups / ringall queues).
        extensions: Vec<String>,
    },
    /// Somebody answered.
    #[serde(rename = "call.answered")]
    Answered {
        /// Who answered.
        by: Option<String>,
    },
    /// The call was transferred.
    #[serde(rename = "call.transferred")]
    Transferred {
        /// The transfer.
        transfer: Transfer,
    },
    /// The call ended; the record follows.
    #[serde(rename = "call.ended")]
    Ended {
        /// How it ended.
        disposition: Disposition,
    },
}

/// A live call event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    /// The call (Linkedid).
    pub call_id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    #[serde(flatten)]
    pub kind: CallEventKind,
}
