"""The editorial gazette: issues, moderators' items, approvals, previews, copies, audit log.

Only SQL and the transactions that keep the gazette exact: a publication
fixes the issue, queues one outbox row per subscribed room and marks its feed
entries in one transaction, so a crash neither loses nor doubles it; a change
bumps the draft's revision, which is what approvals are for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

from bot.db import feeds, outbox
from bot.db.database import Database, Queries, Row
from bot.db.subscriptions import GAZETTE

DRAFT, PUBLISHED, RETRACTED = "draft", "published", "retracted"
CORRECT, RETRACT = "correct", "retract"


@dataclass(frozen=True, slots=True)
class Issue:
    id: int
    number: int
    status: str
    fire_at: int | None
    since: int
    content: dict[str, Any]
    revision: int
    changed_by: str
    changed_at: int
    created_at: int
    published_at: int | None
    body: str | None
    html: str | None

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(
            int(row["id"]),
            int(row["number"]),
            str(row["status"]),
            None if row["fire_at"] is None else int(row["fire_at"]),
            int(row["since"]),
            json.loads(row["content"]),
            int(row["revision"]),
            str(row["changed_by"]),
            int(row["changed_at"]),
            int(row["created_at"]),
            None if row["published_at"] is None else int(row["published_at"]),
            row["body"],
            row["html"],
        )

    @property
    def target(self) -> str:
        """What an approval of this draft, as it reads now, is for."""
        return f"draft:{self.id}:{self.revision}"


@dataclass(frozen=True, slots=True)
class Item:
    n: int
    section: str
    text: str
    author: str
    added_at: int

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(int(row["n"]), row["section"], row["text"], row["author"], int(row["added_at"]))


@dataclass(frozen=True, slots=True)
class Request:
    """A correction (`n`, `text`) or a retraction of a published issue."""

    id: int
    issue_id: int
    kind: str
    n: int | None
    text: str | None
    requested_by: str
    requested_at: int
    status: str

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(
            int(row["id"]),
            int(row["issue_id"]),
            row["kind"],
            row["n"],
            row["text"],
            row["requested_by"],
            int(row["requested_at"]),
            row["status"],
        )

    @property
    def target(self) -> str:
        return f"request:{self.id}"


@dataclass(frozen=True, slots=True)
class LogEntry:
    at: int
    actor: str
    action: str
    number: int
    detail: str


@dataclass(frozen=True, slots=True)
class Archived:
    number: int
    status: str
    published_at: int
    copies: int


_ISSUE = (
    "SELECT id, number, status, fire_at, since, content, revision, changed_by, changed_at, "
    "created_at, published_at, body, html FROM gazette_issues "
)

_PENDING_REQUEST = (
    "SELECT id, issue_id, kind, n, text, requested_by, requested_at, status "
    "FROM gazette_requests WHERE issue_id = $1 AND status = 'pending'"
)


class GazetteStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- issues ---------------------------------------------------------------

    async def draft(self) -> Issue | None:
        row = await self._db.fetchrow(_ISSUE + "WHERE status = 'draft'")
        return None if row is None else Issue.from_row(row)

    async def issue(self, issue_id: int) -> Issue | None:
        row = await self._db.fetchrow(_ISSUE + "WHERE id = $1", issue_id)
        return None if row is None else Issue.from_row(row)

    async def published(self, number: int) -> Issue | None:
        row = await self._db.fetchrow(_ISSUE + "WHERE number = $1 AND status != 'draft'", number)
        return None if row is None else Issue.from_row(row)

    async def latest(self) -> Issue | None:
        """The last issue published (retracted or not)."""
        row = await self._db.fetchrow(
            _ISSUE + "WHERE status != 'draft' ORDER BY number DESC LIMIT 1"
        )
        return None if row is None else Issue.from_row(row)

    async def next_number(self, configured: int) -> int:
        """`gazette.number`, or one past the last issue published if that is higher."""
        last = await self._db.fetchval(
            "SELECT max(number) FROM gazette_issues WHERE status != 'draft'"
        )
        return max(configured, 0 if last is None else int(last) + 1)

    async def create_draft(
        self,
        *,
        number: int,
        fire_at: int | None,
        since: int,
        content: dict[str, Any],
        by: str,
        now: int,
    ) -> Issue | None:
        """The new draft; None if one exists already (built meanwhile)."""
        async with self._db.transaction() as tx:
            result = await tx.execute(
                "INSERT OR IGNORE INTO gazette_issues (number, status, fire_at, since, content, "
                "changed_by, changed_at, created_at) VALUES ($1, 'draft', $2, $3, $4, $5, $6, $6)",
                number,
                fire_at,
                since,
                json.dumps(content, ensure_ascii=False, sort_keys=True),
                by,
                now,
            )
            if result.rowcount != 1:
                return None
            await _log(tx, now, by, "draft", number, "")
            row = await tx.fetchrow(_ISSUE + "WHERE status = 'draft'")
        assert row is not None
        return Issue.from_row(row)

    async def refresh(self, issue: Issue, content: dict[str, Any], by: str, now: int) -> bool:
        """The draft's gathered parts replaced; False if nothing changed."""
        if content == issue.content:
            return False
        async with self._db.transaction() as tx:
            changed = await _change(tx, issue, by, now)
            if changed:
                await tx.execute(
                    "UPDATE gazette_issues SET content = $1 WHERE id = $2",
                    json.dumps(content, ensure_ascii=False, sort_keys=True),
                    issue.id,
                )
                await _log(tx, now, by, "refresh", issue.number, "")
        return changed

    async def plan(self, issue: Issue, fire_at: int | None) -> None:
        """The draft is for the publication at `fire_at` (not a change of its text)."""
        await self._db.execute(
            "UPDATE gazette_issues SET fire_at = $1 WHERE id = $2 AND status = 'draft'",
            fire_at,
            issue.id,
        )

    # -- items ----------------------------------------------------------------

    async def items(self, issue_id: int) -> list[Item]:
        rows = await self._db.fetch(
            "SELECT n, section, text, author, added_at FROM gazette_items "
            "WHERE issue_id = $1 ORDER BY n",
            issue_id,
        )
        return [Item.from_row(r) for r in rows]

    async def add_item(
        self, issue: Issue, section: str, text: str, author: str, now: int
    ) -> int | None:
        """The new item's number; None if the draft changed meanwhile (published…)."""
        async with self._db.transaction() as tx:
            if not await _change(tx, issue, author, now):
                return None
            n = int(
                await tx.fetchval(
                    "SELECT coalesce(max(n), 0) + 1 FROM gazette_items WHERE issue_id = $1",
                    issue.id,
                )
            )
            await tx.execute(
                "INSERT INTO gazette_items (issue_id, n, section, text, author, added_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                issue.id,
                n,
                section,
                text,
                author,
                now,
            )
            await _log(tx, now, author, "add", issue.number, f"{n} {section}")
        return n

    async def remove_item(self, issue: Issue, n: int, by: str, now: int) -> Item | None:
        """The item removed; None if there is no such item (or the draft changed)."""
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT n, section, text, author, added_at FROM gazette_items "
                "WHERE issue_id = $1 AND n = $2",
                issue.id,
                n,
            )
            if row is None or not await _change(tx, issue, by, now):
                return None
            await tx.execute(
                "DELETE FROM gazette_items WHERE issue_id = $1 AND n = $2", issue.id, n
            )
            await _log(tx, now, by, "remove", issue.number, str(n))
        return Item.from_row(row)

    # -- approvals and previews -----------------------------------------------

    async def approvals(self, target: str) -> list[str]:
        rows = await self._db.fetch(
            "SELECT user_id FROM gazette_approvals WHERE target = $1 ORDER BY at, user_id", target
        )
        return [str(r["user_id"]) for r in rows]

    async def approve(self, target: str, user_id: str, number: int, now: int) -> bool:
        """False if this person had approved it already."""
        async with self._db.transaction() as tx:
            result = await tx.execute(
                "INSERT OR IGNORE INTO gazette_approvals (target, user_id, at) VALUES ($1, $2, $3)",
                target,
                user_id,
                now,
            )
            if result.rowcount == 1:
                await _log(tx, now, user_id, "approve", number, target.partition(":")[0])
        return result.rowcount == 1

    async def previewed(self, event_id: str, room_id: str, target: str) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO gazette_previews (event_id, room_id, target, at) "
            "VALUES ($1, $2, $3, $4)",
            event_id,
            room_id,
            target,
            int(time.time()),
        )

    async def preview(self, event_id: str, room_id: str) -> str | None:
        """What the preview `event_id` showed (an approval target); None: not a preview."""
        value = await self._db.fetchval(
            "SELECT target FROM gazette_previews WHERE event_id = $1 AND room_id = $2",
            event_id,
            room_id,
        )
        return None if value is None else str(value)

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
        fire_at: int | None = None,
    ) -> int | None:
        """Publish the draft as it reads at `issue.revision`: rows queued, None if it changed.

        One transaction: the issue fixed, a row per subscribed room, its feed
        entries marked, the scheduled time (if any) decided, the log.
        """
        async with self._db.transaction() as tx:
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
            await _log(tx, now, by, "publish", issue.number, str(queued))
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
            await _log(tx, now, by, action, issue.number, "" if n is None else str(n))
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
    ) -> int | None:
        """Apply an approved correction: the item and the issue's text, an edit per copy.

        Rows queued (rooms with a copy, or whose copy is still to send); None
        if the request was no longer pending.
        """
        assert request.n is not None and request.text is not None
        async with self._db.transaction() as tx:
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
            await _log(tx, now, by, "correct", issue.number, str(request.n))
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
    ) -> int | None:
        """Apply an approved retraction: copies not sent yet never will be, the
        others get a redaction each. Rows queued; None if no longer pending."""
        async with self._db.transaction() as tx:
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
            await _log(tx, now, by, "retract", issue.number, str(len(rows)))
        return queued

    # -- reading back ---------------------------------------------------------

    async def journal(self, limit: int = 20) -> list[LogEntry]:
        rows = await self._db.fetch(
            "SELECT at, actor, action, number, detail FROM gazette_log ORDER BY id DESC LIMIT $1",
            limit,
        )
        return [
            LogEntry(int(r["at"]), r["actor"], r["action"], int(r["number"]), r["detail"])
            for r in rows
        ]

    async def archives(self, limit: int = 20) -> list[Archived]:
        rows = await self._db.fetch(
            "SELECT i.number, i.status, i.published_at, "
            "(SELECT count(*) FROM gazette_copies c WHERE c.number = i.number) AS copies "
            "FROM gazette_issues i WHERE i.status != 'draft' ORDER BY i.number DESC LIMIT $1",
            limit,
        )
        return [
            Archived(int(r["number"]), r["status"], int(r["published_at"]), int(r["copies"]))
            for r in rows
        ]

    async def log(self, actor: str, action: str, number: int, detail: str = "") -> None:
        async with self._db.transaction() as tx:
            await _log(tx, int(time.time()), actor, action, number, detail)


async def _change(q: Queries, issue: Issue, by: str, now: int) -> bool:
    """The draft's next revision, if it is still the draft read as `issue`."""
    result = await q.execute(
        "UPDATE gazette_issues SET revision = revision + 1, changed_by = $1, changed_at = $2 "
        "WHERE id = $3 AND status = 'draft' AND revision = $4",
        by,
        now,
        issue.id,
        issue.revision,
    )
    return result.rowcount == 1


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


async def _log(q: Queries, at: int, actor: str, action: str, number: int, detail: str) -> None:
    await q.execute(
        "INSERT INTO gazette_log (at, actor, action, number, detail) VALUES ($1, $2, $3, $4, $5)",
        at,
        actor,
        action,
        number,
        detail,
    )
