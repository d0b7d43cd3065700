//! Call scenario templates shaped after the real FreePBX transcripts (asterisk-22-pjsip), and
//! the ground truth each one knows about itself.

use calls::{Direction, Disposition, TransferKind};
use rand::Rng;

use super::call::{CallBuilder, CdrRow, ChanId, PhoneState};
use super::directory::{Directory, CONFERENCE, CONFERENCE_DID, IVR_DID, OFFICE_CID};
use super::local;
use super::story::{pick_ext, pstn_number, Story, CALLER_NAMES};
pub use super::story::{Truth, TruthTransfer};
use super::wire::{event, BridgeKind, ChanState, UNKNOWN};

/// One call shape. The name (snake_case) is what `--mix` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    InboundExt,
    InboundExtNoAnswer,
    InboundExtCancel,
    InboundExtBusy,
    InboundDnd,
    RingGroup,
    RingGroupNoAnswer,
    Queue,
    QueueAbandon,
    IvrQueue,
    IvrExt,
    Outbound,
    OutboundNoAnswer,
    Internal,
    InternalBusy,
    ClickToCall,
    Pickup,
    CallForward,
    BlindTransfer,
    AttendedTransfer,
    Conference,
    LocalInbound,
    LocalInboundNoAnswer,
    LocalInboundBusy,
    LocalClickToCall,
}

impl Scenario {
    /// Every scenario with its default weight in the mix (inbound-heavy, like an office).
    /// The `local_*` shapes (asterisk-22 harness, no SIP) are off unless `--mix` names them.
    pub const DEFAULT_MIX: [(Scenario, u32); 25] = [
        (Scenario::InboundExt, 12),
        (Scenario::InboundExtNoAnswer, 4),
        (Scenario::InboundExtCancel, 4),
        (Scenario::InboundExtBusy, 2),
        (Scenario::InboundDnd, 1),
        (Scenario::RingGroup, 10),
        (Scenario::RingGroupNoAnswer, 3),
        (Scenario::Queue, 10),
        (Scenario::QueueAbandon, 3),
        (Scenario::IvrQueue, 5),
        (Scenario::IvrExt, 3),
        (Scenario::Outbound, 12),
        (Scenario::OutboundNoAnswer, 3),
        (Scenario::Internal, 6),
        (Scenario::InternalBusy, 2),
        (Scenario::ClickToCall, 4),
        (Scenario::Pickup, 2),
        (Scenario::CallForward, 2),
        (Scenario::BlindTransfer, 3),
        (Scenario::AttendedTransfer, 3),
        (Scenario::Conference, 2),
        (Scenario::LocalInbound, 0),
        (Scenario::LocalInboundNoAnswer, 0),
        (Scenario::LocalInboundBusy, 0),
        (Scenario::LocalClickToCall, 0),
    ];

    /// The `--mix` name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::InboundExt => "inbound_ext",
            Scenario::InboundExtNoAnswer => "inbound_ext_noanswer",
            Scenario::InboundExtCancel => "inbound_ext_cancel",
            Scenario::InboundExtBusy => "inbound_ext_busy",
            Scenario::InboundDnd => "inbound_dnd",
            Scenario::RingGroup => "ring_group",
            Scenario::RingGroupNoAnswer => "ring_group_noanswer",
            Scenario::Queue => "queue",
            Scenario::QueueAbandon => "queue_abandon",
            Scenario::IvrQueue => "ivr_queue",
            Scenario::IvrExt => "ivr_ext",
            Scenario::Outbound => "outbound",
            Scenario::OutboundNoAnswer => "outbound_noanswer",
            Scenario::Internal => "internal",
            Scenario::InternalBusy => "internal_busy",
            Scenario::ClickToCall => "click_to_call",
            Scenario::Pickup => "pickup",
            Scenario::CallForward => "call_forward",
            Scenario::BlindTransfer => "blind_transfer",
            Scenario::AttendedTransfer => "attended_transfer",
            Scenario::Conference => "conference",
            Scenario::LocalInbound => "local_inbound",
            Scenario::LocalInboundNoAnswer => "local_inbound_noanswer",
            Scenario::LocalInboundBusy => "local_inbound_busy",
            Scenario::LocalClickToCall => "local_click_to_call",
        }
    }

    /// Parses a `--mix` name.
    pub fn from_name(name: &str) -> Option<Scenario> {
        Self::DEFAULT_MIX
            .iter()
            .map(|(s, _)| *s)
            .find(|s| s.name() == name)
    }
}

// Another extension than `not`, when there is one.
fn other_ext(b: &mut CallBuilder, not: &str) -> String {
    let others: Vec<String> = b
        .dir
        .extensions
        .iter()
        .filter(|e| *e != not)
        .cloned()
        .collect();
    if others.is_empty() {
        return not.to_owned();
    }
    others[b.rng.random_range(0..others.len())].clone()
}

/// How the person at the called extension behaves once it rings.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Callee {
    /// Answers after ring ms, talks talk ms, the caller hangs up.
    Answers { ring: u64, talk: u64 },
    /// Answers, talks, then transfers to another extension (blind by REFER or attended by *2).
    Transfers {
        ring: u64,
        talk: u64,
        to: String,
        kind: TransferKind,
    },
    /// Never answers; the PBX gives up after the ring timer.
    NoAnswer,
    /// Rejects with 486.
    Busy,
    /// The caller gives up after ring ms.
    CallerCancels { ring: u64 },
    /// Another phone picks the call up with *8 after ring ms.
    PickedUp { ring: u64, by: String, talk: u64 },
}

