"""The pure decision layer: what a rotation is and what to do next, with no I/O at all.

``record`` (the persisted state of a target), ``observation`` (what a pass saw and what the
machine answers), ``machine`` (``step``: the transitions), ``safety`` (the rules guarding every
delete), ``confirmation``, ``adoption``, ``lease`` and ``endpoints``. Nothing here imports an
adapter, a network or logging library, or reads a clock (import-linter checks it).
"""
