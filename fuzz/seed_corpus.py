#!/usr/bin/env python3
"""Seeds fuzz/corpus/ami_decode and fuzz/corpus/agi_parse from the shared fixtures at run time
(they are never copied into the repository). ami_decode: each AMI transcript cut at message
boundaries into pieces of at most ~4 KiB (libFuzzer's default input size), the first piece
keeping the banner, plus every AJAM body, each after 8 read-size bytes. agi_parse: what
Asterisk sent in each recorded FastAGI session (environment, replies) and what the server
sent (commands), each after 4 read-size bytes."""

import hashlib
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE.parent.parent / "shared" / "fixtures"
OUT = HERE / "corpus" / "ami_decode"
AGI_OUT = HERE / "corpus" / "agi_parse"
AGI_SIZES = [bytes([0xFF] * 4), bytes([0, 1, 2, 3])]
PIECE = 4000
SIZES = [bytes([0xFF] * 8), bytes([0, 1, 2, 3, 5, 8, 13, 21])]


def pieces(raw: bytes):
    piece = b""
    for msg in raw.split(b"\r\n\r\n"):
        msg += b"\r\n\r\n"
        if piece and len(piece) + len(msg) > PIECE:
            yield piece
            piece = b""
        piece += msg
    if piece:
        yield piece


def main() -> int:
    if not FIXTURES.is_dir():
        print(f"fixtures not found at {FIXTURES}", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    seeds = []
    for rx in sorted(FIXTURES.glob("*/ami/*.rx.raw")):
        seeds.extend(pieces(rx.read_bytes()))
    for http in sorted(FIXTURES.glob("*/ajam/*.http")):
        seeds.append(http.read_bytes().split(b"\r\n\r\n", 1)[-1])
    n = 0
    for seed in seeds:
        for sizes in SIZES:
            data = sizes + seed
            (OUT / hashlib.sha1(data).hexdigest()).write_bytes(data)
            n += 1
    print(f"{n} seeds in {OUT}")
    AGI_OUT.mkdir(parents=True, exist_ok=True)
    n = 0
    for raw in sorted(FIXTURES.glob("*/fastagi/*.raw")):
        for sizes in AGI_SIZES:
            data = sizes + raw.read_bytes()
            (AGI_OUT / hashlib.sha1(data).hexdigest()).write_bytes(data)
            n += 1
    print(f"{n} seeds in {AGI_OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