/// Builds one call of `scenario` into `b`; returns its ground truth.
pub fn build(b: &mut CallBuilder, scenario: Scenario) -> Truth {
    // The call's first event; `story.start` may move on (a click-to-call's ring time starts
    // when the agent answers).
    let started_ms = b.t;
    let mut story = Story::new(b.t);
    let ext = pick_ext(b);
    let style = b.dir.style;
    let (direction, from, to) = match scenario {
        Scenario::InboundExt
        | Scenario::InboundExtNoAnswer
        | Scenario::InboundExtCancel
        | Scenario::InboundExtBusy
        | Scenario::InboundDnd
        | Scenario::Pickup
        | Scenario::CallForward
        | Scenario::BlindTransfer
        | Scenario::AttendedTransfer => {
            let did = Directory::direct_did(&ext);
            let c = inbound(b, &did);
            b.step(c, "Goto", &format!("{},{ext},1", style.direct));
            b.goto(c, style.direct, &ext);
            let callee = callee_for(b, scenario, &ext);
            let mode = match scenario {
                Scenario::InboundDnd => Reach::Dnd,
                Scenario::CallForward => Reach::Forward(pstn_number(b)),
                _ => reach_of(b, &ext),
            };
            exten(b, &mut story, c, &ext, mode, callee);
            (Direction::Inbound, b.chan(c).cid_num.clone(), did)
        }
        Scenario::RingGroup | Scenario::RingGroupNoAnswer => {
            let g = b.dir.ring_groups[b.rng.random_range(0..b.dir.ring_groups.len())].clone();
            let c = inbound(b, g.did);
            let from = b.chan(c).cid_num.clone();
            b.step(c, "Goto", &format!("{},{},1", style.ring_groups, g.number));
            b.goto(c, style.ring_groups, g.number);
            ring_group(b, &mut story, c, &g, scenario == Scenario::RingGroup);
            (Direction::Inbound, from, g.did.to_owned())
        }
        Scenario::Queue | Scenario::QueueAbandon | Scenario::IvrQueue => {
            let q = b.dir.queues[b.rng.random_range(0..b.dir.queues.len())].clone();
            let did = if scenario == Scenario::IvrQueue {
                IVR_DID
            } else {
                q.did
            };
            let c = inbound(b, did);
            let from = b.chan(c).cid_num.clone();
            if scenario == Scenario::IvrQueue {
                let digit = if q.number == "600" { "2" } else { "3" };
                ivr(b, c, digit);
            }
            b.step(c, "Goto", &format!("{},{},1", style.queues, q.number));
            b.goto(c, style.queues, q.number);
            queue(b, &mut story, c, &q, scenario != Scenario::QueueAbandon);
            (Direction::Inbound, from, did.to_owned())
        }
        Scenario::IvrExt => {
            let target = b.dir.extensions[0].clone();
            let c = inbound(b, IVR_DID);
            let from = b.chan(c).cid_num.clone();
            ivr(b, c, "1");
            b.step(c, "Goto", &format!("{},{target},1", style.direct));
            b.goto(c, style.direct, &target);
            let ring = b.secs(2, 10);
            let talk = b.talk_secs(5, 120);
            let mode = reach_of(b, &target);
            exten(
                b,
                &mut story,
                c,
                &target,
                mode,
                Callee::Answers { ring, talk },
            );
            (Direction::Inbound, from, IVR_DID.to_owned())
        }
        Scenario::Outbound | Scenario::OutboundNoAnswer => {
            let number = pstn_number(b);
            let c = phone_call(b, &ext, &format!("{}{number}", style.outbound_prefix));
            let answers = scenario == Scenario::Outbound;
            outbound(b, &mut story, c, &ext, &number, answers);
            (Direction::Outbound, ext.clone(), number)
        }
        Scenario::ClickToCall => {
            let number = pstn_number(b);
            click_to_call(b, &mut story, &ext, &number, None);
            (Direction::Outbound, ext.clone(), number)
        }
        Scenario::Internal | Scenario::InternalBusy => {
            let target = other_ext(b, &ext);
            let c = phone_call(b, &ext, &target);
            let callee = if scenario == Scenario::Internal {
                let (ring, talk) = (b.secs(2, 10), b.talk_secs(5, 120));
                Callee::Answers { ring, talk }
            } else {
                Callee::Busy
            };
            let mode = reach_of(b, &target);
            exten(b, &mut story, c, &target, mode, callee);
            (Direction::Internal, ext.clone(), target)
        }
        Scenario::LocalInbound => local::inbound(b, &mut story, local::Agent::Answers),
        Scenario::LocalInboundNoAnswer => local::inbound(b, &mut story, local::Agent::NoAnswer),
        Scenario::LocalInboundBusy => local::inbound(b, &mut story, local::Agent::Busy),
        Scenario::LocalClickToCall => local::click_to_call(b, &mut story),
        Scenario::Conference => {
            let inbound_caller = b.rng.random_bool(0.5);
            let (c, from, to, direction) = if inbound_caller {
                let c = inbound(b, CONFERENCE_DID);
                b.step(c, "Goto", &format!("{},{CONFERENCE},1", style.conference));
                b.goto(c, style.conference, CONFERENCE);
                (
                    c,
                    b.chan(c).cid_num.clone(),
                    CONFERENCE_DID.to_owned(),
                    Direction::Inbound,
                )
            } else {
                let c = phone_call(b, &ext, CONFERENCE);
                (c, ext.clone(), CONFERENCE.to_owned(), Direction::Internal)
            };
            conference(b, &mut story, c);
            (direction, from, to)
        }
    };
    let end = b
        .legs
        .iter()
        .filter_map(|l| l.ended_ms)
        .max()
        .unwrap_or(b.t);
    let (ring, talk) = match story.answered {
        Some(a) => (a - story.start, end - a),
        None => (end - story.start, 0),
    };
    Truth {
        linkedid: b.chan(0).linkedid.clone(),
        scenario: scenario.name(),
        direction,
        from,
        to,
        disposition: story.disposition,
        answered_by: story.answered_by,
        rang: story.rang,
        transfers: story.transfers,
        recording: b.recording.is_some(),
        talk_seconds_approx: (talk + 500) / 1000,
        ring_seconds_approx: (ring + 500) / 1000,
        started_ms,
        ended_ms: end,
    }
}

fn callee_for(b: &mut CallBuilder, scenario: Scenario, ext: &str) -> Callee {
    let ring = b.secs(2, 10);
    let talk = b.talk_secs(5, 120);
    match scenario {
        Scenario::InboundExtNoAnswer => Callee::NoAnswer,
        Scenario::InboundExtCancel => Callee::CallerCancels { ring },
        Scenario::InboundExtBusy => Callee::Busy,
        Scenario::Pickup => Callee::PickedUp {
            ring,
            by: other_ext(b, ext),
            talk,
        },
        Scenario::BlindTransfer => Callee::Transfers {
            ring,
            talk,
            to: other_ext(b, ext),
            kind: TransferKind::Blind,
        },
        Scenario::AttendedTransfer => Callee::Transfers {
            ring,
            talk,
            to: other_ext(b, ext),
            kind: TransferKind::Attended,
        },
        _ => Callee::Answers { ring, talk },
    }
}

/// How macro-dial-one reaches an extension: AstDB DND / CF, or ring the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reach {
    Phone,
    Dnd,
    Forward(String),
}

fn reach_of(b: &CallBuilder, ext: &str) -> Reach {
    if b.state.dnd(ext) {
        Reach::Dnd
    } else if let Some(num) = b.state.call_forward(ext) {
        Reach::Forward(num.to_owned())
    } else {
        Reach::Phone
    }
}

// ------------------------------------------------------------------ entry points

/// A PSTN call arriving on the trunk for `did`, through from-pstn and sub-did-common (FreePBX).
fn inbound(b: &mut CallBuilder, did: &str) -> ChanId {
    let num = pstn_number(b);
    let name = CALLER_NAMES[b.rng.random_range(0..CALLER_NAMES.len())];
    let trunk = b.trunk_name();
    let context = b.dir.style.inbound;
    let c = b.new_chan(
        trunk,
        ChanState::Ring,
        (&num, name),
        (UNKNOWN, UNKNOWN),
        context,
        did,
        None,
    );
    b.trunk_device("INUSE");
    b.var(c, "SIPDOMAIN", "127.0.0.1");
    b.goto(c, context, did);
    if !b.dir.style.freepbx {
        return c;
    }
    b.gosub(c, "sub-did-common", &[did]);
    b.set(c, "__FROM_DID", did);
    b.set(c, "CDR(did)", did);
    b.step(c, "ExecIf", &format!("0 ?Set(CALLERID(name)={num})"));
    b.set(c, "__CALLINGNUMPRES_SV", "allowed_not_screened");
    b.set(c, "__CALLINGNAMEPRES_SV", "allowed_not_screened");
    b.set(c, "CALLERID(num-pres)", "allowed_not_screened");
    b.set(c, "CALLERID(name-pres)", "allowed_not_screened");
    b.set(c, "__MOHCLASS", "default");
    b.set(c, "__REVERSAL_REJECT", "FALSE");
    b.ret(c);
    c
}

/// A phone dialing `dialed`: its channel enters its context (from-internal).
fn phone_call(b: &mut CallBuilder, ext: &str, dialed: &str) -> ChanId {
    let name = b.phone_name(ext);
    let cid_name = b.dir.name(ext);
    let context = b.dir.style.internal;
    let c = b.new_chan(
        name,
        ChanState::Ring,
        (ext, &cid_name),
        (UNKNOWN, UNKNOWN),
        context,
        dialed,
        None,
    );
    b.var(c, "SIPDOMAIN", "127.0.0.1");
    b.phone(ext, PhoneState::InUse);
    b.goto(c, context, dialed);
    c
}

/// The IVR: answer, menu, the caller presses `digit` (RFC 4733 DTMF).
fn ivr(b: &mut CallBuilder, c: ChanId, digit: &str) {
    let (context, freepbx) = (b.dir.style.ivr, b.dir.style.freepbx);
    b.step(c, "Goto", &format!("{context},s,1"));
    b.goto(c, context, "s");
    if freepbx {
        b.set(c, "TIMEOUT_LOOPCOUNT", "0");
        b.set(c, "INVALID_LOOPCOUNT", "0");
        b.set(c, "_IVR_CONTEXT_ivr-1", "");
        b.set(c, "_IVR_CONTEXT", "ivr-1");
        b.set(c, "__IVR_RETVM", "");
        b.step(c, "GotoIf", "0?skip");
    }
    b.step(c, "Answer", "");
    b.newstate(c, ChanState::Up);
    b.step(c, "Wait", "1");
    b.wait(1000);
    if freepbx {
        b.set(c, "IVR_MSG", "custom/main-menu");
    }
    b.set(c, "TIMEOUT(digit)", "3");
    if freepbx {
        b.step(c, "ExecIf", "1?Background(custom/main-menu)");
    } else {
        b.step(c, "Background", "custom/main-menu");
    }
    b.wait_between(2000, 6000);
    b.on(
        "DTMFBegin",
        c,
        &[("Digit", digit), ("Direction", "Received")],
    );
    b.wait(160);
    b.on(
        "DTMFEnd",
        c,
        &[
            ("Digit", digit),
            ("DurationMs", "160"),
            ("Direction", "Received"),
        ],
    );
    b.goto(c, context, digit);
}

