"""nio's crypto store, pickled with a key derived from a secret the operator gives.

nio encrypts ("pickles") what its store keeps of the device's secrets, the Olm
account, the Olm sessions and the Megolm inbound sessions (`nio/store/database.py`,
the only pickled columns: outbound group sessions are never stored), with
`AsyncClientConfig.pickle_key`, whose default `"DEFAULT_KEY"`
(`nio/client/base_client.py`) anyone can read. nio turns the key into
vodozemac's 32-byte pickle key with SHA-256 (`nio/crypto/sessions.py`).

With `storage.key` (better: `BLUEHATS_STORE_KEY`), the key handed to nio is
derived from that secret with scrypt and a random salt kept beside the store
(`crypto/pickle-key.salt`, mode 0600). A store pickled with nio's default key
is pickled again with the derived key at the first start that has one. A store
that the key does not open (another secret, or a lost salt) stops the start
with one clear line: nio would otherwise fail deep inside, and starting over
with a new device is the operator's decision, not the bot's.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from nio import AsyncClientConfig
from nio.crypto import InboundGroupSession, OlmAccount, Session
from pydantic import SecretStr

from bot.config import ENV_STORE_KEY
from bot.matrix.files import write_private

log = logging.getLogger(__name__)

SALT_FILE = "pickle-key.salt"
SALT_BYTES = 16
# nio's own default: what a store made without a key is pickled with.
NIO_DEFAULT_KEY = str(AsyncClientConfig.pickle_key)
# scrypt's cost (RFC 7914): N = 2^15, r = 8 take 32 MiB and a fraction of a second, once per start.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
KEY_NAMES = f"storage.key or {ENV_STORE_KEY}"


class StoreKeyError(Exception):
    """The crypto store does not open with the key given (or without one): the message
    says what to do, never the key."""


def _repickle_account(blob: bytes, old: str, new: str) -> bytes:
    return bytes(OlmAccount.from_pickle(blob, old).pickle(new))


def _repickle_session(blob: bytes, old: str, new: str) -> bytes:
    return bytes(Session.from_pickle(blob, datetime.now(), old).pickle(new))


def _repickle_group_session(blob: bytes, old: str, new: str) -> bytes:
    # Sender and room are columns of their own: the pickle holds only the session.
    return bytes(InboundGroupSession.from_pickle(blob, "", "", "", old).pickle(new))


# Every pickled column of nio's store: table, primary key, column, how to pickle again.
PICKLED: tuple[tuple[str, str, str, Callable[[bytes, str, str], bytes]], ...] = (
    ("accounts", "id", "account", _repickle_account),
    ("olmsessions", "session_id", "session", _repickle_session),
    ("megolminboundsessions", "session_id", "session", _repickle_group_session),
)


def derive(secret: SecretStr, salt: bytes) -> str:
    """The key handed to nio (hex of 32 bytes): never logged."""
    raw = hashlib.scrypt(
        secret.get_secret_value().encode("utf-8"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=64 * 1024 * 1024,
        dklen=32,
    )
    return raw.hex()


def pickle_key(crypto_dir: Path, secret: SecretStr | None) -> str:
    """The pickle key for nio's stores in `crypto_dir`, checked to open each of them;
    stores pickled with nio's default key are pickled again with the derived key."""
    crypto_dir.mkdir(parents=True, exist_ok=True)
    stores = sorted(crypto_dir.glob("*.db"))
    if secret is None:
        for store in stores:
            if not _opens(store, NIO_DEFAULT_KEY):
                raise StoreKeyError(
                    f"the crypto store {store} is protected with a key and none is given: "
                    f"set {KEY_NAMES} to the key it was protected with"
                )
        return NIO_DEFAULT_KEY
    salt_file = crypto_dir / SALT_FILE
    key = derive(secret, _salt(salt_file))
    for store in stores:
        if _opens(store, key):
            continue
        if _opens(store, NIO_DEFAULT_KEY):
            count = _repickle(store, NIO_DEFAULT_KEY, key)
            log.info(
                "crypto store %s: %d secrets pickled again with the key derived from %s "
                "(nio's default key no longer opens it)",
                store.name,
                count,
                KEY_NAMES,
            )
            continue
        raise StoreKeyError(
            f"the crypto store {store} does not open with {KEY_NAMES}: give the key it "
            f"was protected with (and keep {salt_file} beside it). A lost key cannot be "
            f"recovered: then move {crypto_dir} away and restart, the bot comes back as a "
            "new device (signed with the recovery key)"
        )
    return key


def _salt(path: Path) -> bytes:
    try:
        return bytes.fromhex(path.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        salt = os.urandom(SALT_BYTES)
        write_private(path, salt.hex() + "\n")
        return salt
    except ValueError:
        raise StoreKeyError(f"{path} is not a salt (hex): it was altered") from None


def _opens(store: Path, key: str) -> bool:
    """Whether `key` opens the store's accounts (a store without one: any key does)."""
    try:
        with contextlib.closing(sqlite3.connect(store)) as db:
            blobs = [bytes(row[0]) for row in db.execute("SELECT account FROM accounts")]
    except sqlite3.Error as exc:
        raise StoreKeyError(f"cannot read the crypto store {store}: {exc}") from None
    try:
        for blob in blobs:
            OlmAccount.from_pickle(blob, key)
    except ValueError:  # vodozemac's PickleException and LibolmPickleException
        return False
    return True


def _repickle(store: Path, old: str, new: str) -> int:
    """Every pickled object of `store`, from key `old` to `new`, in one transaction."""
    count = 0
    # Nothing is committed unless every object was pickled again.
    with contextlib.closing(sqlite3.connect(store)) as db:
        for table, primary, column, repickle in PICKLED:
            rows = db.execute(f"SELECT {primary}, {column} FROM {table}").fetchall()  # noqa: S608
            for ident, blob in rows:
                try:
                    again = repickle(bytes(blob), old, new)
                except ValueError:
                    raise StoreKeyError(
                        f"the crypto store {store} is damaged: a row of {table} does not open "
                        "with the key its account opens with"
                    ) from None
                db.execute(
                    f"UPDATE {table} SET {column} = ? WHERE {primary} = ?",  # noqa: S608
                    (again, ident),
                )
                count += 1
        db.commit()
    return count
