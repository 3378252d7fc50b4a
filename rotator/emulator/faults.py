"""Fault injection for the emulator: the bad days of a real API, on demand.

The spec syntax is ``rotator.emulator.fault_help.SPEC_HELP`` (also shown by
``rotator emulate-intercom --help``).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from rotator.durations import parse_duration

_SERVER_ERRORS = (500, 502, 503, 504)


class FaultSpecError(ValueError):
    """A ``--faults`` spec that cannot be understood; the message says why."""


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Probabilities (0..1) of each fault and their parameters."""

    rate_limit: float = 0.0
    retry_after: float = 1.0
    server_error: float = 0.0
    server_status: int | None = None
    latency: float = 0.0
    latency_seconds: float = 0.0
    post_drop: float = 0.0
    post_drop_times: int | None = None
    list_lag: float = 0.0
    list_lag_seconds: float = 0.0
    seed: int | None = None

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        values: dict[str, float | int | None] = {}
        for raw in filter(None, (item.strip() for item in text.split(","))):
            kind, sep, rest = raw.partition("=")
            kind = kind.strip().lower()
            if not sep:
                raise FaultSpecError(f"fault {raw!r} has no '='; write KIND=RATE, e.g. 429=0.2")
            rate_text, _, param = rest.partition(":")
            if kind == "seed":
                values["seed"] = _integer(rate_text, "seed")
                continue
            if kind not in _KINDS:
                raise FaultSpecError(
                    f"unknown fault {kind!r}; choose from {', '.join(_KINDS)} or seed"
                )
            rate_field, param_field = _KINDS[kind]
            if rate_field in values:
                raise FaultSpecError(f"fault {kind!r} is given twice")
            values[rate_field] = _rate(rate_text, kind)
            if param:
                values[param_field] = _PARAMS[kind](param)
            elif kind in _NEEDS_PARAM:
                raise FaultSpecError(
                    f"{kind} needs a duration: {kind}=RATE:DURATION, e.g. {_NEEDS_PARAM[kind]}"
                )
        return cls(**values)  # type: ignore[arg-type]  # keys come from _KINDS, checked above

    def describe(self) -> str:
        """The spec written back in its own syntax (``none`` when nothing is injected)."""
        parts = []
        if self.rate_limit:
            parts.append(f"429={self.rate_limit:g}:{self.retry_after:g}")
        if self.server_error:
            suffix = f":{self.server_status}" if self.server_status else ""
            parts.append(f"5xx={self.server_error:g}{suffix}")
        if self.latency:
            parts.append(f"latency={self.latency:g}:{self.latency_seconds * 1000:g}ms")
        if self.post_drop:
            times = f":{self.post_drop_times}" if self.post_drop_times is not None else ""
            parts.append(f"post_drop={self.post_drop:g}{times}")
        if self.list_lag:
            parts.append(f"list_lag={self.list_lag:g}:{self.list_lag_seconds * 1000:g}ms")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        return ",".join(parts) or "none"


def _rate(text: str, kind: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise FaultSpecError(
            f"rate of {kind!r} must be a number from 0 to 1, not {text!r}"
        ) from None
    if not 0.0 <= rate <= 1.0:
        raise FaultSpecError(f"rate of {kind!r} must be from 0 to 1, not {text!r}")
    return rate


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise FaultSpecError(f"{what} must be an integer, not {text!r}") from None


def _status(text: str) -> int:
    status = _integer(text, "5xx status")
    if not 500 <= status <= 599:
        raise FaultSpecError(f"5xx status must be from 500 to 599, not {status}")
    return status


def _seconds(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise FaultSpecError(str(e)) from None


# kind -> (rate field, parameter field)
_KINDS: dict[str, tuple[str, str]] = {
    "429": ("rate_limit", "retry_after"),
    "5xx": ("server_error", "server_status"),
    "latency": ("latency", "latency_seconds"),
    "post_drop": ("post_drop", "post_drop_times"),
    "list_lag": ("list_lag", "list_lag_seconds"),
}
# Kinds whose parameter is required, with an example.
_NEEDS_PARAM = {"latency": "1:20ms", "list_lag": "0.5:3s"}


def _times(text: str) -> int:
    return _integer(text, "post_drop TIMES")


_PARAMS: dict[str, Callable[[str], float | int]] = {
    "429": _seconds,
    "5xx": _status,
    "latency": _seconds,
    "post_drop": _times,
    "list_lag": _seconds,
}


class Faults:
    """Draws faults from a spec; the spec can be swapped while the emulator runs."""

    def __init__(self, spec: FaultSpec | None = None) -> None:
        self._lock = threading.Lock()
        self._spec = FaultSpec()
        self._rng = random.Random()
        self._post_drops = 0
        self.set(spec or FaultSpec())

    @property
    def spec(self) -> FaultSpec:
        return self._spec

    def set(self, spec: FaultSpec) -> None:
        with self._lock:
            self._spec = spec
            self._rng = random.Random(spec.seed)
            self._post_drops = 0

    def roll_post_drop(self) -> bool:
        """Whether to drop this create's answer (counting against ``post_drop_times``)."""
        spec = self._spec
        if not self.roll(spec.post_drop):
            return False
        with self._lock:
            if spec.post_drop_times is not None and self._post_drops >= spec.post_drop_times:
                return False
            self._post_drops += 1
            return True

    def list_lag(self) -> float:
        """Seconds this list answer lags behind the workspace (0: it is current)."""
        spec = self._spec
        return spec.list_lag_seconds if self.roll(spec.list_lag) else 0.0

    def roll(self, rate: float) -> bool:
        if rate <= 0.0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def server_status(self) -> int:
        if self._spec.server_status is not None:
            return self._spec.server_status
        with self._lock:
            return self._rng.choice(_SERVER_ERRORS)
