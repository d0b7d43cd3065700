//! Operations, against the real binary: `pbxlink init` / `check-config`, JSON logs, and a
//! graceful stop on SIGTERM that finishes the CRM delivery in flight.

mod gateway;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use expect_test::expect;
use gateway::{AmiServer, Gateway};

fn pbxlink(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pbxlink"))
        .args(args)
        .current_dir(dir)
        .env_remove("PBXLINK_CONFIG")
        .env_remove("PBXLINK_AMI_SECRET")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn init_writes_a_config_that_check_config_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let init = pbxlink(&["init"], dir.path(), &[]);
    assert!(init.status.success(), "{}", text(&init.stderr));
    let written = std::fs::read_to_string(dir.path().join("pbxlink.toml")).unwrap();
    assert!(written.contains("secret_env = \"PBXLINK_AMI_SECRET\""));

    // Never overwritten by accident.
    let again = pbxlink(&["init"], dir.path(), &[]);
    assert!(!again.status.success());
    expect![[r#"
        Error: pbxlink.toml exists; keep it, or overwrite it with --force
    "#]]
    .assert_eq(&text(&again.stderr));
    assert!(pbxlink(&["init", "--force"], dir.path(), &[])
        .status
        .success());

    let ok = pbxlink(
        &["check-config"],
        dir.path(),
        &[("PBXLINK_AMI_SECRET", "s3cret")],
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).starts_with("pbxlink.toml: OK\n"));

    // The secret is an env reference: without it, the line that names it is shown.
    let missing = pbxlink(&["check-config", "pbxlink.toml"], dir.path(), &[]);
    assert_eq!(missing.status.code(), Some(1));
    expect![[r#"
        pbxlink.toml:40:14: pbx 'office': environment variable PBXLINK_AMI_SECRET (secret_env) is not set
           40 | secret_env = "PBXLINK_AMI_SECRET"    # environment variable holding the AMI secret
              |              ^
        pbxlink.toml: 1 problem(s)
    "#]]
    .assert_eq(&text(&missing.stderr));
}

/// A webhook receiver on loopback that answers each request after `delay`, telling the test
/// when a request has arrived (before answering) and when it has answered.
fn slow_receiver(delay: Duration) -> (String, mpsc::Receiver<&'static str>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            reader.read_exact(&mut vec![0; length]).unwrap();
            let _ = tx.send("arrived");
            std::thread::sleep(delay);
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
            let _ = tx.send("answered");
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_delivery_in_flight_and_exits_0() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");
    let transcript = Path::new(fixtures).join("asterisk-22-pjsip/ami/01_rg_answered.rx.raw");
    let ami = AmiServer::start(&transcript, "127.0.0.1:0", &[]);
    let (hook, receiver) = slow_receiver(Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[log]\nformat = \"json\"\n{}\n[[crm]]\nkind = \"webhook\"\nname = \"erp\"\nurl = \"{hook}\"\n",
        ami.pbx_config("office")
    );
    let mut gateway = Gateway::start_in(dir.path(), "t0ken", Some(&config));

    // The call ends, is journaled, and its webhook goes out; stop while it is on the wire.
    assert_eq!(
        receiver.recv_timeout(Duration::from_secs(30)),
        Ok("arrived")
    );
    let status = gateway.terminate();
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        receiver.try_recv(),
        Ok("answered"),
        "exited before the CRM answered"
    );

    // Every log line is a JSON object with a level and a message.
    let log = gateway.log();
    for line in log.iter().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
    assert!(
        log.iter()
            .any(|l| l.contains("deliveries in flight finished")),
        "{log:#?}"
    );

    let url = format!(
        "sqlite://{}?mode=rw",
        dir.path().join("data/pbxlink.db").display()
    );
    let store = store::Store::connect(&url).await.unwrap();
    let calls = store
        .list_calls(&Default::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(calls.calls.len(), 1);
    let rows = store
        .outbox_for_call("office", &calls.calls[0].record.id)
        .await
        .unwrap();
    // The first delivery finished; later ones wait (pending) for the next start.
    let statuses: Vec<_> = rows.iter().map(|r| format!("{:?}", r.status)).collect();
    assert_eq!(
        statuses.first().map(String::as_str),
        Some("Delivered"),
        "{statuses:?}"
    );
    assert!(statuses[1..].iter().all(|s| s == "Pending"), "{statuses:?}");
}
