//! The AMI link: a tokio task driving [`ami::Session`] over TCP or TLS, with keepalive,
//! reconnect (exponential backoff + jitter), action timeouts and a bounded event queue.
//!
//! [`AmiClient::start`] returns a cloneable handle for actions and a receiver of
//! [`LinkEvent`]s. Every (re)connection is announced with [`LinkEvent::Connected`] so the
//! consumer can resync its state (CoreShowChannels, Status) after a gap.
//!
//! On a lost connection, actions in flight are re-sent on the next connection when they are
//! read-only ([`is_idempotent`]); any other action (Originate, Hangup, Redirect...) fails
//! with [`AmiError::NotResent`], because Asterisk may have run it already and a second
//! Originate would ring the customer twice.

use std::collections::{HashMap, VecDeque};
use std::io::BufReader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ami::{
    Action, ActionId, ActionResult, AuthMethod, Credentials, Message, Session, SessionEvent,
};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

use crate::settings::{AuthKind, OverflowPolicy, PbxConfig};

/// Actions that only read state: safe to send again after a reconnect.
const IDEMPOTENT: &[&str] = &[
    "Ping",
    "CoreSettings",
    "CoreStatus",
    "CoreShowChannels",
    "CoreShowChannelMap",
    "Status",
    "Command",
    "DBGet",
    "Getvar",
    "ListCommands",
    "QueueStatus",
    "QueueSummary",
    "ExtensionState",
    "ExtensionStateList",
    "DeviceStateList",
    "PresenceStateList",
    "BridgeList",
    "BridgeInfo",
    "PJSIPShowEndpoints",
    "PJSIPShowEndpoint",
    "PJSIPShowContacts",
    "PJSIPShowRegistrationsOutbound",
    "SIPpeers",
    "MailboxCount",
    "MailboxStatus",
    "ShowDialPlan",
];

/// Whether `action` may be sent twice without effect (see the module docs).
pub fn is_idempotent(action: &Action) -> bool {
    IDEMPOTENT
        .iter()
        .any(|n| n.eq_ignore_ascii_case(action.name()))
}

/// How to reach and log in to one PBX.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub host: String,
    pub port: u16,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub credentials: Credentials,
    pub ping_interval: Duration,
    pub action_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub event_queue: usize,
    pub overflow: OverflowPolicy,
}

/// Why a `[[pbx]]` cannot be turned into a client.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Secret(#[from] crate::settings::SecretError),
    #[error("pbx '{pbx}': TLS CA file {path}: {message}")]
    CaFile {
        pbx: String,
        path: String,
        message: String,
    },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

impl ClientConfig {
    /// The client settings of a `[[pbx]]` (the secret resolved from the environment).
    pub fn from_pbx(pbx: &PbxConfig) -> Result<ClientConfig, SetupError> {
        let secret = pbx.secret_from_env()?;
        let tls = pbx.tls.then(|| tls_config(pbx)).transpose()?;
        Ok(ClientConfig {
            host: pbx.host.clone(),
            port: pbx.port,
            tls,
            credentials: Credentials {
                username: pbx.username.clone(),
                secret: secret.expose().to_owned(),
                auth: match pbx.auth {
                    AuthKind::Md5 => AuthMethod::Md5,
                    AuthKind::Plain => AuthMethod::Plain,
                },
                events: pbx.events.clone(),
            },
            ping_interval: pbx.ping_interval,
            action_timeout: pbx.action_timeout,
            reconnect_min: pbx.reconnect_min,
            reconnect_max: pbx.reconnect_max,
            event_queue: pbx.event_queue,
            overflow: pbx.overflow,
        })
    }

