//! The FastAGI server: Asterisk's `AGI(agi://host:4573/<script>)` connects here; the script
//! path picks a handler (`route`, `callerid`, `webhook`, `[agi.static.*]`).
//!
//! Every session is bounded: a connection limit (over it, the connection is closed at once
//! and the dialplan goes on), a per-session timeout (then the socket is closed), and on
//! shutdown a grace period as long as that timeout. A handler that fails leaves a VERBOSE
//! line in the Asterisk log and `PBXLINK_AGI_ERROR` in the dialplan; the channel never waits
//! on pbxlink longer than the session timeout.

pub mod cli;
pub mod handlers;
mod load;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agi::{Command, Environment, Reply, Session, SessionEvent, Success};
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The dialplan variable set when a session fails (unknown script, handler error).
pub const ERROR_VARIABLE: &str = "PBXLINK_AGI_ERROR";

/// `[agi]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgiConfig {
    /// Where the FastAGI server listens.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How long `route`, `callerid` and `webhook` wait for the CRM, in milliseconds.
    #[serde(default = "default_budget_ms")]
    pub budget_ms: u64,
    /// Sessions served at once; connections over this are closed right away.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds one session may last before pbxlink closes its socket.
    #[serde(default = "default_session_timeout")]
    pub session_timeout: f64,
    /// `PBXLINK_TARGET` when the CRM cannot tell (empty: leave the choice to the dialplan).
    #[serde(default)]
    pub fallback_target: String,
    /// Seconds a CRM answer is reused for the same caller.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: f64,
    /// The `[[crm]]` (by name) that `route` and `callerid` ask; unset: they answer `fallback`.
    pub lookup: Option<String>,
    /// The URL the `webhook` script POSTs the AGI environment to.
    pub webhook_url: Option<String>,
    /// `[agi.static.NAME]`: scripts that set fixed variables (dialplan tests, night mode).
    #[serde(default, rename = "static")]
    pub static_routes: BTreeMap<String, BTreeMap<String, String>>,
}

impl AgiConfig {
    /// Checks the values serde cannot: the key at fault and a message that names it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.budget_ms == 0 {
            return Err(("budget_ms", "[agi] budget_ms must be > 0".into()));
        }
        if self.max_connections == 0 {
            return Err((
                "max_connections",
                "[agi] max_connections must be > 0".into(),
            ));
        }
        for (key, secs) in [
            ("session_timeout", self.session_timeout),
            ("cache_ttl", self.cache_ttl),
        ] {
            if Duration::try_from_secs_f64(secs).is_err() {
                return Err((key, format!("[agi] {key} must be a number of seconds >= 0")));
            }
        }
        if self.session_timeout <= self.budget_ms as f64 / 1000.0 {
            return Err((
                "session_timeout",
                "[agi] session_timeout must be longer than budget_ms".into(),
            ));
        }
        if !self.fallback_target.is_empty() && !handlers::is_dialable(&self.fallback_target) {
            return Err((
                "fallback_target",
                format!(
                    "[agi] fallback_target '{}' is not an extension",
                    self.fallback_target
                ),
            ));
        }
        if let Some(url) = &self.webhook_url {
            url::Url::parse(url)
                .map_err(|e| ("webhook_url", format!("[agi] webhook_url '{url}': {e}")))?;
        }
        Ok(())
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            session_timeout: Duration::from_secs_f64(self.session_timeout),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4573))
}
fn default_budget_ms() -> u64 {
    300
}
fn default_max_connections() -> usize {
    1024
}
fn default_session_timeout() -> f64 {
    10.0
}
fn default_cache_ttl() -> f64 {
    300.0
}

/// The server's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub session_timeout: Duration,
}

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
pub enum AgiError {
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("Asterisk closed the connection")]
    Closed,
    #[error("the channel hung up")]
    HungUp,
    #[error("cannot send AGI command: {0}")]
    Send(#[from] agi::SendError),
    #[error("Asterisk rejected `{command}`: {reply}")]
    Rejected { command: String, reply: Reply },
    #[error("{0}")]
    Handler(String),
}

impl AgiError {
    /// Whether Asterisk can still hear an error reply.
    fn channel_is_alive(&self) -> bool {
        !matches!(self, AgiError::Io(_) | AgiError::Closed | AgiError::HungUp)
    }
}

