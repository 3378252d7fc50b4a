"""rotator's benchmarks: what a rotation costs, against a shell script doing the same by hand,
cold starts, 1,000 targets, the idle daemon, a probe round over 1,000 consumer instances
(bench/probe.py) and a whole reconcile pass probing them (bench/probe_pass.py), both also
runnable alone. Prints a table; --write saves bench/RESULTS.md.

    ./scripts/bench                 # everything (about 10 minutes)
    ./scripts/bench --quick         # fewer repeats, no 60 s idle window (a smoke run)
    ./scripts/bench --scale         # only 10,000 targets in one daemon (bench/scale.py, 20+ min)
    ./scripts/bench --only a,c --write   # rows a-c alone, put in place in bench/RESULTS.md

Everything runs on loopback: an OpenBao dev server (with a file audit device, which is how Vault
calls are counted), the Intercom emulator in this process (its requests counted by a WSGI
middleware), the real `rotator` CLI and daemon as subprocesses. Each figure is the median of
several runs; the emulator answers with 0 ms and with 20 ms of added latency.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import rig
from rig import ROTATOR
from table import merged, render

from rotator.demo.openbao import OpenBaoDevServer, free_port
from rotator.emulator import Emulator, FaultSpec, Token

HERE = Path(__file__).resolve().parent


class Counting:
    """WSGI middleware counting the emulator's API requests."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO", "").startswith("/secure_mode_secrets"):
            with self._lock:
                self.count += 1
        return self.app(environ, start_response)


