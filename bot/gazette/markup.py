"""Moderators' text to HTML: links, bold, italics and lists, nothing else, never raw HTML.

markdown-it-py's "zero" preset with only those rules enabled; `html` stays
off, so `<script>` is text, and links are kept only to http(s) and mailto
addresses. The plain `body` of a message shows the text as typed.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

LINK_SCHEMES = frozenset({"http", "https", "mailto"})


def _safe_link(url: str) -> bool:
    return urlparse(url.strip()).scheme.lower() in LINK_SCHEMES


@cache
def _parser() -> MarkdownIt:
    from markdown_it import MarkdownIt  # at the first gazette item, not at start

    md = MarkdownIt("zero", {"html": False, "breaks": True, "typographer": False})
    md.enable(["emphasis", "link", "autolink", "list", "newline", "escape"])
    md.validateLink = _safe_link  # type: ignore[method-assign]
    return md


def to_html(text: str) -> str:
    """Safe HTML for `text` (a gazette item): escaped, with the subset above."""
    html: str = _parser().render(text)
    return html.strip()
