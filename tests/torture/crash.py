"""The crash matrix: every failpoint, every hit of it, killed and raised, in the real CLI.

A dry run with ``ROTATOR_FAILPOINT_TRACE`` lists every (point, n-th hit) that an emergency
``rotate-now`` and a ``confirm`` pass through. Each becomes two trials (kill, raise) on a fresh
target: provision it, crash the command there (a marker proves the crash fired), then recover
as an operator and a CronJob would (``reconcile`` passes, ``confirm`` when a rotation awaits
rollout, ``rotate-now`` again if the crash came before the rotation was even recorded), and
check the invariants.

The same again on consumers targets (``consumers.Fleet``: two consumer processes probed as
``web-backend``, and ``billing`` on the hook), where ``confirm`` is ``confirm T --consumer
billing``. Its target awaits rollout with both processes on the new secret and one probe round
counted, so the confirm's own pass is the probe round that confirms ``web-backend``: its trace
holds the state writes that carry rollout progress, then the retirement. ``consumers="sample"``
(the CI run) crashes each failpoint once there, in that pass where it passes it (``sample``);
``"all"`` takes every trial, as for plain targets.
"""

from __future__ import annotations

import itertools
import random
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consumers import HOOK_CONSUMER, QUICK_RELOAD_DELAYS, Fleet
from lab import ROTATOR, Lab, Target

MAX_PASSES = 8
COMMANDS = {
    "rotate-now": ("rotate-now", "{t}", "--emergency", "--yes"),
    "confirm": ("confirm", "{t}"),
}
CONSUMERS_CONFIRM = ("confirm", "{t}", "--consumer", HOOK_CONSUMER)
ACTIONS = ("kill", "raise")


@dataclass(frozen=True)
class Trial:
    command: str
    point: str
    nth: int
    action: str
    consumers: bool = False

    @property
    def spec(self) -> str:
        return f"{self.point}={self.action}@{self.nth}"


_names = itertools.count(1)


def _argv(command: str, target: Target) -> list[str]:
    named = command == "confirm" and target.fleet is not None
    return [a.format(t=target.name) for a in (CONSUMERS_CONFIRM if named else COMMANDS[command])]


def _fresh_target(lab: Lab, tag: str, *, consumers: bool = False) -> tuple[Target, Path]:
    target = lab.add_target(f"{tag}{next(_names)}")
    if consumers:  # an emergency deletes what they hold: their rejected signatures are due
        Fleet(lab, target, delays=QUICK_RELOAD_DELAYS, sign_every=1.0, count_failures=False).start()
    config = lab.write_config(lab.workdir / f"{target.name}.toml", [target])
    return target, config


def _prepare(lab: Lab, target: Target, config: Path, command: str) -> None:
    """Provision the target; for a confirm trial, leave a rotation awaiting rollout (on a
    consumers target: both processes on the new secret, one probe round counted)."""
    assert lab.run(config, "reconcile").returncode == 0
    if command != "confirm":
        return
    lab.run(config, "rotate-now", target.name)
    if target.fleet is None:
        return
    pending = (lab.record(target) or {}).get("pending_id")
    if not pending or not target.fleet.wait_holding(pending):
        lab.violate(f"{target.name}: the consumer processes never held {pending}")
    lab.run(config, "reconcile")


def discover(lab: Lab, command: str, *, consumers: bool = False) -> list[Trial]:
    """Every (point, n) the real ``command`` passes through, from a traced dry run."""
    target, config = _fresh_target(lab, "trace", consumers=consumers)
    try:
        _prepare(lab, target, config, command)
        trace = lab.workdir / f"{target.name}.trace"
        env = {**lab.environ(config), "ROTATOR_FAILPOINT_TRACE": str(trace)}
        argv = _argv(command, target)
        lab.note_intent(tuple(argv))
        subprocess.run([*ROTATOR, *argv], env=env, capture_output=True, check=False, timeout=60)
    finally:
        if target.fleet is not None:
            target.fleet.stop()
    hits = [line.split() for line in trace.read_text().splitlines()] if trace.exists() else []
    return [
        Trial(command, point, int(nth), action, consumers)
        for point, nth in hits
        for action in ACTIONS
    ]


