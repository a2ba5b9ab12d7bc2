"""The consent engine itself, table-driven, with plain values and no network.

Each vector is an origin's files (as fetch outcomes), a URL, the response's
consent headers and the body, and the reason expected under each profile
(strict, standard, opt-in; ``None`` = downloaded). :func:`decide` asks the
engine's questions in the pipeline's order and stops at the first denial.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from multidict import CIMultiDict
from PIL import Image
from yarl import URL

from consentfetch.consent.engine import ConsentEngine, Permits
from consentfetch.consent.origins import (
    FileKind,
    OriginPolicy,
    ai_txt_from_fetch,
    robots_from_fetch,
    tdmrep_from_fetch,
)

from .conftest import Answer

TOKEN = "mybot"
ORIGIN = "https://example.com:443"
PROFILES = ("strict", "standard", "opt-in")




def ok(text: str) -> Answer:
    return Answer(200, text.encode())


class _Broken:
    evidence = "ClientPayloadError: Response payload is not completed"


BROKEN = Answer(200, b"", _Broken())  # type: ignore[arg-type]
ALLOW = "User-agent: *\nAllow: /\n"


def policy(robots: Answer, ai_txt: Answer | None = None,
           tdmrep: Answer | None = None) -> OriginPolicy:
    """The policy an origin's three fetches make, as OriginPolicies builds it."""
    parsed, files = None, {}
    parsed, files[FileKind.ROBOTS_TXT] = robots_from_fetch(
        ORIGIN, "https://example.com/robots.txt", robots)
    unreached = robots.error if not robots.reached else None
    if parsed is None:
        return OriginPolicy(ORIGIN, None, 0.0, files, unreached)
    ai, files[FileKind.AI_TXT] = ai_txt_from_fetch(
        ORIGIN, "https://example.com/ai.txt", ai_txt or Answer(404))
    tdm, files[FileKind.TDMREP_JSON] = tdmrep_from_fetch(
        ORIGIN, "https://example.com/.well-known/tdmrep.json", tdmrep or Answer(404))
    return OriginPolicy(ORIGIN, parsed, 0.0, files, None, ai, tdm)


def xmp_jpeg(value: str) -> bytes:
    packet = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/" '
        f'plus:DataMining="http://ns.useplus.org/ldf/vocab/{value}"/>'
        "</rdf:RDF></x:xmpmeta>").encode()
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "JPEG", xmp=packet)
    return out.getvalue()


def decide(profile: str, origin: OriginPolicy, url: str = "https://example.com/a.jpg",
           headers: list[tuple[str, str]] = (), body: bytes = b"",  # type: ignore[assignment]
           ignore: tuple[str, ...] = ()) -> str | None:
    """The reason the engine gives (or None), asking in the pipeline's order."""
    engine = ConsentEngine(token=TOKEN, profile=profile, ignore=ignore)
    permits = Permits()
    target = URL(url)
    denial = (engine.check_url(url, permits)
              or engine.check_origin(origin, target, permits)
              or engine.check_headers(origin, target, CIMultiDict(headers), permits)
              or engine.check_body(body, "0" * 64, "image/jpeg", permits)
              or engine.check_permission(permits))
    return str(denial.reason) if denial is not None else None


