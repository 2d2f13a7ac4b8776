"""The private cross-signing keys in the account's secret storage (its account data).

`secret_storage` is the cryptography; this module moves the JSON over the
client-server API (`keys_api`). The bot keeps the three keys there, under the
default secret storage key that only the recovery key opens; on disk it keeps
the self-signing key alone (`key_files`).
"""

from __future__ import annotations

from bot.matrix import cross_signing as xs
from bot.matrix import secret_storage as ssss
from bot.matrix.keys_api import KeysApi, Published


class StoredKeys:
    """Secret storage of the account of `api`."""

    def __init__(self, api: KeysApi) -> None:
        self._api = api

    async def default_key_id(self) -> str | None:
        default = await self._api.account_data(ssss.DEFAULT_KEY_TYPE)
        key_id = (default or {}).get("key")
        return key_id if isinstance(key_id, str) else None

    async def present(self) -> bool:
        """Whether the three keys are stored under the default key (what can be told
        without the recovery key)."""
        key_id = await self.default_key_id()
        if key_id is None:
            return False
        for name in xs.SECRET_NAMES.values():
            content = await self._api.account_data(name) or {}
            if key_id not in (content.get("encrypted") or {}):
                return False
        return True

    async def open(self, recovery_key: str, published: Published) -> xs.CrossSigningKeys:
        """The three keys, if `recovery_key` opens the storage and they are the published
        identity's; else `SecretStorageError` says why (never the key)."""
        key_id = await self.default_key_id()
        if key_id is None:
            raise ssss.SecretStorageError("the account has no secret storage")
        description = await self._api.account_data(ssss.KEY_TYPE_PREFIX + key_id)
        if description is None:
            raise ssss.SecretStorageError(f"secret storage key {key_id} is not described")
        key = ssss.SecretStorageKey.open(key_id, description, recovery_key)
        seeds = {}
        for usage, name in xs.SECRET_NAMES.items():
            content = await self._api.account_data(name)
            if content is None:
                raise ssss.SecretStorageError(f"{name} is not in secret storage")
            seeds[usage] = key.decrypt_secret(name, content)
        try:
            keys = xs.CrossSigningKeys.from_seeds(seeds)
        except (ValueError, KeyError):
            raise ssss.SecretStorageError("secret storage holds malformed keys") from None
        if (keys.public(xs.MASTER), keys.public(xs.SELF_SIGNING)) != (
            published.master_key,
            published.self_signing_key,
        ):
            raise ssss.SecretStorageError(
                "secret storage holds keys of another identity than the published one"
            )
        return keys

    async def store(self, keys: xs.CrossSigningKeys, key: ssss.SecretStorageKey) -> None:
        """The three `keys` under `key`, made the default key last."""
        await self._api.put_account_data(key.event_type, key.description)
        for usage, name in xs.SECRET_NAMES.items():
            await self._api.put_account_data(
                name, key.encrypt_secret(name, xs.seed(keys.key(usage)))
            )
        # Last: a crash before leaves the old default (and the secrets' old copies) valid.
        await self._api.put_account_data(ssss.DEFAULT_KEY_TYPE, {"key": key.key_id})
