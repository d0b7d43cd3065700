//! The simulated Asterisk's AMI TCP server: login (plain and MD5 challenge), the generated
//! event stream (real time or as fast as the client reads), and the actions a gateway sends.
//! What it answers as the replay server does (the session, response framing, Ping, Command,
//! the AstDB, ExtensionStateList) comes from `responder.rs`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ami::{Decoder, Message};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinHandle, JoinSet};

use super::call::PhoneState;
use super::generator::{Generator, LiveChan, Options, TransferAction};
use super::style::Style;
use super::truth_path;
use super::wire::{event, ChanState, UNKNOWN};
use crate::responder::{self, After, EmptyId, ListAnswer, Responder, Session};

/// How the server behaves (the generator has its own [`Options`]).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub username: String,
    pub secret: String,
    /// As fast as the clients read instead of at the events' virtual timestamps.
    pub fast: bool,
    /// Virtual seconds played per wall-clock second when not `fast` (1: real time): calls
    /// minutes long pass in seconds, and the PBX still goes on while no client reads.
    pub speed: f64,
    /// Also write the streamed transcript and its ground truth here.
    pub write: Option<PathBuf>,
    /// Write each call's MixMonitor recording (a short tone) under this folder.
    pub monitor_dir: Option<PathBuf>,
    /// Append each CDR row to this cdr_csv Master.csv (see `cdr_csv.rs`).
    pub cdr: Option<PathBuf>,
}

// Events waiting for a slow client before the stream stops for everybody.
const CLIENT_QUEUE: usize = 4096;

#[derive(Debug)]
struct Shared {
    gen: Mutex<Generator>,
    opts: ServerOptions,
    subscribers: Mutex<Vec<mpsc::Sender<Bytes>>>,
    // Wakes the pump when a client subscribes (fast mode waits for one) or a call is added.
    wake: Notify,
}

/// A running simulator; stops with all its connections when dropped.
#[derive(Debug)]
pub struct SimulatorHandle {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    pump: JoinHandle<anyhow::Result<()>>,
}

impl SimulatorHandle {
    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs until the generator has nothing left to send (forever without a duration): every
    /// call has ended. The server goes on answering its clients until dropped.
    pub async fn wait(&mut self) {
        let _ = (&mut self.pump).await;
    }
}

impl Drop for SimulatorHandle {
    fn drop(&mut self) {
        self.accept.abort();
        self.pump.abort();
    }
}

/// Starts the simulator on `addr` (port 0: any free port); `pbxlink run` uses this on
/// 127.0.0.1 when no PBX is configured.
pub async fn start(
    addr: SocketAddr,
    gen_opts: Options,
    opts: ServerOptions,
) -> anyhow::Result<SimulatorHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        gen: Mutex::new(Generator::new(gen_opts)),
        opts,
        subscribers: Mutex::new(Vec::new()),
        wake: Notify::new(),
    });
    let accept = tokio::spawn(accept_loop(listener, shared.clone()));
    let pump = tokio::spawn(pump(shared));
    Ok(SimulatorHandle { addr, accept, pump })
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Owning the connection tasks here means aborting this task ends them all.
    let mut connections = JoinSet::new();
    while let Ok((sock, _)) = listener.accept().await {
        connections.spawn(Connection::new(shared.clone()).serve(sock));
        while connections.try_join_next().is_some() {}
    }
}

