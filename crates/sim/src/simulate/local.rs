//! The Local-channel shapes of the asterisk-22 harness transcripts: no SIP at all, every phone
//! and PSTN party is a Local channel (`Local/<DID>@from-pstn`, `Local/<ext>@agents`,
//! `Local/<number>@pstn-out`), calls start with an Originate, a hangup handler ends them.

use calls::{Direction, Disposition};
use rand::Rng;

use super::call::{CallBuilder, ChanId};
use super::story::{pick_ext, pstn_number, Story, CALLER_NAMES};
use super::wire::{event, BridgeKind, ChanState, UNKNOWN};

/// The harness's only DID.
const DID: &str = "15550001000";
const CLI_PRES: (&str, &str) = ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)");

/// What the agent (`[agents]` dialplan) does when its Local channel is dialed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Agent {
    Answers,
    NoAnswer,
    Busy,
}

/// Inbound: the ;1 half of `Local/<DID>@from-pstn` is the caller (pstn-caller), the ;2 half the
/// PBX side: Answer, MixMonitor, Read() IVR, the caller presses 1, Dial(Local/<ext>@agents).
pub(super) fn inbound(
    b: &mut CallBuilder,
    story: &mut Story,
    agent: Agent,
) -> (Direction, String, String) {
    let ext = pick_ext(b);
    let num = pstn_number(b);
    let name = CALLER_NAMES[b.rng.random_range(0..CALLER_NAMES.len())];
    let (caller, pbx) = originated_pair(
        b,
        &format!("{DID}@from-pstn"),
        "from-pstn",
        DID,
        (&num, name),
    );
    b.step(
        pbx,
        "NoOp",
        &format!("Inbound call to DID {DID} from \"{name}\" <{num}>"),
    );
    b.set(pbx, "__DID", DID);
    b.set(pbx, "__RING_TIMEOUT", "20");
    b.set(pbx, "__TRANSFER_CONTEXT", "internal");
    hangup_handler_push(b, pbx, "from-pstn");
    b.step(pbx, "Answer", "");
    b.newstate(pbx, ChanState::Up);
    let device = format!("Local/{DID}@from-pstn");
    b.device(&device, "INUSE");
    b.newstate(caller, ChanState::Up);
    b.dial_end(None, caller, "ANSWER");
    b.goto(caller, "pstn-caller", "s");
    b.step(
        caller,
        "NoOp",
        &format!("PSTN caller \"{name}\" <{num}> connected, will press '1'"),
    );
    b.step(caller, "Wait", "2");
    mix_monitor(b, pbx, &format!("in-{DID}"));
    b.step(pbx, "Read", "IVR_CHOICE,beep,1,,1,6");
    b.wait(2000);
    b.step(caller, "ExecIf", "1?SendDTMF(1,250)");
    b.on(
        "DTMFBegin",
        pbx,
        &[("Digit", "1"), ("Direction", "Received")],
    );
    b.wait(250);
    b.on(
        "DTMFEnd",
        pbx,
        &[
            ("Digit", "1"),
            ("DurationMs", "250"),
            ("Direction", "Received"),
        ],
    );
    b.var(pbx, "IVR_CHOICE", "1");
    b.var(pbx, "READSTATUS", "OK");
    b.step(pbx, "Goto", "ivr-routes,1,1");
    b.goto(pbx, "ivr-routes", "1");
    b.step(pbx, "Verbose", &format!("1,IVR 1 -> agent {ext}"));
    b.step(pbx, "Goto", &format!("internal,{ext},1"));
    b.goto(pbx, "internal", &ext);
    b.step(
        pbx,
        "NoOp",
        &format!("Internal call to {ext} from \"{name}\" <{num}>"),
    );
    b.step(pbx, "Dial", &format!("Local/{ext}@agents,20,tT"));
    b.dial_vars(pbx);
    let (one, two) = b.local_pair(&format!("{ext}@agents"), "agents", &ext, pbx);
    b.dial_begin(Some(pbx), one, &format!("{ext}@agents"));
    b.goto(two, "agents", &ext);
    story.rang.push(ext.clone());
    let agent_device = format!("Local/{ext}@agents");
    let status = match agent {
        Agent::Answers => {
            agent_rings(b, Some(pbx), one, two, &ext);
            b.wait_between(2000, 10_000);
            b.step(two, "Answer", "");
            b.newstate(two, ChanState::Up);
            b.answered(Some(pbx), one, None);
            let answered = b.t;
            story.answer(answered, &ext);
            let br = b.bridge(BridgeKind::Basic, &[one, pbx]);
            let talk = b.talk_secs(5, 120);
            agent_talks(b, two, talk);
            b.soft_hangup(two, 16);
            b.hangup_request(one, 16);
            b.hangup(two, 16);
            b.var(one, "BRIDGEPEER", "");
            b.var(pbx, "BRIDGEPEER", "");
            b.leave(br, one);
            b.hangup(one, 16);
            b.leave(br, pbx);
            b.destroy(br);
            b.dial_done(pbx, answered);
            "ANSWER"
        }
        Agent::NoAnswer => {
            agent_rings(b, Some(pbx), one, two, &ext);
            b.step(two, "Wait", "120");
            b.wait(20_000);
            b.dial_end(Some(pbx), one, "NOANSWER");
            b.hangup_request(two, 16);
            b.hangup(one, 0);
            b.soft_hangup(two, 16);
            b.hangup(two, 16);
            b.var(pbx, "DIALSTATUS", "NOANSWER");
            after_dial(b, pbx, "NOANSWER", "vm-nobodyavail");
            story.disposition = Disposition::NoAnswer;
            "NOANSWER"
        }
        Agent::Busy => {
            b.step(two, "NoOp", &format!("Agent {ext} is busy"));
            b.step(two, "Busy", "10");
            b.newstate(two, ChanState::Busy);
            b.device(&agent_device, "BUSY");
            b.dial_end(Some(pbx), one, "BUSY");
            b.hangup_request(two, 17);
            b.hangup(one, 0);
            b.soft_hangup(two, 17);
            b.hangup(two, 17);
            b.var(pbx, "DIALSTATUS", "BUSY");
            after_dial(b, pbx, "BUSY", "vm-isonphone");
            story.disposition = Disposition::Busy;
            "BUSY"
        }
    };
    b.device(&agent_device, "NOT_INUSE");
    harness_hangup(b, caller, pbx, "from-pstn", status);
    b.device(&device, "NOT_INUSE");
    (Direction::Inbound, num, DID.to_owned())
}

