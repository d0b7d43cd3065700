//! Replay AMI server: plays a recorded Asterisk transcript (`*.rx.raw`) to AMI clients over
//! TCP or TLS, for tests and demos, with fault injection (drop, stall, garbage, hold, gap).
//!
//! It behaves like Asterisk where a client can tell: the banner, Challenge/Login (MD5 and
//! plain; a wrong secret gets the real `Authentication failed` and the socket is closed),
//! `Permission denied` before login, Ping, CoreSettings, Command, `CoreShowChannels`,
//! `Status` and `BridgeList` (the channels and bridges as of the events sent so far: see
//! [`state`]), the other recorded list responses,
//! an in-memory AstDB (DBGet/DBPut/DBDel), `Setvar` of a global or `DEVICE_STATE(...)`
//! (with its `DeviceStateChange` event), QueuePause of the queue members the transcript
//! names (with Asterisk's `QueueMemberPause` event), ExtensionStateList (the hints of the
//! transcript in their state as of the events sent so far), `Invalid/unknown command` for
//! anything else, Logoff. Every action received is kept whole ([`ReplayServer::actions`]), so
//! a test can check exactly what a client sent. Events are sent with their original
//! bytes. The transcript is dealt out once across connections: a client that reconnects gets
//! the events after the last one a previous connection sent completely, so "no loss, no
//! duplicate across a reconnect" can be checked against [`ReplayServer::connections`].
//! What it answers as the simulator does comes from `responder.rs`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ami::{Decoder, Frame, Message};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub mod state;
#[cfg(test)]
mod sweep;

use crate::responder::{self, After, EmptyId, Responder, Session};
use state::{ListAnswer, PbxState};

/// Bytes sent by [`Fault::Garbage`]: binary noise, then a blank line so a decoder resyncs.
const GARBAGE: &[u8] = b"\x00\xff\xfe garbage \x01 not AMI\r\n\x7f\x80\r\n\r\n";

/// A transcript ready to serve.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// AMI protocol version from the banner.
    pub ami_version: String,
    /// `AsteriskVersion` from a recorded CoreSettings response, when there is one.
    pub asterisk_version: Option<String>,
    /// Unsolicited events (no ActionID), each with its original bytes. Asterisk sends none
    /// before the login, so these are the events after it; a generated transcript with no
    /// login at all (`pbxlink simulate --write`) is all events.
    events: Vec<Bytes>,
    /// Recorded list responses, by lower-case action name (`queuestatus`).
    lists: HashMap<String, ListAnswer>,
    /// `ExtensionStatus` events: index in `events` and the message, in order.
    extension_status: Vec<(usize, Message)>,
    /// The last `QueueMemberStatus` (or other queue member event) per (queue, interface):
    /// the members QueuePause knows.
    queue_members: BTreeMap<(String, String), Message>,
    /// The events that change the channel and bridge state ([`state::changes_state`]):
    /// index in `events` and the message, in order; what the state lists answer from.
    state_events: Vec<(usize, Message)>,
    /// When each event happened, by the [`stream_clock`](crate::stream_clock): the channel
    /// ages in the state lists.
    times: Vec<DateTime<Utc>>,
}

/// Why a transcript could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error("cannot read transcript {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("not an AMI transcript: it does not start with an `Asterisk Call Manager/` banner")]
    NoBanner,
    #[error("transcript is not decodable: {0}")]
    Decode(#[from] ami::DecodeError),
}

