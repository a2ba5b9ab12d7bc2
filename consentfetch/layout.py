"""The output folder's layout: every file name, shard name and sample key, in one place.

ARCHITECTURE.md §5::

    00000.tar            <key>.jpg / <key>.txt / <key>.json per successful sample
    00000.parquet        one audit row per input row of the shard
    00000_stats.json     counts by status and reason, timings (written last:
                         a shard is complete exactly when it exists)
    origins.parquet/     one row per origin file fetched (robots.txt, ...), in parts:
                         one per shard that fetched any, one per slice of the
                         origin phase, each sorted by origin; never rewritten.
                         Older runs wrote one origins.parquet file instead.
    run.json             version, config, user agent, consent profile, totals

Files being written carry :data:`TMP_SUFFIX` until renamed. Keys and shard
names follow img2dataset's scheme, so training code that reads its output
reads ours. Everything else (writer, run, the distributors, the audit side)
asks this module rather than spelling a name itself. Pure: no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime

SHARD_DIGITS = 5  # img2dataset's minimum width of a shard number
TMP_SUFFIX = ".tmp"
RUN_FILE = "run.json"
ORIGINS_FILE = "origins.parquet"  # a folder of parts (older runs: one file)
RECHECKS_DIR = "rechecks"  # rechecks/<UTC stamp>/: consentfetch recheck's findings
STATS_SUFFIX = "_stats.json"
TAR_SUFFIX = ".tar"
PARQUET_SUFFIX = ".parquet"
# A shard's files in the order they are completed: the stats file, last, marks completion.
SHARD_SUFFIXES = (TAR_SUFFIX, PARQUET_SUFFIX, STATS_SUFFIX)


def shard_name(shard_id: int) -> str:
    """The file stem of a shard: ``"00000"``, ``"00012"``, ``"123456"``."""
    if shard_id < 0:
        raise ValueError(f"shard_id must be non-negative (got {shard_id})")
    return str(shard_id).zfill(SHARD_DIGITS)


def tar_name(shard_id: int) -> str:
    """``"00012.tar"``: the shard's webdataset tar."""
    return shard_name(shard_id) + TAR_SUFFIX


def parquet_name(shard_id: int) -> str:
    """``"00012.parquet"``: the shard's audit rows."""
    return shard_name(shard_id) + PARQUET_SUFFIX


def stats_name(shard_id: int) -> str:
    """``"00012_stats.json"``: the shard's stats, its completion marker."""
    return shard_name(shard_id) + STATS_SUFFIX


def shard_files(shard_id: int) -> tuple[str, str, str]:
    """The shard's tar, parquet and stats file names, in the order they are completed."""
    stem = shard_name(shard_id)
    return (stem + TAR_SUFFIX, stem + PARQUET_SUFFIX, stem + STATS_SUFFIX)


def origin_part(run_stamp: str, seq: int) -> str:
    """``"origins.parquet/20261127T131520123456Z-000003.parquet"``: part ``seq`` of
    the run started at ``run_stamp``. Names sort in the order parts were written."""
    if seq < 0:
        raise ValueError(f"seq must be non-negative (got {seq})")
    return f"{ORIGINS_FILE}/{run_stamp}-{seq:06d}{PARQUET_SUFFIX}"


def run_stamp(started: datetime) -> str:
    """A run's start time as the prefix of its origin parts (UTC, sorts by time)."""
    return started.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


# The name a single origins.parquet file of an older run is moved to, as the
# oldest part, when a run resumes it.
LEGACY_ORIGIN_PART = origin_part("00000000T000000000000Z", 0)


def is_origin_part(name: str) -> bool:
    """Whether ``name`` (inside the origins folder) is a finished part."""
    return name.endswith(PARQUET_SUFFIX) and "/" not in name


def temporary(name: str) -> str:
    """The name ``name`` is written under until it is whole."""
    return name + TMP_SUFFIX


def member_name(key: str, extension: str) -> str:
    """A sample's tar member: ``"000030017.jpg"``; webdataset groups members by key."""
    return f"{key}.{extension}"


def member_key(member: str) -> str:
    """The sample key of a tar member name (keys hold no dot)."""
    return member.split(".", 1)[0]


def completed_shard(name: str) -> int | None:
    """The shard id of a stats file name (``"00012_stats.json"`` → 12), else None."""
    stem = name.removesuffix(STATS_SUFFIX)
    return int(stem) if stem != name and stem.isdigit() else None


def shard_of(name: str) -> int | None:
    """The shard id of any finished shard file name (tar, parquet or stats), else None."""
    stem = name.split(".", 1)[0].removesuffix("_stats")
    return int(stem) if stem.isdigit() and name.endswith(SHARD_SUFFIXES) else None


def is_run_file(name: str) -> bool:
    """Whether a run wrote ``name`` (``--overwrite`` removes exactly these)."""
    stem = name.split(".", 1)[0].removesuffix("_stats")
    return (stem.isdigit() and name.endswith((*SHARD_SUFFIXES, TMP_SUFFIX))) \
        or name in (RUN_FILE, ORIGINS_FILE, RECHECKS_DIR) or name.endswith(TMP_SUFFIX)


def compute_key(shard_id: int, index: int, shard_size: int) -> str:
    """The sample key of row ``index`` of shard ``shard_id`` (img2dataset's scheme).

    ``shard_size`` 10000: shard 0 index 0 → ``"000000000"``, shard 3 index 17 →
    ``"000030017"``. The sample part has ``ceil(log10(shard_size))`` digits (at
    least 1); the shard part at least 5.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1 (got {shard_size})")
    sample_digits = len(str(shard_size - 1))  # == max(1, ceil(log10(shard_size))), exactly
    if not 0 <= index < 10**sample_digits:
        raise ValueError(f"index {index} does not fit in {sample_digits} digit(s) "
                         f"for shard_size {shard_size}")
    if shard_id < 0:
        raise ValueError(f"shard_id must be non-negative (got {shard_id})")
    key = shard_id * 10**sample_digits + index
    return str(key).zfill(SHARD_DIGITS + sample_digits)


def key_index(key: str, shard_size: int) -> int:
    """The row index inside its shard of a key made by :func:`compute_key`."""
    modulus: int = 10 ** len(str(shard_size - 1))
    return int(key) % modulus
