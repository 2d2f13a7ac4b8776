"""Publication of one approved gazette issue to N rooms on a real Synapse.

    .venv/bin/python bench/gazette.py            # N = 10 (3 runs), 50, 200 (1 run); pace 1 s, 0
    .venv/bin/python bench/gazette.py --rooms 10 --paces 1 --runs 5
    .venv/bin/python bench/gazette.py --rooms 200 --paces 0   # ~16 min: the floor is 950 s

Each run starts a throw-away Synapse with its DEFAULT rate limits (`rc_message`
read from Synapse's code, as Tchap limits bots too), creates N rooms with the
bot's account (its limits lifted for the set-up only), subscribes them to the
gazette, then has the real gazette desk build a draft, take an item from one
editor, the approval of another and publish it (`issue:<n>` outbox rows, not
timed: that is editors' work). What is timed is the real `Broadcaster` and
`MatrixChat` delivering the issue. Every room's timeline is then read back from
the server: a room without the issue is a loss, one with two a duplicate (both
must be 0). The ratio compares the time with the floor the rate limit and the
pace allow: max((N - burst) / rate, (N - 1) * pace). Prints each run, then the
median of the runs for each (N, pace).

Measured here (November 2026, 2 shared CPUs; Synapse 0.2/s, burst 10; medians of 3):

    rooms  pace  publish   floor    ratio  lost  dup  429s (requests refused, then retried)
       10   1 s     9.0 s    9.0 s  1.005     0    0     0
       10   0       0.2 s    0.0 s    n/a     0    0     0
       50   1 s   200.6 s  200.0 s  1.003     0    0    39
       50   0     200.6 s  200.0 s  1.003     0    0    52
      200   1 s   950.6 s  950.0 s  1.001     0    0   189   (one run)
      200   0     950.6 s  950.0 s  1.001     0    0   202   (one run)

Beyond the burst, Synapse's default limit (one message per 5 s) sets the time,
not the pace: nearly every post after the 10th is refused once (429) and sent
after the wait the server names.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fanout import synapse_default_rc_message  # noqa: E402
from bot.devserver import DevHomeserver  # noqa: E402
from tests.fanout import ISSUE_HEADER, GazetteFanOut  # noqa: E402


async def run(n_rooms: int, pace: float, work: Path) -> dict[str, float]:
    with DevHomeserver(work / "synapse", raised_limits=False) as hs:
        async with GazetteFanOut(hs, work, pace=pace) as bench:
            rooms = await bench.create_rooms(n_rooms)
            await bench.sync()
            number = await bench.publish_issue()
            t0 = time.perf_counter()
            sent, statuses = await bench.deliver(f"issue:{number}")
            elapsed = time.perf_counter() - t0
            counts = await asyncio.gather(
                *(
                    asyncio.to_thread(
                        lambda r=r: sum(
                            1 for b in bench.posts(r) if b.startswith(f"{ISSUE_HEADER}{number}")
                        )
                    )
                    for r in rooms
                )
            )
            rate_limited = bench.chat.rate_limited
    rate, burst = synapse_default_rc_message()
    theory = max((n_rooms - burst) / rate, (n_rooms - 1) * pace, 0.0)
    return {
        "elapsed_s": elapsed,
        "theoretical_s": theory,
        "sent": sent,
        "failed": sum(1 for s in statuses.values() if s != "sent"),
        "lost": sum(1 for c in counts if c == 0),
        "duplicates": sum(1 for c in counts if c > 1),
        "http_429": rate_limited,
    }


def show(n_rooms: int, pace: float, f: dict[str, float], label: str = "run") -> str:
    ratio = f"{f['elapsed_s'] / f['theoretical_s']:.3f}" if f["theoretical_s"] else "n/a"
    return (
        f"{label}: rooms={n_rooms} pace={pace:g}s  publish {f['elapsed_s']:.1f}s "
        f"(floor {f['theoretical_s']:.1f}s, ratio {ratio})  sent {f['sent']:.0f}, "
        f"failed {f['failed']:.0f}, lost {f['lost']:.0f}, duplicates {f['duplicates']:.0f}, "
        f"429 {f['http_429']:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument(
        "--paces", type=float, nargs="+", default=[1.0, 0.0], help="broadcasts.pace, seconds"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per (rooms, pace) for small N")
    parser.add_argument(
        "--small", type=int, default=10, help="up to this many rooms, --runs runs; above, one"
    )
    args = parser.parse_args()
    # nio logs each 429 it waits out; the figures count them.
    logging.getLogger("nio").setLevel(logging.ERROR)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    rate, burst = synapse_default_rc_message()
    print(f"Synapse default rc_message: {rate:g}/s, burst {burst:g}", flush=True)
    medians = []
    for n_rooms in args.rooms:
        for pace in args.paces:
            # Larger N: one run lasts minutes (the rate limit's floor dominates): once.
            runs = args.runs if n_rooms <= args.small else 1
            results = []
            for _ in range(runs):
                with tempfile.TemporaryDirectory(prefix="bench-gazette-") as tmp:
                    figures = asyncio.run(run(n_rooms, pace, Path(tmp)))
                print("  " + show(n_rooms, pace, figures), flush=True)
                results.append(figures)
            median = {k: statistics.median(r[k] for r in results) for k in results[0]}
            # Losses and duplicates are summed, not medianed: any is a failure.
            for key in ("lost", "duplicates", "failed"):
                median[key] = sum(r[key] for r in results)
            medians.append(show(n_rooms, pace, median, label=f"median of {runs}"))
            print(medians[-1], flush=True)
    print("\n".join(["", "summary (lost/duplicates/failed: totals over the runs)", *medians]))


if __name__ == "__main__":
    main()