// ------------------------------------------------------------------ extensions

/// from-did-direct / from-internal `<ext>`: macro-exten-vm, record, macro-dial-one, outcome.
fn exten(
    b: &mut CallBuilder,
    story: &mut Story,
    c: ChanId,
    ext: &str,
    reach: Reach,
    callee: Callee,
) {
    let style = b.dir.style;
    if style.freepbx {
        b.set(c, "__RINGTIMER", "15");
        b.gosub(c, "macro-exten-vm", &["novm", ext, "0", "0", "0"]);
        b.set(c, "RingGroupMethod", "none");
        b.set(c, "__EXTTOCALL", ext);
        b.set(c, "__PICKUPMARK", ext);
        b.set(c, "RT", "15");
    }
    b.record_check(c, "exten", ext);
    dial_one_head(b, c, ext, "15");
    if !style.freepbx {
        // The bare dialplan's own DND and forward checks, in the AstDB as FreePBX keeps them.
        b.step(
            c,
            "GotoIf",
            &format!("$[\"${{DB(DND/{ext})}}\" = \"YES\"]?dnd"),
        );
        if reach != Reach::Dnd {
            b.step(c, "GotoIf", &format!("$[\"${{DB(CF/{ext})}}\" != \"\"]?cf"));
        }
    }
    match reach {
        Reach::Dnd => {
            if style.freepbx {
                b.step(c, "GotoIf", "1?dnd");
                b.step(c, "NoOp", &format!("Extension {ext} has DND enabled"));
                b.set(c, "DIALSTATUS", "BUSY");
                b.ret(c);
            }
            after_dial_one(b, c, "BUSY");
            b.wait_between(1000, 4000);
            caller_gone(b, c, 17, None, None);
            story.disposition = Disposition::Busy;
            return;
        }
        Reach::Forward(num) => {
            if style.freepbx {
                b.step(c, "GotoIf", "0?dnd");
                b.step(c, "GotoIf", "1?cf");
                b.set(c, "CFNUM", &num);
                b.step(
                    c,
                    "NoOp",
                    &format!("Call Forward Unconditional {ext} -> {num}"),
                );
                b.set(c, "__DIVERSION_REASON", "unconditional");
                b.set(c, "__CFIGNORE", "");
            }
            // The forward goes out by the outbound route, on a Local channel.
            let route = style.outbound;
            let dialstr = format!("Local/{num}@{route}/n");
            b.step(c, "Dial", &format!("{dialstr},,Ttr"));
            b.dial_vars(c);
            let (one, two) = b.local_pair(&format!("{num}@{route}"), route, &num, c);
            b.dial_begin(Some(c), one, &format!("{num}@{route}/n"));
            b.goto(two, route, &num);
            let ring = b.secs(2, 10);
            let talk = b.talk_secs(5, 120);
            let trunk = trunk_dial(b, two, &num, true, ring);
            b.newstate(one, ChanState::Up);
            b.dial_end(Some(c), one, "ANSWER");
            b.newstate(c, ChanState::Up);
            story.answer(b.t, &num);
            let inner = b.bridge(BridgeKind::Basic, &[trunk, two]);
            let outer = b.bridge(BridgeKind::Basic, &[one, c]);
            b.talk(&[c, trunk], talk);
            hangup_in_bridge(b, outer, c, one);
            hangup_in_bridge(b, inner, two, trunk);
            b.trunk_device("NOT_INUSE");
            cdr_answered(b, c, Some(one), &num, talk);
            leg_answered(b, two, trunk, &num);
            return;
        }
        Reach::Phone => dial_one_phone(b, c, ext, "15"),
    }
    story.rang.push(ext.to_owned());
    let p = ring_phone(b, c, ext);
    match callee {
        Callee::Busy => {
            b.hangup_request(p, 17);
            b.dial_end(Some(c), p, "BUSY");
            b.hangup(p, 17);
            b.phone(ext, PhoneState::Idle);
            b.var(c, "DIALSTATUS", "BUSY");
            b.ret(c);
            after_dial_one(b, c, "BUSY");
            b.wait_between(1000, 4000);
            caller_gone(b, c, 17, Some(p), None);
            story.disposition = Disposition::Busy;
        }
        Callee::NoAnswer => {
            b.wait(15_000);
            b.dial_end(Some(c), p, "NOANSWER");
            b.hangup(p, 19);
            b.phone(ext, PhoneState::Idle);
            b.var(c, "DIALSTATUS", "NOANSWER");
            b.ret(c);
            after_dial_one(b, c, "NOANSWER");
            caller_gone(b, c, 16, Some(p), None);
            story.disposition = Disposition::NoAnswer;
        }
        Callee::CallerCancels { ring } => {
            b.wait(ring);
            b.hangup_request(c, 16);
            b.dial_end(Some(c), p, "CANCEL");
            b.var(c, "DIALSTATUS", "CANCEL");
            b.soft_hangup(c, 16);
            b.hangup(c, 19);
            if style.is_trunk(&b.chan(c).name) {
                b.trunk_device("NOT_INUSE");
            }
            cdr_unanswered(b, c, Some(p), ext, "NO ANSWER");
            b.hangup(p, 19);
            b.phone(ext, PhoneState::Idle);
            story.disposition = Disposition::Cancelled;
        }
        Callee::Answers { ring, talk } => {
            b.wait(ring);
            b.answered(Some(c), p, Some(ext));
            story.answer(b.t, ext);
            let br = b.bridge(BridgeKind::Basic, &[p, c]);
            b.talk(&[c, p], talk);
            if b.rng.random_bool(0.5) {
                hangup_in_bridge(b, br, c, p);
            } else {
                hangup_in_bridge(b, br, p, c);
            }
            b.phone(ext, PhoneState::Idle);
            cdr_answered(b, c, Some(p), ext, talk);
        }
        Callee::PickedUp { ring, by, talk } => {
            b.wait(ring);
            pickup(b, story, c, p, ext, &by, talk);
        }
        Callee::Transfers {
            ring,
            talk,
            to,
            kind,
        } => {
            b.wait(ring);
            b.answered(Some(c), p, Some(ext));
            story.answer(b.t, ext);
            let br = b.bridge(BridgeKind::Basic, &[p, c]);
            b.talk(&[c, p], talk);
            story.transfers.push(TruthTransfer {
                kind,
                from: ext.to_owned(),
                to: to.clone(),
            });
            story.rang.push(to.clone());
            match kind {
                TransferKind::Blind => blind_transfer(b, c, p, br, ext, &to, true),
                TransferKind::Attended => attended_transfer(b, c, p, br, ext, &to),
            }
        }
    }
}

/// macro-dial-one up to its DND / CF checks (a bare dialplan has none of it).
fn dial_one_head(b: &mut CallBuilder, c: ChanId, ext: &str, timeout: &str) {
    if !b.dir.style.freepbx {
        return;
    }
    b.gosub(c, "macro-dial-one", &[timeout, "Ttr", ext]);
    b.set(c, "DEXTEN", ext);
    b.set(c, "DIALSTATUS_CW", "");
}

