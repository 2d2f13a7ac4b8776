"""Schema step 23: Reactions declared by commands: what a reaction resolved to, posts' marks."""

from __future__ import annotations

import json

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades

# What steps up to 22 stored, frozen here as released: the names and markers
# of the commands that a 🔔 and a ✅ ran, and their reaction triggers now.
REMIND, APPROVE = "remind", "approve"
REMIND_NAMES = {"rappelle-moi", "remind-me", "rappellemoi"}
FORGET_NAMES = {"oublie", "forget", "oublier"}
PREVIEW_MARK, WITHDRAW_MARK = "valider @", "valider -"


@upgrades.register(23, "Reactions declared by commands: what a reaction resolved to, posts' marks")
async def upgrade_v23(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- What the reaction that runs an inbox row resolved to, as JSON
    -- (bot.chat.Triggered): its trigger, its event (or the one taken back),
    -- the values its command receives. NULL: a typed command.
    ALTER TABLE inbox ADD COLUMN trigger TEXT;
    -- What reactions to the bot's posts mean (bot.render.Message.marks): one
    -- row per post and trigger, the values as a JSON list. Replaces
    -- posted_sessions (🔔) and gazette_previews (✅).
    CREATE TABLE post_marks (
        event_id  TEXT NOT NULL,
        room_id   TEXT NOT NULL,
        name      TEXT NOT NULL,
        value     TEXT NOT NULL,
        posted_at INTEGER NOT NULL,
        PRIMARY KEY (event_id, room_id, name)
    );
    CREATE INDEX post_marks_posted_at ON post_marks (posted_at);
    """,
    )
    for row in await tx.fetch("SELECT event_id, room_id, sids, posted_at FROM posted_sessions"):
        await _mark(tx, row["event_id"], row["room_id"], REMIND, row["sids"].split(), row[3])
    for row in await tx.fetch("SELECT event_id, room_id, target, at FROM gazette_previews"):
        await _mark(tx, row["event_id"], row["room_id"], APPROVE, [row["target"]], row["at"])
    await run_script(tx, "DROP TABLE posted_sessions; DROP TABLE gazette_previews;")
    rows = await tx.fetch(
        "SELECT event_id, body, direct, command, follows FROM inbox "
        "WHERE command IS NOT NULL OR direct"
    )
    for row in rows:
        trigger = _trigger(row["event_id"], row["body"] or "", row["command"], row["follows"])
        if trigger is not None:
            await tx.execute(
                "UPDATE inbox SET trigger = $1 WHERE event_id = $2",
                json.dumps(trigger),
                row["event_id"],
            )


async def _mark(
    tx: Transaction, event_id: str, room_id: str, name: str, values: list[str], at: int
) -> None:
    if values:
        await tx.execute(
            "INSERT OR IGNORE INTO post_marks (event_id, room_id, name, value, posted_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            event_id,
            room_id,
            name,
            json.dumps(values),
            at,
        )


def _trigger(
    event_id: str, body: str, command: str | None, follows: str | None
) -> dict[str, object] | None:
    """What a row recorded for a reaction by steps up to 22 resolved to.

    A 🔔 was stored as `rappelle-moi` and its sessions (in private), or, in
    early versions, as the text `!rappelle-moi <ids>`; taking it back as `oublie`
    and the sessions (`follows`: the 🔔 when it was taken back before its
    answer); a ✅ as `gazette` `valider @<target>`, taking it back as
    `valider -<the ✅>`. Finished rows have no body any more: their values
    no longer matter.
    """
    if command == "gazette":
        if body.startswith(PREVIEW_MARK):
            return _json(APPROVE, event_id, [body[len(PREVIEW_MARK) :]], undo=False)
        if body.startswith(WITHDRAW_MARK):
            return _json(APPROVE, body[len(WITHDRAW_MARK) :], [], undo=True)
        return None
    words = body.split()
    if command is None:  # the text of the command, under the prefix of the day
        first = words[0].lstrip("!?.$/-+*#%&") if words else ""
        command, words = first.lower(), words[1:]
    if command in FORGET_NAMES:
        return _json(REMIND, follows or "", words, undo=True)
    if command in REMIND_NAMES:
        return _json(REMIND, event_id, words, undo=False)
    return None


def _json(name: str, reaction: str, values: list[str], *, undo: bool) -> dict[str, object]:
    return {"name": name, "reaction": reaction, "values": values, "undo": undo}
