"""Power levels, room v12 creators, invite policy."""

from __future__ import annotations

import math

from bot.permissions import Role, invite_allowed, power_level, role_for

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


def test_roles() -> None:
    assert role_for("@a:x", ["@a:x"], 0) is Role.ADMIN
    assert role_for("@b:x", [], 50) is Role.MODERATOR
    assert role_for("@b:x", [], math.inf) is Role.MODERATOR
    assert role_for("@b:x", [], 49) is Role.ANYONE


def test_invites_only_from_allowed_servers() -> None:
    allowed = ["agent.dinum.tchap.gouv.fr"]
    assert invite_allowed("@jean.dupont-numerique.gouv.fr:agent.dinum.tchap.gouv.fr", allowed)
    assert not invite_allowed("@eve:evil.example", allowed)
    assert not invite_allowed("@eve:evil.example:agent.dinum.tchap.gouv.fr.evil", allowed)
    assert not invite_allowed("garbage", allowed)
