"""The session's states: each change said once, sends held while the session is unusable."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.health import Health
from bot.matrix.session_state import SessionStates, State, Status
from bot.matrix.uia import MARKER_FILE
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

    def values() -> dict[str, float | None]:
        return {
            s.value: metrics.registry.get_sample_value("bluehats_session_state", {"state": s.value})
            for s in State
        }

    assert values() == {"ok": 1, "expired": 0, "revoked": 0, "reset_pending": 0}
    metrics.set_session_state(State.REVOKED)
    assert values() == {"ok": 0, "expired": 0, "revoked": 1, "reset_pending": 0}


def test_healthz_says_reset_pending_while_identity_reset_waits(tmp_path: Path) -> None:
    metrics = Metrics()
    health = Health(metrics=metrics, stuck_after=timedelta(seconds=90), storage_dir=tmp_path)
    assert health.session_state() == (State.OK, "ok")
    url = "https://auth.example.gouv.fr/account/?action=org.matrix.cross_signing_reset"
    deadline = datetime.now(UTC) + timedelta(minutes=10)
    (tmp_path / MARKER_FILE).write_text(json.dumps({"url": url, "deadline": deadline.isoformat()}))
    ok, line = health.check()
    assert not ok and line.startswith("reset_pending: ") and url in line
    # A marker left by a killed process, past its deadline, says nothing.
    past = datetime.now(UTC) - timedelta(seconds=1)
    (tmp_path / MARKER_FILE).write_text(json.dumps({"url": url, "deadline": past.isoformat()}))
    assert health.session_state() == (State.OK, "ok")
