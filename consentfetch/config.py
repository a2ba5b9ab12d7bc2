"""Run options: one frozen object, validated once, with named defaults.

Every field mirrors a ``consentfetch download`` flag (``image_size`` is
``--image-size``). :func:`make_config` is the one place where user values are
checked; everything downstream trusts a :class:`FetchConfig`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

from ._version import __version__
from .errors import ConfigError
from .net.guard import RESOLVERS, parse_networks
from .safetext import redact_userinfo

DEFAULT_USER_AGENT_TOKEN = "consentfetch"
DEFAULT_CONTACT = "https://pypi.org/project/consentfetch/"
DEFAULT_SHARD_SIZE = 10_000  # img2dataset's number_sample_per_shard
DEFAULT_TIMEOUT = 10.0  # seconds, total per attempt: connect + headers + body
DEFAULT_MAX_BYTES = 20_000_000
DEFAULT_MAX_REDIRECTS = 10
DEFAULT_RETRIES = 2
DEFAULT_RETRY_BACKOFF = 1.0
DEFAULT_CONCURRENCY = 128  # requests in flight per process (measured: benchmarks/README.md)
DEFAULT_PER_HOST_CONCURRENCY = 2
DEFAULT_MAX_HOST_FAILURES = 8  # failed attempts in a row before a host is given up
DEFAULT_MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is not waited for
DEFAULT_MAX_CRAWL_DELAY = 60.0  # seconds; a host asking for more is not requested
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000  # decoded pixels; bigger is a bomb or useless
# --encode-quality when not given: JPEG/WebP quality, or png's zlib level (img2dataset's)
DEFAULT_ENCODE_QUALITY = {"jpg": 95, "webp": 95, "png": 9}
# Bytes of decoded images in flight per process, shared by its image threads:
# room for one image at --max-image-pixels in RGBA (400 MB) and its working
# memory, or for two of them at once.
DEFAULT_MAX_DECODED_BYTES = 2**30

RESIZE_MODES = ("no", "border", "keep_ratio", "keep_ratio_largest", "center_crop")
ENCODE_FORMATS = ("jpg", "png", "webp")
CONSENT_PROFILES = ("strict", "standard", "opt-in")
# The consent checks, in the order they are applied; each can be turned off
# with --ignore NAME (and is then recorded in run.json and every audit row).
CHECKS = ("registry", "robots_txt", "ai_crawlers", "content_usage", "content_signal", "rsl",
          "ai_txt", "tdmrep", "x_robots_tag", "iptc", "c2pa")
HASHES = ("sha256", "md5")  # --verify-hash algorithms (img2dataset's)
INPUT_FORMATS = ("parquet", "csv", "tsv", "txt", "jsonl")
DISTRIBUTORS = ("multiprocessing", "spark", "ray")
# The Python package each cluster distributor needs, and the extra that installs it.
DISTRIBUTOR_PACKAGES = {"spark": "pyspark", "ray": "ray"}

# Options a resumed run may change: how the work is spread and how patient the
# network layer is. Every other option shapes the output (sizes, formats, keys,
# consent), so resuming with a different value would mix two datasets.
RESUME_SAFE_OPTIONS = frozenset({
    "processes", "distributor", "overwrite", "retry_failed", "concurrency",
    "per_host_concurrency", "min_host_delay", "max_host_failures", "max_retry_after",
    "max_crawl_delay",
    "timeout", "retries", "retry_backoff", "resolver", "contact", "save_consent_files",
    "ca_file",
})

_TOKEN_RE = re.compile(r"^[A-Za-z_-]+$")  # RFC 9309 product token


@dataclass(frozen=True, slots=True)
class FetchConfig:
    """Everything a run needs to know, frozen. Build it with :func:`make_config`."""

    # input
    input_format: str | None = None  # None: from the file name
    url_col: str = "url"
    caption_col: str | None = None
    save_additional_columns: tuple[str, ...] = ()
    # "COLUMN" or "COLUMN,sha256|md5": the digest each downloaded body must have
    # (img2dataset's --verify_hash; DataComp publishes a sha256 per URL)
    verify_hash: str | None = None
    # a column of [x0, y0, x1, y1] relative boxes blurred before encoding (DataComp's faces)
    bbox_col: str | None = None
    # image
    image_size: int = 256
    resize_mode: str = "border"
    resize_only_if_bigger: bool = False
    skip_reencode: bool = False  # keep the downloaded bytes when nothing but encoding changes
    encode_format: str = "jpg"
    encode_quality: int = DEFAULT_ENCODE_QUALITY["jpg"]  # make_config: the format's default
    min_image_size: int = 0
    max_aspect_ratio: float = math.inf
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES  # per process, all image threads
    # output and work split
    shard_size: int = DEFAULT_SHARD_SIZE
    processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    distributor: str = "multiprocessing"
    overwrite: bool = False
    retry_failed: bool = False  # re-attempt transient download failures of complete shards
    # network
    concurrency: int = DEFAULT_CONCURRENCY
    per_host_concurrency: int = DEFAULT_PER_HOST_CONCURRENCY
    min_host_delay: float = 0.0  # seconds between request starts to one host
    max_host_failures: int = DEFAULT_MAX_HOST_FAILURES  # 0: never give a host up
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    max_crawl_delay: float = DEFAULT_MAX_CRAWL_DELAY  # longest robots.txt Crawl-delay kept to
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    # seconds before the first retry; doubles, jittered
    retry_backoff: float = DEFAULT_RETRY_BACKOFF
    max_bytes: int = DEFAULT_MAX_BYTES
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    user_agent_token: str = DEFAULT_USER_AGENT_TOKEN
    contact: str = DEFAULT_CONTACT
    allow_private_networks: bool = False
    allowed_networks: tuple[str, ...] = ()  # CIDRs let through the address guard
    resolver: str = "threaded"  # or "async" (aiodns)
    ca_file: str | None = None  # PEM certificate authorities trusted besides the system's
    # consent
    consent: str = "strict"
    ignore: tuple[str, ...] = ()  # checks turned off, names from CHECKS
    opt_out_lists: tuple[str, ...] = ()
    opt_in_lists: tuple[str, ...] = ()
    ai_crawler_tokens: tuple[str, ...] = ()  # added to the shipped list
    save_consent_files: bool = False  # keep robots.txt / ai.txt / tdmrep.json bodies

    @property
    def hash_column(self) -> str | None:
        """The ``--verify-hash`` column, or None."""
        return self.verify_hash.split(",", 1)[0].strip() if self.verify_hash else None

    @property
    def hash_algorithm(self) -> str:
        """The ``--verify-hash`` digest: sha256 (the default) or md5."""
        parts = (self.verify_hash or "").split(",", 1)
        return parts[1].strip().lower() if len(parts) == 2 else "sha256"

    def enabled(self, check: str) -> bool:
        """Whether a consent check runs in this configuration."""
        return check not in self.ignore

    @property
    def user_agent(self) -> str:
        """The honest User-Agent header: our token, version and a contact."""
        ua = f"{self.user_agent_token}/{__version__} (+{self.contact})"
        if self.user_agent_token.lower() != DEFAULT_USER_AGENT_TOKEN:
            ua += f" consentfetch/{__version__}"
        return ua

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, for run.json."""
        out = dataclasses.asdict(self)
        for name in ("save_additional_columns", "ignore", "ai_crawler_tokens",
                     "allowed_networks"):
            out[name] = list(getattr(self, name))
        for name in ("opt_out_lists", "opt_in_lists"):  # paths or URLs: no credentials
            out[name] = [redact_userinfo(path) for path in getattr(self, name)]
        if math.isinf(self.max_aspect_ratio):
            out["max_aspect_ratio"] = None
        return out


