"""Cross-signing and secret storage cryptography, against published vectors and round trips.

Vectors: the Matrix spec's "Signing JSON" appendix (Ed25519 seed, signatures
of `{}` and of `{"one": 1, "two": "Two"}`), and secret storage data made by
Element (a recovery key, its key description and an encrypted master key),
as published in mautrix-python's `crypto/ssss/key_test.py`.
"""

from __future__ import annotations

from typing import Any

import pytest
from unpaddedbase64 import decode_base64, encode_base64

from bot.matrix import cross_signing as xs
from bot.matrix import secret_storage as ssss

# Matrix spec, appendix "Signing JSON": key "ed25519:1" of server "domain".
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SPEC_SIGNATURES = {
    "{}": (
        {},
        "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ",
    ),
    "one-two": (
        {"one": 1, "two": "Two"},
        "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw",
    ),
}

# Made by Element: secret storage key 1 (also has a passphrase, unused here).
KEY1_ID = "gEJqbfSEMnP5JXXcukpXEX1l0aI3MDs0"
KEY1_RECOVERY_KEY = "EsTE s92N EtaX s2h6 VQYF 9Kao tHYL mkyL GKMh isZb KJ4E tvoC"
KEY1_DESCRIPTION = {
    "algorithm": "m.secret_storage.v1.aes-hmac-sha2",
    "passphrase": {
        "algorithm": "m.pbkdf2",
        "iterations": 500000,
        "salt": "y863BOoqOadgDp8S3FtHXikDJEalsQ7d",
    },
    "iv": "xxkTK0L4UzxgAFkQ6XPwsw",
    "mac": "MEhooO0ZhFJNxUhvRMSxBnJfL20wkLgle3ocY0ee/eA",
}
KEY1_MASTER = {
    "encrypted": {
        KEY1_ID: {
            "iv": "BpKP9nQJTE9jrsAssoxPqQ==",
            "ciphertext": "fNRiiiidezjerTgV+G6pUtmeF3izzj5re/mVvY0hO2kM6kYGrxLuIu2ej80=",
            "mac": "/gWGDGMyOLmbJp+aoSLh5JxCs0AdS6nAhjzpe+9G2Q0=",
        }
    }
}
KEY1_MASTER_SEED = bytes.fromhex("68f97fd1922eecf6b82bb890d24d0652984e7a1d703b9e867b7ebaf7feb95b6f")
KEY2_ID = "NVe5vK6lZS9gEMQLJw0yqkzmE5Mr7dLv"
KEY2_RECOVERY_KEY = "EsUC xSxt XJgQ dz19 8WBZ rHdE GZo7 ybsn EFmG Y5HY MDAG GNWe"
KEY2_DESCRIPTION = {
    "algorithm": "m.secret_storage.v1.aes-hmac-sha2",
    "iv": "O0BOvTqiIAYjC+RMcyHfWw==",
    "mac": "7k6OruQlWg0UmQjxGZ0ad4Q6DdwkgnoI7G6X3IjBYtI=",
}


@pytest.mark.parametrize("case", sorted(SPEC_SIGNATURES))
def test_json_signatures_match_the_spec_vectors(case: str) -> None:
    obj, expected = SPEC_SIGNATURES[case]
    key = xs.seed_key(SPEC_SEED)
    signed = xs.sign_json(obj, "domain", "1", lambda data: encode_base64(key.sign(data)))
    assert signed["signatures"] == {"domain": {"ed25519:1": expected}}
    assert xs.verify_json(signed, "domain", "1", xs.public_key(key))


def test_a_signature_covers_everything_but_signatures_and_unsigned() -> None:
    keys = xs.CrossSigningKeys.generate()
    device = {"user_id": "@bot:hs", "device_id": "DEV", "keys": {"ed25519:DEV": "abc"}}
    signed = keys.sign(xs.SELF_SIGNING, {**device, "unsigned": {"x": 1}}, "@bot:hs")
    ssk = keys.public(xs.SELF_SIGNING)
    assert "unsigned" not in signed
    assert xs.verify_json({**signed, "unsigned": {"y": 2}}, "@bot:hs", ssk, ssk)
    assert not xs.verify_json({**signed, "device_id": "OTHER"}, "@bot:hs", ssk, ssk)
    assert not xs.verify_json(signed, "@other:hs", ssk, ssk)
    other = xs.CrossSigningKeys.generate().public(xs.SELF_SIGNING)
    assert not xs.verify_json(signed, "@bot:hs", ssk, other)


def test_uploaded_sub_keys_are_signed_by_the_master_key() -> None:
    keys = xs.CrossSigningKeys.generate()
    body = keys.upload_body("@bot:hs")
    master = keys.public(xs.MASTER)
    assert xs.key_public(body["master_key"]) == master
    assert body["master_key"]["usage"] == ["master"]
    for usage in (xs.SELF_SIGNING, xs.USER_SIGNING):
        obj = body[f"{usage}_key"]
        assert obj["usage"] == [usage]
        assert xs.key_public(obj) == keys.public(usage)
        assert xs.verify_json(obj, "@bot:hs", master, master)
    assert len({keys.public(u) for u in xs.USAGES}) == 3


