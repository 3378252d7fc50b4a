"""Races and faults: several daemons, a CronJob loop and rotate-now calls on the same targets,
actors SIGKILLed and SIGSTOPped at random (a paused holder wakes up after its lease expired),
Intercom misbehaving, Vault stopped and restarted, and consumers signing throughout. With
``slow_clients``, the first daemon is never killed or paused: slow clients (silent and dribbling
sockets) hold connections to its server while it rotates, and its /healthz and /readyz are
probed throughout; each must answer within a second. A consumers target's consumer processes
(``consumers.Fleet``) are SIGKILLed and come back (loading the path as it is then), or for a
while answer their probe with the secret held before or 503, or do not switch to a new secret,
preferably mid-rollout."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _load import HealthWatch, SlowClients
from consumers import HOOK_CONSUMER, Consumer
from lab import Lab, Target

from rotator.demo.openbao import free_port
from rotator.emulator import FaultSpec

#: Wall clocks of the daemons, the CronJob loop and the rotate-now loop: days apart, as pods on
#: badly kept nodes are. Decisions are judged on Vault's clock, so none of this may matter.
SKEWS = ("+2d", "-2d", None)
CRON_SKEW, ROTATE_NOW_SKEW = "+1d", "-36h"
#: Probe rounds counted in one streak at least this far apart (on Vault's clock).
PROBE_SPACING = "500ms"


@dataclass
class Actor:
    tag: str
    argv: tuple[str, ...]
    port: int | None = None
    skew: str | None = None
    process: subprocess.Popen[str] | None = None
    paused_until: float = 0.0
    steady: bool = False  # never killed or paused: the one the slow clients and probes load

    @property
    def hook(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.port else None


@dataclass
class Chaos:
    """What to do to the actors, and how often (seconds between events)."""

    daemons: int = 3
    kill_every: float = 4.0
    pause_every: float = 6.0
    vault_restart_every: float | None = None
    vault_down_for: float = 3.0
    rotate_now_every: float = 2.0
    slow_clients: bool = False
    #: Seconds between two things done to a consumer process (a SIGKILL, or a probe flipped).
    fleet_every: float = 3.0
    extra: list[str] = field(default_factory=list)


def rotations_done(lab: Lab, targets: list[Target], start: dict[str, int]) -> int:
    total = 0
    for target in targets:
        try:
            record = lab.record(target) or {}
        except Exception:  # noqa: BLE001 - Vault may be down mid-restart: count later
            return -1
        total += record.get("generation", 0) - start.get(target.name, 0)
    return total


def run_chaos(
    lab: Lab, targets: list[Target], chaos: Chaos, *, rotations: int, deadline: float
) -> int:
    """Run until ``rotations`` rotations completed (across targets) or ``deadline`` passes."""
    storm = Storm(lab, targets, chaos)
    storm.start()
    try:
        storm.rage(rotations, deadline)
    finally:
        storm.calm()
    _settle(lab, targets, storm.cron_config)
    littered = [t for t in targets if lab.strays(t)]
    if littered:
        # A list that lagged (faults) can hide an orphan from the rotation whose lost create
        # answer made it; the product sweeps orphans at its next list (PRODUCT rule 3), which
        # an idle target only makes at its next rotation: give those targets that rotation.
        lab.stats.swept_at_rest += len(littered)
        for target in littered:
            lab.log(f"{target.name}: at rest with {lab.strays(target)} live besides its own")
            lab.run(storm.cron_config, "rotate-now", target.name)
        _settle(lab, targets, storm.cron_config)
    for target in storm.fleets:
        target.fleet.stop()
    lab.stats.consumer_checks += sum(c.checks for c in storm.consumers)
    lab.stats.consumer_failures += sum(c.failures for c in storm.consumers)
    final = rotations_done(lab, targets, storm.start_generations)
    for target in targets:
        lab.check(target, settled=True)
        lab.count_posts(target, rotations=(lab.record(target) or {}).get("generation", 0))
    lab.stats.rotations += final
    lab.stats.consumer_rotations += rotations_done(lab, storm.fleets, storm.start_generations)
    if final < rotations:
        lab.stats.stuck += 1
        lab.violate(f"I5: only {final} of {rotations} rotations completed before the deadline")
    return final


class Storm:
    """The actors of one chaos run, and what happens to them."""

    def __init__(self, lab: Lab, targets: list[Target], chaos: Chaos) -> None:
        self.lab = lab
        self.targets = targets
        self.chaos = chaos
        self.configs: dict[str, Path] = {}
        self.actors: list[Actor] = []
        for i in range(chaos.daemons):
            port = free_port()
            tag = f"daemon{i}"
            self.configs[tag] = lab.write_config(
                lab.workdir / f"{tag}.toml",
                targets,
                schedule="2s",
                grace="30s",
                listen_port=port,
                probe_spacing=PROBE_SPACING,
            )
            steady = chaos.slow_clients and i == 0
            skew = SKEWS[i % len(SKEWS)]
            self.actors.append(Actor(tag, ("run",), port=port, skew=skew, steady=steady))
        self.slow: SlowClients | None = None
        self.watch: HealthWatch | None = None
        self.cron_config = lab.write_config(
            lab.workdir / "cron.toml",
            targets,
            schedule="2s",
            grace="30s",
            probe_spacing=PROBE_SPACING,
        )
        self.fleets = [t for t in targets if t.fleet is not None]
        self.shakes = 0
        hooks = [a.hook for a in self.actors if a.hook]
        self.consumers = [Consumer(lab, t, hooks) for t in targets]
        self.start_generations = {
            t.name: (lab.record(t) or {}).get("generation", 0) for t in targets
        }
        self.stop = threading.Event()
        self.loops = [
            threading.Thread(
                target=_cron_loop, args=(lab, self.cron_config, self.stop), daemon=True
            ),
            threading.Thread(
                target=_rotate_now_loop,
                args=(lab, self.cron_config, targets, chaos, self.stop),
                daemon=True,
            ),
        ]

    def start(self) -> None:
        for actor in self.actors:
            actor.process = self.lab.spawn(
                self.configs[actor.tag], *actor.argv, tag=actor.tag, skew=actor.skew
            )
        for thread in [*self.consumers, *self.loops]:
            thread.start()
        steady = next((a for a in self.actors if a.steady), None)
        if steady is not None and steady.port is not None and steady.hook is not None:
            self.watch = HealthWatch(steady.hook)
            self.watch.start()
            # Connecting needs the server up: the watch's first answer says it is.
            if _until(lambda w=self.watch: w.probes > 0, 30):
                self.slow = SlowClients(steady.port, silent=16, dribbling=16)

    def rage(self, rotations: int, deadline: float) -> None:
        lab, chaos = self.lab, self.chaos
        now = time.monotonic()
        next_kill, next_pause = now + chaos.kill_every, now + chaos.pause_every
        next_vault = now + chaos.vault_restart_every if chaos.vault_restart_every else float("inf")
        next_fleet = now + chaos.fleet_every if self.fleets else float("inf")
        # A round that asks for Vault restarts ends only after one: enough rotations can finish
        # before the first is due on a quiet machine, and the round would prove nothing of them.
        restarts_wanted = lab.stats.vault_restarts + (1 if chaos.vault_restart_every else 0)
        # Nor before a tenth of them were a consumers target's, whose rollouts take longer.
        named = rotations // 10 if self.fleets else 0
        while time.monotonic() < deadline:
            done = rotations_done(lab, self.targets, self.start_generations) >= rotations
            done = done and rotations_done(lab, self.fleets, self.start_generations) >= named
            if done and lab.stats.vault_restarts >= restarts_wanted:
                return
            now = time.monotonic()
            if now >= next_kill:
                _kill_one(lab, self.actors, self.configs)
                next_kill = now + lab.rng.uniform(0.5, 1.5) * chaos.kill_every
            if now >= next_pause:
                _pause_one(lab, self.actors)
                next_pause = now + lab.rng.uniform(0.5, 1.5) * chaos.pause_every
            if now >= next_vault:
                _restart_vault(lab, chaos.vault_down_for)
                next_vault = now + lab.rng.uniform(0.5, 1.5) * (chaos.vault_restart_every or 0)
            # Wanted mid-rollout; done anyway once 3 s overdue.
            if now >= next_fleet and self._shake(overdue=now >= next_fleet + 3):
                next_fleet = now + lab.rng.uniform(0.5, 1.5) * chaos.fleet_every
            for target in self.fleets:
                target.fleet.tick()
            _wake_paused(lab, self.actors)
            self._check()
            self.stop.wait(0.2)

    def _shake(self, *, overdue: bool) -> bool:
        """SIGKILL a consumer process (it comes back in up to 1.5 s), or for 1-4 s have its
        probe answer the secret held before, or 503, or have it not switch to a new secret;
        ``False``: not mid-rollout, not yet."""
        lab = self.lab
        target = lab.rng.choice(self.fleets)
        try:
            phase = (lab.record(target) or {}).get("phase")
        except httpx.HTTPError:
            return False
        if phase != "awaiting_rollout" and not overdue:
            return False
        fleet, i = target.fleet, lab.rng.randrange(len(target.fleet.ports))
        lab.log(f"{target.name} is {phase}: a consumer process misbehaves")
        self.shakes += 1
        if self.shakes % 2:  # in turn: every run does both
            fleet.kill(i, down_for=lab.rng.uniform(0.0, 1.5))
        else:
            mode = lab.rng.choice(("old", "down", "stuck"))
            fleet.flip(i, mode, for_seconds=lab.rng.uniform(1.0, 4.0))
        return True

    def _check(self) -> None:
        for target in self.targets:
            try:
                self.lab.check(target, settled=False)
            except httpx.HTTPError:
                continue  # Vault restarting: check again shortly

    def calm(self) -> None:
        self.stop.set()
        if self.slow is not None:
            self.slow.close()
        if self.watch is not None:
            self.watch.stop.set()
            self.watch.join(10)
            stats = self.lab.stats
            stats.health_probes += self.watch.probes
            stats.health_worst = max(stats.health_worst, self.watch.worst)
            stats.health_slow += len(self.watch.over_budget)
            for slow in self.watch.over_budget[:10]:
                self.lab.violate(f"health: a probe of the loaded daemon took too long: {slow}")
        for actor in self.actors:
            _end(actor)
        for target in self.fleets:
            target.fleet.calm()  # all back and answering: the settling ahead needs their probes
        for consumer in self.consumers:
            consumer.stop.set()
            consumer.join(timeout=5)
        for loop in self.loops:
            loop.join(timeout=30)


def _settle(lab: Lab, targets: list[Target], config: Path) -> None:
    """Chaos over (faults too): confirm what awaits rollout, as consumers would, and drive
    unfinished rotations on (rotate-now joins them and skips any backoff) until all rest."""
    lab.emulator.faults.set(FaultSpec())
    for _ in range(10):
        busy = False
        for target in targets:
            phase = (lab.record(target) or {}).get("phase")
            if phase == "awaiting_rollout":
                named = ("--consumer", HOOK_CONSUMER) if target.fleet is not None else ()
                lab.run(config, "confirm", target.name, *named)
                phase = (lab.record(target) or {}).get("phase")
            if phase not in {"idle", None}:
                lab.run(config, "rotate-now", target.name)
                busy = True
        if not busy:
            return
    lab.violate(
        "I5: targets did not come to rest after the chaos: "
        + ", ".join(f"{t.name}={(lab.record(t) or {}).get('phase')}" for t in targets)
    )


def _cron_loop(lab: Lab, config: Path, stop: threading.Event) -> None:
    while not stop.wait(lab.rng.uniform(0.5, 2.0)):
        lab.run(config, "reconcile", timeout=120, skew=CRON_SKEW)


def _rotate_now_loop(
    lab: Lab, config: Path, targets: list[Target], chaos: Chaos, stop: threading.Event
) -> None:
    while not stop.wait(lab.rng.uniform(0.5, 1.5) * chaos.rotate_now_every):
        lab.run(
            config, "rotate-now", lab.rng.choice(targets).name, timeout=120, skew=ROTATE_NOW_SKEW
        )


def _until(condition: Callable[[], bool], timeout: float) -> bool:
    """Wait for something a real process does; False if it did not happen in time."""
    waited = threading.Event()
    ends = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > ends:
            return False
        waited.wait(0.1)
    return True


def _kill_one(lab: Lab, actors: list[Actor], configs: dict[str, Path]) -> None:
    actor = lab.rng.choice([a for a in actors if not a.steady])
    if actor.process is None:
        return
    actor.process.send_signal(signal.SIGKILL)
    actor.process.wait()
    actor.paused_until = 0.0
    lab.stats.kills += 1
    lab.log(f"SIGKILL {actor.tag}")
    actor.process = lab.spawn(configs[actor.tag], *actor.argv, tag=actor.tag, skew=actor.skew)


def _pause_one(lab: Lab, actors: list[Actor]) -> None:
    running = [a for a in actors if a.process is not None and not a.paused_until and not a.steady]
    if not running:
        return
    actor = lab.rng.choice(running)
    assert actor.process is not None
    actor.process.send_signal(signal.SIGSTOP)
    # Often longer than the lease ttl (1 s): it wakes up to find its lease taken over.
    actor.paused_until = time.monotonic() + lab.rng.uniform(0.5, 4.0)
    lab.stats.pauses += 1
    lab.log(f"SIGSTOP {actor.tag}")


def _wake_paused(lab: Lab, actors: list[Actor]) -> None:
    for actor in actors:
        if actor.paused_until and time.monotonic() >= actor.paused_until and actor.process:
            actor.process.send_signal(signal.SIGCONT)
            actor.paused_until = 0.0
            lab.log(f"SIGCONT {actor.tag}")


def _restart_vault(lab: Lab, down_for: float) -> None:
    lab.log("OpenBao stopping")
    lab.bao.stop()
    lab.stats.vault_restarts += 1
    threading.Event().wait(down_for)
    lab.bao.start()
    lab.log("OpenBao back")


def _end(actor: Actor) -> None:
    process = actor.process
    if process is None:
        return
    if actor.paused_until:
        process.send_signal(signal.SIGCONT)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
