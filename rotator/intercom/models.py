"""Typed models of the objects in Intercom's identity-verification-secret contract.

Parsing is strict where rotator's safety depends on a field (``id``, the ``secret`` of a new
secret) and tolerant elsewhere: the contract marks no property as required, so a missing flag
reads as ``False`` and a missing ``created_at`` as ``None``. Parsing errors are ``ValueError``
with a message that never quotes the material.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rotator.core.endpoints import PLATFORM_NAMES, REGION_BASE_URLS, Region
from rotator.redaction import SecretValue

__all__ = ["PLATFORM_NAMES", "REGION_BASE_URLS", "Region"]

#: Scope Intercom requires to list secrets.
READ_SCOPE = "read_secure_mode_secret"
#: Scope Intercom requires to create or delete secrets.
WRITE_SCOPE = "write_secure_mode_secret"


@dataclass(frozen=True, slots=True)
class Platforms:
    """Which Messenger platforms a secret signs for; at least one must be enabled."""

    web: bool = False
    ios: bool = False
    android: bool = False

    def __post_init__(self) -> None:
        if not (self.web or self.ios or self.android):
            raise ValueError("at least one platform (web, ios, android) must be enabled")

    @classmethod
    def from_names(cls, names: Iterable[str]) -> Platforms:
        """``["web", "ios"]`` -> ``Platforms(web=True, ios=True)``."""
        chosen = set(names)
        unknown = chosen - set(PLATFORM_NAMES)
        if unknown:
            raise ValueError(
                f"unknown platform(s) {sorted(unknown)}; choose from {list(PLATFORM_NAMES)}"
            )
        return cls(web="web" in chosen, ios="ios" in chosen, android="android" in chosen)

    def names(self) -> list[str]:
        return [name for name in PLATFORM_NAMES if getattr(self, name)]

    def as_request(self) -> dict[str, bool]:
        """The flags as the create request sends them."""
        return {
            "supports_web": self.web,
            "supports_ios": self.ios,
            "supports_android": self.android,
        }


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """An identity verification secret's metadata, as ``GET /secure_mode_secrets`` lists it."""

    id: str
    name: str
    supports_web: bool
    supports_ios: bool
    supports_android: bool
    created_at: int | None

    @classmethod
    def from_api(cls, obj: Any) -> SecretInfo:
        if not isinstance(obj, Mapping):
            raise ValueError("a secret must be a JSON object")
        raw_id = obj.get("id")
        # The contract says string; an integer id is the same id, so accept it rather than
        # stop rotating if Intercom ever sends one.
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or raw_id == "":
            raise ValueError("a secret has no usable 'id'")
        name = obj.get("name", "")
        if not isinstance(name, str):
            raise ValueError(f"secret {raw_id}: 'name' is not a string")
        created_at = obj.get("created_at")
        if created_at is not None and (
            isinstance(created_at, bool) or not isinstance(created_at, int)
        ):
            raise ValueError(f"secret {raw_id}: 'created_at' is not a Unix timestamp")
        return cls(
            id=str(raw_id),
            name=name,
            supports_web=_flag(obj, "supports_web", raw_id),
            supports_ios=_flag(obj, "supports_ios", raw_id),
            supports_android=_flag(obj, "supports_android", raw_id),
            created_at=created_at,
        )


def _flag(obj: Mapping[str, Any], key: str, secret_id: object) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"secret {secret_id}: {key!r} is not a boolean")
    return value


@dataclass(frozen=True, slots=True)
class CreatedSecret:
    """A secret just created: its metadata and, this one time, its material."""

    info: SecretInfo
    secret: SecretValue

    @classmethod
    def from_api(cls, obj: Any) -> CreatedSecret:
        info = SecretInfo.from_api(obj)
        material = obj.get("secret")
        if not isinstance(material, str) or not material:
            raise ValueError(f"secret {info.id}: the answer carries no 'secret' material")
        return cls(info=info, secret=SecretValue(material))


def parse_secret_list(body: Any) -> list[SecretInfo]:
    """Parse the ``identity_verification_secret_list`` object."""
    if not isinstance(body, Mapping):
        raise ValueError("the list answer is not a JSON object")
    data = body.get("data")
    if not isinstance(data, list):
        raise ValueError("the list answer has no 'data' array")
    return [SecretInfo.from_api(item) for item in data]


class DeleteOutcome(enum.Enum):
    """What a DELETE achieved. Both mean the secret is gone; callers treat them alike."""

    DELETED = "deleted"
    ALREADY_DELETED = "already_deleted"
