"""Versioned, described migrations: the schema from nothing to today, one step at a time.

Each step is a function registered with its version and what it does;
`UpgradeTable.upgrade` applies the missing ones in order, each in its own
transaction together with its `PRAGMA user_version` bump, so that a crash
leaves the database at a known version. A database newer than the code is
refused and left untouched.

Never edit a released step (databases in the wild went through it): append
a new one. The SQL of steps 1-9 is the text they were released with.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from bot.db.database import Database, Queries, StorageError, Transaction

log = logging.getLogger(__name__)

Upgrade = Callable[[Transaction], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Step:
    version: int  # the schema version this step brings the database to
    description: str
    apply: Upgrade


class UpgradeTable:
    def __init__(self, steps: Iterable[Step] = ()) -> None:
        self._steps: list[Step] = []
        for step in steps:
            self._add(step)

    def _add(self, step: Step) -> None:
        if step.version != len(self._steps) + 1:
            raise ValueError(f"migration {step.version} registered after {len(self._steps)}")
        self._steps.append(step)

    def register(self, version: int, description: str) -> Callable[[Upgrade], Upgrade]:
        """Decorator: the function brings the schema from `version - 1` to `version`."""

        def add(fn: Upgrade) -> Upgrade:
            self._add(Step(version, description, fn))
            return fn

        return add

    def __iter__(self) -> Iterator[Step]:
        return iter(self._steps)

    @property
    def latest(self) -> int:
        return len(self._steps)

    async def upgrade(self, db: Database) -> None:
        current = await schema_version(db)
        if current > self.latest:
            raise StorageError(
                f"the database was written by a newer version of the bot (schema {current}, "
                f"this version knows up to {self.latest}); upgrade the bot or restore a "
                "backup, the database was left untouched"
            )
        for step in self._steps[current:]:
            log.info("storage: applying migration %d (%s)", step.version, step.description)
            async with db.transaction() as tx:
                await step.apply(tx)
                # PRAGMA takes no parameter; the version is our own integer.
                await tx.execute(f"PRAGMA user_version = {int(step.version)}")


async def schema_version(db: Queries) -> int:
    return int(await db.fetchval("PRAGMA user_version") or 0)


async def run_script(tx: Transaction, script: str) -> None:
    """A migration's statements in order (ours hold no ';' inside literals)."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            await tx.execute(statement.strip())


upgrades = UpgradeTable()


@upgrades.register(1, "Key/value pairs (sync token), inbox of commands, agenda sources' copies")
async def upgrade_v1(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    CREATE TABLE kv (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    -- One row per command received. `body` is kept only until it is answered
    -- (personal data: the minimum, for the shortest time).
    CREATE TABLE inbox (
        event_id    TEXT PRIMARY KEY,
        room_id     TEXT NOT NULL,
        sender      TEXT NOT NULL,
        body        TEXT,
        thread_root TEXT,
        received_at INTEGER NOT NULL,
        status      TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'done', 'failed')),
        attempts    INTEGER NOT NULL DEFAULT 0,
        finished_at INTEGER
    );
    CREATE INDEX inbox_pending ON inbox (received_at) WHERE status = 'pending';
    CREATE TABLE source_cache (
        source        TEXT PRIMARY KEY,
        body          BLOB NOT NULL,
        etag          TEXT,
        last_modified TEXT,
        fetched_at    INTEGER NOT NULL
    );
    """,
    )


@upgrades.register(2, "Moderators' agenda edits and the programme changes found")
async def upgrade_v2(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- Moderators' edits, applied in order on top of the sources at every
    -- rebuild. `target` is the id of the session changed (for 'add': the id
    -- of the session created). `fields` is JSON.
    CREATE TABLE agenda_edits (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        action     TEXT NOT NULL CHECK (action IN ('add', 'modify', 'cancel')),
        target     TEXT NOT NULL,
        fields     TEXT NOT NULL DEFAULT '{}',
        author     TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX agenda_edits_target ON agenda_edits (target);
    -- Programme changes found by a refresh or an edit, written in the same
    -- transaction as what they were computed from: none lost, none twice.
    CREATE TABLE agenda_changes (
        key        TEXT PRIMARY KEY,
        kind       TEXT NOT NULL,
        sid        TEXT NOT NULL,
        payload    TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX agenda_changes_created ON agenda_changes (created_at);
    """,
    )


