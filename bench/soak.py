"""A year of operation compressed: 100,000 commands and 2,000 refreshes; does the RSS stay flat?

    .venv/bin/python bench/soak.py [--commands 100000] [--refreshes 2000] [--events 300]

In-process, no homeserver (the style of bench/agenda_core.py): commands go
through the real dispatcher (registry, templates, renderer) with a fake chat;
the agenda is refreshed from a local calendar rewritten before each refresh
(the next 60 days of a fake clock that moves 4 h 23 min per refresh, so that
2,000 refreshes are a year; one session moved each time, so each refresh
parses, diffs and saves), with the parser in a thread (`ThreadParser`: the
bot's parser process gives its memory back when it ends, what is measured
here is what stays in the bot). Every 50 refreshes a moderator edits a
session; every 2 refreshes old rows are pruned, as the bot's jobs do.

After start-up and a warm-up (a tenth of the work), `gc.freeze()` as
`bot.app` does; then RSS (VmRSS) at each tenth, and the ratio of the final
RSS to the RSS after warm-up (target: within 10 %).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.agenda.sources import AgendaService  # noqa: E402
from bot.agenda.worker import ThreadParser  # noqa: E402
from bot.chat import IncomingMessage  # noqa: E402
from bot.commands import build_registry  # noqa: E402
from bot.commands.core import Services  # noqa: E402
from bot.db.storage import Storage  # noqa: E402
from bot.dispatch import Dispatcher  # noqa: E402
from bot.render import Renderer  # noqa: E402
from tests.fakes import FakeChat, FakeClock, make_config  # noqa: E402
from tests.helpers import webinar_calendar  # noqa: E402

PARIS = ZoneInfo("Europe/Paris")
STEP = timedelta(days=365) / 2000
MOD = "@mod:example.org"


def rss_mib() -> float:
    text = Path("/proc/self/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    assert match
    return int(match.group(1)) / 1024


def calendar(now: datetime, n: int, moved: int) -> str:
    """n sessions over the next 60 days from `now`, on a fixed grid (stable ids), one moved."""
    grid = timedelta(days=60) / n
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    first = int((now - origin) / grid) + 1
    starts = (
        (i, origin + i * grid + (timedelta(hours=1) if i % n == moved % n else timedelta(0)))
        for i in range(first, first + n)
    )
    return webinar_calendar(starts, uid="soak-{i}")


async def soak(commands: int, refreshes: int, events: int, work: Path) -> float:
    clock = FakeClock(datetime(2027, 1, 4, 8, 0, tzinfo=UTC))
    ics = work / "agenda.ics"
    ics.write_text(calendar(clock(), events, 0))
    storage = await Storage.open(work / "db.sqlite")
    cfg = make_config(work, agenda={"sources": [str(ics)]})
    per_refresh = max(1, commands // refreshes)
    texts = ["!agenda", "!agenda grist", "!prochain", "!agenda semaine", "!aide"]
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        agenda = AgendaService(
            [str(ics)], storage, http, PARIS, timedelta(days=366), clock, parser=ThreadParser()
        )
        await agenda.start()
        services = Services(config=cfg, renderer=Renderer("fr", PARIS), agenda=agenda, now=clock)
        chat = FakeChat()
        dispatcher = Dispatcher(build_registry(), services, chat, storage)
        asked = 0
        warm_up = refreshes // 10
        baseline = 0.0
        print(f"start-up: RSS {rss_mib():.1f} MiB, {len(agenda.agenda)} sessions")
        for r in range(1, refreshes + 1):
            for _ in range(per_refresh):
                some = list(agenda.agenda)
                text = texts[asked % len(texts)]
                if asked % 7 == 6 and some:
                    text = f"!session {some[asked % len(some)].sid}"
                msg = IncomingMessage(f"!r{asked % 20}:x", f"$e{asked}", f"@u{asked % 50}:x", text)
                assert await dispatcher.answer(msg) is not None
                asked += 1
            clock.value += STEP
            ics.write_text(calendar(clock(), events, r))
            await agenda.refresh()
            if r % 50 == 0 and len(agenda.agenda):
                target = list(agenda.agenda)[len(agenda.agenda) // 2]
                await agenda.modify(target.sid, {"location": f"Salle {r}"}, MOD)
            if r % 2 == 0:
                await storage.prune()
            chat.sent.clear()
            if r == warm_up:
                gc.collect()
                gc.freeze()  # as bot.app does once started
                baseline = rss_mib()
                print(f"after warm-up ({asked} commands, {r} refreshes): RSS {baseline:.1f} MiB")
            elif r > warm_up and r % max(1, refreshes // 10) == 0:
                print(
                    f"  {asked:>7} commands, {r:>5} refreshes, {time.perf_counter() - t0:6.0f} s: "
                    f"RSS {rss_mib():.1f} MiB, {len(agenda.agenda)} sessions"
                )
    await storage.close()
    final = rss_mib()
    ratio = final / baseline
    print(f"final RSS {final:.1f} MiB; final / after warm-up = {ratio:.3f} (target <= 1.10)")
    print(f"took {time.perf_counter() - t0:.0f} s")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--refreshes", type=int, default=2_000)
    parser.add_argument("--events", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(soak(args.commands, args.refreshes, args.events, Path(tmp)))


if __name__ == "__main__":
    main()
