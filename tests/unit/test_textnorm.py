"""One fold for every lookup; session ids that do not move when it learns more."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.agenda.model import session_id
from bot.textnorm import fold


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("mise en oeuvre", "Mise en Œuvre"),
        ("ex aequo", "ex æquo"),
        ("strasse", "Straße"),
        ("lodz", "Łódź"),
        ("donnees ouvertes", "Données  OUVERTES "),
        ("aujourd'hui", "aujourd’hui"),
    ],
)
def test_what_people_type_matches_what_is_written(typed: str, stored: str) -> None:
    assert fold(typed) == fold(stored)


def test_session_ids_are_those_already_stored_and_shown() -> None:
    # Derived before `fold` expanded ligatures; kept in reminders, posts and
    # people's messages ("!session 7fwtak"), so it must not change.
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert session_id(start, "Mise en Œuvre du SILL") == "7fwtak"
    assert session_id(start, "Mise en Oeuvre du SILL") != "7fwtak"
