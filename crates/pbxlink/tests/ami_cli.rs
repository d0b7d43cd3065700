//! `pbxlink ami ...` end to end: the binary serves a real transcript with `ami serve`, and
//! `ami ping` / `ami action` talk to it over loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");
const BIN: &str = env!("CARGO_BIN_EXE_pbxlink");

/// `pbxlink ami serve` on a free port; killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(transcript: &str) -> Server {
        Server::start_with(transcript, &[])
    }

    fn start_with(transcript: &str, serve_args: &[&str]) -> Server {
        let path = format!("{FIXTURES}/asterisk-22/ami/{transcript}.rx.raw");
        let exists = std::path::Path::new(&path).exists();
        assert!(exists, "fixture missing: {path}");
        let mut child = Command::new(BIN)
            .args(["ami", "--user", "harness", "--secret", "harness-secret"])
            .args(["serve", &path, "--listen", "127.0.0.1:0"])
            .args(serve_args)
            .env_remove("PBXLINK_CONFIG")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "serving FILE (N events) on 127.0.0.1:PORT for user harness"
        let port = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("127.0.0.1:"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Server { child, port }
    }

    fn ami(&self, secret: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(["ami", "--port", &self.port.to_string(), "--user", "harness"])
            .args(["--host", "localhost"])
            .args(["--secret", secret])
            .args(args)
            .env_remove("PBXLINK_CONFIG")
            .output()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn ping_prints_versions_and_round_trip() {
    let server = Server::start("01_inbound_answered");
    let out = server.ami("harness-secret", &["ping"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..3],
        [
            format!("connected to localhost:{} as harness", server.port).as_str(),
            "AMI version:      11.0.0",
            "Asterisk version: 22.10.1",
        ]
    );
    assert!(lines[3].starts_with("Ping round trip:  "), "{text}");
}

#[test]
fn failed_login_says_who_and_where() {
    let server = Server::start("00c_login_failed");
    let out = server.ami("wrong", &["ping"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "authentication failed for user harness at localhost:{}: Authentication failed",
        server.port
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn action_prints_response_and_list_items() {
    // The queue list as recorded mid-call (a channel list would be the one before the call:
    // an actions-only login gets no events, so the served PBX stays where it starts).
    let server = Server::start("05_inbound_queue");
    let out = server.ami("harness-secret", &["action", "QueueStatus", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let kinds: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let kind = v.get("Event").or_else(|| v.get("Response")).unwrap();
            kind.as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Success",
            "QueueParams",
            "QueueMember",
            "QueueMember",
            "QueueEntry",
            "QueueStatusComplete"
        ]
    );

    let out = server.ami("harness-secret", &["action", "NoSuchAction", "Foo=bar"]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("Message: Invalid/unknown command"));
}

#[test]
fn tls_serve_and_ping_with_a_ca_file_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let file = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let cert_pem = file("cert.pem", cert.cert.pem());
    let key_pem = file("key.pem", cert.key_pair.serialize_pem());
    let config = file(
        "pbxlink.toml",
        format!("[[pbx]]\ntls = true\ntls_ca_file = \"{cert_pem}\"\n"),
    );
    let server = Server::start_with(
        "00b_login_md5",
        &["--tls-cert", &cert_pem, "--tls-key", &key_pem],
    );
    let out = server.ami("harness-secret", &["--config", &config, "ping"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("Asterisk version: 22.10.1"));

    // Without the CA, the self-signed certificate is refused.
    let out = server.ami("harness-secret", &["--tls", "ping"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TLS handshake: invalid peer certificate"),
        "{stderr}"
    );
}