/// Click-to-call: Originate Local/<ext>@agents (the agent answers), then the ;1 half runs
/// `[outbound]`: outbound caller ID, MixMonitor, Dial(Local/<number>@pstn-out).
pub(super) fn click_to_call(b: &mut CallBuilder, story: &mut Story) -> (Direction, String, String) {
    let ext = pick_ext(b);
    let number = pstn_number(b);
    let name = format!("Agent {ext}");
    let (agent, two) = originated_pair(b, &format!("{ext}@agents"), "agents", &ext, (&ext, &name));
    story.rang.push(ext.clone());
    agent_rings(b, None, agent, two, &ext);
    b.wait_between(1000, 4000);
    b.step(two, "Answer", "");
    b.newstate(two, ChanState::Up);
    b.newstate(agent, ChanState::Up);
    b.dial_end(None, agent, "ANSWER");
    // As in expected.json, the ring time of a click-to-call is the external number's.
    story.start = b.t;
    b.goto(agent, "outbound", &format!("+{number}"));
    b.step(agent, "Goto", &format!("outbound,{number},1"));
    b.goto(agent, "outbound", &number);
    b.step(
        agent,
        "NoOp",
        &format!("Click-to-call: \"{name}\" <{ext}> -> external {number}"),
    );
    b.set(agent, "CDR(userfield)", "click-to-call");
    hangup_handler_push(b, agent, "outbound");
    b.set(agent, "CALLERID(num)", "+15550001000");
    let conn = (
        b.chan(agent).conn_num.clone(),
        b.chan(agent).conn_name.clone(),
    );
    b.set_ids(agent, ("+15550001000", &name), (&conn.0, &conn.1));
    b.on("NewCallerid", agent, &[CLI_PRES]);
    b.set(agent, "CALLERID(name)", "Harness Office");
    b.set_ids(
        agent,
        ("+15550001000", "Harness Office"),
        (&conn.0, &conn.1),
    );
    b.on("NewCallerid", agent, &[CLI_PRES]);
    mix_monitor(b, agent, &format!("out-{number}"));
    b.step(agent, "Dial", &format!("Local/{number}@pstn-out,30,T"));
    b.dial_vars(agent);
    let (far, far_two) = b.local_pair(&format!("{number}@pstn-out"), "pstn-out", &number, agent);
    b.dial_begin(Some(agent), far, &format!("{number}@pstn-out"));
    b.goto(far_two, "pstn-out", &number);
    b.step(far_two, "NoOp", &format!("External party {number} ringing"));
    b.step(far_two, "Ringing", "");
    b.newstate(far, ChanState::Ringing);
    b.step(far_two, "Wait", "3");
    let far_device = format!("Local/{number}@pstn-out");
    b.device(&far_device, "RINGING");
    b.var(agent, "RINGTIME", "0");
    b.dial_state(Some(agent), far, "RINGING");
    b.step(two, "ExecIf", "0?Gosub(agent-action-,s,1())");
    b.step(two, "Playback", "hello-world");
    b.var(two, "PLAYBACKSTATUS", "SUCCESS");
    b.wait_between(2000, 10_000);
    b.step(far_two, "Answer", "");
    b.newstate(far_two, ChanState::Up);
    b.answered(Some(agent), far, None);
    let answered = b.t;
    story.answer(answered, &number);
    b.device(&far_device, "INUSE");
    let br = b.bridge(BridgeKind::Basic, &[far, agent]);
    let talk = b.talk_secs(5, 120);
    agent_talks(b, two, talk);
    // The agent hangs up: its Local pair goes, then the far end.
    b.soft_hangup(two, 16);
    b.hangup(two, 16);
    b.hangup_request(agent, 16);
    b.leave(br, agent);
    b.dial_done(agent, answered);
    b.on(
        "HangupHandlerRun",
        agent,
        &[("Handler", "hangup-handler,s,1(outbound)")],
    );
    b.hangup(agent, 16);
    b.leave(br, far);
    b.destroy(br);
    b.hangup_request(far, 16);
    b.hangup(far, 16);
    b.hangup(far_two, 16);
    b.device(&format!("Local/{ext}@agents"), "NOT_INUSE");
    b.device(&far_device, "NOT_INUSE");
    (Direction::Outbound, ext, number)
}

