"""``consentfetch demo``: a real run against a small bundled site on loopback.

    consentfetch demo [OUTPUT_DIR]

Six origins stand in for the open web: a photo gallery whose robots.txt
keeps crawlers out of /private/; an artist who marks some works
``X-Robots-Tag: noai`` / ``noimageai`` and embeds IPTC "no AI training" in
others; a server whose robots.txt answers 503 (so, per RFC 9309, nothing of it
may be fetched); and a publisher who uses the newer signals: TDMRep, ai.txt
and the IETF ``Content-Usage`` preference; and a newsroom behind Cloudflare whose
managed robots.txt says ``Content-Signal: search=yes, ai-train=no``; and a
stock-photo agency whose robots.txt names an RSL licence that permits search
but prohibits AI training. A few
broken rows (a missing image, a corrupt file, an ftp: URL) show how failures
are audited.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ..audit import read_audit
from ..layout import RUN_FILE
from ..run import Report, fetch_shards
from ..testsite import LocalSite, Resource, make_image, running_site
from .common import EXIT_OK, Handler, usage_error
from .download import print_report

logger = logging.getLogger(__name__)

GALLERY, ARTIST, BROKEN, PUBLISHER, NEWSROOM, AGENCY = 0, 1, 2, 3, 4, 5
DEMO_HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7")
# An RSL 1.0 licence: search is licensed, AI training is not.
_RSL_LICENCE = (
    '<rsl xmlns="https://rslstandard.org/rsl">\n'
    '  <content url="/">\n'
    '    <license>\n'
    '      <permits type="usage">search</permits>\n'
    '      <prohibits type="usage">ai-train</prohibits>\n'
    '    </license>\n'
    '  </content>\n'
    '</rsl>\n')
# A Cloudflare-managed robots.txt, shortened: the comment block explains the signals
# (and itself says "content-signal = no"); the line in the "*" group is what counts.
_CONTENT_SIGNAL_ROBOTS = (
    "# As a condition of accessing this website, you agree to abide by the\n"
    "# following content signals:\n"
    "# (b) If a content-signal = no, you may not collect content for the\n"
    "# corresponding use.\n"
    "# ai-train: training or fine-tuning AI models.\n"
    "User-Agent: *\nContent-Signal: search=yes, ai-train=no\nAllow: /\n")
_IPTC_PROHIBITED = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/" plus:DataMining='
    b'"http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING"/></rdf:RDF></x:xmpmeta>')


def add_commands(subparsers: Any) -> dict[str, Handler]:
    """Add ``demo`` to ``subparsers``; returns {"demo": handler}."""
    p = subparsers.add_parser("demo", help="run against a bundled local site and show the audit")
    p.add_argument("output_dir", nargs="?", default="consentfetch-demo")
    return {"demo": cmd_demo}


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo; print what happened and why."""
    refusal = _not_for_the_demo(Path(args.output_dir))
    if refusal:
        return usage_error(refusal)
    report = run_demo(args.output_dir, announce=print)
    print_report(report)
    print("\nwhy some URLs were not downloaded (one example per reason):")
    for row in reason_examples(args.output_dir):
        print(f"  {row['url']}\n    {row['reason']}: {row['evidence']}")
    last = report.shards_written + report.shards_skipped - 1
    print(f"\nread the shards with webdataset: {args.output_dir}/{{00000..{last:05d}}}.tar\n"
          f"read the audit in Python: consentfetch.read_audit({args.output_dir!r})")
    return EXIT_OK


_DEMO_INPUT = "demo_urls.parquet"


def _not_for_the_demo(folder: Path) -> str | None:
    """Why the demo must not write into ``folder`` (it replaces what is there), or None.

    A new or empty folder, or one an earlier demo wrote, is fine; anything else
    (a real run above all) is refused, never deleted.
    """
    if not folder.exists():
        return None
    if not folder.is_dir():
        return f"{folder} is a file, not a folder: give the demo a new folder"
    if not any(folder.iterdir()):
        return None
    try:
        run = json.loads((folder / RUN_FILE).read_text())
        if Path(str(run.get("input", ""))).name == _DEMO_INPUT:
            return None
    except (OSError, ValueError, AttributeError):
        pass
    return (f"{folder} is not empty and holds no earlier demo run; the demo replaces what "
            "is in its folder, so it will not touch this one: give it a new folder, e.g. "
            "`consentfetch demo consentfetch-demo-2`")


