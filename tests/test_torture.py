"""The torture suite's quick run, in CI: crashes at every failpoint, races, faults (see
tests/torture/run.py). It runs the real `rotator` processes against OpenBao and the emulator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).parent / "torture" / "run.py"


@pytest.mark.timeout(600)
def test_quick_torture_run_finds_no_violation(tmp_path):
    """Every failpoint fires and recovers, on plain targets and on a consumers target (probed
    consumer processes and a hook consumer), races and faults complete their rotations, and no
    invariant (I1-I6, I10) is ever violated while consumer processes are SIGKILLed, answer
    their probe wrongly or stop reloading mid-rollout; consumers never see a failed signature;
    a daemon held by slow clients while it rotates answers every health probe within a second.
    ``rotator abort`` (awaiting rollout and creating, plain and consumers targets) crashed at
    each of its failpoints and those of the restore's rollout still backs out: the old secret
    is never deleted, the abandoned one only after the restore's rollout, and the target ends
    idle with the old secret current and the rotation recorded as aborted."""
    result = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=590,
        check=False,
    )
    print(result.stdout[-6000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    summary = result.stdout
    assert re.search(r"invariant violations\s+0\n", summary)
    assert re.search(r"consumer failures\s+0\n", summary)
    assert re.search(r"stuck runs\s+0\n", summary)
    assert int(re.search(r"health probes under load\s+(\d+)", summary).group(1)) >= 100
    assert re.search(r"health probes over 1 s\s+0\n", summary)
    fired = int(re.search(r"failpoints fired\s+(\d+) over (\d+) points", summary).group(2))
    assert fired == 10, "every failpoint of rotator.failpoints.NAMES fired"
    trials = int(re.search(r"crash trials\s+(\d+)", summary).group(1))
    recoveries = int(re.search(r"recoveries\s+(\d+)", summary).group(1))
    assert trials == recoveries > 0
    assert int(re.search(r"rotations completed\s+(\d+)", summary).group(1)) >= 60
    assert int(re.search(r"OpenBao restarts\s+(\d+)", summary).group(1)) >= 1
    aborts = int(re.search(r"abort crash trials\s+(\d+)", summary).group(1))
    abort_points = re.search(r"abort failpoints fired\s+(\d+) over (\d+) points", summary)
    assert int(abort_points.group(1)) == aborts > 0, "every abort trial's failpoint fired"
    assert int(abort_points.group(2)) == 8, "state, vault, intercom delete and confirm points"
    assert int(re.search(r"aborts completed\s+(\d+)", summary).group(1)) >= aborts
    named = re.search(r"consumers-web crash trials\s+(\d+), fired over (\d+) points", summary)
    assert int(named.group(2)) == 10, "every failpoint fired on the consumers target too"
    # At least one per crash trial, and 5 (of 50) in the races.
    assert int(re.search(r"consumers-web rotations\s+(\d+)", summary).group(1)) >= 15
    assert int(re.search(r"consumers-web deletes \(I10\)\s+(\d+)", summary).group(1)) >= 15
    kills = re.search(r"consumer process SIGKILLs / flips\s+(\d+) / (\d+)", summary)
    assert int(kills.group(1)) >= 1
    assert int(kills.group(2)) >= 1
