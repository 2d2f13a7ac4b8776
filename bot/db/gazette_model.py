"""The gazette's rows as the code sees them: issues, items, requests, log entries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Self

from bot.db.database import Queries, Row

DRAFT, PUBLISHED, RETRACTED = "draft", "published", "retracted"
CORRECT, RETRACT = "correct", "retract"
# What became of an approval's target: still waiting for approvals; changed
# or replaced since (the approval no longer counts); published or applied.
CURRENT, OUTDATED, DONE = "current", "outdated", "done"


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
class Withdrawal:
    """A ✅ taken back: what its approval was for, and what became of it.

    `state`: CURRENT, the approval is withdrawn; OUTDATED, it no longer
    counted anyway; DONE, what it approved is done and stays so.
    """

    state: str
    kind: str  # "draft", CORRECT or RETRACT
    number: int
    target: str


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


ISSUE_QUERY = (
    "SELECT id, number, status, fire_at, since, content, revision, changed_by, changed_at, "
    "created_at, published_at, body, html FROM gazette_issues "
)


async def log_action(
    q: Queries, at: int, actor: str, action: str, number: int, detail: str
) -> None:
    await q.execute(
        "INSERT INTO gazette_log (at, actor, action, number, detail) VALUES ($1, $2, $3, $4, $5)",
        at,
        actor,
        action,
        number,
        detail,
    )
