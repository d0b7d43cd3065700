//! Building blocks of one simulated call: channels, dialplan steps (Newexten/VarSet noise),
//! dials, bridges and hangups, each emitting the events real Asterisk 22 sends for it.

use ami::Message;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::Rng;

use super::directory::{Directory, PbxState};
use super::wire::{chan_event, event, Bridge, BridgeKind, Chan, ChanState, UNKNOWN};

/// Counters shared by all calls: one global uniqueid sequence, channel numbers per technology.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    next_uniqueid: u64,
    sip: u32,
    local: u32,
}

/// Index of a channel within one call.
pub type ChanId = usize;
/// Index of a bridge within one call.
pub type BridgeId = usize;

/// What a phone is doing, as DeviceStateChange / ExtensionStatus / QueueMemberStatus report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneState {
    Idle,
    InUse,
    Ringing,
    Busy,
}

/// A channel of the call and its life span (CDR times, the call's end for the truth).
#[derive(Debug, Clone)]
pub struct Leg {
    pub chan: Chan,
    pub created_ms: u64,
    /// When it first went up: the answer of its CDR rows.
    pub answered_ms: Option<u64>,
    pub ended_ms: Option<u64>,
}

// A Gosub frame: where Return() goes back to and how many arguments it had.
#[derive(Debug, Clone)]
struct Frame {
    context: String,
    exten: String,
    priority: u32,
    args: usize,
}

/// Builds one call's event list in time order.
#[derive(Debug)]
pub struct CallBuilder<'a> {
    ids: &'a mut Ids,
    pub rng: &'a mut StdRng,
    pub dir: &'a Directory,
    pub state: &'a PbxState,
    /// Virtual time of the next event, ms since the Unix epoch.
    pub t: u64,
    pub events: Vec<(u64, Message)>,
    pub legs: Vec<Leg>,
    frames: Vec<Vec<Frame>>,
    bridges: Vec<Bridge>,
    /// MixMonitor file name (`CDR(recordingfile)`), once sub-record-check ran.
    pub recording: Option<String>,
    // `__VAR`s set so far: every channel dialed later inherits them (one VarSet each).
    inherited: Vec<(String, String)>,
    /// Uniqueid for the next channel instead of a counted one (Originate's `ChannelId`).
    pub channel_id: Option<String>,
}

impl<'a> CallBuilder<'a> {
    pub fn new(
        ids: &'a mut Ids,
        rng: &'a mut StdRng,
        dir: &'a Directory,
        state: &'a PbxState,
        t: u64,
    ) -> Self {
        CallBuilder {
            ids,
            rng,
            dir,
            state,
            t,
            events: Vec::new(),
            legs: Vec::new(),
            frames: Vec::new(),
            bridges: Vec::new(),
            recording: None,
            inherited: Vec::new(),
            channel_id: None,
        }
    }

    // ---------------------------------------------------------------- time and output

    /// Lets `ms` of virtual time pass.
    pub fn wait(&mut self, ms: u64) {
        self.t += ms;
    }

    /// Lets a random time from `lo..hi` ms pass.
    pub fn wait_between(&mut self, lo: u64, hi: u64) {
        self.t += self.rng.random_range(lo..hi);
    }

    /// A random duration in whole seconds from `lo..=hi`, in ms.
    pub fn secs(&mut self, lo: u64, hi: u64) -> u64 {
        self.rng.random_range(lo..=hi) * 1000
    }

    /// A talk time in whole seconds from `lo..=hi`, in ms, log-uniform: most calls are short,
    /// a few are long, as in real call-duration distributions.
    pub fn talk_secs(&mut self, lo: u64, hi: u64) -> u64 {
        let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
        let secs = self.rng.random_range(l..=h).exp().round() as u64;
        secs.clamp(lo, hi) * 1000
    }

    /// Appends an event at the current virtual time.
    pub fn emit(&mut self, m: Message) {
        self.events.push((self.t, m));
    }

    pub fn chan(&self, c: ChanId) -> &Chan {
        &self.legs[c].chan
    }

    fn chan_mut(&mut self, c: ChanId) -> &mut Chan {
        &mut self.legs[c].chan
    }

    /// Emits an event whose only channel block is `c`, with extra fields after it.
    pub fn on(&mut self, name: &str, c: ChanId, extra: &[(&str, &str)]) {
        let mut m = chan_event(name, self.chan(c));
        for (k, v) in extra {
            m.push(k, v);
        }
        self.emit(m);
    }

    // ---------------------------------------------------------------- channels

