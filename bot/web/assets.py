"""Where the `dsfr` theme's files are: the State design system (npm `@gouvfr/dsfr`).

The pages link `/static/dsfr/<path>` for each path below; serving `dsfr_dist()` under
that prefix is enough, because the stylesheets only reference their fonts and icons by
relative URLs inside the same directory tree (tests/unit/web/test_web_assets.py checks it), so
nothing is fetched from a CDN and a strict Content-Security-Policy holds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# The Docker image copies the needed part of dist/ elsewhere and says where.
DIST_ENV = "BLUEHATS_DSFR_DIST"

# `npm ci` in bot/web/assets (.ci/setup-web) puts the package here, next to its manifest.
_CHECKOUT_DIST = (
    Path(__file__).resolve().parent / "assets" / "node_modules" / "@gouvfr" / "dsfr" / "dist"
)

DSFR_CSS = "dsfr.min.css"
# The `fr-icon-*` classes are not in dsfr.min.css (only the icons its components draw
# themselves are); this sheet takes its SVGs from ../../icons/.
DSFR_ICONS_CSS = "utility/icons/icons.min.css"
# What @font-face in dsfr.min.css asks for first. Every current browser takes woff2;
# the .woff fallbacks beside them are never requested by such browsers.
DSFR_FONTS = tuple(
    f"fonts/{name}.woff2"
    for name in (
        *(
            f"Marianne-{weight}{style}"
            for weight in ("Light", "Regular", "Medium", "Bold")
            for style in ("", "_Italic")
        ),
        "Spectral-Regular",
        "Spectral-ExtraBold",
    )
)
DSFR_FAVICONS = ("favicon/favicon.svg", "favicon/favicon.ico", "favicon/apple-touch-icon.png")
# Files a page of the theme links or whose absence a reader would see. The SVG icons
# under icons/ are referenced from the two stylesheets and served from the same tree.
DSFR_FILES = (DSFR_CSS, DSFR_ICONS_CSS, *DSFR_FONTS, *DSFR_FAVICONS)


def dsfr_dist(env: Mapping[str, str] = os.environ) -> Path | None:
    """The directory holding dsfr.min.css: $BLUEHATS_DSFR_DIST when set (the Docker
    image), else the package installed in the checkout; None when it is not there."""
    configured = env.get(DIST_ENV)
    dist = Path(configured) if configured else _CHECKOUT_DIST
    return dist if (dist / DSFR_CSS).is_file() else None
