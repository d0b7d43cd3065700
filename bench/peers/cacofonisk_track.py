"""Times cacofonisk's call tracking (EventHandler.on_event) on an AMI event file.

Events are fed as plain dicts the way cacofonisk's FileRunner replays its JSON event logs
(only the event names its handler subscribes to reach on_event). The file is parsed a batch
at a time outside the timed part, so only tracking is measured. Prints one JSON line like
the Rust driver. Usage: cacofonisk_track.py <file> [runs]
"""
import json
import logging
import sys
import time

from cacofonisk.handlers import EventHandler
from cacofonisk.reporters import BaseReporter

BATCH = 1_000  # same batch size as the Rust driver
READ = 1 << 20


def event_batches(path):
    """AMI messages (CRLF, blank-line separated) as dicts; a repeated key keeps its last value."""
    with open(path, 'r', encoding='utf-8', errors='replace', newline='') as f:
        rest, batch = '', []
        while True:
            chunk = f.read(READ)
            blocks = (rest + chunk).split('\r\n\r\n')
            rest = blocks.pop() if chunk else ''
            for block in blocks:
                fields = dict(line.split(': ', 1) if ': ' in line else (line.rstrip(':'), '')
                              for line in block.split('\r\n') if line)
                if 'Event' in fields:
                    batch.append(fields)
            if len(batch) >= BATCH or not chunk:
                if batch:
                    yield batch
                batch = []
            if not chunk:
                return


def track(path):
    handler = EventHandler(reporter=BaseReporter())
    interesting = handler.event_handlers().keys()
    events = errors = 0
    elapsed = 0.0
    for batch in event_batches(path):
        start = time.perf_counter()
        for event in batch:
            if event['Event'] in interesting:
                try:
                    handler.on_event(event)
                except Exception:  # cacofonisk asserts on shapes it does not expect
                    errors += 1
        elapsed += time.perf_counter() - start
        events += len(batch)
    return events, elapsed, errors


def main():
    path = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    # Its per-event warnings would time the terminal, not the tracking.
    logging.disable(logging.CRITICAL)
    best, events, errors = float('inf'), 0, 0
    for _ in range(runs):
        events, elapsed, errors = track(path)
        best = min(best, elapsed)
    print(json.dumps({'impl': 'cacofonisk EventHandler', 'messages': events,
                      'seconds': best, 'events_that_raised': errors}))


if __name__ == '__main__':
    main()
