"""Real clock skew for real processes: libfaketime preloaded into a `rotator` process."""

from __future__ import annotations


def faketime(offset: str) -> dict[str, str]:
    """The environment that moves a process's wall clock by ``offset`` (``+2d``, ``-36h``), by
    preloading libfaketime; its monotonic clock is left alone."""
    import libfaketime  # a dev dependency: loaded only when a skew is asked for

    _, env = libfaketime.get_reload_information()
    return {**env, "FAKETIME": offset, "DONT_FAKE_MONOTONIC": "1", "FAKETIME_NO_CACHE": "1"}
