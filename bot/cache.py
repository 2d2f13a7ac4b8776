"""Values built once and served many times: a bounded LRU that builds each key once.

Used by the web's pages and calendars (`bot.web.http.RenderCache`) and by
the `.ics` files of `!agenda … ics` (`bot.agenda.export.IcsExports`).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class BuildCache(Generic[V]):
    """The last values built, by key: a bounded LRU.

    Asked for a key being built, the callers wait for that one build rather
    than starting another (ten people asking for the same file at once cost
    one build). A failed build is not kept: the next ask builds again.
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._building: dict[Hashable, asyncio.Future[V]] = {}
        # Bumped by `clear`: a build started before is not kept.
        self._epoch = 0

    async def get(self, key: Hashable, build: Callable[[], Awaitable[V]]) -> V:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        pending = self._building.get(key)
        if pending is None:
            pending = asyncio.ensure_future(build())
            self._building[key] = pending
            epoch = self._epoch
            pending.add_done_callback(lambda done: self._built(key, epoch, done))
        # One caller cancelled does not cancel the build the others wait for.
        return await asyncio.shield(pending)

    def _built(self, key: Hashable, epoch: int, done: asyncio.Future[V]) -> None:
        if self._building.get(key) is done:
            del self._building[key]
        if done.cancelled() or done.exception() is not None or epoch != self._epoch:
            return
        self._items[key] = done.result()
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every value, and the builds under way once they end."""
        self._items.clear()
        self._building.clear()
        self._epoch += 1

    def __len__(self) -> int:
        return len(self._items)
