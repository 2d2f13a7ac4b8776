"""The `ops:` section: health and metrics endpoint, error room, log format."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import field_validator

from bot.config.base import Duration, _check_room_id, _host_port, _Model, _split_host_port

# The container image's health check sets it: it overrides ops.http (see loading).
ENV_OPS_HTTP = "BLUEHATS_OPS_HTTP"


class OpsConfig(_Model):
    # `host:port` of the health and metrics endpoint (/healthz, /metrics); off
    # when unset. Keep it on loopback or a private network.
    http: str | None = None
    # /healthz answers 503 when no sync succeeded for this long (a sync
    # long-poll lasts 30 s when nothing happens).
    stuck_after: Duration = timedelta(seconds=90)
    # A room (ID) where unexpected errors and failing sources are posted (the
    # bot must be invited there), at most one post per `error_room_every`.
    error_room: str | None = None
    error_room_every: Duration = timedelta(minutes=1)
    # Logs: "text" (one line per event) or "json" (one JSON object per line).
    log_format: Literal["text", "json"] = "text"

    @field_validator("http")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        return _host_port(value, "127.0.0.1:9108")

    @field_validator("error_room")
    @classmethod
    def _room_id(cls, value: str | None) -> str | None:
        return _check_room_id(value)

    @property
    def http_host_port(self) -> tuple[str, int] | None:
        return _split_host_port(self.http)
