//! What the AMI decode benches share: the real-transcript corpus and the two ways to count
//! its messages (our decoder, and the `memchr` floor no line-based decoder can beat).

use std::path::{Path, PathBuf};

use ami::{Decoder, Frame};
use bytes::BytesMut;
use memchr::memmem;

/// Socket-sized reads: what a tokio client hands the decoder per `read_buf` on a busy link.
pub const CHUNK: usize = 64 * 1024;

/// `../shared/fixtures`, located from this crate so benches run from any directory.
pub fn fixtures_dir() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures"
    ))
    .to_path_buf()
}

/// Every `*/ami/*.rx.raw` transcript, sorted by path, banner line stripped, concatenated.
///
/// Panics (the bench must fail, not measure nothing) when the fixtures are missing.
pub fn corpus() -> Vec<u8> {
    let root = fixtures_dir();
    let mut paths = Vec::new();
    for set in read_dir_sorted(&root) {
        let ami = set.join("ami");
        if ami.is_dir() {
            paths.extend(
                read_dir_sorted(&ami)
                    .into_iter()
                    .filter(|p| p.to_string_lossy().ends_with(".rx.raw")),
            );
        }
    }
    assert!(
        !paths.is_empty(),
        "no */ami/*.rx.raw under {}",
        root.display()
    );
    let mut out = Vec::new();
    for path in paths {
        let raw =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let body = match raw.strip_prefix(b"Asterisk Call Manager/") {
            Some(rest) => rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(&[][..], |nl| &rest[nl + 1..]),
            None => &raw[..],
        };
        out.extend_from_slice(body);
    }
    out
}

fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("fixture directory {} is missing: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths
}

/// Decodes `input` the way the tokio client does (append a socket read, drain the decoder)
/// and returns how many messages came out.
pub fn decode_chunked(input: &[u8]) -> usize {
    let mut decoder = Decoder::without_banner();
    let mut buf = BytesMut::with_capacity(2 * CHUNK);
    let mut messages = 0;
    for chunk in input.chunks(CHUNK) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = decoder.decode(&mut buf).expect("fixtures decode") {
            if let Frame::Message(msg) = frame {
                std::hint::black_box(&msg);
                messages += 1;
            }
        }
    }
    messages
}

/// The floor: one `memmem` pass counting message terminators (`\n\r\n`), no parsing at all.
pub fn memchr_floor(input: &[u8]) -> usize {
    memmem::find_iter(input, b"\n\r\n").count()
}
