"""A row's fate is the row's: nothing a site sends or an input row holds ends a shard.

Each test below is one trigger that used to escape the shard's TaskGroup and
end the run (and every resume) with ``failed``. Each runs end to end through
``fetch_shards`` on the local site, next to an ordinary row, and reads the
audit back: one audit row per input row, the ordinary row still a success.
"""

from __future__ import annotations

import json
import logging
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consentfetch import fetch_shards, read_audit
from consentfetch.testsite import LocalSite, RawResource, Resource, make_image, running_site

from .conftest import LOCAL, with_local

# One host per test (origin policies are cached per process, by origin); the
# first serves the ordinary image every test puts beside its trigger.
HOSTS = tuple(f"127.0.0.{i}" for i in range(100, 140))
IMAGE = make_image(64, 48)


@pytest.fixture(scope="module")
def rsite() -> Iterator[LocalSite]:
    with running_site(HOSTS) as s:
        yield s


_next_host = iter(range(1, len(HOSTS)))


def fresh_host() -> int:
    """A host no other test of this module has used."""
    return next(_next_host)


def raw(status_line: bytes, headers: list[bytes], body: bytes = b"") -> RawResource:
    """A verbatim HTTP/1.1 response with a correct Content-Length."""
    head = [status_line, *headers, b"Content-Length: %d" % len(body), b"Connection: close"]
    return RawResource(b"\r\n".join(head) + b"\r\n\r\n" + body)


def image_response(*headers: bytes) -> RawResource:
    return raw(b"HTTP/1.1 200 OK", [b"Content-Type: image/jpeg", *headers], IMAGE)


def run_jsonl(tmp_path: Path, rows: list[dict[str, Any]], **options: Any) -> list[dict]:
    """Run ``rows`` (written as jsonl, so any string survives) and return the audit rows.

    Asserts the run's promise: it finishes and every input row has one audit row.
    """
    src = tmp_path / "urls.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    report = fetch_shards(str(src), str(out), **with_local({ "input_format": "jsonl", **options}))
    audit = sorted(read_audit(str(out)).to_pylist(), key=lambda r: r["key"])
    assert report.total == len(rows) == len(audit)
    assert len({r["key"] for r in audit}) == len(rows)
    return audit


def fetch_one(rsite: LocalSite, tmp_path: Path, url: str, **options: Any) -> dict:
    """``url`` beside an ordinary image from another host; returns ``url``'s audit row."""
    ok = rsite.put(0, "/ok.jpg", IMAGE)
    row, good = run_jsonl(tmp_path, [{"url": url}, {"url": ok}], **options)
    assert good["status"] == "success"
    return row


def assert_storable(row: dict) -> None:
    for value in row.values():
        if isinstance(value, str):
            value.encode("utf-8")  # no lone surrogate made it into the audit


# ---------------------------------------------------------------- status line and headers


def test_latin1_reason_phrase(rsite, tmp_path) -> None:
    url = rsite.put(fresh_host(), "/a.jpg", raw(b"HTTP/1.1 404 Nicht gef\xfcnden", []))
    row = fetch_one(rsite, tmp_path, url)
    assert (row["status"], row["reason"], row["http_status"]) == \
        ("failed_to_download", "http_error", 404)
    assert row["evidence"].startswith("HTTP 404 Nicht gef")
    assert_storable(row)


def test_non_utf8_x_robots_tag(rsite, tmp_path) -> None:
    url = rsite.put(fresh_host(), "/a.jpg", image_response(b"X-Robots-Tag: noai \xff\xfe"))
    row = fetch_one(rsite, tmp_path, url)
    assert (row["status"], row["reason"]) == ("disallowed", "x_robots_tag")
    assert_storable(row)


def test_non_utf8_retry_after(rsite, tmp_path) -> None:
    url = rsite.put(fresh_host(), "/a.jpg",
                    raw(b"HTTP/1.1 503 Service Unavailable", [b"Retry-After: 1\xe9"]))
    row = fetch_one(rsite, tmp_path, url, retries=0)
    assert (row["reason"], row["http_status"]) == ("http_error", 503)
    assert "Retry-After: 1" in row["evidence"]
    assert_storable(row)


def test_non_utf8_tdm_policy(rsite, tmp_path) -> None:
    url = rsite.put(fresh_host(), "/a.jpg", image_response(
        b"tdm-reservation: 1", b"tdm-policy: https://example.org/p\xe9licy.json"))
    row = fetch_one(rsite, tmp_path, url)
    assert (row["status"], row["reason"]) == ("disallowed", "tdm_reserved")
    assert_storable(row)


