"""rotator's torture suite: crashes, races and faults against the real thing, then a count.

    python tests/torture/run.py --quick              # the CI run (a few minutes)
    python tests/torture/run.py --soak 30m           # as long as asked, then the table
    python tests/torture/run.py --quick --seed 1234  # replay a run

Parts: the crash matrix (every failpoint hit, killed and raised, in the real CLI, then recovered),
and the abort matrix (``rotator abort`` and the restore's rollout crashed at each of their
failpoints, see aborts.py);
races (three daemons, a CronJob loop and rotate-now calls on the same targets, with SIGKILL and
SIGSTOP, their wall clocks days apart through libfaketime); faults (Intercom at >= 20 %
429/5xx/latency/post_drop, a third of its lists 3 s behind, OpenBao stopped and restarted).
Consumers sign and verify every 50 ms throughout, confirming each new secret once reloaded.
A consumers target (``consumers-web``: two consumer processes rotator probes, and ``billing``
confirming through the hook) goes through the crash matrix (a sample of it with --quick) and
the races (and, in a soak, the faults), its consumer processes SIGKILLed or answering the old
secret or 503 mid-rollout; at every DELETE, what each process holds is asked (I10, see
consumers.py).
One daemon per chaos run is never killed or paused: 32 slow clients (silent and dribbling)
hold connections to its server while it rotates, and its /healthz and /readyz must answer
every probe within a second.
Invariants I1-I6 are checked along the way (see lab.py). On any violation the run's seed,
events, outputs and Intercom audit are kept in the work directory, whose path is printed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aborts import abort_matrix
from chaos import Chaos, run_chaos
from consumers import Fleet
from crash import crash_matrix
from lab import Lab, Target

from rotator.durations import parse_duration
from rotator.emulator.state import DEFAULT_WORKSPACE
from rotator.logs import configure_logging

# Lists lag behind creates and deletes too: a third of them show the workspace 3 s ago.
FAULTS = "429=0.2:1,5xx=0.2,latency=0.2:50ms,post_drop=0.2,list_lag=0.3:3s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="the CI run")
    mode.add_argument("--soak", metavar="DURATION", help="keep going this long (e.g. 30m)")
    parser.add_argument("--seed", type=int, default=None, help="replay a run")
    parser.add_argument("--workdir", type=Path, default=None, help="where to keep everything")
    parser.add_argument("--skip-matrix", action="store_true", help="races and faults only")
    parser.add_argument("--aborts-only", action="store_true", help="the abort matrix only")
    args = parser.parse_args(argv)
    configure_logging("console", "warning")  # the in-process emulator's request log is noise here
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"rotator-torture-{seed}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"torture: seed {seed}, work directory {workdir}", flush=True)
    started = time.monotonic()
    results: dict[str, object] = {"seed": seed, "mode": "soak" if args.soak else "quick"}
    races_lab = Lab(workdir / "races", seed)
    faults_lab = Lab(workdir / "faults", seed + 1, faults=FAULTS)
    labs = [races_lab, faults_lab]
    try:
        if not args.skip_matrix:
            aborted = abort_matrix(races_lab, everything=bool(args.soak))
            results["abort failpoints"] = dict(aborted)
            print(
                f"abort matrix: {races_lab.stats.abort_trials} trials done ({_elapsed(started)})",
                flush=True,
            )
        if not (args.skip_matrix or args.aborts_only):
            points = crash_matrix(races_lab, consumers="all" if args.soak else "sample")
            results["failpoints"] = dict(points)
            print(
                f"crash matrix: {races_lab.stats.trials} trials done ({_elapsed(started)})",
                flush=True,
            )
        soak_until = started + parse_duration(args.soak) if args.soak else None
        for round_number in itertools.count(1):
            if args.aborts_only:
                break
            _races(races_lab, round_number, quick=soak_until is None)
            print(f"races round {round_number} done ({_elapsed(started)})", flush=True)
            _faults(faults_lab, round_number, quick=soak_until is None)
            print(f"faults round {round_number} done ({_elapsed(started)})", flush=True)
            if soak_until is None or time.monotonic() >= soak_until:
                break
        for lab in labs:
            lab.scan_outputs()
    finally:
        for lab in labs:
            lab.close()
    results["seconds"] = round(time.monotonic() - started, 1)
    violations = [v for lab in labs for v in lab.violations]
    print(table(labs, results, violations))
    if violations:
        for lab, name in zip(labs, ("races", "faults"), strict=True):
            saved = lab.save(
                f"report-{name}",
                {**results, "violations": lab.violations, "stats": vars(lab.stats)},
            )
            print(f"kept for replay (--seed {seed}): {saved}")
        return 1
    return 0


def _races(lab: Lab, round_number: int, *, quick: bool) -> None:
    targets = [lab.add_target(f"r{round_number}x{i}") for i in range(2)]
    targets.append(_consumers_target(lab, round_number))
    config = lab.write_config(
        lab.workdir / f"races{round_number}.toml", targets, schedule="2s", grace="30s"
    )
    lab.run(config, "reconcile")
    run_chaos(
        lab,
        targets,
        Chaos(daemons=3, slow_clients=True),
        rotations=50 if quick else 200,
        deadline=time.monotonic() + (240 if quick else 900),
    )


def _faults(lab: Lab, round_number: int, *, quick: bool) -> None:
    targets = [lab.add_target(f"f{round_number}x{i}") for i in range(2)]
    if not quick:  # its rollouts through Vault restarts: only in a soak, for the CI's time
        targets.append(_consumers_target(lab, round_number))
    config = lab.write_config(
        lab.workdir / f"faults{round_number}.toml", targets, schedule="2s", grace="30s"
    )
    for _ in range(10):  # provisioning itself meets the faults
        lab.run(config, "reconcile")
        if all(lab.consumer_data(t) for t in targets):
            break
    # A second daemon, never killed or paused, under slow clients while Vault restarts.
    chaos = Chaos(
        daemons=2,
        kill_every=8.0,
        pause_every=12.0,
        vault_restart_every=15.0,
        rotate_now_every=4.0,
        slow_clients=True,
    )
    run_chaos(
        lab,
        targets,
        chaos,
        rotations=10 if quick else 60,
        deadline=time.monotonic() + (240 if quick else 900),
    )


def _consumers_target(lab: Lab, round_number: int) -> Target:
    """``consumers-web``, its consumer processes started: they load the secret once provisioned.
    Their signatures are verified in the emulator's default workspace, so it lives there."""
    suffix = f"-{round_number}" if round_number > 1 else ""
    target = lab.add_target(f"consumers-web{suffix}", workspace=DEFAULT_WORKSPACE)
    Fleet(lab, target).start()
    return target


