"""Where a target's Intercom lives and what its secrets sign for: the vocabulary the
configuration and the Intercom adapter share (regions, base URLs, platform names).

Pure constants and one validation, below both of them, so that neither depends on the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from rotator.redaction import hide_userinfo

Region = Literal["us", "eu", "au"]

#: The API host of each Intercom region (the contract's ``servers``).
REGION_BASE_URLS: Mapping[str, str] = {
    "us": "https://api.intercom.io",
    "eu": "https://api.eu.intercom.io",
    "au": "https://api.au.intercom.io",
}

#: The Messenger platforms a secret may sign for, in the order Intercom lists them.
PLATFORM_NAMES = ("web", "ios", "android")


def resolve_base_url(region: str, base_url: str | None) -> str:
    """The API root for ``region``, or ``base_url`` when given (it wins)."""
    if base_url:
        try:
            parts = urlsplit(base_url)
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            host = None
        if parts.scheme not in {"http", "https"} or not host:
            shown = hide_userinfo(base_url)
            raise ValueError(f"base_url must be an http(s) URL with a host, not {shown!r}")
        if parts.query or parts.fragment:
            raise ValueError("base_url must not carry a query or fragment")
        return base_url.rstrip("/")
    try:
        return REGION_BASE_URLS[region]
    except KeyError:
        raise ValueError(
            f"unknown Intercom region {region!r}; choose from {sorted(REGION_BASE_URLS)} "
            "or set base_url"
        ) from None
