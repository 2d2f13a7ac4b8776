"""The gazette's publication, corrections and retractions: the transactions that make them exact.

A publication fixes the issue, queues one outbox row per subscribed room and
marks its feed entries in one transaction, so a crash neither loses nor
doubles it; a correction or a retraction applies once (its request closed in
the same transaction as the rows it queues). `GazetteStore` (bot.db.gazette)
inherits these queries.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from bot.db import feeds, outbox
from bot.db.database import Database, Queries
from bot.db.gazette_model import CORRECT, Issue, Request, log_action
from bot.db.subscriptions import GAZETTE

_PENDING_REQUEST = (
    "SELECT id, issue_id, kind, n, text, requested_by, requested_at, status "
    "FROM gazette_requests WHERE issue_id = $1 AND status = 'pending'"
)


class Publication:
    _db: Database

    # -- publication ----------------------------------------------------------

    async def publish(
        self,
        issue: Issue,
        *,
        body: str,
        html: str,
        broadcast: outbox.Broadcast,
        feed_entries: Sequence[str],
        by: str,
        now: int,
        approved_by: Sequence[str],
        fire_at: int | None = None,
    ) -> int | None:
        """Publish the draft as it reads at `issue.revision`: rows queued, None if it
        changed, or if one of the approvals `approved_by` was withdrawn meanwhile.

        One transaction: the issue fixed, a row per subscribed room, its feed
        entries marked, the scheduled time (if any) decided, the log.
        """
        async with self._db.transaction() as tx:
            if not await _still_approved(tx, issue.target, approved_by):
                return None
            result = await tx.execute(
                "UPDATE gazette_issues SET status = 'published', published_at = $1, body = $2, "
                "html = $3 WHERE id = $4 AND status = 'draft' AND revision = $5",
                now,
                body,
                html,
                issue.id,
                issue.revision,
            )
            if result.rowcount != 1:
                return None
            queued = await outbox.queue_for_subscribers(tx, broadcast, GAZETTE, "pending", now)
            await feeds.mark_in_gazette(tx, feed_entries, issue.number)
            if fire_at is not None:
                await _decide(tx, fire_at, "published", issue.number, now)
            await log_action(tx, now, by, "publish", issue.number, str(queued))
        return queued

    async def decide_fire(self, fire_at: int, outcome: str, number: int) -> bool:
        """Record what became of a scheduled publication; False if already decided."""
        async with self._db.transaction() as tx:
            return await _decide(tx, fire_at, outcome, number, int(time.time()))

    async def fire_decided(self, fire_at: int) -> bool:
        found = await self._db.fetchval("SELECT 1 FROM gazette_fires WHERE fire_at = $1", fire_at)
        return found is not None

    async def last_fire(self) -> int | None:
        value = await self._db.fetchval("SELECT max(fire_at) FROM gazette_fires")
        return None if value is None else int(value)

    async def copy_sent(self, number: int, room_id: str, event_id: str) -> None:
        """A room's copy of the issue is posted (the same event again after a resend)."""
        await self._db.execute(
            "INSERT OR REPLACE INTO gazette_copies (number, room_id, event_id, sent_at) "
            "VALUES ($1, $2, $3, $4)",
            number,
            room_id,
            event_id,
            int(time.time()),
        )

    async def copy(self, number: int, room_id: str) -> str | None:
        value = await self._db.fetchval(
            "SELECT event_id FROM gazette_copies WHERE number = $1 AND room_id = $2",
            number,
            room_id,
        )
        return None if value is None else str(value)

    async def copies(self, number: int) -> int:
        return int(
            await self._db.fetchval("SELECT count(*) FROM gazette_copies WHERE number = $1", number)
        )

    # -- corrections and retractions ------------------------------------------

    async def pending_request(self, issue_id: int) -> Request | None:
        row = await self._db.fetchrow(_PENDING_REQUEST, issue_id)
        return None if row is None else Request.from_row(row)

    async def request(
        self, issue: Issue, kind: str, n: int | None, text: str | None, by: str, now: int
    ) -> tuple[Request, bool]:
        """A new request (a pending one is replaced by it): (request, replaced one)."""
        async with self._db.transaction() as tx:
            replaced = await tx.execute(
                "UPDATE gazette_requests SET status = 'replaced' "
                "WHERE issue_id = $1 AND status = 'pending'",
                issue.id,
            )
            await tx.execute(
                "INSERT INTO gazette_requests (issue_id, kind, n, text, requested_by, "
                "requested_at) VALUES ($1, $2, $3, $4, $5, $6)",
                issue.id,
                kind,
                n,
                text,
                by,
                now,
            )
            row = await tx.fetchrow(_PENDING_REQUEST, issue.id)
            action = "correct-request" if kind == CORRECT else "retract-request"
            await log_action(tx, now, by, action, issue.number, "" if n is None else str(n))
        assert row is not None
        return Request.from_row(row), replaced.rowcount > 0

    async def correct(
        self,
        issue: Issue,
        request: Request,
        *,
        body: str,
        html: str,
        broadcast: outbox.Broadcast,
        publication: str,
        by: str,
        now: int,
        approved_by: Sequence[str],
    ) -> int | None:
        """Apply an approved correction: the item and the issue's text, an edit per copy.

        Rows queued (rooms with a copy, or whose copy is still to send); None
        if the request was no longer pending, or an approval was withdrawn.
        """
        assert request.n is not None and request.text is not None
        async with self._db.transaction() as tx:
            if not await _still_approved(tx, request.target, approved_by):
                return None
            if not await _close(tx, request):
                return None
            await tx.execute(
                "UPDATE gazette_items SET text = $1 WHERE issue_id = $2 AND n = $3",
                request.text,
                issue.id,
                request.n,
            )
            await tx.execute(
                "UPDATE gazette_issues SET body = $1, html = $2, revision = revision + 1, "
                "changed_by = $3, changed_at = $4 WHERE id = $5",
                body,
                html,
                request.requested_by,
                now,
                issue.id,
            )
            queued = 0
            for room_id in await _copy_rooms(tx, issue.number, publication):
                queued += await outbox.insert(tx, broadcast, room_id)
            await log_action(tx, now, by, "correct", issue.number, str(request.n))
        return queued

    async def retract(
        self,
        issue: Issue,
        request: Request,
        *,
        broadcast: outbox.Broadcast,
        publication: str,
        by: str,
        now: int,
        approved_by: Sequence[str],
    ) -> int | None:
        """Apply an approved retraction: copies not sent yet never will be, the
        others get a redaction each. Rows queued; None if no longer pending
        (or an approval was withdrawn)."""
        async with self._db.transaction() as tx:
            if not await _still_approved(tx, request.target, approved_by):
                return None
            if not await _close(tx, request):
                return None
            await tx.execute(
                "UPDATE gazette_issues SET status = 'retracted', changed_by = $1, "
                "changed_at = $2 WHERE id = $3",
                request.requested_by,
                now,
                issue.id,
            )
            await tx.execute(
                "UPDATE outbox SET status = 'skipped', sent_at = $1 "
                "WHERE broadcast = $2 AND status = 'pending'",
                now,
                publication,
            )
            queued = 0
            rows = await tx.fetch(
                "SELECT room_id FROM gazette_copies WHERE number = $1", issue.number
            )
            for row in rows:
                queued += await outbox.insert(tx, broadcast, str(row["room_id"]))
            await log_action(tx, now, by, "retract", issue.number, str(len(rows)))
        return queued


