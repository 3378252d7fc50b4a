"""The mutation check of issue 9: revert each safety fix, one at a time, and see whether the
simulation finds the hole again (and after how many examples). Issue 12 adds two holes verified
rollout must not have: a grace that retires past a probed consumer seen behind
(``grace-ignores-probes``), and one named consumer's confirmation taken for all
(``one-hook-enough``); the simulation must find each through I10. Issue 13 adds two holes an
abort must not have: the abandoned secret retired as soon as the restore is stored, its rollout
not awaited (``abort-retires-at-once``), and an abort in ``creating`` that deletes the new secret
though its store already reached the consumers' path (``abort-ignores-store``). Issue 15 adds
``next_wakeup`` answers that let the quiet daemon sleep through work (``wakeup-*``): the quiet
daemon at the end of every run (``simulation/quiet.py``) must find each, and item 2 adds the
``_window`` answers for rotation windows (``wakeup-window-*``).

    python tests/simulation/mutants.py                  # every mutant, 3000 examples each
    python tests/simulation/mutants.py --examples 500 5-lagging-list-vanishes

Each mutant is a copy of the ``rotator`` package with the fix's code put back the way it was
before issue 9 (text edits below, each checked to apply exactly once), run under
``tests/test_simulation.py`` with that copy first on ``PYTHONPATH``. Fix 6 (deciding on Vault's
clock) is reverted by having each simulated process decide on its own skewed wall clock.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

Edit = tuple[str, str, str]  # (file under rotator/, text now, text before the fix)

MUTANTS: dict[str, list[Edit]] = {
    # Finding 1: a secret missing from one list answer was taken to be gone (and history said so).
    "1-absent-means-gone": [
        (
            "core/machine.py",
            """    if not record.old_ids:
        return _complete(record, obs, now)
    target_id = record.old_ids[0]""",
            """    if obs.intercom is not None:
        gone = tuple(i for i in record.old_ids if i not in live_ids(obs))
        record = replace(
            record,
            old_ids=tuple(i for i in record.old_ids if i not in gone),
            retired_ids=(*record.retired_ids, *gone),
        )
    if not record.old_ids:
        return _complete(record, obs, now)
    target_id = record.old_ids[0]""",
        ),
        (
            "core/observation.py",
            "    return False  # retiring: every old secret gets its DELETE, whatever a list shows",
            "    return True",
        ),
    ],
    # Finding 2: rotate-now was not recorded before its first call that could fail.
    "2-request-not-recorded": [
        (
            "reconciler/controls.py",
            """    _, _, known = reconciler.store.updated(
        target, change, reason="rotate-now requested", by=command.by, start=read
    )""",
            """    known = reconciler.store.load(target.name)
    outcome[:] = [Ask(command, known.record.generation if known.record else 0)]""",
        ),
    ],
    # Finding 3: a confirmation was accepted while the new secret was only committed (not at the
    # consumers' path) and kept when it was stored.
    "3-confirm-before-store": [
        (
            "core/confirmation.py",
            "    if record.phase is not Phase.AWAITING_ROLLOUT:",
            """    if names_it and record.phase is Phase.CREATING and record.pending_secret is not None:
        if record.confirmed_at is not None:
            return None, ConfirmStatus.ALREADY_CONFIRMED, "already confirmed"
        done = transitions.confirmed(record, at=now, by=via)
        return done, ConfirmStatus.CONFIRMED, "confirmed before the store"
    if record.phase is not Phase.AWAITING_ROLLOUT:""",
        ),
        (
            "core/transitions.py",
            """        deadline=shifted(at, grace),
        confirmed_at=None,
        confirmed_by=None,
        known_ids=record.remember_id(record.pending_id),""",
            """        deadline=shifted(at, grace),
        known_ids=record.remember_id(record.pending_id),""",
        ),
    ],
    # Finding 4: a confirmation survived a block and the store that followed it (and a path
    # written again since the store).
    "4-stale-confirmation": [
        (
            "core/transitions.py",
            """        deadline=shifted(at, grace),
        confirmed_at=None,
        confirmed_by=None,
        known_ids=record.remember_id(record.pending_id),""",
            """        deadline=shifted(at, grace),
        known_ids=record.remember_id(record.pending_id),""",
        ),
        (
            "core/transitions.py",
            """        phase=Phase.CREATING,
        confirmed_at=None,
        confirmed_by=None,
        rollout=(),
        stalled_at=None,
    )""",
            """        phase=Phase.CREATING,
        rollout=(),
        stalled_at=None,
    )""",
        ),
        (
            "core/safety.py",
            "    return holds_pending(record, consumer) and record.stored_version == consumer.version",
            "    return holds_pending(record, consumer)",
        ),
    ],
    # Finding 5: a committed secret missing from one list was judged vanished and created again;
    # its id was known only once stored; deletes of orphans skipped the safety check.
    "5-lagging-list-vanishes": [
        (
            "core/machine.py",
            "    # A secret whose material is committed is never judged gone on a list: it is stored.\n",
            """    if obs.intercom is not None and record.pending_id not in live_ids(obs):
        dropped = replace(record, pending_id=None, pending_secret=None, pending_created_at=None)
        return _create(dropped, obs, "new secret vanished at Intercom; again")
