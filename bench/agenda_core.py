"""The agenda core with 10,000 sessions: answers, diff, export, and the event loop during a refresh.

    .venv/bin/python bench/agenda_core.py [--sessions 10000] [--runs 200]

No homeserver: commands go through the real dispatcher (registry, error
boundary, templates) with a recording fake chat, so the figures are the bot's
own work per answer. Prints medians and p90 in milliseconds:

- `!agenda`, `!agenda grist`, `!prochain`, `!session <id>` (target: median <= 5 ms);
- `!agenda ics semaine` (an .ics file of a week; built once per agenda, then cached);
- `!agenda ics` at its largest (2,000 sessions): the event loop during its first
  build (in a thread, as the bot does) against the same built on the loop;
- the programme diff of two 10,000-session agendas (new UIDs everywhere, one move);
- the event loop while a 10,000-event calendar is refreshed: how late a 10 ms
  ticker wakes up (`AgendaService.refresh`, which parses and diffs in a
  separate process, as the bot does) against the same parse run on the loop
  itself, and `!agenda` answered during the refresh. bench/agenda_start.py
  measures the stall more finely (1 ms probe) and the cold start.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.agenda_latency import calendar  # noqa: E402
from bot.agenda.changes import diff  # noqa: E402
from bot.agenda.export import IcsExports, to_ics  # noqa: E402
from bot.agenda.model import Agenda  # noqa: E402
from bot.agenda.sources import AgendaService  # noqa: E402
from bot.agenda.worker import parse_source  # noqa: E402
from bot.chat import IncomingMessage  # noqa: E402
from bot.commands import build_registry  # noqa: E402
from bot.commands.agenda import MAX_EXPORT  # noqa: E402
from bot.commands.core import Services  # noqa: E402
from bot.db.storage import Storage  # noqa: E402
from bot.dispatch import Dispatcher  # noqa: E402
from bot.render import Renderer  # noqa: E402
from tests.fakes import FakeChat, make_config  # noqa: E402

PARIS = ZoneInfo("Europe/Paris")


def stats(values: list[float]) -> str:
    if not values:
        return "no sample (the loop never ran)"
    ms = sorted(v * 1000 for v in values)
    p90 = ms[int(len(ms) * 0.9) - 1] if len(ms) >= 10 else ms[-1]
    return f"median {statistics.median(ms):7.2f} ms   p90 {p90:7.2f} ms   (n={len(ms)})"


async def time_command(dispatcher: Dispatcher, text: str, runs: int) -> list[float]:
    out = []
    for i in range(runs):
        msg = IncomingMessage("!r:x", f"$b{i}", "@u:x", text)
        start = time.perf_counter()
        reply = await dispatcher.answer(msg)
        out.append(time.perf_counter() - start)
        assert reply is not None
    return out


async def ticker_lateness(stop: asyncio.Event, period: float = 0.01) -> list[float]:
    late = []
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + period
        await asyncio.sleep(period)
        late.append(max(0.0, loop.time() - due))
    return late


async def ask_while_refreshing(
    dispatcher: Dispatcher, done: asyncio.Event, answers: list[float]
) -> None:
    while not done.is_set():
        answers.extend(await time_command(dispatcher, "!agenda", 1))
        await asyncio.sleep(0.05)


async def export_stall(
    dispatcher: Dispatcher, services: Services, agenda: Agenda, now: datetime, runs: int
) -> None:
    count = min(len(agenda), MAX_EXPORT)
    print(f"\n!agenda ics, {count} sessions (10 ms ticker during the build):")
    for label in ("first build, in a thread (the bot)", "the same on the loop (before)"):
        dispatcher.services = replace(services, exports=IcsExports())  # nothing cached
        stop = asyncio.Event()
        ticker = asyncio.create_task(ticker_lateness(stop))
        await asyncio.sleep(0.02)  # the ticker is running
        t0 = time.perf_counter()
        if label.startswith("first"):
            await time_command(dispatcher, "!agenda ics", 1)
        else:
            to_ics(list(agenda)[:MAX_EXPORT], tz=PARIS, now=now, language="fr")
        took = time.perf_counter() - t0
        stop.set()
        late = await ticker
        print(f"  {label}: {took * 1000:.0f} ms; ticker worst lateness {max(late) * 1000:.0f} ms")
        if label.startswith("first"):
            cached = await time_command(dispatcher, "!agenda ics", runs)
            print(f"  asked again (same agenda): {stats(cached)}")
    dispatcher.services = services


async def bench(n: int, runs: int, work: Path) -> None:
    now = datetime.now(UTC)
    ics = work / "big.ics"
    ics.write_text(calendar(n, now + timedelta(hours=1)))
    storage = await Storage.open(work / "db.sqlite")
    cfg = make_config(work, agenda={"sources": [str(ics)]})
    async with aiohttp.ClientSession() as http:
        agenda = AgendaService([str(ics)], storage, http, PARIS, timedelta(days=3660), lambda: now)
        t0 = time.perf_counter()
        await agenda.start()
        print(f"loaded {len(agenda.agenda)} sessions in {time.perf_counter() - t0:.2f} s")
        services = Services(
            config=cfg, renderer=Renderer("fr", PARIS), agenda=agenda, now=lambda: now
        )
        dispatcher = Dispatcher(build_registry(), services, FakeChat(), storage)
        some = list(agenda.agenda)[n // 2].sid

        print(f"\ncore answers, {n} sessions, {runs} runs each")
        for text in ("!agenda", "!agenda grist", "!prochain", f"!session {some}"):
            print(f"  {text:<22} {stats(await time_command(dispatcher, text, runs))}")
        text = "!agenda ics semaine"
        print(f"  {text:<22} {stats(await time_command(dispatcher, text, max(runs // 10, 5)))}")
        await export_stall(dispatcher, services, agenda.agenda, now, max(runs // 10, 5))

        old = agenda.agenda
        reshuffled = [replace(s, uid=f"new-{i}") for i, s in enumerate(old)]
        moved = list(reshuffled)
        moved[n // 3] = replace(
            moved[n // 3], start=moved[n // 3].start + timedelta(hours=1), sid="", search_key=""
        )
        new = Agenda(moved)
        timings, found = [], None
        for _ in range(5):
            t0 = time.perf_counter()
            found = diff(old, new, now=now)
            timings.append(time.perf_counter() - t0)
        assert found is not None
        print(
            f"\ndiff of two {n}-session agendas (all UIDs new, one move): {stats(timings)}; "
            f"changes found: {len(found.changes)}"
        )

        gc.freeze()  # as bot.app does once started: no full collection over the agenda
        print(f"\nevent loop during a refresh of a {n}-event calendar (10 ms ticker):")
        for label in ("refresh, as the bot does", "parse on the loop (for comparison)"):
            ics.write_text(calendar(n, now + timedelta(hours=2)))  # changed: a full parse
            stop = asyncio.Event()
            ticker = asyncio.create_task(ticker_lateness(stop))
            answers: list[float] = []

            asker = asyncio.create_task(ask_while_refreshing(dispatcher, stop, answers))
            t0 = time.perf_counter()
            if label.startswith("refresh"):
                await agenda.refresh()
            else:
                parse_source(
                    ics.read_bytes(),
                    str(ics),
                    tz=PARIS,
                    window_start=now - timedelta(days=1),
                    window_end=now + timedelta(days=3660),
                )
            took = time.perf_counter() - t0
            stop.set()
            late = await ticker
            await asker
            if late:
                ticks = f"ticker lateness {stats(late)}, worst {max(late) * 1000:.0f} ms"
            else:
                ticks = "the loop was blocked for the whole refresh"
            print(
                f"  {label}: refresh {took:.2f} s; {ticks}; "
                f"!agenda answered {len(answers)} times during it"
                + (f", {stats(answers)}" if answers else "")
            )
    await storage.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args.sessions, args.runs, Path(tmp)))


if __name__ == "__main__":
    main()
