"""Starting and stopping ``python -m rotator.demo.consumer`` processes: for the demo and tests.

``ConsumerProcess`` starts one consumer in its own session (a terminal's Ctrl-C reaches whoever
started it, who stops it in turn), waits, within a deadline, for the ``listening HOST:PORT`` line,
keeps reading its output aside (so it never blocks on a full pipe, and tests can read what it
said) and stops it with SIGTERM. The Vault token goes through the environment, never the command
line, where any local user could read it.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Self

import httpx

from rotator.demo.instance import CONTROL_PATH, PROBE_PATH

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class ConsumerStartError(RuntimeError):
    """The consumer exited, or said nothing, before it was listening; the message has its output."""


class ConsumerProcess:
    """One consumer process; ``start()`` (or ``with``) it, then reach it at ``url``."""

    def __init__(
        self,
        *,
        vault_addr: str,
        vault_token: str,
        path: str,
        emulator_url: str,
        reload_delay: float,
        listen: str = "127.0.0.1:0",
        mount: str = "secret",
        poll: float = 0.5,
        sign_every: float = 0.05,
        control: bool = False,
    ) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "rotator.demo.consumer",
            *("--vault-addr", vault_addr, "--token-env", "VAULT_TOKEN"),
            *("--mount", mount, "--path", path, "--listen", listen),
            *("--emulator", emulator_url, "--reload-delay", f"{reload_delay}s"),
            *("--poll", f"{poll}s", "--sign-every", f"{sign_every}s"),
            *(["--control"] if control else []),
        ]
        self._token = vault_token
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None
        self.output: list[str] = []  # every line it printed (stdout and stderr), in order
        self.address = ""  # HOST:PORT, once listening

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def probe_url(self) -> str:
        return self.url + PROBE_PATH

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        environ = {**os.environ, "VAULT_TOKEN": self._token, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(  # noqa: S603 - our own module, argv built above
            self.argv,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(
            target=self._read, args=(self._process.stdout,), name="consumer-output", daemon=True
        )
        self._reader.start()
        end = time.monotonic() + timeout
        while not self.address:
            try:
                line = self._lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                said = "".join(self.output) or "(nothing)\n"
                raise ConsumerStartError(f"the consumer did not start listening; it said:\n{said}")
            if line.startswith("listening "):
                self.address = line.split(" ", 1)[1].strip()
        return self

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def control(self, **changes: Any) -> dict[str, Any]:
        """``POST /__control`` with ``changes`` (``mode=``, ``reload=``); what it holds now."""
        answer = httpx.post(self.url + CONTROL_PATH, json=changes, timeout=5.0)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def state(self) -> dict[str, Any]:
        """``GET /__control``: the id it signs with, its mode and its signature checks."""
        answer = httpx.get(self.url + CONTROL_PATH, timeout=5.0)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL past ``timeout``; its exit status (``None``: never started)."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout)  # all it said is in ``output``; then its pipe is closed
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode
