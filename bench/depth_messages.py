"""Live depth capture: the cost of writing a segment's messages file at each flush, as a segment
grows (30 minutes at 200 depth messages/s, a flush every 30 s): each message encoded once
(``messages_json``) vs the whole segment re-encoded, indented, at every flush (the earlier
``write_json_atomic(segment.messages)``); both files parsed back and checked equal in the run.

    python -m bench.depth_messages                      # 60 flushes of 6,000 messages
    python -m bench.depth_messages --flushes 20 --per-flush 2000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time

import pandas as pd

from bench.common import Result


def _message(i: int) -> dict:
    return {"timestamp": f"2024-12-02T14:30:{i % 60:02d}.{i % 1_000_000:06d}+00:00", "operation": ("add", "update", "remove")[i % 3],
            "side": ("bid", "ask")[i % 2], "level": i % 10, "price": 100.0 + (i % 50) / 100, "size": float(100 + i % 900), "symbol": "AAPL"}


def run(flushes: int = 60, per_flush: int = 6000) -> list[Result]:
    from platform_assets.ingestion.depth_capture import Segment, messages_json

    segment = Segment(dt.date(2024, 12, 2), "093000", pd.Timestamp("2024-12-02 14:30", tz="UTC"))
    ours = old = 0.0
    worst_ours = worst_old = 0.0
    for flush in range(flushes):
        segment.messages.extend(_message(flush * per_flush + i) for i in range(per_flush))
        t0 = time.perf_counter()
        text = messages_json(segment)
        spent = time.perf_counter() - t0
        ours, worst_ours = ours + spent, max(worst_ours, spent)
        t0 = time.perf_counter()
        before = json.dumps(segment.messages, indent=2, sort_keys=True, default=str) + "\n"
        spent = time.perf_counter() - t0
        old, worst_old = old + spent, max(worst_old, spent)
    assert json.loads(text) == json.loads(before) == segment.messages
    total = flushes * per_flush
    return [
        Result(f"depth messages file, {flushes} flushes to {total:,} messages: encoding summed over the flushes", ours, old,
               "whole segment re-encoded (indented) each flush", rows=total, note="each message encoded once, one compact line each"),
        Result("  the last flush alone (the segment's size)", worst_ours, worst_old, "whole segment re-encoded", target="no pause of the snapshot loop"),
    ]


def main() -> None:
    from bench.common import format_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flushes", type=int, default=60)
    parser.add_argument("--per-flush", type=int, default=6000)
    args = parser.parse_args()
    print(format_table(run(args.flushes, args.per_flush)))


if __name__ == "__main__":
    main()
