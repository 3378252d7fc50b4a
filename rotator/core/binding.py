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
from rotator.core.record import Binding, Phase, Record
from rotator.redaction import SecretValue, hide_userinfo


def binding_for(endpoint: str, token: SecretValue, vault_path: str | None = None) -> Binding:
    """The binding of a process using ``token`` at ``endpoint`` for the consumers' path
    ``vault_path``: the token never leaves as itself, only as a truncated digest that cannot be
    turned back into it."""
    digest = hashlib.sha256(b"rotator-workspace-v1\0" + token.reveal().encode()).hexdigest()
    # The record is shared and shown by `status`: a password in base_url stays out of it.
    return Binding(
        endpoint=hide_userinfo(endpoint.rstrip("/")),
        workspace=f"token:{digest[:16]}",
        vault_path=vault_path,
    )


def needs_evidence(record: Record | None, mine: Binding) -> bool:
    """Whether ``mine`` may act on ``record`` only after a list answer shows it the same
    workspace (``binding_problem`` then decides)."""
    if record is None or _same(record.binding, mine):
        return False
    if record.current_id is not None or record.pending_id is not None:
        return True
    # No secret yet. Bound to another workspace while it may have made one there (a create
    # whose answer was lost), it is that workspace's; blocked (a wrong token fixed, say), or
    # never bound, the first process to act on it binds it.
    return (
        record.binding is not None
        and record.phase is not Phase.BLOCKED
        and bool(record.owned_names)
    )


def _same(bound: Binding | None, mine: Binding) -> bool:
    """Bound to ``mine`` (a binding recorded before paths were part of it names none)."""
    if bound is None:
        return False
    return (bound.endpoint, bound.workspace) == (mine.endpoint, mine.workspace) and (
        bound.vault_path in {None, mine.vault_path}
    )


def binding_problem(
    record: Record | None, mine: Binding, listed: Iterable[LiveSecret] | None
) -> str | None:
    """Why the process bound to ``mine`` must not act on ``record``; ``None`` when it may
    (same binding, a record with no secret yet, or evidence in ``listed``)."""
    if record is None or not needs_evidence(record, mine):
        return None
    bound = record.binding
    if bound is not None and bound.vault_path not in {None, mine.vault_path}:
        return (
            f"the state record of target {record.target} belongs to the consumers' path "
            f"{bound.vault_path}, and this process is configured to store at {mine.vault_path}. "
            "Check the target's vault_path: consumers read the path the record knows. To move "
            f"consumers to another path, adopt the secret there: rotator adopt {record.target} "
            "--secret-id ID --force."
        )
    ours = {i for i in (record.current_id, record.pending_id) if i}
    moved = bound is not None and bound.endpoint != mine.endpoint
    names = set(record.owned_names)
    for secret in listed or ():
        if secret.id in ours and (not moved or secret.name in names):
            return None
        if not ours and secret.name in names:
            return None  # a secret it created (an orphan of a first create) shows the workspace
    where = (
        f"Intercom at {bound.endpoint} (token {bound.workspace})"
        if bound is not None
        else "the workspace whose secrets consumers hold"
    )
    shown = f"the target's secret {', '.join(sorted(ours))}" if ours else "a secret the target made"
    looked = "" if listed is not None else " (Intercom could not be listed to check)"
    return (
        f"the state record of target {record.target} belongs to {where}, and this process, "
        f"configured for Intercom at {mine.endpoint} (token {mine.workspace}), does not see "
        f"{shown} in that workspace{looked}. Check the target's base_url or "
        "region and its token: another workspace's configuration must not share these Vault "
        "paths. If the workspace is right and the secret is gone, take a live secret over with "
        f"rotator adopt {record.target} --secret-id ID --force."
    )
