"""Durations as written in config and on the command line."""

from __future__ import annotations

import pytest

from rotator.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 2_592_000),
        ("12h", 43_200),
        ("90m", 5_400),
        ("20ms", 0.02),
        ("1h30m", 5_400),
        ("1.5s", 1.5),
        ("45", 45),
        (" 2w ", 1_209_600),
        ("0", 0),
    ],
)
def test_parse(text, seconds):
    """Numbers with units, combined units and bare seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "d", "30x", "-5", "5m3", "m5", "inf", "nan", "1h-1m"])
def test_parse_refuses(text):
    """Anything else is an error that lists the accepted forms."""
    with pytest.raises(ValueError, match="expected a number of seconds"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(86_400, "1d"), (0.02, "20ms"), (5_400, "1h30m"), (0, "0ms"), (60, "1m")]
)
def test_format(seconds, text):
    """The shortest readable form, which parses back to the same value."""
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
