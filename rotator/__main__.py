"""Allow ``python -m rotator``."""

from rotator.cli.process import run

raise SystemExit(run())