    /// `PJSIP/<endpoint>-0000000a`: the next channel name of a phone's or the trunk's endpoint.
    fn sip_name(&mut self, endpoint: &str) -> String {
        let n = self.ids.sip;
        self.ids.sip += 1;
        format!("{}/{endpoint}-{n:08x}", self.dir.style.tech)
    }

    /// The next channel of extension `ext`'s phone.
    pub fn phone_name(&mut self, ext: &str) -> String {
        let endpoint = self.dir.style.endpoint(ext);
        self.sip_name(&endpoint)
    }

    /// The next channel of the trunk.
    pub fn trunk_name(&mut self) -> String {
        self.sip_name(self.dir.style.trunk)
    }

    /// The caller ID a channel the PBX creates toward a phone starts with: chan_sip gives it
    /// the peer's configured one (`cid`), PJSIP none.
    pub fn peer_cid<'c>(&self, cid: (&'c str, &'c str)) -> (&'c str, &'c str) {
        match self.dir.style.freepbx {
            true => (UNKNOWN, UNKNOWN),
            false => cid,
        }
    }

    /// Creates a channel and sends its Newchannel. `linked` is the call's Linkedid (None: a new call).
    #[allow(clippy::too_many_arguments)]
    pub fn new_chan(
        &mut self,
        name: String,
        state: ChanState,
        cid: (&str, &str),
        conn: (&str, &str),
        context: &str,
        exten: &str,
        linked: Option<&str>,
    ) -> ChanId {
        let uniqueid = match self.channel_id.take() {
            Some(id) => id,
            None => {
                let n = self.ids.next_uniqueid;
                self.ids.next_uniqueid += 1;
                format!("{}.{n}", self.t / 1000)
            }
        };
        let chan = Chan {
            name,
            state,
            cid_num: cid.0.to_owned(),
            cid_name: cid.1.to_owned(),
            conn_num: conn.0.to_owned(),
            conn_name: conn.1.to_owned(),
            context: context.to_owned(),
            exten: exten.to_owned(),
            priority: 1,
            linkedid: linked.unwrap_or(&uniqueid).to_owned(),
            uniqueid,
        };
        self.legs.push(Leg {
            chan,
            created_ms: self.t,
            answered_ms: None,
            ended_ms: None,
        });
        self.frames.push(Vec::new());
        let c = self.legs.len() - 1;
        self.on("Newchannel", c, &[]);
        c
    }

    /// Takes over a channel that already exists (a call regenerated mid-way, e.g. transferred),
    /// up since `answered_ms`.
    pub fn adopt(&mut self, chan: Chan, created_ms: u64, answered_ms: Option<u64>) -> ChanId {
        self.legs.push(Leg {
            chan,
            created_ms,
            answered_ms,
            ended_ms: None,
        });
        self.frames.push(Vec::new());
        self.legs.len() - 1
    }

    /// Takes over a basic bridge that already exists with `num_channels` in it.
    pub fn adopt_bridge(&mut self, uniqueid: &str, num_channels: usize) -> BridgeId {
        self.bridges.push(Bridge {
            uniqueid: uniqueid.to_owned(),
            kind: BridgeKind::Basic,
            num_channels,
        });
        self.bridges.len() - 1
    }

    /// A Local channel pair `Local/<target>-0000000b;1/;2`, as Dial(Local/...) creates it.
    pub fn local_pair(
        &mut self,
        target: &str,
        context: &str,
        exten: &str,
        caller: ChanId,
    ) -> (ChanId, ChanId) {
        let (one_name, two_name) = self.local_names(target);
        let linked = self.chan(caller).linkedid.clone();
        let caller_cid = (
            self.chan(caller).cid_num.clone(),
            self.chan(caller).cid_name.clone(),
        );
        let one = self.new_chan(
            one_name,
            ChanState::Down,
            (UNKNOWN, UNKNOWN),
            (UNKNOWN, UNKNOWN),
            context,
            exten,
            Some(&linked),
        );
        let two = self.new_chan(
            two_name,
            ChanState::Ring,
            (UNKNOWN, UNKNOWN),
            (UNKNOWN, UNKNOWN),
            context,
            exten,
            Some(&linked),
        );
        self.inherit(two);
        // The ;1 half takes the dialed identity, the ;2 half the caller's, as in the transcripts.
        self.set_ids(one, (exten, UNKNOWN), (&caller_cid.0, &caller_cid.1));
        self.on(
            "NewCallerid",
            one,
            &[("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")],
        );
        self.on("NewConnectedLine", one, &[]);
        self.set_ids(two, (&caller_cid.0, &caller_cid.1), (exten, UNKNOWN));
        self.on(
            "NewCallerid",
            two,
            &[("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")],
        );
        self.on("NewConnectedLine", two, &[]);
        self.local_bridge(one, two, context, exten);
        (one, two)
    }

    /// Names of the next Local pair `Local/<target>-0000000b;1` / `;2`.
    pub fn local_names(&mut self, target: &str) -> (String, String) {
        let n = self.ids.local;
        self.ids.local += 1;
        (
            format!("Local/{target}-{n:08x};1"),
            format!("Local/{target}-{n:08x};2"),
        )
    }

    /// LocalBridge: the two halves of a Local pair are connected.
    pub fn local_bridge(&mut self, one: ChanId, two: ChanId, context: &str, exten: &str) {
        let mut m = event("LocalBridge");
        self.chan(one).block("LocalOne", &mut m);
        self.chan(two).block("LocalTwo", &mut m);
        m.push("Context", context);
        m.push("Exten", exten);
        m.push("LocalOptimization", "No");
        self.emit(m);
    }

    /// Sets a channel's caller ID and connected line (no event).
    pub fn set_ids(&mut self, c: ChanId, cid: (&str, &str), conn: (&str, &str)) {
        let ch = self.chan_mut(c);
        ch.cid_num = cid.0.to_owned();
        ch.cid_name = cid.1.to_owned();
        ch.conn_num = conn.0.to_owned();
        ch.conn_name = conn.1.to_owned();
    }

    /// Updates the connected line and sends NewConnectedLine.
    pub fn connected(&mut self, c: ChanId, num: &str, name: &str) {
        let ch = self.chan_mut(c);
        ch.conn_num = num.to_owned();
        ch.conn_name = name.to_owned();
        self.on("NewConnectedLine", c, &[]);
    }

    /// The channel joins another call's Linkedid (a pickup takes over the caller's call).
    pub fn relink(&mut self, c: ChanId, linkedid: &str) {
        self.chan_mut(c).linkedid = linkedid.to_owned();
    }

    /// Sets the dialplan priority (a channel created inside a running macro).
    pub fn at_priority(&mut self, c: ChanId, priority: u32) {
        self.chan_mut(c).priority = priority;
    }

    /// Newstate to `state`.
    pub fn newstate(&mut self, c: ChanId, state: ChanState) {
        self.chan_mut(c).state = state;
        if state == ChanState::Up {
            self.legs[c].answered_ms.get_or_insert(self.t);
        }
        self.on("Newstate", c, &[]);
    }

    // ---------------------------------------------------------------- dialplan

    /// Jumps to `context,exten` (the next step runs priority 1).
    pub fn goto(&mut self, c: ChanId, context: &str, exten: &str) {
        let ch = self.chan_mut(c);
        ch.context = context.to_owned();
        ch.exten = exten.to_owned();
        ch.priority = 0;
    }

    /// Runs the next priority: one Newexten.
    pub fn step(&mut self, c: ChanId, app: &str, data: &str) {
        self.chan_mut(c).priority += 1;
        let exten = self.chan(c).exten.clone();
        self.on(
            "Newexten",
            c,
            &[
                ("Extension", &exten),
                ("Application", app),
                ("AppData", data),
            ],
        );
    }

    /// A VarSet (a channel variable changed).
    pub fn var(&mut self, c: ChanId, name: &str, value: &str) {
        self.on("VarSet", c, &[("Variable", name), ("Value", value)]);
    }

    /// `Set(name=value)`: Newexten, then VarSet unless `name` is a dialplan function.
    pub fn set(&mut self, c: ChanId, name: &str, value: &str) {
        self.step(c, "Set", &format!("{name}={value}"));
        if !name.contains('(') {
            self.var(c, name, value);
        }
        if name.starts_with("__") {
            self.inherited.retain(|(n, _)| n != name);
            self.inherited.push((name.to_owned(), value.to_owned()));
        }
    }

    /// A new channel receives the caller's `__` variables, newest first, as Asterisk copies them.
    fn inherit(&mut self, c: ChanId) {
        for (name, value) in self.inherited.clone().iter().rev() {
            self.var(c, name, value);
        }
    }

    /// `Gosub(context,s,1(args))`: Newexten, the LOCAL(ARGn) VarSets, then jumps in.
    pub fn gosub(&mut self, c: ChanId, context: &str, args: &[&str]) {
        self.step(c, "Gosub", &format!("{context},s,1({})", args.join(",")));
        let outer_args = self.frames[c].last().map_or(0, |f| f.args);
        for i in 1..=args.len().max(outer_args) {
            let v = args.get(i - 1).copied().unwrap_or("");
            self.var(c, &format!("LOCAL(ARG{i})"), v);
        }
        self.var(c, "LOCAL(ARGC)", &args.len().to_string());
        let ch = self.chan(c);
        let frame = Frame {
            context: ch.context.clone(),
            exten: ch.exten.clone(),
            priority: ch.priority,
            args: args.len(),
        };
        self.frames[c].push(frame);
        self.goto(c, context, "s");
    }

    /// `Return()`: Newexten, the ARGn VarSets clearing the frame, back to the caller.
    pub fn ret(&mut self, c: ChanId) {
        self.step(c, "Return", "");
        let Some(frame) = self.frames[c].pop() else {
            return;
        };
        self.var(c, "ARGC", "");
        for i in (1..=frame.args).rev() {
            self.var(c, &format!("ARG{i}"), "");
        }
        self.var(c, "GOSUB_RETVAL", "");
        let ch = self.chan_mut(c);
        ch.context = frame.context;
        ch.exten = frame.exten;
        ch.priority = frame.priority;
    }

    /// FreePBX sub-record-check: MixMonitor once per call, on the first PBX channel. A bare
    /// dialplan calls MixMonitor itself, once.
    pub fn record_check(&mut self, c: ChanId, kind: &str, to: &str) {
        if !self.dir.style.freepbx {
            return self.mix_monitor(c);
        }
        self.gosub(c, "sub-record-check", &[kind, to, "dontcare"]);
        if self.recording.is_some() {
            self.step(c, "GotoIf", "1?done");
            self.ret(c);
            return;
        }
        self.step(c, "GotoIf", "0?done");
        self.set(c, "PFX", kind);
        let pfx = if kind != "exten" {
            kind
        } else if self.dir.style.is_trunk(&self.chan(c).name) {
            "external"
        } else {
            "internal"
        };
        if kind == "exten" {
            self.step(c, "ExecIf", &format!("1?Set(PFX={pfx})"));
            self.var(c, "PFX", pfx);
        }
        self.set(c, "__REC_STATUS", "RECORDING");
        let now = DateTime::<Utc>::from_timestamp_millis(self.t as i64).unwrap_or_default();
        self.set(c, "NOW", &now.timestamp().to_string());
        let (day, month, year) = (
            now.format("%d").to_string(),
            now.format("%m").to_string(),
            now.format("%Y").to_string(),
        );
        self.set(c, "__DAY", &day);
        self.set(c, "__MONTH", &month);
        self.set(c, "__YEAR", &year);
        let timestr = now.format("%Y%m%d-%H%M%S").to_string();
        self.set(c, "__TIMESTR", &timestr);
        let from = self.chan(c).cid_num.clone();
        self.set(c, "__FROMEXTEN", &from);
        let file = format!("{pfx}-{to}-{from}-{timestr}-{}", self.chan(c).uniqueid);
        self.set(c, "__CALLFILENAME", &file);
        let path = format!("/var/spool/asterisk/monitor/{year}/{month}/{day}/{file}.wav");
        self.step(c, "MixMonitor", &format!("{path},ai(LOCAL_MIXMON_ID),"));
        self.var(c, "MIXMONITOR_FILENAME", &path);
        let id = format!("0x7f{:010x}", self.rng.random_range(0..1u64 << 40));
        self.var(c, "LOCAL_MIXMON_ID", &id);
        self.on("MixMonitorStart", c, &[]);
        self.set(c, "__MIXMON_ID", &id);
        let name = self.chan(c).name.clone();
        self.set(c, "__RECORD_ID", &name);
        self.set(c, "CDR(recordingfile)", &format!("{file}.wav"));
        self.recording = Some(format!("{file}.wav"));
        self.ret(c);
    }

    // `MixMonitor(<uniqueid>.wav,b)` unless the call records already.
    fn mix_monitor(&mut self, c: ChanId) {
        if self.recording.is_some() {
            return;
        }
        let file = format!("{}.wav", self.chan(c).uniqueid);
        self.step(c, "MixMonitor", &format!("{file},b"));
        self.var(
            c,
            "MIXMONITOR_FILENAME",
            &format!("/var/spool/asterisk/monitor/{file}"),
        );
        self.on("MixMonitorStart", c, &[]);
        self.recording = Some(file);
    }

    // ---------------------------------------------------------------- phones

    /// DeviceStateChange + ExtensionStatus + QueueMemberStatus per queue, for one phone.
    pub fn phone(&mut self, ext: &str, st: PhoneState) {
        let (device, code, text, member) = match st {
            PhoneState::Idle => ("NOT_INUSE", "0", "Idle", "1"),
            PhoneState::InUse => ("INUSE", "1", "InUse", "2"),
            PhoneState::Ringing => ("RINGING", "8", "Ringing", "6"),
            PhoneState::Busy => ("BUSY", "2", "Busy", "3"),
        };
        let style = self.dir.style;
        let mut m = event("DeviceStateChange");
        m.push("Device", &style.device(ext));
        m.push("State", device);
        self.emit(m);
        let mut m = event("ExtensionStatus");
        m.push("Exten", ext);
        m.push("Context", style.hints);
        m.push("Hint", &style.hint(ext));
        m.push("Status", code);
        m.push("StatusText", text);
        self.emit(m);
        let dir = self.dir;
        for q in dir.queues_of(ext) {
            let interface = style.queue_member(ext);
            let paused = self
                .state
                .paused
                .contains(&(q.number.to_owned(), interface.clone()));
            let mut m = event("QueueMemberStatus");
            let login = dir.boot_epoch.to_string();
            let fields: [(&str, &str); 16] = [
                ("Queue", q.number),
                ("MemberName", &dir.name(ext)),
                ("Interface", &interface),
                ("StateInterface", &style.member_state(ext)),
                ("Membership", "static"),
                ("Penalty", "0"),
                ("CallsTaken", "0"),
                ("LastCall", "0"),
                ("LastPause", "0"),
                ("LoginTime", &login),
                ("InCall", "0"),
                ("Status", member),
                ("Paused", if paused { "1" } else { "0" }),
                ("PausedReason", ""),
                ("Ringinuse", "0"),
                ("Wrapuptime", "0"),
            ];
            for (k, v) in fields {
                m.push(k, v);
            }
            self.emit(m);
        }
    }

    /// The trunk's device state (`PJSIP/carrier`).
    pub fn trunk_device(&mut self, state: &str) {
        self.device(&self.dir.style.trunk_device(), state);
    }

    /// DeviceStateChange of any device (`Local/201@agents`, `PJSIP/carrier`, ...).
    pub fn device(&mut self, device: &str, state: &str) {
        let mut m = event("DeviceStateChange");
        m.push("Device", device);
        m.push("State", state);
        self.emit(m);
    }

    // ---------------------------------------------------------------- dialing

    /// The eleven VarSets Dial() clears before dialing.
    pub fn dial_vars(&mut self, c: ChanId) {
        for v in [
            "DIALSTATUS",
            "DIALEDPEERNUMBER",
            "DIALEDPEERNAME",
            "ANSWEREDTIME",
            "ANSWEREDTIME_MS",
            "DIALEDTIME",
            "DIALEDTIME_MS",
            "RINGTIME",
            "RINGTIME_MS",
            "PROGRESSTIME",
            "PROGRESSTIME_MS",
        ] {
            self.var(c, v, "");
        }
    }

    /// The outgoing channel Dial() creates toward extension `ext`'s phone (None: the trunk),
    /// including its AppDial Newexten and FreePBX's func-apply-sipheaders pre-dial handler.
    /// chan_sip creates it with the peer's configured caller ID (`cid` for a phone; the
    /// trunk has none); PJSIP with none.
    pub fn outgoing(
        &mut self,
        caller: ChanId,
        ext: Option<&str>,
        peer: &str,
        cid: (&str, &str),
        context: &str,
    ) -> ChanId {
        let name = match ext {
            Some(ext) => self.phone_name(ext),
            None => self.trunk_name(),
        };
        let linked = self.chan(caller).linkedid.clone();
        let freepbx = self.dir.style.freepbx;
        let own_cid = match ext {
            Some(_) => self.peer_cid(cid),
            None => (UNKNOWN, UNKNOWN),
        };
        let d = self.new_chan(
            name.clone(),
            ChanState::Down,
            own_cid,
            (UNKNOWN, UNKNOWN),
            context,
            "s",
            Some(&linked),
        );
        self.var(d, "DIALEDPEERNUMBER", peer);
        self.inherit(d);
        self.step(d, "AppDial", "(Outgoing Line)");
        let caller_cid = (
            self.chan(caller).cid_num.clone(),
            self.chan(caller).cid_name.clone(),
        );
        self.set_ids(d, cid, (&caller_cid.0, &caller_cid.1));
        self.on("NewConnectedLine", d, &[]);
        if freepbx {
            self.gosub(d, "func-apply-sipheaders", &[]);
            self.step(
                d,
                "NoOp",
                &format!("Applying SIP Headers to channel {name}"),
            );
            self.set(d, "TECH", "PJSIP");
            self.step(d, "ExecIf", "0?Set(PJSIP_HEADER(add,Alert-Info)=)");
            self.ret(d);
        }
        self.goto(d, context, "s");
        self.chan_mut(d).priority = 1;
        d
    }

    fn dial_event(&mut self, name: &str, caller: Option<ChanId>, dest: ChanId, last: (&str, &str)) {
        let mut m = event(name);
        if let Some(c) = caller {
            self.chan(c).block("", &mut m);
        }
        self.chan(dest).block("Dest", &mut m);
        m.push(last.0, last.1);
        self.emit(m);
    }

    /// DialBegin; `caller` None when the dial comes from an originate or the bridge core.
    pub fn dial_begin(&mut self, caller: Option<ChanId>, dest: ChanId, dialstring: &str) {
        self.dial_event("DialBegin", caller, dest, ("DialString", dialstring));
    }

    pub fn dial_state(&mut self, caller: Option<ChanId>, dest: ChanId, status: &str) {
        self.dial_event("DialState", caller, dest, ("DialStatus", status));
    }

    pub fn dial_end(&mut self, caller: Option<ChanId>, dest: ChanId, status: &str) {
        self.dial_event("DialEnd", caller, dest, ("DialStatus", status));
    }

    /// The dialed phone rings: Newstate Ringing, DialState, phone state.
    pub fn ringing(&mut self, caller: Option<ChanId>, dest: ChanId, ext: Option<&str>) {
        self.newstate(dest, ChanState::Ringing);
        if let Some(c) = caller {
            self.var(c, "RINGTIME", "0");
        }
        self.dial_state(caller, dest, "RINGING");
        match ext {
            Some(e) => self.phone(e, PhoneState::Ringing),
            None => self.trunk_device("RINGING"),
        }
    }

    /// The dialed channel answers: Newstate Up on it, DIALSTATUS VarSets, DialEnd ANSWER.
    pub fn answered(&mut self, caller: Option<ChanId>, dest: ChanId, ext: Option<&str>) {
        self.newstate(dest, ChanState::Up);
        if let Some(c) = caller {
            self.var(c, "DIALSTATUS", "ANSWER");
            let peer = self.chan(dest).name.clone();
            self.var(c, "DIALEDPEERNAME", &peer);
        }
        if let Some(e) = ext {
            self.phone(e, PhoneState::InUse);
        }
        self.dial_end(caller, dest, "ANSWER");
        if let Some(c) = caller {
            if self.chan(c).state != ChanState::Up {
                self.newstate(c, ChanState::Up);
            }
            let (num, name) = (
                self.chan(dest).cid_num.clone(),
                self.chan(dest).cid_name.clone(),
            );
            self.connected(c, &num, &name);
        }
    }

    // ---------------------------------------------------------------- bridges

    /// BridgeCreate, then BridgeEnter for each channel.
    pub fn bridge(&mut self, kind: BridgeKind, chans: &[ChanId]) -> BridgeId {
        let uniqueid = self.uuid();
        self.bridges.push(Bridge {
            uniqueid,
            kind,
            num_channels: 0,
        });
        let b = self.bridges.len() - 1;
        let mut m = event("BridgeCreate");
        self.bridges[b].block("", &mut m);
        self.emit(m);
        for &c in chans {
            self.enter(b, c);
        }
        if let [a, z] = chans {
            let (an, zn) = (self.chan(*a).name.clone(), self.chan(*z).name.clone());
            for (c, peer) in [(*a, zn), (*z, an)] {
                self.var(c, "BRIDGEPEER", &peer);
                let id = self.uuid();
                self.var(c, "BRIDGEPVTCALLID", &id);
            }
        }
        b
    }

    pub fn bridge_info(&self, b: BridgeId) -> &Bridge {
        &self.bridges[b]
    }

    /// A Confbridge* event: Conference, the bridge block, the channel block if any, extras.
    pub fn conf_event(
        &mut self,
        name: &str,
        b: BridgeId,
        c: Option<ChanId>,
        extra: &[(&str, &str)],
    ) {
        let mut m = event(name);
        m.push("Conference", super::directory::CONFERENCE);
        self.bridges[b].block("", &mut m);
        if let Some(c) = c {
            self.chan(c).block("", &mut m);
        }
        for (k, v) in extra {
            m.push(k, v);
        }
        self.emit(m);
    }

    /// BridgeEnter of one channel.
    pub fn enter(&mut self, b: BridgeId, c: ChanId) {
        self.bridges[b].num_channels += 1;
        let mut m = event("BridgeEnter");
        self.bridges[b].block("", &mut m);
        self.chan(c).block("", &mut m);
        self.emit(m);
    }

    /// BridgeLeave of one channel.
    pub fn leave(&mut self, b: BridgeId, c: ChanId) {
        self.bridges[b].num_channels = self.bridges[b].num_channels.saturating_sub(1);
        let mut m = event("BridgeLeave");
        self.bridges[b].block("", &mut m);
        self.chan(c).block("", &mut m);
        self.emit(m);
    }

    /// BridgeDestroy.
    pub fn destroy(&mut self, b: BridgeId) {
        let mut m = event("BridgeDestroy");
        self.bridges[b].block("", &mut m);
        self.emit(m);
    }

    /// A version-4-shaped UUID from the call's random stream (bridge ids, SIP call ids).
    pub fn uuid(&mut self) -> String {
        let v: u128 = self.rng.random();
        let h = format!("{v:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }

    // ---------------------------------------------------------------- media

    /// Talk time: RTCPSent/RTCPReceived every 5 s on each SIP channel, then the time passes.
    pub fn talk(&mut self, chans: &[ChanId], ms: u64) {
        let mut done = 0;
        while done + 5000 <= ms {
            self.wait(5000);
            done += 5000;
            for &c in chans {
                if self.dir.style.is_sip(&self.chan(c).name) {
                    self.rtcp(c, done);
                }
            }
        }
        self.wait(ms - done);
    }

    fn rtcp(&mut self, c: ChanId, elapsed_ms: u64) {
        let port: u16 = self.rng.random_range(10000..11000);
        let ssrc: u32 = self.rng.random();
        let their: u32 = self.rng.random();
        let packets = elapsed_ms / 20;
        let (to, from) = (
            format!("127.0.0.1:{}", port + 1),
            format!("127.0.0.1:{port}"),
        );
        let ntp = format!("{}.{:06}", self.t / 1000, (self.t % 1000) * 1000);
        let (ssrc, their) = (format!("{ssrc:#010x}"), format!("{their:#010x}"));
        let (sent, octets, seq) = (
            packets.to_string(),
            (packets * 160).to_string(),
            (packets + 1000).to_string(),
        );
        let mut fields: Vec<(&str, &str)> = vec![
            ("To", &to),
            ("From", &from),
            ("MES", "88.1"),
            ("SSRC", &ssrc),
            ("PT", "200(SR)"),
            ("ReportCount", "1"),
            ("SentNTP", &ntp),
            ("SentRTP", &octets),
            ("SentPackets", &sent),
            ("SentOctets", &octets),
        ];
        let report: [(&str, &str); 8] = [
            ("Report0SourceSSRC", &their),
            ("Report0FractionLost", "0"),
            ("Report0CumulativeLost", "0"),
            ("Report0HighestSequence", &seq),
            ("Report0SequenceNumberCycles", "0"),
            ("Report0IAJitter", "1"),
            ("Report0LSR", "0"),
            ("Report0DLSR", "0.0000"),
        ];
        fields.extend(report);
        self.on("RTCPSent", c, &fields);
        // RTCPReceived has RTT after From, as Asterisk sends it.
        fields.insert(2, ("RTT", "0.0004"));
        self.on("RTCPReceived", c, &fields);
    }

    // ---------------------------------------------------------------- hangup

    /// Hangup of one channel with its cause; marks the leg ended. A SIP channel that had
    /// media first reports its RTP statistics (RTPAUDIOQOS* VarSets).
    pub fn hangup(&mut self, c: ChanId, cause: u32) {
        if self.dir.style.is_sip(&self.chan(c).name) && self.chan(c).state == ChanState::Up {
            self.rtp_stats(c);
        }
        let txt = match cause {
            16 => "Normal Clearing",
            17 => "User busy",
            19 => "User alerting, no answer",
            26 => "Answered elsewhere",
            _ => "Unknown",
        };
        self.on(
            "Hangup",
            c,
            &[("Cause", &cause.to_string()), ("Cause-txt", txt)],
        );
        self.legs[c].ended_ms = Some(self.t);
    }

    fn rtp_stats(&mut self, c: ChanId) {
        let ssrc: u32 = self.rng.random();
        let count = self.rng.random_range(200..6000u32);
        let stats = [
            ("RTPAUDIOQOS", format!("ssrc={ssrc};themssrc={};lp=0;rxjitter=0.000000;rxcount={count};txjitter=0.000000;txcount={count};rlp=0;rtt=0.000350;rxmes=88.084426;txmes=88.087887", ssrc / 3)),
            ("RTPAUDIOQOSJITTER", "minrxjitter=000.000000;maxrxjitter=000.000125;avgrxjitter=000.000009;stdevrxjitter=000.000033;mintxjitter=000.000000;maxtxjitter=000.000000;avgtxjitter=000.000000;stdevtxjitter=000.000000;".to_owned()),
            ("RTPAUDIOQOSLOSS", "  minrxlost=000.000000;  maxrxlost=000.000000;  avgrxlost=000.000000;  stdevrxlost=000.000000;  mintxlost=000.000000;  maxtxlost=000.000000;  avgtxlost=000.000000;  stdevtxlost=000.000000;".to_owned()),
            ("RTPAUDIOQOSRTT", "     minrtt=000.000350;     maxrtt=000.000350;     avgrtt=000.000350;     stdevrtt=000.000000;".to_owned()),
            ("RTPAUDIOQOSMES", "   minrxmes=088.087887;   maxrxmes=088.087887;   avgrxmes=088.087887;   stdevrxmes=000.000000;   mintxmes=088.084426;   maxtxmes=088.084426;   avgtxmes=088.084426;   stdevtxmes=000.000000;".to_owned()),
        ];
        for (name, value) in &stats {
            self.var(c, name, value);
        }
    }

    /// The Dial() result variables set when an answered dial ends.
    pub fn dial_done(&mut self, c: ChanId, answered_ms: u64) {
        let talk = self.t.saturating_sub(answered_ms);
        let dialed = self.t.saturating_sub(self.legs[c].created_ms);
        for (name, value) in [
            ("ANSWEREDTIME", talk / 1000),
            ("ANSWEREDTIME_MS", talk),
            ("DIALEDTIME", dialed / 1000),
            ("DIALEDTIME_MS", dialed),
        ] {
            self.var(c, name, &value.to_string());
        }
        self.var(c, "DIALSTATUS", "ANSWER");
    }

    /// HangupRequest (the far end hung up) with a cause.
    pub fn hangup_request(&mut self, c: ChanId, cause: u32) {
        self.on("HangupRequest", c, &[("Cause", &cause.to_string())]);
    }

    /// SoftHangupRequest (Asterisk hangs the channel up) with a cause.
    pub fn soft_hangup(&mut self, c: ChanId, cause: u32) {
        self.on("SoftHangupRequest", c, &[("Cause", &cause.to_string())]);
    }

    /// A Cdr event (cdr_manager) for one CDR row.
    pub fn cdr(&mut self, row: &CdrRow) {
        let fmt = |ms: u64| {
            DateTime::<Utc>::from_timestamp_millis(ms as i64)
                .unwrap_or_default()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        };
        let ch = self.chan(row.channel).clone();
        let dest = row
            .dest
            .map(|d| self.chan(d).name.clone())
            .unwrap_or_default();
        let start = self.legs[row.channel].created_ms;
        let end = self.t;
        let answer = row.answered_ms.map(fmt).unwrap_or_default();
        let billsec = row.answered_ms.map_or(0, |a| (end - a) / 1000);
        let fields: [(&str, &str); 18] = [
            ("AccountCode", ""),
            ("Source", &ch.cid_num),
            ("Destination", &row.destination),
            ("DestinationContext", &row.dest_context),
            ("CallerID", &format!("\"{}\" <{}>", ch.cid_name, ch.cid_num)),
            ("Channel", &ch.name),
            ("DestinationChannel", &dest),
            ("LastApplication", &row.last_app),
            ("LastData", &row.last_data),
            ("StartTime", &fmt(start)),
            ("AnswerTime", &answer),
            ("EndTime", &fmt(end)),
            ("Duration", &((end - start) / 1000).to_string()),
            ("BillableSeconds", &billsec.to_string()),
            ("Disposition", row.disposition),
            ("AMAFlags", "DOCUMENTATION"),
            ("UniqueID", &ch.uniqueid),
            ("UserField", ""),
        ];
        let mut m = event("Cdr");
        for (k, v) in fields {
            m.push(k, v);
        }
        self.emit(m);
    }
}

/// One CDR row as cdr_manager reports it.
#[derive(Debug, Clone)]
pub struct CdrRow {
    pub channel: ChanId,
    pub dest: Option<ChanId>,
    pub destination: String,
    pub dest_context: String,
    pub last_app: String,
    pub last_data: String,
    pub answered_ms: Option<u64>,
    pub disposition: &'static str,
}