impl Transcript {
    /// Reads an `*.rx.raw` file.
    pub fn load(path: &Path) -> Result<Transcript, TranscriptError> {
        let raw = std::fs::read(path).map_err(|source| TranscriptError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Transcript::parse(&raw)
    }

    /// Splits what a client received (banner first) into servable parts.
    pub fn parse(raw: &[u8]) -> Result<Transcript, TranscriptError> {
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::from(raw);
        let ami_version = match decoder.decode(&mut buf)? {
            Some(Frame::Banner(b)) => b.ami_version,
            _ => return Err(TranscriptError::NoBanner),
        };
        let mut t = Transcript {
            ami_version,
            asterisk_version: None,
            events: Vec::new(),
            lists: HashMap::new(),
            extension_status: Vec::new(),
            queue_members: BTreeMap::new(),
            state_events: Vec::new(),
            times: Vec::new(),
        };
        // Every event, for the stream clock: its time marks lie all over the stream.
        let mut timed = Vec::new();
        // Open list responses by ActionID: the response and the items so far.
        let mut open: HashMap<String, (Message, Vec<Message>)> = HashMap::new();
        loop {
            let before = buf.len();
            let offset = raw.len() - before;
            let Some(Frame::Message(msg)) = decoder.decode(&mut buf)? else {
                break;
            };
            let original = Bytes::copy_from_slice(&raw[offset..offset + before - buf.len()]);
            if let Some(v) = msg.get("AsteriskVersion") {
                t.asterisk_version.get_or_insert_with(|| v.to_owned());
            }
            let id = msg.action_id().map(str::to_owned);
            match (msg.response(), msg.event(), id) {
                (Some(_), _, Some(id)) if msg.get("EventList") == Some("start") => {
                    open.insert(id, (msg, Vec::new()));
                }
                (None, Some(event), Some(id)) => {
                    let Some((_, items)) = open.get_mut(&id) else {
                        continue;
                    };
                    if msg.get("EventList") == Some("Complete") {
                        let (response, items) = open.remove(&id).unwrap_or_default();
                        let action = event.strip_suffix("Complete").unwrap_or(event);
                        t.lists
                            .entry(action.to_ascii_lowercase())
                            .or_insert(ListAnswer {
                                response,
                                items,
                                complete: msg,
                            });
                    } else {
                        items.push(msg);
                    }
                }
                (None, Some(event), None) => {
                    if event.eq_ignore_ascii_case("ExtensionStatus") {
                        t.extension_status.push((t.events.len(), msg.clone()));
                    }
                    if state::changes_state(&msg) {
                        t.state_events.push((t.events.len(), msg.clone()));
                    }
                    if let (Some(queue), Some(iface)) = (msg.get("Queue"), msg.get("Interface")) {
                        if event.starts_with("QueueMember") {
                            t.queue_members
                                .insert((queue.to_owned(), iface.to_owned()), msg.clone());
                        }
                    }
                    t.events.push(original);
                    timed.push(msg);
                }
                _ => {}
            }
        }
        t.times = crate::stream_clock::reconstruct(&timed);
        Ok(t)
    }

    /// The events served, with their original bytes.
    pub fn events(&self) -> &[Bytes] {
        &self.events
    }

    /// When each event happened, by the stream clock.
    #[cfg(test)]
    pub fn times(&self) -> &[DateTime<Utc>] {
        &self.times
    }

    /// The channels and bridges after the first `n` events, at the time of the last of them.
    pub fn state_after(&self, n: usize) -> PbxState {
        let mut state = PbxState::default();
        for (i, m) in self.state_events.iter().take_while(|(i, _)| *i < n) {
            state.apply(self.times.get(*i).copied(), m);
        }
        state.set_now(n.checked_sub(1).and_then(|i| self.times.get(i)).copied());
        state
    }
}

/// What goes wrong on purpose, on one connection, once `after` events have been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Send the first half of the next event and close the socket (a connection lost
    /// mid-message; the next connection sends that event whole).
    Disconnect { after: usize },
    /// Send nothing at all (no events, no responses) for `pause`.
    Stall { after: usize, pause: Duration },
    /// Send bytes that are not AMI, then carry on.
    Garbage { after: usize },
    /// Send no more events, but go on answering actions (Ping too): the client stays
    /// connected and logged in, at a known point of the stream.
    Hold { after: usize },
    /// Close the socket (between messages), and let the next `lost` events happen while
    /// nobody is connected: they are sent to no one, and the next login finds the state
    /// lists (`CoreShowChannels`, `Status`, `BridgeList`, `ExtensionStateList`) as of
    /// after them, then the events that follow. What a real link outage loses.
    Gap { after: usize, lost: usize },
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub username: String,
    pub secret: String,
    /// Delay before each event; zero = as fast as the client reads.
    pub pace: Duration,
    /// `faults[i]` applies to the i-th connection (0-based) that logs in with events on;
    /// later ones, and connections for actions alone (`Events: off`), run clean.
    pub faults: Vec<Option<Fault>>,
    /// Serve TLS instead of plain TCP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl ReplayOptions {
    /// A clean server for `username`/`secret`, as fast as possible, plain TCP.
    pub fn new(username: &str, secret: &str) -> Self {
        ReplayOptions {
            username: username.to_owned(),
            secret: secret.to_owned(),
            pace: Duration::ZERO,
            faults: Vec::new(),
            tls: None,
        }
    }
}

