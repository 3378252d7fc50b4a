"""What every configuration model shares: the strict base model and the host-name rule."""

from __future__ import annotations

import ipaddress
import os
import re

# pydantic scans every installed package's entry points for plugins when its first model is
# built (about 8 ms of each start); rotator uses none, and its cold start has a budget. This is
# the module that builds rotator's first model, so it is said here, before any is built.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from pydantic import BaseModel, ConfigDict

from rotator.core.names import valid_target_name


class Model(BaseModel):
    """Frozen, and unknown keys are errors: a typo never silently falls back to a default."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def listen_host_ok(host: str) -> bool:
    """An IP address, or a name that could resolve (whether it does is known only at ``run``):
    ``256.1.1.1`` looks like an address and is none, so getaddrinfo would refuse it there."""
    if all(ch.isdigit() or ch == "." for ch in host) or ":" in host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True
    return all(_HOST_LABEL.fullmatch(label) for label in host.removesuffix(".").split("."))


def checked_name(value: str, appears_in: str) -> str:
    """``value`` if it is a valid name for a target or a consumer (``rotator.core.names``);
    ``appears_in`` says where it shows up, so the error says why the rule is strict."""
    if not valid_target_name(value):
        raise ValueError(
            f"{value!r}: use lowercase letters, digits, '.', '_' and '-' (at most 63), "
            f"starting with a letter or digit; it appears in {appears_in}"
        )
    return value