/// macro-dial-one's way to the phone: no DND, no CF, Dial(PJSIP_DIAL_CONTACTS); a bare
/// dialplan's `Dial(SIP/<peer>,<timeout>)`.
fn dial_one_phone(b: &mut CallBuilder, c: ChanId, ext: &str, timeout: &str) {
    let style = b.dir.style;
    if !style.freepbx {
        let device = style.device(ext);
        let data = match timeout {
            "" => device,
            t => format!("{device},{t}"),
        };
        b.step(c, "Dial", &data);
        b.dial_vars(c);
        return;
    }
    b.step(c, "GotoIf", "0?dnd");
    b.step(c, "GotoIf", "0?cf");
    b.set(c, "D_OPTIONS", "Ttr");
    let contact = format!("PJSIP/{ext}/sip:{ext}@127.0.0.1:5070");
    b.set(c, "DSTRING", &contact);
    b.step(c, "ExecIf", &format!("0?Set(DSTRING=PJSIP/{ext})"));
    b.step(
        c,
        "Dial",
        &format!("{contact},{timeout},Ttrb(func-apply-sipheaders^s^1)"),
    );
    b.dial_vars(c);
}

/// The phone channel `caller`'s Dial() creates for `ext`, ringing.
fn ring_phone(b: &mut CallBuilder, caller: ChanId, ext: &str) -> ChanId {
    let name = b.dir.name(ext);
    let peer = b.dir.style.phone_dial(ext);
    let context = b.dir.style.internal;
    let p = b.outgoing(caller, Some(ext), &peer, (ext, &name), context);
    b.dial_begin(Some(caller), p, &peer);
    b.connected(caller, ext, &name);
    b.wait_between(20, 200);
    b.ringing(Some(caller), p, Some(ext));
    p
}

/// macro-exten-vm after macro-dial-one returned `status` (BUSY / NOANSWER); in a bare
/// dialplan, the lines after its Dial().
fn after_dial_one(b: &mut CallBuilder, c: ChanId, status: &str) {
    let freepbx = b.dir.style.freepbx;
    if freepbx {
        b.set(c, "SV_DIALSTATUS", status);
        b.step(c, "Goto", &format!("s-{status},1"));
        b.goto(c, "macro-exten-vm", &format!("s-{status}"));
    }
    if status == "BUSY" {
        if freepbx {
            b.step(c, "NoOp", "Extension is busy");
            b.step(c, "GotoIf", "0?hang");
        }
        b.step(c, "Busy", "20");
        b.newstate(c, ChanState::Busy);
        if !b.dir.style.is_trunk(&b.chan(c).name) {
            let ext = b.chan(c).cid_num.clone();
            b.phone(&ext, PhoneState::Busy);
        }
    } else {
        if freepbx {
            b.step(c, "NoOp", "Extension did not answer, no voicemail");
            b.step(c, "GotoIf", "0?hang");
        }
        b.step(c, "Answer", "");
        b.newstate(c, ChanState::Up);
        b.step(c, "Playback", "vm-nobodyavail");
        b.wait(3000);
        if freepbx {
            b.gosub(c, "macro-hangupcall", &[]);
            let name = b.chan(c).name.clone();
            b.step(c, "NoOp", &format!("Hanging up {name}"));
        }
        b.step(c, "Hangup", "");
    }
}

/// The caller's channel ends outside any bridge (busy, no answer, announcement done).
fn caller_gone(
    b: &mut CallBuilder,
    c: ChanId,
    cause: u32,
    dest: Option<ChanId>,
    answered: Option<u64>,
) {
    b.hangup_request(c, cause);
    b.soft_hangup(c, cause);
    b.hangup(c, cause);
    if b.dir.style.is_trunk(&b.chan(c).name) {
        b.trunk_device("NOT_INUSE");
    } else {
        let ext = b.chan(c).cid_num.clone();
        b.phone(&ext, PhoneState::Idle);
    }
    let disposition = if answered.is_some() {
        "ANSWERED"
    } else if cause == 17 {
        "BUSY"
    } else {
        "NO ANSWER"
    };
    let destination = b.chan(c).exten.clone();
    let row = CdrRow {
        channel: c,
        dest,
        destination,
        dest_context: b.dir.style.internal.into(),
        last_app: "Hangup".into(),
        last_data: String::new(),
        answered_ms: answered,
        disposition,
    };
    b.cdr(&row);
}

/// `first` hangs up in bridge `br`; the other party is hung up by Asterisk.
fn hangup_in_bridge(b: &mut CallBuilder, br: usize, first: ChanId, second: ChanId) {
    b.hangup_request(first, 16);
    b.var(first, "BRIDGEPEER", "");
    b.var(second, "BRIDGEPEER", "");
    b.leave(br, first);
    b.hangup(first, 16);
    b.leave(br, second);
    b.soft_hangup(second, 16);
    b.destroy(br);
    let style = b.dir.style;
    if style.freepbx && style.phone_of(&b.chan(second).name).is_some() {
        // A phone left alone runs the h extension (FreePBX macro-hangupcall).
        b.goto(second, style.internal, "h");
        b.gosub(second, "macro-hangupcall", &[]);
        let name = b.chan(second).name.clone();
        b.step(second, "NoOp", &format!("Hanging up {name}"));
        b.step(second, "Hangup", "");
    }
    b.hangup(second, 16);
    for c in [first, second] {
        if style.is_trunk(&b.chan(c).name) {
            b.trunk_device("NOT_INUSE");
        }
    }
}

fn cdr_answered(
    b: &mut CallBuilder,
    c: ChanId,
    dest: Option<ChanId>,
    destination: &str,
    talk: u64,
) {
    let answered = b.t.saturating_sub(talk);
    b.dial_done(c, answered);
    answered_row(b, c, dest, destination, answered);
}

/// The CDR row of the leg from `c` to `dest`, which answered: Asterisk writes one for each
/// pair of bridged channels, so the first answerer of a transferred call and the Local
/// channel half that dialed a ring group or queue member's phone have rows of their own
/// (the rows that name the person who answered).
fn leg_answered(b: &mut CallBuilder, c: ChanId, dest: ChanId, destination: &str) {
    let answered = b.legs[dest].answered_ms.unwrap_or(b.t);
    answered_row(b, c, Some(dest), destination, answered);
}

fn answered_row(
    b: &mut CallBuilder,
    c: ChanId,
    dest: Option<ChanId>,
    destination: &str,
    answered: u64,
) {
    let row = CdrRow {
        channel: c,
        dest,
        destination: destination.to_owned(),
        dest_context: b.dir.style.internal.into(),
        last_app: "Dial".into(),
        last_data: dest.map(|d| b.chan(d).name.clone()).unwrap_or_default(),
        answered_ms: Some(answered),
        disposition: "ANSWERED",
    };
    b.cdr(&row);
}

fn cdr_unanswered(
    b: &mut CallBuilder,
    c: ChanId,
    dest: Option<ChanId>,
    destination: &str,
    disposition: &'static str,
) {
    let row = CdrRow {
        channel: c,
        dest,
        destination: destination.to_owned(),
        dest_context: b.dir.style.internal.into(),
        last_app: "Dial".into(),
        last_data: String::new(),
        answered_ms: None,
        disposition,
    };
    b.cdr(&row);
}

// ------------------------------------------------------------------ pickup and transfers

/// `by` dials *8: its own channel (own Linkedid) takes the ringing call from phone `p`.
fn pickup(
    b: &mut CallBuilder,
    story: &mut Story,
    c: ChanId,
    p: ChanId,
    ext: &str,
    by: &str,
    talk: u64,
) {
    let name = b.phone_name(by);
    let by_name = b.dir.name(by);
    let style = b.dir.style;
    let k = b.new_chan(
        name,
        ChanState::Ring,
        (by, &by_name),
        (UNKNOWN, UNKNOWN),
        style.internal,
        "*8",
        None,
    );
    b.var(k, "SIPDOMAIN", "127.0.0.1");
    b.phone(by, PhoneState::InUse);
    b.goto(k, style.pickup, "*8");
    b.step(k, "NoOp", &format!("Group pickup by {by}"));
    b.step(k, "Pickup", "");
    b.newstate(k, ChanState::Up);
    let mut m = event("Pickup");
    b.chan(k).block("", &mut m);
    b.chan(p).block("Target", &mut m);
    b.emit(m);
    let (cnum, cname) = (b.chan(c).cid_num.clone(), b.chan(c).cid_name.clone());
    b.connected(k, &cnum, &cname);
    b.connected(c, by, &by_name);
    b.dial_end(Some(c), k, "ANSWER");
    b.newstate(c, ChanState::Up);
    story.answer(b.t, by);
    b.hangup(p, 16);
    b.phone(ext, PhoneState::Idle);
    // The picker now belongs to the caller's call.
    let linked = b.chan(c).linkedid.clone();
    b.relink(k, &linked);
    let br = b.bridge(BridgeKind::Basic, &[k, c]);
    b.talk(&[c, k], talk);
    hangup_in_bridge(b, br, k, c);
    b.phone(by, PhoneState::Idle);
    cdr_answered(b, c, Some(k), ext, talk);
}

