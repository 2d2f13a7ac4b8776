"""Schema step 23 on a database of step 22: what reactions asked for, recorded then as
command text (`rappelle-moi <ids>`, `gazette valider @…`/`-…`), is answered after the
upgrade as it would have been; what the bot's posts meant to 🔔 and ✅ still holds."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bot.agenda.model import Session
from bot.chat import Triggered
from bot.db.storage import Storage
from bot.db.upgrade import UpgradeTable, upgrades
from bot.render import Message
from tests.fakes import FakeChat, FakeClock, make_dispatcher
from tests.helpers import NOW

ROOM, EDITORS = "!a:example.org", "!editors:example.org"
MEMBER, DENISE = "@agent:example.org", "@denise:example.org"
GRIST = Session(
    title="Webinaire Grist", start=NOW + timedelta(days=1), end=NOW + timedelta(days=1, hours=1)
)


async def test_rows_of_step_22_are_answered_as_they_were_after_the_upgrade(tmp_path: Path) -> None:
    old = await Storage.open(
        tmp_path / "db.sqlite", migrations=UpgradeTable(s for s in upgrades if s.version < 23)
    )
    db = old.db
    await db.execute(
        "INSERT INTO posted_sessions (event_id, room_id, sids, posted_at) "
        "VALUES ('$post', $1, $2, 100)",
        ROOM,
        f"{GRIST.sid} other",
    )
    await db.execute(
        "INSERT INTO gazette_previews (event_id, room_id, target, at) "
        "VALUES ('$preview', $1, 'draft:1:2', 100)",
        EDITORS,
    )
    # Pending rows as step 22's dispatcher recorded them, the bot stopped before answering:
    # a 🔔 and taking it back in one batch, a ✅ on a preview since changed, and taking
    # back a ✅ that approved nothing.
    for event_id, room, sender, body, direct, command, follows in (
        ("$bell", ROOM, MEMBER, GRIST.sid, 1, "rappelle-moi", None),
        ("$unbell", ROOM, MEMBER, GRIST.sid, 1, "oublie", "$bell"),
        ("$ok", EDITORS, DENISE, "valider @draft:9:9", 0, "gazette", None),
        ("$undo", EDITORS, DENISE, "valider -$gone", 0, "gazette", None),
    ):
        await db.execute(
            "INSERT INTO inbox (event_id, room_id, sender, body, thread_root, received_at, "
            "attempts, direct, command, follows) VALUES ($1, $2, $3, $4, NULL, 100, 1, $5, $6, $7)",
            event_id,
            room,
            sender,
            body,
            direct,
            command,
            follows,
        )
    await old.close()

    chat = FakeChat(levels={(EDITORS, DENISE): 50})
    dispatcher, chat, storage = await make_dispatcher(
        tmp_path,
        [GRIST],
        FakeClock(NOW),
        chat,
        gazette={"editors_room": EDITORS},
        bot={"moderator_rooms": [EDITORS]},
    )
    try:
        assert await storage.schema_version() == 23
        posts = storage.posts
        assert await posts.mark("$post", ROOM, "remind") == (GRIST.sid, "other")
        assert await posts.mark("$preview", EDITORS, "approve") == ("draft:1:2",)
        rows = [await storage.inbox.get(e) for e in ("$bell", "$unbell", "$undo")]
        triggers = {row.event_id: row.trigger for row in rows if row is not None}
        assert triggers == {
            "$bell": Triggered("remind", "$bell", (GRIST.sid,)),
            "$unbell": Triggered("remind", "$bell", (GRIST.sid,), undo=True),
            "$undo": Triggered("approve", "$gone", (), undo=True),
        }

        assert await dispatcher.resume_pending() == 4
        await dispatcher.drain()
        ((_, dm),) = chat.direct_rooms
        private = [s.message.body for s in chat.sent if s.room_id == dm]
        assert private[0].startswith("🔔 C'est noté") and private[1].startswith("✅ Rappel annulé")
        assert await storage.personal.reminders(MEMBER) == []
        editors = [s for s in chat.sent if s.room_id == EDITORS]
        assert all(s.reply_to is None and isinstance(s.message, Message) for s in editors)
        assert sorted(s.message.body for s in editors) == [  # type: ignore[union-attr]
            "↩️ Ce ✅ ne validait rien : rien à retirer.",
            "⏳ Cet aperçu est périmé : le texte a changé depuis. Affichez-le à nouveau "
            "(!gazette apercu) et validez le nouveau.",
        ]
        assert await dispatcher.resume_pending() == 0
    finally:
        await storage.close()
