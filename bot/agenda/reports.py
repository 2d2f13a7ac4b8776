"""What the operator is told about the agenda's sources: each state logged once.

A source that starts failing is a warning (an error when it went past a
parser limit: time or memory, something to act on), repeated failures are
debug lines, its recovery an info line; what the caps cut from a source
(`bot.agenda.bounds`) is one warning while it stays the same. Warnings and
errors of this logger reach the operators' room (`bot.ops.ErrorRoom`).
"""

from __future__ import annotations

import logging

from bot.fetch import describe
from bot.ops import Metrics

# The agenda's logger, as before these reports left sources.py (alerts and filters use it).
log = logging.getLogger("bot.agenda.sources")

# What the caps cut, at most this many lines in the warning.
NOTES_SHOWN = 3


class SourceReports:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        # Failing sources, and whether by a parser limit (then an error).
        self._failing: dict[str, bool] = {}
        self._capped: dict[str, list[str]] = {}  # what the caps cut, by source
        self._diff_failing = False

    def failure(self, source: str, reason: str, *, limit: bool, has_copy: bool) -> None:
        """Logged when a source starts failing, or starts failing by a limit."""
        self._metrics.source_failures.labels("calendar").inc()
        was = self._failing.get(source)
        self._failing[source] = limit
        if was is not None and (was or not limit):
            log.debug("agenda: source %s still failing: %s", describe(source), reason)
            return
        kept = "keeping its last good copy" if has_copy else "no copy yet"
        if limit:
            log.error(
                "agenda: source %s failed: %s (%s). Check the source; raise the limit "
                "if it is expected to be this large",
                describe(source),
                reason,
                kept,
            )
        else:
            log.warning("agenda: source %s failed: %s (%s)", describe(source), reason, kept)

    def readable(self, source: str) -> None:
        if self._failing.pop(source, None) is not None:
            log.info("agenda: source %s is readable again", describe(source))

    def caps(self, source: str, notes: list[str]) -> None:
        """One warning when what the caps cut from a source changes."""
        if notes == self._capped.get(source, []):
            return
        if not notes:
            del self._capped[source]
            log.info("agenda: source %s is within the limits again", describe(source))
            return
        self._capped[source] = notes
        more = len(notes) - NOTES_SHOWN
        log.warning(
            "agenda: source %s is over the limits, sessions left out: %s%s",
            describe(source),
            "; ".join(notes[:NOTES_SHOWN]),
            f" (and {more} more series)" if more > 0 else "",
        )

    def diff_failure(self, reason: str) -> None:
        if not self._diff_failing:
            log.error(
                "agenda: comparing the new copies of the sources with the agenda served: "
                "%s. The agenda is unchanged; raise the limit if the sources are expected "
                "to be this large",
                reason,
            )
        self._diff_failing = True

    def diff_done(self) -> None:
        self._diff_failing = False