# ---------------------------------------------------------------- origin files


def test_tdmrep_json_with_a_lone_surrogate(rsite, tmp_path) -> None:
    host = fresh_host()
    rsite.put(host, "/.well-known/tdmrep.json",
              Resource(b'[{"location": "/*", "tdm-reservation": 1, '
                       b'"tdm-policy": "https://example.org/\\ud800"}]',
                       content_type="application/json"))
    row = fetch_one(rsite, tmp_path, rsite.put(host, "/a.jpg", IMAGE))
    assert (row["status"], row["reason"]) == ("disallowed", "tdm_reserved")
    assert_storable(row)


BAD_LOCATIONS = ["http://[::1", "http://xn--/x.png", "http://127.0.0.1:99999999/x.png"]


@pytest.mark.parametrize("location", BAD_LOCATIONS)
def test_image_redirect_to_an_unparseable_location(rsite, tmp_path, location) -> None:
    url = rsite.put(fresh_host(), "/a.jpg",
                    Resource(b"", status=302, headers={"Location": location}))
    row = fetch_one(rsite, tmp_path, url)
    assert (row["status"], row["reason"]) == ("failed_to_download", "invalid_url")
    assert location in row["evidence"]


@pytest.mark.parametrize("location", BAD_LOCATIONS)
def test_robots_redirect_to_an_unparseable_location(rsite, tmp_path, location) -> None:
    """A robots.txt whose redirect cannot be followed is unreachable: fail safe."""
    host = fresh_host()
    rsite.put(host, "/robots.txt", Resource(b"", status=301, headers={"Location": location}))
    url = rsite.put(host, "/a.jpg", IMAGE)
    row = fetch_one(rsite, tmp_path, url)
    assert (row["status"], row["reason"]) == ("disallowed", "robots_unreachable")
    assert rsite.hit_count(host, "/a.jpg") == 0


def test_ai_txt_redirect_to_an_unparseable_location(rsite, tmp_path) -> None:
    """ai.txt that cannot be fetched is no signal, like a 404 (ARCHITECTURE.md §6)."""
    host = fresh_host()
    rsite.put(host, "/ai.txt", Resource(b"", status=301, headers={"Location": "http://[::1"}))
    row = fetch_one(rsite, tmp_path, rsite.put(host, "/a.jpg", IMAGE))
    assert row["status"] == "success"


# ---------------------------------------------------------------- input rows


@pytest.mark.parametrize("url", [
    "http://xn--/x.png",
    "http://" + "a" * 64 + ".example/x.png",
    "http://127.0.0.2/\ud800.png",
    "http://\udcff.example/x.png",
])
def test_input_url_that_cannot_be_requested(rsite, tmp_path, url) -> None:
    row = fetch_one(rsite, tmp_path, url)
    assert (row["status"], row["reason"]) == ("failed_to_download", "invalid_url")
    assert_storable(row)


def test_lone_surrogates_in_caption_and_kept_column(rsite, tmp_path) -> None:
    ok = rsite.put(fresh_host(), "/a.jpg", IMAGE)
    rows = [{"url": ok, "caption": "cat \ud83d and dog", "extra": "x\udfffy"},
            {"url": "http://xn--/x.png", "caption": "\ud800", "extra": "\udc80"}]
    audit = run_jsonl(tmp_path, rows, caption_col="caption",
                      save_additional_columns=["extra"])
    assert [r["status"] for r in audit] == ["success", "failed_to_download"]
    assert audit[0]["caption"] == "cat \\ud83d and dog"
    assert audit[0]["extra"] == "x\\udfffy"
    for row in audit:
        assert_storable(row)
    with tarfile.open(tmp_path / "out" / "00000.tar") as tar:
        key = audit[0]["key"]
        caption = tar.extractfile(f"{key}.txt").read().decode("utf-8")
        meta = json.loads(tar.extractfile(f"{key}.json").read())
    assert caption == meta["caption"] == "cat \\ud83d and dog"
    assert meta["extra"] == "x\\udfffy"


# ---------------------------------------------------------------- the safety net


