//! What the PBX says of its endpoints, read at login and after a reload: each one's
//! configured caller ID, from which the tracker tells phones from trunks
//! ([`calls::Directory`]). The PBX answers with lists; this reads them, nothing more.

use ami::{Action, Message};

use crate::ami_client::AmiClient;

/// Per channel driver: the action that names the endpoints, the one that details one, and
/// the field that names it. PJSIP everywhere; chan_sip up to Asterisk 20 (a PBX without it
/// answers an error, which is no endpoints).
const DRIVERS: [(&str, &str, &str); 2] = [
    ("PJSIPShowEndpoints", "PJSIPShowEndpoint", "Endpoint"),
    ("SIPpeers", "SIPshowpeer", "Peer"),
];

/// Every endpoint's configuration as the PBX lists it: `EndpointDetail` events (PJSIP) and
/// `SIPshowpeer` answers (chan_sip), for [`calls::Tracker::handle`]. The details are asked
/// for all at once: one round trip, not one per endpoint.
pub async fn read(client: &AmiClient, pbx: &str) -> Vec<Message> {
    let mut details = Vec::new();
    for (list, detail, key) in DRIVERS {
        let names: Vec<String> = match client.send(Action::new(list)).await {
            Ok(result) => result
                .items
                .iter()
                .filter_map(|item| item.get("ObjectName"))
                .map(str::to_owned)
                .collect(),
            Err(e) => {
                tracing::warn!(pbx, action = list, error = %e, "cannot list endpoints");
                continue;
            }
        };
        let answers = names
            .iter()
            .map(|name| client.send(Action::new(detail).field(key, name)));
        for answer in futures::future::join_all(answers).await {
            match answer {
                Ok(result) => {
                    details.extend(std::iter::once(result.response).chain(result.items).filter(
                        |m| m.event() == Some("EndpointDetail") || m.get("Channeltype").is_some(),
                    ))
                }
                Err(e) => {
                    tracing::warn!(pbx, action = detail, error = %e, "cannot read an endpoint");
                }
            }
        }
    }
    details
}
