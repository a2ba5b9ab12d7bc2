"""Tests of consentfetch.consent.crawlers: AI-crawler tokens and the strict inference."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from consentfetch.consent.crawlers import (
    ai_crawler_blocked,
    is_product_token,
    load_ai_crawler_tokens,
)
from consentfetch.consent.robots import RobotsPolicy
from consentfetch.errors import ConfigError

OURS = "consentfetch"
URL = "https://example.com/art/a.jpg"
TOKENS = load_ai_crawler_tokens()


def _blocked(robots: str, url: str = URL, ours: str = OURS,
             tokens: tuple[str, ...] = TOKENS) -> tuple[str, str | None] | None:
    found = ai_crawler_blocked(RobotsPolicy.parse(robots), url, ours, tokens)
    return None if found is None else (found[0], found[1].rule)


# ------------------------------------------------------------- the list


def test_shipped_list_loads_and_every_token_is_valid() -> None:
    assert len(TOKENS) >= 25
    for token in TOKENS:
        assert re.fullmatch(r"[A-Za-z_-]+", token), token
        assert is_product_token(token)
    assert len({t.lower() for t in TOKENS}) == len(TOKENS)


@pytest.mark.parametrize("token", [
    "GPTBot", "CCBot", "Google-Extended", "anthropic-ai", "ClaudeBot", "Applebot-Extended",
    "Bytespider", "LAIONDownloader", "cohere-ai", "PerplexityBot",
    "Meta-ExternalAgent",
])
def test_consent_md_tokens_are_shipped(token: str) -> None:
    assert token in TOKENS


@pytest.mark.parametrize("token", ["ChatGPT-User", "OAI-SearchBot", "Claude-User",
                                   "Perplexity-User", "facebookexternalhit", "Googlebot",
                                   # ai.robots.txt 2026-08-22: search, assistants, agents,
                                   # data APIs, generic tools, undescribed entries
                                   "Applebot", "Claude-SearchBot", "Kimi-User", "Google-Agent",
                                   "Claude-Code", "Bravebot", "TavilyBot", "ExaBot",
                                   "meta-webindexer", "Amzn-User", "Scrapy", "Lightpanda",
                                   "Spider", "GoogleOther", "aiHitBot", "Awario"])
def test_fetchers_and_search_crawlers_are_not_shipped(token: str) -> None:
    assert token.lower() not in {t.lower() for t in TOKENS}


def test_shipped_file_names_its_source() -> None:
    text = (resources.files("consentfetch.consent").joinpath("data")
            .joinpath("ai_crawlers.txt").read_text(encoding="utf-8"))
    assert "ai.robots.txt" in text
    assert re.search(r"\b20\d\d-\d\d-\d\d\b", text)
    assert "738c80df2169027ce0e07c9976fd3f2f57dd8f7b" in text  # the robots.json compared
    assert "Selection rule" in text


# Training crawlers of ai.robots.txt's robots.json (2026-08-22) added by the selection rule.
ADDED_2026_08 = ["Brightbot", "CloudVertexBot", "DeepSeekBot", "Factset_spyderbot",
                 "FriendlyCrawler", "ISSCyberRiskCrawler", "Linguee", "Sidetrade",
                 "TikTokSpider"]


@pytest.mark.parametrize("token", ADDED_2026_08)
def test_training_crawlers_of_2026_are_shipped(token: str) -> None:
    assert token in TOKENS


@pytest.mark.parametrize(("name", "token"), [
    ("Linguee Bot", "Linguee"), ("Sidetrade indexer bot", "Sidetrade"),
    ("Brightbot 1.0", "Brightbot"), ("DeepSeekBot", "DeepSeekBot")])
def test_names_with_spaces_or_digits_are_blocked_through_their_reading(name: str,
                                                                       token: str) -> None:
    robots = f"User-agent: {name}\nDisallow: /\n\nUser-agent: *\nAllow: /\n"
    assert _blocked(robots) == (token, "Disallow: /")


def test_the_added_tokens_match_exactly() -> None:
    # "Linguee" does not match a "LingueeCrawler" group, nor "Sidetrade" a "Sidetrader" one
    robots = ("User-agent: LingueeCrawler\nUser-agent: Sidetrader\nUser-agent: DeepSeek\n"
              "Disallow: /\n\nUser-agent: *\nAllow: /\n")
    assert _blocked(robots) is None


def test_names_that_are_not_tokens_ship_as_their_robots_reading() -> None:
    # robots.txt parsers read "img2dataset" as "img", "AI2Bot" / "Ai2Bot-Dolma"
    # as "AI", "Kangaroo Bot" as "Kangaroo"
    assert {"img", "AI", "Kangaroo"} <= set(TOKENS)
    assert not any(" " in t or any(c.isdigit() for c in t) for t in TOKENS)


def test_extras_are_appended_and_deduplicated() -> None:
    tokens = load_ai_crawler_tokens(["gptbot", "NewBot", "newbot", " Other_Bot "])
    assert tokens[: len(TOKENS)] == TOKENS
    assert tokens[len(TOKENS):] == ("NewBot", "Other_Bot")


def test_a_single_string_extra_is_one_token() -> None:
    assert load_ai_crawler_tokens("NewBot")[-1] == "NewBot"


@pytest.mark.parametrize("bad", ["AI2Bot", "Kangaroo Bot", "GPTBot/1.0", "", "*", "bot.example"])
def test_invalid_extra_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_ai_crawler_tokens([bad])
    assert repr(bad) in str(info.value)


def test_invalid_extra_suggests_its_robots_reading() -> None:
    with pytest.raises(ConfigError, match="'AI'"):
        load_ai_crawler_tokens(["AI2Bot"])


def test_list_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text("# mine\nFooBot  # a comment\n\nbar-bot\nFOOBOT\n", encoding="utf-8")
    assert load_ai_crawler_tokens(["Baz"], path=str(path)) == ("FooBot", "bar-bot", "Baz")


def test_file_with_invalid_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text("FooBot\nBar Bot\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 2.*'Bar Bot'"):
        load_ai_crawler_tokens(path=str(path))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="absent.txt"):
        load_ai_crawler_tokens(path=str(tmp_path / "absent.txt"))


# ------------------------------------------------------------ inference

GPT_BLOCKED = "User-agent: GPTBot\nDisallow: /\n\nUser-agent: *\nAllow: /\n"


def test_gptbot_disallowed_star_allowed_is_blocked() -> None:
    assert _blocked(GPT_BLOCKED) == ("GPTBot", "Disallow: /")


def test_no_star_group_means_unnamed_crawlers_are_allowed() -> None:
    assert _blocked("User-agent: GPTBot\nDisallow: /\n") == ("GPTBot", "Disallow: /")


def test_verdict_carries_the_evidence() -> None:
    policy = RobotsPolicy.parse("User-agent: *\nDisallow:\n\nUser-agent: GPTBot/1.1\n"
                                "Disallow: /art/\n")
    found = ai_crawler_blocked(policy, URL, OURS, TOKENS)
    assert found is not None
    token, verdict = found
    assert token == "GPTBot"
    assert not verdict.allowed
    assert (verdict.rule, verdict.line, verdict.group) == ("Disallow: /art/", 5, "GPTBot/1.1")


def test_disallowed_to_star_too_is_not_an_inference() -> None:
    assert _blocked("User-agent: GPTBot\nDisallow: /\n\nUser-agent: *\nDisallow: /\n") is None
    assert _blocked("User-agent: *\nDisallow: /art/\n\nUser-agent: CCBot\nDisallow: /\n") is None


def test_our_token_named_means_no_inference() -> None:
    robots = GPT_BLOCKED + "\nUser-agent: consentfetch\nAllow: /\n"
    assert _blocked(robots) is None
    # even when the group naming us disallows (that is a plain robots denial)
    assert _blocked(GPT_BLOCKED + "\nUser-agent: ConsentFetch/2.0\nDisallow: /x/\n") is None


def test_substring_groups_do_not_count() -> None:
    assert _blocked("User-agent: gpt\nDisallow: /\n") is None
    assert _blocked("User-agent: GPTBotX\nDisallow: /\n") is None
    assert _blocked("User-agent: Claude\nDisallow: /\n") is None
    assert _blocked("User-agent: GPTBot-News\nDisallow: /\n") is None


def test_star_group_alone_does_not_name_ai_tokens() -> None:
    # the AI token would fall back to "*", which allows: never an AI block
    assert _blocked("User-agent: *\nDisallow: /private/\n") is None


def test_path_specific_block() -> None:
    robots = "User-agent: GPTBot\nDisallow: /art/\n"
    assert _blocked(robots, "https://example.com/art/a.jpg") == ("GPTBot", "Disallow: /art/")
    assert _blocked(robots, "https://example.com/art") is None
    assert _blocked(robots, "https://example.com/photos/a.jpg") is None
    assert _blocked(robots, "/art/x.png") == ("GPTBot", "Disallow: /art/")


def test_allow_inside_the_ai_group_wins_when_longer() -> None:
    robots = "User-agent: CCBot\nDisallow: /\nAllow: /art/public/\n"
    assert _blocked(robots, "https://example.com/art/public/a.jpg") is None
    assert _blocked(robots, "https://example.com/art/a.jpg") == ("CCBot", "Disallow: /")


def test_group_naming_several_tokens() -> None:
    robots = ("User-agent: Bytespider\nUser-agent: CCBot\nUser-agent: GPTBot\n"
              "Disallow: /art/\n\nUser-agent: *\nAllow: /\n")
    # the first blocked token in list order, not in file order
    assert _blocked(robots) == ("GPTBot", "Disallow: /art/")
    assert _blocked(robots, tokens=("CCBot", "Bytespider")) == ("CCBot", "Disallow: /art/")
    assert _blocked(robots, "https://example.com/other.jpg") is None


def test_first_blocked_token_in_list_order() -> None:
    robots = ("User-agent: GPTBot\nAllow: /\n\nUser-agent: ClaudeBot\nDisallow: /art/\n\n"
              "User-agent: CCBot\nDisallow: /\n")
    assert _blocked(robots) == ("CCBot", "Disallow: /")  # shipped order: GPTBot, CCBot, ...
    assert _blocked(robots, tokens=("GPTBot", "ClaudeBot", "CCBot")) == (
        "ClaudeBot", "Disallow: /art/")
    assert _blocked(robots, "https://example.com/x", tokens=("GPTBot", "ClaudeBot", "CCBot")) == (
        "CCBot", "Disallow: /")


@pytest.mark.parametrize("written", ["gptbot", "GPTBOT", "GptBot", "gPtBoT/1.0"])
def test_token_names_are_case_insensitive(written: str) -> None:
    assert _blocked(f"User-agent: {written}\nDisallow: /\n") == ("GPTBot", "Disallow: /")


def test_token_is_reported_as_written_in_our_list() -> None:
    assert _blocked("User-agent: GPTBot\nDisallow: /\n", tokens=("gptbot",)) == (
        "gptbot", "Disallow: /")


def test_our_token_is_compared_case_insensitively() -> None:
    robots = GPT_BLOCKED + "\nUser-agent: CONSENTFETCH\nAllow: /\n"
    assert _blocked(robots, ours="ConsentFetch") is None


def test_ai2bot_group_is_read_as_token_ai() -> None:
    robots = "User-agent: AI2Bot\nUser-agent: Ai2Bot-Dolma\nDisallow: /\n"
    assert _blocked(robots) == ("AI", "Disallow: /")
    assert _blocked("User-agent: AIHitBot\nDisallow: /\n") is None


@pytest.mark.parametrize("written", ["img2dataset", "img2dataset/1.4", "IMG2DATASET"])
def test_img2dataset_group_is_read_as_token_img(written: str) -> None:
    assert _blocked(f"User-agent: {written}\nDisallow: /\n") == ("img", "Disallow: /")


def test_img_prefix_names_do_not_count() -> None:
    assert _blocked("User-agent: imgbot\nDisallow: /\n") is None
    assert _blocked("User-agent: img-crawler\nDisallow: /\n") is None


def test_kangaroo_bot_group() -> None:
    assert _blocked("User-agent: Kangaroo Bot\nDisallow: /\n") == ("Kangaroo", "Disallow: /")


def test_robots_txt_itself_is_never_blocked() -> None:
    assert _blocked("User-agent: GPTBot\nDisallow: /\n", "https://example.com/robots.txt") is None


def test_empty_or_missing_robots() -> None:
    assert _blocked("") is None
    assert ai_crawler_blocked(RobotsPolicy.allow_all(), URL, OURS, TOKENS) is None
    assert _blocked(GPT_BLOCKED, tokens=()) is None


def test_user_extra_token_is_inferred() -> None:
    tokens = load_ai_crawler_tokens(["NewTrainerBot"])
    robots = "User-agent: NewTrainerBot\nDisallow: /\n"
    assert _blocked(robots, tokens=tokens) == ("NewTrainerBot", "Disallow: /")
    assert _blocked(robots) is None
