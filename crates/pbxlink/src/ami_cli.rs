//! `pbxlink ami ...`: check an AMI login, send any action, watch events, or serve a
//! recorded transcript as a stand-in Asterisk.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ami::{Action, ActionResult, Message};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use sim::replay_server::{Fault, ReplayOptions, ReplayServer, Transcript};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{AjamConfig, AuthKind, Config, PbxConfig, Secret};
use pbx::ajam_client::AjamClient;
use pbx::ami_client::{AmiClient, ClientConfig, LinkEvent};

#[derive(Debug, Args)]
pub struct AmiArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: AmiCommand,
}

/// Which PBX: a `[[pbx]]` of the config, with flags overriding its fields.
#[derive(Debug, Args)]
struct Target {
    /// Name of the `[[pbx]]` in the config (default: the first one).
    #[arg(long, global = true)]
    pbx: Option<String>,
    #[arg(long, global = true)]
    host: Option<String>,
    #[arg(long, global = true)]
    port: Option<u16>,
    /// AMI user name (`manager.conf` section).
    #[arg(long, global = true)]
    user: Option<String>,
    /// AMI secret (else the config's `secret`/`secret_env`, else PBXLINK_AMI_SECRET).
    #[arg(long, global = true)]
    secret: Option<String>,
    /// Login method.
    #[arg(long, global = true, value_parser = ["md5", "plain"])]
    auth: Option<String>,
    /// Connect with TLS.
    #[arg(long, global = true)]
    tls: bool,
    /// Go through AJAM (HTTP) at the `[pbx.ajam] url` instead of the AMI TCP port.
    #[arg(long, global = true)]
    ajam: bool,
    /// Go through AJAM at this URL (`http://pbx:8088/rawman` or `.../mxml`).
    #[arg(long, global = true)]
    ajam_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum AmiCommand {
    /// Log in, Ping; print the AMI and Asterisk versions and the round-trip time.
    Ping,
    /// Send one action and print its response and list items:
    /// `pbxlink ami action QueueStatus Queue=support`.
    Action {
        /// Action name, e.g. `CoreShowChannels`.
        name: String,
        /// Fields as `Key=Value`; a key may repeat (`Variable=A=1 Variable=B=2`).
        #[arg(value_parser = parse_field)]
        fields: Vec<(String, String)>,
        /// One JSON object per message instead of AMI `Key: Value` text.
        #[arg(long)]
        json: bool,
    },
    /// Print events as they come, one JSON object per line; Ctrl-C logs off.
    Events {
        /// Only events whose field matches, e.g. `Event=Hangup` (repeatable: all must match).
        #[arg(long, value_parser = parse_field)]
        filter: Vec<(String, String)>,
        /// Pretty-print the JSON.
        #[arg(long)]
        pretty: bool,
    },
    /// Serve a recorded transcript (`*.rx.raw`) as an AMI server, for demos and tests.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The transcript.
    file: PathBuf,
    /// Address to listen on (port 0: any free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:5038")]
    listen: SocketAddr,
    /// Milliseconds between events (0: as fast as the client reads).
    #[arg(long, default_value_t = 0)]
    pace_ms: u64,
    /// Fault on the first connection that logs in with events on: `drop:N` (close mid-message after N events),
    /// `stall:N:SECS` (go silent for SECS after N events), `hold:N` (no events after N,
    /// actions still answered), `garbage:N`, `gap:N:K` (close after N events; the next K
    /// are lost, and the next login's state lists are as of after them).
    #[arg(long, value_parser = parse_fault)]
    fault: Option<Fault>,
    /// Serve TLS with this PEM certificate chain (and --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// How long one WaitEvent may wait on the Asterisk side (below its `httptimeout` of 60 s).
const AJAM_POLL: Duration = Duration::from_secs(30);

fn parse_fault(s: &str) -> Result<Fault, String> {
    let bad = || format!("expected drop:N, stall:N:SECS, hold:N, garbage:N or gap:N:K, got '{s}'");
    let parts: Vec<&str> = s.split(':').collect();
    let num = |i: usize| -> Result<u64, String> {
        parts.get(i).and_then(|p| p.parse().ok()).ok_or_else(bad)
    };
    let after = usize::try_from(num(1)?).map_err(|_| bad())?;
    match (parts[0], parts.len()) {
        ("drop", 2) => Ok(Fault::Disconnect { after }),
        ("garbage", 2) => Ok(Fault::Garbage { after }),
        ("hold", 2) => Ok(Fault::Hold { after }),
        ("gap", 3) => Ok(Fault::Gap {
            after,
            lost: usize::try_from(num(2)?).map_err(|_| bad())?,
        }),
        ("stall", 3) => Ok(Fault::Stall {
            after,
            pause: Duration::from_secs(num(2)?),
        }),
        _ => Err(bad()),
    }
}

fn parse_field(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected Key=Value, got '{s}'"))
}

pub async fn run(config_file: Option<&Path>, args: AmiArgs) -> anyhow::Result<()> {
    let config = Config::load_or_default(config_file)?;
    let pbx = args.target.apply(config.pbx(args.target.pbx.as_deref())?);
    let ajam = args.target.use_ajam();
    match args.command {
        AmiCommand::Ping => ping(&pbx, ajam).await,
        AmiCommand::Action { name, fields, json } => {
            let action = fields
                .iter()
                .fold(Action::new(&name), |a, (k, v)| a.field(k, v));
            action_once(&pbx, ajam, action, json).await
        }
        AmiCommand::Events { filter, pretty } => events(&pbx, ajam, &filter, pretty).await,
        AmiCommand::Serve(serve_args) => serve(&pbx, &serve_args).await,
    }
}

impl Target {
    fn apply(&self, mut pbx: PbxConfig) -> PbxConfig {
        if let Some(host) = &self.host {
            pbx.host.clone_from(host);
        }
        if let Some(port) = self.port {
            pbx.port = port;
        }
        if let Some(user) = &self.user {
            pbx.username.clone_from(user);
        }
        if let Some(secret) = &self.secret {
            pbx.secret = Some(Secret::new(secret));
        }
        match self.auth.as_deref() {
            Some("plain") => pbx.auth = AuthKind::Plain,
            Some(_) => pbx.auth = AuthKind::Md5,
            None => {}
        }
        pbx.tls |= self.tls;
        if let Some(url) = &self.ajam_url {
            pbx.ajam = Some(AjamConfig { url: url.clone() });
        }
        pbx
    }

    fn use_ajam(&self) -> bool {
        self.ajam || self.ajam_url.is_some()
    }
}

/// Starts a link and waits for its first login; a failed first attempt is an error (a
/// one-shot command should say what is wrong, not retry forever).
pub(crate) async fn connect(
    pbx: &PbxConfig,
    events: bool,
) -> anyhow::Result<(AmiClient, mpsc::Receiver<LinkEvent>, String)> {
    let mut config = ClientConfig::from_pbx(pbx)?;
    if !events {
        // Nobody reads events here; without this they would fill the queue and, under the
        // default block policy, stall the responses behind them.
        config.credentials.events = "off".to_owned();
    }
    let (client, mut rx) = AmiClient::start(config);
    match rx.recv().await {
        Some(LinkEvent::Connected { ami_version }) => Ok((client, rx, ami_version)),
        Some(LinkEvent::Disconnected { reason }) => bail!("{reason}"),
        Some(LinkEvent::Event(_)) | None => bail!("AMI link ended before login"),
    }
}

/// A logged-in connection for one command: the AMI link or an AJAM session.
enum Conn {
    Tcp(AmiClient),
    Ajam(AjamClient),
}

impl Conn {
    async fn open(pbx: &PbxConfig, ajam: bool) -> anyhow::Result<Conn> {
        if !ajam {
            return Ok(Conn::Tcp(connect(pbx, false).await?.0));
        }
        let Some(config) = &pbx.ajam else {
            bail!(
                "pbx '{}' has no [pbx.ajam] url (or pass --ajam-url)",
                pbx.name
            );
        };
        let client = AjamClient::new(
            &config.url,
            &pbx.username,
            pbx.secret_from_env()?,
            pbx.action_timeout,
        )?;
        client.login().await?;
        Ok(Conn::Ajam(client))
    }

    async fn send(&self, action: Action) -> anyhow::Result<ActionResult> {
        Ok(match self {
            Conn::Tcp(c) => c.send(action).await?,
            Conn::Ajam(c) => c.send(action).await?,
        })
    }

    async fn close(&self) {
        match self {
            Conn::Tcp(c) => c.shutdown().await,
            Conn::Ajam(c) => {
                if let Err(e) = c.logoff().await {
                    tracing::debug!(error = %e, "AJAM logoff failed");
                }
            }
        }
    }
}

async fn ping(pbx: &PbxConfig, ajam: bool) -> anyhow::Result<()> {
    let conn = Conn::open(pbx, ajam).await?;
    let start = Instant::now();
    let pong = conn.send(Action::ping()).await;
    let rtt = start.elapsed();
    let settings = conn.send(Action::core_settings()).await;
    conn.close().await;
    ensure_success("Ping", &pong?)?;
    let settings = settings?;
    let field = |k| settings.response.get(k).unwrap_or("unknown");
    match &pbx.ajam {
        Some(a) if ajam => println!("connected to {} as {}", a.url, pbx.username),
        _ => println!("connected to {} as {}", pbx.address(), pbx.username),
    }
    println!("AMI version:      {}", field("AMIversion"));
    println!("Asterisk version: {}", field("AsteriskVersion"));
    println!("Ping round trip:  {:.3} ms", rtt.as_secs_f64() * 1000.0);
    Ok(())
}

async fn action_once(
    pbx: &PbxConfig,
    ajam: bool,
    action: Action,
    json: bool,
) -> anyhow::Result<()> {
    let name = action.name().to_owned();
    let conn = Conn::open(pbx, ajam).await?;
    let result = conn.send(action).await;
    conn.close().await;
    let result = result?;
    let messages = std::iter::once(&result.response)
        .chain(&result.items)
        .chain(result.complete.as_ref());
    for m in messages {
        print_message(m, json, false)?;
    }
    ensure_success(&name, &result)
}

fn ensure_success(name: &str, result: &ActionResult) -> anyhow::Result<()> {
    if !result.is_success() {
        bail!(
            "{name} failed: {}",
            result.message().unwrap_or("no message")
        );
    }
    Ok(())
}

async fn events(
    pbx: &PbxConfig,
    ajam: bool,
    filter: &[(String, String)],
    pretty: bool,
) -> anyhow::Result<()> {
    let matches = |m: &Message| {
        filter
            .iter()
            .all(|(k, v)| m.get(k).is_some_and(|got| got.eq_ignore_ascii_case(v)))
    };
    let print = |m: &Message| -> anyhow::Result<()> {
        match print_message(m, true, pretty) {
            // A closed pipe is how `| head` says "enough", not a failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
            other => Ok(other?),
        }
    };
    let watched = if ajam {
        watch_ajam(Conn::open(pbx, true).await?, &matches, &print).await
    } else {
        watch_tcp(pbx, &matches, &print).await
    };
    match watched {
        Err(e) if e.is::<StdoutClosed>() => Ok(()),
        other => other,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("stdout closed")]
struct StdoutClosed;

async fn watch_tcp(
    pbx: &PbxConfig,
    matches: &dyn Fn(&Message) -> bool,
    print: &dyn Fn(&Message) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (client, mut rx, ami_version) = connect(pbx, true).await?;
    eprintln!("connected to {} (AMI {ami_version})", pbx.address());
    let result = loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(LinkEvent::Event(m)) if matches(&m) => {
                    if let Err(e) = print(&m) {
                        break Err(e);
                    }
                }
                Some(LinkEvent::Event(_)) => {}
                // The link reconnects by itself; say so, so gaps in the output are explained.
                Some(LinkEvent::Connected { ami_version }) => {
                    eprintln!("reconnected (AMI {ami_version})");
                }
                Some(LinkEvent::Disconnected { reason }) => eprintln!("disconnected: {reason}"),
                None => break Ok(()),
            },
            signal = tokio::signal::ctrl_c() => break signal.context("waiting for Ctrl-C"),
        }
    };
    client.shutdown().await;
    let stats = client.stats();
    eprintln!(
        "{} events received, {} dropped, {} undecodable inputs skipped",
        stats.events_delivered, stats.events_dropped, stats.malformed
    );
    result
}

