"""The crash matrix: every failpoint, every hit of it, killed and raised, in the real CLI.

A dry run with ``ROTATOR_FAILPOINT_TRACE`` lists every (point, n-th hit) that an emergency
``rotate-now`` and a ``confirm`` pass through. Each becomes two trials (kill, raise) on a fresh
target: provision it, crash the command there (a marker proves the crash fired), then recover
as an operator and a CronJob would (``reconcile`` passes, ``confirm`` when a rotation awaits
rollout, ``rotate-now`` again if the crash came before the rotation was even recorded), and
check the invariants.
"""

from __future__ import annotations

import itertools
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lab import ROTATOR, Lab, Target

MAX_PASSES = 8
COMMANDS = {
    "rotate-now": ("rotate-now", "{t}", "--emergency", "--yes"),
    "confirm": ("confirm", "{t}"),
}


@dataclass(frozen=True)
class Trial:
    command: str
    point: str
    nth: int
    action: str

    @property
    def spec(self) -> str:
        return f"{self.point}={self.action}@{self.nth}"


_names = itertools.count(1)


def _fresh_target(lab: Lab, tag: str) -> tuple[Target, Path]:
    target = lab.add_target(f"{tag}{next(_names)}")
    config = lab.write_config(lab.workdir / f"{target.name}.toml", [target])
    return target, config


def _prepare(lab: Lab, target: Target, config: Path, command: str) -> None:
    """Provision the target; for a confirm trial, leave a rotation awaiting rollout."""
    assert lab.run(config, "reconcile").returncode == 0
    if command == "confirm":
        lab.run(config, "rotate-now", target.name)


def discover(lab: Lab) -> list[Trial]:
    """Every (command, point, n) the real commands pass through, from a traced dry run."""
    trials: list[Trial] = []
    for command, argv in COMMANDS.items():
        target, config = _fresh_target(lab, "trace")
        _prepare(lab, target, config, command)
        trace = lab.workdir / f"{target.name}.trace"
        env = {**lab.environ(config), "ROTATOR_FAILPOINT_TRACE": str(trace)}
        command_line = [*ROTATOR, *(a.format(t=target.name) for a in argv)]
        subprocess.run(command_line, env=env, capture_output=True, check=False, timeout=60)
        hits = [line.split() for line in trace.read_text().splitlines()] if trace.exists() else []
        for point, nth in hits:
            for action in ("kill", "raise"):
                trials.append(Trial(command, point, int(nth), action))
    return trials


def run_trial(lab: Lab, trial: Trial) -> None:
    target, config = _fresh_target(lab, "c")
    _prepare(lab, target, config, trial.command)
    before = (lab.record(target) or {}).get("generation", 0)
    markers = lab.workdir / f"{target.name}.markers"
    argv = [a.format(t=target.name) for a in COMMANDS[trial.command]]
    result = lab.run(config, *argv, failpoints=trial.spec, markers=markers)
    fired = markers.exists() and trial.point in markers.read_text()
    lab.stats.trials += 1
    if fired:
        lab.stats.fired[trial.point] += 1
    else:
        lab.violate(
            f"trial {trial.spec} on {trial.command}: the failpoint did not fire ({result.returncode})"
        )
    lab.log(f"trial {trial.command} {trial.spec}: exit {result.returncode}, fired={fired}")
    lab.check(target, settled=False)
    for passes in range(1, MAX_PASSES + 1):
        record = lab.record(target) or {}
        phase = record.get("phase")
        if phase == "idle" and record.get("generation", 0) > before:
            lab.stats.recovered += 1
            lab.stats.passes.append(passes - 1)
            break
        if phase == "awaiting_rollout":
            lab.run(config, "confirm", target.name)
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
    lab.stats.rotations += record.get("generation", 0) - before


def crash_matrix(lab: Lab, *, workers: int = 3) -> Counter[str]:
    trials = discover(lab)
    lab.log(f"crash matrix: {len(trials)} trials")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda t: run_trial(lab, t), trials))
    return Counter(t.point for t in trials)