/// What one client connection saw, for tests to compare with what the client delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionLog {
    /// Login outcome: `None` until a Login action arrived.
    pub logged_in: Option<bool>,
    /// Names of the actions received, in order.
    pub actions: Vec<String>,
    /// Indexes into [`Transcript::events`] of the events sent whole, in order.
    pub events_sent: Vec<usize>,
}

struct Shared {
    transcript: Transcript,
    options: ReplayOptions,
    /// Next transcript event to send, across connections.
    cursor: Mutex<usize>,
    /// Logins with events on so far: which fault the next one gets.
    event_logins: std::sync::atomic::AtomicUsize,
    log: Mutex<Vec<ConnectionLog>>,
    /// Every action received after login, whole, across connections.
    actions: Mutex<Vec<Message>>,
    /// The AstDB: `Family/Key` -> value, starting empty (like a fresh Asterisk).
    astdb: Mutex<BTreeMap<String, String>>,
}

/// A running replay server; stops (with all its connections) when dropped.
#[derive(Debug)]
pub struct ReplayServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("events", &self.transcript.events.len())
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl ReplayServer {
    /// Listens on `addr` (port 0: any free port) and serves `transcript`.
    pub async fn start(
        addr: SocketAddr,
        transcript: Transcript,
        options: ReplayOptions,
    ) -> std::io::Result<ReplayServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            transcript,
            options,
            cursor: Mutex::new(0),
            event_logins: std::sync::atomic::AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            actions: Mutex::new(Vec::new()),
            astdb: Mutex::new(BTreeMap::new()),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(ReplayServer { addr, shared, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// One log per accepted connection, in accept order.
    pub fn connections(&self) -> Vec<ConnectionLog> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Every action received from logged-in clients (Ping and the others, not Challenge or
    /// Login), whole and in arrival order, across connections.
    #[cfg(any(test, feature = "test-util"))]
    pub fn actions(&self) -> Vec<Message> {
        self.shared.actions.lock().unwrap().clone()
    }

    /// The actions received other than the link's own keepalive and resync (Ping,
    /// CoreSettings, Logoff): what a test of "which action did the client send" compares.
    #[cfg(any(test, feature = "test-util"))]
    pub fn actions_except_link(&self) -> Vec<Message> {
        self.actions()
            .into_iter()
            .filter(|a| {
                !["Ping", "CoreSettings", "Logoff"]
                    .iter()
                    .any(|n| a.action().is_some_and(|x| x.eq_ignore_ascii_case(n)))
            })
            .collect()
    }

    /// The AstDB as the server holds it now (`Family/Key` -> value).
    #[cfg(any(test, feature = "test-util"))]
    pub fn astdb(&self) -> BTreeMap<String, String> {
        self.shared.astdb.lock().unwrap().clone()
    }

    /// How many transcript events have been sent whole so far.
    pub fn events_sent(&self) -> usize {
        *self.shared.cursor.lock().unwrap()
    }
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Owning the connection tasks here means aborting this task ends them all.
    let mut connections = tokio::task::JoinSet::new();
    let acceptor = shared
        .options
        .tls
        .clone()
        .map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "replay server: accept failed");
                return;
            }
        };
        let index = {
            let mut log = shared.log.lock().unwrap();
            log.push(ConnectionLog::default());
            log.len() - 1
        };
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let result = match acceptor {
                Some(acceptor) => match acceptor.accept(socket).await {
                    Ok(tls) => serve(tls, &shared, index).await,
                    Err(e) => Err(e),
                },
                None => serve_tcp(socket, &shared, index).await,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "replay connection ended");
            }
        });
        // Reap finished connections so the set does not grow with every reconnect.
        while connections.try_join_next().is_some() {}
    }
}

