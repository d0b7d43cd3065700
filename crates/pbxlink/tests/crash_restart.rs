//! Crash safety of call tracking, against the real binary (issue 20): `pbxlink run` tracks a
//! simulated PBX whose calls go on, ten times faster than real time, whatever pbxlink does;
//! pbxlink is SIGKILLed again and again at seeded random moments (in steady traffic, while
//! starting, with a backlog of unread events) and restarted on the same data directory.
//! Once the PBX says every call ended, its ground truth and the journal must agree: each call
//! journaled once, none left in the live view, and a record whose call went on while no
//! pbxlink was looking says so.
//!
//! Calls that started and ended while no pbxlink was connected are not asked for from AMI
//! alone: Asterisk replays nothing to a client that was away, and what the PBX did inside a
//! gap (who answered) is only measured. With the PBX's CDR (`[pbx.cdr]`, the simulator's
//! Master.csv) nothing is excused: every call is journaled, those of a gap from the CDR
//! (`source: cdr`), and every record says what the PBX did.
//!
//! `PBXLINK_CRASH_SEED=N` repeats a run's kill schedule (and its PBX traffic).

mod gateway;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use gateway::{eventually, within, Gateway, Simulator};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const TOKEN: &str = "crash-test-token";
/// Virtual seconds per wall-clock second: calls minutes long end within the test's minute.
const SPEED: f64 = 10.0;
/// How long (wall ms) before a SIGKILL a call's first events may still be waiting for the
/// raw event log's writer (a batch in the channel or in its transaction).
const UNWRITTEN_RAW_LOG_MS: u64 = 250;
/// Virtual seconds during which calls start (~26 s of wall time: the kills fit in it).
const TRAFFIC_SECS: f64 = 260.0;
/// New calls per virtual second: 6 per wall-clock second.
const CALLS_PER_SECOND: &str = "0.6";
/// How long the live view may show a call after the PBX ended it.
const LIVE_GRACE: Duration = Duration::from_secs(10);
const CONNECTED: &str = "AMI connected; resyncing live channels";
/// How long journal writes may trail the live view. With the CDR a record with a gap waits
/// for its rows (1+2+4+8 s at most) and a gap's calls are looked up 5 s after it closes.
const JOURNAL_GRACE: Duration = Duration::from_secs(10);
const CDR_JOURNAL_GRACE: Duration = Duration::from_secs(25);

/// The two runs share the 2 cores of CI and the timing of the kills: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How a gateway's life ends.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// Connected, tracking calls as they come.
    Steady,
    /// Right after the spawn: opening the journal, resuming calls, logging in.
    StartUp,
    /// Just after a pause (SIGSTOP) that left events piling up unread, while it catches up.
    Backlog,
}

/// Intervals of the PBX clock (virtual ms) during which no pbxlink may have been reading.
/// Each is wider than the truth: it opens before the kill and closes after a later gateway
/// logged in, so a call inside one may be unseen and a call across one went on unseen.
#[derive(Debug, Default)]
struct Gaps {
    closed: Vec<(u64, u64)>,
    open: Option<u64>,
}

impl Gaps {
    fn open(&mut self, at: u64) {
        self.open.get_or_insert(at);
    }

    fn close(&mut self, at: u64) {
        if let Some(from) = self.open.take() {
            self.closed.push((from, at));
        }
    }

    /// The gap a call from `start` to `end` lay wholly inside.
    fn holds(&self, start: u64, end: u64) -> Option<(u64, u64)> {
        self.closed
            .iter()
            .copied()
            .find(|&(from, to)| from <= start && end <= to)
    }

    /// The gap a call from `start` to `end` was up across, from before to after.
    fn spanned(&self, start: u64, end: u64) -> Option<(u64, u64)> {
        self.closed
            .iter()
            .copied()
            .find(|&(from, to)| start < from && to < end)
    }
}

/// The simulator's ground truth: one JSON object per call, by Linkedid.
fn ground_truth(transcript: &Path) -> BTreeMap<String, Value> {
    let mut name = transcript.as_os_str().to_owned();
    name.push(".truth.jsonl");
    std::fs::read_to_string(name)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|t| (t["linkedid"].as_str().unwrap().to_owned(), t))
        .collect()
}

