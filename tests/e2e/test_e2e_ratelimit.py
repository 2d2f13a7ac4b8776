"""A fan-out against a homeserver that rate-limits hard: 429s waited out, nothing lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.devserver import DevHomeserver
from tests.fanout import GazetteFanOut

pytestmark = pytest.mark.e2e

ROOMS = 8


async def test_rate_limited_fan_out_waits_and_loses_nothing(
    synapse: DevHomeserver, tmp_path: Path
) -> None:
    # The bot's own pacing off (pace 0): only the server limits.
    async with GazetteFanOut(synapse, tmp_path, pace=0) as bench:
        rooms = await bench.create_rooms(ROOMS)
        # 3 messages at once, then one a second: most of the 8 posts get a 429
        # first. Synapse's own limiter, set for the bot alone, on the shared server.
        bench.limit_messages(per_second=1, burst=3)
        await bench.sync()
        sent, statuses = await asyncio.wait_for(bench.post(), 120)
        bodies = [bench.posts(room) for room in rooms]
        rate_limited = bench.chat.rate_limited

    assert rate_limited > 0  # the homeserver did push back
    assert sent == ROOMS
    assert set(statuses.values()) == {"sent"}
    assert [len(b) for b in bodies] == [1] * ROOMS  # each room exactly one post
    assert all("gazette BlueHats" in b[0] for b in bodies)
