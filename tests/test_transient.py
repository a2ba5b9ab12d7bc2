"""The one table of transient failures, read by the in-run retry and --retry-failed."""

from __future__ import annotations

import pytest

from consentfetch.consent.decision import (
    TRANSIENT,
    Denial,
    Reason,
    Retry,
    Status,
    retry_when,
    status_of,
)
from consentfetch.net.client import is_transient
from consentfetch.run import is_retryable

STATUSES = (None, 200, 301, 403, 404, 428, 429, 499, 500, 503, 599)


def test_the_table_pins_todays_rules() -> None:
    now = {r for r in Reason for s in STATUSES if Retry.IN_RUN in retry_when(r, s)}
    later = {r for r in Reason for s in STATUSES if Retry.NEXT_RUN in retry_when(r, s)}
    assert now == {Reason.TIMEOUT, Reason.CONNECTION_ERROR, Reason.HTTP_ERROR}
    assert later == now | {Reason.DNS_ERROR, Reason.CRAWL_DELAY_TOO_LONG}
    assert all(status_of(Reason(r)) is Status.FAILED_TO_DOWNLOAD for r in TRANSIENT)


@pytest.mark.parametrize("reason", list(Reason))
@pytest.mark.parametrize("http_status", STATUSES)
def test_worth_retrying_now_is_worth_retrying_next_run(reason: Reason,
                                                       http_status: int | None) -> None:
    when = retry_when(reason, http_status)
    assert Retry.IN_RUN not in when or Retry.NEXT_RUN in when
    assert retry_when(str(reason), http_status) == when  # audit rows hold plain strings


@pytest.mark.parametrize(("http_status", "expected"), [
    (429, Retry.ALWAYS), (500, Retry.ALWAYS), (503, Retry.ALWAYS), (599, Retry.ALWAYS),
    (404, Retry.NEVER), (403, Retry.NEVER), (428, Retry.NEVER), (499, Retry.NEVER),
    # no response of its own: its host was given up (after 429/5xx); not now, next run
    (None, Retry.NEXT_RUN),
])
def test_http_errors_by_status(http_status: int | None, expected: Retry) -> None:
    assert retry_when(Reason.HTTP_ERROR, http_status) is expected


@pytest.mark.parametrize("reason", list(Reason))
@pytest.mark.parametrize("http_status", STATUSES)
def test_both_rules_read_the_table(reason: Reason, http_status: int | None) -> None:
    when = retry_when(reason, http_status)
    assert is_transient(Denial(reason, "why", http_status)) is (Retry.IN_RUN in when)
    row = {"status": str(status_of(reason)), "reason": str(reason), "http_status": http_status}
    assert is_retryable(row) is (Retry.NEXT_RUN in when)


def test_an_unknown_reason_is_never_retried() -> None:
    assert retry_when("some_future_reason", 503) is Retry.NEVER
