"""Cross-signing keys and signed JSON: the cryptography alone (no I/O).

An account's identity is its master key (Ed25519). The master key signs the
self-signing key, which signs the account's devices, and the user-signing
key, which signs other people's master keys. A device that its owner's
self-signing key has not signed is "insecure" to clients that follow
MSC4153 (Element, Tchap): they share no room key with it and distrust what
it sends.

Signatures are over the canonical JSON of an object without its
`signatures` and `unsigned` members (spec appendix "Signing JSON").
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

from canonicaljson import encode_canonical_json
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from unpaddedbase64 import decode_base64, encode_base64

MASTER, SELF_SIGNING, USER_SIGNING = "master", "self_signing", "user_signing"
USAGES = (MASTER, SELF_SIGNING, USER_SIGNING)
# Where each private key is kept in secret storage.
SECRET_NAMES = {usage: f"m.cross_signing.{usage}" for usage in USAGES}


def stripped(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` without the members that signatures do not cover."""
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def signable(obj: dict[str, Any]) -> bytes:
    return bytes(encode_canonical_json(stripped(obj)))


def public_key(private: Ed25519PrivateKey) -> str:
    """Unpadded base64 of the public key: how Matrix names Ed25519 keys."""
    # public_bytes_raw() is public_bytes(Encoding.Raw, PublicFormat.Raw), without importing
    # `serialization` (its SSH and PKCS#12 code: ~15 ms at every start).
    return encode_base64(private.public_key().public_bytes_raw())


def sign_json(obj: dict[str, Any], user_id: str, key_name: str, sign: Any) -> dict[str, Any]:
    """A copy of `obj` with the signature of `sign` (bytes -> base64 text) added as
    `signatures[user_id]["ed25519:" + key_name]`."""
    signature = sign(signable(obj))
    signed = copy.deepcopy(obj)
    signed.pop("unsigned", None)
    signed.setdefault("signatures", {}).setdefault(user_id, {})[f"ed25519:{key_name}"] = signature
    return signed


def verify_json(obj: dict[str, Any], user_id: str, key_name: str, public: str) -> bool:
    """Whether `obj` carries a valid signature by Ed25519 key `public` named `key_name`."""
    signature = ((obj.get("signatures") or {}).get(user_id) or {}).get(f"ed25519:{key_name}")
    if not isinstance(signature, str):
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(decode_base64(public))
        key.verify(decode_base64(signature), signable(obj))
    except (InvalidSignature, ValueError):
        return False
    return True


def key_public(key_obj: dict[str, Any] | None) -> str | None:
    """The Ed25519 public key of a cross-signing key object (`keys: {ed25519:K: K}`)."""
    keys = (key_obj or {}).get("keys") or {}
    for name, value in keys.items():
        if isinstance(name, str) and name.startswith("ed25519:") and isinstance(value, str):
            return value
    return None


@dataclass(frozen=True)
class CrossSigningKeys:
    """The private keys of an identity: the three, or the self-signing key alone.

    The self-signing key is the one the bot needs day to day (it signs the bot's
    own devices): it alone is kept on disk. The master and user-signing keys live
    in secret storage, opened with the recovery key when needed."""

    master: Ed25519PrivateKey | None
    self_signing: Ed25519PrivateKey
    user_signing: Ed25519PrivateKey | None

    @classmethod
    def generate(cls) -> CrossSigningKeys:
        return cls(
            Ed25519PrivateKey.generate(),
            Ed25519PrivateKey.generate(),
            Ed25519PrivateKey.generate(),
        )

    @classmethod
    def from_seeds(cls, seeds: dict[str, str]) -> CrossSigningKeys:
        """From the unpadded-base64 seeds (the format of secret storage and Element): the
        self-signing key's is required, the two others may be missing."""

        def optional(usage: str) -> Ed25519PrivateKey | None:
            return seed_key(seeds[usage]) if usage in seeds else None

        return cls(optional(MASTER), seed_key(seeds[SELF_SIGNING]), optional(USER_SIGNING))

    @property
    def complete(self) -> bool:
        """The three keys (a new identity, or keys opened from secret storage)."""
        return self.master is not None and self.user_signing is not None

    def self_signing_only(self) -> CrossSigningKeys:
        """What is kept on disk once the three are in secret storage."""
        return replace(self, master=None, user_signing=None)

    def seeds(self) -> dict[str, str]:
        keys = {
            MASTER: self.master,
            SELF_SIGNING: self.self_signing,
            USER_SIGNING: self.user_signing,
        }
        return {usage: seed(key) for usage, key in keys.items() if key is not None}

    def key(self, usage: str) -> Ed25519PrivateKey:
        key = {
            MASTER: self.master,
            SELF_SIGNING: self.self_signing,
            USER_SIGNING: self.user_signing,
        }[usage]
        if key is None:
            raise ValueError(f"the {usage} key is not here (it is in secret storage)")
        return key

    def public(self, usage: str) -> str:
        return public_key(self.key(usage))

    def key_object(self, usage: str, user_id: str) -> dict[str, Any]:
        """The public key object as uploaded; sub-keys are signed by the master key."""
        pub = self.public(usage)
        obj: dict[str, Any] = {
            "user_id": user_id,
            "usage": [usage],
            "keys": {f"ed25519:{pub}": pub},
        }
        if usage != MASTER:
            obj = self.sign(MASTER, obj, user_id)
        return obj

    def upload_body(self, user_id: str) -> dict[str, Any]:
        """The body of `POST /keys/device_signing/upload` (without `auth`)."""
        return {f"{usage}_key": self.key_object(usage, user_id) for usage in USAGES}

    def sign(self, usage: str, obj: dict[str, Any], user_id: str) -> dict[str, Any]:
        key = self.key(usage)
        return sign_json(obj, user_id, public_key(key), lambda data: encode_base64(key.sign(data)))


def seed(private: Ed25519PrivateKey) -> str:
    return encode_base64(private.private_bytes_raw())


def seed_key(text: str) -> Ed25519PrivateKey:
    raw = decode_base64(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 seed has 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)
