"""``rotator demo``: watch the pieces work on this machine, with nothing to configure.

This first demo starts the Intercom emulator in-process and walks through a rotation by hand with
the client: create a new secret, list, verify a signature with both secrets, delete the old one,
and show that only the new one verifies. Secret material is never printed, only fingerprints.
"""

from __future__ import annotations

import time

import httpx

from rotator.emulator import Emulator, Token, user_hash
from rotator.intercom import IntercomClient, Platforms, SecretInfo

_TOKEN = "demo-token-0123456789"  # noqa: S105 - the demo emulator's own token


def run_demo(port: int = 0) -> int:
    emulator = Emulator(tokens=[Token.parse(f"{_TOKEN}:read,write")])
    with (
        emulator.serve(port=port) as running,
        IntercomClient(_TOKEN, base_url=running.url) as client,
    ):
        print(f"Intercom emulator listening on {running.url}\n")
        web = Platforms(web=True)
        old = client.create_secret("Production Web", web)
        _step(f"created the current secret {old.info.id} ({old.secret.fingerprint()})")
        new = client.create_secret("Production Web · rotated", web)
        _step(f"created its successor {new.info.id} ({new.secret.fingerprint()})")
        _show(client.list_secrets())
        signed_old = user_hash(old.secret.reveal(), "user-42")
        signed_new = user_hash(new.secret.reveal(), "user-42")
        _step(
            "Messenger accepts both signatures while both secrets live: "
            f"old={_verify(running.url, signed_old)}, new={_verify(running.url, signed_new)}"
        )
        outcome = client.delete_secret(old.info.id)
        _step(f"deleted the old secret {old.info.id}: {outcome.value}")
        _show(client.list_secrets())
        _step(
            "after the delete: "
            f"old={_verify(running.url, signed_old)}, new={_verify(running.url, signed_new)}"
        )
        again = client.delete_secret(old.info.id)
        _step(f"deleting it again is harmless: {again.value}")
    print("\nDone. The full rotation engine (Vault, scheduler, hook) arrives in a later version.")
    return 0


def _step(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _show(secrets: list[SecretInfo]) -> None:
    listed = ", ".join(f"{s.id} {s.name!r}" for s in secrets) or "none"
    _step(f"Intercom lists: {listed}")


def _verify(url: str, signature: str) -> bool:
    answer = httpx.get(f"{url}/__verify", params={"user_id": "user-42", "user_hash": signature})
    return bool(answer.json()["valid"])
