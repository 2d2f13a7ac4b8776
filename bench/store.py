"""The store's own costs: `PRAGMA quick_check` at start, and reads beside writes.

    .venv/bin/python bench/store.py [--mb 5] [--commands 2000] [--concurrency 50]

1. A database of about `--mb` MB (a calendar's last good copy and its stored
   sessions, 20,000 inbox and outbox rows, 2,000 subscriptions): the time of
   `Storage.open` (quick_check included) and of `PRAGMA quick_check` alone, warm.
2. Commands as the dispatcher runs them (record in the inbox, three reads,
   mark done), `--concurrency` at a time, while a refresh commits a 2 MB
   agenda transaction every 100 ms; reads done three ways: on their own
   connection (the bot's way), on the writer's connection under the writer's
   lock, and on the writer's connection without the lock (before: a read
   could see another task's uncommitted rows). Prints read latency (median,
   p90, max) and the commands' total time.

Measured here (2 shared CPUs, load average 5-7, December 2026): quick_check
90-130 ms on 5.6-11.9 MB databases, nearly all of `Storage.open`'s time. Reads
with 50 commands in flight and a refresh committing every 100 ms, two rounds:
own connection median 0.8-1.0 ms (p90 4-9 ms), 2,000 commands in 4.7-6.2 s;
under the writer's lock median 21-37 ms (p90 45-83 ms), 6.5-10.3 s; the
former shared connection median 0.8-0.9 ms, 4.8-6.2 s. Reads under the lock
wait for every write and for the refresh's commit: the own connection costs
nothing measurable against the shared one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.db.agenda import SourceBody, StoredSessions  # noqa: E402
from bot.db.database import Database, Row  # noqa: E402
from bot.db.storage import Storage  # noqa: E402
from bot.db.upgrade import upgrades  # noqa: E402


class LockedReads(Database):
    """Reads on the writer's connection, waiting for the writer's lock."""

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        async with self._write:
            return await self._writes.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        async with self._write:
            return await self._writes.fetchrow(query, *args)


class SharedReads(Database):
    """Reads on the writer's connection, not waiting (what the bot did before)."""

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        return await self._writes.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        return await self._writes.fetchrow(query, *args)


def ms(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[int(len(values) * 0.9)]
    median = statistics.median(values)
    return f"median {median:7.2f} ms, p90 {p90:7.2f} ms, max {values[-1]:7.2f} ms"


async def fill(path: Path, mb: int) -> None:
    storage = await Storage.open(path)
    blob = os.urandom(mb * 1024 * 1024 // 2)
    await storage.agenda.commit(
        [SourceBody("https://example.org/agenda.ics", blob, None, None)],
        [],
        sessions=[StoredSessions("https://example.org/agenda.ics", "1|Europe/Paris", 0, blob)],
    )
    now = int(time.time())
    async with storage.db.transaction() as tx:
        await tx.executemany(
            "INSERT INTO inbox (event_id, room_id, sender, body, thread_root, received_at, "
            "attempts, direct, status) VALUES ($1, $2, $3, NULL, NULL, $4, 1, 0, 'done')",
            [(f"$e{i}", f"!r{i % 50}:x", f"@u{i % 300}:x", now) for i in range(20_000)],
        )
        await tx.executemany(
            "INSERT INTO outbox (broadcast, room_id, txn_id, status, created_at) "
            "VALUES ($1, $2, $3, 'sent', $4)",
            [(f"gazette:{i}", f"!r{i % 50}:x", f"bh-o-{i}", now) for i in range(20_000)],
        )
    for i in range(2000):
        await storage.subscriptions.add(f"!r{i}:x", "gazette", "@mod:x")
    await storage.close()


async def open_cost(path: Path) -> None:
    opens, checks = [], []
    for _ in range(6):
        t = time.perf_counter()
        storage = await Storage.open(path)
        opens.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        await storage.db.fetch("PRAGMA quick_check")
        checks.append((time.perf_counter() - t) * 1000)
        await storage.close()
    size = (await asyncio.to_thread(path.stat)).st_size / 1e6
    print(f"database {size:.1f} MB: Storage.open {ms(opens[1:])}")
    print(f"                 quick_check alone {ms(checks[1:])}")


async def workload(path: Path, kind: type[Database], commands: int, concurrency: int) -> None:
    db = await kind.open(path)
    await upgrades.upgrade(db)
    storage = Storage(db)
    reads: list[float] = []
    stop = asyncio.Event()

    async def refresh() -> None:
        blob = os.urandom(2 * 1024 * 1024)
        while not stop.is_set():
            sessions = StoredSessions("https://example.org/agenda.ics", "1|Europe/Paris", 0, blob)
            await storage.agenda.commit([], [], sessions=[sessions])
            await asyncio.sleep(0.1)

    async def command(i: int) -> None:
        event = f"$bench{i}-{kind.__name__}"
        await storage.inbox.add(event, f"!r{i % 50}:x", "@u:x", "!abonnements", None)
        for read in (
            storage.inbox.status(event),
            storage.subscriptions.kinds(f"!r{i % 2000}:x"),
            storage.kv.get("sync_token"),
        ):
            t = time.perf_counter()
            await read
            reads.append((time.perf_counter() - t) * 1000)
        await storage.inbox.finish(event)

    sem = asyncio.Semaphore(concurrency)

    async def bounded(i: int) -> None:
        async with sem:
            await command(i)

    refreshing = asyncio.create_task(refresh())
    t = time.perf_counter()
    await asyncio.gather(*(bounded(i) for i in range(commands)))
    total = time.perf_counter() - t
    stop.set()
    await refreshing
    await storage.close()
    print(f"{kind.__name__:12} reads {ms(reads)}; {commands} commands in {total:.2f} s")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=5)
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "bluehats.db"
        await fill(path, args.mb)
        await open_cost(path)
        for kind in (Database, LockedReads, SharedReads, Database, LockedReads):
            await workload(path, kind, args.commands, args.concurrency)


if __name__ == "__main__":
    asyncio.run(main())
