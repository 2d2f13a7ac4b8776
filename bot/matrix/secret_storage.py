"""Secret storage ("4S", `m.secret_storage.v1.aes-hmac-sha2`): the cryptography alone.

Secrets (here the private cross-signing keys) live encrypted in the
account's data on the homeserver, under a key that only the recovery key
opens. The recovery key is the one Element shows and accepts: base58 of
0x8B 0x01, the 32-byte key and a parity byte, in groups of four.

Spec: "Secret storage" in the client-server API (key description, key check
MAC, HKDF-SHA256 with 32 zero bytes of salt and the secret's name as info,
AES-256-CTR then HMAC-SHA256). No I/O here; `identity` moves the JSON.
"""

from __future__ import annotations

import hmac
import os
import secrets
import string
from dataclasses import dataclass
from functools import reduce
from hashlib import sha256
from operator import xor
from typing import Any

import base58
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from unpaddedbase64 import decode_base64, encode_base64

ALGORITHM = "m.secret_storage.v1.aes-hmac-sha2"
DEFAULT_KEY_TYPE = "m.secret_storage.default_key"
KEY_TYPE_PREFIX = "m.secret_storage.key."
RECOVERY_KEY_PREFIX = bytes([0x8B, 0x01])
KEY_BYTES = 32


class SecretStorageError(ValueError):
    """A recovery key that does not parse or does not open this storage, a secret that
    does not decrypt: the message says which, never the key."""


def encode_recovery_key(key: bytes) -> str:
    """The 32-byte key as a recovery key (`EsTE s92N …`, 48 characters in 12 groups)."""
    if len(key) != KEY_BYTES:
        raise ValueError("a secret storage key has 32 bytes")
    data = RECOVERY_KEY_PREFIX + key
    encoded = base58.b58encode(data + bytes([reduce(xor, data)])).decode("ascii")
    return " ".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def decode_recovery_key(text: str) -> bytes:
    """The 32-byte key of a recovery key; spaces anywhere are ignored."""
    compact = "".join(text.split())
    try:
        data = base58.b58decode(compact)
    except ValueError:
        raise SecretStorageError("not a recovery key (characters outside base58)") from None
    if len(data) != 2 + KEY_BYTES + 1 or not data.startswith(RECOVERY_KEY_PREFIX):
        raise SecretStorageError("not a recovery key (wrong length or prefix)")
    if reduce(xor, data) != 0:  # the last byte is the XOR of all the others
        raise SecretStorageError("not a recovery key (parity check failed: a typo?)")
    return data[2:-1]


def _derive(key: bytes, name: str) -> tuple[bytes, bytes]:
    """AES and HMAC keys for the secret `name` ("" for the key check)."""
    okm = HKDF(
        algorithm=hashes.SHA256(), length=64, salt=bytes(32), info=name.encode("utf-8")
    ).derive(key)
    return okm[:32], okm[32:]


def _ctr(aes_key: bytes, iv: bytes) -> Cipher[modes.CTR]:
    return Cipher(algorithms.AES(aes_key), modes.CTR(iv))


def _new_iv() -> bytes:
    iv = bytearray(os.urandom(16))
    iv[8] &= 0x7F  # bit 63 cleared, as the spec asks (some AES-CTR counters overflow)
    return bytes(iv)


def encrypt(key: bytes, name: str, plaintext: bytes) -> dict[str, str]:
    """`{iv, ciphertext, mac}` of `plaintext` for secret `name` under `key`."""
    aes_key, hmac_key = _derive(key, name)
    iv = _new_iv()
    enc = _ctr(aes_key, iv).encryptor()
    ciphertext = enc.update(plaintext) + enc.finalize()
    mac = hmac.digest(hmac_key, ciphertext, sha256)
    return {
        "iv": encode_base64(iv),
        "ciphertext": encode_base64(ciphertext),
        "mac": encode_base64(mac),
    }


