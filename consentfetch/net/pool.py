"""A connection pool whose idle keep-alive connections are bounded in number.

aiohttp's ``TCPConnector(limit=N)`` bounds the connections *in use*. A
connection returned to the pool is kept for ``keepalive_timeout`` seconds and
is not counted, so idle sockets grow with the number of hosts a process
finishes per second. Over a long tail of hosts, each asked once or twice,
that is most of the sockets a process holds: about 11,800 per worker on the
latency-free 30,000-row bookkeeping benchmark with aiohttp's 15 s, enough to
run into a common ``ulimit -n`` of 1024 and fail requests with "Too many open
files".

:class:`BoundedIdleConnector` keeps at most ``max_idle`` idle connections
over all hosts: when a released connection would make one more, the idle
connection released longest ago is closed. Hosts asked often keep their
connections warm; the one-off hosts of the long tail give theirs up first.

aiohttp has no public hook for this. The subclass extends the connector's
``_release`` and reads its pool ``_conns`` (a mapping of connection key to
the ``(protocol, release time)`` pairs, as in aiohttp 3.9 to 3.14);
``tests/test_pool.py`` fails if either changes shape.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ConnectionKey

logger = logging.getLogger(__name__)

# File descriptors a process needs besides its sockets: shard files, pipes to the
# main process, the event loop's own, logging, the image threads' files.
OTHER_FILES = 256
_warned: list[int] = []  # the limit, once this process has warned that it is too low


class BoundedIdleConnector(aiohttp.TCPConnector):
    """A :class:`aiohttp.TCPConnector` holding at most ``max_idle`` idle connections."""

    def __init__(self, *, max_idle: int, **kwargs: Any) -> None:
        if max_idle < 0:
            raise ValueError(f"max_idle must be >= 0, not {max_idle}")
        super().__init__(**kwargs)
        self.max_idle = max_idle
        # Every idle connection in the pool, oldest release first. An entry can go
        # stale (the connection was taken again, or aiohttp's cleanup closed it); it
        # is dropped when it reaches the front, so the dict stays within max_idle.
        self._released: OrderedDict[ResponseHandler, ConnectionKey] = OrderedDict()

    def idle_count(self) -> int:
        """Idle connections in the pool now."""
        return sum(len(conns) for conns in self._conns.values())

    def _release(self, key: ConnectionKey, protocol: ResponseHandler, *,
                 should_close: bool = False) -> None:
        super()._release(key, protocol, should_close=should_close)
        pooled = self._conns.get(key)
        if not pooled or pooled[-1][0] is not protocol:
            return  # closed instead of pooled, or the connector is closed
        self._released[protocol] = key
        self._released.move_to_end(protocol)
        while len(self._released) > self.max_idle:
            oldest, oldest_key = self._released.popitem(last=False)
            self._close_idle(oldest_key, oldest)

    def _close_idle(self, key: ConnectionKey, protocol: ResponseHandler) -> None:
        """Take ``protocol`` out of the pool and close it, if it is still idle there."""
        pooled = self._conns.get(key)
        if not pooled:
            return
        for entry in pooled:
            if entry[0] is protocol:
                pooled.remove(entry)
                break
        else:
            return  # in use again, or already closed by aiohttp's cleanup
        if not pooled:
            del self._conns[key]
        protocol.close()


def ensure_open_files(sockets: int) -> int:
    """Raise this process's soft open-file limit (``ulimit -n``) to hold ``sockets``
    sockets and :data:`OTHER_FILES` other files, as far as the hard limit allows.

    Many systems start programs with a soft limit of 1024 and a much higher
    hard one, which a process may raise itself to. Below what is needed,
    requests would fail with "Too many open files" in the middle of a run;
    when the hard limit is too low as well, this says so once, up front.
    Returns the soft limit now in force (0 where there is no such limit).
    """
    try:
        import resource
    except ImportError:  # not on this platform (Windows): no such limit to raise
        return 0
    needed = sockets + OTHER_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return int(soft)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            logger.debug("could not raise the open-file limit to %d", target, exc_info=True)
    if soft < needed and not _warned:
        _warned.append(soft)
        logger.warning(
            "the open-file limit (ulimit -n) is %d, but --concurrency can hold about %d "
            "connections: requests may fail with 'Too many open files'; lower --concurrency "
            "or raise the limit", soft, sockets)
    return int(soft)