// Drives the generator and hands each event to every subscribed connection.
async fn pump(shared: Arc<Shared>) -> anyhow::Result<()> {
    let mut files = match &shared.opts.write {
        Some(path) => {
            let mut raw = std::io::BufWriter::new(std::fs::File::create(path)?);
            let banner = shared.gen.lock().unwrap().directory().style.banner();
            raw.write_all(banner.as_bytes())?;
            Some((
                raw,
                std::io::BufWriter::new(std::fs::File::create(truth_path(path))?),
            ))
        }
        None => None,
    };
    let mut cdr = shared
        .opts
        .cdr
        .as_deref()
        .map(super::cdr_csv::CdrCsv::open)
        .transpose()?;
    // The PBX "boots" when the first client logs in with events on, so that client sees the
    // first call from its start (a call whose start was missed is never reported).
    while shared.subscribers.lock().unwrap().is_empty() {
        shared.wake.notified().await;
    }
    let started = tokio::time::Instant::now();
    let first_ms = shared.gen.lock().unwrap().now_ms();
    if let Some(cdr) = cdr.as_mut().filter(|_| !shared.opts.fast) {
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        cdr.send_clock(super::cdr_csv::SendClock {
            first_ms,
            wall_ms: wall.as_millis() as u64,
            speed: shared.opts.speed,
        });
    }
    let mut buf = Vec::new();
    loop {
        if shared.opts.fast && shared.subscribers.lock().unwrap().is_empty() {
            shared.wake.notified().await;
            continue;
        }
        let next = shared.gen.lock().unwrap().peek_ms();
        let Some(at) = next else {
            if let Some((raw, truth)) = files.as_mut() {
                raw.flush()?;
                truth.flush()?;
            }
            return Ok(());
        };
        if !shared.opts.fast {
            let virtual_ms = at.saturating_sub(first_ms) as f64;
            let due = started + Duration::from_secs_f64(virtual_ms / 1000.0 / shared.opts.speed);
            // An Originate may add earlier events meanwhile: wake up for those too.
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = shared.wake.notified() => continue,
            }
        }
        // The event goes into every client's queue under the generator's lock, so that a
        // client's queue holds exactly the events made since it last read: an answer about
        // the present can then go out right after them (`Connection::before_answer`). Fast
        // mode first waits for room in every queue: the slowest client sets the pace.
        let subscribers: Vec<_> = shared.subscribers.lock().unwrap().clone();
        let mut permits = Vec::new();
        if shared.opts.fast {
            for tx in &subscribers {
                // A closed connection is dropped from the list below.
                if let Ok(permit) = tx.reserve().await {
                    permits.push(permit);
                }
            }
        }
        let (m, bytes, truths) = {
            let mut gen = shared.gen.lock().unwrap();
            let Some((_, m)) = gen.next_event() else {
                continue;
            };
            buf.clear();
            m.encode(&mut buf);
            let bytes = Bytes::copy_from_slice(&buf);
            if shared.opts.fast {
                for permit in permits {
                    permit.send(bytes.clone());
                }
            } else {
                // Real time waits for nobody: a client CLIENT_QUEUE events behind is cut
                // off, as Asterisk drops a manager session it cannot write to.
                shared
                    .subscribers
                    .lock()
                    .unwrap()
                    .retain(|tx| tx.try_send(bytes.clone()).is_ok());
            }
            (m, bytes, gen.take_finished())
        };
        if shared.opts.fast {
            shared
                .subscribers
                .lock()
                .unwrap()
                .retain(|tx| !tx.is_closed());
        }
        if let Some(dir) = &shared.opts.monitor_dir {
            super::mixmonitor::mixmonitor(dir, &m);
        }
        if let Some(cdr) = cdr.as_mut() {
            cdr.observe(&m)?;
        }
        if let Some((raw, truth)) = files.as_mut() {
            raw.write_all(&bytes)?;
            for t in truths {
                serde_json::to_writer(&mut *truth, &t)?;
                truth.write_all(b"\n")?;
            }
        }
    }
}

struct Connection {
    shared: Arc<Shared>,
    replies: Responder,
    events: Option<mpsc::Receiver<Bytes>>,
    // Events of the queue to write before the answer in `out`: those made before the
    // present it tells of (CoreShowChannels, phone states). Asterisk sends the events it
    // generated before an answer first; a client must not see a channel listed before it
    // was told of its Newchannel, nor listed after its Hangup.
    before_answer: usize,
}

impl Connection {
    fn new(shared: Arc<Shared>) -> Self {
        Connection {
            shared,
            replies: Responder::new(EmptyId::Omit),
            events: None,
            before_answer: 0,
        }
    }