/// Phone `p` (ext) sends SIP REFER to `to`: the caller itself dials `to`.
/// With `announce` false it is a Redirect instead: no BlindTransfer event, the bridge just breaks.
pub(super) fn blind_transfer(
    b: &mut CallBuilder,
    c: ChanId,
    p: ChanId,
    br: usize,
    ext: &str,
    to: &str,
    announce: bool,
) {
    let style = b.dir.style;
    if announce {
        b.goto(p, style.internal, "");
        b.on("Unhold", p, &[]);
        let mut m = event("BlindTransfer");
        m.push("Result", "Success");
        b.chan(p).block("Transferer", &mut m);
        b.chan(c).block("Transferee", &mut m);
        b.bridge_info(br).block("", &mut m);
        m.push("IsExternal", "Yes");
        m.push("Context", style.internal);
        m.push("Extension", to);
        b.emit(m);
    }
    b.leave(br, c);
    b.leave(br, p);
    b.hangup(p, 16);
    leg_answered(b, c, p, ext);
    b.phone(ext, PhoneState::Idle);
    b.destroy(br);
    b.goto(c, style.internal, to);
    if style.freepbx {
        b.set(c, "__RINGTIMER", "15");
        b.gosub(c, "macro-exten-vm", &["novm", to, "0", "0", "0"]);
        b.set(c, "__EXTTOCALL", to);
    }
    b.record_check(c, "exten", to);
    dial_one_head(b, c, to, "15");
    dial_one_phone(b, c, to, "15");
    let t = ring_phone(b, c, to);
    b.wait_between(2000, 8000);
    b.answered(Some(c), t, Some(to));
    let br2 = b.bridge(BridgeKind::Basic, &[t, c]);
    let talk = b.talk_secs(5, 60);
    b.talk(&[c, t], talk);
    hangup_in_bridge(b, br2, t, c);
    b.phone(to, PhoneState::Idle);
    cdr_answered(b, c, Some(t), to, talk);
}

/// Phone `p` presses *2 and `to`, consults through a Local pair, hangs up: the caller is
/// bridged to `to` (AttendedTransfer DestType Bridge, then Local optimization).
pub(super) fn attended_transfer(
    b: &mut CallBuilder,
    c: ChanId,
    p: ChanId,
    orig: usize,
    ext: &str,
    to: &str,
) {
    let style = b.dir.style;
    b.goto(p, style.internal, "");
    for d in std::iter::once("*").chain(std::iter::once("2")) {
        b.on("DTMFBegin", p, &[("Digit", d), ("Direction", "Received")]);
        b.wait(250);
        b.on(
            "DTMFEnd",
            p,
            &[
                ("Digit", d),
                ("DurationMs", "250"),
                ("Direction", "Received"),
            ],
        );
    }
    b.on("Hold", p, &[]);
    b.on("MusicOnHoldStart", c, &[("Class", "default")]);
    for d in to.chars() {
        let d = d.to_string();
        b.wait(300);
        b.on("DTMFBegin", p, &[("Digit", &d), ("Direction", "Received")]);
        b.wait(250);
        b.on(
            "DTMFEnd",
            p,
            &[
                ("Digit", &d),
                ("DurationMs", "250"),
                ("Direction", "Received"),
            ],
        );
    }
    b.wait(3000);
    let (one, two) = b.local_pair(&format!("{to}@{}", style.internal), style.internal, to, p);
    let consult = b.bridge(BridgeKind::Basic, &[one]);
    b.leave(orig, p);
    b.enter(consult, p);
    // The ;2 half dials the phone: from macro-dial-one, or the extension's own Dial().
    if style.freepbx {
        b.goto(two, "macro-dial-one", "s");
        b.at_priority(two, 8);
    } else {
        b.at_priority(two, 1);
    }
    let t = ring_phone(b, two, to);
    b.newstate(one, ChanState::Ringing);
    b.dial_state(None, one, "RINGING");
    b.wait_between(2000, 8000);
    b.answered(Some(two), t, Some(to));
    b.newstate(one, ChanState::Up);
    b.dial_end(None, one, "ANSWER");
    let target = b.bridge(BridgeKind::Basic, &[t, two]);
    let consult_talk = b.secs(3, 20);
    b.talk(&[p, t], consult_talk);
    // The transferer hangs up: the consult bridge merges into the caller's bridge.
    b.hangup_request(p, 16);
    let mut m = event("BridgeMerge");
    b.bridge_info(orig).block("To", &mut m);
    b.bridge_info(consult).block("From", &mut m);
    b.emit(m);
    b.leave(consult, one);
    b.on("MusicOnHoldStop", c, &[]);
    b.enter(orig, one);
    b.leave(consult, p);
    let mut m = event("AttendedTransfer");
    m.push("Result", "Success");
    b.chan(p).block("OrigTransferer", &mut m);
    b.bridge_info(orig).block("Orig", &mut m);
    b.chan(p).block("SecondTransferer", &mut m);
    b.bridge_info(consult).block("Second", &mut m);
    b.chan(c).block("Transferee", &mut m);
    b.chan(one).block("TransferTarget", &mut m);
    m.push("IsExternal", "No");
    m.push("DestType", "Bridge");
    m.push("DestBridgeUniqueid", &b.bridge_info(orig).uniqueid.clone());
    b.emit(m);
    b.destroy(consult);
    b.hangup(p, 16);
    leg_answered(b, c, p, ext);
    b.phone(ext, PhoneState::Idle);
    // Local channel optimization: the caller replaces the Local pair in the target's bridge.
    let mut begin = event("LocalOptimizationBegin");
    b.chan(one).block("LocalOne", &mut begin);
    b.chan(two).block("LocalTwo", &mut begin);
    b.chan(c).block("Source", &mut begin);
    begin.push("DestUniqueId", &b.chan(two).uniqueid.clone());
    begin.push("Id", "0");
    b.emit(begin);
    b.leave(orig, c);
    b.leave(target, two);
    b.enter(target, c);
    let mut end = event("LocalOptimizationEnd");
    b.chan(one).block("LocalOne", &mut end);
    b.chan(two).block("LocalTwo", &mut end);
    end.push("Success", "Yes");
    end.push("Id", "0");
    b.emit(end);
    b.soft_hangup(two, 16);
    b.hangup_request(one, 16);
    b.hangup(two, 16);
    b.leave(orig, one);
    b.hangup(one, 16);
    b.destroy(orig);
    let talk = b.talk_secs(5, 60);
    b.talk(&[c, t], talk);
    hangup_in_bridge(b, target, t, c);
    b.phone(to, PhoneState::Idle);
    cdr_answered(b, c, Some(t), to, talk);
}

// ------------------------------------------------------------------ ring groups and queues

