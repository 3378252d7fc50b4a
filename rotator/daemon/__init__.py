"""``rotator run``: the scheduler, the reconcile loop, the hook server and the metrics."""

from rotator.daemon.service import Daemon

__all__ = ["Daemon"]
