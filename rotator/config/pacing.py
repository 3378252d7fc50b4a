"""``[intercom]``: how fast rotator may call Intercom (``rotator.intercom.pacing`` obeys it).

Intercom documents a rate limit per app: 10,000 API calls a minute for a private app (25,000 a
minute per workspace across its apps), enforced as 1/6 of that in each 10-second window, with
``429 Too Many Requests`` beyond it. rotator keeps under it by pacing, not by retrying 429s:
each *budget* (the targets sharing one token, by default) sends at most
``max_calls_per_minute``, at most a second's worth at once. The default leaves a fifth of the
limit to the app's other users, a second replica and the 10-second windows' edges.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from rotator.config import bounds
from rotator.config.common import Model

#: Intercom's documented default for a private app (calls a minute).
INTERCOM_APP_LIMIT = 10_000
#: rotator's default: 80 % of it.
DEFAULT_CALLS_PER_MINUTE = 8_000


class IntercomSettings(Model):
    """How rotator paces its Intercom calls."""

    #: Calls a minute one budget may make (every attempt counts, retries included). Intercom
    #: may raise an app's limit on request: raise this with it, never above it.
    max_calls_per_minute: Annotated[int, BeforeValidator(bounds.not_boolean)] = Field(
        default=DEFAULT_CALLS_PER_MINUTE, ge=1, le=1_000_000
    )
    #: Which targets share a budget: ``token`` (each token is one app's: targets with the same
    #: token and base URL share one) or ``endpoint`` (every target at one base URL shares one:
    #: for one public app installed in several workspaces, whose tokens differ but whose
    #: limit is the app's).
    rate_limit_scope: Literal["token", "endpoint"] = "token"