/// A byte stream to Asterisk (a TCP socket; an in-memory pipe in tests).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One live AGI session, as handlers see it: the environment and a command/reply call.
pub struct Agi {
    io: Box<dyn Io>,
    session: Session,
    env: Environment,
    out: Vec<u8>,
    read_buf: Box<[u8]>,
}

impl std::fmt::Debug for Agi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agi")
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

const READ_BUF_LEN: usize = 4096;

impl Agi {
    /// Reads the environment; `Ok(None)` when Asterisk closes before sending it.
    async fn accept(io: Box<dyn Io>) -> Result<Option<Agi>, AgiError> {
        let mut agi = Agi {
            io,
            session: Session::new(),
            env: Environment::default(),
            out: Vec::with_capacity(256),
            read_buf: vec![0; READ_BUF_LEN].into_boxed_slice(),
        };
        loop {
            match agi.next_event().await {
                Ok(SessionEvent::Ready(env)) => {
                    agi.env = env;
                    return Ok(Some(agi));
                }
                Err(AgiError::Closed) => return Ok(None),
                Err(e) => return Err(e),
                Ok(other) => tracing::debug!("before the AGI environment: {other:?}"),
            }
        }
    }

    /// The `agi_*` variables Asterisk sent.
    pub fn env(&self) -> &Environment {
        &self.env
    }

    /// Sends `command` and waits for its `200` reply; any other reply is an error
    /// ([`AgiError::HungUp`] for `511`).
    pub async fn command(&mut self, command: &Command<'_>) -> Result<Success, AgiError> {
        self.out.clear();
        self.session.send(command, &mut self.out)?;
        self.io.write_all(&self.out).await?;
        loop {
            match self.next_event().await? {
                SessionEvent::Reply(Reply::Success(s)) => return Ok(s),
                SessionEvent::Reply(Reply::DeadChannel(_)) => return Err(AgiError::HungUp),
                SessionEvent::Reply(reply) => {
                    return Err(AgiError::Rejected {
                        command: command.to_line().unwrap_or_default(),
                        reply,
                    })
                }
                // Asterisk still answers this command; the next one will get `511`.
                SessionEvent::Hangup => tracing::debug!("channel hung up mid-command"),
                SessionEvent::Error(e) => tracing::warn!("AGI: skipped input: {e}"),
                SessionEvent::Ready(_) => {}
            }
        }
    }

    /// `SET VARIABLE name value`.
    pub async fn set_variable(&mut self, name: &str, value: &str) -> Result<(), AgiError> {
        self.command(&Command::SetVariable { name, value })
            .await
            .map(drop)
    }

    async fn next_event(&mut self) -> Result<SessionEvent, AgiError> {
        loop {
            if let Some(event) = self.session.poll_event() {
                return Ok(event);
            }
            let n = self.io.read(&mut self.read_buf).await?;
            if n == 0 {
                return Err(AgiError::Closed);
            }
            self.session.handle_input(&self.read_buf[..n]);
        }
    }
}

/// What a script does with a session.
pub trait Handler: Send + Sync {
    fn handle<'a>(&'a self, agi: &'a mut Agi) -> BoxFuture<'a, Result<(), AgiError>>;
}

/// Script path -> handler.
#[derive(Default)]
pub struct Router {
    routes: HashMap<String, Arc<dyn Handler>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.routes.keys().collect();
        names.sort();
        f.debug_struct("Router").field("routes", &names).finish()
    }
}

impl Router {
    pub fn route(mut self, path: &str, handler: impl Handler + 'static) -> Self {
        self.routes.insert(path.to_owned(), Arc::new(handler));
        self
    }

    fn known(&self) -> String {
        let mut names: Vec<_> = self.routes.keys().map(String::as_str).collect();
        names.sort_unstable();
        names.join(", ")
    }
}

