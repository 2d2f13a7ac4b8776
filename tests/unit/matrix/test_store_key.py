"""nio's crypto store pickled with a key derived from `storage.key` / BLUEHATS_STORE_KEY:
a store made with nio's default key is pickled again with it (same device, same Olm
identity, sessions still open), a wrong key or a missing one stops with a clear error."""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from nio.crypto import InboundGroupSession, OlmAccount, OutboundGroupSession
from nio.crypto.sessions import OutboundSession
from nio.store import DefaultStore
from pydantic import SecretStr

from bot import config as configuration
from bot.matrix import store_key
from bot.matrix.store_key import NIO_DEFAULT_KEY, StoreKeyError, pickle_key

USER, DEVICE, ROOM = "@bot:example.org", "BOTDEVICE", "!room:example.org"
SECRET = "store-key-of-the-operator-0123456789"


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    # The derivation's cost is not what these tests look at.
    monkeypatch.setattr(store_key, "SCRYPT_N", 2**10)


def old_store(crypto: Path) -> dict[str, Any]:
    """A store as nio makes it without a key: an account, an Olm session with a peer,
    a Megolm inbound session; what they are known by, and a message it decrypts."""
    crypto.mkdir()
    store = DefaultStore(USER, DEVICE, str(crypto), NIO_DEFAULT_KEY)
    account = OlmAccount()
    store.save_account(account)
    peer = OlmAccount()
    peer.generate_one_time_keys(1)
    one_time = next(iter(peer.one_time_keys["curve25519"].values()))
    olm = OutboundSession(account, peer.identity_keys["curve25519"], one_time)
    store.save_session(peer.identity_keys["curve25519"], olm)
    outbound = OutboundGroupSession()
    inbound = InboundGroupSession(
        outbound.session_key,
        account.identity_keys["ed25519"],
        account.identity_keys["curve25519"],
        ROOM,
    )
    store.save_inbound_group_session(inbound)
    outbound.shared = True
    store.database.close()
    return {
        "identity": account.identity_keys,
        "olm_session": olm.id,
        "megolm_session": inbound.id,
        "message": outbound.encrypt("rendez-vous jeudi"),
    }


def opened(crypto: Path, key: str) -> DefaultStore:
    return DefaultStore(USER, DEVICE, str(crypto), key)


def test_a_store_made_without_a_key_is_pickled_again_and_keeps_the_device(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    crypto = tmp_path / "crypto"
    made = old_store(crypto)

    key = pickle_key(crypto, SecretStr(SECRET))
    assert key != NIO_DEFAULT_KEY
    assert "3 secrets pickled again" in caplog.text
    salt = crypto / store_key.SALT_FILE
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600

    store = opened(crypto, key)
    account = store.load_account()
    assert account is not None and account.identity_keys == made["identity"]  # same device
    sessions = store.load_sessions()
    assert [s.id for s in sessions] == [made["olm_session"]]
    curve = str(made["identity"]["curve25519"])
    group = store.load_inbound_group_sessions().get(ROOM, curve, made["megolm_session"])
    assert group is not None and group.decrypt(made["message"])[0] == "rendez-vous jeudi"
    store.database.close()
    # nio's default key opens nothing any more (what a stolen volume would try first).
    with pytest.raises(ValueError):
        opened(crypto, NIO_DEFAULT_KEY).load_account()

    # The next start: same key, nothing to do.
    caplog.clear()
    assert pickle_key(crypto, SecretStr(SECRET)) == key
    assert "pickled again" not in caplog.text
    assert SECRET not in caplog.text and key not in caplog.text


def test_a_wrong_key_or_none_stops_with_a_clear_error(tmp_path: Path) -> None:
    crypto = tmp_path / "crypto"
    old_store(crypto)
    pickle_key(crypto, SecretStr(SECRET))

    wrong = "another-key-than-the-first-one"
    with pytest.raises(StoreKeyError) as caught:
        pickle_key(crypto, SecretStr(wrong))
    message = str(caught.value)
    assert "does not open with storage.key or BLUEHATS_STORE_KEY" in message
    assert "new device" in message  # what a lost key costs
    assert wrong not in message and SECRET not in message

    with pytest.raises(StoreKeyError, match="protected with a key and none is given"):
        pickle_key(crypto, None)

    # A lost salt is a wrong key too: refused, not a store silently started again.
    (crypto / store_key.SALT_FILE).unlink()
    with pytest.raises(StoreKeyError, match=r"keep .*pickle-key\.salt beside it"):
        pickle_key(crypto, SecretStr(SECRET))


def test_without_a_key_nio_default_key_is_kept(tmp_path: Path) -> None:
    crypto = tmp_path / "crypto"
    made = old_store(crypto)
    assert pickle_key(crypto, None) == NIO_DEFAULT_KEY
    account = opened(crypto, NIO_DEFAULT_KEY).load_account()
    assert account is not None and account.identity_keys == made["identity"]
    assert not (crypto / store_key.SALT_FILE).exists()


def test_the_key_comes_from_the_environment_and_is_never_shown(tmp_path: Path) -> None:
    raw = {"matrix": {"homeserver": "https://hs.example", "user_id": USER, "password": "x"}}
    cfg = configuration.from_dict(raw, base=tmp_path, env={"BLUEHATS_STORE_KEY": SECRET})
    assert cfg.storage.key is not None and cfg.storage.key.get_secret_value() == SECRET
    assert SECRET not in repr(cfg)
    short = "tooshort"
    with pytest.raises(configuration.ConfigError) as caught:
        configuration.from_dict({**raw, "storage": {"key": short}}, base=tmp_path, env={})
    assert caught.value.problems[0][0] == "storage.key"
    assert "secrets.token_urlsafe" in caught.value.problems[0][1]
    assert short not in str(caught.value.problems)
