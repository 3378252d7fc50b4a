"""The table of bench/run.py's figures (bench/RESULTS.md): one row builder per measure, the
goals, and the merge of rows re-measured alone (``--only``) into the last full table."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from typing import Any

#: The goals of issue 15: a one-shot rotate-now at most 0.8x the script's wall time in the same
#: run, and a reconcile with nothing due started and done in 250 ms.
RATIO_GOAL = 0.8
COLD_GOAL = 0.250

Row = tuple[str, str, str, str]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _rotation_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for lat in (0, 20):
        rot, script = r[f"rotation_{lat}"], r[f"script_{lat}"]
        ratio = rot["wall"] / script["wall"]
        goal = f"<= {RATIO_GOAL}x script ({_ms(script['wall'] * RATIO_GOAL)})"
        rows += [
            (
                f"a. full rotation (rotate-now --emergency --yes), Intercom +{lat} ms",
                _ms(rot["wall"]),
                goal,
                _verdict(ratio <= RATIO_GOAL),
            ),
            (
                f"b. same by shell script (curl + bao), +{lat} ms; ratio rotator/script",
                f"{_ms(script['wall'])}; {ratio:.2f}x",
                f"ratio <= {RATIO_GOAL}",
                _verdict(ratio <= RATIO_GOAL),
            ),
            (
                (
                    "   calls: Intercom / Vault (the job's minimum: POST + DELETE / read old id, "
                    "write, read back)"
                ),
                f"{rot['intercom_calls']:.0f} / {rot['vault_calls']:.0f}",
                "<= 1.5x 2 / 3",
                f"{_verdict(rot['intercom_calls'] <= 3)} / {_verdict(rot['vault_calls'] <= 4.5)}",
            ),
            (
                (
                    f"   calls against the script as written ({script['intercom_calls']:.0f} / "
                    f"{script['vault_calls']:.0f})"
                ),
                (
                    f"{rot['intercom_calls'] / script['intercom_calls']:.1f}x / "
                    f"{rot['vault_calls'] / script['vault_calls']:.1f}x"
                ),
                "<= 1.5x",
                _verdict(
                    rot["intercom_calls"] <= 1.5 * script["intercom_calls"]
                    and rot["vault_calls"] <= 1.5 * script["vault_calls"]
                ),
            ),
        ]
    rot0 = r["rotation_0"]
    return [
        *rows,
        ("   rotator CPU per rotation, whole CLI process", _ms(rot0["cpu"]), "", ""),
        (
            "   ...beyond start-up (interpreter + imports)",
            _ms(rot0["cpu_beyond_start"]),
            "<= 20 ms",
            _verdict(rot0["cpu_beyond_start"] <= 0.020),
        ),
        (
            "   ...in a warm process (upper bound: includes the emulator)",
            _ms(r["in_process_cpu"]),
            "<= 20 ms",
            _verdict(r["in_process_cpu"] <= 0.020),
        ),
        ("   start-up alone (interpreter + imports), wall", _ms(rot0["start_wall"]), "", ""),
    ]


def _cold_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (
            "c. reconcile cold start, nothing due, 1 target",
            f"{_ms(r['cold_1']['wall'])} (CPU {_ms(r['cold_1']['cpu'])})",
            f"<= {_ms(COLD_GOAL)}",
            _verdict(r["cold_1"]["wall"] <= COLD_GOAL),
        ),
        (
            "c. reconcile cold start, nothing due, 100 targets",
            f"{_ms(r['cold_100']['wall'])} (CPU {_ms(r['cold_100']['cpu'])})",
            "",
            "",
        ),
    ]


def _thousand_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for lat in (0, 20):
        t = r[f"thousand_{lat}"]
        if lat == 0:
            rows.append(
                (
                    "d. 1,000 targets: one idle reconcile pass",
                    _ms(t["idle_pass"]),
                    "<= 2 s",
                    _verdict(t["idle_pass"] <= 2),
                )
            )
        rows.append(
            (
                f"d. 1,000 targets: rotate all (concurrency 16), Intercom +{lat} ms",
                f"{t['rotate_all']:.1f} s ({t['rotated']} rotated)",
                "<= 60 s",
                _verdict(t["rotate_all"] <= 60 and t["rotated"] == 1000),
            )
        )
    return rows


def _idle_rows(r: dict[str, Any]) -> list[Row]:
    idle = r["idle"]
    return [
        (
            f"e. daemon idle, 100 targets: peak RSS over {idle['window_s']:.0f} s",
            f"{idle['rss_mb']:.1f} MB",
            "<= 60 MB",
            _verdict(idle["rss_mb"] <= 60),
        ),
        (
            f"e. daemon idle, 100 targets: CPU over {idle['window_s']:.0f} s",
            f"{idle['cpu_s'] * 1000:.0f} ms",
            "",
            "",
        ),
    ]


def _probe_rows(r: dict[str, Any]) -> list[Row]:
    probe = r["probe"]
    n = probe["instances"]
    label = f"f. one probe round, {n:,} instances: median / max of {probe['count']} rounds"
    figure = f"{probe['median']:.2f} s / {probe['max']:.2f} s ({probe['switched']}/{n} switched)"
    ok = probe["max"] <= 2 and probe["switched"] == n
    rows = [(label, figure, "<= 2 s", _verdict(ok))]
    passed = r["probe_pass"]
    n = passed["instances"]
    label = f"f. one reconcile pass awaiting rollout, {n:,} probed instances: median / max of {passed['count']} passes"
    figure = f"{passed['median']:.2f} s / {passed['max']:.2f} s ({passed['switched']}/{n} switched)"
    ok = passed["exit"] == 0 and passed["max"] <= 2 and passed["switched"] == n
    return [*rows, (label, figure, "<= 2 s", _verdict(ok))]


def render(r: dict[str, Any], *, repeats: int) -> str:
    """The table of what ``r`` holds (every row, or those ``--only`` measured)."""
    rows: list[Row] = []
    for key, make in (
        ("rotation_0", _rotation_rows),
        ("cold_1", _cold_rows),
        ("thousand_0", _thousand_rows),
        ("idle", _idle_rows),
        ("probe", _probe_rows),
    ):
        if key in r:
            rows += make(r)
    width = max(len(row[0]) for row in rows)
    machine = f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()})"
    load = " to ".join(f"{x:.1f}" for x in r["load"])
    lines = [
        "# rotator benchmarks",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine}; each figure the median of {repeats} runs; 1-minute load average {load} (start to end).",
        "OpenBao dev server and the Intercom emulator on loopback; the real `rotator` CLI/daemon.",
        "",
        f"| {'measure'.ljust(width)} | figure | goal | |",
        f"|{'-' * (width + 2)}|---|---|---|",
    ]
    lines += [f"| {a.ljust(width)} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += ["", NOTES]
    return "\n".join(lines)


NOTES = """\
## What bounds the goals it misses

