"""Text normalisation shared by every lookup: one function, used everywhere."""

from __future__ import annotations

import unicodedata

# Typographic apostrophes sent by phone keyboards ("aujourd’hui").
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def fold(text: str) -> str:
    """Case- and accent-insensitive key: NFKD, strip combining marks, casefold, trim.

    "Données OUVERTES" and "donnees ouvertes" fold to the same key.
    """
    decomposed = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())