def table(labs: list[Lab], results: dict[str, object], violations: list[str]) -> str:
    s = [lab.stats for lab in labs]
    fired = sum((x.fired for x in s), start=Counter())
    consumer_fired = sum((x.consumer_fired for x in s), start=Counter())
    abort_fired = sum((x.abort_fired for x in s), start=Counter())
    passes = [p for x in s for p in x.passes]
    rows = [
        ("seed", results["seed"]),
        ("mode", results["mode"]),
        ("crash trials", sum(x.trials for x in s)),
        ("failpoints fired", f"{sum(fired.values())} over {len(fired)} points"),
        *((f"  fired at {point}", count) for point, count in sorted(fired.items())),
        ("recoveries", sum(x.recovered for x in s)),
        (
            "passes to recover (max / mean)",
            f"{max(passes, default=0)} / {sum(passes) / max(1, len(passes)):.2f}",
        ),
        ("rotations completed", sum(x.rotations for x in s)),
        ("deletes audited", sum(x.deletes for x in s)),
        (
            "consumers-web crash trials",
            f"{sum(x.consumer_trials for x in s)}, fired over {len(consumer_fired)} points",
        ),
        ("consumers-web rotations", sum(x.consumer_rotations for x in s)),
        ("consumers-web deletes (I10)", sum(x.consumer_deletes for x in s)),
        (
            "consumer process SIGKILLs / flips",
            f"{sum(x.consumer_kills for x in s)} / {sum(x.consumer_flips for x in s)}",
        ),
        ("abort crash trials", sum(x.abort_trials for x in s)),
        (
            "abort failpoints fired",
            f"{sum(abort_fired.values())} over {len(abort_fired)} points",
        ),
        *((f"  abort fired at {point}", count) for point, count in sorted(abort_fired.items())),
        ("aborts completed", sum(x.aborts_completed for x in s)),
        (
            "abort passes to settle (max)",
            max((p for x in s for p in x.abort_passes), default=0),
        ),
        ("orphans swept", sum(x.orphans_swept for x in s)),
        ("targets swept at rest", sum(x.swept_at_rest for x in s)),
        ("extra POSTs", sum(x.extra_posts for x in s)),
        ("SIGKILLs / SIGSTOPs", f"{sum(x.kills for x in s)} / {sum(x.pauses for x in s)}"),
        ("OpenBao restarts", sum(x.vault_restarts for x in s)),
        ("consumer checks", sum(x.consumer_checks for x in s)),
        ("consumer failures", sum(x.consumer_failures for x in s)),
        ("health probes under load", sum(x.health_probes for x in s)),
        ("worst health probe", f"{max(x.health_worst for x in s):.3f}s"),
        ("health probes over 1 s", sum(x.health_slow for x in s)),
        ("stuck runs", sum(x.stuck for x in s)),
        ("invariant violations", len(violations)),
        ("seconds", results["seconds"]),
    ]
    width = max(len(str(k)) for k, _ in rows)
    lines = ["", "torture summary", "-" * (width + 24)]
    lines += [f"{k!s:<{width}}  {v}" for k, v in rows]
    lines += [f"VIOLATION: {v}" for v in violations[:50]]
    lines.append(json.dumps({k: str(v) for k, v in rows}))
    return "\n".join(lines)


def _elapsed(started: float) -> str:
    return f"{time.monotonic() - started:.0f}s"


if __name__ == "__main__":
    raise SystemExit(main())
