"""How much one person, or one room, may ask of the bot: token buckets.

The account's send rate is shared by every room: a loop of commands in one
room would delay the reminders and gazette issues of all the others. Each
sender, and each room, has a bucket of `burst` tokens refilled by one every
`every` seconds; a command takes one from both, or is dropped (not stored,
not answered). The first command dropped after the bucket was full gets one
short notice ("doucement"), the following ones nothing, until the bucket
has filled up again: someone who stopped flooding is warned again next time.

`Recent` is a set whose members are forgotten after a while, for other
"at most once per …" rules (bot.matrix.undecryptable).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

Clock = Callable[[], float]  # seconds, monotonic

# Buckets full again are forgotten (a new one is the same) at most this often.
SWEEP_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Rate:
    """A burst of `burst` commands, then one every `every` seconds (0: no limit)."""

    burst: int
    every: float

    @property
    def unlimited(self) -> bool:
        return self.every <= 0


class _Bucket:
    __slots__ = ("at", "tokens", "warned")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at
        # The notice was sent since the bucket was last full.
        self.warned = False


class TokenBuckets:
    """One bucket per key (a sender, a room); a key never seen has a full one."""

    def __init__(self, rate: Rate, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._swept_at = clock()

    def _get(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.rate.burst), now)
            return bucket
        refill = (now - bucket.at) / self.rate.every
        bucket.tokens = min(float(self.rate.burst), bucket.tokens + refill)
        bucket.at = now
        if bucket.tokens >= self.rate.burst:
            bucket.warned = False  # calmed down: a next flood is warned again
        return bucket

    def has_token(self, key: str) -> bool:
        if self.rate.unlimited:
            return True
        return self._get(key, self._clock()).tokens >= 1

    def take(self, key: str) -> None:
        if self.rate.unlimited:
            return
        now = self._clock()
        self._get(key, now).tokens -= 1
        self._sweep(now)

    def refuse(self, key: str) -> bool:
        """A command of `key` dropped: True for the first one since the bucket was full."""
        bucket = self._get(key, self._clock())
        first = not bucket.warned
        bucket.warned = True
        return first

    def _sweep(self, now: float) -> None:
        """Forget the buckets full again: memory stays bounded by recent senders."""
        if now - self._swept_at < SWEEP_EVERY_S:
            return
        self._swept_at = now
        burst, every = self.rate.burst, self.rate.every
        for key in [
            k for k, b in self._buckets.items() if b.tokens + (now - b.at) / every >= burst
        ]:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


class Over(StrEnum):
    """Which limit a dropped command went over."""

    SENDER = "sender"
    ROOM = "room"


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    # Set when dropped: which limit, and whether this one gets the notice.
    over: Over | None = None
    warn: bool = False


ALLOWED = Verdict(True)


class CommandLimits:
    """Whether a command may be stored and answered: both its sender's and its
    room's buckets must hold a token (neither is charged otherwise)."""

    def __init__(self, per_sender: Rate, per_room: Rate, clock: Clock = time.monotonic) -> None:
        self.senders = TokenBuckets(per_sender, clock)
        self.rooms = TokenBuckets(per_room, clock)

    def admit(self, sender: str, room_id: str) -> Verdict:
        if not self.senders.has_token(sender):
            return Verdict(False, Over.SENDER, self.senders.refuse(sender))
        if not self.rooms.has_token(room_id):
            return Verdict(False, Over.ROOM, self.rooms.refuse(room_id))
        self.senders.take(sender)
        self.rooms.take(room_id)
        return ALLOWED


K = TypeVar("K", bound=Hashable)


class Recent(Generic[K]):
    """Keys added within the last `window` seconds; older ones are forgotten
    (`on_forget` is called with each, when the set is next used)."""

    def __init__(
        self,
        window: float,
        clock: Clock = time.monotonic,
        on_forget: Callable[[K], None] | None = None,
    ) -> None:
        self.window = window
        self._clock = clock
        self._on_forget = on_forget
        self._added: OrderedDict[K, float] = OrderedDict()  # oldest first

    def _expire(self) -> None:
        limit = self._clock() - self.window
        while self._added:
            key, at = next(iter(self._added.items()))
            if at > limit:
                break
            del self._added[key]
            if self._on_forget is not None:
                self._on_forget(key)

    def add(self, key: K) -> None:
        self._added.pop(key, None)
        self._added[key] = self._clock()
        self._expire()

    def __contains__(self, key: object) -> bool:
        self._expire()
        return key in self._added

    def __len__(self) -> int:
        self._expire()
        return len(self._added)