@upgrades.register(3, "The mentor directory: mentors, their topics, requests, the audit log")
async def upgrade_v3(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- Mentor directory: the minimum (Matrix ID, display name cache, topics,
    -- who added them and when). Topics: normalised key + label as shown.
    CREATE TABLE mentors (
        user_id      TEXT PRIMARY KEY,
        display_name TEXT
    );
    CREATE TABLE mentor_topics (
        user_id   TEXT NOT NULL REFERENCES mentors (user_id) ON DELETE CASCADE,
        topic_key TEXT NOT NULL,
        label     TEXT NOT NULL,
        added_by  TEXT NOT NULL,
        added_at  INTEGER NOT NULL,
        PRIMARY KEY (user_id, topic_key)
    );
    CREATE INDEX mentor_topics_key ON mentor_topics (topic_key);
    CREATE TABLE mentor_requests (
        user_id      TEXT NOT NULL,
        topic_key    TEXT NOT NULL,
        label        TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, topic_key)
    );
    -- Who did what to the directory, and when; readable by moderators.
    CREATE TABLE mentor_audit (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        actor  TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        at     INTEGER NOT NULL
    );
    """,
    )


@upgrades.register(
    4, "Subscriptions and the outbox of broadcasts; programme changes marked once fanned out"
)
async def upgrade_v4(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- Rooms that receive scheduled posts, by kind.
    CREATE TABLE subscriptions (
        room_id  TEXT NOT NULL,
        kind     TEXT NOT NULL,
        added_by TEXT NOT NULL,
        added_at INTEGER NOT NULL,
        PRIMARY KEY (room_id, kind)
    );
    -- One row per (broadcast, room), with its transaction id, written before
    -- sending and marked after: a crash resends with the same id, which the
    -- homeserver deduplicates.
    CREATE TABLE outbox (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        broadcast  TEXT NOT NULL,
        room_id    TEXT NOT NULL,
        txn_id     TEXT NOT NULL,
        status     TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
        attempts   INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        sent_at    INTEGER,
        UNIQUE (broadcast, room_id)
    );
    CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';
    ALTER TABLE agenda_changes ADD COLUMN fanned_out INTEGER NOT NULL DEFAULT 0;
    """,
    )


@upgrades.register(5, "Feed entries already seen")
async def upgrade_v5(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- Feed entries already seen (posted or not), by feed and entry key.
    CREATE TABLE feed_entries (
        feed      TEXT NOT NULL,
        key       TEXT NOT NULL,
        broadcast TEXT NOT NULL UNIQUE,
        title     TEXT NOT NULL,
        link      TEXT NOT NULL,
        seen_at   INTEGER NOT NULL,
        PRIMARY KEY (feed, key)
    );
    """,
    )


@upgrades.register(6, "Personal reminders and the direct room opened with each person")
async def upgrade_v6(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- Personal reminders: who asked for which session (id, title, start as
    -- asked), and the direct room the bot opened with them.
    CREATE TABLE personal_reminders (
        user_id    TEXT NOT NULL,
        sid        TEXT NOT NULL,
        title      TEXT NOT NULL,
        start      INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, sid)
    );
    CREATE TABLE direct_rooms (
        user_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL
    );
    """,
    )