def _with_xmp(jpeg: bytes, packet: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(out, "JPEG", quality=90, xmp=packet)
    return out.getvalue()


def populate(site: LocalSite) -> list[dict[str, str]]:
    """Put the demo content on ``site``; return the URL list rows."""
    rows: list[dict[str, str]] = []

    def add(host: int, path: str, resource: Resource | bytes | None, caption: str) -> None:
        url = site.put(host, path, resource) if resource is not None else site.url(host, path)
        rows.append({"url": url, "caption": caption})

    site.put(GALLERY, "/robots.txt", "User-agent: *\nDisallow: /private/\n")
    for i in range(12):
        add(GALLERY, f"/photos/{i}.jpg", make_image(640, 480, seed=i), f"gallery photo {i}")
    for i in range(4):
        add(GALLERY, f"/private/{i}.jpg", make_image(640, 480, seed=50 + i), f"private {i}")

    site.put(ARTIST, "/robots.txt", "User-agent: *\nAllow: /\n")
    for i in range(8):
        headers: dict[str, str] = {}
        if i % 4 == 1:
            headers = {"X-Robots-Tag": "noai"}
        elif i % 4 == 3:
            headers = {"X-Robots-Tag": "max-image-preview:large, NoImageAI"}
        fmt = "png" if i % 2 else "jpg"
        body = make_image(500, 700, fmt, seed=100 + i, alpha=fmt == "png")
        add(ARTIST, f"/works/{i}.{fmt}", Resource(body, headers=headers), f"artwork {i}")
    for i in range(2):
        body = _with_xmp(make_image(400, 400, seed=150 + i), _IPTC_PROHIBITED)
        add(ARTIST, f"/works/tagged-{i}.jpg", body, f"artwork with IPTC opt-out {i}")

    site.put(BROKEN, "/robots.txt", Resource(b"busy", status=503))
    for i in range(3):
        add(BROKEN, f"/img/{i}.jpg", make_image(300, 300, seed=200 + i), f"broken-site {i}")

    site.put(PUBLISHER, "/robots.txt",
             "User-agent: *\nAllow: /\nContent-Usage: /essays/ train-ai=n\n")
    site.put(PUBLISHER, "/ai.txt", "User-agent: *\nDisallow: *.png\n")
    site.put(PUBLISHER, "/.well-known/tdmrep.json",
             '[{"location": "/reserved/*", "tdm-reservation": 1, '
             '"tdm-policy": "https://publisher.example/tdm-policy.json"}]')
    add(PUBLISHER, "/news/a.jpg", make_image(600, 400, seed=300), "news photo")
    add(PUBLISHER, "/reserved/b.jpg", make_image(600, 400, seed=301), "reserved (TDMRep)")
    add(PUBLISHER, "/essays/c.jpg", make_image(600, 400, seed=302), "essay (Content-Usage)")
    add(PUBLISHER, "/charts/d.png", make_image(300, 300, "png", seed=303), "chart (ai.txt)")
    add(PUBLISHER, "/news/e.jpg", Resource(make_image(600, 400, seed=304),
                                           headers={"Content-Usage": "train-ai=n"}),
        "news photo (Content-Usage header)")

    site.put(NEWSROOM, "/robots.txt", _CONTENT_SIGNAL_ROBOTS)
    for i in range(2):
        add(NEWSROOM, f"/photos/{i}.jpg", make_image(600, 400, seed=400 + i),
            f"newsroom photo {i} (Content-Signal)")

    licence = site.put(AGENCY, "/licence.xml", Resource(_RSL_LICENCE.encode(),
                                                        content_type="application/rsl+xml"))
    site.put(AGENCY, "/robots.txt", f"License: {licence}\n\nUser-agent: *\nAllow: /\n")
    for i in range(2):
        add(AGENCY, f"/stock/{i}.jpg", make_image(600, 400, seed=500 + i),
            f"stock photo {i} (RSL licence)")

    add(GALLERY, "/photos/missing.jpg", None, "a photo that is gone (404)")
    add(GALLERY, "/photos/corrupt.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "corrupt")
    rows.append({"url": "ftp://127.0.0.2/pub/a.jpg", "caption": "unsupported scheme"})
    return rows


def run_demo(output_dir: str, announce: Callable[[str], None] = logger.info) -> Report:
    """Start the site and download it into ``output_dir``; returns the run's report.

    ``announce`` hears where the site runs and what is downloaded, before the run.
    """
    with running_site(DEMO_HOSTS) as site, tempfile.TemporaryDirectory() as tmp:
        rows = populate(site)
        url_list = str(Path(tmp) / _DEMO_INPUT)
        pq.write_table(pa.Table.from_pylist(rows), url_list)
        announce(f"demo site: {', '.join(site.origin(h) for h in range(len(site.hosts)))}")
        announce(f"downloading {len(rows)} URLs into {output_dir} ...")
        return fetch_shards(url_list, output_dir, caption_col="caption", shard_size=20,
                            processes=1, allow_private_networks=True, overwrite=True,
                            retries=1, retry_backoff=0.2, timeout=5)


def reason_examples(output_dir: str) -> list[dict[str, Any]]:
    """One ``disallowed`` audit row of ``output_dir`` per reason, in audit order."""
    seen: dict[str, dict[str, Any]] = {}
    for row in read_audit(output_dir, status="disallowed").to_pylist():
        seen.setdefault(row["reason"], row)
    return list(seen.values())
