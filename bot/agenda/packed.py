"""Sessions as compact bytes: what the parser process sends back and the database keeps.

One JSON array per line, one line per session, with every field of
`Session`, its id and search key included (recomputing them runs `fold`
character by character: 150 ms for 10,000 sessions). Lines let the event
loop decode a large calendar a slice at a time, never in one long call.

Measured with 10,000 sessions (bench/agenda_start.py --only formats): one
blob per source loads faster than one row per session (one value to read,
one `json.loads` per slice instead of a Python row object per session and
column), and is written with a single statement.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from bot.agenda.model import Session

# Bump when the layout below changes: sessions stored in another layout are
# ignored (the saved copy is parsed again once).
FORMAT = 1
# Sessions decoded between two returns to the event loop (about 2 ms).
SLICE = 1000

_fromiso = datetime.fromisoformat


def _row(s: Session) -> list[object]:
    return [
        s.title,
        s.start.isoformat(),
        s.end.isoformat(),
        s.all_day,
        s.description,
        s.location,
        s.url,
        s.speakers,
        s.categories,
        s.event,
        s.source,
        s.uid,
        s.cancelled,
        s.sid,
        s.search_key,
    ]


def pack(sessions: Iterable[Session]) -> bytes:
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    return "\n".join(dumps(_row(s)) for s in sessions).encode()


def _session(r: list[Any]) -> Session:
    # Positional, in the order of `_row` (the round-trip test covers every field).
    return Session(
        r[0],
        _fromiso(r[1]),
        _fromiso(r[2]),
        r[3],
        r[4],
        r[5],
        r[6],
        tuple(r[7]),
        tuple(r[8]),
        sys.intern(r[9]),
        sys.intern(r[10]),
        r[11],
        r[12],
        r[13],
        r[14],
    )


def _slices(blob: bytes, size: int) -> Iterator[list[Session]]:
    lines = blob.split(b"\n") if blob else []
    for i in range(0, len(lines), size):
        rows = json.loads(b"[" + b",".join(lines[i : i + size]) + b"]")
        yield [_session(r) for r in rows]


def unpack(blob: bytes) -> list[Session]:
    out: list[Session] = []
    for part in _slices(blob, SLICE):
        out.extend(part)
    return out


async def unpack_async(blob: bytes) -> list[Session]:
    """`unpack`, giving the event loop a turn between slices."""
    out: list[Session] = []
    for part in _slices(blob, SLICE):
        out.extend(part)
        await asyncio.sleep(0)
    return out
