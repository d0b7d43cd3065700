//! A minimal PBX for tests (here and in crates above, with the `testing` feature): an AMI server that accepts one connection, answers every
//! action with success (`CoreShowChannels` with the channels it was given), and keeps every
//! action it was sent; and a link to it. Also `[pbx.cdr]` for a fixture's real CDR.

use std::sync::{Arc, Mutex};

use ami::Message;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ami_client::{AmiClient, ClientConfig};

/// A channel `CoreShowChannels` lists: (channel, Uniqueid, Linkedid).
pub type Channel = (&'static str, &'static str, &'static str);

/// Every action the PBX was sent, in order.
pub type Actions = Arc<Mutex<Vec<Message>>>;

/// Starts the PBX and a logged-in link to it (its events drained: nobody tracks here).
pub async fn start(channels: &'static [Channel]) -> (AmiClient, Actions) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let actions = Actions::default();
    let seen = actions.clone();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        sock.write_all(b"Asterisk Call Manager/11.0.0\r\n")
            .await
            .unwrap();
        let mut decoder = ami::Decoder::without_banner();
        let mut buf = BytesMut::new();
        while sock.read_buf(&mut buf).await.unwrap_or(0) > 0 {
            while let Ok(Some(ami::Frame::Message(action))) = decoder.decode(&mut buf) {
                let id = action.action_id().unwrap_or_default().to_owned();
                let mut out = format!("Response: Success\r\nActionID: {id}\r\n");
                if action.action() == Some("CoreShowChannels") {
                    out.push_str("EventList: start\r\n\r\n");
                    for (channel, uniqueid, linkedid) in channels {
                        out.push_str(&format!(
                            "Event: CoreShowChannel\r\nActionID: {id}\r\nChannel: {channel}\r\n\
                             Uniqueid: {uniqueid}\r\nLinkedid: {linkedid}\r\n\r\n"
                        ));
                    }
                    out.push_str(&format!(
                        "Event: CoreShowChannelsComplete\r\nActionID: {id}\r\n\
                         EventList: Complete\r\nListItems: {}\r\n\r\n",
                        channels.len()
                    ));
                } else {
                    out.push_str("\r\n");
                }
                seen.lock().unwrap().push(action);
                sock.write_all(out.as_bytes()).await.unwrap();
            }
        }
    });
    let text = format!(
        "name = \"pbx\"\nhost = \"{}\"\nport = {}\nusername = \"u\"\nsecret = \"s\"\n\
         auth = \"plain\"\nping_interval = 3600\n",
        addr.ip(),
        addr.port()
    );
    let pbx: crate::PbxConfig = toml::from_str(&text).unwrap();
    let (client, mut events) = AmiClient::start(ClientConfig::from_pbx(&pbx).unwrap());
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    (client, actions)
}

/// The actions named `wanted` (all but the link's login and resync when empty), one line
/// each: `Key=Value` fields, ActionID left out.
pub fn sent(actions: &Actions, wanted: &[&str]) -> Vec<String> {
    let link_own = ["Login", "CoreShowChannels"];
    actions
        .lock()
        .unwrap()
        .iter()
        .filter(|a| {
            let name = a.action().unwrap_or_default();
            if wanted.is_empty() {
                !link_own.contains(&name)
            } else {
                wanted.contains(&name)
            }
        })
        .map(fields)
        .collect()
}

/// `Key=Value` fields of an AMI message, its ActionID left out.
pub fn fields(m: &Message) -> String {
    m.iter()
        .filter(|(k, _)| *k != "ActionID")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

/// `[pbx.cdr]` for the cdr_custom Master.csv of a fixture's real Asterisk, with the
/// columns of its cdr_custom.conf mapping.
pub fn cdr_fixture_config(fixture: &str) -> crate::cdr::CdrConfig {
    let dir = format!("{FIXTURES}/{fixture}");
    let conf = std::fs::read_to_string(format!("{dir}/config/pbx/cdr_custom.conf")).unwrap();
    let mapping = conf.lines().find(|l| l.starts_with("Master.csv")).unwrap();
    let columns: Vec<String> = mapping
        .split("CDR(")
        .skip(1)
        .map(|s| s.split(')').next().unwrap().to_owned())
        .collect();
    let config: crate::cdr::CdrConfig = toml::from_str(&format!(
        "kind = \"csv\"\npath = \"{dir}/cdr/cdr-custom.Master.csv\"\ncolumns = {columns:?}"
    ))
    .unwrap();
    assert_eq!(config.problems(), []);
    config
}