async fn serve_tcp(socket: TcpStream, shared: &Shared, index: usize) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    serve(socket, shared, index).await
}

/// One client connection's state.
struct Conn<'a> {
    shared: &'a Shared,
    index: usize,
    replies: Responder,
    events_on: bool,
    sent_here: usize,
    fault: Option<Fault>,
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    shared: &Shared,
    index: usize,
) -> std::io::Result<()> {
    let mut conn = Conn {
        shared,
        index,
        replies: Responder::new(EmptyId::Echo),
        events_on: false,
        sent_here: 0,
        fault: None,
    };
    stream
        .write_all(responder::banner(&shared.transcript.ami_version).as_bytes())
        .await?;
    let mut decoder = Decoder::without_banner();
    let mut inbuf = BytesMut::with_capacity(4096);
    loop {
        while let Some(action) = responder::next_action(&mut decoder, &mut inbuf) {
            let after = conn.answer(&action);
            stream.write_all(&conn.replies.out).await?;
            conn.replies.out.clear();
            if let After::Close = after {
                return stream.shutdown().await;
            }
        }
        let next_event = conn.next_event();
        let pace = shared.options.pace;
        enum Step {
            Read(usize),
            Send(usize),
        }
        let step = tokio::select! {
            biased;
            n = stream.read_buf(&mut inbuf) => Step::Read(n?),
            Some(i) = async {
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
                next_event
            }, if next_event.is_some() => Step::Send(i),
        };
        match step {
            Step::Read(0) => return Ok(()),
            Step::Read(_) => {}
            Step::Send(i) => {
                if conn.apply_fault(&mut stream, i).await? {
                    return Ok(());
                }
                stream.write_all(&shared.transcript.events[i]).await?;
                conn.sent(i);
            }
        }
    }
}