    /// [`ClientConfig::from_pbx`] with `Events: off`: a link for actions and their answers
    /// only (a cluster instance that does not track the PBX still controls its calls).
    pub fn actions_only(pbx: &PbxConfig) -> Result<ClientConfig, SetupError> {
        let mut config = Self::from_pbx(pbx)?;
        config.credentials.events = "off".into();
        Ok(config)
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// rustls settings for a `[[pbx]]` with `tls = true`.
pub fn tls_config(pbx: &PbxConfig) -> Result<Arc<rustls::ClientConfig>, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    if pbx.tls_insecure_skip_verify {
        tracing::warn!(pbx = %pbx.name, "TLS certificate verification is OFF (tls_insecure_skip_verify)");
        return Ok(Arc::new(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(insecure::AcceptAny(provider)))
                .with_no_client_auth(),
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    match &pbx.tls_ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let ca_error = |message: String| SetupError::CaFile {
                pbx: pbx.name.clone(),
                path: path.display().to_string(),
                message,
            };
            let file = std::fs::File::open(path).map_err(|e| ca_error(e.to_string()))?;
            for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
                let cert = cert.map_err(|e| ca_error(e.to_string()))?;
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_error("no PEM certificate in it".to_owned()));
            }
        }
    }
    Ok(Arc::new(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

mod insecure {
    //! A certificate verifier that accepts anything, for `tls_insecure_skip_verify`.
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use std::sync::Arc;

    #[derive(Debug)]
    pub struct AcceptAny(pub Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        // Signatures are still checked: the handshake stays a real one, only the identity
        // of the server is taken on trust.
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

/// What the link reports, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// Logged in (first time or after a reconnect): resync state now.
    Connected { ami_version: String },
    /// A connection attempt failed or an established connection ended.
    Disconnected { reason: LinkError },
    /// An unsolicited AMI event.
    Event(Message),
}

/// Why a connection ended (or never started).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("authentication failed for user {user} at {addr}: {message}")]
    LoginFailed {
        user: String,
        addr: String,
        message: String,
    },
    #[error("no Pong within {0:?}: connection presumed dead")]
    KeepaliveTimeout(Duration),
    #[error("connection closed by the PBX")]
    ClosedByPeer,
    #[error("I/O error: {0}")]
    Io(String),
    #[error("link shut down")]
    Shutdown,
}

/// Why an action got no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmiError {
    #[error("no response to {action} within {timeout:?}")]
    Timeout { action: String, timeout: Duration },
    #[error("connection lost while {action} was in flight; not re-sent, it may have run")]
    NotResent { action: String },
    #[error("{0}")]
    LoginFailed(LinkError),
    #[error("the AMI link is shut down")]
    Closed,
}

/// Counters of the link, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Successful logins.
    pub connects: u64,
    /// Events handed to the consumer.
    pub events_delivered: u64,
    /// Events dropped by [`OverflowPolicy::DropNewest`].
    pub events_dropped: u64,
    /// Undecodable input skipped.
    pub malformed: u64,
}

#[derive(Debug, Default)]
struct Stats {
    connects: AtomicU64,
    events_delivered: AtomicU64,
    events_dropped: AtomicU64,
    malformed: AtomicU64,
}

type Reply = oneshot::Sender<Result<InStream, AmiError>>;

/// An action's result with its place in the event stream.
#[derive(Debug, Clone, PartialEq)]
pub struct InStream {
    pub result: ActionResult,
    /// How many [`LinkEvent::Event`]s the receiver gets, since the link started, before this
    /// result came in: the events Asterisk sent before answering. State the action reads
    /// (a channel list) holds after exactly those events, not after the ones still queued
    /// when the answer is handed over.
    pub events_before: u64,
}

#[derive(Debug)]
enum Command {
    Send(Action, Reply),
    Shutdown(oneshot::Sender<()>),
}

/// Handle to a running AMI link. Cheap to clone; the link stops when the last handle is
/// dropped or [`AmiClient::shutdown`] is called.
#[derive(Debug, Clone)]
pub struct AmiClient {
    commands: mpsc::Sender<Command>,
    stats: Arc<Stats>,
    action_timeout: Duration,
}

