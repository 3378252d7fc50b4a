"""Odd rate-limit headers: strict parsing, and a wait that is always bounded.

A server's ``Retry-After`` or ``X-RateLimit-Reset`` once crashed a pass: ``²`` (a digit to
``str.isdigit()``, not to ``float()``), a 400-digit number (``inf`` as a float), or an HTTP date in
year 9999. The parser is property-tested on arbitrary text, and the client and the reconciler's
core on what the parser hands them.
"""

from __future__ import annotations

import email.utils
import math
import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_machine import NOW as MACHINE_NOW
from test_machine import observe, started

from rotator.core import machine
from rotator.core.observation import Failed, absorb
from rotator.intercom import IntercomClient, IntercomRateLimited, RetryPolicy
from rotator.intercom.ratelimit import LONGEST_WAIT, MAX_DIGITS, server_delay

NOW = 1_700_000_000.0
POLICY = RetryPolicy(attempts=2, max_retry_after=30.0)

# Header text as a server might send it: anything printable, digits of every script, numbers
# of every length, dates of every year, and the mixtures of those.
header_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=20),
    st.integers(min_value=0, max_value=10**500).map(str),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: email.utils.format_datetime(d, usegmt=True)),
    st.floats().map(str),
)
maybe_header = st.none() | header_text


def rate_limited(retry_after: str | None, reset: str | None) -> httpx.Response:
    headers = [
        (name, value.encode("utf-8", "surrogatepass"))
        for name, value in (("Retry-After", retry_after), ("X-RateLimit-Reset", reset))
        if value is not None
    ]
    body = {"type": "error.list", "errors": [{"code": "rate_limit_exceeded", "message": "slow"}]}
    return httpx.Response(429, json=body, headers=headers)


def client(answer: httpx.Response, sleeps: list[float]) -> IntercomClient:
    return IntercomClient(
        "dG9rOnJhdGUtbGltaXQtdGVzdHM",
        base_url="http://intercom.test",
        transport=httpx.MockTransport(lambda _request: answer),
        retry=POLICY,
        sleep=sleeps.append,
        clock=lambda: NOW,
        rng=random.Random(1),
    )


@settings(max_examples=500, deadline=None)
@given(
    retry_after=maybe_header,
    reset=maybe_header,
    date=maybe_header,
    cap=st.floats(0, 10 * LONGEST_WAIT),
)
def test_the_parser_never_raises_and_stays_within_its_cap(retry_after, reset, date, cap):
    """Whatever text the three headers hold, the delay read is None or a number in [0, cap]."""
    headers = {
        k: v
        for k, v in (("Retry-After", retry_after), ("X-RateLimit-Reset", reset), ("Date", date))
        if v is not None
    }
    delay = server_delay(headers, now=NOW, cap=cap)
    assert delay is None or 0.0 <= delay <= cap


@settings(max_examples=200, deadline=None)
@given(retry_after=maybe_header, reset=maybe_header)
def test_the_client_survives_any_rate_limit_header(retry_after, reset):
    """Any header text ends in IntercomRateLimited with a delay of at most a day, after sleeps
    of at most max_retry_after: never another exception, never an absurd wait."""
    sleeps: list[float] = []
    with pytest.raises(IntercomRateLimited) as caught:
        client(rate_limited(retry_after, reset), sleeps).list_secrets()
    delay = caught.value.delay
    assert delay is None or 0.0 <= delay <= LONGEST_WAIT
    assert all(0.0 <= s <= POLICY.max_retry_after for s in sleeps)


@pytest.mark.parametrize(
    ("retry_after", "reset", "delay"),
    [
        ("²", None, None),  # a digit to str.isdigit(), but not ASCII: ignored
        ("٣", None, None),  # an Arabic-Indic three: the same
        ("7", None, 7.0),
        (" 7 ", None, 7.0),
        ("9" * 400, None, None),  # far more digits than any promise: ignored
        ("9" * MAX_DIGITS, None, LONGEST_WAIT),  # a long but readable wait: held to a day
        (None, "9" * 400, None),
        (None, str(int(NOW) + 12), 12.0),
        (None, str(int(NOW) - 12), 0.0),  # a reset in the past: go now
        ("Fri, 31 Dec 9999 23:59:59 GMT", None, LONGEST_WAIT),
        ("Mon, 01 Jan 0001 00:00:00 GMT", None, 0.0),  # far in the past: go now
        ("Thu, 01 Jan 1970 00:00:00 GMT", None, 0.0),
        (email.utils.formatdate(NOW + 30, usegmt=True), None, 30.0),
        ("Fri, 31 Dec 9999 23:59:59 -0000", None, LONGEST_WAIT),  # no zone: UTC
        ("x" * 1000, str(int(NOW) + 5), 5.0),  # an unreadable Retry-After: the reset counts
        ("-5", None, None),
        ("1e400", None, None),
        ("inf", None, None),
        ("nan", None, None),
    ],
)
def test_odd_headers_are_read_strictly(retry_after, reset, delay):
    """ASCII digits of bounded length or an HTTP date; anything else is ignored, and every
    delay read is held within [0, a day]."""
    headers = {
        k: v
        for k, v in (("Retry-After", retry_after), ("X-RateLimit-Reset", reset))
        if v is not None
    }
    assert server_delay(headers, now=NOW) == delay


