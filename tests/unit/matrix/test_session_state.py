"""The session's states: each change said once, sends held while the session is unusable."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.matrix.session_state import SessionStates, State, Status
from bot.ops import Metrics


async def test_a_state_is_logged_once_and_holds_sends_until_usable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    states = SessionStates()
    seen: list[tuple[State, State]] = []

    async def listener(before: Status, after: Status) -> None:
        seen.append((before.state, after.state))

    states.on_change(listener)
    await states.until_usable()  # OK: at once

    await states.enter(State.EXPIRED, "account expired", advice="renew it")
    await states.enter(State.EXPIRED, "account expired", advice="renew it")
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "session expired: account expired; renew it" in caplog.text

    held = asyncio.create_task(states.until_usable())
    await asyncio.sleep(0)
    assert not held.done()
    await states.ok()
    await asyncio.wait_for(held, 1)
    assert seen == [(State.OK, State.EXPIRED), (State.EXPIRED, State.OK)]


def test_the_metric_shows_one_state_at_a_time() -> None:
    metrics = Metrics()

    def values() -> dict[str, float]:
        """Every label the metric exposes, as scraped."""
        return {
            sample.labels["state"]: sample.value
            for family in metrics.registry.collect()
            if family.name == "bluehats_session_state"
            for sample in family.samples
        }

    assert values() == {"ok": 1, "expired": 0, "revoked": 0}
    metrics.set_session_state(State.REVOKED)
    assert values() == {"ok": 0, "expired": 0, "revoked": 1}