/// FreePBX ext-group ringall: one Local/<ext>#@from-internal/n pair per member; a bare
/// dialplan dials the members' phones in one Dial() instead ([`ring_all`]).
fn ring_group(
    b: &mut CallBuilder,
    story: &mut Story,
    c: ChanId,
    g: &super::directory::RingGroup,
    answered: bool,
) {
    b.step(c, "NoOp", &format!("Ring group {} {}", g.number, g.title));
    let members: Vec<String> = g
        .members
        .iter()
        .filter(|m| !b.state.dnd(m))
        .cloned()
        .collect();
    if !b.dir.style.freepbx {
        b.record_check(c, "rg", g.number);
        return ring_all(b, story, c, g, &members, answered);
    }
    b.set(c, "__RINGGROUP_INDEX", g.number);
    b.set(c, "__NODEST", g.number);
    b.record_check(c, "rg", g.number);
    b.set(c, "RingGroupMethod", "ringall");
    b.set(c, "__ALERT_INFO", "");
    b.set(c, "RRNODEST", g.number);
    let list = members.join("-");
    let secs = g.seconds.to_string();
    b.gosub(c, "macro-dial", &[&secs, "Ttr", &list]);
    b.set(c, "CHANNEL(musicclass)", "default");
    b.set(c, "DSARRAY", &list);
    b.set(c, "ds", "");
    let mut ds = String::new();
    for m in &members {
        b.step(c, "While", "1");
        if !ds.is_empty() {
            ds.push('&');
        }
        ds.push_str(&format!("Local/{m}#@from-internal/n"));
        b.set(c, "ds", &ds);
        b.step(c, "EndWhile", "");
    }
    b.step(
        c,
        "Dial",
        &format!("{ds},{secs},Ttrb(func-apply-sipheaders^s^1)"),
    );
    b.dial_vars(c);
    let mut legs = Vec::new();
    for m in &members {
        let (one, two) = b.local_pair(
            &format!("{m}#@from-internal"),
            "from-internal",
            &format!("{m}#"),
            c,
        );
        b.dial_begin(Some(c), one, &format!("{m}#@from-internal/n"));
        legs.push((m.clone(), one, two));
    }
    let mut phones = Vec::new();
    for (m, one, two) in &legs {
        b.goto(*two, "ext-rgmember", &format!("{m}#"));
        b.step(*two, "NoOp", &format!("Ring group {} member {m}", g.number));
        b.set(*two, "__PICKUPMARK", m);
        dial_one_head(b, *two, m, "");
        dial_one_phone(b, *two, m, "");
        let p = ring_phone(b, *two, m);
        b.newstate(*one, ChanState::Ringing);
        b.dial_state(Some(c), *one, "RINGING");
        story.rang.push(m.clone());
        phones.push(p);
    }
    let winner = if answered && !legs.is_empty() {
        Some(b.rng.random_range(0..legs.len()))
    } else {
        None
    };
    match winner {
        Some(w) => {
            let ring = b.secs(2, 10).min(g.seconds * 1000 - 1000);
            b.wait(ring);
            let (m, one, two) = legs[w].clone();
            b.answered(Some(two), phones[w], Some(&m));
            b.newstate(one, ChanState::Up);
            for (i, (lm, lone, ltwo)) in legs.iter().enumerate() {
                if i == w {
                    continue;
                }
                b.dial_end(Some(c), *lone, "CANCEL");
                b.hangup_request(*ltwo, 26);
                b.hangup(*lone, 26);
                b.dial_end(Some(*ltwo), phones[i], "CANCEL");
                b.hangup(*ltwo, 26);
                b.hangup(phones[i], 26);
                b.phone(lm, PhoneState::Idle);
            }
            b.answered(Some(c), one, None);
            story.answer(b.t, &m);
            b.newstate(two, ChanState::Up);
            let inner = b.bridge(BridgeKind::Basic, &[phones[w], two]);
            let outer = b.bridge(BridgeKind::Basic, &[one, c]);
            let talk = b.talk_secs(5, 120);
            b.talk(&[c, phones[w]], talk);
            hangup_in_bridge(b, outer, c, one);
            hangup_in_bridge(b, inner, two, phones[w]);
            b.phone(&m, PhoneState::Idle);
            cdr_answered(b, c, Some(one), g.number, talk);
            leg_answered(b, two, phones[w], &m);
        }
        None => {
            b.wait(g.seconds * 1000);
            for (i, (lm, lone, ltwo)) in legs.iter().enumerate() {
                b.dial_end(Some(c), *lone, "NOANSWER");
                b.hangup_request(*ltwo, 0);
                b.hangup(*lone, 0);
                b.dial_end(Some(*ltwo), phones[i], "CANCEL");
                b.hangup(*ltwo, 0);
                b.hangup(phones[i], 16);
                b.phone(lm, PhoneState::Idle);
            }
            b.var(c, "DIALSTATUS", "NOANSWER");
            b.ret(c);
            b.set(c, "RingGroupMethod", "");
            b.set(c, "__NODEST", "");
            b.step(c, "Goto", "app-announcement-1,s,1");
            b.goto(c, "app-announcement-1", "s");
            b.step(c, "GotoIf", "0?begin");
            b.step(c, "Answer", "");
            b.newstate(c, ChanState::Up);
            let answered = b.t;
            b.step(c, "Wait", "1");
            b.wait(1000);
            b.step(c, "NoOp", "Playing announcement Nobody available");
            b.step(c, "Playback", "vm-nobodyavail,noanswer");
            b.wait(3000);
            b.step(c, "Goto", "app-blackhole,hangup,1");
            b.goto(c, "app-blackhole", "hangup");
            b.step(c, "NoOp", "Blackhole Dest: Hangup");
            b.step(c, "Hangup", "");
            caller_gone(b, c, 16, None, Some(answered));
            story.disposition = Disposition::NoAnswer;
        }
    }
}

/// FreePBX ext-queues (a bare dialplan's Queue() alike): linear strategy, 5 s per member via
/// Local/<ext>@from-queue/n.
fn queue(
    b: &mut CallBuilder,
    story: &mut Story,
    c: ChanId,
    q: &super::directory::Queue,
    answered: bool,
) {
    let style = b.dir.style;
    b.step(c, "NoOp", &format!("Queue {} {}", q.number, q.title));
    b.step(c, "Answer", "");
    if b.chan(c).state != ChanState::Up {
        b.newstate(c, ChanState::Up);
    }
    if style.freepbx {
        b.set(c, "__NODEST", q.number);
    }
    b.record_check(c, "q", q.number);
    if style.freepbx {
        b.set(c, "QUEUENUM", q.number);
        b.set(c, "QUEUEJOINTIME", &(b.t / 1000).to_string());
        b.set(c, "__MOHCLASS", "default");
    }
    b.step(c, "Queue", &format!("{},tT,,,60", q.number));
    b.on(
        "QueueCallerJoin",
        c,
        &[("Queue", q.number), ("Position", "1"), ("Count", "1")],
    );
    b.on("MusicOnHoldStart", c, &[("Class", "default")]);
    let joined = b.t;
    let members: Vec<String> = q
        .members
        .iter()
        .filter(|m| {
            !b.state
                .paused
                .contains(&(q.number.to_owned(), style.queue_member(m)))
                && !b.state.dnd(m)
        })
        .cloned()
        .collect();
    if members.is_empty() {
        b.wait_between(5_000, 30_000);
        abandon(b, c, q.number, joined);
        story.disposition = Disposition::NoAnswer;
        return;
    }
    // Members ring in turn; the last one tried answers (or the caller gives up while it rings).
    let tries = b.rng.random_range(1..=members.len().min(3));
    for (i, m) in members.iter().take(tries).enumerate() {
        let last = i + 1 == tries;
        let name = b.dir.name(m);
        let members_context = style.queue_members;
        let (one, two) = b.local_pair(
            &format!("{m}@{members_context}"),
            members_context,
            q.number,
            c,
        );
        let interface = style.queue_member(m);
        let agent = [
            ("Queue", q.number),
            ("Interface", interface.as_str()),
            ("MemberName", name.as_str()),
        ];
        agent_event(b, "AgentCalled", c, one, &agent, &[]);
        b.dial_begin(Some(c), one, &interface);
        b.goto(two, members_context, m);
        if style.freepbx {
            b.set(two, "QAGENT", m);
            b.set(two, "__FROMQ", "true");
            b.step(two, "Goto", &format!("from-queue-exten-only,{m},1"));
            b.goto(two, "from-queue-exten-only", m);
            b.set(two, "RingGroupMethod", "none");
            b.set(two, "__PICKUPMARK", m);
        }
        dial_one_head(b, two, m, "");
        dial_one_phone(b, two, m, "");
        let p = ring_phone(b, two, m);
        b.newstate(one, ChanState::Ringing);
        b.dial_state(Some(c), one, "RINGING");
        story.rang.push(m.clone());
        if !last {
            b.wait(5000);
            agent_event(
                b,
                "AgentRingNoAnswer",
                c,
                one,
                &agent,
                &[("RingTime", "5000")],
            );
            b.dial_end(Some(c), one, "NOANSWER");
            b.dial_end(Some(c), one, "CANCEL");
            b.hangup_request(two, 0);
            b.hangup(one, 0);
            b.dial_end(Some(two), p, "CANCEL");
            b.hangup(two, 0);
            b.hangup(p, 16);
            b.phone(m, PhoneState::Idle);
            b.wait(1000);
            continue;
        }
        if !answered {
            b.wait_between(2_000, 4_000);
            b.hangup_request(c, 16);
            b.dial_end(Some(c), one, "CANCEL");
            b.hangup(one, 16);
            b.dial_end(Some(two), p, "CANCEL");
            b.hangup(two, 16);
            b.hangup(p, 16);
            b.phone(m, PhoneState::Idle);
            abandon(b, c, q.number, joined);
            story.disposition = Disposition::NoAnswer;
            return;
        }
        b.wait_between(2_000, 4_000);
        b.answered(Some(two), p, Some(m));
        b.newstate(two, ChanState::Up);
        let inner = b.bridge(BridgeKind::Basic, &[p, two]);
        b.newstate(one, ChanState::Up);
        b.dial_end(Some(c), one, "ANSWER");
        b.on("MusicOnHoldStop", c, &[]);
        b.on(
            "QueueCallerLeave",
            c,
            &[("Queue", q.number), ("Position", "1"), ("Count", "0")],
        );
        let hold = ((b.t - joined) / 1000).to_string();
        agent_event(
            b,
            "AgentConnect",
            c,
            one,
            &agent,
            &[("HoldTime", &hold), ("RingTime", "3")],
        );
        story.answer(b.t, m);
        let outer = b.bridge(BridgeKind::Basic, &[one, c]);
        let talk = b.talk_secs(5, 120);
        b.talk(&[c, p], talk);
        b.hangup_request(c, 16);
        b.leave(outer, c);
        b.leave(outer, one);
        let talk_s = (talk / 1000).to_string();
        agent_event(
            b,
            "AgentComplete",
            c,
            one,
            &agent,
            &[
                ("HoldTime", &hold),
                ("TalkTime", &talk_s),
                ("Reason", "caller"),
            ],
        );
        b.destroy(outer);
        b.soft_hangup(c, 16);
        b.hangup(one, 16);
        b.hangup(c, 16);
        b.trunk_device("NOT_INUSE");
        b.leave(inner, two);
        b.leave(inner, p);
        b.hangup(two, 16);
        b.hangup(p, 16);
        b.destroy(inner);
        b.phone(m, PhoneState::Idle);
        cdr_answered(b, c, Some(one), q.number, talk);
        leg_answered(b, two, p, m);
    }
}