impl AmiClient {
    /// Spawns the link task; it connects, and keeps reconnecting, in the background.
    pub fn start(config: ClientConfig) -> (AmiClient, mpsc::Receiver<LinkEvent>) {
        let (events_tx, events_rx) = mpsc::channel(config.event_queue.max(1));
        let (commands_tx, commands_rx) = mpsc::channel(256);
        let stats = Arc::new(Stats::default());
        let client = AmiClient {
            commands: commands_tx,
            stats: stats.clone(),
            action_timeout: config.action_timeout,
        };
        let link = Link {
            session: Session::new(config.credentials.clone()),
            backoff: config.reconnect_min,
            config,
            commands: commands_rx,
            events: events_tx,
            pending: VecDeque::new(),
            deferred: VecDeque::new(),
            online: false,
            waiters: HashMap::new(),
            login_error: None,
            stats,
        };
        tokio::spawn(link.run());
        (client, events_rx)
    }

    /// Sends `action` and waits for its result (the whole list, for list actions), up to
    /// the configured action timeout. Actions sent while disconnected wait for the login.
    pub async fn send(&self, action: Action) -> Result<ActionResult, AmiError> {
        self.send_in_stream(action).await.map(|r| r.result)
    }

    /// [`send`](Self::send), also telling where in the event stream the result came: for a
    /// consumer that applies it in order with the events (a resync).
    pub async fn send_in_stream(&self, action: Action) -> Result<InStream, AmiError> {
        let name = action.name().to_owned();
        let (tx, rx) = oneshot::channel();
        let deadline = Instant::now() + self.action_timeout;
        let result = tokio::time::timeout_at(deadline, async {
            self.commands
                .send(Command::Send(action, tx))
                .await
                .map_err(|_| AmiError::Closed)?;
            rx.await.map_err(|_| AmiError::Closed)?
        })
        .await;
        result.unwrap_or(Err(AmiError::Timeout {
            action: name,
            timeout: self.action_timeout,
        }))
    }

    /// Logs off (waiting up to the action timeout for Asterisk's Goodbye) and stops the
    /// link; the event receiver then ends after the events already queued.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    pub fn stats(&self) -> LinkStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LinkStats {
            connects: get(&self.stats.connects),
            events_delivered: get(&self.stats.events_delivered),
            events_dropped: get(&self.stats.events_dropped),
            malformed: get(&self.stats.malformed),
        }
    }
}

/// One backoff step from `base`: the delay (`base/2 + random * base/2`, `random` in
/// [0, 1)) and the next base (doubled, up to `max`).
fn backoff_step(base: Duration, max: Duration, random: f64) -> (Duration, Duration) {
    let delay = base / 2 + base.mul_f64(random.clamp(0.0, 1.0) / 2.0);
    (delay, (base * 2).min(max))
}

/// A byte stream to the PBX: TCP or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Whether the link goes on after handling something.
enum Flow {
    Continue,
    Stop,
}

/// The link task's state; lives across connections.
struct Link {
    config: ClientConfig,
    session: Session,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<LinkEvent>,
    /// Link events waiting for room in the queue. Under [`OverflowPolicy::Block`] the socket
    /// is not read while this is non-empty, so it holds at most one read's worth of events.
    pending: VecDeque<LinkEvent>,
    waiters: HashMap<ActionId, (String, Reply)>,
    /// Actions submitted while there is no connection. They reach the session only once a
    /// connection is up, and only if their caller is still waiting: an Originate whose
    /// caller already got a timeout must not be dialled minutes later on reconnect.
    deferred: VecDeque<(Action, Reply)>,
    /// A TCP (and TLS) connection is up.
    online: bool,
    /// Set after a refused login, until the next accepted one: new actions fail at once
    /// instead of waiting for a login that will not come.
    login_error: Option<LinkError>,
    backoff: Duration,
    stats: Arc<Stats>,
}

/// What the connection loop is waiting for.
enum Wake {
    Read(std::io::Result<usize>),
    Delivered(Result<mpsc::OwnedPermit<LinkEvent>, mpsc::error::SendError<()>>),
    Command(Option<Command>),
    PingDue,
    LogoffTimeout,
}

