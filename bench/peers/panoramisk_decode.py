"""Times panoramisk's AMI parser (AMIProtocol.data_received) on an AMI byte file.

No socket and no event loop: the protocol gets a stub transport and counts the messages it
would dispatch, so only parsing is measured. Prints one JSON line like the Rust driver.
Usage: panoramisk_decode.py <file> [runs]
"""
import json
import sys
import time

from panoramisk.ami_protocol import AMIProtocol

CHUNK = 64 * 1024  # same socket-sized reads as the Rust driver


class CountingProtocol(AMIProtocol):
    """AMIProtocol whose dispatch step only counts what the parser produced."""

    def handle_message(self, message):
        self.messages += 1


def parse(data):
    protocol = CountingProtocol()
    protocol.connection_made(transport=None)
    protocol.messages = 0
    for start in range(0, len(data), CHUNK):
        protocol.data_received(data[start:start + CHUNK])
    return protocol.messages


def main():
    path = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    with open(path, 'rb') as f:
        data = f.read()
    best, messages = float('inf'), 0
    for _ in range(runs):
        start = time.perf_counter()
        messages = parse(data)
        best = min(best, time.perf_counter() - start)
    print(json.dumps({'impl': 'panoramisk AMIProtocol', 'messages': messages,
                      'bytes': len(data), 'seconds': best}))


if __name__ == '__main__':
    main()
