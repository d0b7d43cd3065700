//! The real binary running `pbxlink run` in demo mode, for black-box tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// `pbxlink run` with no config (demo PBX) on a free port; killed when dropped, so a failing
/// test leaves nothing behind.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
    _dir: tempfile::TempDir,
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
        let mut command = Command::new(env!("CARGO_BIN_EXE_pbxlink"));
        if let Some(config) = config {
            let path = dir.path().join("pbxlink.toml");
            std::fs::write(&path, config).unwrap();
            command.arg("--config").arg(path);
        }
        let mut child = command
            .args(["run", "--listen", "127.0.0.1:0", "--admin-token", token])
            .current_dir(dir.path())
            .env_remove("PBXLINK_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut demo_announced = false;
        let base = log
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                demo_announced |= line.contains("DEMO MODE");
                Some(
                    line.strip_prefix("web UI: ")?
                        .trim_end_matches('/')
                        .to_owned(),
                )
            })
            .expect("pbxlink run never printed its web UI address");
        assert_eq!(
            demo_announced,
            config.is_none(),
            "the log must say when (and only when) this is demo data"
        );
        // Keep reading the log: a gateway whose stderr pipe is full or closed is not the
        // gateway users run.
        std::thread::spawn(move || log.for_each(drop));
        Gateway {
            child,
            base,
            _dir: dir,
        }
    }
}
