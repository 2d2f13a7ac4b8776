"""Text normalisation shared by every lookup: one function, used everywhere."""

from __future__ import annotations

import unicodedata

# Typographic apostrophes sent by phone keyboards ("aujourd’hui").
_APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"}
# Letters that Unicode does not decompose but people type as two ASCII
# letters or one ("mise en oeuvre", "Ex aequo", "Lodz"). ß becomes "ss" by
# casefold itself.
LIGATURES = {
    "œ": "oe",
    "æ": "ae",
    "ø": "o",
    "ł": "l",
    "đ": "d",
    "ð": "d",
    "þ": "th",
    "ı": "i",
}
_FOLD = str.maketrans(
    {**_APOSTROPHES, **LIGATURES, **{k.upper(): v for k, v in LIGATURES.items() if k != "ı"}}
)
_IDENTITY_FOLD = str.maketrans(_APOSTROPHES)


def fold(text: str) -> str:
    """Case- and accent-insensitive key: NFKD, strip combining marks, casefold, trim.

    "Données OUVERTES" and "donnees ouvertes" fold to the same key, and so
    do "mise en œuvre" and "MISE EN OEUVRE".
    """
    return _folded(text.translate(_FOLD))


def identity_fold(text: str) -> str:
    """`fold` as it was when session ids were first derived from titles.

    Ids are stored (reminders, edits, posts) and shown to people: they must
    not change when `fold` learns more, so this one never does.
    """
    return _folded(text.translate(_IDENTITY_FOLD))


def _folded(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())
