"""The abort matrix: ``rotator abort`` crashed at every failpoint it and what follows pass.

Two starting points, each on a fresh target: a rotation ``awaiting_rollout`` (the new secret at
the consumers' path: the abort stores the old one back, awaits that rollout, then deletes the
new one) and one in ``creating`` (``rotate-now`` killed before its store: the abort deletes the
secret created for it, which never reached consumers). The steps after the setup are real CLI
processes: ``abort --actor torture`` and, awaiting, the ``confirm`` of the restore (on a
consumers target: one probe round once every consumer process holds the restored secret, then
``confirm --consumer billing``). A traced dry run lists every (step, point, n-th hit); each
becomes a trial (kill, raise) where that step runs with the point armed (a marker proves it
fired), then recovery as an operator would (``abort`` again when the crash came before it was
recorded, ``confirm`` of the restore, ``reconcile``).

Judged on ground truth, besides the lab's I1-I4 and I10 (``consumers.Fleet.audit``) checks:
at every DELETE, the old secret is never the one deleted, and the abandoned one goes only once
the restore was confirmed after it was stored or stored for the grace period, on Vault's clock
(the KV version's ``created_time``); at the end the target is idle, the old secret current, at
the consumers' path and live, the abandoned one gone, and the history says "aborted". On the
consumers target the real consumer processes (``consumers.Fleet``) sign throughout: one
rejected signature is a violation. ``sample`` (the CI run) takes each point once per case on
plain targets, in a step and with an action drawn, and a few on the consumers target;
``everything`` (a soak) takes every trial.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from consumers import HOOK_CONSUMER, QUICK_RELOAD_DELAYS, Fleet
from crash import ACTIONS
from lab import ROTATOR, Lab, Target

from rotator.emulator import StoredSecret
from rotator.emulator.state import DEFAULT_WORKSPACE

MAX_PASSES = 8
#: Trials on the consumers target in the CI run: each takes ~9 s, and they cannot overlap.
CONSUMER_SAMPLE = 1
GRACE = 1.0  # seconds: the lab's grace period (``Lab.write_config``)
ABORT = ("abort", "{t}", "--reason", "torture", "--actor", "torture")
_names = itertools.count(1)


@dataclass(frozen=True)
class Trial:
    case: str  # "awaiting" or "creating"
    step: int  # which step of ``_steps`` runs with the point armed
    point: str
    nth: int
    action: str
    consumers: bool = False

    @property
    def spec(self) -> str:
        return f"{self.point}={self.action}@{self.nth}"


@dataclass
class Scene:
    """One target's abort: the secrets at stake, and when the lab confirmed what."""

    lab: Lab
    target: Target
    config: Path
    old: str = ""
    new: str = ""
    confirms: list[float] = field(default_factory=list)  # wall times a confirm command started

    def run(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        argv = [a.format(t=self.target.name) for a in args]
        if argv[0] == "confirm":
            self.confirms.append(time.time())
        return self.lab.run(self.config, *argv, **kwargs)

    def audit(self, secret: StoredSecret) -> None:
        """At a DELETE: never the old secret; the abandoned one only after the restore's
        rollout (confirmed after its store, or stored for the grace period, on Vault's clock)."""
        name = self.target.name
        if secret.id == self.old:
            self.lab.violate(f"abort {name}: deleted the old secret {self.old}")
        if secret.id != self.new or self.new not in self.lab.adopted_ids(self.target):
            return  # an orphan, or a new secret that never reached consumers
        try:
            stored = self._stored_at()
        except httpx.HTTPError:
            return  # Vault away: rotator could not have decided this delete just now
        if stored is None:
            self.lab.violate(f"abort {name}: deleted {self.new} before {self.old} was back")
        elif not any(at > stored for at in self.confirms) and time.time() - stored < GRACE:
            self.lab.violate(
                f"abort {name}: deleted {self.new} {time.time() - stored:.2f}s after {self.old} "
                "was stored back, unconfirmed"
            )

    def _stored_at(self) -> float | None:
        """When the consumers' path's current version (holding the old secret) was written,
        on Vault's clock; ``None`` when it does not hold the old secret."""
        lab, path = self.lab, self.target.vault_path
        if (lab.consumer_data(self.target) or {}).get("intercom_id") != self.old:
            return None
        answer = lab.http.get(
            f"{lab.bao.address}/v1/secret/metadata/{path}",
            headers={"X-Vault-Token": lab.bao.root_token},
        )
        answer.raise_for_status()
        meta = answer.json()["data"]
        created = meta["versions"][str(meta["current_version"])]["created_time"]
        return datetime.fromisoformat(created).timestamp()


def _scene(lab: Lab, case: str, *, consumers: bool) -> Scene:
    """A fresh target with a rotation under way (``case``); on a consumers target, its two
    consumer processes on the new secret, signing, and one probe round counted."""
    workspace = DEFAULT_WORKSPACE if consumers else None  # where their signatures are verified
    # "x": no target's secret name is a prefix of another's (they may share a workspace).
    target = lab.add_target(f"ab{next(_names)}x", workspace=workspace)
    if consumers:
        Fleet(lab, target, delays=QUICK_RELOAD_DELAYS, sign_every=0.2).start()
    scene = Scene(lab, target, lab.write_config(lab.workdir / f"{target.name}.toml", [target]))
    lab.delete_watchers[target.workspace] = scene.audit
    assert scene.run("reconcile").returncode == 0
    scene.old = str((lab.consumer_data(target) or {}).get("intercom_id"))
    if consumers and not target.fleet.wait_holding(scene.old):
        lab.violate(f"{target.name}: the consumer processes never held {scene.old}")
    if case == "creating":  # killed after its create was committed, before its store
        scene.run("rotate-now", "{t}", failpoints="vault.before_store=kill")
    else:
        scene.run("rotate-now", "{t}")
    record = lab.record(target) or {}
    scene.new = str(record.get("pending_id"))
    if record.get("phase") != ("creating" if case == "creating" else "awaiting_rollout"):
        lab.violate(f"{target.name}: setup of {case} left {record.get('phase')}")
    if consumers and case == "awaiting":
        if not target.fleet.wait_holding(scene.new):
            lab.violate(f"{target.name}: the consumer processes never held {scene.new}")
        scene.run("reconcile")
    return scene


def _steps(scene: Scene, case: str) -> list[tuple[str, ...]]:
    """The commands after the setup, in order; on a consumers target the confirm is billing's."""
    if case == "creating":
        return [ABORT]
    confirm = ("confirm", "{t}")
    if scene.target.fleet is not None:
        confirm = (*confirm, "--consumer", HOOK_CONSUMER)
    return [ABORT, confirm]


def _before_step(scene: Scene, argv: tuple[str, ...]) -> None:
    """A confirm on a consumers target: once every process holds the restored secret, a pass
    probes them (one round counted), as the crash matrix's consumers target does."""
    fleet = scene.target.fleet
    if fleet is None or argv[0] != "confirm":
        return
    if not fleet.wait_holding(scene.old):
        scene.lab.violate(f"{scene.target.name}: the consumer processes never held {scene.old}")
    scene.run("reconcile")


def discover(lab: Lab, case: str, *, consumers: bool) -> list[Trial]:
    scene = _scene(lab, case, consumers=consumers)
    trials: list[Trial] = []
    try:
        for step, argv in enumerate(_steps(scene, case)):
            _before_step(scene, argv)
            trace = lab.workdir / f"{scene.target.name}.{step}.trace"
            env = {**lab.environ(scene.config), "ROTATOR_FAILPOINT_TRACE": str(trace)}
            command = [a.format(t=scene.target.name) for a in argv]
            lab.note_intent(tuple(command))
            subprocess.run(
                [*ROTATOR, *command], env=env, capture_output=True, timeout=60, check=False
            )
            hits = trace.read_text().split("\n") if trace.exists() else []
            trials += [
                Trial(case, step, point, int(nth), action, consumers)
                for point, nth in (h.split() for h in hits if h)
                for action in ACTIONS
            ]
        _settle(scene, case)
    finally:
        _stop(scene)
    return trials


def sample(rng: random.Random, trials: list[Trial]) -> list[Trial]:
    """Each (case, point) once on plain targets, in a step drawn among those passing it, at its
    last hit there, with an action drawn; on the consumers target (whose trials run one at a
    time), ``CONSUMER_SAMPLE`` (case, point) drawn the same way."""
    last: dict[tuple[str, int, str, bool], int] = {}
    for t in trials:
        key = (t.case, t.step, t.point, t.consumers)
        last[key] = max(last.get(key, 0), t.nth)
    steps: dict[tuple[str, str, bool], list[int]] = {}
    for case, step, point, named in last:
        steps.setdefault((case, point, named), []).append(step)
    chosen = []
    for (case, point, named), found in steps.items():
        step = rng.choice(found)
        nth = last[case, step, point, named]
        chosen.append(Trial(case, step, point, nth, rng.choice(ACTIONS), named))
    named = [t for t in chosen if t.consumers]
    return [t for t in chosen if not t.consumers] + rng.sample(
        named, min(CONSUMER_SAMPLE, len(named))
    )


def run_trial(lab: Lab, trial: Trial) -> None:
    scene = _scene(lab, trial.case, consumers=trial.consumers)
    try:
        steps = _steps(scene, trial.case)
        for argv in steps[: trial.step]:
            _before_step(scene, argv)
            scene.run(*argv)
        _before_step(scene, steps[trial.step])
        markers = lab.workdir / f"{scene.target.name}.markers"
        result = scene.run(*steps[trial.step], failpoints=trial.spec, markers=markers)
        fired = markers.exists() and trial.point in markers.read_text()
        lab.stats.abort_trials += 1
        if fired:
            lab.stats.abort_fired[trial.point] += 1
        else:
            lab.violate(f"abort trial {trial}: the failpoint did not fire ({result.returncode})")
        lab.log(f"abort trial {trial}: exit {result.returncode}, fired={fired}")
        lab.check(scene.target, settled=False)
        _settle(scene, trial.case)
    finally:
        _stop(scene)


def _settle(scene: Scene, case: str) -> None:
    """Recover as an operator would, then judge the end."""
    lab, target = scene.lab, scene.target
    for passes in range(MAX_PASSES):
        record = lab.record(target) or {}
        phase = record.get("phase")
        if phase == "idle":
            lab.stats.abort_passes.append(passes)
            break
        if record.get("pending_id") == scene.new and not (
            record.get("abort") or record.get("restoring")
        ):
            scene.run(*ABORT)  # crashed before the abort was recorded: the operator retries
        elif phase == "awaiting_rollout":
            confirm = _steps(scene, "awaiting")[1]
            _before_step(scene, confirm)
            scene.run(*confirm)
        else:
            scene.run("reconcile")
        lab.check(target, settled=False)
    else:
        lab.stats.stuck += 1
        lab.violate(f"I5 {target.name}: the abort ({case}) did not settle in {MAX_PASSES} passes")
    _judge_end(scene)


def _judge_end(scene: Scene) -> None:
    lab, target, name = scene.lab, scene.target, scene.target.name
    lab.check(target, settled=True)
    record = lab.record(target) or {}
    last = (record.get("history") or [{}])[-1]
    held = (lab.consumer_data(target) or {}).get("intercom_id")
    if (record.get("phase"), record.get("current_id"), held) != ("idle", scene.old, scene.old):
        lab.violate(
            f"abort {name}: ended {record.get('phase')} with {record.get('current_id')} "
            f"current and {held} at the consumers' path, not {scene.old}"
        )
    if (last.get("outcome"), last.get("by")) != ("aborted", "torture"):
        lab.violate(f"abort {name}: history ends {last.get('outcome')} by {last.get('by')}")
    new = lab.emulator.store.get(scene.new)
    if new is not None and new.deleted_at is None:
        lab.violate(f"abort {name}: the abandoned secret {scene.new} is still live")
    lab.stats.aborts_completed += 1


def _stop(scene: Scene) -> None:
    if scene.target.fleet is not None:
        scene.target.fleet.stop()
    scene.lab.delete_watchers.pop(scene.target.workspace, None)


def abort_matrix(lab: Lab, *, workers: int = 3, everything: bool = False) -> Counter[str]:
    """Plain targets in parallel; the consumers target's trials one at a time, in a worker of
    their own (their processes sign in the emulator's default workspace: one target there)."""
    kinds = [("awaiting", False), ("creating", False), ("awaiting", True)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        traced = list(pool.map(lambda k: discover(lab, k[0], consumers=k[1]), kinds))
        trials = [t for found in traced for t in found]
        if not everything:  # the seed alone draws it
            trials = sample(random.Random(lab.seed + 13), trials)
        named = [t for t in trials if t.consumers]
        lab.log(f"abort matrix: {len(trials)} trials, {len(named)} on a consumers target")
        one_by_one = pool.submit(lambda: [run_trial(lab, t) for t in named])
        list(pool.map(lambda t: run_trial(lab, t), [t for t in trials if not t.consumers]))
        one_by_one.result()
    return Counter(t.point for t in trials)