@upgrades.register(
    7, "The bot's posts presenting sessions (for 🔔); commands answered in the direct room"
)
async def upgrade_v7(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- The bot's posts that present sessions (answers, reminders): a 🔔
    -- reaction to one asks for personal reminders of these sessions.
    CREATE TABLE posted_sessions (
        event_id  TEXT PRIMARY KEY,
        room_id   TEXT NOT NULL,
        sids      TEXT NOT NULL,
        posted_at INTEGER NOT NULL
    );
    -- A command to answer in the sender's direct room (a 🔔 reaction).
    ALTER TABLE inbox ADD COLUMN direct INTEGER NOT NULL DEFAULT 0;
    """,
    )


@upgrades.register(8, "Encrypted events not decrypted yet")
async def upgrade_v8(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- Encrypted events the bot could not decrypt yet (ciphertext as received):
    -- retried when their room key arrives, told once after a delay if never.
    CREATE TABLE undecrypted (
        event_id    TEXT PRIMARY KEY,
        room_id     TEXT NOT NULL,
        sender      TEXT NOT NULL,
        session_id  TEXT NOT NULL,
        event       TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        status      TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'decrypted', 'told', 'dropped')),
        finished_at INTEGER
    );
    CREATE INDEX undecrypted_pending ON undecrypted (session_id) WHERE status = 'pending';
    """,
    )


@upgrades.register(9, "Personal reminders remember the 🔔 reaction that asked for them")
async def upgrade_v9(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- The 🔔 reaction that asked for a personal reminder: removing the
    -- reaction cancels it.
    ALTER TABLE personal_reminders ADD COLUMN via TEXT;
    """,
    )


@upgrades.register(10, "An erased person in the mentor audit log is '' (templates show a label)")
async def upgrade_v10(tx: Transaction) -> None:
    # Until now the French label itself was stored; the templates now render
    # the empty marker in the reader's language.
    await run_script(
        tx,
        """
    UPDATE mentor_audit SET actor = '' WHERE actor = '(personne retirée)';
    UPDATE mentor_audit SET target = '' WHERE target = '(personne retirée)';
    """,
    )


@upgrades.register(11, "A command asked for by a reaction (🔔) is stored as its name and arguments")
async def upgrade_v11(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- The registered name of the command to run, for a command no one typed
    -- (a 🔔 reaction): `body` then holds its arguments, not text to parse.
    ALTER TABLE inbox ADD COLUMN command TEXT;
    """,
    )