// The Local pair an Originate creates: ;1 is dialed by the core (DialBegin without Channel),
// both halves take `party` as caller ID.
fn originated_pair(
    b: &mut CallBuilder,
    target: &str,
    context: &str,
    exten: &str,
    party: (&str, &str),
) -> (ChanId, ChanId) {
    let (n1, n2) = b.local_names(target);
    let one = b.new_chan(
        n1,
        ChanState::Down,
        (UNKNOWN, UNKNOWN),
        (UNKNOWN, UNKNOWN),
        context,
        exten,
        None,
    );
    let linked = b.chan(one).linkedid.clone();
    let two = b.new_chan(
        n2,
        ChanState::Ring,
        (UNKNOWN, UNKNOWN),
        (UNKNOWN, UNKNOWN),
        context,
        exten,
        Some(&linked),
    );
    b.goto(one, context, exten);
    b.step(one, "AppDial2", "(Outgoing Line)");
    b.set_ids(one, party, (UNKNOWN, UNKNOWN));
    b.on("NewCallerid", one, &[CLI_PRES]);
    b.connected(one, party.0, party.1);
    b.set_ids(two, party, party);
    b.on("NewCallerid", two, &[CLI_PRES]);
    b.on("NewConnectedLine", two, &[]);
    b.local_bridge(one, two, context, exten);
    b.dial_begin(None, one, target);
    b.goto(two, context, exten);
    (one, two)
}