def sample(rng: random.Random, trials: list[Trial]) -> list[Trial]:
    """One trial per failpoint, each with an action drawn: the confirm's points where its pass
    (the probe round that confirms ``web-backend``, and the retirement) passes them, then the
    points only the emergency rotation passes."""
    hits = list(dict.fromkeys((t.point, t.nth) for t in trials if t.command == "confirm"))
    after = [hits.index(h) for h in hits if h[0] == "confirm.after_write"][:1] or [len(hits)]
    picked: dict[str, int] = {}
    for point, nth in hits[after[0] + 1 :] + hits:  # the pass's hit of a point, else its first
        picked.setdefault(point, nth)
    chosen = [
        Trial("confirm", p, n, rng.choice(ACTIONS), consumers=True) for p, n in picked.items()
    ]
    for trial in rng.sample(trials, len(trials)):
        if trial.point not in picked:
            chosen.append(trial)
            picked[trial.point] = trial.nth
    return chosen


def run_trial(lab: Lab, trial: Trial) -> None:
    target, config = _fresh_target(lab, "cw" if trial.consumers else "c", consumers=trial.consumers)
    try:
        _run_trial(lab, trial, target, config)
    finally:
        if target.fleet is not None:
            target.fleet.stop()


def _run_trial(lab: Lab, trial: Trial, target: Target, config: Path) -> None:
    _prepare(lab, target, config, trial.command)
    start = lab.record(target) or {}
    before = start.get("generation", 0)
    # A confirm trial's rotation was started (counted) before it: its completion is the goal.
    awaited = start.get("rotation_id") if start.get("phase") == "awaiting_rollout" else None
    markers = lab.workdir / f"{target.name}.markers"
    result = lab.run(config, *_argv(trial.command, target), failpoints=trial.spec, markers=markers)
    fired = markers.exists() and trial.point in markers.read_text()
    lab.stats.trials += 1
    lab.stats.consumer_trials += trial.consumers
    if fired:
        lab.stats.fired[trial.point] += 1
        if trial.consumers:
            lab.stats.consumer_fired[trial.point] += 1
    else:
        lab.violate(
            f"trial {trial.spec} on {trial.command}: the failpoint did not fire ({result.returncode})"
        )
    lab.log(f"trial {trial.command} {trial.spec}: exit {result.returncode}, fired={fired}")
    lab.check(target, settled=False)
    for passes in range(1, MAX_PASSES + 1):
        record = lab.record(target) or {}
        phase = record.get("phase")
        if phase == "idle" and _completed(record, before, awaited):
            lab.stats.recovered += 1
            lab.stats.passes.append(passes - 1)
            break
        if phase == "awaiting_rollout":
            lab.run(config, *_argv("confirm", target))
        elif phase == "idle":  # crashed before the rotation was recorded: the operator retries
            lab.run(config, "rotate-now", target.name, "--emergency", "--yes")
        else:
            lab.run(config, "reconcile")
        lab.check(target, settled=False)
    else:
        lab.stats.stuck += 1
        lab.violate(
            f"I5 {target.name}: trial {trial.command} {trial.spec} did not recover in {MAX_PASSES} passes ({(lab.record(target) or {}).get('phase')})"
        )
    lab.check(target, settled=True)
    record = lab.record(target) or {}
    lab.count_posts(target, rotations=record.get("generation", 0))
    rotations = _completed(record, before, awaited)
    lab.stats.rotations += rotations
    if trial.consumers:
        lab.stats.consumer_rotations += rotations


def _completed(record: dict[str, Any], before: int, awaited: str | None) -> int:
    """Rotations completed since the trial began: the one it awaited, and any started since."""
    history = {h.get("rotation_id") for h in record.get("history", [])}
    started = record.get("generation", 0) - before
    if record.get("phase") != "idle":
        started -= 1  # under way, not completed
    return max(0, started) + (awaited is not None and awaited in history)


def crash_matrix(lab: Lab, *, workers: int = 3, consumers: str = "sample") -> Counter[str]:
    """``consumers``: "sample" or "all" of the trials on consumers targets (see above)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        kinds = [(c, named) for named in (True, False) for c in COMMANDS]
        traced = list(pool.map(lambda k: discover(lab, k[0], consumers=k[1]), kinds))
        named = [t for trials in traced[: len(COMMANDS)] for t in trials]
        if consumers == "sample":  # the seed alone draws it: threads share ``lab.rng``
            named = sample(random.Random(lab.seed), named)
        # The longer trials (consumer processes to start and wait for) first: fewer idle ends.
        trials = named + [t for trials in traced[len(COMMANDS) :] for t in trials]
        lab.log(f"crash matrix: {len(trials)} trials")
        list(pool.map(lambda t: run_trial(lab, t), trials))
    return Counter(t.point for t in trials)
