"""`storage.path` kept to one process at a time, and private to the bot's user.

One store, one process: two processes on one store would be two Olm machines
on one device (members' clients reject the second copy of each Megolm message
as a replay; one-time keys are claimed twice) and two writers of one
database. `lock_store` takes an exclusive `flock` on `bluehats.lock` in the
directory before anything in it is opened (database, nio's crypto store,
session), and writes the holder's PID into it; the lock goes with the
process (the kernel drops it when the process ends, however it ends), so a
stale file never blocks a start. `bluehats-bot backup` takes no lock: it
only reads the database through SQLite's backup API, which works beside a
running bot.

`tighten_modes` brings every file of the directory back to 0600 (directories
0700), naming each one it had to change: an operator who copied the volume
with 0644 files learns it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILE = "bluehats.lock"
FILE_MODE, DIR_MODE = 0o600, 0o700


class StoreUnavailable(Exception):
    """The store cannot be taken: another process holds it (the message names the
    directory and that process's PID), or the directory cannot be used at all."""


class StoreLock:
    """The exclusive lock on a storage directory, held until `release` (or the process ends)."""

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory = directory
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        # The PID goes first, then the lock: a reader never sees a PID of nobody.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only descriptor releases the flock


def lock_store(directory: Path) -> StoreLock:
    """The directory (created 0700 if missing), locked for this process; `StoreUnavailable`
    at once if another process holds it (no wait: a second bot must not start late either)."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        # Not inherited by child processes (Python's default, PEP 446): the parser
        # process, started by 'spawn', never holds the store.
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot use the storage directory {directory}: {exc.strerror or exc}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise StoreUnavailable(
            f"the storage directory {directory} is in use by another bluehats-bot process "
            f"({f'PID {holder}' if holder else 'PID unknown'}): one store takes one process "
            "(two would send as one device twice); stop that one first, or give this one "
            "another storage.path"
        ) from None
    except OSError as exc:  # a filesystem without locks (some network shares)
        os.close(fd)
        raise StoreUnavailable(
            f"cannot lock the storage directory {directory} ({exc.strerror or exc}): put "
            "storage.path on a filesystem with file locks (a local disk or volume)"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return StoreLock(directory, fd)


def _holder(fd: int) -> int | None:
    """The PID the holder wrote (None before it did, or if unreadable)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def tighten_modes(directory: Path) -> list[Path]:
    """Every file under `directory` (itself included) readable by the bot's user only:
    files broader than 0600 and directories broader than 0700 are tightened, one
    WARNING each. Symbolic links are neither followed nor changed. Returns what changed."""
    changed = []
    entries = [directory]
    for root, dirs, files in os.walk(directory):
        entries += [Path(root, name) for name in (*dirs, *files)]
    for path in entries:
        try:
            st = path.lstat()
        except FileNotFoundError:  # removed meanwhile
            continue
        if stat.S_ISLNK(st.st_mode):
            continue
        allowed = DIR_MODE if stat.S_ISDIR(st.st_mode) else FILE_MODE
        mode = stat.S_IMODE(st.st_mode)
        if mode & ~allowed:
            try:
                path.chmod(mode & allowed)
            except OSError as exc:  # another owner's file (copied as root, say)
                log.warning(
                    "storage: %s is mode %04o, readable beyond the bot's user, and cannot "
                    "be changed (%s): make it %04o",
                    path,
                    mode,
                    exc.strerror or exc,
                    mode & allowed,
                )
                continue
            log.warning(
                "storage: %s was mode %04o, readable beyond the bot's user: now %04o",
                path,
                mode,
                mode & allowed,
            )
            changed.append(path)
    return changed