// [agents]: NoOp, Ringing(), Wait: the ;1 half rings toward whoever dialed it.
fn agent_rings(b: &mut CallBuilder, caller: Option<ChanId>, one: ChanId, two: ChanId, ext: &str) {
    b.step(two, "NoOp", &format!("Agent {ext} ringing"));
    b.step(two, "Ringing", "");
    b.newstate(one, ChanState::Ringing);
    b.step(two, "Wait", "2");
    b.device(&format!("Local/{ext}@agents"), "INUSE");
    if let Some(c) = caller {
        b.var(c, "RINGTIME", "0");
    }
    b.dial_state(caller, one, "RINGING");
}

// [agents] after Answer(): the greeting, then Wait(TALK_TIME) and Hangup().
fn agent_talks(b: &mut CallBuilder, two: ChanId, talk_ms: u64) {
    b.step(two, "ExecIf", "0?Gosub(agent-action-,s,1())");
    b.step(two, "Playback", "hello-world");
    b.var(two, "PLAYBACKSTATUS", "SUCCESS");
    b.step(two, "Wait", &(talk_ms / 1000).to_string());
    b.wait(talk_ms);
    b.step(two, "Hangup", "");
}

fn hangup_handler_push(b: &mut CallBuilder, c: ChanId, source: &str) {
    let handler = format!("hangup-handler,s,1({source})");
    b.set(c, "CHANNEL(hangup_handler_push)", &handler);
    b.on("HangupHandlerPush", c, &[("Handler", &handler)]);
}

// The harness's MixMonitor: /var/ast/spool/monitor/<date>-<what>-<uniqueid>.wav, `b` option.
fn mix_monitor(b: &mut CallBuilder, c: ChanId, what: &str) {
    let stamp = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(b.t as i64)
        .unwrap_or_default()
        .format("%Y%m%d-%H%M%S");
    let file = format!("{stamp}-{what}-{}.wav", b.chan(c).uniqueid);
    let path = format!("/var/ast/spool/monitor/{file}");
    b.step(c, "MixMonitor", &format!("{path},b"));
    b.var(c, "MIXMONITOR_FILENAME", &path);
    b.on("MixMonitorStart", c, &[]);
    b.recording = Some(file);
}

// [after-dial]: a prompt for NOANSWER / BUSY, then Hangup().
fn after_dial(b: &mut CallBuilder, pbx: ChanId, status: &str, prompt: &str) {
    b.step(pbx, "Goto", &format!("after-dial,{status},1"));
    b.goto(pbx, "after-dial", status);
    b.step(pbx, "Playback", prompt);
    b.wait(2000);
    b.var(pbx, "PLAYBACKSTATUS", "SUCCESS");
    b.step(pbx, "Hangup", "");
}

// The PBX side ends: its hangup handler sends UserEvent HarnessCallEnded, then both halves go.
fn harness_hangup(b: &mut CallBuilder, caller: ChanId, pbx: ChanId, source: &str, status: &str) {
    b.soft_hangup(pbx, 16);
    b.on(
        "HangupHandlerRun",
        pbx,
        &[("Handler", &format!("hangup-handler,s,1({source})"))],
    );
    b.var(pbx, "LOCAL(ARG1)", source);
    b.var(pbx, "LOCAL(ARGC)", "1");
    b.goto(pbx, "hangup-handler", "s");
    let name = b.chan(pbx).name.clone();
    b.step(
        pbx,
        "NoOp",
        &format!("Hangup handler ({source}) {name} DIALSTATUS={status}"),
    );
    b.step(
        pbx,
        "UserEvent",
        &format!("HarnessCallEnded,Source: {source},DID: {DID},DialStatus: {status}"),
    );
    let mut m = event("UserEvent");
    b.chan(pbx).block("", &mut m);
    for (k, v) in [
        ("UserEvent", "HarnessCallEnded"),
        ("Source", source),
        ("Scenario", "simulated"),
        ("DID", DID),
        ("IVRChoice", "1"),
        ("DialStatus", status),
        ("HangupCause", "16"),
    ] {
        m.push(k, v);
    }
    b.emit(m);
    b.step(pbx, "Return", "");
    for v in ["ARGC", "ARG1", "GOSUB_RETVAL"] {
        b.var(pbx, v, "");
    }
    b.var(caller, "CHANLOCALSTATUS", "ANSWER");
    b.hangup_request(caller, 16);
    b.soft_hangup(caller, 16);
    b.hangup(caller, 16);
    b.hangup(pbx, 16);
}
