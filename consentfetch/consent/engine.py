"""The consent engine: every opt-out signal, in order, as pure decisions.

The pipeline asks four questions of a URL, cheapest first, and stops at the
first denial (ARCHITECTURE.md §6):

1. :meth:`ConsentEngine.check_url`: user-supplied opt-out list (no network).
2. :meth:`ConsentEngine.check_origin`, for every request hop: robots.txt,
   AI-crawler inference (strict), robots.txt ``Content-Usage``, robots.txt
   ``Content-Signal`` (Cloudflare Content Signals), ai.txt,
   tdmrep.json (strict and opt-in; in standard the image's own header may
   supersede the file, so the file is weighed with the headers).
3. :meth:`ConsentEngine.check_headers`, before the body is read:
   X-Robots-Tag, ``tdm-reservation``, ``Content-Usage``.
4. :meth:`ConsentEngine.check_body`, before anything is written: the opt-out
   list by sha256, IPTC ``plus:DataMining``, C2PA training-mining.

Under ``--consent opt-in`` every stage also notes explicit permissions in a
:class:`Permits`, and :meth:`ConsentEngine.check_permission` denies a URL that
collected none. Nothing here does I/O: the engine is handed parsed files,
header lines and bytes, and returns a :class:`Denial` or ``None``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from yarl import URL

from . import evidence as proof
from .aipref import check_content_usage_header, check_usage_rules, compile_usage_rules
from .contentsignal import check_content_signals, read_content_signals
from .crawlers import ai_crawler_blocked, load_ai_crawler_tokens
from .decision import Denial, Reason, Signal
from .headers import check_x_robots_tag
from .metadata import C2PA_AVAILABLE, read_c2pa_training, read_iptc_data_mining
from .origins import FileKind, FileOutcome, Licence, OriginPolicy
from .registry import ConsentList
from .rsl import evaluate, licence_urls, rsl_link_urls
from .tdmrep import UNSET, TdmVerdict, check_tdm_headers

logger = logging.getLogger(__name__)

#: licence URLs read per robots.txt selection or per response, at most: a site
#: cannot make us fetch more for one URL (the first ones, in the order written)
MAX_LICENCES = 8



class HeaderLines(Protocol):
    """Response headers: aiohttp's CIMultiDictProxy, or any multidict."""

    def getall(self, key: str, default: list[str]) -> list[str]: ...


@dataclass(slots=True)
class Permits:
    """Explicit permissions found for one URL, by stage (for ``--consent opt-in``)."""

    by_stage: dict[str, str] = field(default_factory=dict)

    def note(self, stage: str, evidence: str | None) -> None:
        if evidence:
            self.by_stage.setdefault(stage, evidence)

    def any(self) -> str | None:
        return next(iter(self.by_stage.values()), None)