/// AJAM has no push: poll with WaitEvent, which Asterisk holds open until events come.
async fn watch_ajam(
    conn: Conn,
    matches: &dyn Fn(&Message) -> bool,
    print: &dyn Fn(&Message) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let Conn::Ajam(client) = &conn else {
        bail!("not an AJAM connection");
    };
    let result = loop {
        tokio::select! {
            polled = client.wait_event(AJAM_POLL) => {
                let printed = polled
                    .map_err(anyhow::Error::from)
                    .and_then(|events| events.iter().filter(|m| matches(m)).try_for_each(print));
                if let Err(e) = printed {
                    break Err(e);
                }
            }
            signal = tokio::signal::ctrl_c() => break signal.context("waiting for Ctrl-C"),
        }
    };
    conn.close().await;
    result
}

/// Prints one message to stdout; an error means stdout is gone (e.g. `| head` exited).
fn print_message(m: &Message, json: bool, pretty: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match (json, pretty) {
        (true, true) => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&m.to_json()).unwrap_or_default()
        ),
        (true, false) => writeln!(out, "{}", m.to_json()),
        (false, _) => {
            let mut wire = Vec::new();
            m.encode(&mut wire);
            out.write_all(String::from_utf8_lossy(&wire).replace('\r', "").as_bytes())
        }
    }
}

