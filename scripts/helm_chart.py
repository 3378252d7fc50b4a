# ruff: noqa: INP001 - a script run by scripts/check-deploy and the tests, not a package
"""`helm lint` and `helm template` for rotator's chart, with Helm's own Go SDK.

PyPI ships no Helm binary, but `helm-python-sdk` (pinned in scripts/deploy-requirements.txt)
binds to Helm v4's official SDK (a shared library in its wheel, called through ctypes), so
scripts/check-deploy and tests/test_helm_chart.py render and lint the chart with the very code
`helm` runs, on a machine with PyPI only. This script is their one entry point, and it prints
what `helm` would:

    python scripts/helm_chart.py lint CHART [--strict] [-f VALUES]... [--set-json K=JSON]...
    python scripts/helm_chart.py template CHART [--release NAME] [--namespace NS]
                                 [-f VALUES]... [--set-json K=JSON]...

`template` checks the values against the chart's values.schema.json, renders every template
(tests included, NOTES.txt left out) and writes them as one YAML stream, each document headed by
`# Source: <template>`. Any failure (a value the schema refuses, a template's `fail`) is printed
as Helm words it, with exit status 1 and no traceback. Run it with .venv-deploy's Python.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import helm_python
except ImportError:  # pragma: no cover - depends on the interpreter it is run with
    sys.stderr.write(
        "helm_chart.py needs helm-python-sdk: run it with .venv-deploy/bin/python "
        "(scripts/check-deploy installs it)\n"
    )
    sys.exit(3)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge override into base as Helm merges values files: maps merge, the rest wins."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def user_values(files: list[str], set_json: list[str]) -> dict[str, Any]:
    """The values given on the command line: each -f file, then each --set-json, in order."""
    values: dict[str, Any] = {}
    for name in files:
        values = merge(values, helm_python.values_from_yaml(Path(name).read_text("utf-8")))
    for expression in set_json:
        values = merge(values, helm_python.parse_set_json(expression))
    return values


def template(args: argparse.Namespace) -> int:
    """Render the chart like `helm template`: schema first, then every template but NOTES."""
    chart = helm_python.Chart.load(args.chart)
    values = user_values(args.values, args.set_json)
    chart.validate_schema(chart.merge_values(values))
    rendered = chart.render(values, name=args.release, namespace=args.namespace, is_install=True)
    for path in sorted(rendered):
        body = rendered[path].strip()
        if (
            path.endswith("NOTES.txt")
            or not body
            or all(line.startswith("#") for line in body.splitlines())
        ):
            continue
        sys.stdout.write(f"---\n# Source: {path}\n{body}\n")
    return 0


def lint(args: argparse.Namespace) -> int:
    """Lint the chart like `helm lint`: print each finding, fail on errors (and warnings if
    --strict)."""
    values = user_values(args.values, args.set_json)
    report = helm_python.lint(args.chart, values, strict=args.strict)
    names = {1: "INFO", 2: "WARNING", 3: "ERROR"}
    worst = 0
    for message in report.get("messages") or []:
        severity = int(message.get("severity", 0))
        worst = max(worst, severity)
        sys.stdout.write(
            f"[{names.get(severity, 'UNKNOWN')}] {message.get('path')}: {message.get('error')}\n"
        )
    errors = report.get("errors") or []
    for error in errors:
        sys.stdout.write(f"[ERROR] {error}\n")
    failed = bool(errors) or worst >= (2 if args.strict else 3)
    sys.stdout.write(
        f"{report.get('total_charts_linted', 0)} chart(s) linted, "
        f"{'failed' if failed else 'no failures'}\n"
    )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the verb, and turn Helm's errors into one line each."""
    parser = argparse.ArgumentParser(prog="helm_chart.py", description=__doc__.split("\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    for verb in ("lint", "template"):
        sub = verbs.add_parser(verb)
        sub.add_argument("chart")
        sub.add_argument("-f", "--values", action="append", default=[], metavar="FILE")
        sub.add_argument("--set-json", action="append", default=[], metavar="KEY=JSON")
        if verb == "lint":
            sub.add_argument("--strict", action="store_true", help="fail on warnings too")
        else:
            sub.add_argument("--release", default="rotator")
            sub.add_argument("--namespace", default="rotator")
    args = parser.parse_args(argv)
    try:
        with helm_notes_filtered():
            return lint(args) if args.verb == "lint" else template(args)
    except (helm_python.HelmError, OSError) as error:
        sys.stderr.write(f"Error: {error}\n")
        return 1


@contextlib.contextmanager
def helm_notes_filtered() -> Iterator[None]:
    """Drop Helm's note that it followed a symbolic link (files/alerts.yaml is one, on purpose:
    the chart's rules are deploy/prometheus/alerts.yaml itself), which its Go logger writes
    straight to file descriptor 2 on every load; pass anything else it writes through."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if "found symbolic link in path" not in line:
                    sys.stderr.write(line)


if __name__ == "__main__":
    sys.exit(main())
