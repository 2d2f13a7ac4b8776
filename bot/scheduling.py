"""The scheduler of periodic jobs (agenda refresh, feed polls, pruning).

APScheduler 3 skips a run that starts more than `misfire_grace_time` late
(default: 1 s), with only a warning: a loop busy for a second when a refresh
falls due would silently lose that refresh until the next interval. Here a
late run still happens (once: `coalesce`), however late.

APScheduler's own shutdown only cancels running jobs' tasks and returns:
the job then ends with a `CancelledError`, which APScheduler logs as an
ERROR with its traceback, while the bot closes what the job still uses.
`Scheduler.stop` instead cancels the jobs that run and awaits them, within a
bound; a job cancelled by it ends quietly.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

JOB_DEFAULTS = {
    # Late runs are run; several missed runs make one.
    "misfire_grace_time": None,
    "coalesce": True,
    # A slow run is not doubled by the next one.
    "max_instances": 1,
}
# Running jobs are awaited this long when the bot stops (they are cancelled first).
STOP_WITHIN = 10.0


class Scheduler(AsyncIOScheduler):  # type: ignore[misc]  # untyped library
    """An AsyncIOScheduler whose coroutine jobs are tracked, to stop them cleanly."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._jobs_running: set[asyncio.Task[Any]] = set()
        self._stopping = False

    def add_job(self, func: Any, *args: Any, **kwargs: Any) -> Job:
        if asyncio.iscoroutinefunction(func):
            func = self._tracked(func)
        return super().add_job(func, *args, **kwargs)

    def _tracked(
        self, func: Callable[..., Coroutine[Any, Any, Any]]
    ) -> Callable[..., Coroutine[Any, Any, Any]]:
        @functools.wraps(func)
        async def job(*args: Any, **kwargs: Any) -> Any:
            task = asyncio.current_task()
            assert task is not None
            self._jobs_running.add(task)
            try:
                return await func(*args, **kwargs)
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
                log.info("job %s stopped with the bot", func.__name__)
                return None
            finally:
                self._jobs_running.discard(task)

        return job

    async def stop(self, within: float = STOP_WITHIN) -> None:
        """No new run; the running jobs cancelled and awaited up to `within` seconds."""
        if not self.running:
            return
        self._stopping = True
        self.pause()
        await asyncio.sleep(0)  # a run submitted just now starts (and is tracked)
        running = list(self._jobs_running)
        for task in running:
            task.cancel()
        if running:
            _, late = await asyncio.wait(running, timeout=within)
            if late:
                log.warning("%d job(s) still running %g s after the stop: left", len(late), within)
        self.shutdown(wait=False)
        await asyncio.sleep(0)  # AsyncIOScheduler shuts down in a callback of the loop


def new_scheduler(tz: ZoneInfo) -> Scheduler:
    return Scheduler(timezone=tz, job_defaults=JOB_DEFAULTS)