def fail_with(delay: float | None) -> datetime:
    """The retry time the core persists when a started rotation's create fails with
    ``delay`` suggested (the machine's own test helpers build the rotation)."""
    record, _ = started()
    failure = Failed("rate limited", permanent=False, delay=delay)
    decision = machine.step(record, absorb(observe(record), failure), MACHINE_NOW)
    assert decision.record.retry_at is not None
    return decision.record.retry_at


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "9" * 400},
        {"X-RateLimit-Reset": "9" * 400},
        {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"},
        {"Retry-After": "99999999999"},
        {"Retry-After": "²"},
    ],
)
def test_a_huge_wait_is_handed_back_bounded_and_schedules_a_retry(headers):
    """The client hands back at most a day, and the core turns it into a retry time at most a
    day away: no OverflowError, no rotation stuck."""
    answer = rate_limited(headers.get("Retry-After"), headers.get("X-RateLimit-Reset"))
    with pytest.raises(IntercomRateLimited) as caught:
        client(answer, []).list_secrets()
    delay = caught.value.delay
    assert delay is None or delay <= LONGEST_WAIT
    assert MACHINE_NOW < fail_with(delay) <= MACHINE_NOW + timedelta(days=1)


@pytest.mark.parametrize("delay", [math.inf, 1e300, 1e15])
def test_the_core_caps_any_suggested_delay_before_arithmetic(delay):
    """A delay from any adapter too long for timedelta (inf, 1e300, 1e15 seconds) gives a retry
    time a day away, where timedelta(seconds=delay) raised OverflowError."""
    assert fail_with(delay) == MACHINE_NOW + timedelta(days=1)


@pytest.mark.parametrize("skew", [-3600.0, -120.0, -5.0, 5.0, 120.0, 3600.0])
def test_a_reset_is_measured_on_the_servers_clock_when_ours_disagrees(skew):
    """``X-RateLimit-Reset`` is a time on the server's clock. A host whose clock is ``skew``
    seconds off reads the wait from the answer's ``Date`` instead: ten seconds stay about ten
    (not none at all when ours runs ahead, nor ten plus the skew when it runs behind)."""
    server = NOW
    headers = {
        "X-RateLimit-Reset": str(int(server) + 10),
        "Date": email.utils.formatdate(server, usegmt=True),
    }
    delay = server_delay(headers, now=server + skew)
    assert delay is not None
    assert 9.0 <= delay <= 10.0
    dated = {
        "Retry-After": email.utils.formatdate(server + 30, usegmt=True),
        "Date": headers["Date"],
    }
    assert 29.0 <= (server_delay(dated, now=server + skew) or 0.0) <= 30.0


def test_our_clock_is_kept_when_it_agrees_with_the_date_or_there_is_none():
    """Within ``Date``'s one-second precision our clock is the finer one, and an answer without
    a (strictly readable) ``Date`` is read on ours as before."""
    reset = {"X-RateLimit-Reset": str(int(NOW) + 10)}
    assert server_delay(reset, now=NOW + 0.4) == pytest.approx(9.6)
    near = {**reset, "Date": email.utils.formatdate(NOW - 1, usegmt=True)}
    assert server_delay(near, now=NOW + 0.4) == pytest.approx(9.6)
    for odd in ("yesterday", "Sun, 06 Nov 1994 08:49:37 GMT\x00", "²" * 10):
        assert server_delay({**reset, "Date": odd}, now=NOW + 0.4) == pytest.approx(9.6)


@pytest.mark.parametrize(
    "date",
    [
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850, a two-digit year: 1994
        email.utils.formatdate(NOW + 2 * 86400, usegmt=True),
        email.utils.formatdate(NOW - 3601, usegmt=True),
    ],
)
def test_a_date_too_far_from_our_clock_is_a_broken_header_not_the_servers_clock(date):
    """A ``Date`` more than ``MAX_SKEW`` away from our clock is no drift: read as the server's
    clock, a reset 30 s ahead became no wait at all (a 429 storm: ``Date`` in 9999) or a day's
    hold of every rotation (``Date`` in 1970). Such a ``Date`` is ignored and the wait is read
    on our clock, as without one."""
    headers = {"X-RateLimit-Reset": str(int(NOW) + 30), "Date": date}
    assert server_delay(headers, now=NOW) == pytest.approx(30.0)
    dated = {"Retry-After": email.utils.formatdate(NOW + 30, usegmt=True), "Date": date}
    assert server_delay(dated, now=NOW) == pytest.approx(30.0)


@pytest.mark.parametrize("zone", ["CET", "BST", "WEST"])
def test_a_date_in_a_zone_the_parser_does_not_know_is_not_taken_as_utc(zone):
    """HTTP dates are GMT; a server that says its local time with a zone the standard library
    does not know ("18:00:00 CET" at 17:00 UTC) got it back without a zone, taken as UTC: an
    hour ahead of our (right) clock, within the skew corrected, so a reset 30 s ahead read as
    past and nothing waited (a 429 storm). Such a date is not read; asctime's form (no zone,
    GMT by definition) and "-0000" still are."""
    local = email.utils.formatdate(NOW + 3600, usegmt=True).replace("GMT", zone)
    reset = {"X-RateLimit-Reset": str(int(NOW) + 30)}
    assert server_delay({**reset, "Date": local}, now=NOW) == pytest.approx(30.0)
    assert server_delay({"Retry-After": local}, now=NOW) is None
    asctime = datetime.fromtimestamp(NOW + 30, UTC).strftime("%a %b %d %H:%M:%S %Y")
    assert server_delay({"Retry-After": asctime}, now=NOW) == pytest.approx(30.0)
    unzoned = email.utils.formatdate(NOW + 30, usegmt=True).replace("GMT", "-0000")
    assert server_delay({"Retry-After": unzoned}, now=NOW) == pytest.approx(30.0)
