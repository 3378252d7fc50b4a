"""The reconciler: gather, decide, persist, act, for every target."""

from rotator.reconciler.reconciler import (
    Reconciler,
    RecordListener,
    Sleep,
    TargetReport,
    client_factory_with,
    consumer_view,
)

__all__ = [
    "Reconciler",
    "RecordListener",
    "Sleep",
    "TargetReport",
    "client_factory_with",
    "consumer_view",
]
