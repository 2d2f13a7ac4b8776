"""`!agenda` reply latency on a local Synapse, next to a bare echo client (the floor).

    .venv/bin/python bench/agenda_latency.py [--rounds 40] [--sessions 10000]

Starts a throw-away Synapse on loopback, the bot as a real process
(`python -m bot run`) loaded with a generated calendar of N future sessions,
and a bare nio echo client as another process in the same room. A user then
alternates `!agenda` and `ping` and times each round trip (send → reply seen
through sync). Prints p50/p90 of both and their ratio, plus the core's query
and render time alone. Target: p50 ratio <= 1.10 with 10,000 sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from nio import AsyncClient, InviteMemberEvent, MatrixRoom, RoomMessageText

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.demo import send_and_wait_reply, wait_member  # noqa: E402
from bot.devserver import DevHomeserver  # noqa: E402
from tests.helpers import webinar_calendar  # noqa: E402

PASSWORD = "bench-password"


def calendar(n: int, start: datetime) -> str:
    return webinar_calendar(
        ((i, start + timedelta(hours=3 * i)) for i in range(n)), uid="bench-{i}"
    )


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


# -- the echo client (a separate process) -----------------------------------------


async def echo_main(url: str, user_id: str) -> None:
    client = AsyncClient(url, user_id)
    await client.login(PASSWORD)

    async def on_invite(room: MatrixRoom, event: InviteMemberEvent) -> None:
        if event.state_key == user_id:
            await client.join(room.room_id)

    async def on_text(room: MatrixRoom, event: RoomMessageText) -> None:
        if event.sender != user_id and event.body.startswith("ping"):
            await client.room_send(
                room.room_id,
                "m.room.message",
                {
                    "msgtype": "m.notice",
                    "body": event.body,
                    "m.relates_to": {"m.in_reply_to": {"event_id": event.event_id}},
                },
            )

    client.add_event_callback(on_invite, InviteMemberEvent)  # type: ignore[arg-type]
    await client.sync(timeout=0)  # skip history
    client.add_event_callback(on_text, RoomMessageText)  # type: ignore[arg-type]
    await client.sync_forever(timeout=30_000)


# -- the measuring user ------------------------------------------------------------


def core_timing(ics: Path, n_runs: int = 200) -> tuple[float, float, int]:
    """Median ms of the core's `!agenda` (query + render), and the parse time."""
    from zoneinfo import ZoneInfo

    from bot.agenda.ics import parse_ics
    from bot.agenda.model import Agenda
    from bot.commands.agenda import render_agenda
    from bot.render import Renderer

    tz = ZoneInfo("Europe/Paris")
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    sessions = parse_ics(
        ics.read_bytes(),
        source="bench",
        tz=tz,
        window_start=now - timedelta(days=1),
        window_end=now + timedelta(days=366 * 5),
    )
    agenda = Agenda(sessions)
    parse_s = time.perf_counter() - t0
    renderer = Renderer("fr", tz)
    times = []
    for i in range(n_runs):
        words = ["grist"] if i % 2 else []
        t = time.perf_counter()
        found = agenda.between(now, None, words)
        render_agenda(found, now=now, renderer=renderer, limit=10, prefix="!", words=words)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), parse_s, len(agenda)


async def bench(rounds: int, n_sessions: int, work: Path) -> None:
    ics = work / "bench.ics"
    ics.write_text(calendar(n_sessions, datetime.now(UTC) + timedelta(hours=1)))
    core_ms, parse_s, loaded = core_timing(ics)
    print(
        f"core: {loaded} sessions parsed in {parse_s:.2f}s; "
        f"!agenda query+render median {core_ms:.2f} ms over 200 runs"
    )

    with DevHomeserver(work / "synapse") as hs:
        bot_id = hs.register("bot", PASSWORD)
        echo_id = hs.register("echo", PASSWORD)
        user_id = hs.register("user", PASSWORD)
        (work / "config.yaml").write_text(
            yaml.safe_dump(
                {
                    "matrix": {"homeserver": hs.url, "user_id": bot_id, "password": PASSWORD},
                    "storage": {"path": str(work / "data")},
                    "agenda": {"sources": [str(ics)], "horizon": "1830d"},
                    # One user asks !agenda ~90 times in a row, in one room:
                    # the limits, meant for people, would answer a few of them.
                    "bot": {
                        "limits": {
                            "per_sender": {"burst": 1, "every": "0s"},
                            "per_room": {"burst": 1, "every": "0s"},
                        }
                    },
                }
            )
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        log = (work / "bot.log").open("wb")
        bot = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            "--config",
            str(work / "config.yaml"),
            stdout=log,
            stderr=log,
            env=env,
        )
        echo = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--echo", hs.url, echo_id, env=env
        )
        user = AsyncClient(hs.url, user_id)
        try:
            await user.login(PASSWORD)
            room = await user.room_create(invite=[bot_id, echo_id])
            room_id = room.room_id  # type: ignore[union-attr]
            async with asyncio.timeout(60):
                await wait_member(user, room_id, bot_id)
                await wait_member(user, room_id, echo_id)
            await user.sync(timeout=0)

            async def round_trip(body: str, responder: str) -> float:
                t0 = time.perf_counter()
                await send_and_wait_reply(user, room_id, body, responder)
                return time.perf_counter() - t0

            for _ in range(3):  # warm-up: caches, connections, lazy imports
                await round_trip("!agenda", bot_id)
                await round_trip("ping", echo_id)
            agenda_s, echo_s = [], []
            for i in range(rounds):
                agenda_s.append(await round_trip("!agenda", bot_id))
                echo_s.append(await round_trip(f"ping {i}", echo_id))
        finally:
            await user.close()
            for proc in (bot, echo):
                proc.terminate()
                await proc.wait()
            log.close()

    def ms(v: float) -> str:
        return f"{v * 1000:.1f} ms"

    a50, a90 = statistics.median(agenda_s), percentile(agenda_s, 90)
    e50, e90 = statistics.median(echo_s), percentile(echo_s, 90)
    print(f"rounds: {rounds} of each, alternated, {loaded} sessions loaded in the bot")
    print(f"!agenda reply  p50 {ms(a50)}  p90 {ms(a90)}")
    print(f"echo (floor)   p50 {ms(e50)}  p90 {ms(e90)}")
    print(f"ratio          p50 {a50 / e50:.2f}  p90 {a90 / e90:.2f}  (target p50 <= 1.10)")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--echo":
        asyncio.run(echo_main(sys.argv[2], sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--sessions", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bluehats-bench-") as tmp:
        asyncio.run(bench(args.rounds, args.sessions, Path(tmp)))


if __name__ == "__main__":
    main()