def test_an_unforeseen_exception_is_the_rows_failure(rsite, tmp_path, monkeypatch,
                                                     caplog) -> None:
    """Whatever a check raises, the row fails alone: logged once, evidence names it."""
    from consentfetch.consent.engine import ConsentEngine

    real = ConsentEngine.check_headers

    def check_headers(self, policy, url, headers, permits):
        if "boom" in url.path:
            raise RuntimeError("a check that blew up")
        return real(self, policy, url, headers, permits)

    monkeypatch.setattr(ConsentEngine, "check_headers", check_headers)
    url = rsite.put(fresh_host(), "/boom.jpg", IMAGE)
    with caplog.at_level(logging.ERROR, logger="consentfetch"):
        row = fetch_one(rsite, tmp_path, url)
    assert (row["status"], row["reason"]) == ("failed_to_download", "connection_error")
    assert row["evidence"] == "unexpected error: RuntimeError: a check that blew up"
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1 and logged[0].exc_info is not None


def test_an_unforeseen_exception_in_image_work_is_a_resize_failure(rsite, tmp_path,
                                                                   monkeypatch) -> None:
    import consentfetch.pipeline as pipeline

    odd = make_image(33, 33)
    from consentfetch.image import process_image as real

    def process_image(data, options, **kwargs):
        if data == odd:
            raise MemoryError("a decoder that blew up")
        return real(data, options, **kwargs)

    monkeypatch.setattr(pipeline, "process_image", process_image)
    row = fetch_one(rsite, tmp_path, rsite.put(fresh_host(), "/odd.jpg", odd))
    assert (row["status"], row["reason"], row["http_status"]) == \
        ("failed_to_resize", "decode_error", 200)
    assert "MemoryError" in row["evidence"]


def test_ctrl_c_still_ends_the_run(rsite, tmp_path, monkeypatch) -> None:
    """Ctrl-C in the middle of a row is not that row's failure: the run stops, resumably.

    A real SIGINT: asyncio.run cancels the shard's task, and the
    CancelledError must pass through the row's confinement, so no further row
    is requested (a confinement that caught it would go on through them all).
    """
    import signal

    from consentfetch.consent.engine import ConsentEngine
    from consentfetch.errors import RunInterrupted

    def check_headers(self, policy, url, headers, permits):
        if url.path == "/0.jpg":
            signal.raise_signal(signal.SIGINT)
        return None

    monkeypatch.setattr(ConsentEngine, "check_headers", check_headers)
    host = fresh_host()
    src = tmp_path / "urls.jsonl"
    src.write_text("".join(json.dumps({"url": rsite.put(host, f"/{i}.jpg", IMAGE)}) + "\n"
                           for i in range(20)))
    options: dict[str, Any] = {**LOCAL, "concurrency": 1}
    with pytest.raises(RunInterrupted):
        fetch_shards(str(src), str(tmp_path / "out"), **options)
    state = json.loads((tmp_path / "out" / "run.json").read_text())["state"]
    assert state == "interrupted"
    assert not list((tmp_path / "out").glob("*.parquet"))
    assert sum(rsite.hit_count(host, f"/{i}.jpg") for i in range(20)) == 1


def test_robots_redirect_with_non_utf8_location_is_stored_in_origins(rsite, tmp_path) -> None:
    """The failed robots.txt fetch's evidence reaches origins.parquet, escaped."""
    import pyarrow.parquet as pq

    host = fresh_host()
    rsite.put(host, "/robots.txt",
              raw(b"HTTP/1.1 301 Moved", [b"Location: http://[\xff\xfe/robots.txt"]))
    row = fetch_one(rsite, tmp_path, rsite.put(host, "/a.jpg", IMAGE))
    assert (row["status"], row["reason"]) == ("disallowed", "robots_unreachable")
    origins = pq.read_table(tmp_path / "out" / "origins.parquet").to_pylist()
    (robots,) = [o for o in origins if o["kind"] == "robots.txt" and HOSTS[host] in o["origin"]]
    assert robots["outcome"] == "unreachable"
    assert "\\udcff\\udcfe" in robots["error"]


def test_an_unforeseen_exception_parsing_an_input_url_is_that_rows(rsite, tmp_path,
                                                                   monkeypatch) -> None:
    """Rows are parsed when the shard is scheduled, outside any row's confinement."""
    import consentfetch.pipeline as pipeline
    from consentfetch.net.client import parse_http_url as real

    def parse_http_url(raw):
        if "boom" in raw:
            raise RuntimeError("a parser that blew up")
        return real(raw)

    monkeypatch.setattr(pipeline, "parse_http_url", parse_http_url)
    row = fetch_one(rsite, tmp_path, "http://127.0.0.1/boom.jpg")
    assert (row["status"], row["reason"]) == ("failed_to_download", "invalid_url")
    assert "RuntimeError: a parser that blew up" in row["evidence"]
