#!/usr/bin/env python3
"""CPU of a chat-server process by kind of work, from a perf profile with call stacks.

Record the server while a scenario runs, then classify every sample by the first rule
whose pattern appears anywhere in its stack:

    perf record -F 999 --call-graph dwarf,8192 -p PID -o server.perf -- sleep 30
    perf script -i server.perf -F comm,tid,time,event,ip,sym --no-inline > server.txt
    scripts/perf-kinds.py server.txt --messages 13950   # messages sent while recording

With --messages it also prints each kind's CPU per message (samples × sampling period).
"""

import argparse
import collections
import sys

# (kind, stack substrings); the first match wins, so the specific rules come first.
RULES = [
    ("store: journal fsync", ["sync_all", "sync_data", "__x64_sys_fsync", "__x64_sys_fdatasync"]),
    ("store: flush and compaction", ["fjall::flush", "ompaction", "fjall::drop"]),
    ("receipts (ack, read)", ["Service>::ack", "Service>::read", "::mark::{{closure}}"]),
    ("history page", ["Service>::history", "::history::{{closure}}"]),
    ("presence", ["presence"]),
    ("sync and catch-up", ["Service>::sync", "catch_up", "CatchUp"]),
    ("send (service)", ["send_all", "Service>::send", "pipeline::", "check_send",
                        "MessageStore>::append"]),
    ("store writer: memtable", ["lsm_tree::memtable"]),
    ("store writer: other", ["writer_loop"]),
    ("store reads: other", ["lsm_tree::", "fjall::"]),
    ("WebSocket writes", ["ws::writer", "SplitSink", "poll_flush"]),
    ("WebSocket reads", ["ws::", "tungstenite", "on_upgrade"]),
    ("HTTP", ["hyper", "axum"]),
    ("runtime park and wake-ups", ["park", "epoll_wait", "Driver::turn", "wake", "notify"]),
]


def samples(path):
    """Yields the frames (function names, leaf first) of each sample in `perf script` text."""
    frames = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                if frames:
                    yield frames
                frames = []
            elif line[0] in " \t":
                parts = line.strip().split(" ", 1)
                frames.append(parts[1] if len(parts) > 1 else "")
            else:
                frames = []
    if frames:
        yield frames


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("script", help="output of `perf script -F comm,tid,time,event,ip,sym`")
    ap.add_argument("--messages", type=int, help="messages sent while perf recorded")
    ap.add_argument("--hz", type=float, default=999.0, help="perf's sampling rate (-F)")
    a = ap.parse_args()
    kinds = collections.Counter()
    total = 0
    for frames in samples(a.script):
        total += 1
        kind = next((k for k, keys in RULES if any(p in f for f in frames for p in keys)),
                    "other")
        kinds[kind] += 1
    if total == 0:
        sys.exit("no samples with call stacks in " + a.script)
    period_us = 1e6 / a.hz
    print(f"{total} samples, {total * period_us / 1e6:.1f} s of CPU")
    for kind, n in kinds.most_common():
        line = f"{100 * n / total:6.1f} %  {kind}"
        if a.messages:
            line += f"  ({n * period_us / a.messages:.0f} µs per message)"
        print(line)


if __name__ == "__main__":
    main()
