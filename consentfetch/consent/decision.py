"""Statuses, reason codes and the decision value every stage returns.

These strings are a public contract (ARCHITECTURE.md §6): users filter audit
rows on them, so they never change once released.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(enum.StrEnum):
    SUCCESS = "success"
    DISALLOWED = "disallowed"
    FAILED_TO_DOWNLOAD = "failed_to_download"
    FAILED_TO_RESIZE = "failed_to_resize"


class Reason(enum.StrEnum):
    # disallowed
    REGISTRY_OPT_OUT = "registry_opt_out"
    ROBOTS_DISALLOWED = "robots_disallowed"
    ROBOTS_UNREACHABLE = "robots_unreachable"
    AI_CRAWLER_BLOCKED = "ai_crawler_blocked"
    AIPREF_DISALLOWED = "aipref_disallowed"
    TDM_RESERVED = "tdm_reserved"
    AITXT_DISALLOWED = "aitxt_disallowed"
    X_ROBOTS_TAG = "x_robots_tag"
    METADATA_PROHIBITED = "metadata_prohibited"
    NO_OPT_IN = "no_opt_in"
    # failed_to_download
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    DNS_ERROR = "dns_error"
    CONNECTION_ERROR = "connection_error"
    TLS_ERROR = "tls_error"
    TOO_LARGE = "too_large"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    BLOCKED_ADDRESS = "blocked_address"
    INVALID_URL = "invalid_url"
    CRAWL_DELAY_TOO_LONG = "crawl_delay_too_long"
    # failed_to_resize
    DECODE_ERROR = "decode_error"
    IMAGE_TOO_SMALL = "image_too_small"
    ASPECT_RATIO_TOO_LARGE = "aspect_ratio_too_large"
    IMAGE_TOO_LARGE = "image_too_large"


_DISALLOWED = {
    Reason.REGISTRY_OPT_OUT, Reason.ROBOTS_DISALLOWED, Reason.ROBOTS_UNREACHABLE,
    Reason.AI_CRAWLER_BLOCKED, Reason.AIPREF_DISALLOWED, Reason.TDM_RESERVED,
    Reason.AITXT_DISALLOWED, Reason.X_ROBOTS_TAG, Reason.METADATA_PROHIBITED,
    Reason.NO_OPT_IN,
}
_FAILED_TO_RESIZE = {
    Reason.DECODE_ERROR, Reason.IMAGE_TOO_SMALL,
    Reason.ASPECT_RATIO_TOO_LARGE, Reason.IMAGE_TOO_LARGE,
}


def status_of(reason: Reason) -> Status:
    """The status a reason code belongs to."""
    if reason in _DISALLOWED:
        return Status.DISALLOWED
    if reason in _FAILED_TO_RESIZE:
        return Status.FAILED_TO_RESIZE
    return Status.FAILED_TO_DOWNLOAD


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a URL was not turned into a sample.

    ``evidence`` is the human-readable proof: the header line, the robots.txt
    rule and its URL, the exception text. ``http_status`` is set when a
    response was received.
    """

    reason: Reason
    evidence: str
    http_status: int | None = None
    retry_after: float | None = None  # a server's Retry-After, in seconds (429/503)

    @property
    def status(self) -> Status:
        return status_of(self.reason)
