"""Sessions as compact bytes: what the parser process sends back and the database keeps.

One JSON array per line, one line per session, with every field of
`Session`, its id and search key included (recomputing them runs `fold`
character by character: 150 ms for 10,000 sessions), compressed with zlib
(10,000 sessions: 3.3 MB of text, 0.3 to 1 MB compressed; decompressing
takes ~4 ms). Compressed, the copies the bot holds, sends to the parser
process and writes to the database weigh a few hundred kilobytes, which
keeps the bot's peak memory down during a refresh. Lines let the event loop
decode a large calendar a slice at a time, never in one long call.

Measured with 10,000 sessions (bench/agenda_start.py --only formats): one
blob per source loads faster than one row per session (one value to read,
one `json.loads` per slice instead of a Python row object per session and
column), and is written with a single statement.
"""

from __future__ import annotations

import asyncio
import json
import sys
import zlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from bot.agenda.model import Session

# Bump when the layout below changes: sessions stored in another layout are
# ignored (the saved copy is parsed again once).
FORMAT = 1
# Sessions decoded between two returns to the event loop (1 to 3 ms).
SLICE = 500

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
        list(s.speakers),
        list(s.categories),
        s.event,
        s.source,
        s.uid,
        s.cancelled,
        s.sid,
        s.search_key,
    ]


def pack(sessions: Iterable[Session]) -> bytes:
    # ASCII escapes: any str survives, even a lone surrogate from a YAML escape.
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    return zlib.compress("\n".join(dumps(_row(s)) for s in sessions).encode("ascii"))


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


def _lines(blob: bytes) -> list[bytes]:
    text = zlib.decompress(blob)
    return text.split(b"\n") if text else []


def _slices(lines: list[bytes], reuse: Mapping[str, Session]) -> Iterator[list[Session]]:
    for i in range(0, len(lines), SLICE):
        rows = json.loads(b"[" + b",".join(lines[i : i + SLICE]) + b"]")
        part = []
        for r in rows:
            old = reuse.get(r[13])
            part.append(old if old is not None and _row(old) == r else _session(r))
        yield part


def unpack(blob: bytes) -> list[Session]:
    out: list[Session] = []
    for part in _slices(_lines(blob), {}):
        out.extend(part)
    return out


async def unpack_async(blob: bytes, reuse: Iterable[Session] = ()) -> list[Session]:
    """`unpack`, giving the event loop a turn between slices.

    Sessions equal in every field to one of `reuse` (the source's previous
    copy) are that very object: a refresh that changes a few sessions holds
    one agenda in memory, not two, and the memory it frees is not left in
    holes between the new objects.
    """
    by_sid = {s.sid: s for s in reuse}
    # Inflating and splitting 3 MB is one long call each: not on the loop.
    lines = await asyncio.to_thread(_lines, blob)
    out: list[Session] = []
    for part in _slices(lines, by_sid):
        out.extend(part)
        await asyncio.sleep(0)
    return out
