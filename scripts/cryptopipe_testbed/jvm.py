"""The command line the test bed's Java daemons and tools start with."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def java_command(
    classpath: Sequence[str | Path],
    main: str,
    *args: str,
    max_heap: str = "384m",
    options: Sequence[str] = (),
) -> list[str]:
    # Serial GC and C1 only: on 2 cores shared by several JVMs, start-up time and a small
    # footprint matter more than peak throughput.
    return [
        "java",
        "-Xms64m",
        f"-Xmx{max_heap}",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        *options,
        "-cp",
        ":".join(str(entry) for entry in classpath),
        main,
        *args,
    ]
