"""Exit codes and the usage error: what every verb shares, light enough for ``--help``."""

from __future__ import annotations

from rotator.errors import PermanentError

#: 0 ok; 1 a target needs an operator or an attempt failed; 2 bad usage or configuration.
EXIT_OK, EXIT_NEEDS_OPERATOR, EXIT_USAGE = 0, 1, 2


class UsageError(PermanentError):
    """The command asked for something that cannot be done as asked (exit 2)."""
