"""The reconciler: gather, decide, persist, act, for every target.

``reconciler`` runs the passes and records operator requests; ``passes`` is one pass over one
target; ``store`` the state record and the consumers' path in Vault; ``clients`` the Intercom
clients; ``ports`` the narrow interfaces all of them use, which a simulation can implement.
"""

from rotator.reconciler.clients import IntercomClients, Sleep, client_factory_with
from rotator.reconciler.controls import AbortRefused, TargetPaused
from rotator.reconciler.passes import TargetReport
from rotator.reconciler.ports import RecordListener
from rotator.reconciler.reconciler import ConfirmResult, Reconciler
from rotator.reconciler.store import RecordStore, consumer_view

__all__ = [
    "AbortRefused",
    "ConfirmResult",
    "IntercomClients",
    "Reconciler",
    "RecordListener",
    "RecordStore",
    "Sleep",
    "TargetPaused",
    "TargetReport",
    "client_factory_with",
    "consumer_view",
]
