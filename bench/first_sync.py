"""The bot's first sync with 300 rooms: bytes received and time, before/after the light filter.

    .venv/bin/python bench/first_sync.py [--rooms 300] [--members 4] [--runs 5]

Starts a throw-away Synapse on loopback and fills it as Tchap rooms look: N
rooms the bot is in, each with `--members` people besides the bot (the last
one invited, not yet joined), three messages, a read receipt, a room name and
topic, half of them encrypted (`m.room.encryption`). Then asks `/sync` as the bot does at start,
with the filters it used before (`{"room": {"timeline": {"limit": …}}}`) and
with `bot.matrix.sync`'s light filter:

- restart: a saved token, `full_state=true`, timeline limit 100 (every start);
- first run: no token, timeline limit 1 (the very first start).

Prints, for each, the median over `--runs` of the response body's bytes (as
sent: JSON, uncompressed), the request's time, and the time nio takes to
parse it (`SyncResponse.from_dict`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nio import SyncResponse  # noqa: E402

from bot.devserver import DevHomeserver  # noqa: E402
from bot.matrix.sync import FIRST_RUN_FILTER, SYNC_FILTER  # noqa: E402

API = "/_matrix/client/v3"
# main's filters before the light sync.
OLD_SYNC_FILTER = {"room": {"timeline": {"limit": 100}}}
OLD_FIRST_RUN_FILTER = {"room": {"timeline": {"limit": 1}}}


class Account:
    def __init__(self, http: aiohttp.ClientSession, hs: DevHomeserver, name: str) -> None:
        self.http = http
        self.hs = hs
        password = secrets.token_hex(8)
        self.user_id = hs.register(f"{name}{secrets.token_hex(2)}", password)
        self.token = hs.login(self.user_id, password)
        self._txn = 0

    async def call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        async with self.http.request(
            method,
            f"{self.hs.url}{API}{path}",
            json=body,
            params=params or None,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as resp:
            data = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"{method} {path}: {resp.status} {data}")
            return data

    async def send(self, room: str, body: str) -> str:
        self._txn += 1
        content = {"msgtype": "m.text", "body": body}
        path = f"/rooms/{quote(room)}/send/m.room.message/b{self._txn}"
        return str((await self.call("PUT", path, content))["event_id"])


async def fill(
    hs: DevHomeserver, http: aiohttp.ClientSession, n_rooms: int, n_members: int
) -> Account:
    bot = Account(http, hs, "bot")
    people = [Account(http, hs, f"agent{i}-") for i in range(max(n_members, 3))]
    # One creates the rooms and the others join, but the last stays invited.
    creator, joiners = people[0], people[1:-1]
    gate = asyncio.Semaphore(8)

    async def room(i: int) -> None:
        async with gate:
            initial = []
            if i % 2:
                initial.append(
                    {
                        "type": "m.room.encryption",
                        "state_key": "",
                        "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                    }
                )
            created = await creator.call(
                "POST",
                "/createRoom",
                {
                    "name": f"Salon {i} — communauté BlueHats",
                    "topic": "Logiciels libres dans l'administration : agenda, ateliers, entraide",
                    "invite": [bot.user_id, *(p.user_id for p in people[1:])],
                    "initial_state": initial,
                },
            )
            room_id = created["room_id"]
            for member in (bot, *joiners):
                await member.call("POST", f"/join/{quote(room_id)}", {})
            last = ""
            for who, text in (
                (creator, "Bonjour à toutes et à tous, l'atelier Grist a lieu jeudi à 14 h."),
                (joiners[0], "!agenda grist"),
                (joiners[-1], "Merci ! Je m'inscris. Le lien de la visio est-il le même ?"),
            ):
                last = await who.send(room_id, text)
            path = f"/rooms/{quote(room_id)}/receipt/m.read/{quote(last)}"
            await creator.call("POST", path, {})

    started = time.perf_counter()
    await asyncio.gather(*(room(i) for i in range(n_rooms)))
    print(
        f"set-up: {n_rooms} rooms of {len(people)} members besides the bot "
        f"({len(people) - 1} joined, 1 invited) in {time.perf_counter() - started:.0f}s",
        flush=True,
    )
    return bot


async def measure(
    bot: Account, sync_filter: dict[str, Any], *, since: str | None, nonce: int
) -> tuple[int, float, float]:
    # Synapse keeps a response for 2 minutes and gives it again to the same
    # request: trailing spaces (ignored by its JSON parser) make each one new.
    params = {"filter": json.dumps(sync_filter) + " " * nonce, "timeout": "0"}
    if since is not None:
        params.update(since=since, full_state="true")
    started = time.perf_counter()
    async with bot.http.get(
        f"{bot.hs.url}{API}/sync",
        params=params,
        headers={"Authorization": f"Bearer {bot.token}"},
    ) as resp:
        body = await resp.read()
        assert resp.status == 200, body[:200]
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    parsed = SyncResponse.from_dict(json.loads(body))
    parse = time.perf_counter() - started
    assert isinstance(parsed, SyncResponse), parsed
    return len(body), elapsed, parse


async def run(n_rooms: int, n_members: int, runs: int, work: Path) -> None:
    with DevHomeserver(work / "synapse") as hs:
        async with aiohttp.ClientSession() as http:
            bot = await fill(hs, http, n_rooms, n_members)
            token = (await bot.call("GET", "/sync", filter=json.dumps(SYNC_FILTER)))["next_batch"]
            cases = [
                ("restart (token, full_state)", token, OLD_SYNC_FILTER, SYNC_FILTER),
                ("first run (no token)", None, OLD_FIRST_RUN_FILTER, FIRST_RUN_FILTER),
            ]
            print(f"{n_rooms} rooms, median of {runs} runs")
            nonce = 0
            for label, since, old, new in cases:
                samples: dict[str, list[tuple[int, float, float]]] = {"before": [], "after": []}
                # A warm-up each, then alternately: neither gets the other's warm caches.
                for i in range(runs + 1):
                    for name, sync_filter in (("before", old), ("after", new)):
                        nonce += 1
                        sample = await measure(bot, sync_filter, since=since, nonce=nonce)
                        if i:
                            samples[name].append(sample)
                figures = {
                    name: [statistics.median(s) for s in zip(*runs_, strict=True)]
                    for name, runs_ in samples.items()
                }
                before, after = figures["before"], figures["after"]
                print(f"  {label}")
                for name, (size, elapsed, parse) in figures.items():
                    print(
                        f"    {name:<6} {size / 1024:8.0f} KiB  request {elapsed * 1000:6.0f} ms"
                        f"  nio parse {parse * 1000:5.0f} ms"
                    )
                print(
                    f"    bytes ÷ {before[0] / after[0]:.1f}, request time ÷ "
                    f"{before[1] / after[1]:.1f}, parse time ÷ {before[2] / after[2]:.1f}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=300)
    parser.add_argument("--members", type=int, default=4, help="people per room besides the bot")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-first-sync-") as tmp:
        asyncio.run(run(args.rooms, args.members, args.runs, Path(tmp)))


if __name__ == "__main__":
    main()
