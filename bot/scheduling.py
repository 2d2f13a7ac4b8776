"""The scheduler of periodic jobs (agenda refresh, feed polls, pruning).

APScheduler 3 skips a run that starts more than `misfire_grace_time` late
(default: 1 s), with only a warning: a loop busy for a second when a refresh
falls due would silently lose that refresh until the next interval. Here a
late run still happens (once: `coalesce`), however late.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler

JOB_DEFAULTS = {
    # Late runs are run; several missed runs make one.
    "misfire_grace_time": None,
    "coalesce": True,
    # A slow run is not doubled by the next one.
    "max_instances": 1,
}


def new_scheduler(tz: ZoneInfo) -> AsyncIOScheduler:
    return AsyncIOScheduler(timezone=tz, job_defaults=JOB_DEFAULTS)
