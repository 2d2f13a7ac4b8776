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
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot import config as configuration  # noqa: E402
from bot.agenda.sources import AgendaService  # noqa: E402
from bot.broadcast import TXN_PREFIX, Broadcaster  # noqa: E402
from bot.devserver import DevHomeserver  # noqa: E402
from bot.matrix import MatrixChat  # noqa: E402
from bot.render import Renderer  # noqa: E402
from bot.storage import GAZETTE, Storage  # noqa: E402

PASSWORD = "bench-password"
TZ = ZoneInfo("Europe/Paris")


def synapse_default_rc_message() -> tuple[float, float]:
    """(per_second, burst_count) that Synapse applies when not configured."""
    from synapse.config.ratelimiting import RatelimitConfig

    cfg = RatelimitConfig.__new__(RatelimitConfig)
    cfg.read_config({})
    return cfg.rc_message.per_second, cfg.rc_message.burst_count


async def run(n_rooms: int, limits: str, pace: float, work: Path) -> dict[str, float]:
    with DevHomeserver(work / "synapse", raised_limits=limits == "raised") as hs:
        admin_id = hs.register("admin", PASSWORD, admin=True)
        admin = hs.login(admin_id, PASSWORD)
        bot_id = hs.register("bot", PASSWORD)
        cfg = configuration.from_dict(
            {
                "matrix": {"homeserver": hs.url, "user_id": bot_id, "password": PASSWORD},
                "storage": {"path": str(work / "data")},
                "agenda": {"sources": []},
                "broadcasts": {"pace": pace},
            },
            env={},
        )
        (work / "data").mkdir()
        storage = await Storage.open(work / "data" / "bluehats.db")
        chat = MatrixChat(cfg.matrix, work / "data", storage)
        http = aiohttp.ClientSession()
        try:
            await chat.connect()
            # Set-up: N rooms created by the bot, its limits lifted meanwhile.
            hs.override_ratelimit(admin, bot_id, unlimited=True)
            t0 = time.perf_counter()
            gate = asyncio.Semaphore(8)

            async def create() -> str:
                async with gate:
                    resp = await chat.client.room_create(name="bench")
                    return str(resp.room_id)  # type: ignore[union-attr]

            rooms = await asyncio.gather(*(create() for _ in range(n_rooms)))
            for room_id in rooms:
                await storage.subscribe(room_id, GAZETTE, admin_id)
            print(f"set-up: {n_rooms} rooms in {time.perf_counter() - t0:.0f}s", flush=True)
            hs.override_ratelimit(admin, bot_id, unlimited=False)

            async def ignore(_message: object) -> None:
                return None

            chat.on_message = ignore
            sync = asyncio.create_task(chat.run())
            await asyncio.wait_for(chat.synced.wait(), 600)
            rate, burst = synapse_default_rc_message() if limits == "default" else (1000.0, 1000.0)
            if limits == "default":
                # The set-up did not touch the bucket, but be sure it is full.
                await asyncio.sleep(burst / rate)

            renderer = Renderer("fr", TZ)
            agenda = AgendaService(
                [], storage, http, TZ, timedelta(days=30), lambda: datetime.now(UTC)
            )
            broadcaster = Broadcaster(
                storage,
                chat,
                renderer,
                agenda,
                prefix="!",
                now=lambda: datetime.now(UTC),
                pace=timedelta(seconds=pace),
                offsets=[],
                grace=timedelta(minutes=15),
            )
            await storage.queue_broadcast("gazette:bench", GAZETTE, TXN_PREFIX)
            t0 = time.perf_counter()
            sent = await broadcaster.deliver()
            elapsed = time.perf_counter() - t0
            sync.cancel()
            statuses = await storage.outbox_status("gazette:bench")

            def posts(room_id: str) -> int:
                quoted = urllib.parse.quote(room_id)
                page = hs.call(
                    "GET",
                    f"/_matrix/client/v3/rooms/{quoted}/messages?dir=b&limit=50",
                    token=str(chat.client.access_token),
                )
                return sum(
                    1
                    for e in page["chunk"]
                    if e["type"] == "m.room.message" and e["sender"] == bot_id
                )

            counts = await asyncio.gather(*(asyncio.to_thread(posts, r) for r in rooms))
        finally:
            await http.close()
            await chat.close()
            await storage.close()

    theory = max((n_rooms - burst) / rate, (n_rooms - 1) * pace, 0.0)
    figures = {
        "rooms": n_rooms,
        "elapsed_s": elapsed,
        "theoretical_s": theory,
        "sent": sent,
        "failed": sum(1 for s in statuses.values() if s != "sent"),
        "lost": sum(1 for c in counts if c == 0),
        "duplicates": sum(1 for c in counts if c > 1),
        "http_429": chat.rate_limited,
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
