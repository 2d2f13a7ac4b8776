"""Schema step 8: Encrypted events not decrypted yet."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


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