@upgrades.register(12, "Edited commands: the inbox keeps each command's time and answer")
async def upgrade_v12(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- When the command was sent (origin_server_ts, ms): an edit counts only
    -- within `bot.edit_window` of it. NULL for rows of earlier versions.
    ALTER TABLE inbox ADD COLUMN sent_ms INTEGER;
    -- The bot's answer (a notice) that an edit of the command replaces;
    -- NULL when unanswered, or answered with a file (which cannot be edited).
    ALTER TABLE inbox ADD COLUMN answer_id TEXT;
    -- Set on an edit: the command it edits (the edit is its own inbox row,
    -- answered once like a command).
    ALTER TABLE inbox ADD COLUMN replaces TEXT;
    CREATE INDEX inbox_edits ON inbox (replaces) WHERE replaces IS NOT NULL;
    """,
    )


# The letters `fold` expands since step 13, as they were then (lower case:
# keys are casefolded). Frozen here: a later change to `fold` needs its own step.
_V13_LIGATURES = (
    ("œ", "oe"),
    ("æ", "ae"),
    ("ø", "o"),
    ("ł", "l"),
    ("đ", "d"),
    ("ð", "d"),
    ("þ", "th"),
    ("ı", "i"),
)


def _v13_refolded(column: str) -> str:
    expr = column
    for letter, ascii_ in _V13_LIGATURES:
        expr = f"replace({expr}, '{letter}', '{ascii_}')"
    return expr


@upgrades.register(13, "Mentor topic keys spell œ, æ… as oe, ae… (what `fold` now does)")
async def upgrade_v13(tx: Transaction) -> None:
    # A key that would collide with one the person already has (both
    # "œuvre" and "oeuvre") is the same topic: the older spelling goes.
    for table in ("mentor_topics", "mentor_requests"):
        refolded = _v13_refolded("topic_key")
        await tx.execute(f"UPDATE OR IGNORE {table} SET topic_key = {refolded}")  # noqa: S608
        await tx.execute(f"DELETE FROM {table} WHERE topic_key <> {refolded}")  # noqa: S608


@upgrades.register(
    14, "Rooms as they live: abandoned posts, the subscriptions' audit trail, empty rooms, upgrades"
)
async def upgrade_v14(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- A post to a room the bot is no longer in is 'abandoned' (not 'failed':
    -- nothing was tried). SQLite cannot alter a CHECK: the table is rebuilt,
    -- ids kept (AUTOINCREMENT goes on from the largest).
    CREATE TABLE outbox_new (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        broadcast  TEXT NOT NULL,
        room_id    TEXT NOT NULL,
        txn_id     TEXT NOT NULL,
        status     TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'sent', 'failed', 'skipped', 'abandoned')),
        attempts   INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        sent_at    INTEGER,
        UNIQUE (broadcast, room_id)
    );
    INSERT INTO outbox_new (id, broadcast, room_id, txn_id, status, attempts, created_at, sent_at)
        SELECT id, broadcast, room_id, txn_id, status, attempts, created_at, sent_at FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_new RENAME TO outbox;
    CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';
    CREATE INDEX outbox_room_pending ON outbox (room_id) WHERE status = 'pending';
    -- Who subscribed, unsubscribed, moved or ended a room's subscription, and
    -- when (a kick ends them: 'ended', detail 'kicked by @x'). For moderators.
    CREATE TABLE subscription_audit (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        room_id TEXT NOT NULL,
        kind    TEXT NOT NULL,
        action  TEXT NOT NULL,
        actor   TEXT NOT NULL,
        detail  TEXT NOT NULL DEFAULT '',
        at      INTEGER NOT NULL
    );
    CREATE INDEX subscription_audit_room ON subscription_audit (room_id, id);
    -- Rooms where no one but the bot is joined or invited, since when: kept
    -- across restarts so that the delay before leaving is not reset.
    CREATE TABLE alone_rooms (
        room_id TEXT PRIMARY KEY,
        since   INTEGER NOT NULL
    );
    -- Room upgrades (m.room.tombstone) seen: 'pending' until the bot is in the
    -- replacement room and has moved what belonged to the old one there.
    CREATE TABLE room_upgrades (
        old_room TEXT PRIMARY KEY,
        new_room TEXT NOT NULL,
        sender   TEXT NOT NULL,
        status   TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'moved')),
        seen_at  INTEGER NOT NULL,
        moved_at INTEGER
    );
    CREATE INDEX room_upgrades_new ON room_upgrades (new_room) WHERE status = 'pending';
    """,
    )