fn millis(truth: &Value, field: &str) -> u64 {
    truth[field].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_again_and_again_no_call_is_lost_doubled_or_stuck() {
    crash_test(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "flaky: about 1 run in 8 leaves one call's disposition unrepaired across a gap \
            (issue 20's closing note); run with --ignored"]
async fn sigkilled_with_the_pbx_cdr_every_call_is_journaled_exactly() {
    crash_test(true).await;
}

/// The kills and the checks; `with_cdr`: the simulator writes its Master.csv and pbxlink
/// reads it (`[pbx.cdr] kind = "csv"`), and every call must be journaled exactly.
async fn crash_test(with_cdr: bool) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let seed: u64 = std::env::var("PBXLINK_CRASH_SEED")
        .map(|s| s.parse().expect("PBXLINK_CRASH_SEED is a number"))
        .unwrap_or_else(|_| rand::random::<u16>().into());
    eprintln!(
        "crash test{} seed {seed} (PBXLINK_CRASH_SEED={seed} repeats it)",
        if with_cdr { " with the CDR" } else { "" }
    );
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let transcript = dir.path().join("pbx.rx.raw");
    let master_csv = dir.path().join("Master.csv");
    let (cdr_args, cdr_config) = if with_cdr {
        (
            vec!["--cdr", master_csv.to_str().unwrap()],
            format!("[pbx.cdr]\nkind = \"csv\"\npath = {master_csv:?}\n"),
        )
    } else {
        (Vec::new(), String::new())
    };
    let simulator = Simulator::start(
        &[
            &[
                "--speed",
                &SPEED.to_string(),
                "--duration",
                &TRAFFIC_SECS.to_string(),
                "--calls-per-second",
                CALLS_PER_SECOND,
                "--concurrency",
                "1000",
                "--seed",
                &seed.to_string(),
                "--write",
                transcript.to_str().unwrap(),
            ][..],
            &cdr_args,
        ]
        .concat(),
    );
    // The raw event log is what a restart resumes calls in progress from.
    let config = format!(
        "[journal]\nraw_events = \"calls\"\n{}{cdr_config}",
        simulator.pbx_config("sim")
    );
    let config = Some(config.as_str());

    // Every kind of kill, more than once, in a seeded order.
    let mut schedule = [
        Kill::Steady,
        Kill::Steady,
        Kill::StartUp,
        Kill::StartUp,
        Kill::Backlog,
        Kill::Backlog,
    ];
    for i in (1..schedule.len()).rev() {
        schedule.swap(i, rng.random_range(0..=i));
    }
    let mut gaps = Gaps::default();
    let mut kills = Vec::new();
    for (i, kill) in schedule.into_iter().enumerate() {
        if i > 0 {
            // Down a while: calls start, are answered and end meanwhile.
            let down = Duration::from_millis(rng.random_range(300..2_500));
            tokio::time::sleep(down).await;
            kills.push(format!("down {down:?}"));
        }
        match kill {
            Kill::StartUp => {
                let after = Duration::from_millis(rng.random_range(0..600));
                gaps.open(simulator.clock_ms());
                Gateway::kill_while_starting(dir.path(), TOKEN, config, after);
                kills.push(format!("start-up kill {after:?} after the spawn"));
            }
            Kill::Steady | Kill::Backlog => {
                let gateway = Gateway::start_in(dir.path(), TOKEN, config);
                logged_in(&gateway, &simulator, &mut gaps).await;
                let up = Duration::from_millis(rng.random_range(500..3_000));
                tokio::time::sleep(up).await;
                gaps.open(simulator.clock_ms());
                if let Kill::Backlog = kill {
                    let paused = Duration::from_millis(rng.random_range(500..2_000));
                    let caught_up = Duration::from_millis(rng.random_range(0..300));
                    gateway.pause();
                    tokio::time::sleep(paused).await;
                    gateway.resume();
                    tokio::time::sleep(caught_up).await;
                    kills.push(format!(
                        "backlog kill: up {up:?}, paused {paused:?}, killed {caught_up:?} after"
                    ));
                } else {
                    kills.push(format!("steady kill: up {up:?}"));
                }
                gateway.kill_hard();
            }
        }
    }
    eprintln!("schedule: {}", kills.join("; "));

    // The last restart sees the traffic out.
    let gateway = Gateway::start_in(dir.path(), TOKEN, config);
    logged_in(&gateway, &simulator, &mut gaps).await;
    eventually(
        "the PBX's calls all ended",
        Duration::from_secs(120),
        async || simulator.said("all calls ended").then_some(()),
    )
    .await;
    let emptied = within(LIVE_GRACE, async || {
        let live = gateway.api("live").await;
        live.as_array().unwrap().is_empty().then_some(())
    })
    .await;
    let stuck = match emptied {
        Some(()) => Vec::new(),
        None => gateway.api("live").await.as_array().unwrap().clone(),
    };
    let truth = ground_truth(&transcript);
    // Journal writes trail the live view: every call the PBX could have told, or a bound.
    // Without the CDR, a call inside a gap may have gone unseen, and so may one that began
    // just before a SIGKILL: its first events were in the raw log's last, unwritten batch
    // (ARCHITECTURE.md), so the restart knows nothing of it once the PBX lists it no more.
    let held = |t: &Value| {
        // On the PBX's clock, which runs SPEED times faster.
        let unwritten = (UNWRITTEN_RAW_LOG_MS as f64 * SPEED) as u64;
        let start = millis(t, "started_ms").saturating_add(unwritten);
        gaps.holds(start, millis(t, "ended_ms"))
    };
    let expected: BTreeSet<&String> = truth
        .iter()
        .filter(|(_, t)| with_cdr || held(t).is_none())
        .map(|(id, _)| id)
        .collect();
    let grace = if with_cdr {
        CDR_JOURNAL_GRACE
    } else {
        JOURNAL_GRACE
    };
    let complete = within(grace, async || {
        let journal = gateway.journal().await;
        let ids: BTreeSet<&str> = journal.iter().filter_map(|r| r["id"].as_str()).collect();
        expected
            .iter()
            .all(|id| ids.contains(id.as_str()))
            .then_some(journal)
    })
    .await;
    let journal = match complete {
        Some(journal) => journal,
        None => gateway.journal().await,
    };
    let active_calls = metric(&gateway, "pbxlink_active_calls").await;

    let boot = truth
        .values()
        .map(|t| millis(t, "started_ms"))
        .min()
        .unwrap_or_default();
    // PBX seconds from its first call, to tell calls and gaps apart in messages.
    let seconds = |at: u64| at.saturating_sub(boot) as f64 / 1000.0;
    let mut journaled: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for record in &journal {
        journaled
            .entry(record["id"].as_str().unwrap())
            .or_default()
            .push(record);
    }
    let duplicated: Vec<&str> = journaled
        .iter()
        .filter(|(_, r)| r.len() > 1)
        .map(|(id, _)| *id)
        .collect();
    let unknown: Vec<&str> = journaled
        .keys()
        .filter(|id| !truth.contains_key(**id))
        .copied()
        .collect();
    // Lost, by the classes of issue 20: a call whose start no pbxlink saw, one whose end
    // none saw, and the rest.
    let in_a_gap = |at: u64| gaps.closed.iter().any(|&(from, to)| from <= at && at <= to);
    let mut lost: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut spanning = 0;
    let mut unflagged = Vec::new();
    // Disposition and answered_by: wrong away from every gap (asserted), and across one
    // (measured: what the PBX did there was not seen; asserted with the CDR, which saw it).
    let mut mismatched = Vec::new();
    let mut wrong_across_gaps = Vec::new();
    // With the CDR: records by source, and those whose source contradicts the gaps.
    let mut sources: BTreeMap<&str, usize> = BTreeMap::new();
    let mut misattributed = Vec::new();
    for id in &expected {
        let t = &truth[*id];
        let (start, end) = (millis(t, "started_ms"), millis(t, "ended_ms"));
        let Some(records) = journaled.get(id.as_str()) else {
            let class = match (in_a_gap(start), in_a_gap(end)) {
                (true, _) => "started in a gap",
                (false, true) => "ended in a gap",
                (false, false) => "other",
            };
            lost.entry(class).or_default().push(id);
            continue;
        };
        let record = records[0];
        let flagged = ["gaps", "started_in_gap", "answered_in_gap", "ended_in_gap"]
            .iter()
            .any(|flag| record.get(*flag).is_some());
        if gaps.spanned(start, end).is_some() {
            spanning += 1;
            if !flagged {
                unflagged.push(id.as_str());
            }
        }
        let source = record["source"].as_str().unwrap_or("?");
        *sources.entry(source).or_default() += 1;
        // The CDR alone tells only calls no pbxlink saw: inside a gap; it corrects only
        // records that say which of their moments fell in one.
        let attributed = match source {
            "ami" => true,
            "ami_cdr" => flagged,
            "cdr" => held(t).is_some(),
            _ => false,
        };
        if !attributed {
            misattributed.push(format!(
                "{id} ({}) {:.1}-{:.1}: source {source}, gap flags {flagged}",
                t["scenario"],
                seconds(start),
                seconds(end)
            ));
        }
        let said = |v: &Value| (v["disposition"].clone(), v["answered_by"].clone());
        if said(t) == said(record) {
            continue;
        }
        let away = gaps
            .closed
            .iter()
            .all(|&(from, to)| end < from || to < start);
        let wrong = format!(
            "{id} ({}) {:.1}-{:.1}, source {source}: truth {:?}, journal {:?}",
            t["scenario"],
            seconds(start),
            seconds(end),
            said(t),
            said(record)
        );
        if away {
            mismatched.push(wrong);
        } else {
            wrong_across_gaps.push(wrong);
        }
    }
    let lost_total: usize = lost.values().map(Vec::len).sum();
    let excused = truth.len() - expected.len();
    let inside_gaps = truth.values().filter(|t| held(t).is_some()).count();
    eprintln!(
        "crash test summary (seed {seed}{}): {} kills; PBX calls (ground truth) {}, of which \
         {inside_gaps} began and ended while no pbxlink was connected ({excused} excused); \
         journaled {}, by source {sources:?}; lost {lost_total} {:?}; \
         duplicated {}; unknown ids {}; stuck in /api/v1/live {LIVE_GRACE:?} after the end {} \
         (active_calls gauge {active_calls}); spanning a gap {spanning}, without a gap flag {}; \
         disposition/answered_by wrong away from gaps {}, across gaps {}; \
         source contradicting the gaps {}",
        if with_cdr { ", with the CDR" } else { "" },
        schedule.len(),
        truth.len(),
        journaled.len(),
        lost.iter()
            .map(|(class, ids)| format!("{class}: {}", ids.len()))
            .collect::<Vec<_>>(),
        duplicated.len(),
        unknown.len(),
        stuck.len(),
        unflagged.len(),
        mismatched.len(),
        wrong_across_gaps.len(),
        misattributed.len(),
    );
    let windows: Vec<String> = gaps
        .closed
        .iter()
        .map(|&(from, to)| format!("{:.1}-{:.1}", seconds(from), seconds(to)))
        .collect();
    eprintln!(
        "gaps (PBX seconds from its first call): {}",
        windows.join(", ")
    );
    assert!(
        truth.len() > 100,
        "only {} calls: too little traffic to judge",
        truth.len()
    );
    let lost_truth: Vec<String> = lost
        .values()
        .flatten()
        .map(|id| {
            let t = &truth[*id];
            let (start, end) = (millis(t, "started_ms"), millis(t, "ended_ms"));
            format!(
                "{id}: {} {:.1}-{:.1}",
                t["scenario"],
                seconds(start),
                seconds(end)
            )
        })
        .collect();
    assert!(lost.is_empty(), "calls lost: {lost:?}: {lost_truth:?}");
    assert!(
        duplicated.is_empty(),
        "calls journaled twice: {duplicated:?}"
    );
    assert!(unknown.is_empty(), "calls the PBX never had: {unknown:?}");
    assert!(
        stuck.is_empty(),
        "calls still live after the PBX ended them: {stuck:?}"
    );
    assert!(
        mismatched.is_empty(),
        "records that disagree with the PBX: {mismatched:#?}"
    );
    assert!(
        !with_cdr || wrong_across_gaps.is_empty(),
        "records across a gap that disagree with the PBX and its CDR: {wrong_across_gaps:#?}"
    );
    let unflagged: Vec<String> = unflagged
        .iter()
        .map(|id| {
            let t = &truth[*id];
            let (start, end) = (millis(t, "started_ms"), millis(t, "ended_ms"));
            let record = journaled[id][0];
            format!(
                "{id}: {} {:.1}-{:.1}; journal {} - {}",
                t["scenario"],
                seconds(start),
                seconds(end),
                record["started_at"],
                record["ended_at"]
            )
        })
        .collect();
    assert!(
        unflagged.is_empty(),
        "records across a gap without a gap flag: {unflagged:#?}"
    );
    assert!(
        misattributed.is_empty(),
        "records whose source contradicts the gaps: {misattributed:#?}"
    );
}

/// Waits until `gateway` has logged in, and closes the open gap on the PBX clock after that.
async fn logged_in(gateway: &Gateway, simulator: &Simulator, gaps: &mut Gaps) {
    eventually(
        "pbxlink logs in to the PBX",
        Duration::from_secs(30),
        async || gateway.logged(CONNECTED).then_some(()),
    )
    .await;
    gaps.close(simulator.clock_ms());
}

/// A Prometheus value from `/metrics` (summed over its label sets).
async fn metric(gateway: &Gateway, name: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", gateway.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
