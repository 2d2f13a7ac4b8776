"""A restart with 10,000 sessions and 300 rooms, and the event loop during a refresh.

    .venv/bin/python bench/agenda_start.py [--only start|stall|formats] [--runs 5]
        [--rooms 300] [--sessions 10000] [--code DIR [--code DIR2 …]]

`--code DIR` runs the bot's code found in DIR (a git worktree of another
commit, e.g. `git worktree add --detach /tmp/before 831d8c5`), to compare
before and after with the same script. Prints medians of `--runs` runs.
Given twice or more (before first), `start` measures each tree on the same
homeserver and rooms, their runs interleaved (on a shared machine the load
then weighs on each alike), and prints each median's ratio to the first's.

- start: a throw-away Synapse, 300 rooms the bot is in, a calendar file of N
  sessions, the bot already started once and refreshed (so this is a
  restart). Each run sends `!agenda` while the bot is down, spawns
  `bluehats-bot run` and times spawn → the answer seen by the user (goal
  <= 1.5 s), with the bot's CPU time by then; peak RSS of the bot process
  (VmHWM, goal <= 120 MiB) and of its children (the parser process) once
  the start-up refresh is over. Two cases: the calendar unchanged while
  down, and changed while down (the start-up refresh then parses it).
- stall: `AgendaService.refresh()` of a changed N-event calendar (1 % of
  sessions moved, every UID new) with a loop-lag probe (a task sleeping 1 ms
  and recording how late it wakes up): worst lag (goal <= 20 ms), p99, the
  refresh's duration; the same for a moderator's cancel + restore.
- formats: loading N stored sessions as one packed blob per source against
  one row per session (why the bot stores a blob).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password"
TOPICS = ["Superset", "Grist", "Matomo", "Nextcloud", "Peertube", "OpenFisca", "Metabase"]


def calendar(n: int, start: datetime, variant: int = 0) -> str:
    """N sessions every 3 hours; variant > 0 moves 1 % of them and draws new UIDs."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//bench//FR"]
    for i in range(n):
        t = start + timedelta(hours=3 * i)
        if variant and i % 100 == 0:
            t += timedelta(hours=variant)
        lines += [
            "BEGIN:VEVENT",
            f"UID:bench-{variant}-{i}@bluehats",
            "DTSTAMP:20260101T000000Z",
            f"DTSTART:{t:%Y%m%dT%H%M%SZ}",
            "DURATION:PT1H",
            f"SUMMARY:Webinaire {TOPICS[i % len(TOPICS)]} n°{i}",
            f"DESCRIPTION:Présentation et questions sur {TOPICS[i % len(TOPICS)]}.",
            "LOCATION:https://webinaire.numerique.gouv.fr/meeting/bench",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def kib(pid: int, key: str = "VmHWM") -> int:
    try:
        with Path(f"/proc/{pid}/status").open() as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far: unlike wall time, barely moved
    by the other processes of a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


class ChildPeak:
    """Samples the peak RSS of a process's children (they may live a few seconds only)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            for child in children(self.pid):
                self.peak = max(self.peak, kib(child))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


# -- start: spawn → first answer -------------------------------------------------------


async def bench_start(
    codes: list[Path], runs: int, n_rooms: int, n_sessions: int, work: Path
) -> None:
    import yaml
    from nio import AsyncClient, RoomMessageNotice, SyncResponse

    from bot.devserver import DevHomeserver

    now = datetime.now(UTC)
    ics = work / "agenda.ics"
    versions = [calendar(n_sessions, now + timedelta(hours=1), v) for v in (0, 1)]
    ics.write_text(versions[0])
    bin_dir = Path(sys.executable).parent

    with DevHomeserver(work / "synapse") as hs:
        bot_id = hs.register("bot", PASSWORD)
        user_id = hs.register("user", PASSWORD)
        config = work / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "matrix": {"homeserver": hs.url, "user_id": bot_id},
                    "storage": {"path": str(work / "data")},
                    "agenda": {"sources": [str(ics)], "horizon": "1830d"},
                }
            )
        )
        user = AsyncClient(hs.url, user_id)
        await user.login(PASSWORD)
        rooms: list[str] = []
        t0 = time.perf_counter()
        for first in range(0, n_rooms, 20):
            created = await asyncio.gather(
                *(
                    user.room_create(name=f"bench {i}", invite=[bot_id])
                    for i in range(first, min(first + 20, n_rooms))
                )
            )
            rooms += [r.room_id for r in created]  # type: ignore[union-attr]
        print(f"{n_rooms} rooms created in {time.perf_counter() - t0:.1f} s", flush=True)
        room = rooms[0]

        async def stop(bot: Any) -> None:
            bot.terminate()
            try:
                async with asyncio.timeout(15):
                    await bot.wait()
            except TimeoutError:
                # Seen on main too: SIGTERM while a broadcast round commits can
                # leave the bot waiting (bot/db/database.py transaction()).
                print("  (the bot did not stop on SIGTERM within 15 s: killed)", flush=True)
                bot.kill()
                await bot.wait()

        def spawn(log: Path, code: Path) -> Any:
            env = {**os.environ, "PYTHONPATH": str(code), "BLUEHATS_MATRIX_PASSWORD": PASSWORD}
            return asyncio.create_subprocess_exec(
                str(bin_dir / "bluehats-bot"),
                "run",
                "--config",
                str(config),
                stdout=log.open("wb"),
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )

        async def refreshed(log: Path) -> None:
            """Until the start-up refresh is over (the second agenda size line)."""
            async with asyncio.timeout(120):
                # The bot is another process: its log is the only signal.
                while True:
                    text = await asyncio.to_thread(log.read_text, errors="replace")
                    if text.count("agenda: ") >= 2:
                        return
                    await asyncio.sleep(0.05)

        async def answer(sent_id: str) -> None:
            while True:
                resp = await user.sync(timeout=30_000)
                if not isinstance(resp, SyncResponse):
                    continue
                joined = resp.rooms.join.get(room)
                for event in joined.timeline.events if joined else []:
                    relates = event.source.get("content", {}).get("m.relates_to", {})
                    if (
                        isinstance(event, RoomMessageNotice)
                        and event.sender == bot_id
                        and relates.get("m.in_reply_to", {}).get("event_id") == sent_id
                    ):
                        return

        async def ask() -> str:
            sent = await user.room_send(
                room, "m.room.message", {"msgtype": "m.text", "body": "!agenda"}
            )
            return str(sent.event_id)  # type: ignore[union-attr]

        # The first start: joins the rooms, parses, refreshes. Not measured.
        log = work / "bot-first.log"
        t0 = time.perf_counter()
        bot = await spawn(log, codes[0])
        try:
            await user.sync(timeout=0)
            async with asyncio.timeout(600):
                for r in rooms:
                    while True:
                        members = getattr(await user.joined_members(r), "members", [])
                        if bot_id in {m.user_id for m in members}:
                            break
                        await asyncio.sleep(0.2)
            await refreshed(log)
            sent = await ask()
            await answer(sent)
            print(f"first start: all rooms joined in {time.perf_counter() - t0:.1f} s", flush=True)
        finally:
            await stop(bot)

        for case in ("unchanged", "changed"):
            took: dict[Path, list[float]] = {c: [] for c in codes}
            bot_peak: dict[Path, list[float]] = {c: [] for c in codes}
            child_peak: dict[Path, list[float]] = {c: [] for c in codes}
            cpu: dict[Path, list[float]] = {c: [] for c in codes}
            spawned = 0
            for run in range(runs):
                # Interleaved, each tree first in turn: the machine's load weighs alike.
                for i in range(len(codes)):
                    code = codes[(run + i) % len(codes)]
                    spawned += 1
                    if case == "changed":  # the calendar changed while the bot was down
                        ics.write_text(versions[spawned % 2])
                    sent = await ask()
                    log = work / f"bot-{case}-{run}-{i}.log"
                    t0 = time.perf_counter()
                    bot = await spawn(log, code)
                    sampler = ChildPeak(bot.pid)
                    try:
                        async with asyncio.timeout(120):
                            await answer(sent)
                        took[code].append(time.perf_counter() - t0)
                        cpu[code].append(cpu_seconds(bot.pid))
                        await refreshed(log)
                        bot_peak[code].append(kib(bot.pid) / 1024)
                    finally:
                        child_peak[code].append(sampler.stop() / 1024)
                        await stop(bot)
                    if "Traceback" in log.read_text(errors="replace"):
                        print(f"  (see {log}: a traceback)")
            for code in codes:
                times = took[code]
                print(
                    (f"{code}: " if len(codes) > 1 else "")
                    + f"restart, calendar {case} while down ({n_rooms} rooms, {n_sessions} "
                    f"sessions, {runs} runs): spawn → first !agenda answer median "
                    f"{median(times):.2f} s (runs: "
                    + ", ".join(f"{v:.2f}" for v in times)
                    + f"); bot CPU time when it is seen median {median(cpu[code]):.2f} s"
                    + f"; bot peak RSS median {median(bot_peak[code]):.0f} MiB "
                    f"(max {max(bot_peak[code]):.0f})"
                    + f"; parser process peak RSS {max(child_peak[code]):.0f} MiB"
                    + (
                        f"; {median(times) / median(took[codes[0]]):.2f} × the first tree's"
                        if code != codes[0]
                        else ""
                    ),
                    flush=True,
                )
        await user.close()


# -- stall: the event loop during a refresh -----------------------------------------------


async def probe(stop: asyncio.Event, lags: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.001)
        lags.append(max(0.0, loop.time() - t - 0.001))


async def probed(action: Callable[[], Any]) -> tuple[float, float, float]:
    """(worst lag, p99 lag, duration) of the loop while `action()` runs, in seconds."""
    stop, lags = asyncio.Event(), []  # type: ignore[var-annotated]
    task = asyncio.create_task(probe(stop, lags))
    await asyncio.sleep(0.01)
    lags.clear()
    t0 = time.perf_counter()
    await action()
    took = time.perf_counter() - t0
    stop.set()
    await task
    lags.sort()
    return lags[-1], lags[int(len(lags) * 0.99) - 1], took


async def bench_stall(code: Path, runs: int, n_sessions: int, work: Path) -> None:
    from zoneinfo import ZoneInfo

    import aiohttp

    from bot.agenda.sources import AgendaService
    from bot.db.storage import Storage

    try:
        from bot.agenda.worker import ProcessParser  # after

        parser: dict[str, Any] = {"parser": ProcessParser()}
    except ImportError:  # before: parsing in a thread
        parser = {}
    freezes = "gc.freeze()" in (code / "bot" / "app.py").read_text()
    now = datetime.now(UTC)
    ics = work / "stall.ics"
    versions = [calendar(n_sessions, now + timedelta(hours=1), v) for v in (0, 1)]
    ics.write_text(versions[0])
    storage = await Storage.open(work / "stall.sqlite")
    paris = ZoneInfo("Europe/Paris")
    async with aiohttp.ClientSession() as http:
        svc = AgendaService(
            [str(ics)], storage, http, paris, timedelta(days=1830), lambda: now, **parser
        )
        await svc.start()
        if freezes:  # as the bot does once started
            gc.freeze()
        floor = [(await probed(lambda: asyncio.sleep(3)))[0] for _ in range(runs)]
        print(
            f"idle loop for 3 s, the floor on this machine ({runs} runs): worst lag median "
            f"{median(floor) * 1000:.1f} ms (max {max(floor) * 1000:.1f} ms)",
            flush=True,
        )
        worst, p99, took, children_peak = [], [], [], []
        for run in range(runs):
            ics.write_text(versions[(run + 1) % 2])
            sampler = ChildPeak(os.getpid())
            w, p, t = await probed(svc.refresh)
            children_peak.append(sampler.stop() / 1024)
            worst.append(w)
            p99.append(p)
            took.append(t)
        assert len(svc.agenda) == n_sessions, len(svc.agenda)
        print(
            f"refresh of a changed {n_sessions}-event calendar ({runs} runs): worst loop lag "
            f"median {median(worst) * 1000:.1f} ms (runs: "
            + ", ".join(f"{v * 1000:.0f}" for v in worst)
            + f"), p99 {median(p99) * 1000:.1f} ms, refresh {median(took):.2f} s"
            + (f", parser process peak RSS {max(children_peak):.0f} MiB" if parser else ""),
            flush=True,
        )
        sid = next(iter(svc.agenda)).sid
        edit_worst = []
        for _ in range(runs):
            w, _p, _t = await probed(lambda: svc.cancel(sid, "@bench:x"))
            edit_worst.append(w)
            w, _p, _t = await probed(lambda: svc.restore(sid, "@bench:x"))
            edit_worst.append(w)
        print(
            f"moderator's cancel / restore with {n_sessions} sessions: worst loop lag median "
            f"{median(edit_worst) * 1000:.1f} ms (max {max(edit_worst) * 1000:.1f} ms)",
            flush=True,
        )
    if parser:
        parser["parser"].close()
    await storage.close()


# -- formats: how stored sessions load ------------------------------------------------------


async def bench_formats(runs: int, n_sessions: int, work: Path) -> None:
    from zoneinfo import ZoneInfo

    from bot.agenda.model import Session
    from bot.agenda.packed import pack, unpack
    from bot.agenda.worker import parse_source
    from bot.db.database import Database

    now = datetime.now(UTC)
    sessions = parse_source(
        calendar(n_sessions, now).encode(),
        "bench.ics",
        tz=ZoneInfo("Europe/Paris"),
        window_start=now - timedelta(days=1),
        window_end=now + timedelta(days=1830),
    )
    db = await Database.open(work / "formats.sqlite")
    await db.execute("CREATE TABLE blob (source TEXT PRIMARY KEY, sessions BLOB NOT NULL)")
    columns = (
        "title, start, end_, all_day, description, location, url, speakers, categories, "
        "event, source, uid, cancelled, sid, search_key"
    )
    await db.execute(f"CREATE TABLE rows ({columns})")
    await db.execute("INSERT INTO blob VALUES ('bench', $1)", pack(sessions))
    async with db.transaction() as tx:
        for s in sessions:
            await tx.execute(
                f"INSERT INTO rows ({columns}) VALUES "  # noqa: S608 - constant names
                "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                s.title,
                s.start.isoformat(),
                s.end.isoformat(),
                s.all_day,
                s.description,
                s.location,
                s.url,
                json.dumps(s.speakers),
                json.dumps(s.categories),
                s.event,
                s.source,
                s.uid,
                s.cancelled,
                s.sid,
                s.search_key,
            )

    async def by_blob() -> list[Session]:
        return unpack(await db.fetchval("SELECT sessions FROM blob"))

    async def by_rows() -> list[Session]:
        fromiso = datetime.fromisoformat
        return [
            Session(
                r[0],
                fromiso(r[1]),
                fromiso(r[2]),
                bool(r[3]),
                r[4],
                r[5],
                r[6],
                tuple(json.loads(r[7])),
                tuple(json.loads(r[8])),
                r[9],
                r[10],
                r[11],
                bool(r[12]),
                r[13],
                r[14],
            )
            for r in await db.fetch(f"SELECT {columns} FROM rows")  # noqa: S608
        ]

    for label, load in (("one packed blob per source", by_blob), ("one row per session", by_rows)):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            loaded = await load()
            times.append(time.perf_counter() - t0)
            assert loaded == sessions
        print(f"load {n_sessions} stored sessions, {label}: median {median(times) * 1000:.1f} ms")
    await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", choices=("start", "stall", "formats"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rooms", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument(
        "--code",
        type=Path,
        action="append",
        help="the bot's code to measure (default: this tree); twice or more: compared",
    )
    args = parser.parse_args()
    codes = [c.resolve() for c in args.code or [ROOT]]
    code = codes[-1]  # stall and formats: the last tree given
    sys.path.insert(0, str(code))
    print("code: " + ", ".join(str(c) for c in codes), flush=True)
    with tempfile.TemporaryDirectory(prefix="bluehats-bench-") as tmp:
        work = Path(tmp)
        if args.only in (None, "stall"):
            asyncio.run(bench_stall(code, args.runs, args.sessions, work))
        if args.only in (None, "formats") and (code / "bot" / "agenda" / "packed.py").exists():
            asyncio.run(bench_formats(args.runs, args.sessions, work))
        if args.only in (None, "start"):
            asyncio.run(bench_start(codes, args.runs, args.rooms, args.sessions, work))


if __name__ == "__main__":
    main()
