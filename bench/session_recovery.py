"""A revoked token on a real Synapse: how long until the bot answers again, losing nothing.

    .venv/bin/python bench/session_recovery.py --runs 5

One bot (password configured, ops endpoint on) and one member in a room on a
throw-away Synapse (loopback, raised limits). Each run logs the bot's device
out (its token revoked, the device and its keys deleted, as "log out this
session" in Element does) and at once sends `!aide`: that command is read in
the long-poll that was under way, its answer is refused (`M_UNKNOWN_TOKEN`)
and waits; the next sync is refused, the bot logs in again on the same
device, uploads its keys again, signs the device again, and the answer goes
out. Prints, as medians over the runs:

- back: from the logout to the session usable again (`SessionStates` OK);
- answered: from the logout to the answer in the member's client;
- calm: a command's answer time with nothing revoked (the ratio's base);

and checks that every run kept the same device and answered every command once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app import BotApp  # noqa: E402
from bot.devserver import DevHomeserver  # noqa: E402
from bot.matrix.session_state import State, Status  # noqa: E402
from tests.helpers import User, bot_config, is_reply, running  # noqa: E402


async def timed_answer(user: User, room: str, bot_id: str) -> float:
    t0 = time.perf_counter()
    await user.ask(room, "!aide", bot_id, timeout=120)
    return time.perf_counter() - t0


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, DevHomeserver(Path(tmp) / "hs") as hs:
        cfg, bot_id = bot_config(hs, Path(tmp) / "bot")
        session_file = Path(tmp) / "bot" / "session.json"
        alice = await User(hs, "alice").login()
        back: list[float] = []
        answered: list[float] = []
        calm: list[float] = []
        try:
            async with running(BotApp(cfg)) as app:
                assert app.chat is not None
                device = app.chat.device_id
                usable = asyncio.Event()  # set when the session is back to OK

                async def on_change(_before: Status, after: Status) -> None:
                    if after.state is State.OK:
                        usable.set()

                app.chat.states.on_change(on_change)
                room = await alice.create_room(invite=[bot_id])
                await alice.wait_joined(room, bot_id)
                await alice.ask(room, "!aide", bot_id)
                for _ in range(runs):
                    calm.append(await timed_answer(alice, room, bot_id))
                    token = json.loads(session_file.read_text())["access_token"]
                    t0 = time.perf_counter()
                    hs.call("POST", "/_matrix/client/v3/logout", {}, token=token)
                    asked = await alice.send(room, "!aide")
                    await usable.wait()
                    usable.clear()
                    back.append(time.perf_counter() - t0)
                    await alice.wait_for(room, lambda e, a=asked: is_reply(e, a, bot_id), 120)
                    answered.append(time.perf_counter() - t0)
                    assert app.chat.device_id == device, "a new device"
                    replies = [e for e in alice.events[room] if is_reply(e, asked, bot_id)]
                    assert len(replies) == 1, f"{len(replies)} answers"
        finally:
            await alice.close()

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f} ms"

    print(
        f"revoked token, {runs} runs (medians), same device every run, each command answered once"
    )
    print(f"  back (logout → session usable): {ms(back)}")
    print(f"  answered (logout → answer to the command sent at once): {ms(answered)}")
    print(
        f"  calm answer: {ms(calm)}; ratio answered/calm: "
        f"{statistics.median(answered) / statistics.median(calm):.0f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args().runs))
