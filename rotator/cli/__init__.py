"""``rotator``'s command line: ``main`` parses, delegates to a verb, maps errors to exit codes."""

from rotator.cli.main import main

__all__ = ["main"]