@dataclass
class Bench:
    workdir: Path
    repeats: int
    bao: OpenBaoDevServer = field(init=False)
    emulator: Emulator = field(init=False)
    counter: Counting = field(init=False)
    url: str = field(init=False)
    audit: Path = field(init=False)
    tokens: dict[str, str] = field(default_factory=dict)
    _serial: int = 0

    def start(self) -> None:
        self.audit = self.workdir / "audit.log"
        # OpenBao takes audit devices only from its configuration, not from the API.
        audit = (
            f'audit "file" "bench" {{\n  options = {{\n    file_path = "{self.audit}"\n  }}\n}}\n'
        )
        self.bao = OpenBaoDevServer(config=audit).start()
        self.emulator = Emulator(tokens=[])
        self.running = self.emulator.serve(middleware=self._count)
        self.url = self.running.url

    def _count(self, app: Callable[..., Any]) -> Counting:
        self.counter = Counting(app)
        return self.counter

    def stop(self) -> None:
        self.running.stop()
        self.bao.stop()

    def _root(self) -> dict[str, str]:
        return {"X-Vault-Token": self.bao.root_token}

    def vault_calls(self) -> int:
        if not self.audit.exists():
            return 0
        with self.audit.open() as f:
            return sum(1 for line in f if '"type":"request"' in line)

    def latency(self, ms: int) -> None:
        self.emulator.faults.set(FaultSpec.parse(f"latency=1:{ms}ms") if ms else FaultSpec())

    # --- targets -------------------------------------------------------------------------------

    def config(
        self,
        n: int,
        *,
        schedule: str = "30d",
        grace: str = "24h",
        concurrency: int = 8,
        listen: int = 0,
    ) -> Path:
        self._serial += 1
        run = f"b{self._serial}"
        lines = rig.head(
            self.bao.address, f"bench/{run}/state", listen=listen, concurrency=concurrency
        )
        for i in range(n):
            name = f"t{i}"
            token = f"bench-{run}-{i}-token"
            self.emulator.add_token(Token.parse(f"{token}:read,write:{run}-{i}"))
            self.tokens[f"TOK_{run}_{i}"] = token
            lines += rig.target(
                name,
                self.url,
                f"TOK_{run}_{i}",
                f"bench/{run}/secrets/{name}",
                number=i,
                schedule=schedule,
                grace=grace,
            )
        path = self.workdir / f"{run}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def env(self, config: Path) -> dict[str, str]:
        return rig.rotator_env(self.tokens, self.bao.root_token, str(config))

    def run(
        self, config: Path, *args: str
    ) -> tuple[float, float, subprocess.CompletedProcess[str]]:
        """(wall seconds, CPU seconds of the child, result)."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run(
            [*ROTATOR, *args],
            env=self.env(config),
            cwd=self.workdir,  # not the checkout: `-m rotator` must find the user install
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode != 0:
            raise RuntimeError(
                f"rotator {' '.join(args)} failed: {result.stdout}{result.stderr[-2000:]}"
            )
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return wall, cpu, result


# --- the measurements ------------------------------------------------------------------------------


def rotations(bench: Bench, latency_ms: int) -> tuple[dict[str, float], dict[str, float]]:
    """rotator's ``rotate-now --emergency --yes`` and the script, one after the other in each
    repeat: both medians come from the same seconds of the same run, whatever the VM's load
    does in between (two series run one after the other drifted apart by several percent)."""
    bench.latency(latency_ms)
    config = bench.config(1)
    bench.run(config, "reconcile")  # provision the first secret
    script, script_env = _script(bench, latency_ms)
    subprocess.run(script, env=script_env, check=True, capture_output=True)  # its first secret
    walls, cpus, intercom, vault = [], [], [], []
    script_walls, script_intercom, script_vault = [], [], []
    for _ in range(bench.repeats):
        i0, v0 = bench.counter.count, bench.vault_calls()
        wall, cpu, _ = bench.run(config, "rotate-now", "t0", "--emergency", "--yes")
        walls.append(wall)
        cpus.append(cpu)
        intercom.append(bench.counter.count - i0)
        vault.append(bench.vault_calls() - v0)
        i0, v0 = bench.counter.count, bench.vault_calls()
        started = time.perf_counter()
        subprocess.run(script, env=script_env, check=True, capture_output=True)
        script_walls.append(time.perf_counter() - started)
        script_intercom.append(bench.counter.count - i0)
        script_vault.append(bench.vault_calls() - v0)
    start_wall, start_cpu = startup(bench, config)
    rotator = {
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "cpu_beyond_start": statistics.median(cpus) - start_cpu,
        "start_wall": start_wall,
        "intercom_calls": statistics.median(intercom),
        "vault_calls": statistics.median(vault),
    }
    by_script = {
        "wall": statistics.median(script_walls),
        "intercom_calls": statistics.median(script_intercom),
        "vault_calls": statistics.median(script_vault),
    }
    return rotator, by_script


def _script(bench: Bench, latency_ms: int) -> tuple[list[str], dict[str, str]]:
    """``bash bench/rotate.sh``, and the environment it runs in (a token of its own)."""
    run = f"script{latency_ms}"
    token = f"bench-{run}-token"
    bench.emulator.add_token(Token.parse(f"{token}:read,write:{run}"))
    env = {
        **os.environ,
        "INTERCOM_URL": bench.url,
        "INTERCOM_TOKEN": token,
        "VAULT_ADDR": bench.bao.address,
        "VAULT_TOKEN": bench.bao.root_token,
        "SECRET_PATH": f"bench/{run}/web",
        "BAO": shutil.which("bao") or str(Path(sys.executable).parent / "bao"),
    }
    return ["bash", str(HERE / "rotate.sh")], env


def startup(bench: Bench, config: Path) -> tuple[float, float]:
    """The interpreter with rotator's CLI and the modules a rotation imports, doing nothing."""
    walls, cpus = [], []
    # As the entry point starts (rotator.cli.process): the collector off while importing, what
    # was imported frozen, so that the exit's collection walks none of it.
    code = (
        "import gc; gc.disable()\n"
        "import rotator.cli, rotator.cli.rotate, rotator.cli.check, rotator.reconciler, "
        "rotator.vault, rotator.intercom.client\n"
        "gc.freeze(); gc.enable(); gc.freeze()"
    )
    for _ in range(bench.repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", code], check=True, env=bench.env(config), cwd=bench.workdir
        )
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(walls), statistics.median(cpus)