def test_seeds_round_trip() -> None:
    keys = xs.CrossSigningKeys.generate()
    again = xs.CrossSigningKeys.from_seeds(keys.seeds())
    assert [again.public(u) for u in xs.USAGES] == [keys.public(u) for u in xs.USAGES]
    with pytest.raises(ValueError):
        xs.seed_key(encode_base64(b"short"))


def test_element_recovery_key_opens_its_secret_storage_and_master_key() -> None:
    key = ssss.SecretStorageKey.open(KEY1_ID, KEY1_DESCRIPTION, KEY1_RECOVERY_KEY)
    assert key.recovery_key == KEY1_RECOVERY_KEY
    secret = key.decrypt_secret("m.cross_signing.master", KEY1_MASTER)
    assert decode_base64(secret) == KEY1_MASTER_SEED
    # A secret is bound to its name and to its key.
    with pytest.raises(ssss.SecretStorageError, match="MAC"):
        key.decrypt_secret("m.cross_signing.self_signing", KEY1_MASTER)
    other = ssss.SecretStorageKey.open(KEY2_ID, KEY2_DESCRIPTION, KEY2_RECOVERY_KEY)
    with pytest.raises(ssss.SecretStorageError, match="not stored under"):
        other.decrypt_secret("m.cross_signing.master", KEY1_MASTER)
    forged = ssss.SecretStorageKey(KEY1_ID, other.key, KEY1_DESCRIPTION)
    with pytest.raises(ssss.SecretStorageError, match="MAC"):
        forged.decrypt_secret("m.cross_signing.master", KEY1_MASTER)


def test_a_recovery_key_of_another_storage_key_is_refused() -> None:
    with pytest.raises(ssss.SecretStorageError, match="does not open"):
        ssss.SecretStorageKey.open(KEY1_ID, KEY1_DESCRIPTION, KEY2_RECOVERY_KEY)
    broken = {**KEY2_DESCRIPTION, "mac": "7k6OruQlWg0UmQjxGZ0ad4Q6DdwkgnoI7G6X3IjBYtIMeow"}
    with pytest.raises(ssss.SecretStorageError):
        ssss.SecretStorageKey.open(KEY2_ID, broken, KEY2_RECOVERY_KEY)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("EsTE s92N EtaX s2h6 VQYF 9Kao tHYL mkyL GKMh isZb KJ4E tvoD", "parity"),
        ("EsTE s92N EtaX s2h6 VQYF 9Kao tHYL mkyL GKMh isZb KJ4E", "length"),
        ("EsTE s92N EtaX s2h6 VQYF 9Kao tHYL mkyL GKMh isZb KJ4E tvo0", "base58"),
        ("foo", "length"),
    ],
)
def test_malformed_recovery_keys_are_told_apart(text: str, reason: str) -> None:
    with pytest.raises(ssss.SecretStorageError, match=reason) as caught:
        ssss.decode_recovery_key(text)
    assert text not in str(caught.value)  # a message never repeats the key


def test_recovery_key_format_round_trips_and_ignores_spacing() -> None:
    raw = bytes(range(32))
    text = ssss.encode_recovery_key(raw)
    groups = text.split(" ")
    assert len(groups) == 12 and all(len(g) == 4 for g in groups)
    assert text.startswith("Es")  # the 0x8B 0x01 prefix, as Element shows them
    assert ssss.decode_recovery_key(text.replace(" ", "")) == raw
    assert ssss.decode_recovery_key(f"  {text[:10]}\n{text[10:]} ") == raw


def test_new_storage_key_round_trips_secrets() -> None:
    key = ssss.SecretStorageKey.generate("BlueHats bot")
    again = ssss.SecretStorageKey.open(key.key_id, key.description, key.recovery_key)
    content = key.encrypt_secret("m.cross_signing.self_signing", "c2VjcmV0")
    assert again.decrypt_secret("m.cross_signing.self_signing", content) == "c2VjcmV0"
    encrypted: dict[str, Any] = content["encrypted"][key.key_id]
    iv = decode_base64(encrypted["iv"])
    assert iv[8] & 0x80 == 0  # bit 63 cleared, as the spec asks
    assert key.event_type == f"m.secret_storage.key.{key.key_id}"
    assert key.description["algorithm"] == ssss.ALGORITHM
    # Two encryptions of one secret differ (fresh IV).
    second = key.encrypt_secret("m.cross_signing.self_signing", "c2VjcmV0")
    assert second["encrypted"][key.key_id]["ciphertext"] != encrypted["ciphertext"]