class FetchOptions(TypedDict, total=False):
    """The keyword options of :func:`make_config`, ``fetch_shards`` and ``check_url``.

    One key per :class:`FetchConfig` field, of the field's type; the tuple
    fields take any sequence of strings, or one string. Each is a
    ``consentfetch download`` flag with underscores (``image_size`` is
    ``--image-size``); the defaults are :class:`FetchConfig`'s. A test keeps the
    two in step.
    """

    # input
    input_format: str | None
    url_col: str
    caption_col: str | None
    save_additional_columns: Sequence[str] | str
    verify_hash: str | None
    bbox_col: str | None
    # image
    image_size: int
    resize_mode: str
    resize_only_if_bigger: bool
    skip_reencode: bool
    encode_format: str
    encode_quality: int
    min_image_size: int
    max_aspect_ratio: float
    max_image_pixels: int
    max_decoded_bytes: int
    # output and work split
    shard_size: int
    processes: int
    distributor: str
    overwrite: bool
    retry_failed: bool
    # network
    concurrency: int
    per_host_concurrency: int
    min_host_delay: float
    max_host_failures: int
    max_retry_after: float
    max_crawl_delay: float
    timeout: float
    retries: int
    retry_backoff: float
    max_bytes: int
    max_redirects: int
    user_agent_token: str
    contact: str
    allow_private_networks: bool
    allowed_networks: Sequence[str] | str
    resolver: str
    ca_file: str | None
    # consent
    consent: str
    ignore: Sequence[str] | str
    opt_out_lists: Sequence[str] | str
    opt_in_lists: Sequence[str] | str
    ai_crawler_tokens: Sequence[str] | str
    save_consent_files: bool


