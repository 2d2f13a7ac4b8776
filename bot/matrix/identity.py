"""The bot's cross-signed identity, so that MSC4153 clients (Element, Tchap) trust its device.

nio implements no cross-signing; this module adds what the bot needs of it,
over the client-server API:

- at first start, create the three cross-signing keys, upload them (`uia`
  answers the homeserver if it asks for a stage), sign the device with the
  self-signing key and the master key with the device key,
  and keep the private keys in secret storage under the configured recovery
  key, or a new one written once to `recovery-key.txt`;
- keep on disk only the self-signing key (`key_files`), the one that signs
  the bot's devices: the master and user-signing keys stay in secret storage
  (the three are on disk only until secret storage has them);
- at every start, check that the device is still signed, and sign it again
  if not, with the key kept here or, after a lost volume, with the keys that
  the recovery key opens in secret storage: same master key, so people who
  verified the bot still trust it;
- never replace an existing identity by itself: when it cannot sign, it says
  why and what to do (`problem`), and the bot goes on without it. Replacing
  is `bluehats-bot identity --reset`, an operator's act (under MAS, a person
  approves it in a browser: `uia`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nio import AsyncClient
from pydantic import SecretStr

from bot.matrix import cross_signing as xs
from bot.matrix import secret_storage as ssss
from bot.matrix import uia
from bot.matrix.files import write_private
from bot.matrix.key_files import KeyFiles
from bot.matrix.keys_api import IdentityError, KeysApi, Published
from bot.matrix.stored_keys import StoredKeys

log = logging.getLogger(__name__)

RECOVERY_KEY_FILE = "recovery-key.txt"
SECRET_STORAGE_KEY_NAME = "BlueHats bot"  # noqa: S105 - a label shown in clients


@dataclass(frozen=True)
class IdentityState:
    """What clients see of the bot's identity, and what the bot can do about it."""

    user_id: str
    device_id: str
    # The device's Ed25519 key: the fingerprint Element shows for a session.
    device_key: str
    # The account's master key as published (None: no identity yet).
    master_key: str | None
    # Signed by the published self-signing key: trusted by MSC4153 clients.
    device_signed: bool
    # The self-signing key is kept in storage.path (the only private key kept there
    # once secret storage holds the three).
    keys_here: bool
    # Secret storage holds the three private keys under its default key.
    in_secret_storage: bool
    # What happened at this start: "created", "signed", "recovered", "checked".
    action: str = "checked"
    # Why the device stays unsigned, and what the operator can do (one line).
    problem: str | None = None

    @property
    def trusted(self) -> bool:
        return self.device_signed and self.problem is None


def warn_if_recovery_key_file(storage_dir: Path) -> None:
    """At every start while the first start's `recovery-key.txt` is still there."""
    if (storage_dir / RECOVERY_KEY_FILE).exists():
        log.warning(
            "%s is still in %s: move it to your secret store and delete it (give the key back "
            "in matrix.recovery_key or BLUEHATS_MATRIX_RECOVERY_KEY after a lost volume)",
            RECOVERY_KEY_FILE,
            storage_dir,
        )


def group(key: str | None) -> str:
    """A key as Element shows it: groups of four characters."""
    if not key:
        return "(none)"
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


