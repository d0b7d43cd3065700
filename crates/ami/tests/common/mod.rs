//! Locating and reading the shared real-Asterisk fixtures; a missing fixture fails the test.

#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::path::{Path, PathBuf};

/// `/work/shared/fixtures`, found relative to this crate.
pub fn fixtures_dir() -> PathBuf {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures"
    ));
    assert!(
        dir.is_dir(),
        "fixture directory {} is missing",
        dir.display()
    );
    dir.to_path_buf()
}

/// The bytes of `relative` under the fixture directory.
pub fn read(relative: &str) -> Vec<u8> {
    let path = fixtures_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading fixture {}: {e}", path.display()))
}

/// Every `*.rx.raw` under `*/ami/`, sorted, with a non-empty result guaranteed.
pub fn all_rx_raw() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for set in std::fs::read_dir(fixtures_dir()).unwrap() {
        let ami = set.unwrap().path().join("ami");
        let Ok(entries) = std::fs::read_dir(&ami) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.to_string_lossy().ends_with(".rx.raw") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no */ami/*.rx.raw fixtures found");
    files
}

/// Decodes a whole transcript in one go; every frame, or the first decode error.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<ami::Frame>, ami::DecodeError> {
    let mut dec = ami::Decoder::new();
    let mut buf = bytes::BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Some(f) = dec.decode(&mut buf)? {
        frames.push(f);
    }
    assert!(buf.is_empty(), "{} undecoded bytes left", buf.len());
    Ok(frames)
}

/// The messages of a transcript that decodes without errors.
pub fn messages(relative: &str) -> Vec<ami::Message> {
    decode_all(&read(relative))
        .unwrap()
        .into_iter()
        .filter_map(|f| match f {
            ami::Frame::Message(m) => Some(m),
            ami::Frame::Banner(_) => None,
        })
        .collect()
}
