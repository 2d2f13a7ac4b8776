"""Power levels, room v12 creators, community and room rights, invite policy."""

from __future__ import annotations

import math

from bot.permissions import (
    ModeratorRooms,
    Permissions,
    Rights,
    Role,
    default_allowed_servers,
    invite_allowed,
    power_level,
)
from tests.fakes import FakeChat

PL = {"users": {"@mod:x": 50, "@admin:x": 100}, "users_default": 0}


def test_v12_creators_outrank_everyone_without_a_power_level_entry() -> None:
    create = {"room_version": "12", "additional_creators": ["@co:x"]}
    assert power_level("@creator:x", "@creator:x", create, PL) == math.inf
    assert power_level("@co:x", "@creator:x", create, PL) == math.inf
    assert power_level("@mod:x", "@creator:x", create, PL) == 50
    assert power_level("@member:x", "@creator:x", create, PL) == 0


def test_older_rooms_use_power_levels_only() -> None:
    create = {"room_version": "10", "creator": "@creator:x"}
    assert power_level("@creator:x", "@creator:x", create, PL) == 0
    assert power_level("@creator:x", "@creator:x", create, None) == 100
    assert power_level("@other:x", "@creator:x", create, {"users_default": 60}) == 60


MODS = "!mods:x"  # listed in bot.moderator_rooms
OWN = "!own:x"  # a room an agent created: they are its admin


def test_rights_allow_what_they_name() -> None:
    assert Rights().allows(Role.ANYONE)
    assert not Rights().allows(Role.ROOM) and not Rights().allows(Role.COMMUNITY)
    assert Rights(room=True).allows(Role.ROOM) and not Rights(room=True).allows(Role.COMMUNITY)
    assert Rights(community=True).allows(Role.COMMUNITY)
    assert not Rights(community=True).allows(Role.ROOM)


async def test_a_rooms_own_power_levels_give_rights_over_that_room_only() -> None:
    chat = FakeChat(levels={(OWN, "@agent:x"): 100, (OWN, "@creator:x"): math.inf})
    perms = Permissions([], ModeratorRooms([MODS]), chat)
    assert await perms.rights(OWN, "@agent:x") == Rights(room=True, community=False)
    assert await perms.rights(OWN, "@creator:x") == Rights(room=True, community=False)
    assert await perms.rights(OWN, "@member:x") == Rights()


async def test_community_rights_come_from_the_moderators_rooms_wherever_one_types() -> None:
    chat = FakeChat(levels={(MODS, "@mod:x"): 50, (MODS, "@creator:x"): math.inf})
    perms = Permissions([], ModeratorRooms([MODS]), chat)
    for room in (OWN, MODS, "!dm-of-mod:x"):
        assert (await perms.rights(room, "@mod:x")).community
    assert (await perms.rights(OWN, "@creator:x")).community
    chat.levels[(MODS, "@mod:x")] = 49  # demoted
    assert not (await perms.rights(OWN, "@mod:x")).community
    chat.levels[(MODS, "@mod:x")] = 50
    chat.not_joined.add((MODS, "@mod:x"))  # left the room
    assert not (await perms.rights(OWN, "@mod:x")).community


async def test_config_admins_have_every_right_and_nobody_else_without_moderator_rooms() -> None:
    chat = FakeChat(levels={(OWN, "@agent:x"): 100})
    perms = Permissions(["@admin:x"], ModeratorRooms([]), chat)
    assert await perms.rights(OWN, "@admin:x") == Rights(room=True, community=True)
    assert not (await perms.rights(OWN, "@agent:x")).community


async def test_aliases_resolve_and_follow_upgrades_and_unjoined_rooms_are_joined() -> None:
    chat = FakeChat(aliases={"#mods:x": "!old:x"}, rooms={})
    rooms = ModeratorRooms(["#mods:x", "!other:x"])
    assert rooms.room_ids == {"!other:x"}  # the alias is not known before a refresh
    await rooms.refresh(chat, {})
    assert rooms.room_ids == {"!old:x", "!other:x"}
    assert {room for room, _ in chat.joins} == {"!old:x", "!other:x"}
    await rooms.refresh(chat, {"!old:x": "!new:x"})  # the bot followed an upgrade
    assert rooms.room_ids == {"!new:x", "!other:x"}
    chat.aliases.clear()  # a failed look-up keeps the last answer
    await rooms.refresh(chat, {})
    assert rooms.room_ids == {"!old:x", "!other:x"}
    chat.aliases["#mods:x"] = "!moved:x"  # the alias now points elsewhere
    await rooms.refresh(chat, {})
    assert rooms.room_ids == {"!moved:x", "!other:x"}


