"""What a configuration accepts but its author probably did not mean: warnings, not errors.

Errors (``ConfigError``) are for what cannot work; these settings work exactly as written, so
refusing them would break configurations that mean them (a benchmark wants ``grace_period =
"0s"``). ``check-config`` prints each warning with its TOML key and still exits 0; every other
verb logs it as ``config.warning``.
"""

from __future__ import annotations

from rotator.config.settings import Settings, TargetSettings
from rotator.durations import format_duration


def config_warnings(settings: Settings) -> list[str]:
    """Every target's warnings, each prefixed with its TOML key (``targets[0] (web)``)."""
    return [
        f"targets[{i}] ({t.name}): {warning}"
        for i, t in enumerate(settings.targets)
        for warning in target_warnings(t)
    ]


def target_warnings(target: TargetSettings) -> list[str]:
    found = []
    if target.base_url and "region" in target.model_fields_set:
        found.append(
            f"region {target.region!r} is ignored: base_url {target.base_url!r} overrides it "
            "(remove one of the two)"
        )
    if target.grace_period == 0 and target.confirmation != "hook":
        found.append(
            "grace_period 0s deletes the old secret as soon as the new one is stored, before "
            "any consumer can reload it"
        )
    interval = target.schedule.interval
    if interval is not None and target.grace_period > interval:
        found.append(
            f"grace_period {format_duration(target.grace_period)} is longer than the schedule "
            f"interval {format_duration(interval)}: each rotation starts as soon as the previous "
            "one has ended"
        )
    found += [
        f"consumer {c.name}: stable_probes 1 counts a single answer: one flapping replica can "
        "retire the old secret (2 or more is safer)"
        for c in target.consumers
        if c.probed and c.stable_probes == 1
    ]
    return found
