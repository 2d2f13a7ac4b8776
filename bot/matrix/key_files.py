"""The private cross-signing key kept in `storage.path`, readable by the bot's user only.

`cross-signing.json` holds the published identity's self-signing key: the
only one the bot needs day to day (it signs the bot's own devices). The
master and user-signing keys are in secret storage, opened with the
recovery key when needed (see `identity`). The three are on disk only while
a new identity is being published and stored: new keys wait in
`cross-signing.new.json` until the homeserver took them (a refused or
unapproved reset leaves the published identity's key as it was), and
`cross-signing.json` holds the three until secret storage has them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from bot.matrix import cross_signing as xs
from bot.matrix.files import write_private

log = logging.getLogger(__name__)

KEYS_FILE = "cross-signing.json"
# New keys until the homeserver took them: a refused reset leaves KEYS_FILE as it was.
NEW_KEYS_FILE = "cross-signing.new.json"


class KeyFiles:
    def __init__(self, storage_dir: Path) -> None:
        self.path = storage_dir / KEYS_FILE
        self.new_path = storage_dir / NEW_KEYS_FILE

    def of_identity(self, user_id: str, self_signing_key: str | None) -> xs.CrossSigningKeys | None:
        """The keys kept here, if they are those of the published identity (its
        self-signing key, which its master key signed): also new keys that the
        homeserver took before a crash kept them from replacing the old."""
        for path in (self.path, self.new_path):
            keys = self._read(path, user_id)
            if keys is not None and keys.public(xs.SELF_SIGNING) == self_signing_key:
                if path == self.new_path:
                    self.new_path.replace(self.path)
                return keys
        if self.path.exists():
            log.info("the cross-signing key in %s is of another identity: unused", self.path)
        return None

    def save(self, user_id: str, keys: xs.CrossSigningKeys, *, new: bool = False) -> None:
        """Kept (as the published identity's, or as `new` keys not published yet)."""
        write_private(
            self.new_path if new else self.path,
            json.dumps({"user_id": user_id, "seeds": keys.seeds()}),
        )

    def published(self) -> None:
        """The new keys were taken by the homeserver: they are the identity's now."""
        self.new_path.replace(self.path)

    def _read(self, path: Path, user_id: str) -> xs.CrossSigningKeys | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            keys = xs.CrossSigningKeys.from_seeds(data["seeds"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable %s", path)
            return None
        return keys if data.get("user_id") == user_id else None
