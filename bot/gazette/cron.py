"""The gazette's publication times (`gazette.schedule`, a cron expression): the one
place the expression is read. The configuration checks it with `Cron.check`;
`bot.gazette.schedule.GazetteSchedule` owns the `Cron` the broadcaster,
`!gazette` and `!abonnements` ask.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from apscheduler.triggers.cron import CronTrigger


class Cron:
    def __init__(self, expression: str, tz: tzinfo) -> None:
        """ValueError when `expression` is not a cron expression."""
        self._trigger = CronTrigger.from_crontab(expression, timezone=tz)

    @staticmethod
    def check(expression: str) -> None:
        """ValueError, saying why, when `expression` is not a cron expression."""
        CronTrigger.from_crontab(expression)

    def next(self, after: datetime) -> datetime | None:
        """The first time at or after `after` (None: there is none)."""
        fire: datetime | None = self._trigger.get_next_fire_time(None, after)
        return fire
