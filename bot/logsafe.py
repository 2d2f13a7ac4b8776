"""Text that people chose (a kick reason, a room named in an event's content),
as it goes into the bot's log lines.

A log line is one line: a reason holding "\n2026-01-01 ERROR …" would
otherwise print a line the bot never wrote, and a bidi override would make a
line read backwards. Every log site that shows such text passes it through
`printable`.
"""

from __future__ import annotations

# Longer text is cut: a reason may be 64 KiB (the size of an event).
LIMIT = 200


def _escape(char: str) -> str:
    # Python's own escapes: \n, \r, \t, \x1b, \u2028, \u202e, and \\ for a backslash.
    return char.encode("unicode_escape").decode("ascii")


def printable(text: object, limit: int = LIMIT) -> str:
    """`text` with every line break, control, format (bidi) or other non-printable
    character escaped, and its backslashes doubled (so an escape typed by hand
    cannot pass for one made here); cut to `limit` characters, `…` when cut."""
    value = str(text)
    shown = "".join(c if c.isprintable() and c != "\\" else _escape(c) for c in value[:limit])
    return shown + ("…" if len(value) > limit else "")
