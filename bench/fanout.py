"""Fan-out of one post to N rooms on a real Synapse: default vs raised rate limits.

    .venv/bin/python bench/fanout.py --rooms 1000 --limits default [--pace 1]
    .venv/bin/python bench/fanout.py --rooms 1000 --limits raised  [--pace 1]

Starts a throw-away Synapse on loopback (`default`: Synapse's own `rc_message`,
read from its code; `raised`: 1000/s), creates N rooms with the bot's account
(limits lifted for the set-up only, through the admin API), subscribes them to
the gazette and queues one gazette post, then times the real `Broadcaster`
and `MatrixChat` delivering it. Afterwards every room's timeline is read back
from the server: a room with no post is a lost message, one with two a
duplicate. Prints the time, the 429s received, lost/duplicates (must be 0) and
the ratio to the theoretical time allowed by the rate limit and the pace:
max((N - burst) / rate, (N - 1) * pace).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.devserver import DevHomeserver  # noqa: E402
from tests.fanout import GazetteFanOut  # noqa: E402


def synapse_default_rc_message() -> tuple[float, float]:
    """(per_second, burst_count) that Synapse applies when not configured."""
    from synapse.config.ratelimiting import RatelimitConfig

    cfg = RatelimitConfig.__new__(RatelimitConfig)
    cfg.read_config({})
    return cfg.rc_message.per_second, cfg.rc_message.burst_count


async def run(n_rooms: int, limits: str, pace: float, work: Path) -> dict[str, float]:
    with DevHomeserver(work / "synapse", raised_limits=limits == "raised") as hs:
        async with GazetteFanOut(hs, work, pace=pace) as bench:
            t0 = time.perf_counter()
            rooms = await bench.create_rooms(n_rooms)
            print(f"set-up: {n_rooms} rooms in {time.perf_counter() - t0:.0f}s", flush=True)
            await bench.sync()
            rate, burst = synapse_default_rc_message() if limits == "default" else (1000.0, 1000.0)
            if limits == "default":
                # The set-up did not touch the bucket, but be sure it is full.
                await asyncio.sleep(burst / rate)
            t0 = time.perf_counter()
            sent, statuses = await bench.post("gazette:bench")
            elapsed = time.perf_counter() - t0
            counts = await asyncio.gather(
                *(asyncio.to_thread(lambda r=r: len(bench.posts(r))) for r in rooms)
            )
            rate_limited = bench.chat.rate_limited

    theory = max((n_rooms - burst) / rate, (n_rooms - 1) * pace, 0.0)
    figures = {
        "rooms": n_rooms,
        "elapsed_s": elapsed,
        "theoretical_s": theory,
        "sent": sent,
        "failed": sum(1 for s in statuses.values() if s != "sent"),
        "lost": sum(1 for c in counts if c == 0),
        "duplicates": sum(1 for c in counts if c > 1),
        "http_429": rate_limited,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(
        f"limits={limits} (rc_message {rate:g}/s, burst {burst:g}) pace={pace:g}s rooms={n_rooms}\n"
        f"  fan-out {elapsed:.1f}s ({n_rooms / elapsed:.1f} posts/s), theoretical "
        + (f"{theory:.1f}s, ratio {elapsed / theory:.3f}\n" if theory else "none (no limit)\n")
        + f"  sent {figures['sent']}, not sent {figures['failed']}, lost {figures['lost']}, "
        f"duplicates {figures['duplicates']}, 429 received {figures['http_429']}, "
        f"peak RSS {figures['peak_rss_mib']:.0f} MiB",
        flush=True,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--limits", choices=("default", "raised"), default="default")
    parser.add_argument("--pace", type=float, default=1.0, help="broadcasts.pace, seconds")
    args = parser.parse_args()
    # nio logs each 429 it waits out; the figures below count them.
    logging.getLogger("nio").setLevel(logging.ERROR)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        asyncio.run(run(args.rooms, args.limits, args.pace, Path(tmp)))


if __name__ == "__main__":
    main()
