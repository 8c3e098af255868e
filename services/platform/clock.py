"""The services' clock: the system clock, or one read from a file (for demos and tests).

The pure core never reads a clock; the edges (workers, APIs) take `now` from here, once,
through their settings. `ACCORDWATCH_CLOCK_FILE` names a file holding an RFC 3339 instant:
every process of a stack then agrees on a "now" a test (or a demo) can move forward.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

Clock = Callable[[], datetime]


def system_now() -> datetime:
    """The system clock, in UTC."""
    return datetime.now(UTC)


class FileClock:
    """Now is the instant written in a file (re-read when the file changes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[tuple[int, int], datetime] | None = None

    def __call__(self) -> datetime:
        info = os.stat(self.path)
        stamp = (info.st_ino, info.st_mtime_ns)  # `set_clock_file` replaces the file: a new inode each time
        if self._seen is None or self._seen[0] != stamp:
            moment = datetime.fromisoformat(self.path.read_text().strip())
            if moment.tzinfo is None:
                raise ValueError(f"{self.path}: the time has no UTC offset")
            self._seen = (stamp, moment.astimezone(UTC))
        return self._seen[1]


def make_clock(clock_file: Path | None) -> Clock:
    """The clock a service runs on: the file's when one is configured, else the system's."""
    return system_now if clock_file is None else FileClock(clock_file)


def set_clock_file(path: Path, moment: datetime) -> None:
    """Move a file clock to `moment` (tests and demos)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(moment.astimezone(UTC).isoformat() + "\n")
    tmp.replace(path)
