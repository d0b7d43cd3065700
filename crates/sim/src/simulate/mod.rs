//! The simulated Asterisk/FreePBX (`pbxlink simulate`, demo mode). A deterministic generator
//! of realistic AMI call traffic (demo mode, load source, ground truth for the tracker) and an
//! AMI server that streams it and answers the actions a CRM gateway sends. The command line
//! (`SimulateArgs`) is the binary's; this is what it drives.

mod call;
mod cdr_csv;
mod directory;
mod generator;
mod local;
pub mod mixmonitor;
mod scenario;
mod server;
mod story;
mod style;
mod wire;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

pub use generator::{Generator, Options};
pub use scenario::Scenario;
pub use server::{start, ServerOptions, SimulatorHandle};
pub use style::Style;

/// What a written transcript holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    pub calls: usize,
    pub events: usize,
    pub bytes: usize,
}

impl std::fmt::Display for WriteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} calls, {} events, {} bytes",
            self.calls, self.events, self.bytes
        )
    }
}

/// Runs `gen` to the end: the wire bytes to `file` (banner first, like an rx.raw) and one
/// ground-truth JSON line per call to `file.truth.jsonl`.
pub fn write_transcript(mut gen: Generator, file: &Path) -> anyhow::Result<WriteStats> {
    let open = |p: &Path| -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
        Ok(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        ))
    };
    let mut raw = open(file)?;
    let mut truth = open(&truth_path(file))?;
    let banner = gen.directory().style.banner();
    raw.write_all(banner.as_bytes())?;
    let mut stats = WriteStats {
        calls: 0,
        events: 0,
        bytes: banner.len(),
    };
    let mut buf = Vec::new();
    while let Some((_, m)) = gen.next_event() {
        buf.clear();
        m.encode(&mut buf);
        raw.write_all(&buf)?;
        stats.events += 1;
        stats.bytes += buf.len();
        for t in gen.take_finished() {
            serde_json::to_writer(&mut truth, &t)?;
            truth.write_all(b"\n")?;
            stats.calls += 1;
        }
    }
    raw.flush()?;
    truth.flush()?;
    Ok(stats)
}

/// `FILE.truth.jsonl` beside `FILE`.
pub fn truth_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".truth.jsonl");
    PathBuf::from(name)
}

/// "201-220,300" -> ["201", ..., "220", "300"].
pub fn parse_extensions(spec: &str) -> anyhow::Result<Vec<String>> {
    let mut exts = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (u32, u32) = (
            lo.trim()
                .parse()
                .with_context(|| format!("bad extension {lo:?}"))?,
            hi.trim()
                .parse()
                .with_context(|| format!("bad extension {hi:?}"))?,
        );
        if hi < lo || hi - lo > 10_000 {
            bail!("bad extension range {part:?}");
        }
        exts.extend((lo..=hi).map(|e| e.to_string()));
    }
    if exts.is_empty() {
        bail!("no extensions in {spec:?}");
    }
    Ok(exts)
}

