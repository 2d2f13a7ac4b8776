"""What stays on disk of the bot's cross-signing identity: the self-signing key alone,
the master and user-signing keys in secret storage (a fake homeserver's account data).

`Identity` runs as at start and as `identity --reset`, against an in-memory
stand-in for the keys and account data endpoints (`KeysApi`)."""

from __future__ import annotations

import contextlib
import json
import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from nio.crypto import OlmAccount
from pydantic import SecretStr

from bot.matrix import cross_signing as xs
from bot.matrix import secret_storage as ssss
from bot.matrix.files import write_private
from bot.matrix.identity import RECOVERY_KEY_FILE, Identity, warn_if_recovery_key_file
from bot.matrix.key_files import KEYS_FILE
from bot.matrix.keys_api import KeysApi, Published
from bot.matrix.stored_keys import StoredKeys

USER, DEVICE = "@bot:example.org", "BOTDEVICE"


class FakeKeysApi:
    """The homeserver's side: published keys, signatures, account data."""

    def __init__(self, account: OlmAccount) -> None:
        ed25519 = account.identity_keys["ed25519"]
        self.device: dict[str, Any] = {
            "user_id": USER,
            "device_id": DEVICE,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
            "keys": {f"ed25519:{DEVICE}": ed25519},
        }
        self.cross_signing: dict[str, dict[str, Any]] = {}
        self.account_data_: dict[str, dict[str, Any]] = {}

    async def query(self, device_id: str) -> Published:
        assert device_id == DEVICE
        return Published(
            self.cross_signing.get("master_key"),
            self.cross_signing.get("self_signing_key"),
            self.device,
        )

    async def post_cross_signing_keys(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.cross_signing = {k: v for k, v in body.items() if k.endswith("_key")}
        self.device.pop("signatures", None)  # signed by the old self-signing key
        return 200, {}

    async def upload_signatures(self, signatures: dict[str, Any]) -> None:
        for key_id, signed in signatures.items():
            target = self.device if key_id == DEVICE else self.cross_signing["master_key"]
            for user, sigs in signed["signatures"].items():
                target.setdefault("signatures", {}).setdefault(user, {}).update(sigs)

    async def account_data(self, event_type: str) -> dict[str, Any] | None:
        return self.account_data_.get(event_type)

    async def put_account_data(self, event_type: str, content: dict[str, Any]) -> None:
        self.account_data_[event_type] = content


@pytest.fixture
def homeserver(monkeypatch: pytest.MonkeyPatch) -> FakeKeysApi:
    account = OlmAccount()
    api = FakeKeysApi(account)
    api.olm_account = account  # type: ignore[attr-defined]

    @contextlib.asynccontextmanager
    async def open_api(_client: Any) -> AsyncIterator[Any]:
        yield api

    monkeypatch.setattr(KeysApi, "open", open_api)
    return api


def identity(hs: FakeKeysApi, storage: Path, recovery_key: str | None = None) -> Identity:
    client = SimpleNamespace(
        user_id=USER,
        device_id=DEVICE,
        olm=SimpleNamespace(account=hs.olm_account),  # type: ignore[attr-defined]
        should_upload_keys=False,
    )
    storage.mkdir(exist_ok=True)
    return Identity(
        client,  # type: ignore[arg-type]
        storage,
        password=None,
        recovery_key=SecretStr(recovery_key) if recovery_key is not None else None,
    )


def on_disk(storage: Path) -> dict[str, str]:
    path = storage / KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    seeds: dict[str, str] = json.loads(path.read_text())["seeds"]
    return seeds


async def in_secret_storage(hs: FakeKeysApi, recovery_key: str) -> xs.CrossSigningKeys:
    return await StoredKeys(hs).open(recovery_key, await hs.query(DEVICE))  # type: ignore[arg-type]


async def test_first_start_and_reset_keep_only_the_self_signing_key_here(
    homeserver: FakeKeysApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = tmp_path / "data"
    state = await identity(homeserver, storage).ensure()
    assert (state.action, state.device_signed, state.keys_here) == ("created", True, True)
    assert state.in_secret_storage
    seeds = on_disk(storage)
    assert set(seeds) == {xs.SELF_SIGNING}
    recovery_key = (storage / RECOVERY_KEY_FILE).read_text().strip()
    stored = await in_secret_storage(homeserver, recovery_key)
    assert stored.complete and stored.seeds()[xs.SELF_SIGNING] == seeds[xs.SELF_SIGNING]

    # The next start signs with the key kept here: nothing else is needed.
    again = await identity(homeserver, storage).ensure()
    assert (again.action, again.trusted, again.keys_here) == ("checked", True, True)

    # And while the first start's file is there, every start says to take it away.
    caplog.clear()
    warn_if_recovery_key_file(storage)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert f"recovery-key.txt is still in {storage}" in caplog.text
    assert recovery_key not in caplog.text

    # A reset: new keys published and stored, the self-signing key alone here.
    old_master = state.master_key
    reset, new_recovery_key = await identity(homeserver, storage).reset()
    assert reset.master_key != old_master and reset.device_signed
    assert not (storage / RECOVERY_KEY_FILE).exists()  # the old one opened the old storage
    seeds = on_disk(storage)
    assert set(seeds) == {xs.SELF_SIGNING}
    stored = await in_secret_storage(homeserver, new_recovery_key)
    assert stored.public(xs.MASTER) == reset.master_key
    assert stored.seeds()[xs.SELF_SIGNING] == seeds[xs.SELF_SIGNING]


async def test_a_new_volume_restored_with_the_recovery_key_keeps_the_self_signing_key_only(
    homeserver: FakeKeysApi, tmp_path: Path
) -> None:
    await identity(homeserver, tmp_path / "old").ensure()
    recovery_key = (tmp_path / "old" / RECOVERY_KEY_FILE).read_text().strip()
    homeserver.device.pop("signatures")  # another device, not signed yet
    state = await identity(homeserver, tmp_path / "new", recovery_key).ensure()
    assert (state.action, state.trusted) == ("recovered", True)
    assert set(on_disk(tmp_path / "new")) == {xs.SELF_SIGNING}


async def old_identity(hs: FakeKeysApi, storage: Path, *, stored: bool) -> tuple[Any, str]:
    """An identity as the bot made it before: the three keys in `cross-signing.json`
    (and, if `stored`, in secret storage); its keys and recovery key."""
    keys = xs.CrossSigningKeys.generate()
    await hs.post_cross_signing_keys(keys.upload_body(USER))
    device = xs.stripped(hs.device)
    await hs.upload_signatures({DEVICE: keys.sign(xs.SELF_SIGNING, device, USER)})
    key = ssss.SecretStorageKey.generate("BlueHats bot")
    if stored:
        await StoredKeys(hs).store(keys, key)  # type: ignore[arg-type]
    write_old_file(storage, keys)
    return keys, key.recovery_key


def write_old_file(storage: Path, keys: xs.CrossSigningKeys) -> None:
    storage.mkdir()
    write_private(storage / KEYS_FILE, json.dumps({"user_id": USER, "seeds": keys.seeds()}))


async def test_an_old_file_with_the_three_keys_is_rewritten_once_they_are_in_secret_storage(
    homeserver: FakeKeysApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    storage = tmp_path / "data"
    keys, recovery_key = await old_identity(homeserver, storage, stored=True)
    state = await identity(homeserver, storage).ensure()
    assert (state.action, state.trusted, state.in_secret_storage) == ("checked", True, True)
    assert on_disk(storage) == {xs.SELF_SIGNING: keys.seeds()[xs.SELF_SIGNING]}
    rewritten = [r for r in caplog.records if "self-signing key only" in r.getMessage()]
    assert [r.levelno for r in rewritten] == [logging.INFO]
    assert (await in_secret_storage(homeserver, recovery_key)).seeds() == keys.seeds()
    assert not (storage / RECOVERY_KEY_FILE).exists()


async def test_three_keys_missing_from_secret_storage_are_stored_first_then_dropped(
    homeserver: FakeKeysApi, tmp_path: Path
) -> None:
    # A crash between publishing and storing: stored at the next start, under the
    # configured recovery key (the operator has it: no recovery-key.txt).
    storage = tmp_path / "data"
    keys, _ = await old_identity(homeserver, storage, stored=False)
    configured = ssss.encode_recovery_key(bytes(range(32)))
    state = await identity(homeserver, storage, configured).ensure()
    assert state.trusted and state.in_secret_storage
    assert (await in_secret_storage(homeserver, configured)).seeds() == keys.seeds()
    assert set(on_disk(storage)) == {xs.SELF_SIGNING}
    assert not (storage / RECOVERY_KEY_FILE).exists()


async def test_three_keys_that_secret_storage_does_not_match_are_kept_with_one_warning(
    homeserver: FakeKeysApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = tmp_path / "data"
    keys, _ = await old_identity(homeserver, storage, stored=True)
    # The configured recovery key opens no storage of this account: nothing proves
    # that secret storage holds these keys, so none is dropped.
    wrong = ssss.encode_recovery_key(bytes(32))
    state = await identity(homeserver, storage, wrong).ensure()
    assert state.trusted
    assert on_disk(storage) == keys.seeds()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "keeps the master and user-signing keys" in warnings[0].getMessage()
    assert "does not open secret storage key" in warnings[0].getMessage()


async def test_recovery_key_txt_is_never_read_back(homeserver: FakeKeysApi, tmp_path: Path) -> None:
    await identity(homeserver, tmp_path / "old").ensure()
    recovery_key = (tmp_path / "old" / RECOVERY_KEY_FILE).read_text()
    homeserver.device.pop("signatures")
    # A new volume holding only the file, no key configured: not used.
    new = tmp_path / "new"
    new.mkdir()
    (new / RECOVERY_KEY_FILE).write_text(recovery_key)
    state = await identity(homeserver, new).ensure()
    assert not state.device_signed
    assert state.problem is not None and "no recovery key given" in state.problem