/// How a session ended.
#[derive(Debug)]
pub enum Outcome {
    /// The handler ran to the end; pbxlink closed the socket.
    Done,
    /// Asterisk hung up or closed the socket before the end.
    Closed,
    /// The session timeout struck; the socket was closed.
    TimedOut,
    /// The handler failed; the error was reported to the dialplan when the channel was alive.
    Failed(AgiError),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Closed => "closed",
            Outcome::TimedOut => "timeout",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// Serves one connection to its end (or the session timeout) and closes it.
pub async fn serve_connection(io: impl Io + 'static, router: &Router, limits: Limits) -> Outcome {
    let outcome = tokio::time::timeout(limits.session_timeout, run_session(Box::new(io), router))
        .await
        .unwrap_or(Outcome::TimedOut);
    metrics::counter!("pbxlink_agi_sessions_total", "outcome" => outcome.label()).increment(1);
    if let Outcome::Failed(e) = &outcome {
        tracing::warn!("FastAGI session failed: {e}");
    }
    outcome
}

async fn run_session(io: Box<dyn Io>, router: &Router) -> Outcome {
    let mut agi = match Agi::accept(io).await {
        Ok(Some(agi)) => agi,
        Ok(None) | Err(AgiError::Closed | AgiError::HungUp) => return Outcome::Closed,
        Err(e) => return Outcome::Failed(e),
    };
    let script = agi.env.script_path().to_owned();
    let result = match router.routes.get(&script) {
        Some(handler) => handler.handle(&mut agi).await,
        None => Err(AgiError::Handler(format!(
            "unknown FastAGI script '{script}' (this server has: {})",
            router.known()
        ))),
    };
    let outcome = match result {
        Ok(()) => Outcome::Done,
        Err(AgiError::Closed | AgiError::HungUp) => Outcome::Closed,
        Err(e) => {
            if e.channel_is_alive() {
                report_error(&mut agi, &script, &e).await;
            }
            Outcome::Failed(e)
        }
    };
    // Closing the socket is what tells Asterisk the script is over.
    let _ = agi.io.shutdown().await;
    outcome
}

/// Tells the Asterisk log and the dialplan that the script failed.
async fn report_error(agi: &mut Agi, script: &str, error: &AgiError) {
    let message = handlers::sanitize(&error.to_string());
    let log_line = format!("pbxlink FastAGI {script}: {message}");
    let reported = async {
        agi.command(&Command::Verbose {
            message: &log_line,
            level: 1,
        })
        .await?;
        agi.set_variable(ERROR_VARIABLE, &message).await
    };
    if let Err(e) = reported.await {
        tracing::debug!("could not report the AGI error: {e}");
    }
}

/// The FastAGI server's accept loop and its session bookkeeping.
#[derive(Debug, Clone)]
pub struct Server {
    router: Arc<Router>,
    limits: Limits,
    permits: Arc<Semaphore>,
}

impl Server {
    pub fn new(router: Router, limits: Limits) -> Self {
        Server {
            router: Arc::new(router),
            limits,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
        }
    }

    /// Sessions running now.
    pub fn active_sessions(&self) -> usize {
        self.limits.max_connections - self.permits.available_permits()
    }

    /// Accepts connections until `shutdown` resolves, then gives running sessions up to the
    /// session timeout to finish and drops the rest.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => self.start_session(&mut sessions, stream, peer),
                    // Out of file descriptors and the like: let sessions finish, then retry.
                    Err(e) => {
                        tracing::warn!("FastAGI accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        drop(listener);
        tracing::info!(
            "FastAGI shutdown: waiting for {} sessions",
            self.active_sessions()
        );
        let drained = tokio::time::timeout(self.limits.session_timeout, async {
            while sessions.join_next().await.is_some() {}
        });
        if drained.await.is_err() {
            tracing::warn!("FastAGI shutdown: dropping {} sessions", sessions.len());
        }
    }

    fn start_session(
        &self,
        sessions: &mut JoinSet<()>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
    ) {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            // Closing at once lets the dialplan go on (AGISTATUS=SUCCESS, no variables set)
            // instead of keeping a caller waiting in the backlog.
            tracing::warn!(
                %peer,
                "FastAGI: {} sessions running, closing the connection",
                self.limits.max_connections
            );
            metrics::counter!("pbxlink_agi_rejected_total").increment(1);
            return;
        };
        // Commands are single small writes; Nagle would hold each one back for an ACK.
        let _ = stream.set_nodelay(true);
        let router = self.router.clone();
        let limits = self.limits;
        sessions.spawn(async move {
            let outcome = serve_connection(stream, &router, limits).await;
            tracing::debug!(%peer, "FastAGI session: {outcome:?}");
            drop(permit);
        });
    }
}
