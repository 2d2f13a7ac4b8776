"""Times of day as people type them: `10h`, `10h30`, `10:30`, ranges `9h30-11h`.

One parser for the YAML programmes and the moderators' commands.
"""

from __future__ import annotations

import re
from datetime import time

_TIME = r"(\d{1,2})\s*(?:[h:]\s*(\d{2})?)?"
_TIME_RE = re.compile(rf"^{_TIME}$", re.IGNORECASE)
_RANGE_RE = re.compile(rf"^{_TIME}\s*(?:-|–|—|à|a)\s*{_TIME}$", re.IGNORECASE)


def _clock(hour: str, minute: str | None, text: str) -> time:
    try:
        return time(int(hour), int(minute or 0))
    except ValueError:
        raise ValueError(f"not a time of day: {text!r}") from None


def time_of_day(text: str, *, bare_hour: bool = True) -> time | None:
    """None when `text` is not shaped like a time; ValueError when it is but is wrong (25h).

    `bare_hour=False` wants an `h` or `:` (a lone "10" in a title is not a time).
    """
    text = text.strip()
    match = _TIME_RE.match(text)
    if not match or (not bare_hour and not any(c in text.lower() for c in "h:")):
        return None
    return _clock(match[1], match[2], text)


def time_range(text: str) -> tuple[time, time] | None:
    """(start, end) of '14h-15h30'; None when not a range; ValueError for 25h-26h."""
    text = text.strip()
    if match := _RANGE_RE.match(text):
        return _clock(match[1], match[2], text), _clock(match[3], match[4], text)
    return None
