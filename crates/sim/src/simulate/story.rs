//! What a generated call is made of besides its events: its ground truth (`Truth`, the
//! shape of `expected.json`), the facts gathered while it is built (`Story`), and who takes
//! part (PSTN callers, extensions). Every kind of call — `scenario` and `local` — uses them.

use calls::{Direction, Disposition, TransferKind};
use rand::Rng;
use serde::Serialize;

use super::call::CallBuilder;

/// One transfer in the ground truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TruthTransfer {
    pub kind: TransferKind,
    pub from: String,
    pub to: String,
}

/// What the generator knows about a call: the shape of `expected.json` calls, plus the
/// Linkedid that identifies the call in the stream and the scenario that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Truth {
    pub linkedid: String,
    pub scenario: &'static str,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub disposition: Disposition,
    pub answered_by: Option<String>,
    pub rang: Vec<String>,
    pub transfers: Vec<TruthTransfer>,
    pub recording: bool,
    pub talk_seconds_approx: u64,
    pub ring_seconds_approx: u64,
    /// Virtual times (ms since the Unix epoch) of the call's first and last event: when the
    /// PBX had the call up, to tell a client's downtime that covered it.
    pub started_ms: u64,
    pub ended_ms: u64,
}

// Callers from the PSTN.
pub(super) const CALLER_NAMES: [&str; 8] = [
    "Jane Caller",
    "John Public",
    "Mary Major",
    "Peter Price",
    "Linda Lake",
    "Oscar Owens",
    "Nina Noble",
    "Victor Vance",
];

/// A random external number, NANP-shaped (1NXXNXXXXXX).
pub(super) fn pstn_number(b: &mut CallBuilder) -> String {
    let area = b.rng.random_range(200..1000);
    let office = b.rng.random_range(200..1000);
    let line = b.rng.random_range(0..10000);
    format!("1{area}{office}{line:04}")
}

pub(super) fn pick_ext(b: &mut CallBuilder) -> String {
    let exts = &b.dir.extensions;
    exts[b.rng.random_range(0..exts.len())].clone()
}

/// The call being built, with the facts the truth needs.
pub(super) struct Story {
    pub(super) start: u64,
    pub(super) answered: Option<u64>,
    pub(super) answered_by: Option<String>,
    pub(super) rang: Vec<String>,
    pub(super) transfers: Vec<TruthTransfer>,
    pub(super) disposition: Disposition,
}

impl Story {
    pub(super) fn new(start: u64) -> Self {
        Story {
            start,
            answered: None,
            answered_by: None,
            rang: Vec::new(),
            transfers: Vec::new(),
            disposition: Disposition::NoAnswer,
        }
    }

    pub(super) fn answer(&mut self, at: u64, by: &str) {
        if self.answered.is_none() {
            self.answered = Some(at);
            self.answered_by = Some(by.to_owned());
            self.disposition = Disposition::Answered;
        }
    }
}