class Identity:
    """Cross-signing for the logged-in device of `client` (nio, olm loaded)."""

    def __init__(
        self,
        client: AsyncClient,
        storage_dir: Path,
        *,
        password: SecretStr | None,
        recovery_key: SecretStr | None,
    ) -> None:
        self._client = client
        self._dir = storage_dir
        self._password = password
        self._recovery_key = recovery_key
        self._api: KeysApi | None = None
        self._keys = KeyFiles(storage_dir)

    @property
    def user_id(self) -> str:
        return str(self._client.user_id)

    @property
    def device_id(self) -> str:
        return str(self._client.device_id)

    @property
    def recovery_key_file(self) -> Path:
        return self._dir / RECOVERY_KEY_FILE

    @property
    def keys_file(self) -> Path:
        return self._keys.path

    # -- the three entry points ----------------------------------------------------

    async def ensure(self) -> IdentityState:
        """At start: create, or check and sign again; never replace. Errors become `problem`."""
        try:
            async with self._session() as api:
                published = await self._publish_device(api)
                if published.master is None:
                    return await self._create()
                return await self._check(published)
        except IdentityError as exc:
            # As much as can be told when the homeserver cannot be asked.
            return IdentityState(
                self.user_id,
                self.device_id,
                self._device_key(),
                master_key=None,
                device_signed=False,
                keys_here=False,
                in_secret_storage=False,
                problem=f"cannot check the bot's cross-signing identity: {exc}",
            )

    async def _publish_device(self, api: KeysApi) -> Published:
        """What is published, once the device's keys are: a new device's, or
        those of a device the homeserver forgot (logged out, then logged in
        again with the same ID: the keys kept here are still this device's)."""
        published = await api.query(self.device_id)
        olm = self._client.olm
        if published.device is None and olm is not None and olm.account.shared:
            log.warning(
                "the homeserver no longer publishes the keys of device %s: uploading them again",
                self.device_id,
            )
            olm.account.shared = False  # nio then uploads the device keys, not only one-time keys
        if self._client.should_upload_keys:
            # Its keys must be published before they are signed.
            await self._client.keys_upload()
            published = await api.query(self.device_id)
        return published

    async def state(self) -> IdentityState:
        """What is published and kept, changing nothing."""
        async with self._session() as api:
            published = await api.query(self.device_id)
            return await self._describe(published, self._local_keys(published))

    async def reset(
        self,
        approval: uia.Approval | None = None,
        ask_password: Callable[[], SecretStr | None] | None = None,
    ) -> tuple[IdentityState, str]:
        """Replace the identity (new master key): the new state and its recovery key.

        To replace keys the homeserver asks for the password (`ask_password` is
        called when none is configured) or, under MAS, for a person's approval
        (`approval`: see `uia`)."""

        def password() -> SecretStr | None:
            return self._password or (ask_password() if ask_password is not None else None)

        async with self._session():
            if self._client.should_upload_keys:
                await self._client.keys_upload()
            state, recovery_key = await self._new_identity(
                uia.UploadAuth(self._identifier(), password, approval), reset=True
            )
        # The old file opens the old storage key only: it would mislead.
        self.recovery_key_file.unlink(missing_ok=True)
        log.warning(
            "cross-signing identity replaced: new master key %s (people who verified the bot "
            "must verify it again)",
            state.master_key,
        )
        return state, recovery_key

    # -- creation, checks ------------------------------------------------------------

    async def _create(self) -> IdentityState:
        auth = uia.UploadAuth(self._identifier(), lambda: self._password)
        state, _ = await self._new_identity(auth, reset=False)
        log.info(
            "created the bot's cross-signing identity (master key %s) and signed device %s",
            state.master_key,
            self.device_id,
        )
        return state

    async def _new_identity(
        self, auth: uia.UploadAuth, *, reset: bool
    ) -> tuple[IdentityState, str]:
        """Publish new keys, sign this device, keep the keys in secret storage: the new
        state and the recovery key."""
        keys = xs.CrossSigningKeys.generate()
        # Kept before the upload: once the homeserver has the public keys, the
        # private ones must not be lost to a crash (`_local_keys` finds them).
        self._keys.save(self.user_id, keys, new=True)
        await uia.upload_keys(
            self.api.post_cross_signing_keys, keys.upload_body(self.user_id), auth
        )
        self._keys.published()
        await self._sign(keys, await self.api.query(self.device_id))
        recovery_key = await self._store_secrets(keys, reset=reset)
        # In secret storage now: only the self-signing key stays here.
        keys = keys.self_signing_only()
        self._keys.save(self.user_id, keys)
        state = await self._describe(await self.api.query(self.device_id), keys)
        return replace(state, action="created"), recovery_key

    async def _check(self, published: Published) -> IdentityState:
        keys = self._local_keys(published)
        action = "checked"
        if not self._device_signed(published):
            if keys is None:
                keys, problem = await self._recover(published)
                if keys is None:
                    return replace(await self._describe(published, None), problem=problem)
                action = "recovered"
            else:
                action = "signed"
        if action != "checked" or not self._master_signed(published):
            # The device's signature only when it lacks one; the master key's by the device.
            await self._sign(keys if action != "checked" else None, published)
            published = await self.api.query(self.device_id)
        if action != "checked":
            log.info(
                "signed device %s with the account's self-signing key (%s)",
                self.device_id,
                "opened with the recovery key" if action == "recovered" else "kept here",
            )
        state = await self._describe(published, keys)
        if keys is not None and keys.complete:
            state = await self._keep_self_signing_only(keys, state, published)
        return replace(state, action=action)

    async def _keep_self_signing_only(
        self, keys: xs.CrossSigningKeys, state: IdentityState, published: Published
    ) -> IdentityState:
        """The three keys are here (a crash before secret storage had them, or a file
        of a version that kept them all): only the self-signing key stays, once secret
        storage holds the three; else all are kept, with one warning."""
        if not state.in_secret_storage:
            # Created here, but the secret storage step never finished.
            await self._store_secrets(keys, reset=False)
            state = replace(state, in_secret_storage=True)
        else:
            problem = await self._stored_otherwise(keys, published)
            if problem is not None:
                log.warning(
                    "%s keeps the master and user-signing keys: %s; dropping them could lose "
                    "the identity (check matrix.recovery_key and restart)",
                    self.keys_file,
                    problem,
                )
                return state
        self._keys.save(self.user_id, keys.self_signing_only())
        log.info(
            "%s now holds the self-signing key only: the master and user-signing keys are in "
            "secret storage, opened with the recovery key when needed",
            self.keys_file,
        )
        return state

    async def _stored_otherwise(
        self, keys: xs.CrossSigningKeys, published: Published
    ) -> str | None:
        """Why secret storage may not hold these keys, or None. Without the recovery key
        only their presence under the default key can be checked (`StoredKeys.present`);
        with it, the keys it opens are compared with these."""
        text = self._recovery_key_text()
        if text is None:
            return None
        try:
            stored = await self.stored.open(text, published)
        except ssss.SecretStorageError as exc:
            return str(exc)
        if stored.seeds() != keys.seeds():
            return "secret storage holds other keys than these"
        return None

    def _device_signed(self, published: Published) -> bool:
        """Signed by the published self-signing key: what MSC4153 clients require."""
        ssk = published.self_signing_key
        return bool(
            ssk
            and published.device is not None
            and xs.verify_json(published.device, self.user_id, ssk, ssk)
        )

    def _master_signed(self, published: Published) -> bool:
        """The master key signed by this device (clients show the identity as its own)."""
        return published.master is not None and xs.verify_json(
            published.master, self.user_id, self.device_id, self._device_key()
        )

    async def _recover(self, published: Published) -> tuple[xs.CrossSigningKeys | None, str]:
        """The private keys from secret storage, or why not (the operator's next step)."""
        master = published.master_key
        where = (
            f"the account {self.user_id} already has a cross-signing identity (master key "
            f"{master}) but this device ({self.device_id}) cannot sign itself: "
        )
        remedy = (
            "until then clients that exclude unverified devices (Element, Tchap) neither "
            "read it nor write to it in encrypted rooms; to replace the identity instead, "
            "run `bluehats-bot identity --config … --reset`"
        )
        text = self._recovery_key_text()
        if text is None:
            return None, (
                where + "no private key here and no recovery key given: set matrix.recovery_key "
                "or BLUEHATS_MATRIX_RECOVERY_KEY to the recovery key saved at the first start "
                "and restart; " + remedy
            )
        try:
            keys = await self.stored.open(text, published)
        except ssss.SecretStorageError as exc:
            return None, where + f"{exc}; check matrix.recovery_key and restart; " + remedy
        # Only the self-signing key is kept: the two others stay in secret storage.
        keys = keys.self_signing_only()
        self._keys.save(self.user_id, keys)
        return keys, ""

    async def _sign(self, keys: xs.CrossSigningKeys | None, published: Published) -> None:
        """Upload the device's signature by the self-signing key (when `keys` are given)
        and the master key's signature by the device."""
        if published.device is None or published.master is None:
            raise IdentityError(f"device {self.device_id} or the master key is not published")
        olm = self._client.olm
        signatures: dict[str, Any] = {}
        if keys is not None:
            device = xs.stripped(published.device)
            signatures[self.device_id] = keys.sign(xs.SELF_SIGNING, device, self.user_id)
        if olm is not None:
            signatures[published.master_key or ""] = xs.sign_json(
                xs.stripped(published.master),
                self.user_id,
                self.device_id,
                lambda data: olm.account.sign(data.decode("utf-8")),
            )
        await self.api.upload_signatures(signatures)

    async def _store_secrets(self, keys: xs.CrossSigningKeys, *, reset: bool) -> str:
        """Under a new default secret storage key; its recovery key is returned.

        A reset makes a new key (printed once by the command). At start the key is
        the configured recovery key's (the operator has it), else a new one written
        once to `recovery-key.txt`: the operator must get it somehow, and the bot
        warns at every start until the file is gone."""
        configured = None if reset else self._recovery_key_text()
        key = ssss.SecretStorageKey.generate(
            SECRET_STORAGE_KEY_NAME,
            ssss.decode_recovery_key(configured) if configured is not None else None,
        )
        await self.stored.store(keys, key)
        if not reset and configured is None:
            write_private(self.recovery_key_file, key.recovery_key + "\n")
            log.warning(
                "the recovery key of the bot's identity is in %s (readable by the bot's user "
                "only): move it to your secret store and give it back in matrix.recovery_key "
                "or BLUEHATS_MATRIX_RECOVERY_KEY after a lost volume, then delete the file",
                self.recovery_key_file,
            )
        return key.recovery_key

    def _identifier(self) -> dict[str, str]:
        # The logged-in Matrix ID, also for an e-mail account: MAS takes no other
        # identifier (see bot.matrix.mas), and every homeserver takes this one.
        return {"type": "m.id.user", "user": self.user_id}

    # -- what is published and kept ---------------------------------------------------

    async def _describe(
        self, published: Published, keys: xs.CrossSigningKeys | None
    ) -> IdentityState:
        return IdentityState(
            user_id=self.user_id,
            device_id=self.device_id,
            device_key=self._device_key(),
            master_key=published.master_key,
            device_signed=self._device_signed(published),
            keys_here=keys is not None,
            in_secret_storage=await self.stored.present(),
        )

    def _device_key(self) -> str:
        olm = self._client.olm
        return str(olm.account.identity_keys["ed25519"]) if olm is not None else ""

    def _local_keys(self, published: Published) -> xs.CrossSigningKeys | None:
        return self._keys.of_identity(self.user_id, published.self_signing_key)

    def _recovery_key_text(self) -> str | None:
        """The configured recovery key only: `recovery-key.txt` is never read back (it
        is there for the operator to take away, not a place to keep it)."""
        if self._recovery_key is not None:
            return self._recovery_key.get_secret_value()
        return None

    # -- the homeserver ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[KeysApi]:
        async with KeysApi.open(self._client) as api:
            self._api = api
            try:
                yield api
            finally:
                self._api = None

    @property
    def api(self) -> KeysApi:
        if self._api is None:
            raise RuntimeError("Identity calls the homeserver only inside its session")
        return self._api

    @property
    def stored(self) -> StoredKeys:
        """The account's secret storage."""
        return StoredKeys(self.api)
