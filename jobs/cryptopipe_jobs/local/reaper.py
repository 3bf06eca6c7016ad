"""Stops what a local run started when the run itself cannot: after SIGKILL, a crash, or a
clean-up cut short.

The runner starts it first, in a session of its own (a terminal's Ctrl-C does not reach it),
and keeps the only write end of a pipe to its stdin. Lines it reads:

    group PGID        a stage's process group
    forget PGID       a one-off stage that has ended
    down ARGV-JSON    the command that stops the test bed components this run started
    done              the runner has stopped everything itself: exit

End of input without `done` means the runner is gone: each group gets SIGTERM, then SIGKILL
after a grace period, and the down command runs. Its own output goes to a log, never to the
terminal, which may be gone too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO

GRACE_SECONDS = 30.0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def terminate_groups(pgids: Iterable[int], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM every process group, then SIGKILL the groups still alive after `grace`."""
    pending = list(pgids)
    for pgid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(map(_group_alive, pending)):
        time.sleep(0.2)
    for pgid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


@dataclass
class Orders:
    """What the runner has told the reaper so far."""

    groups: list[int] = field(default_factory=list)
    down: list[str] | None = None
    done: bool = False

    def read(self, lines: Iterable[str]) -> Orders:
        for line in lines:
            word, _, rest = line.strip().partition(" ")
            if word == "group":
                self.groups.append(int(rest))
            elif word == "forget":
                self.groups.remove(int(rest))
            elif word == "down":
                self.down = json.loads(rest)
            elif word == "done":
                self.done = True
        return self


class Reaper:
    """The runner's side: a reaper process and the pipe to it."""

    def __init__(self, log: IO[bytes], grace: float = GRACE_SECONDS) -> None:
        argv = [sys.executable, "-m", "cryptopipe_jobs.local.reaper", f"--grace={grace}"]
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
        )

    def _tell(self, line: str) -> None:
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()

    def watch_group(self, pgid: int) -> None:
        self._tell(f"group {pgid}")

    def forget_group(self, pgid: int) -> None:
        self._tell(f"forget {pgid}")

    def down_with(self, argv: Sequence[str]) -> None:
        self._tell(f"down {json.dumps(list(argv))}")

    def dismiss(self) -> None:
        """Everything is stopped: the reaper exits without acting."""
        self._tell("done")
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()
        self._proc.wait(timeout=30)


def reap(orders: Orders, grace: float) -> None:
    if orders.done:
        return
    print(f"the run ended without stopping {orders.groups}: stopping them", flush=True)
    terminate_groups(orders.groups, grace)
    if orders.down:
        print(f"$ {' '.join(orders.down)}", flush=True)
        subprocess.run(orders.down, stdin=subprocess.DEVNULL, check=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cryptopipe_jobs.local.reaper", description=__doc__
    )
    parser.add_argument("--grace", type=float, default=GRACE_SECONDS, help="seconds before SIGKILL")
    args = parser.parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    reap(Orders().read(sys.stdin), args.grace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