impl Link {
    async fn run(mut self) {
        loop {
            let reason = match self.connect().await {
                Ok(stream) => {
                    self.online = true;
                    for (action, reply) in std::mem::take(&mut self.deferred) {
                        self.submit(action, reply);
                    }
                    let reason = self.run_connection(stream).await;
                    self.online = false;
                    reason
                }
                Err(reason) => reason,
            };
            let stop = reason == LinkError::Shutdown;
            self.connection_lost(&reason);
            tracing::info!(addr = %self.config.address(), %reason, "AMI link down");
            self.deliver(LinkEvent::Disconnected { reason });
            if stop {
                break;
            }
            let delay = self.next_delay();
            if let Flow::Stop = self.idle(Instant::now() + delay).await {
                break;
            }
        }
        self.flush_pending().await;
    }

    /// Exponential backoff with "equal jitter" (half fixed, half random), so a PBX restart
    /// does not see all its clients come back in the same millisecond. After a refused
    /// login the wait is the maximum: a wrong secret does not fix itself in 500 ms.
    fn next_delay(&mut self) -> Duration {
        if self.login_error.is_some() {
            return self.config.reconnect_max;
        }
        let (delay, next) = backoff_step(self.backoff, self.config.reconnect_max, rand::random());
        self.backoff = next;
        delay
    }

