"""Another member's answer while one member floods the bot, with and without bot.limits.

    .venv/bin/python bench/flood.py [--runs 5] [--flood 200] [--synapse-limits]

Starts a throw-away Synapse and the bot as its own process (`python -m bot
run`), twice: with the default `bot.limits`, then with the limits lifted
(`every: 0s`, as before they existed). Alice (a separate process) floods
room A with N `!aide` sent at once; once 20 are sent, Bob asks `!aide` in
room B and times the round trip (send → answer seen through sync). Each run
also times Bob's question with no flood. Prints the medians, their ratio,
and what Alice got (answers, "doucement" notices).

`--synapse-limits` keeps Synapse's default message rate limit (0.2 message/s,
burst 10) for the bot and Bob, and lifts Alice's (admin API), as when the
flood comes from a server without limits: the account's send rate is then
what the flood and the others share. (Logins and joins stay raised: the
bench logs in more often than anyone would.)

Measured here (2 shared CPUs, December 2026), raised limits, 5 runs: Bob
53 ms quiet; during the flood 988 ms with the default limits (Alice answered
5 times, told once) and 986 ms with them lifted (~116 answers to her). On a
test Synapse, the flood's cost to Bob is the homeserver's own work on Alice's
200 sends (the bot's answer to Bob took ~20 ms, its send ~880 ms); the
limits cut what the bot sends for her from ~116 messages to 5 + 1, which is
what a rate-limited account shares with every room. At Synapse's default
message limit (`--synapse-limits --flood 30`) the figures swing from 1.3 s to
60 s from run to run (where Bob's command falls among Alice's in the bot's
sync batch, and the bot's 429 waits), medians 6-8 s either way: 0.2 message/s
is less than one person's refill (one command every 3 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from nio import AsyncClient, RoomMessageNotice, SyncResponse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.demo import send_and_wait_reply, wait_member  # noqa: E402
from bot.devserver import DevHomeserver  # noqa: E402

PASSWORD = "bench-password"
SLOW = "Doucement"
# The bot said nothing in room A for this long: the flood is over (longer
# than the wait of a 429 at Synapse's default limits, 5 s).
QUIET_S = 8.0
LIFTED = {
    "per_sender": {"burst": 1, "every": "0s"},
    "per_room": {"burst": 1, "every": "0s"},
}


# -- Alice, the flooder (a separate process) -----------------------------------------


async def flood_main(url: str, user_id: str, room_id: str, bot_id: str, n: int) -> None:
    """Send `n` commands at once; print "underway" after 20, then what the bot answered."""
    client = AsyncClient(url, user_id)
    await client.login(PASSWORD)
    await client.sync(timeout=0)
    sent = 0

    async def one() -> str:
        nonlocal sent
        resp = await client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "!aide"}
        )
        sent += 1
        if sent == 20:
            print("underway", flush=True)
        return str(getattr(resp, "event_id", ""))

    ids = set(await asyncio.gather(*(one() for _ in range(n))))
    # Until the bot has said nothing here for a while, then its replies, from history.
    last = time.monotonic()
    while time.monotonic() - last < QUIET_S:
        resp = await client.sync(timeout=500)
        joined = resp.rooms.join.get(room_id) if isinstance(resp, SyncResponse) else None
        if joined and any(e.sender == bot_id for e in joined.timeline.events):
            last = time.monotonic()
    history = await client.room_messages(room_id, limit=1000)
    replies = [
        e
        for e in getattr(history, "chunk", [])
        if isinstance(e, RoomMessageNotice)
        and e.sender == bot_id
        and e.source["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
        in ids
    ]
    notices = sum(SLOW in e.body for e in replies)
    print(json.dumps({"answers": len(replies) - notices, "notices": notices}), flush=True)
    await client.close()


# -- the bench ---------------------------------------------------------------------


async def round_trip(user: AsyncClient, room_id: str, bot_id: str) -> float:
    t0 = time.perf_counter()
    await send_and_wait_reply(user, room_id, "!aide", bot_id)
    return time.perf_counter() - t0


async def phase(
    hs: DevHomeserver, work: Path, limits: dict[str, Any] | None, runs: int, n: int, admin: str
) -> dict[str, Any]:
    """One bot (fresh accounts and rooms), `runs` rounds: quiet, then during a flood."""
    tag = "limits" if limits is None else "lifted"
    bot_id = hs.register(f"bot-{tag}", PASSWORD)
    alice_id = hs.register(f"alice-{tag}", PASSWORD)
    bob_id = hs.register(f"bob-{tag}", PASSWORD)
    if admin:
        hs.override_ratelimit(admin, alice_id, unlimited=True)
    config: dict[str, Any] = {
        "matrix": {"homeserver": hs.url, "user_id": bot_id, "password": PASSWORD},
        "storage": {"path": str(work / tag)},
        "agenda": {"sources": [str(ROOT / "bot" / "data" / "sample-agenda.ics")]},
    }
    if limits is not None:
        config["bot"] = {"limits": limits}
    (work / f"{tag}.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = (work / f"{tag}.log").open("wb")
    bot = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--config", str(work / f"{tag}.yaml"), stdout=log,
        stderr=log, env=env,
    )  # fmt: skip
    alice, bob = AsyncClient(hs.url, alice_id), AsyncClient(hs.url, bob_id)
    quiet, flooded, got = [], [], []
    try:
        await alice.login(PASSWORD)
        await bob.login(PASSWORD)
        room_a = (await alice.room_create(invite=[bot_id])).room_id  # type: ignore[union-attr]
        room_b = (await bob.room_create(invite=[bot_id])).room_id  # type: ignore[union-attr]
        async with asyncio.timeout(60):
            await wait_member(alice, room_a, bot_id)
            await wait_member(bob, room_b, bot_id)
        await bob.sync(timeout=0)
        await round_trip(bob, room_b, bot_id)  # warm-up
        for _ in range(runs):
            await asyncio.sleep(3)  # Bob's own bucket: one command per 3 s
            quiet.append(await round_trip(bob, room_b, bot_id))
            flooder = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--flooder", hs.url, alice_id, room_a, bot_id, str(n),
                stdout=asyncio.subprocess.PIPE, env=env,
            )  # fmt: skip
            assert flooder.stdout is not None
            assert (await flooder.stdout.readline()).strip() == b"underway"
            flooded.append(await round_trip(bob, room_b, bot_id))
            got.append(json.loads(await flooder.stdout.readline()))
            await flooder.wait()
    finally:
        await alice.close()
        await bob.close()
        bot.terminate()
        await bot.wait()
        log.close()
    return {"quiet": quiet, "flooded": flooded, "alice": got}


async def bench(runs: int, n: int, synapse_limits: bool, work: Path) -> None:
    limits = {"rc_message": {"per_second": 0.2, "burst_count": 10}} if synapse_limits else {}
    with DevHomeserver(work / "synapse", limits=limits) as hs:
        admin = ""
        if synapse_limits:
            admin_id = hs.register("admin", PASSWORD, admin=True)
            admin = hs.login(admin_id, PASSWORD)
        results = {
            "default bot.limits": await phase(hs, work, None, runs, n, admin),
            "limits lifted": await phase(hs, work, LIFTED, runs, n, admin),
        }

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:7.0f} ms"

    server = "Synapse's default message limit, Alice's lifted" if synapse_limits else "raised"
    print(f"Bob's !aide round trip, median of {runs} runs; Alice floods {n} ({server} limits):")
    for label, r in results.items():
        ratio = statistics.median(r["flooded"]) / statistics.median(r["quiet"])
        answers = [a["answers"] for a in r["alice"]]
        notices = [a["notices"] for a in r["alice"]]
        print(
            f"  {label:<20} quiet {ms(r['quiet'])}  during the flood {ms(r['flooded'])}  "
            f"ratio {ratio:5.1f}   Alice got {answers} answers, {notices} notices"
        )


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "--flooder":
        url, user_id, room_id, bot_id, n = sys.argv[2:]
        asyncio.run(flood_main(url, user_id, room_id, bot_id, int(n)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--flood", type=int, default=200)
    parser.add_argument("--synapse-limits", action="store_true")
    parser.add_argument("--keep", type=Path, help="work there (logs kept), not in a temp dir")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        asyncio.run(bench(args.runs, args.flood, args.synapse_limits, args.keep))
        return
    with tempfile.TemporaryDirectory(prefix="bluehats-bench-") as tmp:
        asyncio.run(bench(args.runs, args.flood, args.synapse_limits, Path(tmp)))


if __name__ == "__main__":
    main()