R, S = "robots_disallowed", None  # shorthands: a row reads strict, standard, opt-in
VECTORS: list[tuple[str, dict[str, Any], tuple[str | None, str | None, str | None]]] = [
    ("robots.txt 404: no restrictions",
     {"origin": policy(Answer(404))}, (None, None, "no_opt_in")),
    ("robots.txt allows all",
     {"origin": policy(ok(ALLOW))}, (None, None, "no_opt_in")),
    ("Disallow covers the path",
     {"origin": policy(ok("User-agent: *\nDisallow: /private/\n")),
      "url": "https://example.com/private/a.jpg"}, (R, R, R)),
    ("Allow longer than Disallow wins",
     {"origin": policy(ok("User-agent: *\nDisallow: /img/\nAllow: /img/public/\n")),
      "url": "https://example.com/img/public/a.jpg"}, (None, None, "no_opt_in")),
    ("robots.txt 503: complete disallow",
     {"origin": policy(Answer(503))},
     ("robots_unreachable", "robots_unreachable", "robots_unreachable")),
    ("robots.txt 429: complete disallow",
     {"origin": policy(Answer(429))},
     ("robots_unreachable", "robots_unreachable", "robots_unreachable")),
    ("robots.txt cut by the connection: complete disallow",
     {"origin": policy(BROKEN)},
     ("robots_unreachable", "robots_unreachable", "robots_unreachable")),
    ("a half byte-order mark does not hide the group",
     {"origin": policy(Answer(200, b"\xef\xbbUser-agent: *\nDisallow: /\n"))}, (R, R, R)),
    ("AI crawler blocked, others allowed: strict inference",
     {"origin": policy(ok("User-agent: GPTBot\nDisallow: /\n\nUser-agent: *\nAllow: /\n"))},
     ("ai_crawler_blocked", None, "ai_crawler_blocked")),
    ("AI crawler inference turned off",
     {"origin": policy(ok("User-agent: GPTBot\nDisallow: /\n\nUser-agent: *\nAllow: /\n")),
      "ignore": ("ai_crawlers",)}, (None, None, "no_opt_in")),
    ("a group naming our token is spoken to us: no inference, and a permission",
     {"origin": policy(ok("User-agent: GPTBot\nDisallow: /\n\nUser-agent: mybot\n"
                          "Allow: /\n"))}, (None, None, None)),
    ("our group allows although * disallows",
     {"origin": policy(ok("User-agent: *\nDisallow: /\n\nUser-agent: mybot\nDisallow:\n"))},
     (None, None, None)),
    ("robots.txt ignored",
     {"origin": policy(ok("User-agent: *\nDisallow: /\n")), "ignore": ("robots_txt",)},
     (None, None, "no_opt_in")),
    ("Content-Usage train-ai=n in the group",
     {"origin": policy(ok("User-agent: *\nAllow: /\nContent-Usage: train-ai=n\n"))},
     ("aipref_disallowed", "aipref_disallowed", "aipref_disallowed")),
    ("Content-Usage with a path that does not match",
     {"origin": policy(ok("User-agent: *\nAllow: /\nContent-Usage: /art/ train-ai=n\n"))},
     (None, None, "no_opt_in")),
    ("Content-Usage train-ai=y: a permission",
     {"origin": policy(ok("User-agent: *\nAllow: /\nContent-Usage: train-ai=y\n"))},
     (None, None, None)),
    ("Content-Signal ai-train=no in the * group",
     {"origin": policy(ok("User-Agent: *\nContent-signal: search=yes, ai-train=no\nAllow: /\n"))},
     ("content_signal", "content_signal", "content_signal")),
    ("Content-Signal search=yes only: no signal",
     {"origin": policy(ok("User-agent: *\nContent-Signal: search=yes\nAllow: /\n"))},
     (None, None, "no_opt_in")),
    ("Content-Signal in *, our group allows: not inherited, and our group is a permission",
     {"origin": policy(ok("User-agent: *\nContent-Signal: ai-train=no\nAllow: /\n\n"
                          "User-agent: mybot\nAllow: /\n"))}, (None, None, None)),
    ("Content-Signal use=reference in our group: strict only",
     {"origin": policy(ok("User-agent: mybot\nContent-Signal: use=reference\nAllow: /\n"))},
     ("content_signal", None, "content_signal")),
    ("Content-Signal before the first group: strict only",
     {"origin": policy(ok("Content-Signal: ai-train=no\nUser-agent: *\nAllow: /\n"))},
     ("content_signal", None, "content_signal")),
    ("Content-Signal ai-train=yes: a permission",
     {"origin": policy(ok("User-agent: *\nContent-Signal: ai-train=yes\nAllow: /\n"))},
     (None, None, None)),
    ("Content-Usage train-ai=y and Content-Signal ai-train=no: the refusal wins",
     {"origin": policy(ok("User-agent: *\nContent-Usage: train-ai=y\n"
                          "Content-Signal: ai-train=no\n"))},
     ("content_signal", "content_signal", "content_signal")),
    ("Content-Usage train-ai=n and Content-Signal ai-train=yes: the refusal wins",
     {"origin": policy(ok("User-agent: *\nContent-Usage: train-ai=n\n"
                          "Content-Signal: ai-train=yes\n"))},
     ("aipref_disallowed", "aipref_disallowed", "aipref_disallowed")),
    ("Content-Signal ai-train=no but the path is disallowed: robots.txt first",
     {"origin": policy(ok("User-agent: *\nContent-Signal: ai-train=no\nDisallow: /\n"))},
     (R, R, R)),
    ("Content-Signal ignored",
     {"origin": policy(ok("User-agent: *\nContent-Signal: ai-train=no\nAllow: /\n")),
      "ignore": ("content_signal",)}, (None, None, "no_opt_in")),
    ("Content-Signal read although Content-Usage is ignored",
     {"origin": policy(ok("User-agent: *\nContent-Signal: ai-train=no\nAllow: /\n")),
      "ignore": ("content_usage",)},
     ("content_signal", "content_signal", "content_signal")),
    ("Content-Signal decides before ai.txt",
     {"origin": policy(ok("User-agent: *\nContent-Signal: ai-train=no\n"),
                       ai_txt=ok("User-agent: *\nDisallow: /\n"))},
     ("content_signal", "content_signal", "content_signal")),
    ("ai.txt disallows the path",
     {"origin": policy(ok(ALLOW), ai_txt=ok("User-agent: *\nDisallow: *.jpg\n"))},
     ("aitxt_disallowed", "aitxt_disallowed", "aitxt_disallowed")),
    ("ai.txt cut by the connection: fail safe",
     {"origin": policy(ok(ALLOW), ai_txt=BROKEN)},
     ("aitxt_disallowed", "aitxt_disallowed", "aitxt_disallowed")),
    ("ai.txt 500: no signal",
     {"origin": policy(ok(ALLOW), ai_txt=Answer(500))}, (None, None, "no_opt_in")),
    ("tdmrep.json reserves the path",
     {"origin": policy(ok(ALLOW), tdmrep=ok('[{"location": "/*", "tdm-reservation": 1}]'))},
     ("tdm_reserved", "tdm_reserved", "tdm_reserved")),
    ("tdmrep.json reserves, the image's header says 0: standard lets the header decide",
     {"origin": policy(ok(ALLOW), tdmrep=ok('[{"location": "/*", "tdm-reservation": 1}]')),
      "headers": [("tdm-reservation", "0")]},
     ("tdm_reserved", None, "tdm_reserved")),
    ("tdmrep.json cut by the connection: rights taken as reserved",
     {"origin": policy(ok(ALLOW), tdmrep=BROKEN)},
     ("tdm_reserved", "tdm_reserved", "tdm_reserved")),
    ("tdmrep.json not JSON: not implemented",
     {"origin": policy(ok(ALLOW), tdmrep=ok("<html>"))}, (None, None, "no_opt_in")),
    ("X-Robots-Tag: noai",
     {"origin": policy(ok(ALLOW)), "headers": [("X-Robots-Tag", "noai")]},
     ("x_robots_tag", "x_robots_tag", "x_robots_tag")),
    ("X-Robots-Tag: NoImageAI, two header lines",
     {"origin": policy(ok(ALLOW)),
      "headers": [("X-Robots-Tag", "max-image-preview:large"), ("X-Robots-Tag", "NoImageAI")]},
     ("x_robots_tag", "x_robots_tag", "x_robots_tag")),
    ("X-Robots-Tag: noindex: strict only",
     {"origin": policy(ok(ALLOW)), "headers": [("X-Robots-Tag", "noindex")]},
     ("x_robots_tag", None, "x_robots_tag")),
    ("X-Robots-Tag for another bot",
     {"origin": policy(ok(ALLOW)), "headers": [("X-Robots-Tag", "otherbot: noai")]},
     (None, None, "no_opt_in")),
    ("X-Robots-Tag for our token after other rules",
     {"origin": policy(ok(ALLOW)), "headers": [("X-Robots-Tag", "noindex, mybot: noai")]},
     ("x_robots_tag", "x_robots_tag", "x_robots_tag")),
    ("X-Robots-Tag ignored",
     {"origin": policy(ok(ALLOW)), "headers": [("X-Robots-Tag", "noai")],
      "ignore": ("x_robots_tag",)}, (None, None, "no_opt_in")),
    ("tdm-reservation: 1 header",
     {"origin": policy(ok(ALLOW)), "headers": [("tdm-reservation", "1")]},
     ("tdm_reserved", "tdm_reserved", "tdm_reserved")),
    ("tdm-reservation: 0 header: a permission",
     {"origin": policy(ok(ALLOW)), "headers": [("tdm-reservation", "0")]},
     (None, None, None)),
    ("Content-Usage: train-ai=n header",
     {"origin": policy(ok(ALLOW)), "headers": [("Content-Usage", "train-ai=n")]},
     ("aipref_disallowed", "aipref_disallowed", "aipref_disallowed")),
    ("Content-Usage: quoted value is unknown",
     {"origin": policy(ok(ALLOW)), "headers": [("Content-Usage", 'train-ai="n"')]},
     (None, None, "no_opt_in")),
    ("Content-Usage: train-ai=y header: a permission",
     {"origin": policy(ok(ALLOW)), "headers": [("Content-Usage", "train-ai=y")]},
     (None, None, None)),
    ("IPTC DMI-PROHIBITED-AIMLTRAINING in the body",
     {"origin": policy(ok(ALLOW)), "body": xmp_jpeg("DMI-PROHIBITED-AIMLTRAINING")},
     ("metadata_prohibited", "metadata_prohibited", "metadata_prohibited")),
    ("IPTC DMI-ALLOWED: a permission",
     {"origin": policy(ok(ALLOW)), "body": xmp_jpeg("DMI-ALLOWED")}, (None, None, None)),
    ("IPTC ignored",
     {"origin": policy(ok(ALLOW)), "body": xmp_jpeg("DMI-PROHIBITED"), "ignore": ("iptc",)},
     (None, None, "no_opt_in")),
    ("the origin stage stops before the headers are weighed",
     {"origin": policy(ok("User-agent: *\nDisallow: /\n")),
      "headers": [("X-Robots-Tag", "noai")]}, (R, R, R)),
]


