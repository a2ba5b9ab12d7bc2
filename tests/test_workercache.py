"""The per-process worker cache: origin policies and consent lists kept across shards
and runs of one process, keyed by everything that shapes them, and bounded."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from consentfetch import fetch_shards, read_audit, workercache
from consentfetch.config import make_config
from consentfetch.consent.origins import OriginPolicy
from consentfetch.consent.robots import RobotsPolicy
from consentfetch.lru import BoundedCache
from consentfetch.testsite import LocalSite, make_image
from consentfetch.workercache import WorkerCache

from .conftest import LOCAL


def test_second_run_in_process_does_not_reuse_ignored_robots(
        site: LocalSite, url_list, tmp_path: Path) -> None:
    """A policy made under one run's --ignore robots_txt must not serve a later run
    of the same process that checks robots.txt (a notebook, a reused worker)."""
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /private/\n")
    url = site.put(0, "/private/a.jpg", make_image(64, 48))
    urls = url_list([{"url": url}])
    first = fetch_shards(urls, str(tmp_path / "ignored"), ignore=["robots_txt"], **LOCAL)
    assert first.reasons == {} and first.counts == {"success": 1}
    second = fetch_shards(urls, str(tmp_path / "checked"), **LOCAL)
    assert second.counts == {"disallowed": 1}
    row = read_audit(str(tmp_path / "checked")).to_pylist()[0]
    assert row["reason"] == "robots_disallowed" and row["ignored_checks"] is None
    assert site.hit_count(0, "/private/a.jpg") == 1  # only the first run requested it


def test_policy_evicted_mid_row_still_judges_the_headers(
        site: LocalSite, url_list, tmp_path: Path, monkeypatch) -> None:
    """In standard, tdmrep.json is applied when the headers arrive: with a cache
    too small to keep any policy, the row must still use the policy of its hop."""
    monkeypatch.setattr(workercache, "_PROCESS", WorkerCache(policy_bytes=1))
    site.put(0, "/.well-known/tdmrep.json",
             json.dumps([{"location": "/reserved/*", "tdm-reservation": 1}]))
    url = site.put(0, "/reserved/a.jpg", make_image(64, 48))
    report = fetch_shards(url_list([{"url": url}]), str(tmp_path / "out"),
                          consent="standard", **LOCAL)
    assert report.reasons == {"tdm_reserved": 1}


# -- BoundedCache ------------------------------------------------------------------------------

def test_bounded_cache_drops_least_recently_used_first() -> None:
    cache: BoundedCache[str, int] = BoundedCache(10, lambda v: v)
    cache["a"], cache["b"], cache["c"] = 3, 3, 3
    assert cache.get("a") == 3  # "a" is now the most recent
    cache["d"] = 3  # 12 > 10: the least recently used ("b") goes
    assert list(cache) == ["c", "a", "d"] and cache.total == 9 and cache.evictions == 1
    cache["e"] = 7  # needs 7: "c" and "a" go
    assert list(cache) == ["d", "e"] and cache.total == 10


@pytest.mark.parametrize("costs, expected", [
    ([11], []),  # larger than the whole budget: not kept, nothing else evicted
    ([5, 11], ["k0"]),
    ([10], ["k0"]),  # exactly the budget
    ([0, 0, 0], ["k0", "k1", "k2"]),
    ([-5, 10], ["k0", "k1"]),  # a negative cost counts as 0
    ([4, 4, 4, 4], ["k2", "k3"]),
])
def test_bounded_cache_budget_vectors(costs: list[int], expected: list[str]) -> None:
    cache: BoundedCache[str, int] = BoundedCache(10, lambda v: v)
    for i, cost in enumerate(costs):
        cache[f"k{i}"] = cost
    assert list(cache) == expected
    assert cache.total == sum(max(0, cache.get(k) or 0) for k in expected) <= 10


def test_bounded_cache_replace_and_pop_keep_the_total() -> None:
    cache: BoundedCache[str, int] = BoundedCache(10, lambda v: v)
    cache["a"] = 6
    cache["a"] = 2  # replaced, not added
    assert cache.total == 2 and len(cache) == 1
    assert cache.pop("a") == 2 and cache.pop("a") is None and cache.total == 0
    assert cache.get("a") is None and "a" not in cache


# -- WorkerCache -------------------------------------------------------------------------------

def _policy(origin: str, robots: bytes = b"User-agent: *\nDisallow: /x\n") -> OriginPolicy:
    return OriginPolicy(origin, RobotsPolicy.parse(robots), loaded_at=0.0)


@pytest.mark.parametrize("other", [
    {"ignore": ("robots_txt",)}, {"ignore": ("ai_txt",)}, {"ignore": ("tdmrep",)},
    {"user_agent_token": "otherbot"}, {"contact": "mailto:x@example.com"},
    {"allow_private_networks": True}, {"allowed_networks": ("10.0.0.0/8",)},
])
def test_policies_are_keyed_by_what_shapes_them(other: dict[str, Any]) -> None:
    cache = WorkerCache()
    base = make_config()
    cache.policy_view(base, keep_bodies=False)["o"] = policy = _policy("o")
    assert cache.policy_view(base, keep_bodies=False).get("o") is policy
    assert cache.policy_view(base, keep_bodies=True).get("o") is None
    assert cache.policy_view(make_config(**other), keep_bodies=False).get("o") is None


def test_options_that_do_not_shape_a_policy_share_it() -> None:
    cache = WorkerCache()
    cache.policy_view(make_config(), keep_bodies=False)["o"] = policy = _policy("o")
    same = make_config(ignore=("iptc", "x_robots_tag"), concurrency=3, timeout=1,
                       consent="standard", image_size=64)
    assert cache.policy_view(same, keep_bodies=False).get("o") is policy


def test_policy_cache_holds_to_its_budget() -> None:
    hostile = b"User-agent: *\n" + b"".join(b"Disallow: /a%d\n" % i for i in range(2000))
    one = _policy("o0", hostile).approx_bytes
    cache = WorkerCache(policy_bytes=3 * one + one // 2)
    view = cache.policy_view(make_config(), keep_bodies=False)
    for i in range(10):
        view[f"o{i}"] = _policy(f"o{i}", hostile)
    assert len(cache.policies) == 3 and cache.policies.total <= 3 * one + one // 2
    assert [view.get(f"o{i}") is not None for i in range(10)] == [False] * 7 + [True] * 3


def test_seeded_policies_are_marked() -> None:
    view = WorkerCache().policy_view(make_config(), keep_bodies=False)
    view.seed("a", _policy("a"))
    view["b"] = _policy("b")
    assert view.seeded("a") and not view.seeded("b") and not view.seeded("c")
    view["a"] = _policy("a")  # fetched again (expired): no longer the seeded one
    assert not view.seeded("a")


def test_lists_are_read_again_when_a_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "optout.txt"
    path.write_text("blocked.example\n")
    cache = WorkerCache()
    first = cache.lists("opt-out", (str(path),))
    assert first is not None and first is cache.lists("opt-out", (str(path),))
    assert first.match_url("https://changed.example/a.jpg") is None
    path.write_text("blocked.example\nchanged.example\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = cache.lists("opt-out", (str(path),))
    assert second is not first and second is not None
    assert second.match_url("https://changed.example/a.jpg") is not None
    assert cache.lists("opt-in", ()) is None


def test_list_cache_is_keyed_by_role_and_storage_options(tmp_path: Path) -> None:
    path = str(tmp_path / "l.txt")
    Path(path).write_text("a.example\n")
    cache = WorkerCache(list_entries=2)
    out = cache.lists("opt-out", (path,))
    assert cache.lists("opt-in", (path,)) is not out
    assert cache.lists("opt-out", (path,), {"auto_mkdir": True}) is not out
    assert len(cache._lists) == 2  # bounded: the oldest went


@pytest.mark.parametrize("body", [
    b"User-agent: *\nDisallow: /x\n",
    b"User-agent: *\n" + b"".join(b"Disallow: /a%d\n" % i for i in range(3000)),
    b"User-agent: *\n" + b"".join(b"Disallow: /" + b"x" * 990 + b"%d\n" % i for i in range(100)),
    b"".join(b"User-agent: bot%d\nDisallow: /x\n" % i for i in range(1500)),
])
def test_parsed_size_estimate_is_close(body: bytes) -> None:
    tracemalloc.start()
    try:
        policy = RobotsPolicy.parse(body)
        actual, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert actual / 2 <= policy.approx_bytes <= actual * 2
