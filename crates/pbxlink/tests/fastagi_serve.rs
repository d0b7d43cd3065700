//! `pbxlink agi serve` as a process: the recorded Asterisk 22 FastAGI session's environment
//! and replies played against it, config errors, and `pbxlink agi load` against it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use expect_test::{expect, Expect};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

fn fixture(name: &str) -> String {
    let path = PathBuf::from(FIXTURES)
        .join("asterisk-22/fastagi")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} is required: {e}", path.display()))
}

/// A `pbxlink agi serve` on a free port, killed on drop.
struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(config: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pbxlink.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pbxlink"))
            .arg("--config")
            .arg(&path)
            .args(["agi", "serve", "--listen", "127.0.0.1:0"])
            .env("PBXLINK_LOG", "warn")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "server exited");
            if let Some(addr) = line.trim().strip_prefix("FastAGI: listening on ") {
                break addr.to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Server {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Plays Asterisk: sends `env`, answers each command line with the next of `replies`;
    /// returns what the server sent before closing.
    fn session(&self, env: &str, replies: &[&str]) -> String {
        let stream = TcpStream::connect(&self.addr).unwrap();
        let mut writer = stream.try_clone().unwrap();
        writer.write_all(env.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut replies = replies.iter();
        let mut sent = String::new();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 {
            sent.push_str(&line);
            line.clear();
            writer
                .write_all(replies.next().unwrap_or(&"200 result=1\n").as_bytes())
                .unwrap();
        }
        sent
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CONFIG: &str = r#"
[agi]
fallback_target = "600"
budget_ms = 300
[agi.static.night]
PBXLINK_TARGET = "voicemail"
PBXLINK_ROUTE_STATUS = "night"
"#;

/// The recorded session's environment (`route?x=1` from 15551234567) and its replies.
fn recorded() -> (String, Vec<String>) {
    let rx = fixture("session_001.rx.raw");
    let (env, replies) = rx.split_once("\n\n").expect("environment block");
    let replies = replies.lines().map(|l| format!("{l}\n")).collect();
    (format!("{env}\n\n"), replies)
}

fn check(server: &Server, env: &str, replies: &[String], expect: Expect) {
    let replies: Vec<&str> = replies.iter().map(String::as_str).collect();
    expect.assert_eq(&server.session(env, &replies));
}

#[test]
fn recorded_environment_gets_the_builtin_scripts() {
    let server = Server::start(CONFIG);
    let (env, replies) = recorded();
    // No CRM connector is configured, so `route` answers with the fallback.
    check(
        &server,
        &env,
        &replies,
        expect![[r#"
            SET VARIABLE PBXLINK_TARGET 600
            SET VARIABLE PBXLINK_ROUTE_STATUS fallback
        "#]],
    );
    check(
        &server,
        &env.replace("route?x=1", "night"),
        &replies,
        expect![[r#"
            SET VARIABLE PBXLINK_ROUTE_STATUS night
            SET VARIABLE PBXLINK_TARGET voicemail
        "#]],
    );
    check(
        &server,
        &env.replace("route?x=1", "callerid"),
        &replies,
        expect![[r#"
            SET VARIABLE PBXLINK_CALLERID_STATUS fallback
        "#]],
    );
    check(
        &server,
        &env.replace("route?x=1", "webhook"),
        &replies,
        expect![[r#"
            VERBOSE "pbxlink FastAGI webhook: unknown FastAGI script 'webhook' (this server has: callerid, night, route)" 1
            SET VARIABLE PBXLINK_AGI_ERROR "unknown FastAGI script 'webhook' (this server has: callerid, night, route)"
        "#]],
    );
}

#[test]
fn bad_agi_config_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pbxlink.toml");
    for (config, expect) in [
        (
            "[agi]\nbudget_ms = 0\n",
            expect!["2:13: [agi] budget_ms must be > 0"],
        ),
        (
            "[agi]\nfallback_target = \"20 1\"\n",
            expect!["2:19: [agi] fallback_target '20 1' is not an extension"],
        ),
        (
            "[agi]\nbudget_ms = 5000\nsession_timeout = 2\n",
            expect!["3:19: [agi] session_timeout must be longer than budget_ms"],
        ),
        (
            "[agi]\nwebhook_url = \"not a url\"\n",
            expect!["2:15: [agi] webhook_url 'not a url': relative URL without a base"],
        ),
    ] {
        std::fs::write(&path, config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_pbxlink"))
            .arg("--config")
            .arg(&path)
            .args(["agi", "serve"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = stderr
            .lines()
            .find(|l| l.contains("[agi]"))
            .unwrap_or(&stderr);
        // `/tmp/.../pbxlink.toml:LINE:COL: message`: the place of the key, then the message.
        expect.assert_eq(
            message
                .split_once("pbxlink.toml:")
                .map_or(message, |(_, m)| m),
        );
    }
}

#[test]
fn load_generator_runs_against_the_server() {
    let server = Server::start(CONFIG);
    let out = Command::new(env!("CARGO_BIN_EXE_pbxlink"))
        .args([
            "agi",
            "load",
            "--connect",
            &server.addr,
            "--script",
            "night",
        ])
        .args([
            "--commands",
            "2",
            "--concurrency",
            "4",
            "--duration",
            "0.2",
            "--warmup",
            "0",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["sessions"].as_u64().unwrap() > 0, "{report}");
}