@pytest.mark.parametrize(("name", "case", "expected"), VECTORS, ids=[v[0] for v in VECTORS])
@pytest.mark.parametrize("profile", PROFILES)
def test_engine(name: str, case: dict[str, Any], expected: tuple, profile: str) -> None:
    assert decide(profile, **case) == expected[PROFILES.index(profile)], name


def test_content_signal_evidence() -> None:
    robots = "# Content-Signal: ai-train=yes\nUser-Agent: *\nContent-signal: search=yes, ai-train=no\n"
    engine = ConsentEngine(token=TOKEN, profile="standard")
    denial = engine.check_origin(policy(ok(robots)), URL("https://example.com/a.jpg"), Permits())
    assert denial is not None and str(denial.reason) == "content_signal"
    proof = denial.proof
    assert (str(proof.signal), proof.line, proof.rule, proof.agent) == (
        "robots.txt", 3, "Content-signal: search=yes, ai-train=no", "*")
    assert proof.file == "https://example.com/robots.txt" and proof.file_sha256
    assert "line 3" in proof.text and "ai-train=no" in proof.text


def test_content_signal_before_any_group_evidence() -> None:
    engine = ConsentEngine(token=TOKEN, profile="strict")
    denial = engine.check_origin(policy(ok("Content-Signal: ai-train=no\nUser-agent: *\n")),
                                 URL("https://example.com/a.jpg"), Permits())
    assert denial is not None and denial.proof.line == 1 and denial.proof.agent is None
    assert "before the first User-agent line" in denial.proof.text
