"""Prints a side-by-side table from the JSON lines the bench drivers write.

Each line: {"impl", "messages", "seconds"}, optionally "bytes", and any other fields (printed
under the table). The first line is ours; the last column is how many times faster ours is
than that row (below 1: slower).
Usage: report.py <results.jsonl>
"""
import json
import sys


def main():
    with open(sys.argv[1]) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    ours = rows[0]
    ours_rate = ours['messages'] / ours['seconds']
    has_bytes = all('bytes' in r for r in rows)
    header = f"{'implementation':<28} {'messages':>10} {'seconds':>9} {'msgs/s':>12}"
    header += f" {'MB/s':>9}" if has_bytes else ''
    print(header + f" {'ours / this':>12}")
    for row in rows:
        rate = row['messages'] / row['seconds']
        line = f"{row['impl']:<28} {row['messages']:>10} {row['seconds']:>9.3f} {rate:>12,.0f}"
        if has_bytes:
            line += f" {row['bytes'] / row['seconds'] / 1e6:>9.1f}"
        print(line + f" {ours_rate / rate:>11.3f}x")
    for row in rows:
        extra = {k: v for k, v in row.items() if k not in ('impl', 'messages', 'seconds', 'bytes')}
        if extra:
            print(f"{row['impl']}: " + ', '.join(f'{k}={v}' for k, v in extra.items()))
    counts = {r['messages'] for r in rows}
    if len(counts) > 1:
        print(f"note: message counts differ between implementations: {sorted(counts)}")


if __name__ == '__main__':
    main()