_FIELDS = {f.name for f in dataclasses.fields(FetchConfig)}


def make_config(config: FetchConfig | None = None, /,
                **options: Unpack[FetchOptions]) -> FetchConfig:
    """Validate keyword options and return a frozen :class:`FetchConfig`.

    Unknown names and bad values raise :class:`ConfigError` naming the option.
    ``None`` means "use the default" for every option but ``caption_col`` and
    ``input_format`` (the CLI passes None for a flag not given).

    A :class:`FetchConfig` may be given instead of options: it is validated
    like options are and returned as it is. A config *and* options is a
    :class:`ConfigError`, never a silent merge (which of two encode qualities,
    two retry counts, would win?); build a new config from options instead.
    """
    return resolve_config(config, options)


def resolve_config(config: FetchConfig | None, options: Mapping[str, Any],
                   defaults: Mapping[str, Any] | None = None) -> FetchConfig:
    """The run's config from a public function's ``config`` and ``**options``.

    ``defaults`` are that function's own defaults for options not given (a
    check makes no retries); they do not apply to a given ``config``.
    """
    if config is not None:
        return _given_config(config, options)
    return _from_options({**(defaults or {}), **options})


def _given_config(config: object, options: Mapping[str, Any]) -> FetchConfig:
    if not isinstance(config, FetchConfig):
        raise ConfigError(f"config: a FetchConfig (got {type(config).__name__})")
    if options:
        raise ConfigError("give a FetchConfig or options, not both (got config and "
                          f"{', '.join(sorted(options))})")
    _validate(config)
    return config


def _from_options(options: Mapping[str, Any]) -> FetchConfig:
    unknown = sorted(set(options) - _FIELDS)
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(unknown)}")
    given = {k: v for k, v in options.items()
             if v is not None or k in ("caption_col", "input_format")}
    for name in ("save_additional_columns", "ignore", "opt_out_lists", "opt_in_lists",
                 "ai_crawler_tokens", "allowed_networks"):
        if name in given:
            value = given[name]
            given[name] = (value,) if isinstance(value, str) else tuple(value)
    if "encode_quality" not in given:
        given["encode_quality"] = DEFAULT_ENCODE_QUALITY.get(given.get("encode_format", "jpg"),
                                                             DEFAULT_ENCODE_QUALITY["jpg"])
    if given.get("max_aspect_ratio") is not None:
        given["max_aspect_ratio"] = float(given["max_aspect_ratio"])
    for name in ("timeout", "retry_backoff", "min_host_delay", "max_retry_after",
                 "max_crawl_delay"):
        if given.get(name) is not None:
            given[name] = float(given[name])
    cfg = FetchConfig(**given)
    _validate(cfg)
    return cfg


# Options whose flag is not simply the field name with dashes (repeatable flags are
# singular: --allow-network CIDR fills allowed_networks).
_FLAGS = {"allowed_networks": "--allow-network", "opt_out_lists": "--opt-out-list",
          "opt_in_lists": "--opt-in-list", "ai_crawler_tokens": "--ai-crawler-token"}


def flag_of(name: str) -> str:
    """The command-line flag of option ``name``: ``image_size`` → ``--image-size``."""
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def resume_conflicts(previous: dict[str, Any], current: FetchConfig) -> list[str]:
    """The output-shaping options whose value differs from a previous run's config."""
    now = current.to_dict()
    changed = []
    for name in sorted(set(previous) | set(now)):
        if name in RESUME_SAFE_OPTIONS or previous.get(name) == now.get(name):
            continue
        flag = flag_of(name)
        changed.append(f"{flag} was {previous.get(name)!r}, now {now.get(name)!r}")
    return changed


