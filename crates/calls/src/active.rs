//! The calls in progress, as a live view shows them: folded from the tracker's call events
//! (of any number of PBXes), with every number each call has involved so far (what a live
//! stream filtered by extension needs).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::record::{CallEvent, CallEventKind, Direction};

/// A call in progress.
#[derive(Clone, Debug, Serialize)]
pub struct ActiveCall {
    /// Linkedid.
    pub id: String,
    /// The PBX it is on.
    pub pbx: String,
    /// Inbound, outbound or internal (as known at start).
    pub direction: Direction,
    /// Caller.
    pub from: Option<String>,
    /// Dialed number.
    pub to: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// `ringing` or `talking`.
    pub state: &'static str,
    /// Extensions ringing now.
    pub ringing: Vec<String>,
    /// Who answered (after a transfer: who talks now).
    pub answered_by: Option<String>,
    /// When it was answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// Every number the call has involved.
    #[serde(skip)]
    parties: BTreeSet<String>,
}

/// The calls in progress, by Linkedid.
#[derive(Debug, Default)]
pub struct ActiveCalls {
    calls: BTreeMap<String, ActiveCall>,
}

impl ActiveCalls {
    /// Applies one call event of `pbx`; returns every number the call has involved so far
    /// (for an ended call, up to its end).
    pub fn apply(&mut self, pbx: &str, event: &CallEvent) -> Vec<String> {
        let mentioned: Vec<&String> = match &event.kind {
            CallEventKind::Started { from, to, .. } => from.iter().chain(to).collect(),
            CallEventKind::Ringing { extensions } => extensions.iter().collect(),
            CallEventKind::Answered { by } => by.iter().collect(),
            CallEventKind::Transferred { transfer } => {
                transfer.from.iter().chain(&transfer.to).collect()
            }
            CallEventKind::Ended { .. } => Vec::new(),
        };
        let mut parties = self
            .calls
            .get(&event.call_id)
            .map(|c| c.parties.clone())
            .unwrap_or_default();
        parties.extend(mentioned.into_iter().cloned());
        match &event.kind {
            CallEventKind::Started {
                direction,
                from,
                to,
            } => {
                self.calls.insert(
                    event.call_id.clone(),
                    ActiveCall {
                        id: event.call_id.clone(),
                        pbx: pbx.to_owned(),
                        direction: *direction,
                        from: from.clone(),
                        to: to.clone(),
                        started_at: event.at,
                        state: "ringing",
                        ringing: Vec::new(),
                        answered_by: None,
                        answered_at: None,
                        parties: BTreeSet::new(),
                    },
                );
            }
            CallEventKind::Ringing { extensions } => {
                if let Some(call) = self.calls.get_mut(&event.call_id) {
                    call.ringing.clone_from(extensions);
                }
            }
            CallEventKind::Answered { by } => {
                if let Some(call) = self.calls.get_mut(&event.call_id) {
                    call.state = "talking";
                    call.ringing.clear();
                    call.answered_by.clone_from(by);
                    call.answered_at = Some(event.at);
                }
            }
            CallEventKind::Transferred { transfer } => {
                if let Some(call) = self.calls.get_mut(&event.call_id) {
                    call.answered_by.clone_from(&transfer.to);
                }
            }
            CallEventKind::Ended { .. } => {
                self.calls.remove(&event.call_id);
            }
        }
        if let Some(call) = self.calls.get_mut(&event.call_id) {
            call.parties.clone_from(&parties);
        }
        parties.into_iter().collect()
    }

    /// The call `id`, if in progress.
    pub fn get(&self, id: &str) -> Option<&ActiveCall> {
        self.calls.get(id)
    }

    /// The calls in progress, by Linkedid.
    pub fn iter(&self) -> impl Iterator<Item = &ActiveCall> {
        self.calls.values()
    }

    /// How many calls are in progress.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// No call in progress.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Disposition, Transfer, TransferKind};
    use expect_test::expect;

    #[test]
    fn a_call_is_shown_from_its_start_to_its_end_with_every_party_it_involved() {
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        let event = |s, kind| CallEvent {
            call_id: "9.1".into(),
            at: at(s),
            kind,
        };
        let mut active = ActiveCalls::default();
        let mut out = Vec::new();
        let transfer = Transfer {
            kind: TransferKind::Blind,
            from: Some("201".into()),
            to: Some("202".into()),
            at: at(3),
        };
        for e in [
            event(
                0,
                CallEventKind::Started {
                    direction: Direction::Inbound,
                    from: Some("15551234567".into()),
                    to: Some("15550001000".into()),
                },
            ),
            event(
                1,
                CallEventKind::Ringing {
                    extensions: vec!["201".into()],
                },
            ),
            event(
                2,
                CallEventKind::Answered {
                    by: Some("201".into()),
                },
            ),
            event(3, CallEventKind::Transferred { transfer }),
            event(
                4,
                CallEventKind::Ended {
                    disposition: Disposition::Answered,
                },
            ),
        ] {
            let parties = active.apply("office", &e);
            let shown = active.get("9.1").map_or("gone".to_owned(), |c| {
                format!("{} by {}", c.state, c.answered_by.as_deref().unwrap_or("-"))
            });
            out.push(format!("{shown}; parties {}", parties.join(",")));
        }
        expect![[r#"
            ringing by -; parties 15550001000,15551234567
            ringing by -; parties 15550001000,15551234567,201
            talking by 201; parties 15550001000,15551234567,201
            talking by 202; parties 15550001000,15551234567,201,202
            gone; parties 15550001000,15551234567,201,202"#]]
        .assert_eq(&out.join("\n"));
    }
}