async fn serve(pbx: &PbxConfig, args: &ServeArgs) -> anyhow::Result<()> {
    let transcript = Transcript::load(&args.file)?;
    let events = transcript.events().len();
    let secret = pbx.secret_from_env()?;
    let mut options = ReplayOptions::new(&pbx.username, secret.expose());
    options.pace = Duration::from_millis(args.pace_ms);
    options.faults = vec![args.fault];
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        options.tls = Some(server_tls(cert, key)?);
    }
    let listen = args.listen;
    let server = ReplayServer::start(listen, transcript, options)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!(
        "serving {} ({events} events) on {} for user {}",
        args.file.display(),
        server.local_addr(),
        pbx.username
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    for (i, c) in server.connections().iter().enumerate() {
        eprintln!(
            "connection {i}: login {:?}, {} actions, {} events sent",
            c.logged_in,
            c.actions.len(),
            c.events_sent.len()
        );
    }
    eprintln!("{} of {events} events sent", server.events_sent());
    Ok(())
}

/// rustls server settings from PEM files.
fn server_tls(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let open = |path: &Path| {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .with_context(|| format!("cannot read {}", path.display()))
    };
    let certs = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad PEM in {}", cert.display()))?;
    let key = rustls_pemfile::private_key(&mut open(key)?)
        .with_context(|| format!("bad PEM in {}", key.display()))?
        .with_context(|| format!("no private key in {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not fit together")?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_as_the_help_says() {
        let cases = [
            ("drop:40", Ok(Fault::Disconnect { after: 40 })),
            ("garbage:3", Ok(Fault::Garbage { after: 3 })),
            ("hold:9", Ok(Fault::Hold { after: 9 })),
            (
                "stall:5:2",
                Ok(Fault::Stall {
                    after: 5,
                    pause: Duration::from_secs(2),
                }),
            ),
            (
                "gap:30:20",
                Ok(Fault::Gap {
                    after: 30,
                    lost: 20,
                }),
            ),
            ("gap:30", Err(())),
            ("nap:1", Err(())),
        ];
        for (text, want) in cases {
            assert_eq!(parse_fault(text).map_err(|_| ()), want, "{text}");
        }
    }
}