async def _still_approved(q: Queries, target: str, approved_by: Sequence[str]) -> bool:
    """Every approval counted when it was decided is still there (a ✅ taken
    back in the meantime withdraws one: then nothing is done)."""
    rows = await q.fetch("SELECT user_id FROM gazette_approvals WHERE target = $1", target)
    return set(approved_by) <= {str(r["user_id"]) for r in rows}


async def _close(q: Queries, request: Request) -> bool:
    result = await q.execute(
        "UPDATE gazette_requests SET status = 'applied' WHERE id = $1 AND status = 'pending'",
        request.id,
    )
    return result.rowcount == 1


async def _copy_rooms(q: Queries, number: int, publication: str) -> list[str]:
    """Rooms with a copy of the issue, or one still to send."""
    rows = await q.fetch(
        "SELECT room_id FROM gazette_copies WHERE number = $1 "
        "UNION SELECT room_id FROM outbox WHERE broadcast = $2 AND status = 'pending'",
        number,
        publication,
    )
    return sorted(str(r["room_id"]) for r in rows)


async def _decide(q: Queries, fire_at: int, outcome: str, number: int, now: int) -> bool:
    result = await q.execute(
        "INSERT OR IGNORE INTO gazette_fires (fire_at, outcome, number, at) "
        "VALUES ($1, $2, $3, $4)",
        fire_at,
        outcome,
        number,
        now,
    )
    return result.rowcount == 1