def in_process_rotation_cpu(bench: Bench) -> float:
    """rotator's own CPU per rotation once started: warm reconciler, median over the repeats."""
    from rotator.config import load_settings
    from rotator.core.observation import RotateNow
    from rotator.reconciler import Reconciler
    from rotator.vault import Vault

    bench.latency(0)
    config = bench.config(1)
    settings = load_settings(config)
    env = bench.env(config)
    reconciler = Reconciler(settings, Vault(settings.vault, environ=env), environ=env)
    reconciler.reconcile_all()
    cpus = []
    for _ in range(max(5, bench.repeats)):
        before = time.process_time()
        reconciler.reconcile_target("t0", RotateNow(emergency=True))
        cpus.append(time.process_time() - before)
    reconciler.close()
    reconciler.vault.close()
    # process_time counts this whole process: the emulator's threads run here too, so this is
    # an upper bound on rotator's share.
    return statistics.median(cpus)


def cold_start(bench: Bench, targets: int) -> dict[str, float]:
    """A reconcile with nothing due: median wall and CPU seconds (CPU moves less with load)."""
    bench.latency(0)
    config = bench.config(targets, concurrency=8)
    bench.run(config, "reconcile")  # provision: nothing is due afterwards
    runs = [bench.run(config, "reconcile")[:2] for _ in range(bench.repeats)]
    return {
        "wall": statistics.median(w for w, _ in runs),
        "cpu": statistics.median(c for _, c in runs),
    }


