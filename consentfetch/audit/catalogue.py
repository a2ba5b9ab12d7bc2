"""The one catalogue of status and reason wording: ``why``, the HTML report and the CLI
read it, so a code is named and explained the same way everywhere.

Every :class:`~consentfetch.consent.decision.Reason` has a :class:`ReasonWording`
(a test holds the catalogue to the enum): a short ``label`` for charts and
tables, a one-line ``help`` saying what the code means, and an ``explanation``
template for ``why``, in which ``{evidence}`` is the audit row's evidence text.
``why`` builds a fuller sentence from the ``evidence_*`` columns where a row
has them, and falls back to the template otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from ..consent.decision import Reason, Status


@dataclass(frozen=True, slots=True)
class StatusWording:
    label: str  # the report's name for the status
    verdict: str  # the head of a ``why`` sentence


@dataclass(frozen=True, slots=True)
class ReasonWording:
    label: str
    help: str
    explanation: str  # ``{evidence}``: the row's evidence text


STATUSES = MappingProxyType({
    Status.SUCCESS: StatusWording("Downloaded", "Downloaded"),
    Status.DISALLOWED: StatusWording("Opted out (not downloaded)", "Not downloaded"),
    Status.FAILED_TO_DOWNLOAD: StatusWording("Failed to download", "Not downloaded"),
    Status.FAILED_TO_RESIZE: StatusWording("Failed to resize", "Downloaded but not kept"),
})

_W = ReasonWording
REASONS = MappingProxyType({
    Reason.REGISTRY_OPT_OUT: _W(
        "Opt-out list",
        "Listed (URL, prefix, host or content hash) in an opt-out list given to the run.",
        "the URL is on an opt-out list the dataset builder gave this run: {evidence}."),
    Reason.ROBOTS_DISALLOWED: _W(
        "robots.txt Disallow",
        "The site's robots.txt disallows the path for our token or *.",
        "the site's robots.txt disallows it: {evidence}."),
    Reason.ROBOTS_UNREACHABLE: _W(
        "robots.txt unavailable",
        "robots.txt answered 429/5xx or could not be fetched; RFC 9309: assume complete "
        "disallow.",
        "the site's robots.txt could not be fetched, and RFC 9309 says a crawler must then "
        "assume everything is disallowed: {evidence}."),
    Reason.AI_CRAWLER_BLOCKED: _W(
        "robots.txt blocks AI crawlers",
        "robots.txt blocks a known AI-training crawler while allowing others (strict "
        "profile).",
        "the site's robots.txt shuts out AI-training crawlers while letting other crawlers "
        "in, which the strict consent profile reads as a refusal of AI training: "
        "{evidence}."),
    Reason.AIPREF_DISALLOWED: _W(
        "Content-Usage: train-ai=n",
        "IETF AI preference train-ai=n, in a header or in robots.txt.",
        "an IETF AI preference says no AI training (train-ai=n): {evidence}."),
    Reason.CONTENT_SIGNAL: _W(
        "Content-Signal: ai-train=no",
        "Cloudflare Content Signals in robots.txt: ai-train=no for our group (strict also "
        "use=immediate/reference, and a line before the first group).",
        "the site's robots.txt carries a Cloudflare Content Signal that refuses AI "
        "training: {evidence}. Origin files are read before the image is requested, so the "
        "image was never requested."),
    Reason.RSL_PROHIBITED: _W(
        "RSL licence",
        "An RSL licence (robots.txt License: or a Link header) does not license AI "
        "training for free, or could not be fetched (strict).",
        "an RSL licence for this URL does not license AI training without a licence "
        "token, payment or reporting we do not hold: {evidence}."),
    Reason.TDM_RESERVED: _W(
        "TDMRep reservation",
        "W3C TDMRep: tdm-reservation 1 in a header or tdmrep.json.",
        "text-and-data-mining rights are reserved (W3C TDMRep): {evidence}."),
    Reason.AITXT_DISALLOWED: _W(
        "ai.txt",
        "The site's /ai.txt disallows the path.",
        "the site's ai.txt disallows it: {evidence}."),
    Reason.X_ROBOTS_TAG: _W(
        "X-Robots-Tag header",
        "An X-Robots-Tag directive against AI use (noai, noimageai, ...).",
        "the image's response carried an X-Robots-Tag directive against AI use: "
        "{evidence}. Headers are read before the body, so no byte of the image was stored."),
    Reason.METADATA_PROHIBITED: _W(
        "Embedded metadata (IPTC/C2PA)",
        "IPTC plus:DataMining or C2PA training-mining in the file prohibits it.",
        "rights metadata embedded in the image prohibits AI/ML use: {evidence}. The image "
        "was read only to find this tag and was then discarded; nothing of it was written."),
    Reason.NO_OPT_IN: _W(
        "No opt-in found",
        "Opt-in profile: no explicit permission signal was found.",
        "this run downloads only images whose owners explicitly permit AI training "
        "(--consent opt-in), and no such permission was found: {evidence}."),
    Reason.HTTP_ERROR: _W(
        "HTTP error",
        "The server answered with an error status (4xx/5xx) instead of the image.",
        "the server did not serve the image: {evidence}."),
    Reason.TIMEOUT: _W(
        "Timeout",
        "No complete response within --timeout seconds.",
        "no complete response came within the time limit: {evidence}."),
    Reason.DNS_ERROR: _W(
        "DNS error",
        "The host name could not be resolved.",
        "the host name could not be resolved: {evidence}."),
    Reason.CONNECTION_ERROR: _W(
        "Connection error",
        "The connection was refused, reset or cut short.",
        "the connection failed or was cut off: {evidence}."),
    Reason.TLS_ERROR: _W(
        "TLS error",
        "The TLS handshake or certificate check failed.",
        "the secure (TLS) connection could not be set up: {evidence}."),
    Reason.TOO_LARGE: _W(
        "File too large",
        "The body is longer than --max-bytes.",
        "the file is larger than this run accepts, so the rest of it was not read: "
        "{evidence}."),
    Reason.TOO_MANY_REDIRECTS: _W(
        "Too many redirects",
        "More redirects than --max-redirects, or a redirect loop.",
        "it redirected too many times: {evidence}."),
    Reason.BLOCKED_ADDRESS: _W(
        "Private/reserved address",
        "The host resolves to a private or reserved network address, never contacted.",
        "the host is on a private or reserved network address, which consentfetch does not "
        "contact: {evidence}."),
    Reason.INVALID_URL: _W(
        "Invalid URL",
        "Not a usable http(s) URL (empty, unparseable or another scheme).",
        "it is not a usable http(s) URL: {evidence}."),
    Reason.HASH_MISMATCH: _W(
        "Hash mismatch",
        "--verify-hash: the body's digest is not the one the input row gives.",
        "the URL serves other bytes than the dataset's published digest, so they were not "
        "kept: {evidence}."),
    Reason.CRAWL_DELAY_TOO_LONG: _W(
        "Crawl-delay too long",
        "robots.txt asks for a longer Crawl-delay than --max-crawl-delay; not requested.",
        "the site's robots.txt asks for a longer wait between requests than this run "
        "accepts, and consentfetch never requests faster than a site asks, so the image was "
        "not requested: {evidence}."),
    Reason.DECODE_ERROR: _W(
        "Cannot decode image",
        "The file could not be decoded as an image.",
        "the file could not be read as an image: {evidence}."),
    Reason.IMAGE_TOO_SMALL: _W(
        "Image too small",
        "The image is smaller than --min-image-size.",
        "the image is smaller than this run's minimum size: {evidence}."),
    Reason.ASPECT_RATIO_TOO_LARGE: _W(
        "Aspect ratio too large",
        "The image is longer and thinner than --max-aspect-ratio.",
        "the image is too long and thin for this run: {evidence}."),
    Reason.IMAGE_TOO_LARGE: _W(
        "Too many pixels",
        "The image is too large to decode or encode within the run's limits "
        "(pixels, --max-decoded-bytes, the format's side limit).",
        "the image has more pixels than this run accepts (it was not decoded): "
        "{evidence}."),
})


def reason_wording(code: str | None) -> ReasonWording | None:
    """The wording of a reason code as stored in an audit row (None if unknown)."""
    try:
        return REASONS[Reason(code)] if code else None
    except ValueError:
        return None


def status_wording(code: str | None) -> StatusWording | None:
    """The wording of a status as stored in an audit row (None if unknown)."""
    try:
        return STATUSES[Status(code)] if code else None
    except ValueError:
        return None


def reason_label(code: str | None) -> str:
    """The short label of a reason code; ``Downloaded`` for none, the code if unknown."""
    if code is None:
        return "Downloaded"
    wording = reason_wording(code)
    return wording.label if wording else code