/// A bare dialplan's ring group: `Dial(SIP/a&SIP/b,20)`, every member's phone at once; the
/// first to answer gets the call, the others stop ringing (answered elsewhere). Nobody
/// answering, the caller hears an announcement.
fn ring_all(
    b: &mut CallBuilder,
    story: &mut Story,
    c: ChanId,
    g: &super::directory::RingGroup,
    members: &[String],
    answered: bool,
) {
    let targets: Vec<String> = members.iter().map(|m| b.dir.style.device(m)).collect();
    b.step(c, "Dial", &format!("{},{}", targets.join("&"), g.seconds));
    b.dial_vars(c);
    let mut phones = Vec::new();
    for m in members {
        phones.push(ring_phone(b, c, m));
        story.rang.push(m.clone());
    }
    let winner = (answered && !members.is_empty()).then(|| b.rng.random_range(0..members.len()));
    let Some(w) = winner else {
        b.wait(g.seconds * 1000);
        for (m, &p) in members.iter().zip(&phones) {
            b.dial_end(Some(c), p, "NOANSWER");
            b.hangup(p, 16);
            b.phone(m, PhoneState::Idle);
        }
        b.var(c, "DIALSTATUS", "NOANSWER");
        b.step(c, "Answer", "");
        b.newstate(c, ChanState::Up);
        let answered = b.t;
        b.step(c, "Playback", "vm-nobodyavail,noanswer");
        b.wait(3000);
        b.step(c, "Hangup", "");
        caller_gone(b, c, 16, None, Some(answered));
        story.disposition = Disposition::NoAnswer;
        return;
    };
    let ring = b.secs(2, 10).min(g.seconds * 1000 - 1000);
    b.wait(ring);
    let (m, p) = (members[w].clone(), phones[w]);
    b.answered(Some(c), p, Some(&m));
    for (i, (other, &q)) in members.iter().zip(&phones).enumerate() {
        if i != w {
            b.dial_end(Some(c), q, "CANCEL");
            b.hangup(q, 26);
            b.phone(other, PhoneState::Idle);
        }
    }
    story.answer(b.t, &m);
    let br = b.bridge(BridgeKind::Basic, &[p, c]);
    let talk = b.talk_secs(5, 120);
    b.talk(&[c, p], talk);
    hangup_in_bridge(b, br, c, p);
    b.phone(&m, PhoneState::Idle);
    cdr_answered(b, c, Some(p), g.number, talk);
}

// AgentCalled/AgentRingNoAnswer/AgentConnect/AgentComplete: caller block, Dest block (Local;1),
// Queue/Interface/MemberName, then the event's own fields.
fn agent_event(
    b: &mut CallBuilder,
    name: &str,
    c: ChanId,
    dest: ChanId,
    agent: &[(&str, &str)],
    extra: &[(&str, &str)],
) {
    let mut m = event(name);
    b.chan(c).block("", &mut m);
    b.chan(dest).block("Dest", &mut m);
    for (k, v) in agent.iter().chain(extra) {
        m.push(k, v);
    }
    b.emit(m);
}

fn abandon(b: &mut CallBuilder, c: ChanId, queue: &str, joined: u64) {
    let hold = ((b.t - joined) / 1000).to_string();
    b.on(
        "QueueCallerAbandon",
        c,
        &[
            ("Queue", queue),
            ("Position", "1"),
            ("OriginalPosition", "1"),
            ("HoldTime", &hold),
        ],
    );
    b.on(
        "QueueCallerLeave",
        c,
        &[("Queue", queue), ("Position", "1"), ("Count", "0")],
    );
    b.on("MusicOnHoldStop", c, &[]);
    let answered = b.legs[c].created_ms;
    caller_gone(b, c, 16, None, Some(answered));
}

// ------------------------------------------------------------------ outbound

/// outrt-1 + macro-dialout-trunk on `c` (bare: the outbound route's context, entered with
/// its prefix stripped), dialing `number` on the trunk; returns the trunk leg
/// after it answered (or, when `answers` is false, after NOANSWER and the trunk hung up).
fn trunk_dial(b: &mut CallBuilder, c: ChanId, number: &str, answers: bool, ring: u64) -> ChanId {
    let style = b.dir.style;
    if style.freepbx {
        b.set(c, "MOHCLASS", "default");
        b.set(c, "_NODEST", "");
    } else if b.chan(c).context != style.outbound {
        // The phone dialed the prefix and the number: the trunk gets the number.
        b.step(c, "Goto", &format!("{},{number},1", style.outbound));
        b.goto(c, style.outbound, number);
    }
    b.record_check(c, "out", number);
    if style.freepbx {
        b.gosub(c, "macro-dialout-trunk", &["1", number, "", "off"]);
        b.set(c, "DIAL_TRUNK", "1");
        b.set(c, "OUTNUM", number);
        b.set(c, "DIAL_TRUNK_OPTIONS", "T");
    }
    // The office's number goes out as the caller, but for a forwarded call's own.
    let forwarded = b.chan(c).name.starts_with("Local/");
    let cid_all = format!("CALLERID(all)=\"{}\" <{}>", OFFICE_CID.1, OFFICE_CID.0);
    if style.freepbx {
        let data = format!("{}?Set({cid_all})", u8::from(!forwarded));
        b.step(c, "ExecIf", &data);
    } else if !forwarded {
        b.step(c, "Set", &cid_all);
    }
    if !forwarded {
        let conn = (b.chan(c).conn_num.clone(), b.chan(c).conn_name.clone());
        b.set_ids(c, OFFICE_CID, (&conn.0, &conn.1));
        b.on(
            "NewCallerid",
            c,
            &[("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")],
        );
    }
    let peer = style.trunk_dial(number);
    let options = if style.freepbx {
        b.set(c, "GROUP()", "OUT_1");
        ",Tb(func-apply-sipheaders^s^1)"
    } else {
        ""
    };
    b.step(c, "Dial", &format!("{}/{peer},20{options}", style.tech));
    b.dial_vars(c);
    let t = b.outgoing(c, None, &peer, (number, UNKNOWN), style.inbound);
    b.dial_begin(Some(c), t, &peer);
    b.connected(c, number, UNKNOWN);
    b.wait_between(50, 400);
    b.ringing(Some(c), t, None);
    if answers {
        b.wait(ring);
        b.answered(Some(c), t, None);
    } else {
        b.wait(20_000);
        b.dial_end(Some(c), t, "NOANSWER");
        b.hangup(t, 16);
        b.var(c, "DIALSTATUS", "NOANSWER");
    }
    t
}