def _validate(cfg: FetchConfig) -> None:
    def need(ok: bool, name: str, msg: str) -> None:
        if not ok:
            value = getattr(cfg, name)
            shown = ", ".join(map(repr, value)) if isinstance(value, tuple) else repr(value)
            raise ConfigError(f"{flag_of(name)}: {msg} (got {shown})")

    need(cfg.resize_mode in RESIZE_MODES, "resize_mode", f"one of {', '.join(RESIZE_MODES)}")
    need(cfg.encode_format in ENCODE_FORMATS, "encode_format",
         f"one of {', '.join(ENCODE_FORMATS)}")
    need(cfg.consent in CONSENT_PROFILES, "consent", f"one of {', '.join(CONSENT_PROFILES)}")
    need(cfg.distributor in DISTRIBUTORS, "distributor", f"one of {', '.join(DISTRIBUTORS)}")
    package = DISTRIBUTOR_PACKAGES.get(cfg.distributor)
    need(package is None or importlib.util.find_spec(package) is not None, "distributor",
         f"{cfg.distributor} needs {package}: pip install 'consentfetch[{cfg.distributor}]'")
    need(cfg.input_format is None or cfg.input_format in INPUT_FORMATS, "input_format",
         f"one of {', '.join(INPUT_FORMATS)}")
    if cfg.encode_format == "png":
        need(0 <= cfg.encode_quality <= 9, "encode_quality", "for png, a zlib level 0-9")
    else:
        need(1 <= cfg.encode_quality <= 100, "encode_quality", "between 1 and 100")
    for name in ("image_size", "shard_size", "processes", "concurrency",
                 "per_host_concurrency", "max_bytes", "max_image_pixels",
                 "max_decoded_bytes"):
        value = getattr(cfg, name)
        need(isinstance(value, int) and value >= 1, name, "a positive integer")
    for name in ("min_image_size", "retries", "max_redirects", "max_host_failures"):
        value = getattr(cfg, name)
        need(isinstance(value, int) and value >= 0, name, "a non-negative integer")
    need(cfg.timeout > 0, "timeout", "a positive number of seconds")
    need(cfg.retry_backoff >= 0, "retry_backoff", "a non-negative number of seconds")
    need(cfg.min_host_delay >= 0, "min_host_delay", "a non-negative number of seconds")
    need(cfg.max_retry_after >= 0, "max_retry_after", "a non-negative number of seconds")
    need(0 <= cfg.max_crawl_delay < math.inf, "max_crawl_delay",
         "a non-negative, finite number of seconds")
    need(cfg.resolver in RESOLVERS, "resolver", f"one of {', '.join(RESOLVERS)}")
    need(cfg.resolver != "async" or importlib.util.find_spec("aiodns") is not None,
         "resolver", "async needs aiodns: pip install 'consentfetch[dns]'")
    try:
        parse_networks(cfg.allowed_networks)
    except ValueError as exc:
        need(False, "allowed_networks", str(exc))
    need(cfg.ca_file is None or os.path.isfile(cfg.ca_file), "ca_file", "a PEM file that exists")
    need(cfg.verify_hash is None or (bool(cfg.hash_column) and cfg.hash_algorithm in HASHES),
         "verify_hash", f"COLUMN or COLUMN,ALGORITHM with ALGORITHM one of {', '.join(HASHES)}")
    need(cfg.max_aspect_ratio >= 1, "max_aspect_ratio", "at least 1")
    need(bool(_TOKEN_RE.match(cfg.user_agent_token)), "user_agent_token",
         "letters, '_' and '-' only (RFC 9309 product token)")
    need(bool(cfg.url_col), "url_col", "a column name")
    need(set(cfg.ignore) <= set(CHECKS), "ignore", f"names from {', '.join(CHECKS)}")
    need(cfg.consent == "opt-in" or not cfg.opt_in_lists, "opt_in_lists",
         "only meaningful with --consent opt-in")
    need(all(_TOKEN_RE.match(t) for t in cfg.ai_crawler_tokens), "ai_crawler_tokens",
         "RFC 9309 product tokens: letters, '_' and '-' only")
    need(cfg.caption_col != cfg.url_col or cfg.caption_col is None, "caption_col",
         "a different column than --url-col")
    need(not (cfg.retry_failed and cfg.overwrite), "retry_failed",
         "cannot be combined with --overwrite")
