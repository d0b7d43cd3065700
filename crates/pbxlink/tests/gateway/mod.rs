//! The real binary running `pbxlink run` in demo mode, for black-box tests.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// `pbxlink run` with no config (demo PBX) on a free port; killed when dropped, so a failing
/// test leaves nothing behind.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
    /// Its log (stderr) lines, as they come.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
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
        let mut command = Command::new(env!("CARGO_BIN_EXE_pbxlink"));
        if let Some(config) = config {
            let path = dir.join("pbxlink.toml");
            std::fs::write(&path, config).unwrap();
            command.arg("--config").arg(path);
        }
        let mut child = command
            .args(["run", "--listen", "127.0.0.1:0", "--admin-token", token])
            .current_dir(dir)
            .env_remove("PBXLINK_CONFIG")
            .stdout(Stdio::null())
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
        // Keep reading the log: a gateway whose stderr pipe is full or closed is not the
        // gateway users run.
        let lines = std::sync::Arc::new(std::sync::Mutex::new(startup));
        let kept = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            log.map_while(Result::ok)
                .for_each(|line| kept.lock().unwrap().push(line))
        });
        Gateway {
            child,
            base,
            log: lines,
            _dir: None,
        }
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

    /// Sends SIGTERM (what `systemctl stop` and `docker stop` send) and waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        self.child.wait().unwrap()
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
