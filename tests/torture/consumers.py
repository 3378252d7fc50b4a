"""The lab's consumers, and I10: the old secret goes only once every named consumer is on the new.

Every target has a ``Consumer`` thread: a web backend that signs with what the consumers' path
holds and confirms each new secret through a live daemon's hook (as ``billing`` on a consumers
target). A consumers target (``confirmation = "consumers"``) also has a ``Fleet``: the real
``rotator.demo.consumer --control`` processes of its probed consumer ``web-backend``, on fixed
loopback ports, so one SIGKILLed comes back at the URL rotator probes and loads the path afresh.

**I10**, judged at every DELETE the emulator audits for a consumers target, on ground truth:
(a) no running consumer process holds the secret being deleted (``GET /__control``, which says
what it signs with, not what its probe answers: one in mode ``old`` holds the new secret and
names the old), unless an emergency was asked for, or an operator confirmed ``web-backend``
through the CLI; (b) ``billing`` sent a confirmation of the secret the consumers' path holds,
and the record shows it confirmed for the store of that secret, unless an emergency was asked.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import httpx
from lab import HOOK_TOKEN, Lab, Target

from rotator.demo.consumer_process import ConsumerProcess, ConsumerStartError
from rotator.demo.openbao import free_port
from rotator.emulator import StoredSecret, user_hash

HOOK_CONSUMER = "billing"
PROBED_CONSUMER = "web-backend"
#: How long each process waits before switching to a new secret: they switch at different times.
RELOAD_DELAYS = (0.3, 1.2)
#: The crash matrix waits for them to switch before each trial: shorter there.
QUICK_RELOAD_DELAYS = (0.05, 0.15)


class Fleet:
    """The consumer processes of one consumers target. ``count_failures``: a signature the
    emulator rejects is a violation (not after an emergency, which deletes a held secret). They
    have the emulator verify in its default workspace (``rotator.demo.consumer`` names none):
    where their signatures count, the target lives there (``Lab.add_target(workspace=)``)."""

    def __init__(
        self,
        lab: Lab,
        target: Target,
        *,
        delays: tuple[float, ...] = RELOAD_DELAYS,
        sign_every: float = 0.25,
        count_failures: bool = True,
    ) -> None:
        self.lab = lab
        self.target = target
        self.delays = delays
        self.sign_every = sign_every
        self.count_failures = count_failures
        self.ports = [free_port() for _ in delays]
        self.processes: list[ConsumerProcess | None] = [None] * len(delays)
        self.down_until = [0.0] * len(delays)
        self.flipped_until = [0.0] * len(delays)
        self._lock = threading.RLock()
        target.fleet = self

    @property
    def probe_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}/.well-known/intercom-secret" for port in self.ports]

    def start(self) -> Fleet:
        """Start them all at once, each waiting for its own ``listening`` line (on another
        free port if its own was taken meanwhile: no configuration names them yet)."""
        starting = [threading.Thread(target=self._first, args=(i,)) for i in range(len(self.ports))]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()
        return self

    def _first(self, i: int) -> None:
        for _ in range(3):
            if self._start(i):
                return
            self.ports[i] = free_port()

    def _start(self, i: int) -> bool:
        process = ConsumerProcess(
            vault_addr=self.lab.bao.address,
            vault_token=self.lab.bao.root_token,
            path=self.target.vault_path,
            emulator_url=self.lab.running.url,
            reload_delay=self.delays[i],
            listen=f"127.0.0.1:{self.ports[i]}",
            poll=0.1,
            sign_every=self.sign_every,
            control=True,
        )
        try:
            process.start()
        except ConsumerStartError as e:  # its port taken meanwhile: try again on the next tick
            self.lab.log(f"{self.target.name}: consumer {i} did not start: {e}")
            return False
        with self._lock:
            self.processes[i] = process
            self.down_until[i] = 0.0
        self.lab.log(f"{self.target.name}: consumer {i} pid {process.pid} on {process.address}")
        return True

    # --- chaos -------------------------------------------------------------------------------

    def kill(self, i: int, down_for: float) -> None:
        """SIGKILL consumer ``i``; ``tick`` starts it again after ``down_for`` seconds."""
        with self._lock:
            process, self.processes[i] = self.processes[i], None
            self.down_until[i] = time.monotonic() + down_for
            self.flipped_until[i] = 0.0
        if process is None or process.pid is None:
            return
        self._collect(process)
        os.kill(process.pid, signal.SIGKILL)
        process.stop()  # reaps it
        self.lab.stats.consumer_kills += 1
        self.lab.log(f"SIGKILL {self.target.name} consumer {i} (down {down_for:.1f}s)")

    def flip(self, i: int, mode: str, for_seconds: float) -> None:
        """Consumer ``i``'s probe answers the secret held before (``old``) or 503 (``down``),
        or it stops switching to new secrets (``stuck``: it really holds the old one)."""
        with self._lock:
            process = self.processes[i]
            if process is None or self.flipped_until[i]:
                return
            self.flipped_until[i] = time.monotonic() + for_seconds
        try:
            process.control(**({"reload": False} if mode == "stuck" else {"mode": mode}))
        except httpx.HTTPError:
            return
        self.lab.stats.consumer_flips += 1
        self.lab.log(f"{self.target.name} consumer {i} mode {mode} for {for_seconds:.1f}s")

    def tick(self, *, now: float | None = None) -> None:
        """Start what is due to come back, and put flipped ones back to ``ok`` when due."""
        now = time.monotonic() if now is None else now
        for i in range(len(self.ports)):
            with self._lock:
                process = self.processes[i]
                restart = process is None and now >= self.down_until[i]
                unflip = (
                    process is not None and self.flipped_until[i] and now >= self.flipped_until[i]
                )
            if restart:
                self._start(i)
            elif unflip and process is not None:
                try:
                    process.control(mode="ok", reload=True)
                except httpx.HTTPError:
                    continue  # busy: next tick
                with self._lock:
                    self.flipped_until[i] = 0.0
                self.lab.log(f"{self.target.name} consumer {i} mode ok")

    def calm(self) -> None:
        """Everything back and answering: the end of a chaos run settles with every probe ok."""
        self.tick(now=float("inf"))

    # --- ground truth --------------------------------------------------------------------------

    def holds(self) -> dict[str, str | None]:
        """What each running process signs with now (``GET /__control``), by address;
        ``None`` for one that did not answer (being killed, say)."""
        with self._lock:
            running = [p for p in self.processes if p is not None]
        held: dict[str, str | None] = {}
        for process in running:
            try:
                held[process.address] = process.state()["holds"]
            except (httpx.HTTPError, ValueError, KeyError):
                held[process.address] = None
        return held

    def wait_holding(self, secret_id: str, timeout: float = 15) -> bool:
        """Every process switched to ``secret_id`` (they reload within a second)."""
        ends = time.monotonic() + timeout
        while time.monotonic() < ends:
            held = self.holds()
            if len(held) == len(self.ports) and set(held.values()) == {secret_id}:
                return True
            threading.Event().wait(0.1)
        return False

    def audit(self, secret: StoredSecret) -> None:
        """I10 at a DELETE of ``secret`` (see the module's docstring)."""
        lab, name = self.lab, self.target.name
        lab.stats.consumer_deletes += 1
        try:
            record: dict[str, Any] | None = lab.record(self.target) or {}
            path_id = (lab.consumer_data(self.target) or {}).get("intercom_id")
        except httpx.HTTPError:
            record, path_id = None, None  # Vault away: judge on what the lab knows
        asked = name in lab.emergencies
        emergency = _rotation(record, "emergency") if record is not None else asked
        if emergency and not asked:
            lab.violate(f"I10 {name}: deleting {secret.id} in an emergency nobody asked for")
        holders = sorted(a for a, held in self.holds().items() if held == secret.id)
        if holders and not emergency and not _confirmed(record, PROBED_CONSUMER, by_cli=True):
            lab.violate(f"I10 {name}: deleted {secret.id} while consumer {holders} held it")
        if emergency or record is None or not _reached(lab, self.target, record, secret.id):
            return
        if (name, HOOK_CONSUMER, path_id) not in lab.confirms_sent:
            lab.violate(
                f"I10 {name}: deleted {secret.id} before {HOOK_CONSUMER} confirmed {path_id}"
            )
        idle = record.get("phase") == "idle"  # completed meanwhile: by every consumer?
        if not (
            _rotation(record, "confirmed_by") == "consumers"
            if idle
            else _confirmed(record, HOOK_CONSUMER)
        ):
            lab.violate(
                f"I10 {name}: deleted {secret.id}; the record does not show {HOOK_CONSUMER} "
                f"confirmed {record.get('pending_id')} as stored now"
            )

    # --- the end -------------------------------------------------------------------------------

    def _collect(self, process: ConsumerProcess) -> None:
        """Its output into the lab's (I6 scans it), its signature checks into the lab's counts
        (it is about to go)."""
        self.lab.keep_output(
            f"consumer process {process.address} of {self.target.name}", "".join(process.output)
        )
        try:
            checks = process.state()["checks"]
        except (httpx.HTTPError, ValueError, KeyError):
            return
        done = sum(c["ok"] + c["failed"] for c in checks.values())
        failed = sum(c["failed"] for c in checks.values())
        stats = self.lab.stats
        stats.consumer_checks += done
        if self.count_failures and failed:
            stats.consumer_failures += failed
            self.lab.violate(f"consumer process {process.address}: {failed} signature(s) rejected")

    def stop(self) -> None:
        with self._lock:
            running = [p for p in self.processes if p is not None]
            self.processes = [None] * len(self.ports)
        for process in running:
            self._collect(process)
            if process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)  # all at once: each takes a moment
        for process in running:
            process.stop()