@upgrades.register(15, "Each source's sessions as the last good refresh left them")
async def upgrade_v15(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- The normalised sessions of each source (before moderators' edits), saved
    -- with the copy they come from: a start serves them without parsing.
    -- `sessions` is bot.agenda.packed (one JSON array per line); `params` says
    -- what they were computed with, to ignore them when that changed.
    CREATE TABLE agenda_sessions (
        source    TEXT PRIMARY KEY,
        params    TEXT NOT NULL,
        parsed_at INTEGER NOT NULL,
        sessions  BLOB NOT NULL
    );
    """,
    )


@upgrades.register(16, "Personal calendar feeds: one secret link per person, stored as a hash")
async def upgrade_v16(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- `!mon-agenda`: the address <web.public_url>/moi/<token>.ics lists the
    -- sessions its owner asked to be reminded of. Only the token's SHA-256
    -- (hex) is kept: the database alone opens no one's calendar.
    CREATE TABLE personal_feeds (
        user_id    TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    """,
    )


@upgrades.register(17, "What the public calendars have published of each session")
async def upgrade_v17(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- One row per session the calendars (/agenda.ics) list or listed lately.
    -- Subscribed apps know an event by its UID: a session moved by its source
    -- gets a new id but keeps its UID, with SEQUENCE + 1 and a new DTSTAMP.
    -- `stamp` (DTSTAMP, LAST-MODIFIED) changes only when what a calendar app
    -- shows changes (`fingerprint`), so identical feeds are identical bytes.
    -- A cancelled or vanished session keeps its row, `gone_at` set and its
    -- last state in `payload` (JSON), and is served STATUS:CANCELLED until
    -- `web.cancelled_kept` has passed.
    CREATE TABLE published_sessions (
        sid         TEXT PRIMARY KEY,
        uid         TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        sequence    INTEGER NOT NULL DEFAULT 0,
        stamp       INTEGER NOT NULL,
        gone_at     INTEGER,
        payload     TEXT
    );
    """,
    )


@upgrades.register(18, "The editorial gazette: drafts, items, approvals, copies, audit log")
async def upgrade_v18(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- An issue: one open draft at most, then published (its number fixed,
    -- its text frozen in `body`/`html`, corrected in place), maybe retracted.
    -- `content` (JSON) is what the bot gathered when the draft was built
    -- (sessions, feed entries, mentor topics), so that what moderators
    -- approve is what goes out. `revision` grows at every change; approvals
    -- are for one revision.
    CREATE TABLE gazette_issues (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        number       INTEGER NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('draft', 'published', 'retracted')),
        fire_at      INTEGER,
        since        INTEGER NOT NULL,
        content      TEXT NOT NULL,
        revision     INTEGER NOT NULL DEFAULT 1,
        changed_by   TEXT NOT NULL,
        changed_at   INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        published_at INTEGER,
        body         TEXT,
        html         TEXT
    );
    CREATE UNIQUE INDEX gazette_one_draft ON gazette_issues (status) WHERE status = 'draft';
    CREATE UNIQUE INDEX gazette_numbers ON gazette_issues (number) WHERE status != 'draft';
    -- What moderators write, numbered per issue (numbers are never reused).
    CREATE TABLE gazette_items (
        issue_id INTEGER NOT NULL REFERENCES gazette_issues (id) ON DELETE CASCADE,
        n        INTEGER NOT NULL,
        section  TEXT NOT NULL,
        text     TEXT NOT NULL,
        author   TEXT NOT NULL,
        added_at INTEGER NOT NULL,
        PRIMARY KEY (issue_id, n)
    );
    -- A correction or a retraction of a published issue, waiting for approval.
    CREATE TABLE gazette_requests (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        issue_id     INTEGER NOT NULL REFERENCES gazette_issues (id) ON DELETE CASCADE,
        kind         TEXT NOT NULL CHECK (kind IN ('correct', 'retract')),
        n            INTEGER,
        text         TEXT,
        requested_by TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        status       TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'applied', 'replaced'))
    );
    -- Approvals of one target: "draft:<issue id>:<revision>" or "request:<id>".
    CREATE TABLE gazette_approvals (
        target  TEXT NOT NULL,
        user_id TEXT NOT NULL,
        at      INTEGER NOT NULL,
        PRIMARY KEY (target, user_id)
    );
    -- The bot's previews in the editors' room: a ✅ on one approves its target.
    CREATE TABLE gazette_previews (
        event_id TEXT NOT NULL,
        room_id  TEXT NOT NULL,
        target   TEXT NOT NULL,
        at       INTEGER NOT NULL,
        PRIMARY KEY (event_id, room_id)
    );
    -- Each room's copy of a published issue (corrections edit it, a
    -- retraction redacts it): kept as long as the issue, unlike the outbox.
    CREATE TABLE gazette_copies (
        number   INTEGER NOT NULL,
        room_id  TEXT NOT NULL,
        event_id TEXT NOT NULL,
        sent_at  INTEGER NOT NULL,
        PRIMARY KEY (number, room_id)
    );
    -- Scheduled publication times already decided (published, or missed).
    CREATE TABLE gazette_fires (
        fire_at INTEGER PRIMARY KEY,
        outcome TEXT NOT NULL,
        number  INTEGER NOT NULL,
        at      INTEGER NOT NULL
    );
    -- Who did what, when: shown by `!gazette journal`.
    CREATE TABLE gazette_log (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        at     INTEGER NOT NULL,
        actor  TEXT NOT NULL,
        action TEXT NOT NULL,
        number INTEGER NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    -- Feed entries: whether the relay posts it (`wanted`), and the issue that
    -- listed it (then it is not relayed again, and not listed twice).
    ALTER TABLE feed_entries ADD COLUMN wanted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE feed_entries ADD COLUMN gazette INTEGER;
    """,
    )


@upgrades.register(19, "Audit trails say from which room: the agenda's, the mentor directory's")
async def upgrade_v19(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- Every moderator's change of the agenda (added, modified, cancelled,
    -- restored), kept when the edit itself is undone: who, what, when, from
    -- which room. Readable by community moderators (`!session journal`).
    CREATE TABLE agenda_audit (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      INTEGER NOT NULL,
        actor   TEXT NOT NULL,
        room_id TEXT NOT NULL DEFAULT '',
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        detail  TEXT NOT NULL DEFAULT ''
    );
    -- The edits made before this step, as the trail's first entries.
    INSERT INTO agenda_audit (at, actor, action, target, detail)
        SELECT created_at, author, action, target, fields FROM agenda_edits ORDER BY id;
    ALTER TABLE mentor_audit ADD COLUMN room_id TEXT NOT NULL DEFAULT '';
    """,
    )


@upgrades.register(20, "Gazette four eyes: who changed each draft, the ✅ that gave each approval")
async def upgrade_v20(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- Everyone who changed a draft: built it on request, gathered its content
    -- again, added or removed an item ('' is the bot, on schedule). None of
    -- them approves it: an approval counts from a moderator who had no part
    -- in the text. Drafts of earlier versions: their last changer, their
    -- items' authors and the changes the log holds since they were built.
    CREATE TABLE gazette_changers (
        issue_id INTEGER NOT NULL REFERENCES gazette_issues (id) ON DELETE CASCADE,
        user_id  TEXT NOT NULL,
        PRIMARY KEY (issue_id, user_id)
    );
    INSERT OR IGNORE INTO gazette_changers (issue_id, user_id)
        SELECT id, changed_by FROM gazette_issues WHERE status = 'draft';
    INSERT OR IGNORE INTO gazette_changers (issue_id, user_id)
        SELECT i.issue_id, i.author FROM gazette_items i
        JOIN gazette_issues g ON g.id = i.issue_id WHERE g.status = 'draft';
    INSERT OR IGNORE INTO gazette_changers (issue_id, user_id)
        SELECT g.id, l.actor FROM gazette_log l
        JOIN gazette_issues g ON g.number = l.number AND g.status = 'draft'
        WHERE l.action IN ('draft', 'refresh', 'add', 'remove') AND l.at >= g.created_at;
    -- The ✅ reactions that approved (or approved again) a target: their
    -- sender redacting one withdraws that approval.
    CREATE TABLE gazette_approval_reactions (
        event_id TEXT PRIMARY KEY,
        room_id  TEXT NOT NULL,
        target   TEXT NOT NULL,
        user_id  TEXT NOT NULL,
        at       INTEGER NOT NULL
    );
    CREATE INDEX gazette_approval_reactions_by ON gazette_approval_reactions (target, user_id);
    """,
    )


@upgrades.register(21, "Room upgrades the bot refused to follow (the new room is not a successor)")
async def upgrade_v21(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- 'refused': the replacement room's m.room.create does not name the old
    -- room as its predecessor; nothing was moved (kept so that a restart,
    -- which shows the tombstone again, does not try again). SQLite cannot
    -- alter a CHECK: the table is rebuilt (its index goes with the old one).
    CREATE TABLE room_upgrades_v21 (
        old_room TEXT PRIMARY KEY,
        new_room TEXT NOT NULL,
        sender   TEXT NOT NULL,
        status   TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'moved', 'refused')),
        seen_at  INTEGER NOT NULL,
        moved_at INTEGER
    );
    INSERT INTO room_upgrades_v21 (old_room, new_room, sender, status, seen_at, moved_at)
        SELECT old_room, new_room, sender, status, seen_at, moved_at FROM room_upgrades;
    DROP TABLE room_upgrades;
    ALTER TABLE room_upgrades_v21 RENAME TO room_upgrades;
    CREATE INDEX room_upgrades_new ON room_upgrades (new_room) WHERE status = 'pending';
    """,
    )
