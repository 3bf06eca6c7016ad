"""What every entry point does the same way: stop on signals, refuse bad configuration."""

from __future__ import annotations

import signal
import sys
import threading

INVALID_CONFIGURATION = 2


def stop_on_signals() -> threading.Event:
    """An event that SIGTERM (Kubernetes) or SIGINT (Ctrl-C) sets, for a clean stop."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def refuse(prog: str, error: Exception) -> int:
    """Say why the configuration is unusable, in one line, and give the exit code for it."""
    print(f"{prog}: invalid configuration: {error}", file=sys.stderr)
    return INVALID_CONFIGURATION
