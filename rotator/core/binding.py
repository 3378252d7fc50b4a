"""A record belongs to one Intercom workspace and endpoint (PRODUCT.md rule 4).

A copy of the configuration pointed at another workspace (staging, with the same Vault paths)
must not create secrets there and store them where production's consumers read. So a record
remembers the ``Binding`` of the process that acts on it: the endpoint, and a digest of the
access token (Intercom's API names no workspace id; a token belongs to exactly one workspace).

A process whose binding differs may take the record over only with evidence that its token
reaches the same workspace: one of its list answers shows the record's current or new secret.
Ids are Intercom's own, so another workspace never lists them; a list that lags may miss them
(then the process refuses for now, and says why), but never shows another workspace's secrets.
When the endpoint changed too (a proxy in front of the API, say), the listed secret must also
carry a name this target gave it, in case two endpoints number their secrets alike. A new token
for the same workspace is thus taken over without an operator; a wrong one is refused, with
nothing written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from rotator.core.observation import LiveSecret
from rotator.core.record import Binding, Record
from rotator.redaction import SecretValue


def binding_for(endpoint: str, token: SecretValue) -> Binding:
    """The binding of a process using ``token`` at ``endpoint``: the token never leaves as
    itself, only as a truncated digest that cannot be turned back into it."""
    digest = hashlib.sha256(b"rotator-workspace-v1\0" + token.reveal().encode()).hexdigest()
    return Binding(endpoint=endpoint.rstrip("/"), workspace=f"token:{digest[:16]}")


def needs_evidence(record: Record | None, mine: Binding) -> bool:
    """Whether ``mine`` may act on ``record`` only after a list answer shows it the same
    workspace (``binding_problem`` then decides)."""
    if record is None or record.binding == mine:
        return False
    return record.current_id is not None or record.pending_id is not None


def binding_problem(
    record: Record | None, mine: Binding, listed: Iterable[LiveSecret] | None
) -> str | None:
    """Why the process bound to ``mine`` must not act on ``record``; ``None`` when it may
    (same binding, a record with no secret yet, or evidence in ``listed``)."""
    if record is None or not needs_evidence(record, mine):
        return None
    ours = {i for i in (record.current_id, record.pending_id) if i}
    bound = record.binding
    moved = bound is not None and bound.endpoint != mine.endpoint
    names = set(record.owned_names)
    for secret in listed or ():
        if secret.id in ours and (not moved or secret.name in names):
            return None
    where = (
        f"Intercom at {bound.endpoint} (token {bound.workspace})"
        if bound is not None
        else "the workspace whose secrets consumers hold"
    )
    shown = ", ".join(sorted(ours))
    looked = "" if listed is not None else " (Intercom could not be listed to check)"
    return (
        f"the state record of target {record.target} belongs to {where}, and this process, "
        f"configured for Intercom at {mine.endpoint} (token {mine.workspace}), does not see "
        f"the target's secret {shown} in that workspace{looked}. Check the target's base_url or "
        "region and its token: another workspace's configuration must not share these Vault "
        "paths. If the workspace is right and the secret is gone, take a live secret over with "
        f"rotator adopt {record.target} --secret-id ID --force."
    )
