"""Periodic jobs run even when the event loop was busy when they fell due."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.scheduling import new_scheduler

PARIS = ZoneInfo("Europe/Paris")


async def runs_after_a_busy_loop(scheduler: AsyncIOScheduler) -> int:
    runs = 0

    async def refresh() -> None:
        nonlocal runs
        runs += 1

    scheduler.add_job(
        refresh,
        "interval",
        hours=1,
        next_run_time=datetime.now(UTC) + timedelta(seconds=0.2),
    )
    scheduler.start()
    try:
        # A busy loop (parsing, a slow callback) when the job falls due.
        time.sleep(1.5)  # noqa: ASYNC251 - blocking on purpose
        await asyncio.sleep(0.5)
    finally:
        scheduler.shutdown(wait=False)
    return runs


async def test_a_refresh_due_while_the_loop_was_busy_still_runs() -> None:
    assert await runs_after_a_busy_loop(new_scheduler(PARIS)) == 1


async def test_apscheduler_alone_would_have_skipped_it() -> None:
    # What the project's defaults are for: APScheduler's own skip the run.
    assert await runs_after_a_busy_loop(AsyncIOScheduler(timezone=PARIS)) == 0


async def test_stopping_cancels_and_awaits_running_jobs_without_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    scheduler = new_scheduler(PARIS)
    started, cleaned = asyncio.Event(), asyncio.Event()

    async def refresh() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # a refresh that would last
        finally:
            await asyncio.sleep(0.1)  # its clean-up (the parser killed…) is awaited
            cleaned.set()

    scheduler.add_job(refresh, "interval", hours=1, next_run_time=datetime.now(UTC))
    scheduler.start()
    await started.wait()
    await scheduler.stop(within=10)
    assert cleaned.is_set() and not scheduler.running
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]
    assert any("refresh stopped with the bot" in r.getMessage() for r in caplog.records)