- **A one-shot rotate-now against the script (goal 0.8x; about 1.0x).** Most of a one-shot
  rotation is start-up: the interpreter and the imports take about 270 ms of its 340 ms (row
  "start-up alone"). The libraries alone, with nothing of rotator loaded (hvac with requests and
  urllib3, pydantic and its first model, structlog, httpx, tenacity), take about 215 ms: 0.62x
  of the script before any work. rotator's own modules add about 60 ms (the core's frozen
  dataclasses about 15 ms, the configuration models about 12 ms), then come 11 Vault and 3
  Intercom requests. 0.8x (about 280 ms) is what the imports alone cost, so no ordering of
  imports reaches it: it takes fewer libraries on the one-shot path (hvac and requests, or
  pydantic). Cut so far (issue 15): the Intercom HTTP client and its TLS context are made by
  the first request, and only an https base URL loads the CA bundle (the emulator here is
  http; against Intercom the bundle is loaded once per process, as curl loads it per call).
- **A reconcile with nothing due (goal 250 ms; about 275 ms).** It is start-up and two Vault
  reads (the mount check, the record). It no longer makes an HTTP client for Intercom (about
  30 ms less), but the library floor (about 215 ms) and rotator's modules leave it above 250 ms.
  What is left to cut is small: making the Intercom client object at all (it imports httpx,
  about 8 ms, for the binding check), the core's dataclasses, the emulator's fault-spec module
  the parser imports for one help text.
- **Vault calls per rotation (11 against a minimum of 3).** The script reads the old id, writes
  the new secret and reads it back. rotator also writes its state record five times (before the
  pass starts, the intent before the POST, the material right after it, the intent before the
  DELETE, the completion after it) and reads it twice: that is PRODUCT.md rule 3 (every
  transition persisted before the side effect that follows it) and rule 4 (check-and-set
  fencing), without which a crash or a second process could lose or duplicate a secret. One more
  call per process checks that the mount is KV v2 before anything is written. Against the
  script as written (the bao CLI asks for the mount's KV version before each command) it is
  1.8x.
- **CPU beyond start-up in the CLI (about 40 ms against 20 ms).** That figure is everything the
  CLI process does after its imports: load and validate the config, configure logging, make
  the Vault session and the Intercom client (httpcore's import, and with https the CA bundle),
  and the rotation itself. The rotation's own CPU, measured in a warm process (where the daemon
  lives), is under 20 ms including the in-process emulator's share.
- Figures move by 10 % and more from run to run on this 2-core VM shared with other work (the
  load average is in the header); each figure here is a median of 11.
"""


def merged(previous: str, table: str, only: set[str]) -> str:
    """``previous`` (bench/RESULTS.md) with the rows ``table`` measured put in place of the same
    rows (in order, as some labels repeat), a line saying when and under what load, and the
    notes of ``table``."""
    fresh: dict[str, list[str]] = {}
    for line in table.splitlines():
        if _label(line):
            fresh.setdefault(_label(line), []).append(line)
    lines = [
        _padded(fresh[_label(line)].pop(0), like=line) if fresh.get(_label(line)) else line
        for line in previous.splitlines()
    ]
    notes = table.index("## What bounds")
    lines = "\n".join(lines).split("## What bounds")[0].rstrip("\n").splitlines()
    lines += ["", *table[notes:].splitlines()]
    run = next(line for line in table.splitlines() if line.startswith("Run "))
    note = f"Rows {', '.join(sorted(only))} re-measured alone: {run.removeprefix('Run ')}"
    at = next(i for i, line in enumerate(lines) if line.startswith("|"))
    return "\n".join([*lines[:at], note, "", *lines[at:]]) + "\n"


def _label(line: str) -> str:
    if not line.startswith("| ") or line.startswith("| measure"):
        return ""
    return line.split("|")[1].strip()


def _padded(row: str, *, like: str) -> str:
    """``row`` with its label as wide as in ``like``, the row it replaces."""
    cells = row.split("|")
    cells[1] = f" {cells[1][1:].rstrip().ljust(len(like.split('|')[1]) - 2)} "
    return "|".join(cells)
