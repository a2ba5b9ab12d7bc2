"""Peak memory of one image thread's work: PNG and ICO bombs, one and two at once.

Each case runs in a fresh Python process, so that its peak resident set
(``VmHWM`` in ``/proc/self/status``, which counts Pillow's C allocations as
well, unlike tracemalloc) is the case's alone. The figure reported is the
peak minus the peak before any image is processed (imports and the file's
bytes already in memory).

    python benchmarks/image_memory.py              # the figures in README.md
    python benchmarks/image_memory.py --side 2000  # a small, quick run

The images are built here, row block by row block, so this process never
holds their pixels either.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

CHILD = r"""
import inspect, json, resource, sys, threading
from consentfetch import image

def hwm_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

path, copies, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = open(path, "rb").read()
options = image.ResizeOptions()
kwargs = {}
if "budget" in inspect.signature(image.process_image).parameters:
    kwargs["budget"] = image.DecodeBudget(limit or image.DEFAULT_MAX_DECODED_BYTES)
base = hwm_kib()
cpu = resource.getrusage(resource.RUSAGE_SELF)
results = [None] * copies
def work(i):
    results[i] = image.process_image(data, options, **kwargs)
threads = [threading.Thread(target=work, args=(i,)) for i in range(copies)]
for t in threads: t.start()
for t in threads: t.join()
end = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"base_kib": base, "peak_kib": hwm_kib(),
                  "cpu_s": end.ru_utime + end.ru_stime - cpu.ru_utime - cpu.ru_stime,
                  "results": [repr(r)[:160] for r in results]}))
"""


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def rgba_png(side: int) -> bytes:
    """A valid side x side 8-bit RGBA PNG: colour and alpha ramps along x, the
    same on every row (PNG's "Up" filter makes the rows after the first zeros)."""
    first = b"\x00" + b"".join(bytes((x * 255 // side, 96, 255 - x * 255 // side,
                                      (x * 7) % 256)) for x in range(side))
    up = b"\x02" + bytes(4 * side)
    z = zlib.compressobj(9)
    block = 500
    idat = z.compress(first)
    idat += b"".join(z.compress(up * min(block, side - y)) for y in range(1, side, block))
    idat += z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def ico_bomb(side: int) -> bytes:
    """An ICO whose one directory entry says 256x256 and whose PNG frame is side x side."""
    frame = rgba_png(side)
    header = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(frame), 6 + 16)
    return header + entry + frame


def measure(path: Path, copies: int, limit: int) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(copies), str(limit)],
                         capture_output=True, text=True, timeout=600, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=10_000, help="side of the RGBA PNG")
    parser.add_argument("--ico-side", type=int, default=12_000,
                        help="side of the PNG frame inside the ICO")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        png, ico = Path(tmp, "rgba.png"), Path(tmp, "bomb.ico")
        png.write_bytes(rgba_png(args.side))
        ico.write_bytes(ico_bomb(args.ico_side))
        half = args.side * args.side * 4 * 5 // 4  # room for one image, not two
        cases = [(f"{args.side}x{args.side} RGBA PNG ({png.stat().st_size / 1024:.0f} KiB)",
                  png, 1, 0),
                 ("two of them at once, in two threads", png, 2, 0),
                 (f"two at once, --max-decoded-bytes {half}", png, 2, half),
                 (f"ICO bomb: {args.ico_side}x{args.ico_side} PNG frame "
                  f"({ico.stat().st_size / 1024:.0f} KiB)", ico, 1, 0)]
        print(f"python {sys.version.split()[0]}, pid {os.getpid()}")
        print("| case | peak RSS growth | peak RSS | CPU | outcome |")
        print("|---|---|---|---|---|")
        for label, path, copies, limit in cases:
            r = measure(path, copies, limit)
            grown = (int(r["peak_kib"]) - int(r["base_kib"])) / 1024  # type: ignore[call-overload]
            peak = int(r["peak_kib"]) / 1024  # type: ignore[call-overload]
            outcome = "; ".join(sorted(set(r["results"])))  # type: ignore[arg-type]
            print(f"| {label} | {grown:,.0f} MiB | {peak:,.0f} MiB | {r['cpu_s']:.2f} s "
                  f"| {outcome} |")


if __name__ == "__main__":
    main()
