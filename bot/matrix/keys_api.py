"""The client-server endpoints of cross-signing and secret storage that nio lacks.

Keys query (the account's published identity and one device), publishing
cross-signing keys (the user-interactive stages it may need are in `uia`),
uploading signatures, and account data.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from nio import AsyncClient

from bot.matrix import cross_signing as xs

API = "/_matrix/client/v3"
HTTP_TIMEOUT_S = 30


class IdentityError(Exception):
    """The homeserver refused or could not be asked; the message says what and why."""


@dataclass(frozen=True)
class Published:
    """What the homeserver publishes of an account's identity and of one of its devices."""

    master: dict[str, Any] | None
    self_signing: dict[str, Any] | None
    device: dict[str, Any] | None

    @property
    def master_key(self) -> str | None:
        return xs.key_public(self.master)

    @property
    def self_signing_key(self) -> str | None:
        return xs.key_public(self.self_signing)


class KeysApi:
    """Calls on behalf of the logged-in account of a nio client."""

    def __init__(self, client: AsyncClient, http: aiohttp.ClientSession) -> None:
        self._client = client
        self._http = http

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, client: AsyncClient) -> AsyncIterator[KeysApi]:
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            yield cls(client, http)

    @property
    def user_id(self) -> str:
        return str(self._client.user_id)

    async def query(self, device_id: str) -> Published:
        status, answer = await self._call(
            "POST", "/keys/query", {"device_keys": {self.user_id: [device_id]}}
        )
        if status != 200:
            raise IdentityError(f"keys query failed (HTTP {status}): {error_text(answer)}")

        def of(section: str) -> dict[str, Any] | None:
            value = (answer.get(section) or {}).get(self.user_id)
            return value if isinstance(value, dict) else None

        device = (of("device_keys") or {}).get(device_id)
        return Published(
            of("master_keys"), of("self_signing_keys"), device if isinstance(device, dict) else None
        )

    async def post_cross_signing_keys(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One upload of the public keys (with its `auth` when given); the stages a
        homeserver may ask for are `uia`'s business."""
        return await self._call("POST", "/keys/device_signing/upload", body)

    async def upload_signatures(self, signatures: dict[str, Any]) -> None:
        """`signatures`: signed objects by key id (a device id or a public key)."""
        status, answer = await self._call(
            "POST", "/keys/signatures/upload", {self.user_id: signatures}
        )
        if status != 200 or answer.get("failures"):
            failures = answer.get("failures") or answer
            raise IdentityError(f"signatures refused (HTTP {status}): {error_text(failures)}")

    async def account_data(self, event_type: str) -> dict[str, Any] | None:
        status, answer = await self._call("GET", self._account_data_path(event_type))
        if status == 404:
            return None
        if status != 200:
            raise IdentityError(f"cannot read {event_type} (HTTP {status}): {error_text(answer)}")
        return answer

    async def put_account_data(self, event_type: str, content: dict[str, Any]) -> None:
        status, answer = await self._call("PUT", self._account_data_path(event_type), content)
        if status != 200:
            raise IdentityError(f"cannot write {event_type} (HTTP {status}): {error_text(answer)}")

    def _account_data_path(self, event_type: str) -> str:
        return f"/user/{quote(self.user_id, safe='')}/account_data/{quote(event_type, safe='')}"

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        try:
            async with self._http.request(
                method,
                f"{self._client.homeserver}{API}{path}",
                json=body,
                headers={"Authorization": f"Bearer {self._client.access_token}"},
            ) as resp:
                answer = await resp.json(content_type=None)
                return resp.status, answer if isinstance(answer, dict) else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise IdentityError(f"{method} {path}: {type(exc).__name__}") from None


def error_text(answer: Any) -> str:
    if isinstance(answer, dict) and "errcode" in answer:
        return f"{answer.get('errcode')}: {answer.get('error', '')}".strip()
    return json.dumps(answer)[:300]
