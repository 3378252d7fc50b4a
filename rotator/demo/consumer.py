"""A reference consumer of a rotated secret, as a real process: ``python -m rotator.demo.consumer``.

It plays one instance of a service that reads its Intercom secret from Vault: it polls the KV v2
path over plain HTTP (no hvac, as a service in any language would), switches to a new secret a
reload delay after it first sees it, signs a ``user_hash`` and a Messenger JWT with what it holds
and has the emulator's ``/__verify`` check both, and answers rotator's probe
(``docs/probe-protocol.md``) with the id and fingerprint of the secret it signs with now.

The demo runs two of them. The rollout tests run many and, with ``--control``, make them misbehave
through ``POST /__control`` (garbage, slow, old or no answers; no reloads) and ask what each one
really holds (``GET /__control``): the ground truth a probe's verdict is checked against.

Theory of operation: three threads share one ``Consumer`` under a lock. The poller reads Vault
and decides when to switch; the signer signs with whatever is held at that moment; the HTTP
server answers from it. The main thread waits for SIGTERM or SIGINT and exits 0.

Secret material is never printed, logged or served: only Intercom ids and probe fingerprints.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

import httpx

from rotator.core.names import valid_secret_id
from rotator.demo.instance import Consumer, Held, ProbeServer, parse_listen
from rotator.durations import parse_duration
from rotator.emulator.state import messenger_jwt, user_hash
from rotator.redaction import SecretValue
from rotator.signing import probe_fingerprint

MAX_ID_CHARS = 24  # Intercom's ids are short numbers

# --- Vault: the consumers' path, read as any service would -------------------------------------


class PathUnreadable(Exception):
    """The path could not be read, or holds no secret yet; the message says why (no material)."""


def read_path(http: httpx.Client, url: str, token: str) -> Held:
    """The secret at a KV v2 data ``url``: ``{"secret", "intercom_id", ...}`` as rotator writes."""
    try:
        answer = http.get(url, headers={"X-Vault-Token": token})
    except httpx.HTTPError as e:
        raise PathUnreadable(f"vault unreachable ({type(e).__name__})") from None
    if answer.status_code == 404:
        raise PathUnreadable("nothing at the path yet")
    if answer.status_code != 200:
        raise PathUnreadable(f"vault answered HTTP {answer.status_code}")
    try:
        data = answer.json()["data"]["data"]
        secret, intercom_id = data["secret"], data["intercom_id"]
    except (ValueError, KeyError, TypeError):
        raise PathUnreadable("the path does not hold rotator's secret and intercom_id") from None
    held_id = str(intercom_id) if isinstance(intercom_id, str | int) else ""
    # An id as long as material may be material in the wrong field: it is never printed.
    if not isinstance(secret, str) or not secret or len(held_id) > MAX_ID_CHARS:
        raise PathUnreadable("the path does not hold rotator's secret and intercom_id")
    if not valid_secret_id(held_id):
        raise PathUnreadable("the path's intercom_id is not an Intercom secret id")
    return Held(held_id, SecretValue(secret), probe_fingerprint(secret))


def poll(
    consumer: Consumer, options: argparse.Namespace, token: str, stop: threading.Event
) -> None:
    url = f"{options.vault_addr.rstrip('/')}/v1/{options.mount}/data/{options.path.strip('/')}"
    problem: str | None = None
    with httpx.Client(timeout=max(1.0, options.poll)) as http:
        while True:
            try:
                switched = consumer.saw(read_path(http, url, token))
            except PathUnreadable as e:
                if str(e) != problem:  # said once, not every poll
                    problem = str(e)
                    say(problem)
            else:
                problem = None
                if switched is not None:
                    before, now = switched
                    say(
                        f"switched {before.intercom_id} -> {now.intercom_id}"
                        if before
                        else f"holds {now.intercom_id}"
                    )
            if stop.wait(options.poll):
                return


# --- Signing: both ways Messenger accepts, checked by the emulator -----------------------------


def sign(consumer: Consumer, options: argparse.Namespace, stop: threading.Event) -> None:
    url = f"{options.emulator.rstrip('/')}/__verify"
    rejected: set[tuple[str, str]] = set()
    n = 0
    with httpx.Client(timeout=5.0) as http:
        while not stop.wait(options.sign_every):
            held = consumer.held
            if held is None:
                continue
            n += 1
            user = f"user-{n % 1000}"
            secret = held.secret.reveal()
            exp = int(time.time() + options.jwt_ttl) if options.jwt_ttl else None
            queries = {
                "user_hash": {"user_id": user, "user_hash": user_hash(secret, user)},
                "jwt": {"user_id": user, "jwt": messenger_jwt(secret, user, exp=exp)},
            }
            for method, params in queries.items():
                try:
                    answer = http.get(url, params=params)
                    valid = answer.status_code == 200 and answer.json().get("valid") is True
                except (httpx.HTTPError, ValueError, AttributeError):
                    consumer.count(method, "errors")
                    continue
                consumer.count(method, "ok" if valid else "failed")
                if not valid and (method, held.intercom_id) not in rejected:
                    rejected.add((method, held.intercom_id))
                    say(f"{method} signed with secret {held.intercom_id} REJECTED")


# --- The process -------------------------------------------------------------------------------


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_duration(text: str) -> float:
    seconds = _duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than zero, not {text!r}")
    return seconds


def _listen(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rotator.demo.consumer",
        description="One instance of a service that reads its Intercom secret from Vault, signs "
        "with it, and answers rotator's probe (docs/probe-protocol.md).",
    )
    parser.add_argument("--vault-addr", required=True, help="Vault or OpenBao address")
    parser.add_argument(
        "--token-env", default="VAULT_TOKEN", help="environment variable holding the Vault token"
    )
    parser.add_argument("--mount", default="secret", help="the KV v2 mount (default: secret)")
    parser.add_argument("--path", required=True, help="the consumers' path under the mount")
    parser.add_argument(
        "--listen", type=_listen, default=("127.0.0.1", 0), help="HOST:PORT (port 0: any free)"
    )
    parser.add_argument("--emulator", required=True, help="the Intercom emulator's URL")
    parser.add_argument(
        "--reload-delay", type=_duration, default=2.0, help="how long after a change it switches"
    )
    parser.add_argument("--poll", type=_positive_duration, default=0.5, help="Vault poll period")
    parser.add_argument(
        "--sign-every", type=_positive_duration, default=0.05, help="signing period"
    )
    parser.add_argument(
        "--jwt-ttl", type=_duration, default=3600.0, help="JWT exp from now; 0: no exp claim"
    )
    parser.add_argument(
        "--control", action="store_true", help="serve /__control (tests): misbehave on demand"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    token = os.environ.get(options.token_env, "").strip()
    if not token:
        print(f"consumer: ${options.token_env} must hold a Vault token", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    consumer = Consumer(options.reload_delay)
    host, port = options.listen
    try:
        server = ProbeServer((host, port), consumer, control=options.control, stop=stop)
    except OSError as e:
        print(f"consumer: cannot listen on {host}:{port}: {e.strerror or e}", file=sys.stderr)
        return 1
    workers = [
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True),
        threading.Thread(target=poll, args=(consumer, options, token, stop), daemon=True),
        threading.Thread(target=sign, args=(consumer, options, stop), daemon=True),
    ]
    for worker in workers:
        worker.start()
    print(f"listening {server.address}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    for worker in workers:
        worker.join(timeout=5)
    return 0


def say(text: str) -> None:
    if text:
        print(f"consumer: {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