def decrypt(key: bytes, name: str, data: dict[str, Any]) -> bytes:
    """The plaintext of `{iv, ciphertext, mac}`; the MAC is checked first."""
    try:
        iv = decode_base64(str(data["iv"]))
        ciphertext = decode_base64(str(data["ciphertext"]))
        mac = decode_base64(str(data["mac"]))
    except (KeyError, ValueError):
        raise SecretStorageError(f"{name}: malformed encrypted secret") from None
    aes_key, hmac_key = _derive(key, name)
    if not hmac.compare_digest(mac, hmac.digest(hmac_key, ciphertext, sha256)):
        raise SecretStorageError(f"{name}: MAC mismatch (another key, or altered data)")
    dec = _ctr(aes_key, iv).decryptor()
    return dec.update(ciphertext) + dec.finalize()


def key_check(key: bytes, iv: bytes) -> str:
    """The MAC that a key description carries: 32 zero bytes encrypted with name ""."""
    aes_key, hmac_key = _derive(key, "")
    enc = _ctr(aes_key, iv).encryptor()
    zeros = enc.update(bytes(32)) + enc.finalize()
    return encode_base64(hmac.digest(hmac_key, zeros, sha256))


@dataclass(frozen=True)
class SecretStorageKey:
    """A secret storage key: its id, its 32 bytes and its public description."""

    key_id: str
    key: bytes
    description: dict[str, Any]

    @classmethod
    def generate(cls, name: str, key: bytes | None = None) -> SecretStorageKey:
        """A new key (new id and description): random, or `key` (the bytes of a recovery
        key the operator already holds)."""
        if key is None:
            key = secrets.token_bytes(KEY_BYTES)
        elif len(key) != KEY_BYTES:
            raise ValueError("a secret storage key has 32 bytes")
        iv = _new_iv()
        alphabet = string.ascii_letters + string.digits
        key_id = "".join(secrets.choice(alphabet) for _ in range(32))
        description = {
            "algorithm": ALGORITHM,
            "name": name,
            "iv": encode_base64(iv),
            "mac": key_check(key, iv),
        }
        return cls(key_id, key, description)

    @classmethod
    def open(cls, key_id: str, description: dict[str, Any], recovery_key: str) -> SecretStorageKey:
        """The key `description` stands for, if `recovery_key` is its key."""
        if description.get("algorithm") != ALGORITHM:
            raise SecretStorageError(
                f"secret storage key {key_id} uses {description.get('algorithm')!r}, "
                f"not {ALGORITHM}"
            )
        key = decode_recovery_key(recovery_key)
        try:
            iv = decode_base64(str(description["iv"]))
            expected = decode_base64(str(description["mac"]))
        except (KeyError, ValueError):
            raise SecretStorageError(f"secret storage key {key_id}: no usable key check") from None
        if not hmac.compare_digest(decode_base64(key_check(key, iv)), expected):
            raise SecretStorageError(
                f"the recovery key does not open secret storage key {key_id} (another key?)"
            )
        return cls(key_id, key, description)

    @property
    def recovery_key(self) -> str:
        return encode_recovery_key(self.key)

    @property
    def event_type(self) -> str:
        return KEY_TYPE_PREFIX + self.key_id

    def encrypt_secret(self, name: str, secret: str) -> dict[str, Any]:
        """The account data content that stores `secret` (text) under this key."""
        return {"encrypted": {self.key_id: encrypt(self.key, name, secret.encode("utf-8"))}}

    def decrypt_secret(self, name: str, content: dict[str, Any]) -> str:
        """The secret stored under this key in account data `content`."""
        encrypted = (content.get("encrypted") or {}).get(self.key_id)
        if not isinstance(encrypted, dict):
            raise SecretStorageError(f"{name} is not stored under key {self.key_id}")
        try:
            return decrypt(self.key, name, encrypted).decode("utf-8")
        except UnicodeDecodeError:
            raise SecretStorageError(f"{name}: not text once decrypted") from None
