"""nio's error responses, as the log and error messages show them."""

from __future__ import annotations

from typing import Any

from nio import ErrorResponse


def describe(resp: Any) -> str:
    """An error response as a log line: code and message, never a token."""
    if isinstance(resp, ErrorResponse):
        return f"{resp.status_code or 'error'}: {resp.message or ''}".strip()
    return type(resp).__name__
