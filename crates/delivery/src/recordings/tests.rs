//! Recordings: WAV -> MP3 checked by decoding the MP3 again, signed links (tampered, expired,
//! traversal), finding FreePBX's files, and the worker against a real store. The HTTP side
//! (Range, 403s, the per-call link) is tested with pbxlink's API.

use std::io::Cursor;
use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};
use store::RecordingState;

use super::testing::{bench_with, recorded_call_at, tone_wav, Bench};
use super::*;

const KBPS: u16 = 32;

/// Decodes an MP3 with an independent decoder: (sample rate, channels, frames, seconds).
fn decode_mp3(mp3: Vec<u8>) -> (u32, usize, usize, f64) {
    use symphonia::core::codecs::DecoderOptions;
    use symphonia::core::errors::Error;
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;
    let source = MediaSourceStream::new(Box::new(Cursor::new(mp3)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            source,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .expect("an MP3 stream");
    let mut format = probed.format;
    let track = format.default_track().unwrap().clone();
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .unwrap();
    let (mut packets, mut samples, mut rate, mut channels) = (0, 0usize, 0, 0);
    loop {
        match format.next_packet() {
            Ok(packet) => {
                let decoded = decoder.decode(&packet).expect("a valid MP3 frame");
                let spec = decoded.spec();
                rate = spec.rate;
                channels = spec.channels.count();
                samples += decoded.frames();
                packets += 1;
            }
            Err(Error::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("decoding: {e}"),
        }
    }
    (rate, channels, packets, samples as f64 / f64::from(rate))
}

#[test]
fn wav_converts_to_mp3_frames_of_the_same_length() {
    let mut shown = Vec::new();
    for (rate, channels, seconds) in [(8000, 1, 3.0), (16000, 1, 2.5), (8000, 2, 1.0)] {
        let Converted::Mp3 { bytes, duration_ms } =
            wav_to_mp3(Cursor::new(tone_wav(rate, channels, seconds)), KBPS).unwrap()
        else {
            panic!("audio in, no MP3 out");
        };
        let size = bytes.len();
        let (out_rate, out_channels, packets, decoded) = decode_mp3(bytes);
        // LAME pads and the decoder trims differently: the same length within two frames.
        let slack = (decoded - seconds).abs();
        assert!(
            slack <= 2.0 * 576.0 / f64::from(rate),
            "{rate} Hz: {decoded} s decoded for {seconds} s"
        );
        shown.push(format!(
            "{rate} Hz x{channels} {seconds} s -> {duration_ms} ms, {out_rate} Hz x{out_channels}, {packets} frames, ~{} kbit/s",
            (size as f64 * 8.0 / seconds / 1000.0).round()
        ));
    }
    expect_test::expect![[r#"
        8000 Hz x1 3 s -> 3000 ms, 8000 Hz x1, 42 frames, ~32 kbit/s
        16000 Hz x1 2.5 s -> 2500 ms, 16000 Hz x1, 69 frames, ~32 kbit/s
        8000 Hz x2 1 s -> 1000 ms, 8000 Hz x1, 14 frames, ~32 kbit/s"#]]
    .assert_eq(&shown.join("\n"));
}

#[test]
fn header_only_and_foreign_files() {
    // What MixMonitor leaves for a call that never bridged: a 44-byte header.
    let empty = tone_wav(8000, 1, 0.0);
    assert_eq!(empty.len(), 44);
    assert!(matches!(
        wav_to_mp3(Cursor::new(empty), KBPS),
        Ok(Converted::Empty)
    ));
    let err = wav_to_mp3(Cursor::new(b"not a wav file at all".to_vec()), KBPS).unwrap_err();
    assert!(err.to_string().starts_with("not a PCM WAV file"), "{err}");
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_388_070 + seconds, 0).unwrap()
}

const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn links_are_refused_when_tampered_expired_or_not_links() {
    let signer = Signer::new(b"a key of sixteen+ bytes".to_vec());
    let token = signer.token(HASH, at(100));
    assert_eq!(signer.verify(&token, at(99)), Ok(HASH.to_owned()));
    assert_eq!(signer.verify(&token, at(100)), Err(LinkError::Expired));
    let other_key = Signer::new(b"another key, same length".to_vec());
    assert_eq!(
        other_key.verify(&token, at(0)),
        Err(LinkError::BadSignature)
    );
    // Any changed character of hash, expiry or MAC breaks the signature.
    let (hash, rest) = token.split_at(64);
    let later = rest.replacen(
        &at(100).timestamp().to_string(),
        &at(999).timestamp().to_string(),
        1,
    );
    let other_hash = format!("{}{rest}", HASH.replace('0', "1"));
    let mut flipped = token.clone().into_bytes();
    flipped[token.len() - 5] ^= 1;
    for tampered in [
        format!("{hash}{later}"),
        other_hash,
        String::from_utf8(flipped).unwrap(),
    ] {
        assert_eq!(
            signer.verify(&tampered, at(0)),
            Err(LinkError::BadSignature),
            "{tampered}"
        );
    }
    for junk in [
        "",
        "../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        &format!("../{HASH}.1.00.mp3"),
        &format!("{}.1.00", HASH.to_uppercase()),
        &format!("{HASH}/../x.1.00"),
        &format!("{HASH}.never.00"),
    ] {
        assert_eq!(
            signer.verify(junk, at(0)),
            Err(LinkError::Malformed),
            "{junk}"
        );
    }
}

#[test]
fn files_are_found_where_freepbx_and_asterisk_put_them() {
    let dir = tempfile::tempdir().unwrap();
    let here = &dir.path().join("monitor");
    let day = here.join("2026/11/22");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::write(day.join("rg-600-1.wav"), b"x").unwrap();
    std::fs::write(here.join("flat.wav"), b"x").unwrap();
    // Beside the monitor folder: never to be reached through it.
    std::fs::write(dir.path().join("secret.wav"), b"x").unwrap();
    let pbx = Path::new("/var/spool/asterisk/monitor");
    let started = at(0); // 2026-11-22 22:54:30 UTC
    let found = |source: &str| {
        locate(here, pbx, source, started)
            .map(|p| p.strip_prefix(here).unwrap().display().to_string())
    };
    expect_test::expect![[r#"
        [
            Some(
                "2026/11/22/rg-600-1.wav",
            ),
            Some(
                "2026/11/22/rg-600-1.wav",
            ),
            Some(
                "2026/11/22/rg-600-1.wav",
            ),
            Some(
                "flat.wav",
            ),
            None,
            None,
            None,
        ]
    "#]]
    .assert_debug_eq(&[
        found("/var/spool/asterisk/monitor/2026/11/22/rg-600-1.wav"),
        // Another mount point on the PBX, a bare name, a flat folder.
        found("/mnt/other/rg-600-1.wav"),
        found("rg-600-1.wav"),
        found("/var/spool/asterisk/monitor/flat.wav"),
        found("/var/spool/asterisk/monitor/../secret.wav"),
        found("../secret.wav"),
        found("/var/spool/asterisk/monitor/none.wav"),
    ]);
}

const WEBHOOK: &str = "kind = \"webhook\"\nname = \"erp\"\nurl = \"https://erp.example/hook\"\n";

/// Bitrix24 with no `record_url_base`: the recordings worker hands it pbxlink's own links.
const BITRIX24: &str = "kind = \"bitrix24\"\nname = \"b24\"\n\
    webhook_url = \"https://portal.bitrix24.ru/rest/1/code\"\nusers = { \"202\" = 12 }\n";

async fn bench() -> Bench {
    bench_with(WEBHOOK).await
}

fn recorded_call(id: &str, file: &str) -> calls::CallRecord {
    recorded_call_at(id, file, at(0))
}

#[tokio::test]
async fn the_worker_waits_for_a_complete_file_converts_hands_over_and_expires() {
    let b = bench().await;
    let day = b.monitor.path().join("2026/11/22");
    std::fs::create_dir_all(&day).unwrap();
    let call = recorded_call("1795388070.0", "rg-600-1.wav");
    b.store.save_call("pbx", &call, &[], at(12)).await.unwrap();
    let state = |id: &'static str| {
        let store = b.store.clone();
        async move { store.recording("pbx", id).await.unwrap().unwrap() }
    };

    // No file yet; then a file still growing: looked at again, not converted.
    b.worker.step(&b.store, at(13)).await.unwrap();
    assert_eq!(state("1795388070.0").await.source_bytes, None);
    std::fs::write(day.join("rg-600-1.wav"), &tone_wav(8000, 1, 1.0)[..4000]).unwrap();
    b.worker.step(&b.store, at(15)).await.unwrap();
    std::fs::write(day.join("rg-600-1.wav"), tone_wav(8000, 1, 2.0)).unwrap();
    b.worker.step(&b.store, at(17)).await.unwrap();
    assert_eq!(state("1795388070.0").await.state, RecordingState::Pending);
    // Same size a settle period later: complete.
    b.worker.step(&b.store, at(19)).await.unwrap();
    let row = state("1795388070.0").await;
    assert_eq!(row.state, RecordingState::Ready);
    assert_eq!(row.duration_ms, Some(2000));
    let sha256 = row.sha256.unwrap();
    let stored = b.worker.recordings.path_of(&sha256);
    assert_eq!(
        std::fs::metadata(&stored).unwrap().len(),
        row.bytes.unwrap()
    );

    // The hand-over: one signed recording.ready with a working link.
    let outbox = b
        .store
        .outbox_for_call("pbx", "1795388070.0")
        .await
        .unwrap();
    let kinds: Vec<_> = outbox.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["recording.ready"]);
    let url = outbox[0].payload["url"].as_str().unwrap();
    let token = url.strip_prefix("https://pbx.example/recordings/").unwrap();
    assert_eq!(b.worker.recordings.open(token, at(20)), Ok(stored.clone()));
    assert_eq!(outbox[0].payload["duration_ms"], 2000);

    // A missing file gives up after `wait`; a header-only one is empty.
    let lost = recorded_call("1795388100.5", "gone.wav");
    let silent = recorded_call("1795388200.9", "silent.wav");
    std::fs::write(day.join("silent.wav"), tone_wav(8000, 1, 0.0)).unwrap();
    b.store.save_call("pbx", &lost, &[], at(20)).await.unwrap();
    b.store
        .save_call("pbx", &silent, &[], at(20))
        .await
        .unwrap();
    for t in [20, 22, 24, 620, 640] {
        b.worker.step(&b.store, at(t)).await.unwrap();
    }
    assert_eq!(state("1795388100.5").await.state, RecordingState::Missing);
    assert_eq!(state("1795388200.9").await.state, RecordingState::Empty);

    // Retention: rows and the MP3 go; a link to it then finds nothing.
    b.worker
        .expire(&b.store, at(19) + TimeDelta::days(29))
        .await
        .unwrap();
    assert!(stored.exists());
    b.worker
        .expire(&b.store, at(20) + TimeDelta::days(30))
        .await
        .unwrap();
    assert!(!stored.exists());
    assert_eq!(
        b.store.recording("pbx", "1795388070.0").await.unwrap(),
        None
    );
}

/// A Bitrix24 portal gets the recording as the call's last step, `attachRecord` after
/// `finish`, with the signed link as `RECORD_URL` (what the portal fetches and keeps).
#[tokio::test]
async fn bitrix24_gets_attach_record_with_the_signed_link() {
    let b = bench_with(BITRIX24).await;
    let crm = &b.worker.crms[0];
    let day = b.monitor.path().join("2026/11/22");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::write(day.join("rg-600-1.wav"), tone_wav(8000, 1, 1.0)).unwrap();
    let call = recorded_call("1795388070.0", "rg-600-1.wav");
    let planned = crm.plan("pbx", &call);
    b.store
        .save_call("pbx", &call, &planned, at(12))
        .await
        .unwrap();
    for t in [13, 15] {
        b.worker.step(&b.store, at(t)).await.unwrap();
    }
    let sha256 = b
        .store
        .recording("pbx", &call.id)
        .await
        .unwrap()
        .unwrap()
        .sha256;
    let link = b.worker.recordings.link(&sha256.unwrap(), at(15));

    // Each queued step through the connector, in order, answered as the portal would.
    let mut sent = Vec::new();
    for row in b.store.outbox_for_call("pbx", &call.id).await.unwrap() {
        let item = crm::OutboxItem {
            call_id: row.call_id,
            kind: row.kind,
            payload: row.payload,
            idempotency_key: row.idempotency_key,
        };
        let request = crm.connector.next_request(&item, at(16)).unwrap();
        let method = request.url.rsplit('/').next().unwrap().to_owned();
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        let answer = match body.get("CALL_ID") {
            Some(_) => serde_json::json!({ "result": true }),
            None => serde_json::json!({ "result": { "CALL_ID": "externalCall.42" } }),
        };
        let response = crm::HttpResponse {
            status: 200,
            retry_after: None,
            body: answer.to_string(),
        };
        assert_eq!(
            crm.connector.on_response(&item, &response).unwrap(),
            crm::Progress::Delivered,
            "{method}"
        );
        let shown = match method.as_str() {
            "telephony.externalcall.register.json" => String::new(),
            _ => body.to_string().replace(&link.url, "<signed link>"),
        };
        sent.push(format!("{method} {shown}").trim_end().to_owned());
    }
    expect_test::expect![[r#"
        telephony.externalcall.register.json
        telephony.externalcall.finish.json {"CALL_ID":"externalCall.42","DURATION":8,"RECORD_URL":null,"STATUS_CODE":"200","USER_ID":12}
        telephony.externalcall.attachRecord.json {"CALL_ID":"externalCall.42","FILENAME":"rg-600-1.mp3","RECORD_URL":"<signed link>"}"#]].assert_eq(&sent.join("\n"));
}
