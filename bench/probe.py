"""Benchmark: one probe round over 1,000 consumer instances must take at most 2 s (issue 12).

    .venv/bin/python bench/probe.py                     # 1,000 instances, 5 rounds
    .venv/bin/python bench/probe.py --instances 50 --rounds 1 --concurrency 128

One separate server process (asyncio) listens on 1,000 loopback addresses,
``127.1.<i // 250>.<i % 250 + 1>``, all on one port, each answering the protocol's JSON with the
same id and fingerprint: one process serves them all, so the figure measures rotator's side.
This process runs ``HttpProber.probe`` (the code a pass runs) on one consumer listing the 1,000
``probe_urls``, ``--rounds`` times, and checks every instance answered the id and fingerprint.

Prints ``probe: 1000 instances, median X s, max Y s (goal <= 2 s)`` and ``switched: ...``; exits
1 when a round is over the goal, 2 when some instance was not seen switched.

bench/probe_pass.py starts the same server with the body ``-``: it answers ``{}`` until a line on
its stdin gives the JSON to answer (the new secret, known only once rotated).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import resource
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

GOAL_SECONDS = 2.0
INTERCOM_ID = "103"


def address(i: int) -> str:
    return f"127.1.{i // 250}.{i % 250 + 1}"


def raise_nofile() -> int:
    """Raise the open-files limit to its hard limit: 1,000 listeners plus 1,000 connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --- the server process ------------------------------------------------------------------------


def http_answer(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


async def take_bodies(answer: list[bytes]) -> None:
    """Body ``-``: every line on stdin is the JSON all instances answer from then on, and
    ``set`` on stdout says so (bench/probe_pass.py learns the new secret only after start)."""
    loop = asyncio.get_running_loop()
    lines = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(lines), sys.stdin)
    while line := await lines.readline():
        answer[0] = http_answer(line.strip())
        print("set", flush=True)


async def serve(instances: int, port: int, body: bytes) -> None:
    control = body == b"-"
    answer = [http_answer(b"{}" if control else body)]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer[0])
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    for _ in range(20):
        servers: list[asyncio.Server] = []
        try:
            first = await asyncio.start_server(handle, address(0), port)
            servers.append(first)
            chosen = first.sockets[0].getsockname()[1]
            for i in range(1, instances):
                servers.append(await asyncio.start_server(handle, address(i), chosen))
        except OSError as e:
            for server in servers:
                server.close()
            if e.errno != errno.EADDRINUSE or port != 0:
                raise
            continue  # port 0: the port the first address got is taken on another; retry
        print(f"ready {chosen}", flush=True)
        if control:
            await take_bodies(answer)
        await asyncio.Event().wait()  # until the benchmark terminates this process
    raise SystemExit("found no port free on every address")


# --- the benchmark -----------------------------------------------------------------------------


@dataclass
class Figures:
    instances: int
    rounds: list[float]
    switched: list[int]

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    def line(self) -> str:
        return (
            f"probe: {self.instances} instances, median {self.median:.2f} s, "
            f"max {max(self.rounds):.2f} s (goal <= {GOAL_SECONDS:g} s)"
        )


def measure(instances: int, rounds: int, *, port: int = 0, concurrency: int = 256) -> Figures:
    """Start the server process, run ``rounds`` probe rounds, stop the server."""
    from rotator.config.consumers import ProbeSettings
    from rotator.config.settings import TargetSettings
    from rotator.probe import HttpProber
    from rotator.signing import probe_fingerprint

    raise_nofile()
    fingerprint = probe_fingerprint(secrets.token_urlsafe(32))
    body = json.dumps({"intercom_id": INTERCOM_ID, "fingerprint": fingerprint})
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(instances), str(port), body],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = (server.stdout.readline() if server.stdout else "").split()
        if not ready or ready[0] != "ready":
            raise SystemExit(f"the server process did not start (exit {server.wait()})")
        chosen = int(ready[1])
        urls = [
            f"http://{address(i)}:{chosen}/.well-known/intercom-secret" for i in range(instances)
        ]
        target = TargetSettings(
            name="bench",
            secret_name="Bench",  # noqa: S106 - the Intercom secret's display name
            vault_path="bench/probe",
            token_env="INTERCOM_TOKEN",  # noqa: S106 - the variable's name; never read here
            confirmation="consumers",
            consumers=[{"name": "fleet", "probe_urls": urls}],
        )
        prober = HttpProber(ProbeSettings(concurrency=concurrency))
        figures = Figures(instances, [], [])
        for _ in range(rounds):
            started = time.perf_counter()
            (probe,) = prober.probe(target)
            figures.rounds.append(time.perf_counter() - started)
            figures.switched.append(
                sum(
                    1
                    for a in probe.instances
                    if a.intercom_id == INTERCOM_ID and a.fingerprint == fingerprint
                )
            )
            if figures.switched[-1] < instances:
                errors = sorted({a.error or "wrong id" for a in probe.instances if a.error})
                print(f"not switched: {errors}", file=sys.stderr)
        return figures
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--port", type=int, default=0, help="0: a port free on every address")
    parser.add_argument("--concurrency", type=int, default=256, help="[probes] concurrency")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        raise_nofile()
        instances, port, body = args.serve
        asyncio.run(serve(int(instances), int(port), body.encode()))
        return 0
    from rotator.logs import configure_logging

    configure_logging("console", "warning")
    figures = measure(args.instances, args.rounds, port=args.port, concurrency=args.concurrency)
    print(figures.line())
    print(f"switched: {min(figures.switched)}/{args.instances} in every round")
    print("rounds: " + " ".join(f"{seconds:.2f}" for seconds in figures.rounds) + " s")
    if min(figures.switched) < args.instances:
        return 2
    return 1 if max(figures.rounds) > GOAL_SECONDS else 0


if __name__ == "__main__":
    raise SystemExit(main())