def test_invites_only_from_allowed_servers() -> None:
    allowed = ["agent.dinum.tchap.gouv.fr"]
    assert invite_allowed("@jean.dupont-numerique.gouv.fr:agent.dinum.tchap.gouv.fr", allowed)
    assert not invite_allowed("@eve:evil.example", allowed)
    assert not invite_allowed("@eve:evil.example:agent.dinum.tchap.gouv.fr.evil", allowed)
    assert not invite_allowed("garbage", allowed)


TCHAP_BOT_DEFAULT = default_allowed_servers("agent.dinum.tchap.gouv.fr")


def test_tchap_default_lets_in_every_ministry_but_not_the_partners() -> None:
    def allowed(user: str) -> bool:
        return invite_allowed(user, TCHAP_BOT_DEFAULT)

    assert allowed("@jean.dupont-finances.gouv.fr:agent.finances.tchap.gouv.fr")
    assert allowed("@a:agent.dinum.tchap.gouv.fr")
    assert allowed("@a:AGENT.Interieur.Tchap.Gouv.Fr")  # server names ignore case
    assert not allowed("@partner:agent.externe.tchap.gouv.fr")
    assert not allowed("@partner:agent.EXTERNE.tchap.gouv.fr")
    # Look-alikes: the pattern is anchored, and `*` stays within one label.
    assert not allowed("@eve:evil.tchap.gouv.fr.example.org")
    assert not allowed("@eve:agent.finances.tchap.gouv.fr.example.org")
    assert not allowed("@eve:agent.evil.example.tchap.gouv.fr")
    assert not allowed("@eve:agent-finances.tchap.gouv.fr")
    assert not allowed("@eve:tchap.gouv.fr")
    assert not allowed("@eve:agent.finances.tchap.gouv.fr:8448")  # another server
    assert not allowed("@eve:matrix.org")


def test_a_bot_on_the_partners_server_still_accepts_its_own_server() -> None:
    default = default_allowed_servers("agent.externe.tchap.gouv.fr")
    assert invite_allowed("@p:agent.externe.tchap.gouv.fr", default)
    assert invite_allowed("@a:agent.finances.tchap.gouv.fr", default)


def test_default_elsewhere_is_the_bots_own_server() -> None:
    assert default_allowed_servers("Example.org") == ["example.org"]
    assert default_allowed_servers("localhost:8448") == ["localhost:8448"]
    assert invite_allowed("@a:localhost:8448", default_allowed_servers("localhost:8448"))
    assert not invite_allowed("@a:localhost", default_allowed_servers("localhost:8448"))
    # A server merely named like Tchap is not one.
    assert default_allowed_servers("tchap.gouv.fr.example.org") == ["tchap.gouv.fr.example.org"]


def test_an_explicit_list_is_taken_as_given() -> None:
    # Listing the agents' pattern alone lets the partners in too: it says so.
    everyone = ["agent.*.tchap.gouv.fr"]
    assert invite_allowed("@p:agent.externe.tchap.gouv.fr", everyone)
    partners_too = [*TCHAP_BOT_DEFAULT, "agent.externe.tchap.gouv.fr"]
    assert invite_allowed("@p:agent.externe.tchap.gouv.fr", partners_too)
    # The last matching entry decides.
    assert not invite_allowed("@a:b.example", ["b.example", "!b.example"])
    assert invite_allowed("@a:b.example", ["!b.example", "b.example"])
    assert not invite_allowed("@a:b.example", [])


def test_ports_and_wildcards() -> None:
    assert invite_allowed("@a:localhost:8448", ["localhost:8448"])
    assert not invite_allowed("@a:localhost:8449", ["localhost:8448"])
    assert invite_allowed("@a:localhost:8449", ["localhost:*"])
    assert not invite_allowed("@a:localhost", ["localhost:*"])
    assert invite_allowed("@a:hs1.example.org", ["hs?.example.org"])
    assert not invite_allowed("@a:hs12.example.org", ["hs?.example.org"])
    assert invite_allowed("@a:[::1]:8448", ["[::1]:8448"])
    assert invite_allowed("@a:127.0.0.1:8008", ["127.0.0.1:*"])
    assert not invite_allowed("@a:127.0.0.10:8008", ["127.0.0.1:*"])
    # Regular-expression characters are literal.
    assert not invite_allowed("@a:exampleXorg", ["example.org"])
