"""The editorial gazette: issues, moderators' items, approvals, copies, audit log.

Only SQL. A change bumps the draft's revision, which is what approvals are
for, and records who made it (`gazette_changers`: none of them approves the
draft); a ✅ that approved is recorded with its approval, so that redacting it
withdraws that approval. The publication's transactions are in
`gazette_publication`, whose queries `GazetteStore` inherits. The row types
are in `gazette_model`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bot.db.database import Database, Queries
from bot.db.gazette_model import (
    CORRECT,
    CURRENT,
    DONE,
    DRAFT,
    ISSUE_QUERY,
    OUTDATED,
    PUBLISHED,
    RETRACT,
    RETRACTED,
    Archived,
    Issue,
    Item,
    LogEntry,
    Request,
    Withdrawal,
    log_action,
)
from bot.db.gazette_publication import Publication

__all__ = [
    "CORRECT",
    "CURRENT",
    "DONE",
    "DRAFT",
    "OUTDATED",
    "PUBLISHED",
    "RETRACT",
    "RETRACTED",
    "Archived",
    "GazetteStore",
    "Issue",
    "Item",
    "LogEntry",
    "Request",
    "Withdrawal",
]


class GazetteStore(Publication):
    """Drafts, items, approvals and the log (publication: `gazette_publication`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- issues ---------------------------------------------------------------

    async def draft(self) -> Issue | None:
        row = await self._db.fetchrow(ISSUE_QUERY + "WHERE status = 'draft'")
        return None if row is None else Issue.from_row(row)

    async def issue(self, issue_id: int) -> Issue | None:
        row = await self._db.fetchrow(ISSUE_QUERY + "WHERE id = $1", issue_id)
        return None if row is None else Issue.from_row(row)

    async def published(self, number: int) -> Issue | None:
        row = await self._db.fetchrow(
            ISSUE_QUERY + "WHERE number = $1 AND status != 'draft'", number
        )
        return None if row is None else Issue.from_row(row)

    async def latest(self) -> Issue | None:
        """The last issue published (retracted or not)."""
        row = await self._db.fetchrow(
            ISSUE_QUERY + "WHERE status != 'draft' ORDER BY number DESC LIMIT 1"
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
            await log_action(tx, now, by, "draft", number, "")
            row = await tx.fetchrow(ISSUE_QUERY + "WHERE status = 'draft'")
            assert row is not None
            await _changer(tx, int(row["id"]), by)
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
                await log_action(tx, now, by, "refresh", issue.number, "")
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
            await log_action(tx, now, author, "add", issue.number, f"{n} {section}")
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
            await log_action(tx, now, by, "remove", issue.number, str(n))
        return Item.from_row(row)

    # -- approvals ------------------------------------------------------------

    async def approvals(self, target: str) -> list[str]:
        rows = await self._db.fetch(
            "SELECT user_id FROM gazette_approvals WHERE target = $1 ORDER BY at, user_id", target
        )
        return [str(r["user_id"]) for r in rows]

    async def changers(self, issue_id: int) -> set[str]:
        """Everyone who changed this draft (built it, gathered it again, added or removed)."""
        rows = await self._db.fetch(
            "SELECT user_id FROM gazette_changers WHERE issue_id = $1", issue_id
        )
        return {str(r["user_id"]) for r in rows}

    async def approve(
        self,
        target: str,
        user_id: str,
        number: int,
        now: int,
        reaction: tuple[str, str] | None = None,
    ) -> bool:
        """False if this person had approved it already.

        `reaction`: the ✅ (event id, room) that approves (or approves again):
        recorded with the approval, its redaction withdraws it.
        """
        async with self._db.transaction() as tx:
            result = await tx.execute(
                "INSERT OR IGNORE INTO gazette_approvals (target, user_id, at) VALUES ($1, $2, $3)",
                target,
                user_id,
                now,
            )
            if result.rowcount == 1:
                await log_action(tx, now, user_id, "approve", number, target.partition(":")[0])
            if reaction is not None:
                await tx.execute(
                    "INSERT OR IGNORE INTO gazette_approval_reactions "
                    "(event_id, room_id, target, user_id, at) VALUES ($1, $2, $3, $4, $5)",
                    reaction[0],
                    reaction[1],
                    target,
                    user_id,
                    now,
                )
        return result.rowcount == 1

    async def approved_by_reaction(self, event_id: str, room_id: str) -> str | None:
        """Who approved something with the ✅ `event_id` (None: it approved nothing)."""
        value = await self._db.fetchval(
            "SELECT user_id FROM gazette_approval_reactions WHERE event_id = $1 AND room_id = $2",
            event_id,
            room_id,
        )
        return None if value is None else str(value)

    async def withdraw(self, reaction: str, user_id: str, now: int) -> Withdrawal | None:
        """The approval the ✅ `reaction` of `user_id` gave, withdrawn; None: it gave none.

        Not once what it approved is done (the issue published, the
        correction or retraction applied): that is not undone. An approval of
        a version changed since counted no more; it goes without a log line.
        """
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT target FROM gazette_approval_reactions "
                "WHERE event_id = $1 AND user_id = $2",
                reaction,
                user_id,
            )
            if row is None:
                return None
            target = str(row["target"])
            found = await _target_state(tx, target)
            if found is None:
                return None
            kind, number, state = found
            if state == DONE:
                return Withdrawal(DONE, kind, number, target)
            await tx.execute(
                "DELETE FROM gazette_approval_reactions WHERE target = $1 AND user_id = $2",
                target,
                user_id,
            )
            result = await tx.execute(
                "DELETE FROM gazette_approvals WHERE target = $1 AND user_id = $2",
                target,
                user_id,
            )
            if result.rowcount != 1:
                return None  # withdrawn already (a second ✅ of the same person)
            if state == CURRENT:
                await log_action(tx, now, user_id, "unapprove", number, kind)
        return Withdrawal(state, kind, number, target)

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
            await log_action(tx, int(time.time()), actor, action, number, detail)


async def _change(q: Queries, issue: Issue, by: str, now: int) -> bool:
    """The draft's next revision, if it is still the draft read as `issue`;
    `by` is one of its changers from now on."""
    result = await q.execute(
        "UPDATE gazette_issues SET revision = revision + 1, changed_by = $1, changed_at = $2 "
        "WHERE id = $3 AND status = 'draft' AND revision = $4",
        by,
        now,
        issue.id,
        issue.revision,
    )
    if result.rowcount != 1:
        return False
    await _changer(q, issue.id, by)
    return True


async def _changer(q: Queries, issue_id: int, by: str) -> None:
    await q.execute(
        "INSERT OR IGNORE INTO gazette_changers (issue_id, user_id) VALUES ($1, $2)",
        issue_id,
        by,
    )


async def _target_state(q: Queries, target: str) -> tuple[str, int, str] | None:
    """(kind, issue number, state) of an approval's target: "draft", "correct" or
    "retract"; CURRENT (waiting for approvals), OUTDATED (changed or replaced
    since), DONE (published, applied). None: no such target."""
    kind, _, ref = target.partition(":")
    if kind == "draft":
        issue_id, _, revision = ref.partition(":")
        row = await q.fetchrow(
            "SELECT number, status, revision FROM gazette_issues WHERE id = $1", int(issue_id)
        )
        if row is None:
            return None
        if row["status"] != DRAFT:
            state = DONE
        else:
            state = CURRENT if int(row["revision"]) == int(revision) else OUTDATED
        return kind, int(row["number"]), state
    row = await q.fetchrow(
        "SELECT r.kind, r.status, i.number FROM gazette_requests r "
        "JOIN gazette_issues i ON i.id = r.issue_id WHERE r.id = $1",
        int(ref),
    )
    if row is None:
        return None
    states = {"pending": CURRENT, "applied": DONE}
    return str(row["kind"]), int(row["number"]), states.get(str(row["status"]), OUTDATED)
