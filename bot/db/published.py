"""What the public calendars have published of each session (see `bot.agenda.published`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Self

from bot.db.database import Database, Row


@dataclass(frozen=True, slots=True)
class PublishedRow:
    sid: str
    uid: str
    fingerprint: str
    sequence: int
    stamp: int
    gone_at: int | None = None
    payload: dict[str, Any] | None = None  # the session's fields, while gone

    @classmethod
    def from_row(cls, row: Row) -> Self:
        payload = row["payload"]
        return cls(
            row["sid"],
            row["uid"],
            row["fingerprint"],
            int(row["sequence"]),
            int(row["stamp"]),
            None if row["gone_at"] is None else int(row["gone_at"]),
            None if payload is None else json.loads(payload),
        )


class PublishedSessions:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def all(self) -> list[PublishedRow]:
        rows = await self._db.fetch(
            "SELECT sid, uid, fingerprint, sequence, stamp, gone_at, payload "
            "FROM published_sessions"
        )
        return [PublishedRow.from_row(r) for r in rows]

    async def save(self, upserts: Iterable[PublishedRow], deletes: Iterable[str]) -> None:
        """One transaction: rows written (whole) and rows forgotten."""
        async with self._db.transaction() as tx:
            await tx.executemany(
                "DELETE FROM published_sessions WHERE sid = $1", [(sid,) for sid in deletes]
            )
            await tx.executemany(
                "INSERT INTO published_sessions "
                "(sid, uid, fingerprint, sequence, stamp, gone_at, payload) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (sid) DO UPDATE SET "
                "uid = excluded.uid, fingerprint = excluded.fingerprint, "
                "sequence = excluded.sequence, stamp = excluded.stamp, "
                "gone_at = excluded.gone_at, payload = excluded.payload",
                [
                    (
                        r.sid,
                        r.uid,
                        r.fingerprint,
                        r.sequence,
                        r.stamp,
                        r.gone_at,
                        None if r.payload is None else json.dumps(r.payload, ensure_ascii=False),
                    )
                    for r in upserts
                ],
            )
