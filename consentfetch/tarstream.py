"""A minimal tar writer: regular files appended to a stream, one write each.

``tarfile.TarFile.addfile`` copies a member through several small writes
(header, data in blocks, padding). For shards of tens of thousands of small
members that Python-level work shows up in profiles. Here each member is a
single buffer: the header (built by ``tarfile`` itself, ustar format, so it
is byte-identical to tarfile's), the data, and the padding to 512 bytes. The
end is the same as tarfile's: two zero blocks, padded to a 10240-byte record.
"""

from __future__ import annotations

import tarfile
from typing import IO

BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240


class TarStream:
    """Append regular files to ``fileobj`` as a ustar archive; ``close()`` ends it."""

    def __init__(self, fileobj: IO[bytes], *, mtime: int = 0, mode: int = 0o444) -> None:
        self._f = fileobj
        self._mtime = mtime
        self._mode = mode
        self._offset = 0
        self.closed = False

    def add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = self._mtime
        info.mode = self._mode
        header = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
        padding = -len(data) % BLOCK
        self._f.write(b"".join((header, data, b"\0" * padding)))
        self._offset += len(header) + len(data) + padding

    def add_blocks(self, blocks: bytes) -> None:
        """Append bytes already in tar form: a member copied whole (its header
        blocks, data and padding) from another archive, in one or more calls.
        ``blocks`` is a whole number of 512-byte blocks."""
        if len(blocks) % BLOCK:
            raise ValueError(f"{len(blocks)} bytes is not a whole number of tar blocks")
        self._f.write(blocks)
        self._offset += len(blocks)

    def close(self) -> None:
        """Write the end-of-archive blocks (does not close ``fileobj``)."""
        if self.closed:
            return
        end = 2 * BLOCK
        end += -(self._offset + end) % RECORD
        self._f.write(b"\0" * end)
        self.closed = True
