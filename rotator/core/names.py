"""The shapes of the names users and Intercom give things, checked in one place.

A target's name appears in URLs (the hook), metric labels and Vault paths; an Intercom secret id
is an opaque string from Intercom. Anything outside these shapes is a typo or an attack, refused
before it reaches a decision.
"""

from __future__ import annotations

import re

#: Lowercase letters, digits, '.', '_' and '-', at most 63, starting with a letter or digit.
TARGET_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
#: 1 to 128 letters, digits, '.', '_', ':' or '-': an Intercom secret id or a rotation id.
SECRET_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def valid_target_name(name: str) -> bool:
    return TARGET_NAME.fullmatch(name) is not None


def valid_secret_id(secret_id: str) -> bool:
    return SECRET_ID.fullmatch(secret_id) is not None
