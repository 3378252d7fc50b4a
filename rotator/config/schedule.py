"""When a target is due: an interval (``30d``, ``12h``, ``90m``) or a 5-field cron line, in UTC.

A cron line must fire within the longest interval allowed (1825d) of the time it is read.

Due-times are computed from the persisted time of the last completed rotation, so a CronJob that
runs every five minutes rotates only when due, and a daemon restart changes nothing. Cron lines
are parsed by APScheduler's ``CronTrigger`` (imported only when a cron schedule is used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from rotator.config.bounds import SCHEDULE_INTERVAL, describe
from rotator.durations import DurationTooLong, format_duration, parse_duration, shifted

# Seconds; the demo rotates every few seconds, production every few weeks, none every decade.
MIN_INTERVAL, MAX_INTERVAL = SCHEDULE_INTERVAL

_END_OF_TIME = datetime.max.replace(tzinfo=UTC)
# Past this, a cron line is never due (no real record gets there; a damaged one may).
_CRON_HORIZON = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Schedule:
    """An interval in seconds, or a cron expression."""

    text: str
    interval: float | None = None
    cron: str | None = None

    @classmethod
    def parse(cls, text: str) -> Schedule:
        cleaned = " ".join(text.split())
        if len(cleaned.split(" ")) == 5:
            _fires_soon(cleaned)
            return cls(text=cleaned, cron=cleaned)
        try:
            seconds = parse_duration(cleaned)
        except DurationTooLong:
            seconds = math.inf  # refused below, with the range
        except ValueError:
            raise ValueError(
                f"schedule {text!r} is neither an interval (e.g. 30d, 12h, 90m) nor a 5-field "
                "cron line (e.g. '0 3 * * 1')"
            ) from None
        if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
            raise ValueError(
                f"schedule interval must be from {describe(MIN_INTERVAL)} to "
                f"{describe(MAX_INTERVAL)}, not {text[:40]!r}"
            )
        return cls(text=cleaned, interval=seconds)

    def next_after(self, last: datetime) -> datetime:
        """The first due-time strictly after ``last`` (an aware UTC datetime).

        ``last`` comes from a stored record: one damaged to year 9999 gives the last instant
        datetime can hold (never due), not an ``OverflowError`` in every pass."""
        if self.interval is not None:
            return shifted(last, self.interval)
        assert self.cron is not None  # noqa: S101 - parse() sets one of the two
        start = shifted(last, 1.0)
        if start >= _CRON_HORIZON:  # APScheduler's own arithmetic overflows near year 9999
            return _END_OF_TIME
        fire: datetime | None = cron_trigger(self.cron).get_next_fire_time(None, start)
        return _END_OF_TIME if fire is None else fire.astimezone(UTC)

    def describe(self) -> str:
        if self.interval is not None:
            return f"every {format_duration(self.interval)}"
        return f"cron {self.cron!r} (UTC)"


def _fires_soon(expression: str) -> None:
    """Refuse (``ValueError``) a cron line APScheduler rejects, or one that does not fire
    within ``MAX_INTERVAL`` of now: ``0 0 31 2 *`` (31 February) is valid to APScheduler and
    never fires, so the target would never rotate. Bounded by ``end_date``, the search stops
    there rather than run on to year 9999."""
    now = datetime.now(UTC)
    horizon = shifted(now, MAX_INTERVAL)
    if cron_trigger(expression, end=horizon).get_next_fire_time(None, now) is None:
        raise ValueError(
            f"cron line {expression!r} does not fire in the next {describe(MAX_INTERVAL)}: "
            "does it name a day that never comes, such as 31 February? The target would "
            "never rotate"
        )


def cron_trigger(
    expression: str, *, end: datetime | None = None, timezone: tzinfo = UTC, what: str = "cron line"
) -> Any:
    """APScheduler's trigger for a 5-field crontab line (crontab weekday numbers), in
    ``timezone``; ``what`` names the line in the error."""
    from apscheduler.triggers.cron import CronTrigger

    minute, hour, day, month, weekday = expression.split(" ")
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=crontab_weekdays(weekday),
            end_date=end,
            timezone=timezone,
        )
    except ValueError as e:
        raise ValueError(f"invalid {what} {expression!r}: {e}") from None


_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def crontab_weekdays(field: str) -> str:
    """Translate crontab's day-of-week numbers (0 and 7 Sunday, 1 Monday) into day names.

    APScheduler 3.x numbers weekdays from Monday = 0, even in ``from_crontab``, so "0 3 * * 1"
    would fire on Tuesdays (agronholm/apscheduler#286, fixed only in 4.0). Names mean the same
    in both, so numbers, ranges and steps are expanded into names here.
    """
    if field == "*" or not any(ch.isdigit() for ch in field):
        return field
    days: list[str] = []
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        if step_text and not (step_text.isdigit() and int(step_text) > 0):
            raise ValueError(f"invalid day-of-week step in {field!r}")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            low, _, high = span.partition("-")
            first, last = _day_number(low, field), _day_number(high, field)
        else:
            first = last = _day_number(span, field)
            if step_text:
                last = 6
        if first > last:
            raise ValueError(f"day-of-week range {span!r} runs backwards")
        days += [_DAY_NAMES[n] for n in range(first, last + 1, step)]
    return ",".join(dict.fromkeys(days))


def _day_number(text: str, field: str) -> int:
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    names = {name: i for i, name in enumerate(_DAY_NAMES[:7])}
    if text.lower() in names:
        return names[text.lower()]
    raise ValueError(f"invalid day of week {text!r} in {field!r}")
