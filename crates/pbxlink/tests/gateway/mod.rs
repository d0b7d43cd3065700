//! The real binary running `pbxlink run` in demo mode, for black-box tests.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `pbxlink run` with no config (demo PBX) on a free port; killed when dropped, so a failing
/// test leaves nothing behind.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
    /// The API token it accepts.
    token: String,
    /// Its log (stderr) lines, as they come.
    log: Arc<Mutex<Vec<String>>>,
    // The data directory, when the gateway owns it (see `start_in`).
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts the gateway in demo mode in a fresh data directory, accepting `token`; checks
    /// that its log says, before the UI address, that this is demo data.
    pub fn start(token: &str) -> Gateway {
        Gateway::start_with(token, None)
    }

    /// Starts the gateway in a fresh data directory, accepting `token`, with `config` (TOML
    /// text) as its config file; with none it runs the demo, which its log must announce.
    pub fn start_with(token: &str, config: Option<&str>) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let mut gateway = Gateway::start_in(dir.path(), token, config);
        gateway._dir = Some(dir);
        gateway
    }

    /// Starts the gateway in `dir`, which outlives it: a second gateway started in the same
    /// directory finds the first one's database (restart tests).
    pub fn start_in(dir: &Path, token: &str, config: Option<&str>) -> Gateway {
        let mut child = run_command(dir, token, config)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut demo_announced = false;
        let mut startup = Vec::new();
        let base = log
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                demo_announced |= line.contains("DEMO MODE");
                let base = line
                    .strip_prefix("web UI: ")
                    .map(|base| base.trim_end_matches('/').to_owned());
                startup.push(line);
                base
            })
            .expect("pbxlink run never printed its web UI address");
        assert_eq!(
            demo_announced,
            config.is_none(),
            "the log must say when (and only when) this is demo data"
        );
        Gateway {
            child,
            base,
            token: token.to_owned(),
            // A gateway whose stderr pipe is full or closed is not the gateway users run.
            log: keep_reading(log, startup),
            _dir: None,
        }
    }

    /// Starts the gateway in `dir` like [`Gateway::start_in`] and kills it with SIGKILL
    /// `after` the spawn: a crash while it opens the journal, resumes calls or logs in.
    pub fn kill_while_starting(dir: &Path, token: &str, config: Option<&str>, after: Duration) {
        let mut child = run_command(dir, token, config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Ends the process with SIGKILL: no shutdown code runs, as in a crash or an OOM kill.
    pub fn kill_hard(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The log lines written so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Whether a log line so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// Sends SIGTERM (what `systemctl stop` and `docker stop` send) and waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.child.wait().unwrap()
    }

    /// Stops the process (SIGSTOP) until [`Gateway::resume`]: it reads nothing meanwhile, so
    /// the PBX's events pile up unread, as behind a stalled disk or an overloaded host.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name} failed");
    }

    /// GET `/api/v1/{path}` with its token, as JSON.
    pub async fn api(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/api/v1/{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Every journaled call, all pages of `/api/v1/calls`.
    pub async fn journal(&self) -> Vec<Value> {
        let mut calls = Vec::new();
        let mut path = "calls?limit=1000".to_owned();
        loop {
            let mut page = self.api(&path).await;
            if let Value::Array(more) = page["calls"].take() {
                calls.extend(more);
            }
            match page["next_cursor"].as_str() {
                Some(next) => path = format!("calls?limit=1000&cursor={next}"),
                None => return calls,
            }
        }
    }
}

/// `pbxlink [--config DIR/pbxlink.toml] run` in `dir` on a free port, accepting `token`.
fn run_command(dir: &Path, token: &str, config: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pbxlink"));
    if let Some(config) = config {
        let path = dir.join("pbxlink.toml");
        std::fs::write(&path, config).unwrap();
        command.arg("--config").arg(path);
    }
    command
        .args(["run", "--listen", "127.0.0.1:0", "--admin-token", token])
        .current_dir(dir)
        .env_remove("PBXLINK_CONFIG")
        .stdout(Stdio::null());
    command
}

/// Reads the rest of a child's log on a thread of its own, after the lines already read.
fn keep_reading(
    log: impl Iterator<Item = std::io::Result<String>> + Send + 'static,
    read: Vec<String>,
) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(read));
    let kept = Arc::clone(&lines);
    std::thread::spawn(move || {
        log.map_while(Result::ok)
            .for_each(|line| kept.lock().unwrap().push(line))
    });
    lines
}