def thousand(bench: Bench, latency_ms: int) -> dict[str, float]:
    bench.latency(0)
    config = bench.config(1000, schedule="1s", grace="0s", concurrency=16)
    bench.run(config, "reconcile")  # provision 1,000 secrets
    idle_config = config.with_name(config.stem + "-idle.toml")
    idle_config.write_text(config.read_text().replace('schedule = "1s"', 'schedule = "30d"'))
    idle = statistics.median(
        bench.run(idle_config, "reconcile")[0] for _ in range(max(3, bench.repeats // 2))
    )
    bench.latency(latency_ms)
    time.sleep(1.1)  # let the 1 s schedule come due for every target
    wall, cpu, result = bench.run(config, "reconcile")
    rotated = sum(1 for line in result.stdout.splitlines() if " complete: " in line)
    return {"idle_pass": idle, "rotate_all": wall, "rotate_all_cpu": cpu, "rotated": rotated}


def idle_daemon(bench: Bench, seconds: float) -> dict[str, float]:
    bench.latency(0)
    port = free_port()
    config = bench.config(100, listen=port)
    bench.run(config, "reconcile")
    process = subprocess.Popen(
        [*ROTATOR, "run"],
        env=bench.env(config),
        cwd=bench.workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(timeout=1) as http:
            for _ in range(200):
                try:
                    if http.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        time.sleep(5)  # the first pass over the 100 targets is done
        ticks = os.sysconf("SC_CLK_TCK")
        cpu0 = _cpu(process.pid, ticks)
        peak = 0.0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            peak = max(peak, _rss_mb(process.pid))
            time.sleep(1)
        cpu = _cpu(process.pid, ticks) - cpu0
    finally:
        process.terminate()
        process.wait(timeout=15)
    return {"rss_mb": peak, "cpu_s": cpu, "window_s": seconds}


def probe_bench(script: str, flag: str, count: int) -> dict[str, Any]:
    """bench/probe.py (``--rounds``: probe rounds alone) or bench/probe_pass.py (``--passes``:
    whole reconcile passes, its own OpenBao and emulator) in its own process (it raises its
    open-files limit and runs event loops): one consumer of 1,000 instances on loopback."""
    result = subprocess.run(
        [sys.executable, str(HERE / script), flag, str(count)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    figure = re.search(r"(\d+) instances, median ([\d.]+) s, max ([\d.]+) s", result.stdout)
    # probe.py: "switched: N/1000 in every round"; probe_pass.py, per pass, what the record says.
    switched = [int(n) for n in re.findall(r"switched(?:: |=)(\d+)", result.stdout)]
    if figure is None or not switched:
        raise RuntimeError(f"bench/{script} failed: {result.stdout}{result.stderr[-2000:]}")
    return {
        "instances": int(figure.group(1)),
        "median": float(figure.group(2)),
        "max": float(figure.group(3)),
        "switched": min(switched),
        "count": count,
        "exit": result.returncode,  # 0: under the goal, every instance switched (and for a
        # pass: the rollout still awaited); 1: over the goal; 2: not all switched
    }


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu(pid: int, ticks: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks


# --- the table ------------------------------------------------------------------------------------


SECTIONS = ("a", "c", "d", "e", "f")  # what --only picks: the table's rows, by their letter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a 10 s idle window")
    parser.add_argument("--write", action="store_true", help="also write bench/RESULTS.md")
    parser.add_argument(
        "--scale",
        action="store_true",
        help="run only bench/scale.py: 10,000 targets in one daemon (its own section)",
    )
    parser.add_argument(
        "--only",
        metavar="ROWS",
        type=lambda text: set(text.split(",")),
        default=set(SECTIONS),
        help="only these rows, comma-separated: a (rotation; b, the script, with it), c (cold "
        "starts), d (1,000 targets), e (idle daemon), f (probes)",
    )
    parser.add_argument("--repeats", type=int, help="runs per figure (default 11, --quick 3)")
    args = parser.parse_args(argv)
    if args.scale:
        import scale  # bench/scale.py, beside this file

        return scale.main(["--write"] if args.write else [])
    if not args.only <= set(SECTIONS):
        parser.error(f"--only: rows are {', '.join(SECTIONS)}")
    from rotator.logs import configure_logging

    configure_logging("console", "warning")  # the in-process emulator's request log is noise
    workdir = Path(tempfile.mkdtemp(prefix="rotator-bench-"))
    bench = Bench(workdir, repeats=args.repeats or (3 if args.quick else 11))
    bench.start()
    results = measure(bench, args.only, quick=args.quick)
    table = render(results, repeats=bench.repeats)
    print(table)
    (workdir / "results.json").write_text(json.dumps(results, indent=2))
    if args.write:
        out = HERE / "RESULTS.md"  # rows measured alone replace theirs in the last full table
        old = out.read_text() if out.exists() else ""
        # bench/scale.py's section (--scale) is kept: it is measured on its own.
        rest, marker, scaled = old.partition("\n## 10,000 targets in one daemon")
        full = args.only == set(SECTIONS)
        table_part = table + "\n" if full else merged(rest, table, args.only)
        out.write_text(table_part + (marker + scaled if marker else ""))
    return 0


def measure(bench: Bench, only: set[str], *, quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {"load": [os.getloadavg()[0]]}
    try:
        if "a" in only:
            for ms in (0, 20):
                results[f"rotation_{ms}"], results[f"script_{ms}"] = rotations(bench, ms)
                print(f"rotation at {ms} ms measured", file=sys.stderr, flush=True)
            results["in_process_cpu"] = in_process_rotation_cpu(bench)
        if "c" in only:
            results["cold_1"], results["cold_100"] = cold_start(bench, 1), cold_start(bench, 100)
        if "d" in only:
            for ms in (0, 20):
                results[f"thousand_{ms}"] = thousand(bench, ms)
                print(f"1,000 targets at {ms} ms measured", file=sys.stderr, flush=True)
        if "e" in only:
            results["idle"] = idle_daemon(bench, 10 if quick else 60)
        if "f" in only:
            results["probe"] = probe_bench("probe.py", "--rounds", 5)
            results["probe_pass"] = probe_bench("probe_pass.py", "--passes", 5)
    finally:
        bench.stop()
    results["load"].append(os.getloadavg()[0])
    return results


if __name__ == "__main__":
    raise SystemExit(main())
