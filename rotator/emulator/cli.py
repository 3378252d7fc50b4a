"""``rotator emulate-intercom``: serve the emulator in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from rotator.emulator.faults import FaultSpec
from rotator.emulator.server import DEFAULT_TOKEN, Emulator
from rotator.emulator.state import StateFileError, Token
from rotator.logs import get_logger

log = get_logger()


def serve(
    *,
    host: str,
    port: int,
    tokens: Sequence[Token] | None,
    faults: FaultSpec | None,
    state: Path | None,
) -> int:
    """Serve until a signal arrives; 0 on a clean stop, 2 when it cannot start."""
    chosen = list(tokens) if tokens else [DEFAULT_TOKEN]
    try:
        emulator = Emulator(tokens=chosen, faults=faults, state_file=state)
        running = emulator.serve(host, port)
    except StateFileError as e:
        print(f"rotator emulate-intercom: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(
            f"rotator emulate-intercom: error: cannot listen on {host}:{port}: {e.strerror or e}",
            file=sys.stderr,
        )
        return 2
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            log.info("emulator.stopping", signal=signal.Signals(signum).name)
            threading.Thread(target=running.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workspaces = sorted({t.workspace for t in chosen})
    print(
        f"Intercom emulator listening on {running.url} "
        f"({len(chosen)} token(s), workspace(s): {', '.join(workspaces)}; "
        f"faults: {emulator.faults.spec.describe()}; state: {state or 'in memory'})",
        flush=True,
    )
    if not tokens:
        print("Using the default token 'emulator-token' (read and write).", flush=True)
    running.wait()
    return 0
