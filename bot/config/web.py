"""The `web:` section: the public agenda's address, theme and caching."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Literal
from urllib.parse import urlparse

from pydantic import field_validator

from bot.config.base import Duration, _host_port, _Model, _split_host_port


def is_loopback(host: str | None) -> bool:
    """`localhost` (RFC 6761: names under it too), 127.0.0.0/8 or ::1: this machine only."""
    host = (host or "").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class WebConfig(_Model):
    # `host:port` where the public agenda (pages and calendars) is served; off
    # when unset. Put a TLS reverse proxy in front of it.
    http: str | None = None
    # The address people see (https://agenda.example.gouv.fr): links in the
    # bot's answers, in pages and calendars. Unset: no link in the answers, and
    # the pages link relatively (never to the Host a request claims), without
    # webcal:// links. Plain http to another machine is warned about at start.
    public_url: str | None = None
    # "simple" (default), or "dsfr": the State design system, whose brand and
    # Marianne font are reserved for State services.
    theme: Literal["simple", "dsfr"] = "simple"
    # A cancelled or vanished session stays in the calendars, marked
    # cancelled, this long (subscribed apps then strike it out), then goes.
    cancelled_kept: Duration = timedelta(days=7)
    # How long calendar apps and proxies may keep a page or calendar.
    max_age: Duration = timedelta(minutes=15)

    @field_validator("http")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        return _host_port(value, "127.0.0.1:8080")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = urlparse(value)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(
                f"expected an http(s) address, e.g. https://agenda.example.org, not {value!r}"
            )
        if url.query or url.fragment:
            raise ValueError("expected an address without ?query or #fragment")
        return value.rstrip("/")

    @property
    def http_host_port(self) -> tuple[str, int] | None:
        return _split_host_port(self.http)

    @property
    def in_clear(self) -> bool:
        """`public_url` is plain http to another machine: what people fetch there,
        the secret addresses of personal calendars included, crosses the network
        unencrypted."""
        if self.public_url is None:
            return False
        url = urlparse(self.public_url)
        return url.scheme == "http" and not is_loopback(url.hostname)
