"""The long run of the simulation, beyond CI's budget, with new random examples each time.

    python tests/simulation/run.py --steps 100000

Runs ``tests/test_simulation.py`` (randomised: Hypothesis draws fresh examples) until at least
``--steps`` steps were taken, then prints what was exercised. Exit 1 on the first violation,
which Hypothesis prints shrunk, with the seed to replay it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIGURES = re.compile(r"simulation: (.*)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--examples-per-run", type=int, default=2000)
    args = parser.parse_args()
    totals: dict[str, int] = {}
    started = time.monotonic()
    runs = 0
    while totals.get("steps", 0) < args.steps:
        runs += 1
        seed = int.from_bytes(os.urandom(4), "big")
        env = {
            **os.environ,
            "ROTATOR_SIMULATION_EXAMPLES": str(args.examples_per_run),
            "ROTATOR_SIMULATION_SEED": str(seed),
        }
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-x",
                "-q",
                "-s",
                "-p",
                "no:cacheprovider",
                f"--hypothesis-seed={seed}",
                "tests/test_simulation.py",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            print(result.stdout[-20000:])
            print(f"run {runs} (seed {seed}) found a violation")
            return 1
        found = FIGURES.search(result.stdout)
        for part in (found.group(1) if found else "").split(", "):
            key, _, value = part.rpartition(" ")
            totals[key] = totals.get(key, 0) + int(value.replace(",", ""))
        print(f"run {runs} (seed {seed}): {found.group(1) if found else '?'}", flush=True)
    took = time.monotonic() - started
    print(
        f"\n{runs} runs, {took:.0f} s: "
        + ", ".join(f"{key} {value:,}" for key, value in totals.items())
        + ", invariant violations 0"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
