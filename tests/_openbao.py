"""A real OpenBao dev server for the tests, and the admin chores they need done on it.

``bao server -dev`` keeps everything in memory, mounts KV v2 at ``secret/`` and accepts a root
token we choose. It listens on a free loopback port; ``start`` waits for ``/v1/sys/health``
(waiting for a real server to start is the one wait the tests allow). Admin setup goes through
hvac with the root token: these helpers are test fixtures, not rotator code.
"""

from __future__ import annotations

from typing import Any

import hvac

from rotator.demo import openbao as devserver


def find_bao() -> str | None:
    try:
        return devserver.find_bao()
    except devserver.DevServerError:
        return None


free_port = devserver.free_port


class OpenBao(devserver.OpenBaoDevServer):
    """The dev server (``rotator.demo.openbao``) plus the admin chores tests need, as root."""

    _root: hvac.Client | None = None

    def stop(self) -> None:
        if self._root is not None:
            self._root.adapter.close()
            self._root = None
        super().stop()

    # --- admin chores, as root ------------------------------------------------------------

    def admin(self) -> hvac.Client:
        """An hvac client with the root token, shared, closed by ``stop``."""
        if self._root is None:
            self._root = hvac.Client(url=self.address, token=self.root_token, timeout=10)
        return self._root

    def enable_auth(self, method: str, path: str) -> None:
        client = self.admin()
        if f"{path}/" not in client.sys.list_auth_methods()["data"]:
            client.sys.enable_auth_method(method_type=method, path=path)

    def write_policy(self, name: str, rules: str) -> None:
        self.admin().sys.create_or_update_policy(name=name, policy=rules)

    def kv_policy(self, name: str, prefix: str, capabilities: str) -> None:
        """A policy granting ``capabilities`` (HCL list body) on ``secret/`` under ``prefix``."""
        self.write_policy(
            name,
            f'path "secret/data/{prefix}/*" {{ capabilities = [{capabilities}] }}\n'
            f'path "secret/metadata/{prefix}/*" {{ capabilities = [{capabilities}] }}\n',
        )

    def create_approle(self, mount: str, role: str, policies: list[str], **token: Any) -> str:
        """Enable AppRole at ``mount`` if needed, create ``role``; returns its role id."""
        self.enable_auth("approle", mount)
        client = self.admin()
        client.auth.approle.create_or_update_approle(
            role_name=role, token_policies=policies, mount_point=mount, **token
        )
        return str(
            client.auth.approle.read_role_id(role_name=role, mount_point=mount)["data"]["role_id"]
        )

    def new_secret_id(self, mount: str, role: str) -> str:
        answer = self.admin().auth.approle.generate_secret_id(role_name=role, mount_point=mount)
        return str(answer["data"]["secret_id"])

    def create_token(self, policies: list[str], **options: Any) -> str:
        """A child token of root, e.g. ``ttl="60s", explicit_max_ttl="1h", renewable=True``."""
        answer = self.admin().auth.token.create(policies=policies, **options)
        return str(answer["auth"]["client_token"])

    def revoke_token(self, token: str) -> None:
        self.admin().auth.token.revoke(token)

    def lookup_token(self, token: str) -> dict[str, Any]:
        return dict(self.admin().auth.token.lookup(token)["data"])

    def read_metadata(self, path: str) -> dict[str, Any]:
        answer = self.admin().secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")
        return dict(answer["data"])


class OpenBaoFileServer:
    """A real (not dev-mode) OpenBao with raft storage: its data survives a stop and a start,
    so tests can take Vault away mid-rotation and bring it back. Initialised with one unseal
    key; ``start`` unseals; KV v2 is mounted at ``secret/``."""

    def __init__(self, binary: str, directory: str) -> None:
        import pathlib

        self.binary = binary
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        self.root_token = ""
        self._unseal_key = ""
        self._process: Any = None
        config = self.dir / "openbao.hcl"
        (self.dir / "data").mkdir(exist_ok=True)
        cluster = free_port()
        # OpenBao 2 keeps only integrated (raft) and PostgreSQL storage: a one-node raft it is.
        config.write_text(
            f'storage "raft" {{\n  path = "{self.dir / "data"}"\n  node_id = "torture"\n}}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  cluster_address = "127.0.0.1:{cluster}"\n  tls_disable = true\n}}\n'
            f'api_addr = "{self.address}"\ncluster_addr = "http://127.0.0.1:{cluster}"\n'
            "ui = false\n"
        )
        self._config = config

    def start(self) -> None:
        import subprocess

        import httpx

        log = (self.dir / "openbao.log").open("ab")
        self._process = subprocess.Popen(
            [self.binary, "server", f"-config={self._config}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        with httpx.Client(timeout=30) as http:  # raft's init and unseal take seconds
            self._wait(http, lambda r: r.status_code in {200, 429, 472, 473, 501, 503})
            if not self.root_token:
                init = http.put(
                    f"{self.address}/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1}
                ).json()
                self._unseal_key, self.root_token = init["keys_base64"][0], init["root_token"]
            http.put(f"{self.address}/v1/sys/unseal", json={"key": self._unseal_key})
            self._wait(http, lambda r: r.status_code == 200)
            headers = {"X-Vault-Token": self.root_token}
            mounts = http.get(f"{self.address}/v1/sys/mounts", headers=headers).json()
            if "secret/" not in mounts.get("data", mounts):
                http.post(
                    f"{self.address}/v1/sys/mounts/secret",
                    headers=headers,
                    json={"type": "kv", "options": {"version": "2"}},
                ).raise_for_status()

    def _wait(self, http: Any, ready: Any) -> None:
        import time

        import httpx

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"OpenBao exited; see {self.dir / 'openbao.log'}")
            try:
                if ready(http.get(f"{self.address}/v1/sys/health")):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # waiting for a real server to start
        raise RuntimeError("OpenBao did not become ready")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=15)