def _confirmed(record: dict[str, Any] | None, consumer: str, *, by_cli: bool = False) -> bool:
    """The record shows ``consumer`` confirmed the secret as stored now (by the CLI)."""
    if record is None:
        return False
    for entry in record.get("rollout") or ():
        if (
            entry.get("name") == consumer
            and entry.get("secret_id") == record.get("pending_id")
            and entry.get("stored_version") == record.get("stored_version")
            and entry.get("confirmed_at") is not None
        ):
            return not by_cli or entry.get("confirmed_by") == "cli"
    return False


def _rotation(record: dict[str, Any], key: str) -> Any:
    """``key`` of the rotation a DELETE belongs to: the record's, or, when it is idle, the one
    it completed last (another process finished it while this DELETE was on its way)."""
    history = record.get("history") or [{}]
    return record.get(key) if record.get("phase") != "idle" else history[-1].get(key)


def _reached(lab: Lab, target: Target, record: dict[str, Any], secret_id: str) -> bool:
    """Whether consumers may have held ``secret_id`` (an orphan never reached them)."""
    return (
        secret_id in lab.adopted_ids(target)
        or secret_id == record.get("current_id")
        or secret_id in (record.get("known_ids") or ())
    )


class Consumer(threading.Thread):
    """A web backend: re-reads the secret from Vault every 50 ms (keeping the last one while
    Vault is away), signs a user_hash, has Intercom verify it, and confirms each new secret
    through a live daemon's hook once it has reloaded it (as ``billing`` on a consumers
    target, up to 3 s later)."""

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
        self._due: dict[str, float] = {}
        self.consumer = HOOK_CONSUMER if target.fleet is not None else None

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
                    "workspace": self.target.workspace,
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
        if self.consumer is not None:
            # billing is a job that gets round to it: before the probes confirm, or after.
            due = self._due.setdefault(secret_id, time.monotonic() + self.lab.rng.uniform(0, 3))
            if time.monotonic() < due:
                return
        hook = self.lab.rng.choice(self.hooks)
        body = {"secret_id": secret_id}
        if self.consumer is not None:
            body["consumer"] = self.consumer
            self.lab.note_confirm(self.target, self.consumer, secret_id)
        try:
            answer = http.post(
                f"{hook}/v1/targets/{self.target.name}/confirm",
                json=body,
                headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
            )
        except httpx.HTTPError:
            return  # that daemon is down (killed or paused): another one next time
        if answer.status_code in {200, 409}:
            self._confirmed.add(secret_id)