class ConsentEngine:
    """Consent decisions for one run's profile, ignored checks and lists."""

    def __init__(self, *, token: str, profile: str = "strict", ignore: Sequence[str] = (),
                 opt_out: ConsentList | None = None, opt_in: ConsentList | None = None,
                 ai_tokens: Sequence[str] | None = None) -> None:
        self.token = token
        self.profile = profile
        self.strict = profile in ("strict", "opt-in")  # opt-in reads every signal strictly
        self.opt_in_required = profile == "opt-in"
        self.ignore = frozenset(ignore)
        self.opt_out = opt_out
        self.opt_in = opt_in
        self.ai_tokens = tuple(ai_tokens) if ai_tokens is not None else load_ai_crawler_tokens()

    def on(self, check: str) -> bool:
        return check not in self.ignore

    @property
    def c2pa_active(self) -> bool:
        return self.on("c2pa") and C2PA_AVAILABLE

    # -- 1. before any request -------------------------------------------------------
    def check_url(self, url: str, permits: Permits) -> Denial | None:
        if self.on("registry") and self.opt_out is not None:
            hit = self.opt_out.match_url(url)
            if hit is not None:
                return Denial(Reason.REGISTRY_OPT_OUT, proof.list_hit(hit))
        if self.opt_in is not None:
            hit = self.opt_in.match_url(url)
            permits.note("list", hit.evidence if hit else None)
        return None

    # -- 2. the origin of every hop ----------------------------------------------------
    def check_origin(self, policy: OriginPolicy, url: URL, permits: Permits,
                     licences: Sequence[Licence] = ()) -> Denial | None:
        """Origin files' verdict on ``url``; permissions are those of the last hop.

        ``licences``: the RSL licences :meth:`robots_licence_urls` named, fetched."""
        permits.by_stage.pop("origin", None)
        return (self._robots(policy, url, permits) or self._ai_crawlers(policy, url)
                or self._robots_usage(policy, url, permits)
                or self._content_signal(policy, url, permits)
                or self._rsl(licences, url, permits, stage="origin")
                or self._ai_txt(policy, url)
                or self._tdmrep_file(policy, url, permits))

    # -- RSL licences (fetched by the caller, between the phases) ------------------------
    def robots_licence_urls(self, policy: OriginPolicy | None) -> list[str]:
        """The licence URLs robots.txt's ``License`` lines name for our token."""
        if not self.on("rsl") or policy is None or policy.robots is None:
            return []
        lines = policy.robots.licences(self.token, strict=self.strict)
        return licence_urls([line.value for line in lines])[:MAX_LICENCES]

    def link_licence_urls(self, url: URL, headers: HeaderLines) -> list[str]:
        """The RSL licence URLs of the response's ``Link`` headers."""
        if not self.on("rsl"):
            return []
        return rsl_link_urls(headers.getall("Link", []), str(url))[:MAX_LICENCES]

    def _rsl(self, licences: Sequence[Licence], url: URL, permits: Permits, *,
             stage: str) -> Denial | None:
        from_link = stage == "headers"
        named_by = "a Link header" if from_link else "robots.txt"
        for licence in licences if self.on("rsl") else ():
            if licence.document is None:
                if self.strict:
                    return Denial(Reason.RSL_PROHIBITED,
                                  proof.rsl_unreachable(licence.record, url, named_by))
                continue
            decision = evaluate(licence.document, str(url), from_link=from_link)
            if decision.denied is not None:
                return Denial(Reason.RSL_PROHIBITED, proof.rsl_licence(
                    licence.record, url, decision.denied, named_by))
            if decision.permitted is not None:
                permits.note(stage, proof.rsl_licence(licence.record, url,
                                                      decision.permitted, named_by).text)
        return None

    def _robots(self, policy: OriginPolicy, url: URL, permits: Permits) -> Denial | None:
        if not self.on("robots_txt"):
            return None
        record = policy.robots_file
        if policy.unreached is not None:
            # No connection to the host was ever made (DNS, blocked address,
            # refused, TLS handshake): the site said nothing, and the image could
            # not be fetched either, so the URL fails with that reason.
            return Denial(policy.unreached.reason,
                          proof.origin_unreached(policy.unreached.evidence, record, url))
        if policy.robots is None:
            return Denial(Reason.ROBOTS_UNREACHABLE, proof.robots_unreachable(record, url))
        verdict = policy.robots.check(str(url), self.token)
        if not verdict.allowed:
            return Denial(Reason.ROBOTS_DISALLOWED,
                          proof.rule_denial(Signal.ROBOTS_TXT, record, url, verdict))
        if policy.robots.names_token(self.token):
            permits.note("origin", f"{record.url if record else 'robots.txt'} has a group "
                                   f"for user-agent {self.token}")
        return None

    def _ai_crawlers(self, policy: OriginPolicy, url: URL) -> Denial | None:
        if not (self.strict and self.on("ai_crawlers") and self.on("robots_txt")) \
                or policy.robots is None:
            return None
        blocked = ai_crawler_blocked(policy.robots, str(url), self.token, self.ai_tokens)
        if blocked is None:
            return None
        token, verdict = blocked
        return Denial(Reason.AI_CRAWLER_BLOCKED,
                      proof.ai_crawler(policy.robots_file, url, token, verdict))

    def _robots_usage(self, policy: OriginPolicy, url: URL, permits: Permits) -> Denial | None:
        if not self.on("content_usage") or policy.robots is None:
            return None
        verdict = check_usage_rules(policy.robots.derived(self.token, compile_usage_rules),
                                    str(url), strict=self.strict)
        if not (verdict.denied or verdict.allowed):
            return None
        evidence = proof.robots_usage(policy.robots_file, url, verdict)
        if verdict.denied:
            return Denial(Reason.AIPREF_DISALLOWED, evidence)
        permits.note("origin", evidence.text)
        return None

    def _content_signal(self, policy: OriginPolicy, url: URL,
                        permits: Permits) -> Denial | None:
        robots = policy.robots
        if not self.on("content_signal") or robots is None:
            return None
        preamble = robots.derived_preamble(read_content_signals) if self.strict else ()
        verdict = check_content_signals(robots.derived_records(self.token, read_content_signals),
                                        preamble, strict=self.strict)
        if not (verdict.denied or verdict.allowed):
            return None
        evidence = proof.content_signal(policy.robots_file, url, verdict,
                                        robots.selected_by(self.token))
        if verdict.denied:
            return Denial(Reason.CONTENT_SIGNAL, evidence)
        permits.note("origin", evidence.text)
        return None

    def _ai_txt(self, policy: OriginPolicy, url: URL) -> Denial | None:
        if not self.on("ai_txt"):
            return None
        record = policy.files.get(FileKind.AI_TXT)
        if record is not None and record.outcome == FileOutcome.UNREACHABLE:
            return Denial(Reason.AITXT_DISALLOWED, proof.file_unreachable(
                Signal.AI_TXT, record, url, "read as disallowing everything (fail safe)"))
        if policy.ai_txt is None:
            return None
        verdict = policy.ai_txt.check(str(url), self.token)
        if verdict.allowed:
            return None
        return Denial(Reason.AITXT_DISALLOWED,
                      proof.rule_denial(Signal.AI_TXT, record, url, verdict))

    def _tdm_file_verdict(self, policy: OriginPolicy | None, url: URL) -> TdmVerdict:
        if policy is None or not self.on("tdmrep"):
            return UNSET
        record = policy.files.get(FileKind.TDMREP_JSON)
        if record is not None and record.outcome == FileOutcome.UNREACHABLE:
            return TdmVerdict(1, None, f"the file {record.error}: what it says is unknown, "
                                       "so rights are taken as reserved (fail safe)")
        if policy.tdmrep is None:
            return UNSET
        return policy.tdmrep.check(url.raw_path_qs)

    def _tdmrep_file(self, policy: OriginPolicy, url: URL, permits: Permits) -> Denial | None:
        verdict = self._tdm_file_verdict(policy, url)
        if verdict.reservation is None:
            return None
        evidence = proof.tdm_file(policy.files.get(FileKind.TDMREP_JSON), url, verdict)
        if verdict.reservation == 0:
            permits.note("origin", evidence.text)
        if self.strict and verdict.reservation == 1:
            return Denial(Reason.TDM_RESERVED, evidence)
        return None  # standard: weighed against the image's own header

    # -- 3. response headers, before the body ------------------------------------------
    def check_headers(self, policy: OriginPolicy | None, url: URL, headers: HeaderLines,
                      permits: Permits, licences: Sequence[Licence] = ()) -> Denial | None:
        """``licences``: the RSL licences :meth:`link_licence_urls` named, fetched."""
        return self._header_lines(policy, url, headers, permits) \
            or self._rsl(licences, url, permits, stage="headers")

    def _header_lines(self, policy: OriginPolicy | None, url: URL, headers: HeaderLines,
                      permits: Permits) -> Denial | None:
        if self.on("x_robots_tag"):
            xrt = check_x_robots_tag(headers.getall("X-Robots-Tag", []), self.token,
                                     strict=self.strict)
            if xrt.denied:
                return Denial(Reason.X_ROBOTS_TAG, proof.x_robots_tag(xrt))
        denial = self._tdm_headers(policy, url, headers, permits)
        if denial is not None or not self.on("content_usage"):
            return denial
        usage = check_content_usage_header(headers.getall("Content-Usage", []),
                                           strict=self.strict)
        if usage.denied:
            return Denial(Reason.AIPREF_DISALLOWED, proof.header(usage.evidence or "Content-Usage"))
        if usage.allowed:
            permits.note("headers", usage.evidence)
        return None

    def _tdm_headers(self, policy: OriginPolicy | None, url: URL, headers: HeaderLines,
                     permits: Permits) -> Denial | None:
        if not self.on("tdmrep"):
            return None
        header = check_tdm_headers(headers.getall("tdm-reservation", []),
                                   headers.getall("tdm-policy", []))
        # strict: a file reservation already denied at the origin stage, so only
        # the header can add one here. standard: the header, when set, supersedes
        # the file (TDMRep); otherwise the file decides.
        if self.strict or header.reservation is not None:
            if header.reservation == 1:
                return Denial(Reason.TDM_RESERVED,
                              proof.header(header.evidence or "tdm-reservation: 1"))
            if header.reservation == 0:
                permits.note("headers", header.evidence)
            return None
        file = self._tdm_file_verdict(policy, url)
        if file.reservation == 1:
            record = policy.files.get(FileKind.TDMREP_JSON) if policy else None
            return Denial(Reason.TDM_RESERVED, proof.tdm_file(record, url, file))
        return None

    # -- 4. the body, before anything is written ---------------------------------------
    def check_body(self, body: bytes, sha256: str, mime_type: str | None,
                   permits: Permits) -> Denial | None:
        """Opt-out list by content hash, then embedded metadata. CPU work: run in a thread."""
        denial = self.check_digest(sha256, permits)
        if denial is not None:
            return denial
        if self.on("iptc"):
            iptc = read_iptc_data_mining(body)
            if iptc.denied:
                return Denial(Reason.METADATA_PROHIBITED,
                              proof.metadata(Signal.XMP, iptc, "plus:DataMining"))
            if iptc.allowed:
                permits.note("body", iptc.evidence)
        if self.c2pa_active:
            c2pa = read_c2pa_training(body, mime_type)
            if c2pa is not None and c2pa.denied:
                return Denial(Reason.METADATA_PROHIBITED,
                              proof.metadata(Signal.C2PA, c2pa, "C2PA"))
            if c2pa is not None and c2pa.allowed:
                permits.note("body", c2pa.evidence)
        return None

    def check_digest(self, sha256: str, permits: Permits) -> Denial | None:
        """The lists' verdict on a body's sha256 (no body needed: a recheck passes the
        stored digest)."""
        if self.on("registry") and self.opt_out is not None and self.opt_out.has_sha256:
            hit = self.opt_out.match_sha256(sha256)
            if hit is not None:
                return Denial(Reason.REGISTRY_OPT_OUT, proof.list_hit(hit))
        if self.opt_in is not None and self.opt_in.has_sha256:
            hit = self.opt_in.match_sha256(sha256)
            permits.note("list", hit.evidence if hit else None)
        return None

    # -- 5. opt-in: was anything explicitly permitted? --------------------------------
    def check_permission(self, permits: Permits) -> Denial | None:
        if not self.opt_in_required or permits.any():
            return None
        return Denial(Reason.NO_OPT_IN, proof.no_opt_in(self.token))

    # -- for run.json --------------------------------------------------------------------
    def checks_performed(self, all_checks: Sequence[str]) -> list[str]:
        performed = [c for c in all_checks if self.on(c)]
        if not self.strict and "ai_crawlers" in performed:
            performed.remove("ai_crawlers")  # inference is a strict-profile reading
        if not C2PA_AVAILABLE and "c2pa" in performed:
            performed.remove("c2pa")
        if self.opt_out is None and "registry" in performed:
            performed.remove("registry")
        return performed