""",
        ),
        (
            "core/observation.py",
            "        return record.pending_id is None  # orphans of a lost answer are found by their name",
            "        return True",
        ),
        (
            "core/transitions.py",
            """        pending_created_at=created_at,
        known_ids=record.remember_id(secret_id),
    )""",
            """        pending_created_at=created_at,
    )""",
        ),
        (
            "core/machine.py",
            """    problem = unsafe_to_delete(record, obs, secret_id, now)
    if problem:""",
            """    problem = unsafe_to_delete(record, obs, secret_id, now)
    if problem and record.phase is not Phase.RETIRING and secret_id in orphans(record, obs):
        problem = None
    if problem:""",
        ),
    ],
    # Finding 6: deadlines were judged on each process's own wall clock.
    "6-wall-clock": [],
    # Issue 12: a grace deadline retires the old secret though a probe sees a consumer behind.
    "grace-ignores-probes": [
        (
            "core/safety.py",
            """        if (
            policy.confirmation in {"hook-or-grace", "grace"}
            and past
            and not rollout.probed_unconfirmed(record, policy)
        ):""",
            """        if policy.confirmation in {"hook-or-grace", "grace"} and past:""",
        ),
    ],
    # Issue 12: one named consumer's confirmation is taken for all (the anonymous hook of old).
    "one-hook-enough": [
        (
            "core/rollout.py",
            """    \"\"\"Named consumers not (or no longer) confirmed for the secret as stored now.\"\"\"
    return tuple(""",
            """    \"\"\"Named consumers not (or no longer) confirmed for the secret as stored now.\"\"\"
    if any(confirmed(record, r.name) for r in policy.consumers):
        return ()
    return tuple(""",
        ),
    ],
    # Issue 13: the restore is treated as an emergency: the abandoned secret goes once the old
    # one is stored back, before consumers reload it.
    "abort-retires-at-once": [
        (
            "core/abort.py",
            """        old_ids=(),
        emergency=False,
        abort=None,""",
            """        old_ids=(),
        emergency=True,
        abort=None,""",
        ),
    ],
    # Issue 13: an abort in creating takes the new secret to have never reached consumers,
    # though its store applied (an answer lost, or a store in flight when the abort was asked).
    "abort-ignores-store": [
        (
            "core/abort.py",
            "    if record.phase is Phase.CREATING and not reached(record, obs.consumer, obs.history):",
            "    if record.phase is Phase.CREATING:",
        ),
    ],
    # Issue 15: the quiet daemon sleeps through work when ``next_wakeup`` forgets a time the
    # record names: the grace deadline (then it waits for the sweep) ...
    "wakeup-drops-deadline": [
        (
            "core/wakeups.py",
            """    if grace and record.deadline is not None and now < record.deadline:
        return Wakeup(record.deadline, "deadline")
""",
            "",
        ),
    ],
    # ... the end of a backoff ...
    "wakeup-retry-waits-for-sweep": [
        (
            "core/wakeups.py",
            """        return Wakeup(record.retry_at, "retry")""",
            """        return None""",
        ),
    ],
    # ... a dead process's lease to take over ...
    "wakeup-lease-waits-for-sweep": [
        (
            "core/wakeups.py",
            """        return Wakeup(now + timedelta(seconds=ttl) + LEASE_MARGIN, "lease")""",
            """        return None""",
        ),
    ],
    # ... or the schedule, read a day late.
    "wakeup-due-a-day-late": [
        (
            "core/wakeups.py",
            """    if due_at > now:
        return Wakeup(due_at, "due")""",
            """    if due_at > now:
        return Wakeup(due_at + timedelta(days=1), "due")""",
        ),
    ],
    # Issue 15 item 2, rotation windows: the opening of a closed window read a day late (the
    # daemon sleeps through the window) ...
    "wakeup-window-a-day-late": [
        (
            "core/wakeups.py",
            """    return Wakeup(window.opens_at, "window")""",
            """    return Wakeup(window.opens_at + timedelta(days=1), "window")""",
        ),
    ],
    # ... or a closed window that opens later taken for an open one (the daemon polls a due
    # start or a retirement the window holds every ``poll`` until it opens). (An emergency's
    # retirement made to wait for the window is no mutant worth keeping: the pass that finds
    # its rollout done retires at once, so no wakeup is ever computed from such a record.)
    "wakeup-window-closed-polls": [
        (
            "core/wakeups.py",
            """    return Wakeup(window.opens_at, "window")""",
            """    return None""",
        ),
    ],
}


def mutate(target: Path, edits: list[Edit]) -> None:
    for relative, now, before in edits:
        path = target / "rotator" / relative
        text = path.read_text()
        if text.count(now) != 1:
            raise SystemExit(f"{relative}: the fixed code to revert is not there exactly once")
        path.write_text(text.replace(now, before))


def run(name: str, examples: int) -> tuple[bool, str, float]:
    with tempfile.TemporaryDirectory(prefix=f"rotator-mutant-{name}-") as work:
        copy = Path(work)
        shutil.copytree(ROOT / "rotator", copy / "rotator")
        mutate(copy, MUTANTS[name])
        report = copy / "first-failure"
        env = {
            **os.environ,
            "PYTHONPATH": f"{copy}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "ROTATOR_SIMULATION_EXAMPLES": str(examples),
            "ROTATOR_SIMULATION_REPORT": str(report),
            "ROTATOR_SIMULATION_PACKAGE": str(copy / "rotator"),
        }
        if name == "6-wall-clock":
            env["ROTATOR_SIMULATION_MUTANT"] = "wall-clock"
        started = time.monotonic()
        result = subprocess.run(
            [
                sys.executable,
                "-P",  # no working directory first on sys.path: the copy must win
                "-m",
                "pytest",
                "-x",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/test_simulation.py",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        took = time.monotonic() - started
        if result.returncode == 9:
            raise SystemExit(f"{name}: {result.stdout.strip()}")
        found = result.returncode != 0
        detail = report.read_text().strip() if report.exists() else "-"
        if found and not report.exists():
            detail = "? (" + result.stdout.strip().splitlines()[-1] + ")"
        return found, detail, took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mutants", nargs="*", default=list(MUTANTS))
    parser.add_argument("--examples", type=int, default=3000)
    args = parser.parse_args()
    print(f"{'mutant':28} {'found':6} {'examples to the first violation':32} seconds")
    missed = 0
    for name in args.mutants:
        found, detail, took = run(name, args.examples)
        missed += not found
        print(f"{name:28} {'yes' if found else 'NO':6} {detail:32} {took:.0f}", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
