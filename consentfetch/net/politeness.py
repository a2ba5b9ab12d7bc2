"""Per-host slots: how many requests a host gets at once, and how often.

Each host has a slot with a semaphore (``per_host_concurrency``) and the time
of the last request start; a request waits until the host's minimum gap (the
robots.txt Crawl-delay) has passed. Idle slots are dropped so a run over
millions of hosts does not keep millions of slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Slot:
    semaphore: asyncio.Semaphore
    delay: float = 0.0
    last_start: float = field(default=-1e18)
    users: int = 0
    gap_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class HostSlots:
    """Hand out per-host request slots; use as ``async with slots.slot(host, delay):``."""

    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        self._slots: dict[str, _Slot] = {}

    def __len__(self) -> int:
        return len(self._slots)

    @asynccontextmanager
    async def slot(self, host: str, min_delay: float = 0.0) -> AsyncIterator[None]:
        slot = self._slots.get(host)
        if slot is None:
            slot = self._slots[host] = _Slot(asyncio.Semaphore(self._per_host))
        slot.users += 1
        # A host's delay only ever grows during a run.
        slot.delay = max(slot.delay, min_delay)
        try:
            async with slot.semaphore:
                if slot.delay > 0:
                    await self._wait_gap(slot)
                else:
                    slot.last_start = asyncio.get_running_loop().time()
                yield
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._slots[host]

    @staticmethod
    async def _wait_gap(slot: _Slot) -> None:
        async with slot.gap_lock:  # one request at a time measures the gap
            loop = asyncio.get_running_loop()
            wait = slot.last_start + slot.delay - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            slot.last_start = loop.time()
