"""Statuses, reason codes and the decision value every stage returns.

These strings are a public contract (ARCHITECTURE.md §6): users filter audit
rows on them, so they never change once released.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType


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
    CONTENT_SIGNAL = "content_signal"
    RSL_PROHIBITED = "rsl_prohibited"
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
    HASH_MISMATCH = "hash_mismatch"  # --verify-hash: the URL serves other bytes now
    # failed_to_resize
    DECODE_ERROR = "decode_error"
    IMAGE_TOO_SMALL = "image_too_small"
    ASPECT_RATIO_TOO_LARGE = "aspect_ratio_too_large"
    IMAGE_TOO_LARGE = "image_too_large"


_DISALLOWED = {
    Reason.REGISTRY_OPT_OUT, Reason.ROBOTS_DISALLOWED, Reason.ROBOTS_UNREACHABLE,
    Reason.AI_CRAWLER_BLOCKED, Reason.AIPREF_DISALLOWED, Reason.TDM_RESERVED,
    Reason.AITXT_DISALLOWED, Reason.X_ROBOTS_TAG, Reason.METADATA_PROHIBITED,
    Reason.NO_OPT_IN, Reason.CONTENT_SIGNAL, Reason.RSL_PROHIBITED,
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


class Retry(enum.Flag):
    """When a failure is worth another try."""

    NEVER = 0
    #: another attempt within the run (``--retries``), after the host's backoff
    IN_RUN = enum.auto()
    #: ``--retry-failed``: a later run may get an answer (or has a larger cap)
    NEXT_RUN = enum.auto()
    ALWAYS = IN_RUN | NEXT_RUN


#: The transient failures: the one table the in-run retry (net/client.py) and
#: ``--retry-failed`` (run.py) read, through :func:`retry_when`. A reason not
#: here is never retried; consent decisions (disallowed) never are.
TRANSIENT: Mapping[str, Retry] = MappingProxyType({
    Reason.TIMEOUT: Retry.ALWAYS,
    Reason.CONNECTION_ERROR: Retry.ALWAYS,  # resets, refused, short bodies
    Reason.HTTP_ERROR: Retry.ALWAYS,  # 429 and 5xx only: see retry_when
    # A name that does not resolve now will not a second later; another day it may.
    Reason.DNS_ERROR: Retry.NEXT_RUN,
    # Only a larger --max-crawl-delay (resume-safe) lets such a host be requested.
    Reason.CRAWL_DELAY_TOO_LONG: Retry.NEXT_RUN,
})


def transient_http_status(http_status: int) -> bool:
    """An HTTP status that says "not now" rather than "no": 429 and 5xx."""
    return http_status == 429 or http_status >= 500


def retry_when(reason: str, http_status: int | None) -> Retry:
    """When a failure with this reason code (and response status) is worth another try.

    An ``http_error`` without a status got no response of its own: its host
    was given up after failing again and again, and only 429 and 5xx count
    towards that (net/client.py), so a later run may try it.
    """
    when = TRANSIENT.get(reason, Retry.NEVER)
    if reason != Reason.HTTP_ERROR:
        return when
    if http_status is None:
        return Retry.NEXT_RUN
    return when if transient_http_status(http_status) else Retry.NEVER


class Signal(enum.StrEnum):
    """What kind of thing decided a row: the audit's ``evidence_signal`` (ARCHITECTURE §5)."""

    ROBOTS_TXT = "robots.txt"
    AI_TXT = "ai.txt"
    TDMREP_JSON = "tdmrep.json"
    LICENCE = "licence"
    HEADER = "header"
    XMP = "xmp"
    C2PA = "c2pa"
    LIST = "list"
    NETWORK = "network"
    IMAGE = "image"
    INPUT = "input"
    PROFILE = "profile"


@dataclass(frozen=True, slots=True)
class Evidence:
    """The proof behind a decision, as data; ``text`` is its one rendering.

    Built by :mod:`consentfetch.consent.evidence` (one function per signal);
    stored in the audit row as ``evidence`` (the text) and the flat
    ``evidence_*`` columns, and never parsed back from the text.
    """

    signal: Signal
    text: str
    #: the origin file, licence or list that decided (URL or path as given)
    file: str | None = None
    #: full sha256 of that fetch of the file
    file_sha256: str | None = None
    fetched_at: datetime | None = None
    #: 1-based line of the rule (robots.txt, ai.txt), or the entry number (tdmrep.json)
    line: int | None = None
    #: the rule, header line or list entry as written
    rule: str | None = None
    #: the robots.txt group (User-agent value) or AI-crawler token
    agent: str | None = None
    #: the request hop whose origin decided (after redirects: not the input URL)
    hop: str | None = None


# The signal of evidence given as bare text, by the reason it explains.
_TEXT_SIGNAL: dict[Status, Signal] = {
    Status.FAILED_TO_DOWNLOAD: Signal.NETWORK,
    Status.FAILED_TO_RESIZE: Signal.IMAGE,
}


def text_evidence(reason: Reason, text: str) -> Evidence:
    """Evidence that is only text (a network error, a decoder message)."""
    if reason is Reason.INVALID_URL:
        return Evidence(Signal.INPUT, text)
    return Evidence(_TEXT_SIGNAL.get(status_of(reason), Signal.NETWORK), text)


@dataclass(frozen=True, slots=True, init=False)
class Denial:
    """Why a URL was not turned into a sample.

    ``proof`` is the :class:`Evidence`: the header line, the robots.txt rule
    and its file, the exception text; ``evidence`` is its text. A plain string
    is accepted for evidence that is only text. ``http_status`` is set when a
    response was received.
    """

    reason: Reason
    proof: Evidence
    http_status: int | None
    retry_after: float | None  # a server's Retry-After, in seconds (429/503)

    def __init__(self, reason: Reason, evidence: Evidence | str,
                 http_status: int | None = None, retry_after: float | None = None) -> None:
        proof = evidence if isinstance(evidence, Evidence) else text_evidence(reason, evidence)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "proof", proof)
        object.__setattr__(self, "http_status", http_status)
        object.__setattr__(self, "retry_after", retry_after)

    @property
    def evidence(self) -> str:
        return self.proof.text

    @property
    def status(self) -> Status:
        return status_of(self.reason)

    def with_http_status(self, http_status: int | None) -> Denial:
        """The same denial, with the status code of the response that carried it."""
        return Denial(self.reason, self.proof, http_status, self.retry_after)
