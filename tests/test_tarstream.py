"""TarStream writes exactly what tarfile writes, faster."""

from __future__ import annotations

import io
import tarfile

import pytest

from consentfetch.tarstream import TarStream

MEMBERS = [("000000000.jpg", b"\xff\xd8" + b"x" * 1000), ("000000000.txt", b"a caption"),
           ("000000000.json", b'{"k": 1}'), ("000000001.jpg", b""),
           ("000000002.webp", bytes(range(256)) * 40), ("exactly512.bin", b"y" * 512)]


def _with_tarfile(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o444
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _with_stream(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    stream = TarStream(out)
    for name, data in members:
        stream.add(name, data)
    stream.close()
    return out.getvalue()


@pytest.mark.parametrize("count", [0, 1, 2, len(MEMBERS)])
def test_byte_identical_to_tarfile(count: int) -> None:
    assert _with_stream(MEMBERS[:count]) == _with_tarfile(MEMBERS[:count])


def test_reads_back() -> None:
    with tarfile.open(fileobj=io.BytesIO(_with_stream(MEMBERS))) as tar:
        assert [(m.name, tar.extractfile(m).read()) for m in tar] == MEMBERS


def test_close_is_idempotent() -> None:
    out = io.BytesIO()
    stream = TarStream(out)
    stream.add("a", b"1")
    stream.close()
    stream.close()
    assert len(out.getvalue()) == tarfile.RECORDSIZE