/// A phone calling an external number through outrt-1.
fn outbound(
    b: &mut CallBuilder,
    story: &mut Story,
    c: ChanId,
    ext: &str,
    number: &str,
    answers: bool,
) {
    let ring = b.secs(2, 10);
    let t = trunk_dial(b, c, number, answers, ring);
    if answers {
        story.answer(b.t, number);
        let br = b.bridge(BridgeKind::Basic, &[t, c]);
        let talk = b.talk_secs(5, 120);
        b.talk(&[c, t], talk);
        hangup_in_bridge(b, br, c, t);
        b.phone(ext, PhoneState::Idle);
        cdr_answered(b, c, Some(t), number, talk);
    } else {
        b.trunk_device("NOT_INUSE");
        if b.dir.style.freepbx {
            b.ret(c);
            b.gosub(c, "macro-outisbusy", &[]);
            b.step(c, "NoOp", "Trunk dial failed: NOANSWER");
            b.step(c, "GotoIf", "0?busy");
            b.step(c, "Progress", "");
            b.step(c, "GotoIf", "1?noanswer");
            b.goto(c, "macro-outisbusy", "s");
        }
        b.step(c, "Playback", "number-not-answering,noanswer");
        b.wait(1500);
        b.step(c, "Hangup", "19");
        caller_gone(b, c, 19, Some(t), None);
        story.disposition = Disposition::NoAnswer;
    }
}

/// Click-to-call: Originate rings the agent's phone first (DialBegin with no Channel), then the
/// answered phone runs the outbound route. `action_id` is set when an AMI client asked for it.
pub fn click_to_call_truth(b: &mut CallBuilder, ext: &str, number: &str, action_id: &str) -> Truth {
    let started_ms = b.t;
    let mut story = Story::new(b.t);
    click_to_call(b, &mut story, ext, number, Some(action_id));
    let end = b
        .legs
        .iter()
        .filter_map(|l| l.ended_ms)
        .max()
        .unwrap_or(b.t);
    let answered = story.answered.unwrap_or(end);
    Truth {
        linkedid: b.chan(0).linkedid.clone(),
        scenario: Scenario::ClickToCall.name(),
        direction: Direction::Outbound,
        from: ext.to_owned(),
        to: number.to_owned(),
        disposition: story.disposition,
        answered_by: story.answered_by,
        rang: story.rang,
        transfers: Vec::new(),
        recording: b.recording.is_some(),
        talk_seconds_approx: (end - answered + 500) / 1000,
        ring_seconds_approx: (answered - story.start + 500) / 1000,
        started_ms,
        ended_ms: end,
    }
}

fn click_to_call(
    b: &mut CallBuilder,
    story: &mut Story,
    ext: &str,
    number: &str,
    action_id: Option<&str>,
) {
    let name = b.dir.name(ext);
    let pname = b.phone_name(ext);
    let style = b.dir.style;
    // Originate's Exten: what the phone would dial (bare: the outbound prefix first).
    let dialed = format!("{}{number}", style.outbound_prefix);
    let own_cid = b.peer_cid((ext, &name));
    let p = b.new_chan(
        pname,
        ChanState::Down,
        own_cid,
        (UNKNOWN, UNKNOWN),
        style.internal,
        &dialed,
        None,
    );
    b.step(p, "AppDial2", "(Outgoing Line)");
    b.set_ids(p, (ext, &name), (ext, &name));
    b.on("NewConnectedLine", p, &[]);
    b.dial_begin(None, p, &style.endpoint(ext));
    story.rang.push(ext.to_owned());
    b.wait_between(50, 300);
    b.newstate(p, ChanState::Ringing);
    b.dial_state(None, p, "RINGING");
    b.phone(ext, PhoneState::Ringing);
    b.wait_between(1_000, 5_000);
    b.newstate(p, ChanState::Up);
    b.dial_end(None, p, "ANSWER");
    b.phone(ext, PhoneState::InUse);
    // As in expected.json, the ring time of a click-to-call is the external number's.
    story.start = b.t;
    b.goto(p, style.internal, &dialed);
    if let Some(id) = action_id {
        let mut m = event("OriginateResponse");
        let uniqueid = b.chan(p).uniqueid.clone();
        let fields: [(&str, &str); 9] = [
            ("ActionID", id),
            ("Response", "Success"),
            ("Channel", &b.chan(p).name.clone()),
            ("Context", style.internal),
            ("Exten", &dialed),
            ("Reason", "4"),
            ("Uniqueid", &uniqueid),
            ("CallerIDNum", ext),
            ("CallerIDName", &name),
        ];
        for (k, v) in fields {
            m.push(k, v);
        }
        b.emit(m);
    }
    outbound(b, story, p, ext, number, true);
}

// ------------------------------------------------------------------ conference

/// ext-meetme 8000: answer, record, ConfBridge; the caller leaves after a while.
fn conference(b: &mut CallBuilder, story: &mut Story, c: ChanId) {
    b.step(c, "NoOp", &format!("Conference {CONFERENCE} Team"));
    if b.dir.style.freepbx {
        b.set(c, "MEETME_ROOMNUM", CONFERENCE);
    }
    b.step(c, "Answer", "");
    b.newstate(c, ChanState::Up);
    let answered = b.t;
    story.answer(b.t, CONFERENCE);
    b.step(c, "Wait", "1");
    b.wait(1000);
    b.record_check(c, "conf", CONFERENCE);
    b.step(
        c,
        "ConfBridge",
        &format!("{CONFERENCE},default_bridge,default_user,admin_menu"),
    );
    let br = b.bridge(BridgeKind::Conference, &[]);
    b.conf_event("ConfbridgeStart", br, None, &[]);
    b.enter(br, c);
    b.conf_event(
        "ConfbridgeJoin",
        br,
        Some(c),
        &[("Admin", "No"), ("Muted", "No")],
    );
    let talk = b.talk_secs(5, 120);
    b.talk(&[c], talk);
    b.hangup_request(c, 16);
    b.conf_event("ConfbridgeLeave", br, Some(c), &[("Admin", "No")]);
    b.leave(br, c);
    b.conf_event("ConfbridgeEnd", br, None, &[]);
    b.destroy(br);
    b.soft_hangup(c, 16);
    b.hangup(c, 16);
    if b.dir.style.is_trunk(&b.chan(c).name) {
        b.trunk_device("NOT_INUSE");
    } else {
        let ext = b.chan(c).cid_num.clone();
        b.phone(&ext, PhoneState::Idle);
    }
    b.dial_done(c, b.t.saturating_sub(talk));
    // Asterisk's row of a conference call: its last application is the room's ConfBridge,
    // answered when the line was (what the CDR says a conference answered).
    let row = CdrRow {
        channel: c,
        dest: None,
        destination: CONFERENCE.to_owned(),
        dest_context: b.dir.style.conference.into(),
        last_app: "ConfBridge".into(),
        last_data: format!("{CONFERENCE},default_bridge,default_user,admin_menu"),
        answered_ms: Some(answered),
        disposition: "ANSWERED",
    };
    b.cdr(&row);
}