    async fn serve(mut self, sock: TcpStream) {
        let (mut rd, mut wr) = sock.into_split();
        if wr
            .write_all(self.style().banner().as_bytes())
            .await
            .is_err()
        {
            return;
        }
        let mut dec = Decoder::without_banner();
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            let events = self.events.as_mut();
            tokio::select! {
                n = rd.read_buf(&mut buf) => {
                    if !matches!(n, Ok(n) if n > 0) {
                        return;
                    }
                    while let Some(action) = responder::next_action(&mut dec, &mut buf) {
                        let after = self.handle(&action);
                        if let Some(rx) = self.events.as_mut() {
                            for _ in 0..std::mem::take(&mut self.before_answer) {
                                let Ok(bytes) = rx.try_recv() else { break };
                                if wr.write_all(&bytes).await.is_err() {
                                    return;
                                }
                            }
                        }
                        if wr.write_all(&self.replies.out).await.is_err() {
                            return;
                        }
                        self.replies.out.clear();
                        if let After::Close = after {
                            let _ = wr.shutdown().await;
                            return;
                        }
                    }
                }
                next = async { match events { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                    // None: the pump cut this client off for being too slow.
                    let Some(bytes) = next else { return };
                    if wr.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn handle(&mut self, action: &Message) -> After {
        let name = action.action().unwrap_or_default().to_ascii_lowercase();
        let id = action.action_id().unwrap_or_default().to_owned();
        let id = id.as_str();
        let opts = &self.shared.opts;
        match self.replies.session(action, &opts.username, &opts.secret) {
            Session::Answered => return After::Continue,
            Session::Refused | Session::Goodbye => return After::Close,
            Session::LoggedIn { events } => {
                if events {
                    let mut m = event("FullyBooted");
                    m.push("Uptime", "4");
                    m.push("LastReload", "4");
                    m.push("Status", "Fully Booted");
                    m.encode(&mut self.replies.out);
                    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
                    self.shared.subscribers.lock().unwrap().push(tx);
                    self.events = Some(rx);
                    self.shared.wake.notify_one();
                }
                return After::Continue;
            }
            Session::Action => {}
        }
        let channel = action.get("Channel").unwrap_or_default();
        match name.as_str() {
            "ping" => {
                let now = self.shared.gen.lock().unwrap().now_ms();
                self.replies.pong(id, now * 1000);
            }
            "coresettings" => {
                let style = self.style();
                let versions = [
                    ("AMIversion", style.ami_version),
                    ("AsteriskVersion", style.asterisk_version),
                ];
                let fields: Vec<(&str, &str)> = versions.into_iter().chain(CORE_SETTINGS).collect();
                self.replies.success(id, &fields);
            }
            "corestatus" => {
                let calls = self.shared.gen.lock().unwrap().live().count().to_string();
                self.replies.success(
                    id,
                    &[
                        ("CoreStartupDate", "2026-11-22"),
                        ("CoreStartupTime", "22:54:26"),
                        ("CoreReloadDate", "2026-11-22"),
                        ("CoreReloadTime", "22:54:26"),
                        ("CoreCurrentCalls", &calls),
                        ("CoreProcessedCalls", "0"),
                    ],
                );
            }
            "command" => {
                let version = format!(
                    "Asterisk {} built by pbxlink simulate",
                    self.style().asterisk_version
                );
                self.replies.command(id, action, &version);
            }
            "originate" => {
                // A phone's device (`PJSIP/201`, `SIP/7001234201`), or one of its channels.
                let device = channel.split('-').next().unwrap_or_default();
                let ext = {
                    let gen = self.shared.gen.lock().unwrap();
                    let dir = gen.directory();
                    dir.style
                        .phone_of_device(device)
                        .filter(|e| dir.extensions.iter().any(|x| x == e))
                        .map(str::to_owned)
                };
                let number = action.get("Exten").unwrap_or_default().to_owned();
                // Originate's Exten is what the phone would dial: the outside number
                // after the outbound route's prefix.
                let prefix = self
                    .shared
                    .gen
                    .lock()
                    .unwrap()
                    .directory()
                    .style
                    .outbound_prefix;
                let number = number.strip_prefix(prefix).unwrap_or(&number).to_owned();
                match ext {
                    Some(ext) if !number.is_empty() => {
                        self.replies
                            .success(id, &[("Message", "Originate successfully queued")]);
                        let channel_id = action.get("ChannelId");
                        let mut gen = self.shared.gen.lock().unwrap();
                        gen.originate(&ext, &number, id, channel_id);
                        drop(gen);
                        self.shared.wake.notify_one();
                    }
                    _ => self.replies.error(id, "Originate failed"),
                }
            }
            "hangup" => {
                if self.shared.gen.lock().unwrap().hangup(channel) {
                    self.replies.success(id, &[("Message", "Channel Hungup")]);
                    self.shared.wake.notify_one();
                } else {
                    self.replies.error(id, "No such channel");
                }
            }
            "redirect" | "blindtransfer" | "atxfer" => {
                let exten = action.get("Exten").unwrap_or_default();
                let (how, ok, failed) = match name.as_str() {
                    "redirect" => (
                        TransferAction::Redirect,
                        "Redirect successful",
                        "Redirect failed",
                    ),
                    "blindtransfer" => (
                        TransferAction::Blind,
                        "Transfer succeeded",
                        "Transfer failed",
                    ),
                    _ => (
                        TransferAction::Attended,
                        "Atxfer successfully queued",
                        "Atxfer failed",
                    ),
                };
                let mut gen = self.shared.gen.lock().unwrap();
                let exists = gen.live().any(|l| l.chan.name == channel);
                let done = exists && gen.transfer(channel, exten, how);
                drop(gen);
                match (exists, done) {
                    (false, _) => self.replies.error(id, "Channel specified does not exist"),
                    (true, true) => self.replies.success(id, &[("Message", ok)]),
                    (true, false) => self.replies.error(id, failed),
                }
                self.shared.wake.notify_one();
            }
            "dbget" => self.db_get(action, id),
            "dbput" => {
                let key = db_key(action);
                let val = action
                    .get("Val")
                    .or_else(|| action.get("Value"))
                    .unwrap_or_default()
                    .to_owned();
                self.shared
                    .gen
                    .lock()
                    .unwrap()
                    .state_mut()
                    .astdb
                    .insert(key, val);
                self.replies.db_put(id);
            }
            "dbdel" => {
                let removed = self
                    .shared
                    .gen
                    .lock()
                    .unwrap()
                    .state_mut()
                    .astdb
                    .remove(&db_key(action))
                    .is_some();
                self.replies.db_del(id, removed);
            }
            "queuepause" => {
                let interface = action.get("Interface").unwrap_or_default().to_owned();
                let paused = action.get("Paused").is_some_and(|p| {
                    p.eq_ignore_ascii_case("true") || p == "1" || p.eq_ignore_ascii_case("yes")
                });
                let queue = action.get("Queue").map(str::to_owned);
                let mut gen = self.shared.gen.lock().unwrap();
                let dir = gen.directory();
                let queues: Vec<String> = dir
                    .queues
                    .iter()
                    .filter(|q| {
                        queue.as_deref().is_none_or(|n| n == q.number)
                            && q.members
                                .iter()
                                .any(|m| dir.style.queue_member(m) == interface)
                    })
                    .map(|q| q.number.to_owned())
                    .collect();
                if queues.is_empty() {
                    drop(gen);
                    self.replies.error(id, "Interface not found");
                } else {
                    let state = gen.state_mut();
                    for q in queues {
                        let key = (q, interface.clone());
                        if paused {
                            state.paused.insert(key);
                        } else {
                            state.paused.remove(&key);
                        }
                    }
                    drop(gen);
                    let message = if paused {
                        "Interface paused successfully"
                    } else {
                        "Interface unpaused successfully"
                    };
                    self.replies.success(id, &[("Message", message)]);
                }
            }
            // FreePBX sets `DEVICE_STATE(Custom:DND<ext>)` with a DND or forwarding change;
            // the simulated phones have no such lamps, so it is only acknowledged.
            "setvar" => self.replies.success(id, &[("Message", "Variable Set")]),
            "extensionstatelist" => self.extension_state_list(id),
            "queuestatus" => self.queue_status(id, action.get("Queue")),
            "coreshowchannels" => self.channel_list(id, false, channel),
            "status" => self.channel_list(id, true, channel),
            // A PBX answers for the channel driver it runs; the other one is not loaded.
            "pjsipshowendpoints" if self.style().freepbx => self.endpoint_list(id),
            "pjsipshowendpoint" if self.style().freepbx => {
                self.endpoint_detail(id, action.get("Endpoint").unwrap_or_default())
            }
            "sippeers" if !self.style().freepbx => self.peer_list(id),
            "sipshowpeer" if !self.style().freepbx => {
                self.show_peer(id, action.get("Peer").unwrap_or_default())
            }
            _ => self.replies.error(id, "Invalid/unknown command"),
        }
        After::Continue
    }

    // A list answer: the Success response, the items, the *Complete event (with `Items`
    // too when `extra_count`).
    fn list(
        &mut self,
        id: &str,
        message: &str,
        items: Vec<Message>,
        complete: &str,
        extra_count: bool,
    ) {
        let answer = ListAnswer::new(id, message, items, complete);
        self.replies.list(&if extra_count {
            answer.with_items_count()
        } else {
            answer
        });
    }

    fn db_get(&mut self, action: &Message, id: &str) {
        let key = db_key(action);
        let val = self
            .shared
            .gen
            .lock()
            .unwrap()
            .state_mut()
            .astdb
            .get(&key)
            .cloned();
        self.replies.db_get(id, action, val.as_deref());
    }

    /// What each phone is doing per the live channels: ringing, else in use, else idle.
    fn phone_states(&mut self) -> Vec<(String, PhoneState)> {
        let gen = self.shared.gen.lock().unwrap();
        self.before_answer = self.events.as_ref().map_or(0, mpsc::Receiver::len);
        let style = gen.directory().style;
        let live: Vec<(&str, bool)> = gen
            .live()
            .filter_map(|l| {
                Some((
                    style.phone_of(&l.chan.name)?,
                    l.chan.state == ChanState::Ringing,
                ))
            })
            .collect();
        gen.directory()
            .extensions
            .iter()
            .map(|e| {
                let mine = live.iter().filter(|(p, _)| p == e);
                let state = match (mine.clone().count(), mine.clone().any(|(_, r)| *r)) {
                    (0, _) => PhoneState::Idle,
                    (_, true) => PhoneState::Ringing,
                    _ => PhoneState::InUse,
                };
                (e.clone(), state)
            })
            .collect()
    }

    fn extension_state_list(&mut self, id: &str) {
        let style = self.style();
        let phones: Vec<(String, String, PhoneState)> = self
            .phone_states()
            .into_iter()
            .map(|(e, state)| {
                let hint = style.hint(&e);
                (e, hint, state)
            })
            .collect();
        self.replies.extension_state_list(
            id,
            phones.iter().map(|(e, hint, state)| {
                let (code, text) = match state {
                    PhoneState::Idle => ("0", "Idle"),
                    PhoneState::Ringing => ("8", "Ringing"),
                    _ => ("1", "InUse"),
                };
                [e.as_str(), style.hints, hint.as_str(), code, text]
            }),
        );
    }

    /// `QueueStatus` as app_queue answers it: per queue its `QueueParams`, then a
    /// `QueueMember` per member (paused flags as `QueuePause` left them), no callers.
    fn queue_status(&mut self, id: &str, only: Option<&str>) {
        let phones = self.phone_states();
        let gen = self.shared.gen.lock().unwrap();
        let dir = gen.directory();
        let mut items = Vec::new();
        for q in dir
            .queues
            .iter()
            .filter(|q| only.is_none_or(|n| n == q.number))
        {
            let mut params = Message::new();
            for (k, v) in [
                ("Event", "QueueParams"),
                ("Queue", q.number),
                ("Max", "0"),
                ("Strategy", "ringall"),
                ("Calls", "0"),
                ("Holdtime", "0"),
                ("TalkTime", "0"),
                ("Completed", "0"),
                ("Abandoned", "0"),
                ("ServiceLevel", "0"),
                ("ServicelevelPerf", "0.0"),
                ("ServicelevelPerf2", "0.0"),
                ("Weight", "0"),
                ("ActionID", id),
            ] {
                params.push(k, v);
            }
            items.push(params);
            for ext in &q.members {
                let location = dir.style.queue_member(ext);
                let paused = gen
                    .state()
                    .paused
                    .contains(&(q.number.to_owned(), location.clone()));
                let state = phones.iter().find(|(e, _)| e == ext).map(|(_, s)| *s);
                let (status, in_call) = match state {
                    Some(PhoneState::Ringing) => ("6", "0"),
                    Some(PhoneState::InUse) => ("2", "1"),
                    _ => ("1", "0"),
                };
                let mut m = Message::new();
                for (k, v) in [
                    ("Event", "QueueMember"),
                    ("Queue", q.number),
                    ("Name", &dir.name(ext)),
                    ("Location", &location),
                    ("StateInterface", &dir.style.member_state(ext)),
                    ("Membership", "static"),
                    ("Penalty", "0"),
                    ("CallsTaken", "0"),
                    ("LastCall", "0"),
                    ("LastPause", "0"),
                    ("LoginTime", &dir.boot_epoch.to_string()),
                    ("InCall", in_call),
                    ("Status", status),
                    ("Paused", if paused { "1" } else { "0" }),
                    ("PausedReason", ""),
                    ("Wrapuptime", "0"),
                    ("ActionID", id),
                ] {
                    m.push(k, v);
                }
                items.push(m);
            }
        }
        drop(gen);
        self.list(
            id,
            "Queue status will follow",
            items,
            "QueueStatusComplete",
            false,
        );
    }

    // CoreShowChannels (`status` false) or Status (`status` true, optionally one channel).
    fn channel_list(&mut self, id: &str, status: bool, only: &str) {
        let (now, live): (u64, Vec<LiveChan>) = {
            let gen = self.shared.gen.lock().unwrap();
            self.before_answer = self.events.as_ref().map_or(0, mpsc::Receiver::len);
            (
                gen.now_ms(),
                gen.live()
                    .filter(|l| only.is_empty() || l.chan.name == only)
                    .cloned()
                    .collect(),
            )
        };
        // A channel's age on the clock the events go out by, as its CDR (`cdr_csv.rs`): a
        // client compares it with its own clock, not with the calls' virtual one.
        let speed = if self.shared.opts.fast {
            1.0
        } else {
            self.shared.opts.speed
        };
        let items = live
            .iter()
            .map(|l| {
                let secs = (now.saturating_sub(l.created_ms) as f64 / speed / 1000.0) as u64;
                if status {
                    status_item(l, secs, id)
                } else {
                    show_channel_item(l, secs, id)
                }
            })
            .collect();
        if status {
            self.list(
                id,
                "Channel status will follow",
                items,
                "StatusComplete",
                true,
            );
        } else {
            self.list(
                id,
                "Channels will follow",
                items,
                "CoreShowChannelsComplete",
                false,
            );
        }
    }

    fn style(&self) -> Style {
        self.shared.gen.lock().unwrap().directory().style
    }

    /// The PBX's SIP endpoints: each phone with its configured caller ID (`"Alice" <201>`,
    /// which chan_sip also gives the phone's channels) and device state, then the trunk,
    /// which has no caller ID of its own.
    fn endpoints(&mut self) -> Vec<Endpoint> {
        let states = self.phone_states();
        let gen = self.shared.gen.lock().unwrap();
        let dir = gen.directory();
        let mut endpoints: Vec<Endpoint> = states
            .into_iter()
            .map(|(ext, state)| Endpoint {
                name: dir.style.endpoint(&ext),
                callerid: format!("\"{}\" <{ext}>", dir.name(&ext)),
                context: dir.style.internal,
                state,
            })
            .collect();
        endpoints.push(Endpoint {
            name: dir.style.trunk.to_owned(),
            callerid: String::new(),
            context: dir.style.inbound,
            state: PhoneState::Idle,
        });
        endpoints
    }

    /// `PJSIPShowEndpoints`: an `EndpointList` event per endpoint (res_pjsip's
    /// `format_ami_endpoints`).
    fn endpoint_list(&mut self, id: &str) {
        let items = self
            .endpoints()
            .iter()
            .map(|e| {
                let contact = format!("{}/sip:{}@127.0.0.1:5070,", e.name, e.name);
                let auth = format!("{}-auth", e.name);
                item(
                    "EndpointList",
                    id,
                    &[
                        ("ObjectType", "endpoint"),
                        ("ObjectName", &e.name),
                        ("Transport", "0.0.0.0-udp"),
                        ("Aor", &e.name),
                        ("Auths", &auth),
                        ("OutboundAuths", ""),
                        ("Contacts", &contact),
                        ("DeviceState", e.state.pjsip()),
                        ("ActiveChannels", ""),
                    ],
                )
            })
            .collect();
        self.list(
            id,
            "A listing of Endpoints follows, presented as EndpointList events",
            items,
            "EndpointListComplete",
            false,
        );
    }

    /// `PJSIPShowEndpoint`: the endpoint's `EndpointDetail` (its sorcery fields, caller ID
    /// among them; the AOR, auth and contact details that follow it are left out).
    fn endpoint_detail(&mut self, id: &str, name: &str) {
        let name = name.strip_prefix("PJSIP/").unwrap_or(name);
        let Some(e) = self.endpoints().into_iter().find(|e| e.name == name) else {
            return self
                .replies
                .error(id, &format!("Unable to retrieve endpoint {name}"));
        };
        let auth = format!("{}-auth", e.name);
        let detail = item(
            "EndpointDetail",
            id,
            &[
                ("ObjectType", "endpoint"),
                ("ObjectName", &e.name),
                ("Context", e.context),
                ("Disallow", ""),
                ("Allow", "(ulaw|alaw)"),
                ("DtmfMode", "rfc4733"),
                ("RtpSymmetric", "true"),
                ("ForceRport", "true"),
                ("RewriteContact", "true"),
                ("Transport", "0.0.0.0-udp"),
                ("MohSuggest", "default"),
                ("Auth", &auth),
                ("OutboundAuth", ""),
                ("Aors", &e.name),
                ("DirectMedia", "false"),
                ("Callerid", &e.callerid),
                ("CalleridPrivacy", "allowed_not_screened"),
                ("CalleridTag", ""),
                ("DeviceState", e.state.pjsip()),
                ("ActiveChannels", ""),
            ],
        );
        self.list(
            id,
            "Following are Events for each object associated with the Endpoint",
            vec![detail],
            "EndpointDetailComplete",
            false,
        );
    }

    /// `SIPpeers`: a `PeerEntry` event per peer (chan_sip's `_sip_show_peers_one`).
    fn peer_list(&mut self, id: &str) {
        let items = self
            .endpoints()
            .iter()
            .map(|e| {
                item(
                    "PeerEntry",
                    id,
                    &[
                        ("Channeltype", "SIP"),
                        ("ObjectName", &e.name),
                        ("ChanObjectType", "peer"),
                        ("IPaddress", "127.0.0.1"),
                        ("IPport", "5070"),
                        ("Dynamic", "yes"),
                        ("AutoForcerport", "no"),
                        ("Forcerport", "yes"),
                        ("AutoComedia", "no"),
                        ("Comedia", "yes"),
                        ("VideoSupport", "no"),
                        ("TextSupport", "no"),
                        ("ACL", "no"),
                        ("Status", "OK (12 ms)"),
                        ("RealtimeDevice", "no"),
                        ("Description", ""),
                        ("Accountcode", ""),
                    ],
                )
            })
            .collect();
        self.list(
            id,
            "Peer status list will follow",
            items,
            "PeerlistComplete",
            false,
        );
    }

    /// `SIPshowpeer`: one answer, not a list (chan_sip's `_sip_show_peer` for the manager).
    fn show_peer(&mut self, id: &str, name: &str) {
        if name.is_empty() {
            return self.replies.error(id, "Peer: <name> missing.");
        }
        let Some(e) = self.endpoints().into_iter().find(|e| e.name == name) else {
            return self.replies.error(id, &format!("Peer {name} not found."));
        };
        let contact = format!("sip:{}@127.0.0.1:5070", e.name);
        self.replies.success(
            id,
            &[
                ("Channeltype", "SIP"),
                ("ObjectName", &e.name),
                ("ChanObjectType", "peer"),
                ("SecretExist", "Y"),
                ("RemoteSecretExist", "N"),
                ("MD5SecretExist", "N"),
                ("Context", e.context),
                ("Language", "en"),
                ("ToneZone", "<Not set>"),
                ("AMAflags", "Unknown"),
                ("CID-CallingPres", "Presentation Allowed, Not Screened"),
                ("Callgroup", ""),
                ("Pickupgroup", ""),
                ("Named Callgroup", ""),
                ("Named Pickupgroup", ""),
                ("MOHSuggest", ""),
                ("VoiceMailbox", ""),
                ("TransferMode", "open"),
                ("LastMsgsSent", "0"),
                ("Maxforwards", "0"),
                ("Call-limit", "2147483647"),
                ("Busy-level", "0"),
                ("MaxCallBR", "384 kbps"),
                ("Dynamic", "Y"),
                ("Callerid", &e.callerid),
                ("RegExpire", "3587 seconds"),
                ("SIP-AuthInsecure", "no"),
                ("SIP-Forcerport", "Y"),
                ("SIP-Comedia", "Y"),
                ("ACL", "N"),
                ("SIP-CanReinvite", "N"),
                ("SIP-DirectMedia", "N"),
                ("SIP-PromiscRedir", "N"),
                ("SIP-UserPhone", "N"),
                ("SIP-VideoSupport", "N"),
                ("SIP-TextSupport", "N"),
                ("SIP-T.38Support", "N"),
                ("SIP-T.38EC", "Unknown"),
                ("SIP-T.38MaxDtgrm", "4294967295"),
                ("SIP-Sess-Timers", "Accept"),
                ("SIP-Sess-Refresh", "uas"),
                ("SIP-Sess-Expires", "1800"),
                ("SIP-Sess-Min", "90"),
                ("SIP-RTP-Engine", "asterisk"),
                ("SIP-Encryption", "N"),
                ("SIP-RTCP-Mux", "N"),
                ("SIP-DTMFmode", "rfc2833"),
                ("ToHost", ""),
                ("Address-IP", "127.0.0.1"),
                ("Address-Port", "5070"),
                ("Default-addr-IP", "(null)"),
                ("Default-addr-port", "0"),
                ("Default-Username", &e.name),
                ("Codecs", "(ulaw|alaw)"),
                ("Status", "OK (12 ms)"),
                ("SIP-Useragent", "pbxlink simulate"),
                ("Reg-Contact", &contact),
                ("QualifyFreq", "60000 ms"),
                ("Parkinglot", ""),
                ("SIP-Use-Reason-Header", "N"),
                ("Description", ""),
            ],
        );
    }
}

// CoreSettings after AMIversion and AsteriskVersion.
const CORE_SETTINGS: [(&str, &str); 10] = [
    ("SystemName", ""),
    ("CoreMaxCalls", "0"),
    ("CoreMaxLoadAvg", "0.000000"),
    ("CoreRunUser", ""),
    ("CoreRunGroup", ""),
    ("CoreMaxFilehandles", "0"),
    ("CoreRealTimeEnabled", "No"),
    ("CoreCDRenabled", "Yes"),
    ("CoreHTTPenabled", "Yes"),
    ("SoundsSearchCustomDir", "No"),
];

/// A SIP endpoint as the endpoint actions list it.
struct Endpoint {
    name: String,
    callerid: String,
    context: &'static str,
    state: PhoneState,
}

impl PhoneState {
    /// res_pjsip's `DeviceState` text.
    fn pjsip(self) -> &'static str {
        match self {
            PhoneState::Idle => "Not in use",
            PhoneState::InUse => "In use",
            PhoneState::Ringing => "Ringing",
            PhoneState::Busy => "Busy",
        }
    }
}

/// A list item event: its name, the ActionID, then its fields.
fn item(name: &str, id: &str, fields: &[(&str, &str)]) -> Message {
    let mut m = event(name);
    if !id.is_empty() {
        m.push("ActionID", id);
    }
    for (k, v) in fields {
        m.push(k, v);
    }
    m
}

// DBGet/DBPut/DBDel name the entry by Family and Key: AstDB path "Family/Key".
fn db_key(action: &Message) -> String {
    format!(
        "{}/{}",
        action.get("Family").unwrap_or_default(),
        action.get("Key").unwrap_or_default()
    )
}

/// A `CoreShowChannel` of `l`, up `secs` seconds.
fn show_channel_item(l: &LiveChan, secs: u64, id: &str) -> Message {
    let mut m = Message::new();
    m.push("Event", "CoreShowChannel");
    m.push("ActionID", id);
    l.chan.block("", &mut m);
    m.push("Application", &l.app);
    m.push("ApplicationData", &l.app_data);
    m.push(
        "Duration",
        &format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
    );
    m.push("BridgeId", &l.bridge);
    m
}

/// A `Status` of `l`, up `secs` seconds.
fn status_item(l: &LiveChan, secs: u64, id: &str) -> Message {
    let mut m = Message::new();
    m.push("Event", "Status");
    m.push("Privilege", "Call");
    l.chan.block("", &mut m);
    let tech = l.chan.name.split('/').next().unwrap_or_default();
    let conn_num = if l.chan.conn_num == UNKNOWN {
        ""
    } else {
        &l.chan.conn_num
    };
    let seconds = secs.to_string();
    let fields: [(&str, &str); 17] = [
        ("Type", tech),
        ("DNID", ""),
        ("EffectiveConnectedLineNum", conn_num),
        ("EffectiveConnectedLineName", &l.chan.conn_name),
        ("TimeToHangup", "0"),
        ("BridgeID", &l.bridge),
        ("Application", &l.app),
        ("Data", &l.app_data),
        ("Nativeformats", "(ulaw)"),
        ("Readformat", "ulaw"),
        ("Readtrans", ""),
        ("Writeformat", "ulaw"),
        ("Writetrans", ""),
        ("Callgroup", "0"),
        ("Pickupgroup", "0"),
        ("Seconds", &seconds),
        ("ActionID", id),
    ];
    for (k, v) in fields {
        m.push(k, v);
    }
    m
}
