//! The simulated PBX's configuration (extensions, ring groups, queues, DIDs) and its mutable
//! state (AstDB, paused queue members), shaped after the asterisk-22-pjsip lab's FreePBX dialplan.

use std::collections::{BTreeMap, BTreeSet};

use super::style::Style;

/// Caller ID of the outbound route, kept as the caller for call-forwarded calls.
pub const OFFICE_CID: (&str, &str) = ("15550001000", "Lab Office");
/// The conference room (FreePBX `ext-meetme`).
pub const CONFERENCE: &str = "8000";
/// DID that goes to the IVR.
pub const IVR_DID: &str = "15550001003";
/// DID that goes to the conference room.
pub const CONFERENCE_DID: &str = "15550001006";

const NAMES: [&str; 20] = [
    "Alice Anderson",
    "Bob Brown",
    "Carol Chen",
    "Dave Diaz",
    "Erin Evans",
    "Frank Fischer",
    "Grace Garcia",
    "Henry Hughes",
    "Irene Ito",
    "Jack Jones",
    "Karen Kim",
    "Leo Lopez",
    "Maria Miller",
    "Nick Nolan",
    "Olga Orlova",
    "Paul Patel",
    "Quinn Quade",
    "Rosa Reyes",
    "Sam Smith",
    "Tina Torres",
];

/// A ring group: FreePBX `ext-group` with ringall strategy.
#[derive(Debug, Clone)]
pub struct RingGroup {
    pub number: &'static str,
    pub did: &'static str,
    pub title: &'static str,
    pub seconds: u64,
    pub members: Vec<String>,
}

/// A queue: FreePBX `ext-queues`, members are `Local/<ext>@from-queue/n`.
#[derive(Debug, Clone)]
pub struct Queue {
    pub number: &'static str,
    pub did: &'static str,
    pub title: &'static str,
    pub members: Vec<String>,
}

/// Extensions, ring groups and queues of the simulated PBX.
#[derive(Debug, Clone)]
pub struct Directory {
    pub extensions: Vec<String>,
    pub ring_groups: Vec<RingGroup>,
    pub queues: Vec<Queue>,
    /// Unix time the simulated Asterisk started (queue member `LoginTime`).
    pub boot_epoch: u64,
    /// How the PBX names its endpoints, contexts and dial strings.
    pub style: Style,
}

impl Directory {
    /// Builds the PBX for `extensions` (at least one); groups and queues use the first few.
    pub fn new(extensions: Vec<String>, boot_epoch: u64, style: Style) -> Self {
        let pick = |idx: &[usize]| -> Vec<String> {
            let mut v: Vec<String> = idx
                .iter()
                .map(|&i| extensions[i % extensions.len()].clone())
                .collect();
            let mut seen = BTreeSet::new();
            v.retain(|e| seen.insert(e.clone()));
            v
        };
        let ring_groups = vec![
            RingGroup {
                number: "600",
                did: "15550001000",
                title: "Front Desk",
                seconds: 20,
                members: pick(&[0, 1, 2]),
            },
            RingGroup {
                number: "601",
                did: "15550001001",
                title: "After hours",
                seconds: 15,
                members: pick(&[1, 0, 2]),
            },
            RingGroup {
                number: "602",
                did: "15550001008",
                title: "Warehouse",
                seconds: 10,
                members: pick(&[0, 3]),
            },
        ];
        let queues = vec![
            Queue {
                number: "600",
                did: "15550001004",
                title: "Support",
                members: pick(&[0, 2, 4]),
            },
            Queue {
                number: "601",
                did: "15550001007",
                title: "Sales",
                members: pick(&[1, 0, 3]),
            },
        ];
        Directory {
            extensions,
            ring_groups,
            queues,
            boot_epoch,
            style,
        }
    }

    /// The caller ID name of an extension.
    pub fn name(&self, ext: &str) -> String {
        let idx = self.extensions.iter().position(|e| e == ext);
        match idx.and_then(|i| NAMES.get(i)) {
            Some(n) => (*n).to_owned(),
            None => format!("Extension {ext}"),
        }
    }

    /// The DID that rings one extension directly (`from-did-direct`).
    pub fn direct_did(ext: &str) -> String {
        format!("1555000{ext:0>4}")
    }

    /// Queues an extension is a member of (each phone state change is reported per queue).
    pub fn queues_of<'a>(&'a self, ext: &'a str) -> impl Iterator<Item = &'a Queue> + 'a {
        self.queues
            .iter()
            .filter(move |q| q.members.iter().any(|m| m == ext))
    }
}

/// What the AMI actions can change: AstDB (CF/DND like FreePBX) and paused queue members.
#[derive(Debug, Clone, Default)]
pub struct PbxState {
    pub astdb: BTreeMap<String, String>,
    /// `(queue, interface)` pairs paused with QueuePause.
    pub paused: BTreeSet<(String, String)>,
}

impl PbxState {
    /// `DND/<ext>` is `YES`.
    pub fn dnd(&self, ext: &str) -> bool {
        self.astdb
            .get(&format!("DND/{ext}"))
            .is_some_and(|v| v == "YES")
    }

    /// `CF/<ext>`, the unconditional forward target.
    pub fn call_forward(&self, ext: &str) -> Option<&str> {
        self.astdb
            .get(&format!("CF/{ext}"))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}