/// Polls `check` every 100 ms until it gives a value; `limit` only bounds a hung test, it
/// asserts nothing about speed.
pub async fn eventually<T>(
    what: &str,
    limit: Duration,
    check: impl AsyncFnMut() -> Option<T>,
) -> T {
    within(limit, check)
        .await
        .unwrap_or_else(|| panic!("timed out waiting until {what}"))
}

/// Polls `check` every 100 ms for at most `limit`: its value, or None if it gave none.
pub async fn within<T>(limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `pbxlink simulate --listen` on a free port (user `admin`, secret `amp111`), killed when
/// dropped.
pub struct Simulator {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Simulator {
    /// Starts `pbxlink simulate --listen 127.0.0.1:0` with the extra `args`.
    pub fn start(args: &[&str]) -> Simulator {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pbxlink"))
            .args(["simulate", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("PBXLINK_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = log
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                let addr = line.strip_prefix("simulated Asterisk AMI on ")?;
                addr.rsplit(':').next()?.parse().ok()
            })
            .expect("pbxlink simulate never said where it listens");
        Simulator {
            child,
            port,
            log: keep_reading(log, Vec::new()),
        }
    }

    /// The `[[pbx]]` section that reaches this simulator, reconnecting within a second.
    pub fn pbx_config(&self, name: &str) -> String {
        format!(
            "[[pbx]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\n\
             username = \"admin\"\nsecret = \"amp111\"\nreconnect_max = 1\n",
            self.port
        )
    }

    /// Whether its log so far has the line `line` (`all calls ended`).
    pub fn said(&self, line: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l == line)
    }

    /// The PBX's clock: the virtual time (ms since the Unix epoch) of the last event it sent,
    /// from its answer to an AMI Ping on a connection of its own. The ground truth's call
    /// times are on this clock.
    pub fn clock_ms(&self) -> u64 {
        let out = Command::new(env!("CARGO_BIN_EXE_pbxlink"))
            .args([
                "ami",
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
            ])
            .args([
                "--user", "admin", "--secret", "amp111", "action", "Ping", "--json",
            ])
            .env_remove("PBXLINK_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pong: Value = serde_json::from_slice(&out.stdout).unwrap();
        let stamp = pong["Timestamp"].as_str().expect("a Pong has a Timestamp");
        let (secs, micros) = stamp.split_once('.').unwrap();
        secs.parse::<u64>().unwrap() * 1000 + micros.parse::<u64>().unwrap() / 1000
    }
}

/// `pbxlink ami serve`: a recorded (or generated) AMI transcript served like Asterisk would,
/// for user `pbxlink`, secret `PBXLINK_AMI_SECRET`=`replay-secret`. Killed when dropped.
pub struct AmiServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Drop for AmiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AmiServer {
    /// Serves `transcript` on `listen` (port 0: any), with the extra `ami serve` arguments.
    pub fn start(transcript: &Path, listen: &str, extra: &[&str]) -> AmiServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pbxlink"))
            .args(["ami", "--user", "pbxlink", "serve"])
            .arg(transcript)
            .args(["--listen", listen])
            .args(extra)
            .env_remove("PBXLINK_CONFIG")
            .env("PBXLINK_AMI_SECRET", "replay-secret")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = out.next().expect("ami serve printed nothing").unwrap();
        let addr = line
            .split(" on ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("unexpected ami serve banner: {line}"))
            .to_owned();
        AmiServer { child, addr }
    }

    /// The `[[pbx]]` section that reaches this server.
    pub fn pbx_config(&self, name: &str) -> String {
        let (host, port) = self.addr.rsplit_once(':').unwrap();
        format!(
            "[[pbx]]\nname = \"{name}\"\nhost = \"{host}\"\nport = {port}\n\
             username = \"pbxlink\"\nsecret = \"replay-secret\"\nreconnect_max = 1\n"
        )
    }
}