impl Conn<'_> {
    fn log(&self, f: impl FnOnce(&mut ConnectionLog)) {
        f(&mut self.shared.log.lock().unwrap()[self.index]);
    }

    /// The transcript event this connection may send now, if any.
    fn next_event(&self) -> Option<usize> {
        if !(self.replies.logged_in() && self.events_on) {
            return None;
        }
        if matches!(self.fault, Some(Fault::Hold { after }) if self.sent_here >= after) {
            return None;
        }
        let cursor = *self.shared.cursor.lock().unwrap();
        (cursor < self.shared.transcript.events.len()).then_some(cursor)
    }

    fn sent(&mut self, i: usize) {
        *self.shared.cursor.lock().unwrap() = i + 1;
        self.sent_here += 1;
        self.log(|l| l.events_sent.push(i));
    }

    /// Runs this connection's fault when its time has come; true: the connection is over.
    async fn apply_fault<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        next: usize,
    ) -> std::io::Result<bool> {
        let Some(fault) = self.fault else {
            return Ok(false);
        };
        match fault {
            Fault::Disconnect { after } if self.sent_here == after => {
                let event = &self.shared.transcript.events[next];
                stream.write_all(&event[..event.len() / 2]).await?;
                stream.shutdown().await?;
                Ok(true)
            }
            Fault::Stall { after, pause } if self.sent_here == after => {
                self.fault = None;
                tokio::time::sleep(pause).await;
                Ok(false)
            }
            Fault::Gap { after, lost } if self.sent_here == after => {
                let len = self.shared.transcript.events.len();
                *self.shared.cursor.lock().unwrap() = (next + lost).min(len);
                stream.shutdown().await?;
                Ok(true)
            }
            Fault::Garbage { after } if self.sent_here == after => {
                self.fault = None;
                stream.write_all(GARBAGE).await?;
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Writes the answer to one action into `self.replies`.
    fn answer(&mut self, action: &Message) -> After {
        let name = action.action().unwrap_or_default().to_ascii_lowercase();
        let id = action.action_id().unwrap_or_default().to_owned();
        self.log(|l| {
            l.actions
                .push(action.action().unwrap_or_default().to_owned())
        });
        if self.replies.logged_in() {
            self.shared.actions.lock().unwrap().push(action.clone());
        }
        let shared = self.shared;
        let opts = &shared.options;
        match self.replies.session(action, &opts.username, &opts.secret) {
            Session::Answered => return After::Continue,
            Session::Refused => {
                self.log(|l| l.logged_in = Some(false));
                // Real Asterisk closes the socket after a failed login.
                return After::Close;
            }
            Session::LoggedIn { events } => {
                self.log(|l| l.logged_in = Some(true));
                self.events_on = events;
                if events {
                    let nth = self
                        .shared
                        .event_logins
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.fault = self.shared.options.faults.get(nth).copied().flatten();
                }
                return After::Continue;
            }
            Session::Goodbye => return After::Close,
            Session::Action => {}
        }
        let t = &shared.transcript;
        match name.as_str() {
            "ping" => self.replies.pong(&id, unix_micros()),
            "coresettings" => self.replies.success(
                &id,
                &[
                    ("AMIversion", &t.ami_version),
                    (
                        "AsteriskVersion",
                        t.asterisk_version.as_deref().unwrap_or_default(),
                    ),
                ],
            ),
            "command" => {
                let version = format!(
                    "Asterisk {} (pbxlink replay server)",
                    t.asterisk_version.as_deref().unwrap_or("unknown")
                );
                self.replies.command(&id, action, &version);
            }
            "coreshowchannels" => {
                let answer = self.state().core_show_channels(&id);
                self.replies.list(&answer);
            }
            "status" => match self.state().status(&id, action.get("Channel")) {
                Ok(answer) => self.replies.list(&answer),
                Err(message) => self.replies.error(&id, message),
            },
            "bridgelist" => {
                let answer = self.state().bridge_list(&id);
                self.replies.list(&answer);
            }
            list if t.lists.contains_key(list) => {
                for m in t.lists[list].messages() {
                    with_action_id(m, &id).encode(&mut self.replies.out);
                }
            }
            "dbget" => self.db_get(action, &id),
            "dbput" | "dbdel" => self.db_change(action, &id, name == "dbput"),
            "queuepause" => self.queue_pause(action, &id),
            "setvar" => self.setvar(action, &id),
            "extensionstatelist" => self.extension_state_list(&id),
            _ => self.replies.error(&id, "Invalid/unknown command"),
        }
        After::Continue
    }

    /// The channels and bridges as of the events sent so far.
    fn state(&self) -> PbxState {
        let cursor = *self.shared.cursor.lock().unwrap();
        self.shared.transcript.state_after(cursor)
    }

    /// `DBGet`: the entry, or Asterisk's error.
    fn db_get(&mut self, action: &Message, id: &str) {
        let Some(key) = self.db_key(action, id) else {
            return;
        };
        let val = self.shared.astdb.lock().unwrap().get(&key).cloned();
        self.replies.db_get(id, action, val.as_deref());
    }

    /// `DBPut` (`put`) or `DBDel`.
    fn db_change(&mut self, action: &Message, id: &str, put: bool) {
        let Some(key) = self.db_key(action, id) else {
            return;
        };
        let mut db = self.shared.astdb.lock().unwrap();
        if put {
            db.insert(key, action.get("Val").unwrap_or_default().to_owned());
            drop(db);
            self.replies.db_put(id);
        } else {
            let removed = db.remove(&key).is_some();
            drop(db);
            self.replies.db_del(id, removed);
        }
    }

    /// `Family/Key` of a DB action; answers Asterisk's error when either is missing.
    fn db_key(&mut self, action: &Message, id: &str) -> Option<String> {
        let family = action.get("Family").unwrap_or_default();
        let key = action.get("Key").unwrap_or_default();
        match (family.is_empty(), key.is_empty()) {
            (true, _) => self.replies.error(id, "No family specified."),
            (_, true) => self.replies.error(id, "No key specified."),
            _ => return Some(format!("{family}/{key}")),
        }
        None
    }

    /// `QueuePause`: every member of the transcript's queues with that interface (in
    /// `Queue`, or in all queues), each announced by a `QueueMemberPause` event.
    fn queue_pause(&mut self, action: &Message, id: &str) {
        let iface = action.get("Interface").unwrap_or_default();
        let Some(paused) = action.get("Paused").filter(|_| !iface.is_empty()) else {
            return self
                .replies
                .error(id, "Need 'Interface' and 'Paused' parameters.");
        };
        let paused = ast_true(paused);
        let queue = action.get("Queue");
        let members: Vec<&Message> = self
            .shared
            .transcript
            .queue_members
            .iter()
            .filter(|((q, i), _)| i == iface && queue.is_none_or(|want| want == q))
            .map(|(_, m)| m)
            .collect();
        if members.is_empty() {
            return self.replies.error(id, "Interface not found");
        }
        let message = if paused {
            "Interface paused successfully"
        } else {
            "Interface unpaused successfully"
        };
        self.replies.success(id, &[("Message", message)]);
        if !self.events_on {
            return;
        }
        let reason = action.get("Reason").unwrap_or_default();
        for m in members {
            let mut event = Message::new();
            for (k, v) in m.iter() {
                match k {
                    "Event" => event.push(k, "QueueMemberPause"),
                    "Paused" => event.push(k, if paused { "1" } else { "0" }),
                    "PausedReason" => event.push(k, reason),
                    _ => event.push(k, v),
                }
            }
            event.encode(&mut self.replies.out);
        }
    }

    /// `Setvar` without a channel (a global, or a dialplan function such as
    /// `DEVICE_STATE(Custom:DND201)`, whose change Asterisk announces as `DeviceStateChange`).
    fn setvar(&mut self, action: &Message, id: &str) {
        let Some(variable) = action.get("Variable").filter(|v| !v.is_empty()) else {
            return self.replies.error(id, "No variable specified");
        };
        if action.get("Channel").is_some_and(|c| !c.is_empty()) {
            return self.replies.error(id, "No such channel");
        }
        let value = action.get("Value").unwrap_or_default();
        self.replies.success(id, &[("Message", "Variable Set")]);
        let device = variable
            .strip_prefix("DEVICE_STATE(")
            .and_then(|v| v.strip_suffix(')'));
        if let (Some(device), true) = (device, self.events_on) {
            Message::from_pairs([
                ("Event", "DeviceStateChange"),
                ("Privilege", "call,all"),
                ("Device", device),
                ("State", value),
            ])
            .encode(&mut self.replies.out);
        }
    }

    /// `ExtensionStateList`: every hint of the transcript (`ExtensionStatus` events) in its
    /// latest state among the events sent so far; a hint not reported yet is Idle, with the
    /// hint it is first reported with.
    fn extension_state_list(&mut self, id: &str) {
        let shared = self.shared;
        let cursor = *shared.cursor.lock().unwrap();
        let mut states: BTreeMap<(&str, &str), (&str, &str, &str)> = BTreeMap::new();
        for (i, m) in &shared.transcript.extension_status {
            let exten = m.get("Exten").unwrap_or_default();
            let context = m.get("Context").unwrap_or_default();
            let hint = m.get("Hint").unwrap_or_default();
            let state = if *i < cursor {
                (
                    hint,
                    m.get("Status").unwrap_or_default(),
                    m.get("StatusText").unwrap_or_default(),
                )
            } else {
                (hint, "0", "Idle")
            };
            let entry = states.entry((exten, context)).or_insert(state);
            if *i < cursor {
                *entry = state;
            }
        }
        self.replies.extension_state_list(
            id,
            states
                .into_iter()
                .map(|((exten, context), (hint, status, text))| {
                    [exten, context, hint, status, text]
                }),
        );
    }
}

/// One served event (its original bytes: exactly one message), decoded.
#[cfg(any(test, feature = "test-util"))]
pub fn decode_event(raw: &[u8]) -> Message {
    let mut buf = BytesMut::from(raw);
    match Decoder::without_banner().decode(&mut buf) {
        Ok(Some(Frame::Message(m))) => m,
        other => panic!("transcript event does not decode: {other:?}"),
    }
}

/// `m` with its ActionID replaced by `id` (recorded list answers carry the recording's IDs).
fn with_action_id(m: &Message, id: &str) -> Message {
    Message::from_pairs(m.iter().map(|(k, v)| {
        if k.eq_ignore_ascii_case("ActionID") {
            (k, id)
        } else {
            (k, v)
        }
    }))
}

/// Asterisk's `ast_true`: what a yes/no header accepts as yes.
fn ast_true(value: &str) -> bool {
    ["yes", "true", "y", "t", "1", "on"]
        .iter()
        .any(|t| value.trim().eq_ignore_ascii_case(t))
}

/// Microseconds since the epoch, on the wall clock.
fn unix_micros() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

    #[test]
    fn transcript_keeps_events_and_recorded_lists() {
        let t = Transcript::load(
            &Path::new(FIXTURES).join("asterisk-22/ami/01_inbound_answered.rx.raw"),
        )
        .unwrap();
        let mut lists: Vec<_> = t
            .lists
            .iter()
            .map(|(k, l)| format!("{k}: {} items", l.items.len()))
            .collect();
        lists.sort();
        let first = String::from_utf8_lossy(&t.events()[0]);
        expect![[r#"
            11.0.0 Some("22.10.1") 157 events, lists ["coreshowchannels: 4 items", "status: 4 items"]
            Event: FullyBooted
            Privilege: system,all
            Uptime: 2
            LastReload: 2
            Status: Fully Booted

        "#]]
        .assert_eq(&format!(
            "{} {:?} {} events, lists {lists:?}\n{}",
            t.ami_version,
            t.asterisk_version,
            t.events().len(),
            first.replace('\r', "")
        ));
    }

    #[test]
    fn every_recorded_transcript_loads() {
        let mut out = String::new();
        for set in ["asterisk-22", "asterisk-22-pjsip", "asterisk-18-pjsip"] {
            let dir = Path::new(FIXTURES).join(set).join("ami");
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("fixture directory missing: {}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(".rx.raw"))
                .collect();
            files.sort();
            let mut events = 0;
            let mut lists = std::collections::BTreeSet::new();
            let mut versions = std::collections::BTreeSet::new();
            for f in &files {
                let t = Transcript::load(f).unwrap();
                events += t.events().len();
                lists.extend(t.lists.into_keys());
                versions.insert(t.ami_version);
            }
            out.push_str(&format!(
                "{set}: {} transcripts, AMI {versions:?}, {events} events, lists {lists:?}\n",
                files.len()
            ));
        }
        expect![[r#"
            asterisk-22: 15 transcripts, AMI {"11.0.0"}, 2031 events, lists {"bridgelist", "coreshowchannels", "queuestatus", "queuesummary", "status"}
            asterisk-22-pjsip: 15 transcripts, AMI {"11.0.0"}, 4848 events, lists {}
            asterisk-18-pjsip: 15 transcripts, AMI {"7.0.3"}, 4886 events, lists {}
        "#]].assert_eq(&out);
    }

    /// Reads messages from `sock` until `done` holds for what came so far, or the socket
    /// closes.
    async fn read_until(sock: &mut TcpStream, done: impl Fn(&[Message]) -> bool) -> Vec<Message> {
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let read = async {
            loop {
                while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                    if let Frame::Message(m) = frame {
                        out.push(m);
                    }
                }
                if done(&out) || sock.read_buf(&mut buf).await.unwrap() == 0 {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .expect("the server answered before the hang bound");
        out
    }

    /// `gap:N:K`: the first connection is closed after N events, the next K go to nobody,
    /// and a client logging in then gets the state lists as of after them, then the event
    /// that follows them.
    #[tokio::test]
    async fn a_gap_loses_events_and_the_next_login_sees_the_state_after_them() {
        let t = Transcript::load(
            &Path::new(FIXTURES).join("asterisk-22-pjsip/ami/01_rg_answered.rx.raw"),
        )
        .unwrap();
        // Lose the answer: from a little before the first bridge to a little after it.
        let bridged = t
            .events()
            .iter()
            .position(|e| e.starts_with(b"Event: BridgeEnter"))
            .unwrap();
        let (after, lost) = (bridged - 5, 10);
        let mut options = ReplayOptions::new("u", "s");
        options.faults = vec![Some(Fault::Gap { after, lost })];
        let server = ReplayServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), t.clone(), options)
            .await
            .unwrap();
        let login = "Action: Login\r\nActionID: login\r\nUsername: u\r\nSecret: s\r\n\r\n";
        let is_event = |m: &Message| m.event().is_some() && m.action_id().is_none();

        let mut first = TcpStream::connect(server.local_addr()).await.unwrap();
        first.write_all(login.as_bytes()).await.unwrap();
        let got = read_until(&mut first, |_| false).await;
        let sent: Vec<&Message> = got.iter().filter(|m| is_event(m)).collect();
        assert_eq!(
            sent.len(),
            after,
            "the first connection closes after N events"
        );

        // One write: the server answers every action it has read before the next event.
        let mut second = TcpStream::connect(server.local_addr()).await.unwrap();
        let actions = ["CoreShowChannels", "Status", "BridgeList"]
            .map(|a| format!("Action: {a}\r\nActionID: {a}\r\n\r\n"))
            .concat();
        second
            .write_all(format!("{login}{actions}").as_bytes())
            .await
            .unwrap();
        let got = read_until(&mut second, |got| got.iter().any(is_event)).await;

        let state = t.state_after(after + lost);
        let mut want: Vec<Message> = Vec::new();
        for answer in [
            state.core_show_channels("CoreShowChannels"),
            state.status("Status", None).unwrap(),
            state.bridge_list("BridgeList"),
        ] {
            want.extend(answer.messages().cloned());
        }
        want.push(decode_event(&t.events()[after + lost]));
        // After the login's response; one read may bring more events than the first.
        let first_event = got.iter().position(is_event).unwrap();
        assert_eq!(got[1..=first_event], want[..]);
        let lists: Vec<String> = want
            .iter()
            .filter(|m| m.get("EventList") == Some("Complete"))
            .map(|m| format!("{} {}", m.event().unwrap(), m.get("ListItems").unwrap()))
            .collect();
        expect![[
            r#"554+10: ["CoreShowChannelsComplete 6", "StatusComplete 6", "BridgeListComplete 1"]"#
        ]]
        .assert_eq(&format!("{after}+{lost}: {lists:?}"));
    }

    #[test]
    fn not_a_transcript() {
        let e = Transcript::parse(b"HTTP/1.1 200 OK\r\n\r\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "not an AMI transcript: it does not start with an `Asterisk Call Manager/` banner"
        );
    }
}