/// "inbound_ext=5,queue=2" -> weights; scenarios not named get 0.
pub fn parse_mix(spec: &str) -> anyhow::Result<Vec<(Scenario, u32)>> {
    let mut mix = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
        let Some(s) = Scenario::from_name(name.trim()) else {
            let known: Vec<&str> = Scenario::DEFAULT_MIX
                .iter()
                .map(|(s, _)| s.name())
                .collect();
            bail!("unknown scenario {name:?}; known: {}", known.join(", "));
        };
        mix.push((
            s,
            weight
                .trim()
                .parse()
                .with_context(|| format!("bad weight in {part:?}"))?,
        ));
    }
    if mix.iter().all(|(_, w)| *w == 0) {
        bail!("the mix {spec:?} has no positive weight");
    }
    Ok(mix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(actual: impl std::fmt::Debug, expected: Expect) {
        expected.assert_eq(&format!("{actual:?}"));
    }

    #[test]
    fn extension_specs() {
        check(
            parse_extensions("201-203, 300"),
            expect![[r#"Ok(["201", "202", "203", "300"])"#]],
        );
        check(
            parse_extensions("205-201").map_err(|e| e.to_string()),
            expect![[r#"Err("bad extension range \"205-201\"")"#]],
        );
        check(
            parse_extensions("2x1").map_err(|e| e.to_string()),
            expect![[r#"Err("bad extension \"2x1\"")"#]],
        );
        check(
            parse_extensions(" , ").map_err(|e| e.to_string()),
            expect![[r#"Err("no extensions in \" , \"")"#]],
        );
    }

    #[test]
    fn mix_specs() {
        check(
            parse_mix("queue=3,pickup"),
            expect![[r#"Ok([(Queue, 3), (Pickup, 1)])"#]],
        );
        check(
            parse_mix("queue=0").map_err(|e| e.to_string()),
            expect![[r#"Err("the mix \"queue=0\" has no positive weight")"#]],
        );
        let unknown = parse_mix("fax=1").map_err(|e| e.to_string());
        assert!(
            unknown.is_err_and(|e| e.starts_with("unknown scenario \"fax\"; known: inbound_ext, "))
        );
    }

    /// One call of every scenario (seed 1) on a PBX of `style`: its size and its ground
    /// truth, minus the ids.
    fn one_call_of_each(style: Style) -> String {
        let mut out = String::new();
        for (scenario, _) in Scenario::DEFAULT_MIX {
            let opts = Options {
                mix: vec![(scenario, 1)],
                duration_secs: Some(0.001),
                extensions: parse_extensions("201-205").unwrap(),
                style,
                ..Options::default()
            };
            let mut gen = Generator::new(opts);
            let (mut events, mut noise) = (0, 0);
            while let Some((_, m)) = gen.next_event() {
                events += 1;
                noise += usize::from(matches!(m.event(), Some("VarSet" | "Newexten")));
            }
            let t = gen.take_finished().remove(0);
            let transfers: Vec<String> = t
                .transfers
                .iter()
                .map(|x| format!("{:?} {}->{}", x.kind, x.from, x.to))
                .collect();
            out.push_str(&format!(
                "{}: {events} events ({}% noise) {:?} {}->{} {:?} by {:?} rang {:?} {transfers:?} ring {}s talk {}s\n",
                t.scenario,
                noise * 100 / events,
                t.direction,
                t.from,
                t.to,
                t.disposition,
                t.answered_by,
                t.rang,
                t.ring_seconds_approx,
                t.talk_seconds_approx,
            ));
        }
        out
    }

    #[test]
    fn one_call_of_each_scenario() {
        expect![[r#"
            inbound_ext: 238 events (70% noise) Inbound 18884127827->15550000204 Answered by Some("204") rang ["204"] [] ring 8s talk 45s
            inbound_ext_noanswer: 192 events (88% noise) Inbound 18884127827->15550000204 NoAnswer by None rang ["204"] [] ring 18s talk 0s
            inbound_ext_cancel: 164 events (86% noise) Inbound 18884127827->15550000204 Cancelled by None rang ["204"] [] ring 8s talk 0s
            inbound_ext_busy: 178 events (86% noise) Inbound 18884127827->15550000204 Busy by None rang ["204"] [] ring 2s talk 0s
            inbound_dnd: 118 events (92% noise) Inbound 18884127827->15550000204 Busy by None rang [] [] ring 2s talk 0s
            ring_group: 401 events (73% noise) Inbound 14128260183->15550001008 Answered by Some("201") rang ["201", "204"] [] ring 4s talk 21s
            ring_group_noanswer: 350 events (80% noise) Inbound 14128260183->15550001008 NoAnswer by None rang ["201", "204"] [] ring 14s talk 0s
            queue: 508 events (67% noise) Inbound 14128260183->15550001007 Answered by Some("204") rang ["202", "201", "204"] [] ring 15s talk 46s
            queue_abandon: 431 events (75% noise) Inbound 14128260183->15550001007 NoAnswer by None rang ["202", "201", "204"] [] ring 15s talk 0s
            ivr_queue: 419 events (67% noise) Inbound 14128260183->15550001003 Answered by Some("201") rang ["202", "201"] [] ring 13s talk 46s
            ivr_ext: 238 events (78% noise) Inbound 18884127827->15550001003 Answered by Some("201") rang ["201"] [] ring 14s talk 18s
            outbound: 205 events (55% noise) Outbound 204->18884127827 Answered by Some("18884127827") rang [] [] ring 9s talk 79s
            outbound_noanswer: 128 events (82% noise) Outbound 204->18884127827 NoAnswer by None rang [] [] ring 22s talk 0s
            internal: 240 events (58% noise) Internal 204->205 Answered by Some("205") rang ["205"] [] ring 9s talk 80s
            internal_busy: 158 events (80% noise) Internal 204->205 Busy by None rang ["205"] [] ring 2s talk 0s
            click_to_call: 161 events (70% noise) Outbound 204->18884127827 Answered by Some("18884127827") rang ["204"] [] ring 6s talk 10s
            pickup: 242 events (68% noise) Inbound 18884127827->15550000204 Answered by Some("203") rang ["204"] [] ring 8s talk 45s
            call_forward: 293 events (80% noise) Inbound 18884127827->15550000204 Answered by Some("16155183758") rang [] [] ring 5s talk 12s
            blind_transfer: 361 events (71% noise) Inbound 18884127827->15550000204 Answered by Some("204") rang ["204", "203"] ["Blind 204->203"] ring 8s talk 58s
            attended_transfer: 373 events (59% noise) Inbound 18884127827->15550000204 Answered by Some("204") rang ["204", "203"] ["Attended 204->203"] ring 8s talk 75s
            conference: 98 events (78% noise) Inbound 18262148726->15550001006 Answered by Some("8000") rang [] [] ring 0s talk 15s
            local_inbound: 119 events (57% noise) Inbound 14128260183->15550001000 Answered by Some("205") rang ["205"] [] ring 6s talk 63s
            local_inbound_noanswer: 97 events (57% noise) Inbound 14128260183->15550001000 NoAnswer by None rang ["205"] [] ring 24s talk 0s
            local_inbound_busy: 93 events (56% noise) Inbound 14128260183->15550001000 Busy by None rang ["205"] [] ring 4s talk 0s
            local_click_to_call: 99 events (49% noise) Outbound 205->14128260183 Answered by Some("14128260183") rang ["205"] [] ring 8s talk 38s
        "#]].assert_eq(&one_call_of_each(Style::FREEPBX));
    }

    /// The same calls on a bare Asterisk: the same parties and outcomes, far less dialplan
    /// noise (times differ where FreePBX's dialplan drew random numbers a bare one does not).
    #[test]
    fn one_bare_call_of_each_scenario() {
        expect![[r#"
            inbound_ext: 114 events (38% noise) Inbound 18884127827->15550000204 Answered by Some("204") rang ["204"] [] ring 8s talk 45s
            inbound_ext_noanswer: 54 events (57% noise) Inbound 18884127827->15550000204 NoAnswer by None rang ["204"] [] ring 18s talk 0s
            inbound_ext_cancel: 44 events (50% noise) Inbound 18884127827->15550000204 Cancelled by None rang ["204"] [] ring 8s talk 0s
            inbound_ext_busy: 48 events (50% noise) Inbound 18884127827->15550000204 Busy by None rang ["204"] [] ring 2s talk 0s
            inbound_dnd: 15 events (40% noise) Inbound 18884127827->15550000204 Busy by None rang [] [] ring 2s talk 0s
            ring_group: 105 events (43% noise) Inbound 14128260183->15550001008 Answered by Some("201") rang ["201", "204"] [] ring 4s talk 12s
            ring_group_noanswer: 71 events (45% noise) Inbound 14128260183->15550001008 NoAnswer by None rang ["201", "204"] [] ring 13s talk 0s
            queue: 221 events (34% noise) Inbound 14128260183->15550001007 Answered by Some("204") rang ["202", "201", "204"] [] ring 15s talk 21s
            queue_abandon: 164 events (34% noise) Inbound 14128260183->15550001007 NoAnswer by None rang ["202", "201", "204"] [] ring 15s talk 0s
            ivr_queue: 248 events (33% noise) Inbound 14128260183->15550001003 Answered by Some("204") rang ["202", "201", "204"] [] ring 19s talk 46s
            ivr_ext: 100 events (49% noise) Inbound 18884127827->15550001003 Answered by Some("201") rang ["201"] [] ring 14s talk 18s
            outbound: 123 events (34% noise) Outbound 204->18884127827 Answered by Some("18884127827") rang [] [] ring 9s talk 63s
            outbound_noanswer: 45 events (51% noise) Outbound 204->18884127827 NoAnswer by None rang [] [] ring 22s talk 0s
            internal: 142 events (30% noise) Internal 204->205 Answered by Some("205") rang ["205"] [] ring 9s talk 80s
            internal_busy: 54 events (42% noise) Internal 204->205 Busy by None rang ["205"] [] ring 4s talk 0s
            click_to_call: 115 events (37% noise) Outbound 204->18884127827 Answered by Some("18884127827") rang ["204"] [] ring 6s talk 44s
            pickup: 122 events (36% noise) Inbound 18884127827->15550000204 Answered by Some("203") rang ["204"] [] ring 8s talk 45s
            call_forward: 124 events (50% noise) Inbound 18884127827->15550000204 Answered by Some("16155183758") rang [] [] ring 5s talk 18s
            blind_transfer: 188 events (37% noise) Inbound 18884127827->15550000204 Answered by Some("204") rang ["204", "203"] ["Blind 204->203"] ring 8s talk 80s
            attended_transfer: 206 events (28% noise) Inbound 18884127827->15550000204 Answered by Some("204") rang ["204", "203"] ["Attended 204->203"] ring 8s talk 71s
            conference: 39 events (46% noise) Inbound 18262148726->15550001006 Answered by Some("8000") rang [] [] ring 0s talk 11s
            local_inbound: 119 events (57% noise) Inbound 14128260183->15550001000 Answered by Some("205") rang ["205"] [] ring 6s talk 63s
            local_inbound_noanswer: 97 events (57% noise) Inbound 14128260183->15550001000 NoAnswer by None rang ["205"] [] ring 24s talk 0s
            local_inbound_busy: 93 events (56% noise) Inbound 14128260183->15550001000 Busy by None rang ["205"] [] ring 4s talk 0s
            local_click_to_call: 99 events (49% noise) Outbound 205->14128260183 Answered by Some("14128260183") rang ["205"] [] ring 8s talk 38s
        "#]].assert_eq(&one_call_of_each(Style::BARE));
    }

    /// Once every call ended, no channel is left up for CoreShowChannels to list: Dial's
    /// result VarSets that follow a caller's Hangup do not bring it back.
    #[test]
    fn no_channel_outlives_its_call() {
        let opts = Options {
            calls_per_second: 2.0,
            duration_secs: Some(120.0),
            ..Options::default()
        };
        let mut gen = Generator::new(opts);
        while gen.next_event().is_some() {}
        let left: Vec<&str> = gen.live().map(|l| l.chan.name.as_str()).collect();
        assert!(left.is_empty(), "channels left up: {left:?}");
    }

    /// A call's truth spans its events: `started_ms` is its first event's time (a
    /// click-to-call's too, whose ring time starts later), `ended_ms` its last one's.
    #[test]
    fn truth_times_are_the_first_and_last_event() {
        let opts = Options {
            calls_per_second: 2.0,
            duration_secs: Some(60.0),
            ..Options::default()
        };
        let mut gen = Generator::new(opts);
        let mut spans: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        let mut truths = Vec::new();
        while let Some((t, m)) = gen.next_event() {
            if let Some(id) = m.get("Linkedid") {
                spans.entry(id.to_owned()).or_insert((t, t)).1 = t;
            }
            truths.extend(gen.take_finished());
        }
        let wrong: Vec<String> = truths
            .iter()
            .filter(|t| {
                spans
                    .get(&t.linkedid)
                    .is_none_or(|&(first, last)| t.started_ms != first || t.ended_ms < last)
            })
            .map(|t| {
                format!(
                    "{} {}: {:?}",
                    t.scenario,
                    t.linkedid,
                    spans.get(&t.linkedid)
                )
            })
            .collect();
        assert!(!truths.is_empty() && wrong.is_empty(), "{wrong:#?}");
    }

    /// What the AMI actions change: DND (busy, no ringing), CF (the external number answers),
    /// paused queue members (not rung).
    #[test]
    fn astdb_and_queue_pause_change_the_calls() {
        let run = |mix: Scenario, setup: &dyn Fn(&mut directory::PbxState)| {
            let opts = Options {
                mix: vec![(mix, 1)],
                duration_secs: Some(0.001),
                extensions: vec!["201".into()],
                ..Options::default()
            };
            let mut gen = Generator::new(opts);
            setup(gen.state_mut());
            while gen.next_event().is_some() {}
            let t = gen.take_finished().remove(0);
            format!(
                "{} {:?} by {:?} rang {:?}",
                t.scenario, t.disposition, t.answered_by, t.rang
            )
        };
        let dnd = run(Scenario::InboundExt, &|s| {
            s.astdb.insert("DND/201".into(), "YES".into());
        });
        let cf = run(Scenario::Internal, &|s| {
            s.astdb.insert("CF/201".into(), "15557654321".into());
        });
        let paused = run(Scenario::Queue, &|s| {
            for q in ["600", "601"] {
                s.paused.insert((q.into(), "Local/201@from-queue/n".into()));
            }
        });
        check(
            [dnd, cf, paused],
            expect![[
                r#"["inbound_ext Busy by None rang []", "internal Answered by Some(\"15557654321\") rang []", "queue NoAnswer by None rang []"]"#
            ]],
        );
    }

    /// AMI BlindTransfer, Atxfer and Redirect on a live two-party call: the call is regenerated from
    /// then on, its truth gains the transfer, and the tracker agrees with that truth.
    #[test]
    fn blind_transfer_and_redirect_actions_reshape_the_call() {
        let mut out = Vec::new();
        for how in [
            generator::TransferAction::Blind,
            generator::TransferAction::Attended,
            generator::TransferAction::Redirect,
        ] {
            let redirect = how == generator::TransferAction::Redirect;
            let opts = Options {
                mix: vec![(Scenario::InboundExt, 1)],
                duration_secs: Some(0.001),
                extensions: parse_extensions("201-203").unwrap(),
                ..Options::default()
            };
            let mut gen = Generator::new(opts);
            let mut tracker = calls::Tracker::new(calls::TrackerConfig::default());
            let feed = |tracker: &mut calls::Tracker, t: u64, m: &ami::Message| {
                tracker.handle(
                    chrono::DateTime::from_timestamp_millis(t as i64).unwrap(),
                    m,
                );
            };
            // Run until the phone is bridged with the caller, then transfer.
            let (phone, caller) = loop {
                let (t, m) = gen.next_event().unwrap();
                feed(&mut tracker, t, &m);
                let bridged: Vec<&generator::LiveChan> =
                    gen.live().filter(|l| !l.bridge.is_empty()).collect();
                if let [a, z] = bridged[..] {
                    let (phone, caller) = if a.chan.name.starts_with("PJSIP/carrier") {
                        (z, a)
                    } else {
                        (a, z)
                    };
                    break (phone.chan.name.clone(), caller.chan.name.clone());
                }
            };
            let to = ["201", "202", "203"]
                .into_iter()
                .find(|e| !phone.contains(e))
                .unwrap();
            let target = if redirect { &caller } else { &phone };
            assert!(
                !gen.transfer(target, "999", how),
                "unknown extension must be refused"
            );
            assert!(gen.transfer(target, to, how));
            while let Some((t, m)) = gen.next_event() {
                feed(&mut tracker, t, &m);
            }
            let truth = gen.take_finished().remove(0);
            let record = tracker.poll_record().expect("the tracker ended the call");
            let record_transfers: Vec<(calls::TransferKind, Option<String>, Option<String>)> =
                record
                    .transfers
                    .iter()
                    .map(|x| (x.kind, x.from.clone(), x.to.clone()))
                    .collect();
            let truth_transfers: Vec<(calls::TransferKind, Option<String>, Option<String>)> = truth
                .transfers
                .iter()
                .map(|x| (x.kind, Some(x.from.clone()), Some(x.to.clone())))
                .collect();
            out.push(format!("{how:?}: truth {truth_transfers:?} rang {:?}; tracker {record_transfers:?} rang {:?}", truth.rang, record.rang));
        }
        check(
            out,
            expect![[
                r#"["Blind: truth [(Blind, Some(\"202\"), Some(\"201\"))] rang [\"202\", \"201\"]; tracker [(Blind, Some(\"202\"), Some(\"201\"))] rang [\"202\", \"201\"]", "Attended: truth [(Attended, Some(\"202\"), Some(\"201\"))] rang [\"202\", \"201\"]; tracker [(Attended, Some(\"202\"), Some(\"201\"))] rang [\"202\", \"201\"]", "Redirect: truth [(Blind, Some(\"202\"), Some(\"201\"))] rang [\"202\", \"201\"]; tracker [(Blind, Some(\"202\"), Some(\"201\"))] rang [\"202\", \"201\"]"]"#
            ]],
        );
    }

    /// AMI Hangup while the call rings, and once it is answered: the truth follows, and so
    /// does the tracker.
    #[test]
    fn hangup_action_ends_the_call() {
        let mut out = Vec::new();
        for after_answer in [false, true] {
            let opts = Options {
                mix: vec![(Scenario::InboundExt, 1)],
                duration_secs: Some(0.001),
                extensions: parse_extensions("201-203").unwrap(),
                ..Options::default()
            };
            let mut gen = Generator::new(opts);
            let mut tracker = calls::Tracker::new(calls::TrackerConfig::default());
            let caller = loop {
                let (t, m) = gen.next_event().unwrap();
                tracker.handle(
                    chrono::DateTime::from_timestamp_millis(t as i64).unwrap(),
                    &m,
                );
                let ready = match after_answer {
                    false => m.event() == Some("DialState"),
                    true => {
                        m.event() == Some("BridgeEnter")
                            && gen.live().filter(|l| !l.bridge.is_empty()).count() == 2
                    }
                };
                if ready {
                    break m.get("Channel").unwrap().to_owned();
                }
            };
            assert!(!gen.hangup("PJSIP/999-00000000"));
            assert!(gen.hangup(&caller));
            while let Some((t, m)) = gen.next_event() {
                tracker.handle(
                    chrono::DateTime::from_timestamp_millis(t as i64).unwrap(),
                    &m,
                );
            }
            let truth = gen.take_finished().remove(0);
            let record = tracker.poll_record().expect("the tracker ended the call");
            out.push(format!(
                "answered {after_answer}: truth {:?} by {:?}; tracker {:?} by {:?}",
                truth.disposition, truth.answered_by, record.disposition, record.answered_by
            ));
        }
        check(
            out,
            expect![[
                r#"["answered false: truth Cancelled by None; tracker Cancelled by None", "answered true: truth Answered by Some(\"202\"); tracker Answered by Some(\"202\")"]"#
            ]],
        );
    }
}