    async fn connect(&mut self) -> Result<Box<dyn Stream>, LinkError> {
        let addr = self.config.address();
        let connect_error = |message: String| LinkError::Connect {
            addr: addr.clone(),
            message,
        };
        let attempt = async {
            let tcp = TcpStream::connect(&addr)
                .await
                .map_err(|e| connect_error(e.to_string()))?;
            tcp.set_nodelay(true)
                .map_err(|e| connect_error(e.to_string()))?;
            let Some(tls) = &self.config.tls else {
                return Ok(Box::new(tcp) as Box<dyn Stream>);
            };
            let name = rustls::pki_types::ServerName::try_from(self.config.host.clone())
                .map_err(|e| connect_error(format!("invalid TLS server name: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| connect_error(format!("TLS handshake: {e}")))?;
            Ok(Box::new(stream) as Box<dyn Stream>)
        };
        tokio::time::timeout(self.config.action_timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(connect_error("timed out".to_owned())))
    }

    /// Runs one connection until it ends; returns why.
    async fn run_connection(&mut self, mut stream: Box<dyn Stream>) -> LinkError {
        let interval = self.config.ping_interval;
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        let mut ami_version = String::new();
        let mut ping: Option<ActionId> = None;
        let mut next_ping = Instant::now() + interval;
        let mut logoff: Option<(ActionId, oneshot::Sender<()>, Instant)> = None;
        loop {
            while let Some(bytes) = self.session.poll_transmit() {
                if let Err(e) = stream.write_all(&bytes).await {
                    return LinkError::Io(e.to_string());
                }
            }
            while let Some(event) = self.session.poll_event() {
                match event {
                    SessionEvent::Greeting(banner) => ami_version = banner.ami_version,
                    SessionEvent::LoggedIn => {
                        self.stats.connects.fetch_add(1, Ordering::Relaxed);
                        self.login_error = None;
                        self.backoff = self.config.reconnect_min;
                        next_ping = Instant::now() + interval;
                        tracing::info!(addr = %self.config.address(), %ami_version, "AMI link up");
                        self.deliver(LinkEvent::Connected {
                            ami_version: ami_version.clone(),
                        });
                    }
                    SessionEvent::LoginFailed { message } => {
                        return LinkError::LoginFailed {
                            user: self.config.credentials.username.clone(),
                            addr: self.config.address(),
                            message,
                        };
                    }
                    SessionEvent::Event(m) if m.event().is_some() => {
                        self.deliver(LinkEvent::Event(m));
                    }
                    SessionEvent::Event(m) => {
                        // Neither event nor response (line noise, a broken proxy): report
                        // it like any undecodable input rather than hand it on as an event.
                        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(message = ?m, "AMI input that is not an event skipped");
                    }
                    SessionEvent::ActionDone { id, result } => {
                        if ping.as_ref() == Some(&id) {
                            ping = None;
                        } else if logoff.as_ref().is_some_and(|(l, ..)| *l == id) {
                            return LinkError::Shutdown;
                        } else if let Some((_, reply)) = self.waiters.remove(&id) {
                            let events_before = self.events_handed_over();
                            let _ = reply.send(Ok(InStream {
                                result,
                                events_before,
                            }));
                        }
                    }
                    SessionEvent::UnmatchedResponse(m) => {
                        tracing::debug!(response = ?m, "AMI response for no pending action");
                    }
                    SessionEvent::Malformed(e) => {
                        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "AMI input skipped");
                    }
                }
            }
            let block = self.config.overflow == OverflowPolicy::Block && !self.pending.is_empty();
            let logged_in = self.session.is_logged_in();
            let logoff_deadline = logoff.as_ref().map(|(.., at)| *at);
            let wake = tokio::select! {
                n = stream.read_buf(&mut rbuf), if !block => Wake::Read(n),
                permit = self.events.clone().reserve_owned(), if !self.pending.is_empty() => {
                    Wake::Delivered(permit)
                }
                cmd = self.commands.recv(), if logoff.is_none() => Wake::Command(cmd),
                () = sleep_until(next_ping), if logged_in && !block => Wake::PingDue,
                () = sleep_until(logoff_deadline.unwrap_or(next_ping)), if logoff_deadline.is_some() => {
                    Wake::LogoffTimeout
                }
            };
            match wake {
                Wake::Read(Ok(0)) => {
                    return match logoff {
                        Some(_) => LinkError::Shutdown,
                        None => LinkError::ClosedByPeer,
                    }
                }
                Wake::Read(Ok(_)) => {
                    self.session.handle_input(&rbuf);
                    rbuf.clear();
                }
                Wake::Read(Err(e)) => return LinkError::Io(e.to_string()),
                Wake::Delivered(permit) => {
                    self.send_pending(permit);
                    // The socket was not read while the consumer was slow: the Pong may
                    // be sitting unread in it. Give it a full interval from now.
                    if block && self.pending.is_empty() {
                        next_ping = Instant::now() + interval;
                    }
                }
                Wake::Command(Some(Command::Send(action, reply))) => self.submit(action, reply),
                Wake::Command(Some(Command::Shutdown(done))) if logged_in => {
                    let id = self.session.send_action(Action::logoff());
                    logoff = Some((id, done, Instant::now() + self.config.action_timeout));
                }
                Wake::Command(Some(Command::Shutdown(_)) | None) => return LinkError::Shutdown,
                Wake::PingDue if ping.is_some() => return LinkError::KeepaliveTimeout(interval),
                Wake::PingDue => {
                    // Forget callers that gave up (timed out) on an action never answered.
                    self.waiters.retain(|_, (_, reply)| !reply.is_closed());
                    ping = Some(self.session.send_action(Action::ping()));
                    next_ping = Instant::now() + interval;
                }
                Wake::LogoffTimeout => return LinkError::Shutdown,
            }
        }
    }

    /// Waits out a reconnect delay while still taking commands and delivering events.
    async fn idle(&mut self, until: Instant) -> Flow {
        loop {
            let wake = tokio::select! {
                permit = self.events.clone().reserve_owned(), if !self.pending.is_empty() => {
                    Wake::Delivered(permit)
                }
                cmd = self.commands.recv() => Wake::Command(cmd),
                () = sleep_until(until) => return Flow::Continue,
            };
            match wake {
                Wake::Delivered(permit) => self.send_pending(permit),
                Wake::Command(Some(Command::Send(action, reply))) => self.submit(action, reply),
                Wake::Command(Some(Command::Shutdown(_)) | None) => return Flow::Stop,
                Wake::Read(_) | Wake::PingDue | Wake::LogoffTimeout => {}
            }
        }
    }

    fn submit(&mut self, action: Action, reply: Reply) {
        if let Some(e) = &self.login_error {
            let _ = reply.send(Err(AmiError::LoginFailed(e.clone())));
            return;
        }
        if reply.is_closed() {
            return;
        }
        if !self.online {
            self.deferred.push_back((action, reply));
            return;
        }
        let name = action.name().to_owned();
        let id = self.session.send_action(action);
        self.waiters.insert(id, (name, reply));
    }

    /// Resets the session; re-queues idempotent actions, fails the others.
    fn connection_lost(&mut self, reason: &LinkError) {
        if let LinkError::LoginFailed { .. } = reason {
            self.login_error = Some(reason.clone());
        }
        // Before the login nothing but the login went out: every action is still unsent.
        let sent_any = self.session.is_logged_in();
        for (id, action) in self.session.connection_lost() {
            // Keepalive Pings and the Logoff have no waiter: nothing to resend.
            let Some((name, reply)) = self.waiters.remove(&id) else {
                continue;
            };
            let error = match reason {
                LinkError::LoginFailed { .. } => AmiError::LoginFailed(reason.clone()),
                LinkError::Shutdown => AmiError::Closed,
                _ if !sent_any || is_idempotent(&action) => {
                    self.submit(action, reply);
                    continue;
                }
                _ => AmiError::NotResent { action: name },
            };
            let _ = reply.send(Err(error));
        }
    }

    /// Queues a link event under the overflow policy. Connected/Disconnected are never
    /// dropped: they tell the consumer to resync, which is what makes a drop recoverable.
    fn deliver(&mut self, event: LinkEvent) {
        let droppable = matches!(event, LinkEvent::Event(_));
        if self.config.overflow == OverflowPolicy::Block {
            self.pending.push_back(event);
            return;
        }
        if !self.pending.is_empty() {
            // Keep the order: nothing overtakes a queued Connected/Disconnected.
            if droppable {
                self.count_dropped();
            } else {
                self.pending.push_back(event);
            }
            return;
        }
        match self.events.try_send(event) {
            Ok(()) if droppable => {
                self.stats.events_delivered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) if droppable => self.count_dropped(),
            Err(mpsc::error::TrySendError::Full(event)) => self.pending.push_back(event),
            // Nobody listens for events: nothing to deliver to, nothing lost to anyone.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Events delivered or queued for delivery (never the dropped ones): the position in
    /// the receiver's stream of whatever is delivered next.
    fn events_handed_over(&self) -> u64 {
        let queued = self
            .pending
            .iter()
            .filter(|e| matches!(e, LinkEvent::Event(_)))
            .count();
        self.stats.events_delivered.load(Ordering::Relaxed) + queued as u64
    }

    fn count_dropped(&self) {
        let n = self.stats.events_dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // Log the first drop and then every 1000th, not every one: the consumer is
        // already too slow, a log line per event would make it worse.
        if n == 1 || n % 1000 == 0 {
            tracing::warn!(
                dropped = n,
                "AMI event queue full: events dropped (overflow = drop_newest)"
            );
        }
    }

    fn send_pending(
        &mut self,
        permit: Result<mpsc::OwnedPermit<LinkEvent>, mpsc::error::SendError<()>>,
    ) {
        let Some(event) = self.pending.pop_front() else {
            return;
        };
        match permit {
            Ok(permit) => {
                if let LinkEvent::Event(_) = event {
                    self.stats.events_delivered.fetch_add(1, Ordering::Relaxed);
                }
                permit.send(event);
            }
            // The receiver is gone: nobody to deliver to.
            Err(_) => self.pending.clear(),
        }
    }

    /// On the way out: hands over what is still queued, waiting at most the action timeout.
    async fn flush_pending(&mut self) {
        let deadline = Instant::now() + self.config.action_timeout;
        while let Some(event) = self.pending.pop_front() {
            match tokio::time::timeout_at(deadline, self.events.send(event)).await {
                Ok(Ok(())) => {}
                // The receiver is gone: nobody to deliver to, nothing lost to anyone.
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::warn!(
                        left = self.pending.len() + 1,
                        "AMI link stopped with undelivered events"
                    );
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
